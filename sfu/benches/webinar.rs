//! The webinar shape of issue 7: one host publishing VP8 in three simulcast layers (q 300 B,
//! h 700 B, f 1100 B per packet) and 300 viewers, a third of them on each layer (render sizes
//! 160×90, 640×360 and 1280×720, reached by the layer selector's own climb). Every viewer has
//! both of its peer connections up with real ICE, DTLS-SRTP (AES-128-GCM) and SCTP against native
//! `rtc` peers in the in-memory network of the engine tests.
//!
//! - `webinar/forward`: one SRTP datagram of the host (layers in turn, 3.3 ms apart in simulated
//!   time) through `Sfu::handle_datagram`, all resulting datagrams out of `Sfu::poll_transmit`,
//!   then `Sfu::poll_timeout`, as the driver does on every wake-up. Throughput is in forwarded
//!   packets (100 per host packet), so `time / 100` is the CPU per forwarded packet. Timers are
//!   fired (untimed) after each simulated second.
//! - `webinar/idle_100ms`: no media; 100 ms of simulated time in which the SFU is woken at each
//!   of its deadlines (`poll_timeout` / `handle_timeout`) and handles what the 600 client
//!   connections send it (RTCP reports, STUN consent checks, SCTP heartbeats). Only the SFU's
//!   calls are timed.
//!
//! `cargo bench -p parley-sfu --bench webinar`. For instruction counts under callgrind, set
//! `WEBINAR_FIXED=forward` or `WEBINAR_FIXED=idle`: the same setup, then a fixed amount of work
//! in a function of its own (`counted_forward` / `idle_run`) to aim `--toggle-collect` at, and no
//! criterion (see docs/PERFORMANCE.md). Forward mode counts `counted_forward`: one second of
//! host media after a first, uncounted one.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use harness::Net;
use parley_sfu::TrackSource;

const VIEWERS: usize = 300;

