//! The whole media plane for one publisher fanning out to many subscribers: an SRTP datagram goes
//! into `Sfu::handle_datagram` (SRTP decrypt, the publisher's interceptors, track bookkeeping) and
//! comes out as one SRTP datagram per subscriber (down-track rewrite, NACK cache, the subscriber's
//! interceptors, SRTP encrypt). Real DTLS-SRTP sessions with native `rtc` peers are set up first in
//! the in-memory network of the engine tests; only the media plane's own work is timed.
//!
//! Criterion's throughput is in forwarded packets, so `thrpt` reads as forwarded packets per second
//! on one core and `time / N` as CPU time per forwarded packet.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use harness::Net;

fn meeting(subscribers: usize) -> Net {
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let mut subs = Vec::new();
    for i in 0..subscribers {
        subs.push(net.join(&format!("sub{i}"), false));
    }
    net.send(alice, true, true, 1200);
    assert!(
        net.run_until(Duration::from_secs(30), |n| subs
            .iter()
            .all(|s| n.clients[*s].connected.1)),
        "all subscribers connect"
    );
    // A keyframe after everyone is connected starts forwarding to all of them.
    net.send(alice, true, true, 1200);
    net.run_until(Duration::from_millis(200), |_| false);
    net
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_fanout");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 50] {
        let mut net = meeting(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                // Fresh SRTP datagrams from the publisher (replay protection rejects repeats),
                // made outside the timed part.
                let datagrams = net.publisher_datagrams(0, iters as usize, 1200);
                let (sfu_addr, from) = net.publisher_route(0);
                let start = Instant::now();
                let mut sent = 0usize;
                for d in &datagrams {
                    net.sfu.handle_datagram(net.now, sfu_addr, from, d);
                    while let Some(t) = net.sfu.poll_transmit() {
                        sent += black_box(t.data.len());
                    }
                }
                let elapsed = start.elapsed();
                black_box(sent);
                elapsed
            })
        });
    }
    group.finish();
}

/// Forwarding CPU per packet with the room recorded vs not (issue 5: within 10 %). Audio-sized
/// packets to 10 subscribers; the writer thread runs on the other core, as in production, so
/// what is timed is the tap's cost on the forwarding thread (header copy + `try_send`).
fn recording(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_recording");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().expect("tempdir");
    for recorded in [false, true] {
        let mut net = meeting(10);
        if recorded {
            net.sfu
                .start_recording(net.now, "room", dir.path())
                .expect("start recording");
        }
        group.throughput(Throughput::Elements(10));
        let name = if recorded { "recorded" } else { "not_recorded" };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let datagrams = net.publisher_datagrams(0, iters as usize, 1200);
                let (sfu_addr, from) = net.publisher_route(0);
                let start = Instant::now();
                let mut sent = 0usize;
                for d in &datagrams {
                    net.sfu.handle_datagram(net.now, sfu_addr, from, d);
                    while let Some(t) = net.sfu.poll_transmit() {
                        sent += black_box(t.data.len());
                    }
                }
                let elapsed = start.elapsed();
                black_box(sent);
                elapsed
            })
        });
        if recorded {
            net.sfu.stop_recording(net.now, "room");
            net.sfu.join_recordings();
            let degraded = std::iter::from_fn(|| net.sfu.poll_recording_event())
                .filter(|e| matches!(e, parley_sfu::RecordingEvent::Degraded { .. }))
                .count();
            eprintln!("recording: degraded events during the run: {degraded}");
        }
    }
    group.finish();
}

criterion_group!(benches, fanout, recording);
criterion_main!(benches);