/// `WEBINAR_VIEWERS` (a multiple of 3) overrides the audience, for quicker experiments.
fn viewers() -> usize {
    std::env::var("WEBINAR_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VIEWERS)
}
/// Payload bytes per packet of each layer (q, h, f).
const SIZES: [usize; 3] = [300, 700, 1100];
/// Render sizes the viewers report, one third each: each justifies one layer.
const RENDER: [(u32, u32); 3] = [(160, 90), (640, 360), (1280, 720)];

struct Webinar {
    net: Net,
    host: usize,
    viewers: Vec<usize>,
}

/// Simulcast media from the host for `ms` of simulated time: a packet per layer every 10 ms,
/// keyframes on all layers every 500 ms (what a layer switch waits for).
fn media(w: &mut Webinar, ms: u32, tick: &mut u32) {
    for _ in 0..ms / 10 {
        let key = tick.is_multiple_of(50);
        for (layer, size) in SIZES.iter().enumerate() {
            w.net.send_layer(w.host, layer, key, *size);
        }
        w.net.advance(Duration::from_millis(10));
        *tick += 1;
    }
}

/// The layer each viewer received its most recent video packet on (by payload size).
fn layer_counts(w: &Webinar) -> [usize; 3] {
    let mut counts = [0; 3];
    for &v in &w.viewers {
        let last = w.net.received_from(v, "host", "video").pop();
        if let Some(layer) = last.and_then(|p| SIZES.iter().position(|s| *s == p.3)) {
            counts[layer] += 1;
        }
    }
    counts
}

fn webinar() -> Webinar {
    let started = Instant::now();
    let mut net = Net::new();
    let host = net.join_simulcast("host");
    let audience = viewers();
    let viewers: Vec<usize> = (0..audience)
        .map(|i| net.join(&format!("viewer{i}"), false))
        .collect();
    let mut w = Webinar { net, host, viewers };
    let mut tick = 0;
    // The host's tracks open (and the viewers' down-tracks exist) with its first packets.
    media(&mut w, 500, &mut tick);
    for (i, v) in w.viewers.clone().into_iter().enumerate() {
        let (width, height) = RENDER[i % 3];
        let id = w.net.clients[v].id.clone();
        w.net
            .sfu
            .video_size("room", &id, "host", TrackSource::Camera, width, height);
    }
    // Unknown bandwidth: every viewer starts on q and climbs one layer per 3 s up to its cap.
    media(&mut w, 8_000, &mut tick);
    let connected = w
        .viewers
        .iter()
        .filter(|v| w.net.clients[**v].connected.1)
        .count();
    assert_eq!(
        connected, audience,
        "every viewer's subscriber connection is up"
    );
    let counts = layer_counts(&w);
    assert_eq!(
        counts,
        [audience / 3; 3],
        "viewers per layer (q, h, f) after the climb"
    );
    eprintln!(
        "webinar: host + {audience} viewers connected, viewers per layer {counts:?}, setup {:.1} s",
        started.elapsed().as_secs_f64()
    );
    w
}

/// Time between two host datagrams: three layers, a packet each per 10 ms.
const GAP: Duration = Duration::from_micros(3333);
/// Host datagrams between two catch-ups of the rest of the network (1 s of media).
const CHUNK: usize = 300;

/// One host datagram at a time, `GAP` apart, as the driver handles them; returns the datagrams
/// sent. Simulated time moves on (a NACK cache sizes itself by packet rate, so packets must not
/// all arrive at one instant); nothing else runs meanwhile, see `catch_up`.
#[inline(never)]
fn forward_batch(w: &mut Webinar, datagrams: &[BytesMut]) -> usize {
    let (sfu_addr, from) = w.net.publisher_route(w.host);
    let mut sent = 0usize;
    for d in datagrams {
        w.net.now += GAP;
        let now = w.net.now;
        w.net.sfu.handle_datagram(now, sfu_addr, from, d);
        while let Some(t) = w.net.sfu.poll_transmit() {
            black_box(&t.data);
            sent += 1;
        }
        black_box(w.net.sfu.poll_timeout());
    }
    sent
}

/// Untimed: fires the timers `forward_batch` let fall due (the SFU's and the clients'), so the
/// connections stay alive through a long measurement.
fn catch_up(w: &mut Webinar) {
    w.net.advance(Duration::ZERO);
}

/// Forwards `datagrams` in chunks with catch-ups between them; returns the time spent in
/// `forward_batch` and the datagrams sent.
fn forward_chunked(w: &mut Webinar, datagrams: &[BytesMut]) -> (Duration, usize) {
    let mut busy = Duration::ZERO;
    let mut sent = 0;
    for chunk in datagrams.chunks(CHUNK) {
        let started = Instant::now();
        sent += forward_batch(w, chunk);
        busy += started.elapsed();
        catch_up(w);
    }
    (busy, sent)
}

/// `span` of simulated time without media; returns the SFU's busy time.
#[inline(never)]
fn idle_run(w: &mut Webinar, span: Duration) -> Duration {
    let before = w.net.sfu_busy;
    let end = w.net.now + span;
    w.net.run_timers_until(end);
    w.net.sfu_busy - before
}

fn bench(c: &mut Criterion, w: &mut Webinar) {
    let mut group = c.benchmark_group("webinar");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    // Each viewer receives one layer: a host packet is forwarded to a third of them.
    let fanout = w.viewers.len() / 3;
    group.throughput(Throughput::Elements(fanout as u64));
    group.bench_function("forward", |b| {
        b.iter_custom(|iters| {
            // Fresh SRTP datagrams (replay protection rejects repeats), made untimed.
            let datagrams = w.net.layer_datagrams(w.host, iters as usize, SIZES);
            let (elapsed, sent) = forward_chunked(w, &datagrams);
            assert!(
                sent >= datagrams.len() * fanout,
                "{sent} datagrams out for {} in",
                datagrams.len()
            );
            elapsed
        })
    });
    // Let the forwarding burst's feedback settle before measuring the quiet meeting.
    let settle = w.net.now + Duration::from_secs(2);
    w.net.run_timers_until(settle);
    let (busy, wakeups, at) = (w.net.sfu_busy, w.net.sfu_wakeups, w.net.now);
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("idle_100ms", |b| {
        b.iter_custom(|iters| {
            (0..iters).fold(Duration::ZERO, |acc, _| {
                acc + idle_run(w, Duration::from_millis(100))
            })
        })
    });
    group.finish();
    let simulated = w.net.now.duration_since(at).as_secs_f64();
    let wakeups = w.net.sfu_wakeups - wakeups;
    eprintln!(
        "idle: {simulated:.1} s simulated, {:.0} SFU wake-ups per simulated second, {:.2} µs of SFU time per wake-up (incl. datagrams from clients)",
        wakeups as f64 / simulated,
        (w.net.sfu_busy - busy).as_secs_f64() * 1e6 / wakeups.max(1) as f64
    );
}

/// The forwarding that `WEBINAR_FIXED=forward` measures: aim `--toggle-collect` here.
#[inline(never)]
fn counted_forward(w: &mut Webinar, datagrams: &[BytesMut]) -> usize {
    forward_batch(w, datagrams)
}

/// Fixed work for instruction counting (see the module documentation).
fn fixed(mode: &str, w: &mut Webinar) {
    match mode {
        "forward" => {
            // A first second of media untimed (the NACK caches settle to the packet rate), then
            // one second counted.
            let warm = w.net.layer_datagrams(w.host, CHUNK, SIZES);
            forward_chunked(w, &warm);
            let datagrams = w.net.layer_datagrams(w.host, CHUNK, SIZES);
            let sent = counted_forward(w, &datagrams);
            eprintln!("forward: {} host datagrams, {sent} out", datagrams.len());
        }
        "idle" => {
            let settle = w.net.now + Duration::from_secs(2);
            w.net.run_timers_until(settle);
            let wakeups = w.net.sfu_wakeups;
            let busy = idle_run(w, Duration::from_secs(2));
            eprintln!(
                "idle: 2 s simulated, {} SFU wake-ups, {busy:?} SFU time",
                w.net.sfu_wakeups - wakeups
            );
        }
        other => panic!("WEBINAR_FIXED={other}: expected forward or idle"),
    }
}

fn main() {
    let mut w = webinar();
    if let Ok(mode) = std::env::var("WEBINAR_FIXED") {
        fixed(&mode, &mut w);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &mut w);
    c.final_summary();
}
