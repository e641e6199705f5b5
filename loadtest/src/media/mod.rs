//! `media`: simulated meeting participants with the webrtc-rs stack against the real signaling
//! of Parley, and the same scenarios against Janus's VideoRoom for comparison.
//!
//! Scenarios (`n` is the scenario's size):
//! - `webinar`: one publisher (Opus + three-layer VP8 simulcast), `n` subscribers whose render
//!   sizes cycle through the three layers (320×180, 640×360, 1280×720);
//! - `meeting`: `n` participants who all publish and all subscribe, each tile of a grid;
//! - `audio`: ten audio-only publishers who hear each other, and `n` listeners.
//!
//! Each size is measured over a window after the joins settled: forwarded packets per second
//! (counted by the subscribers; for Parley also by its /metrics), server CPU time per forwarded
//! packet (/proc/<pid>/stat), server memory per participant (VmRSS, and its anonymous part
//! RssAnon, each over the idle baseline), join
//! time (WebSocket open → first media packet, for subscribe-only participants), loss, one-way
//! delay (the publisher's send stamp in each payload), jitter, NACKs and PLIs. A ramp measures
//! growing sizes until loss exceeds 1 % or p99 delay 50 ms.

pub mod janus;
pub mod parley;
pub mod payload;
pub mod peer;
pub mod report;
pub mod server;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

pub use peer::Srtp;
use peer::{Peer, Publish, ReceiveSnapshot, SendCounters};
use report::{Report, Window};
use server::Server;
use stats::{Counters, Histogram};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Webinar,
    Meeting,
    AudioRoom,
}

impl Scenario {
    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "webinar" => Some(Scenario::Webinar),
            "meeting" | "video" => Some(Scenario::Meeting),
            "audio" | "audio-room" => Some(Scenario::AudioRoom),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Webinar => "webinar",
            Scenario::Meeting => "meeting",
            Scenario::AudioRoom => "audio",
        }
    }

    /// Participants at size `n`.
    pub fn participants(self, n: usize) -> usize {
        match self {
            Scenario::Webinar => 1 + n,
            Scenario::Meeting => n,
            Scenario::AudioRoom => AUDIO_PUBLISHERS + n,
        }
    }

    fn publishers(self, n: usize) -> usize {
        match self {
            Scenario::Webinar => 1,
            Scenario::Meeting => n,
            Scenario::AudioRoom => AUDIO_PUBLISHERS,
        }
    }

    /// What participant `i` does when the scenario has size `n`.
    fn role(self, i: usize, n: usize, opts: &Options) -> Role {
        let (render, srtp) = (opts.render, opts.srtp);
        const CAMERA: Publish = Publish {
            audio: true,
            video_layers: 3,
        };
        match self {
            Scenario::Webinar if i == 0 => Role {
                publish: Some(CAMERA),
                subscribe: false,
                render: None,
                srtp,
            },
            Scenario::Webinar => Role {
                publish: None,
                subscribe: true,
                render: Some(render.unwrap_or(RENDER_MIX[(i - 1) % RENDER_MIX.len()])),
                srtp,
            },
            Scenario::Meeting => {
                // A gallery of the others on a 1280×720 stage.
                let others = n.saturating_sub(1).max(1);
                let cols = (others as f64).sqrt().ceil() as u32;
                Role {
                    publish: Some(CAMERA),
                    subscribe: true,
                    render: Some(render.unwrap_or((1280 / cols, 720 / cols))),
                    srtp,
                }
            }
            Scenario::AudioRoom => Role {
                publish: (i < AUDIO_PUBLISHERS).then_some(Publish {
                    audio: true,
                    video_layers: 0,
                }),
                subscribe: true,
                render: None,
                srtp,
            },
        }
    }
}

const AUDIO_PUBLISHERS: usize = 10;
/// Webinar viewers: a thumbnail, a half-screen window and a full-screen stage, in turn.
const RENDER_MIX: [(u32, u32); 3] = [(320, 180), (640, 360), (1280, 720)];

/// What one simulated participant does.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub publish: Option<Publish>,
    pub subscribe: bool,
    /// Render size of every remote video (drives the layer it asks for).
    pub render: Option<(u32, u32)>,
    /// The SRTP profile its connections offer.
    pub srtp: Srtp,
}

/// A participant in the meeting.
pub struct Joined {
    pub id: String,
    pub ws_open: Instant,
    pub publisher: Option<Arc<Peer>>,
    pub subscriber: Option<Arc<Peer>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Parley,
    Janus,
}

/// Which Parley to test.
#[derive(Debug, Clone)]
pub enum ParleyTarget {
    /// Start this binary as a child process (the default: `PARLEY_BIN` or target/release).
    Binary(PathBuf),
    /// Start it inside this process (smoke test; CPU and memory are then shared).
    InProcess,
    /// A running server at this URL; its pid for the /proc figures, when known.
    External { url: String, pid: Option<u32> },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// One size for a fixed run; several for a ramp (measured in turn, growing the meeting).
    pub sizes: Vec<usize>,
    /// Stop at the first size over the limits.
    pub ramp: bool,
    pub window: Duration,
    /// Wait after the joins before measuring (Parley climbs simulcast layers one per 3 s).
    pub settle: Duration,
    pub systems: Vec<System>,
    pub parley: ParleyTarget,
    pub janus_script: PathBuf,
    /// CPU list the server is pinned to (`taskset -c`), e.g. "0".
    pub server_cpus: Option<String>,
    /// CPU list this generator runs on (set by the caller; reported).
    pub generator_cpus: Option<String>,
    pub join_concurrency: usize,
    pub render: Option<(u32, u32)>,
    /// What the simulated participants' connections offer for SRTP.
    pub srtp: Srtp,
    pub loss_limit_pct: f64,
    pub p99_limit_ms: f64,
    pub out_dir: Option<PathBuf>,
}

impl Options {
    pub fn new(scenario: Scenario, sizes: Vec<usize>) -> Options {
        Options {
            scenario,
            sizes,
            ramp: false,
            window: Duration::from_secs(10),
            settle: Duration::from_secs(if scenario == Scenario::AudioRoom {
                3
            } else {
                8
            }),
            systems: vec![System::Parley],
            parley: ParleyTarget::Binary(server::default_parley_bin()),
            janus_script: server::default_janus_script(),
            server_cpus: None,
            generator_cpus: None,
            join_concurrency: 8,
            render: None,
            srtp: Srtp::default(),
            loss_limit_pct: 1.0,
            p99_limit_ms: 50.0,
            out_dir: None,
        }
    }
}

/// Limits on what the generator may be asked to simulate.
const MAX_SIZE: usize = 1000;
const MAX_WINDOW: Duration = Duration::from_secs(600);
const FIRST_MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs every system the options name and returns the report (also written to `out_dir`).
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    if opts.sizes.is_empty() || opts.sizes.iter().any(|&n| n == 0 || n > MAX_SIZE) {
        bail!("sizes must be 1..={MAX_SIZE}");
    }
    if opts.window.is_zero() || opts.window > MAX_WINDOW {
        bail!("the window must be 1 s ..= {MAX_WINDOW:?}");
    }
    peer::epoch();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut report = Report::new(opts);
    for system in &opts.systems {
        let mut server = match system {
            System::Parley => match &opts.parley {
                ParleyTarget::Binary(bin) => {
                    server::start_parley(bin, opts.server_cpus.as_deref(), &http).await?
                }
                ParleyTarget::InProcess => server::start_parley_in_process().await?,
                ParleyTarget::External { url, pid } => {
                    server::external("Parley", url.trim_end_matches('/').to_owned(), *pid)
                }
            },
            System::Janus => {
                server::start_janus(&opts.janus_script, opts.server_cpus.as_deref()).await?
            }
        };
        eprintln!(
            "{}: server at {} (pid {:?})",
            server.name, server.url, server.pid
        );
        let result = run_system(opts, *system, &server, &http).await;
        let log = server.log_path();
        server.stop().await;
        // Keep the server's output next to the report (the temporary directory goes away).
        let log = match (&log, &opts.out_dir) {
            (Some(l), Some(dir)) if l.exists() => {
                let kept = dir.join(format!(
                    "{}-{}.log",
                    opts.scenario.name(),
                    server_name(*system)
                ));
                let _ = std::fs::create_dir_all(dir);
                std::fs::copy(l, &kept).ok().map(|_| kept)
            }
            _ => None,
        };
        drop(server);
        match result {
            Ok(windows) => report.windows.extend(windows),
            Err(e) => {
                let hint = log.map(|p| format!(" (server log was {})", p.display()));
                eprintln!("{system:?}: {e:#}{}", hint.unwrap_or_default());
                report.failures.push(format!("{system:?}: {e:#}"));
            }
        }
    }
    if let Some(dir) = &opts.out_dir {
        report.write(dir)?;
    }
    Ok(report)
}

fn server_name(s: System) -> &'static str {
    match s {
        System::Parley => "parley",
        System::Janus => "janus",
    }
}

struct Sample {
    at: Instant,
    cpu: Option<f64>,
    own_cpu: Option<f64>,
    packets_out: Option<f64>,
    received: Vec<ReceiveSnapshot>,
    sent: SendCounters,
    load: Option<f64>,
}

async fn sample(server: &Server, http: &reqwest::Client, people: &[Joined]) -> Sample {
    let packets_out = if server.name == "Parley" {
        server::parley_packets_out(http, &server.url).await
    } else {
        None
    };
    let mut sent = SendCounters::default();
    for p in people.iter().filter_map(|p| p.publisher.as_ref()) {
        let c = p.send_counters();
        sent.packets += c.packets;
        sent.plis_received += c.plis_received;
        sent.firs_received += c.firs_received;
        sent.nacks_received += c.nacks_received;
        sent.keyframes += c.keyframes;
        sent.send_errors += c.send_errors;
    }
    Sample {
        at: Instant::now(),
        cpu: server.pid.and_then(server::cpu_secs),
        own_cpu: server::cpu_secs(std::process::id()),
        packets_out,
        received: people
            .iter()
            .map(|p| {
                p.subscriber
                    .as_ref()
                    .map(|s| s.receive_snapshot())
                    .unwrap_or_default()
            })
            .collect(),
        sent,
        load: server::loadavg(),
    }
}

/// Joins participants `from..to` of size `n`; returns them and the join times of the
/// subscribe-only ones. Failures are counted, not fatal (a server at its limit refuses some).
#[allow(clippy::too_many_arguments)]
async fn join_range(
    opts: &Options,
    system: System,
    server: &Server,
    room: &Room,
    from: usize,
    to: usize,
    n: usize,
    stop: &CancellationToken,
) -> (Vec<(usize, Joined, Option<u64>)>, Vec<Duration>, usize) {
    let scenario = opts.scenario;
    let publishers = scenario.publishers(n);
    let mut out = Vec::new();
    let mut times = Vec::new();
    let mut failures = 0;
    // Publishers one by one (each up before the next), the rest concurrently.
    let split = publishers.clamp(from, to);
    let one = |i: usize, role: Role, feeds: Vec<u64>| {
        let stop = stop.clone();
        async move {
            let name = format!("load-{i}");
            let r = match (system, room) {
                (System::Parley, Room::Parley(m)) => {
                    parley::join(m, &name, role, stop).await.map(|j| (j, None))
                }
                (System::Janus, Room::Janus(id, _)) => {
                    janus::join(&server.url, server.media_ip, *id, &name, role, &feeds, stop).await
                }
                _ => unreachable!("room matches system"),
            };
            let r = match r {
                Ok((j, feed)) if role.publish.is_none() && role.subscribe => {
                    // Join time: until the first media packet arrives.
                    let sub = j.subscriber.clone();
                    let until = Instant::now() + FIRST_MEDIA_TIMEOUT;
                    let mut t = None;
                    while let Some(s) = &sub {
                        if let Some(f) = s.first_media() {
                            t = Some(f.duration_since(j.ws_open));
                            break;
                        }
                        if Instant::now() > until {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    match t {
                        Some(t) => Ok((j, feed, Some(t))),
                        None => Err(anyhow::anyhow!("no media within {FIRST_MEDIA_TIMEOUT:?}")),
                    }
                }
                Ok((j, feed)) => Ok((j, feed, None)),
                Err(e) => Err(e),
            };
            (i, r)
        }
    };
    let janus_meeting = system == System::Janus && scenario == Scenario::Meeting;
    for i in from..split {
        let mut role = scenario.role(i, n, opts);
        if janus_meeting {
            // Publish first; the subscriptions follow once every feed exists (below).
            role.subscribe = false;
        }
        let feeds = room.feeds();
        match one(i, role, feeds).await {
            (i, Ok((j, feed, t))) => {
                if let Some(f) = feed {
                    room.add_feed(f);
                }
                times.extend(t);
                out.push((i, j, feed));
            }
            (i, Err(e)) => {
                eprintln!("participant {i}: {e:#}");
                failures += 1;
            }
        }
    }
    let feeds = room.feeds();
    let rest = futures::stream::iter(split..to)
        .map(|i| one(i, scenario.role(i, n, opts), feeds.clone()))
        .buffer_unordered(opts.join_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for (i, r) in rest {
        match r {
            Ok((j, feed, t)) => {
                times.extend(t);
                out.push((i, j, feed));
            }
            Err(e) => {
                eprintln!("participant {i}: {e:#}");
                failures += 1;
            }
        }
    }
    if janus_meeting {
        // Each participant's subscriber side: everyone else's feed.
        let all: Vec<(usize, Option<u64>)> = out.iter().map(|(i, _, f)| (*i, *f)).collect();
        let subs = futures::stream::iter(all.clone())
            .map(|(i, own)| {
                let feeds: Vec<u64> = all
                    .iter()
                    .filter_map(|(_, f)| *f)
                    .filter(|f| Some(*f) != own)
                    .collect();
                let role = Role {
                    publish: None,
                    ..scenario.role(i, n, opts)
                };
                let stop = stop.clone();
                let url = server.url.clone();
                let ip = server.media_ip;
                let room = room.janus_id();
                async move {
                    let r =
                        janus::join(&url, ip, room, &format!("load-{i}-sub"), role, &feeds, stop)
                            .await;
                    (i, r)
                }
            })
            .buffer_unordered(opts.join_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (i, r) in subs {
            match r {
                Ok((j, _)) => {
                    if let Some(p) = out.iter_mut().find(|(k, _, _)| *k == i) {
                        p.1.subscriber = j.subscriber;
                    }
                }
                Err(e) => {
                    eprintln!("participant {i} (subscriptions): {e:#}");
                    failures += 1;
                }
            }
        }
    }
    (out, times, failures)
}

enum Room {
    Parley(parley::Meeting),
    Janus(u64, std::sync::Mutex<Vec<u64>>),
}

impl Room {
    fn feeds(&self) -> Vec<u64> {
        match self {
            Room::Janus(_, f) => f.lock().map(|f| f.clone()).unwrap_or_default(),
            Room::Parley(_) => Vec::new(),
        }
    }
    fn add_feed(&self, feed: u64) {
        if let Room::Janus(_, f) = self
            && let Ok(mut f) = f.lock()
        {
            f.push(feed);
        }
    }
    fn janus_id(&self) -> u64 {
        match self {
            Room::Janus(id, _) => *id,
            Room::Parley(_) => 0,
        }
    }
}

async fn run_system(
    opts: &Options,
    system: System,
    server: &Server,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<Window>> {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    // The idle server's memory, after start-up settled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_rss = server.pid.and_then(server::resident_kib);
    let largest = opts.sizes.iter().copied().max().unwrap_or(1);
    let room = match system {
        System::Parley => Room::Parley(
            parley::Meeting::create(&server.url, http.clone())
                .await
                .context("creating the meeting")?,
        ),
        System::Janus => {
            let publishers = opts.scenario.publishers(largest) + 1;
            Room::Janus(
                janus::create_room(&server.url, publishers.max(16), stop.clone())
                    .await
                    .context("creating the room")?,
                std::sync::Mutex::new(Vec::new()),
            )
        }
    };
    let mut people: Vec<Joined> = Vec::new();
    let mut windows = Vec::new();
    let mut joined_so_far = 0;
    for &n in &opts.sizes {
        let target = opts.scenario.participants(n);
        if target <= joined_so_far {
            continue;
        }
        let load_before = server::loadavg();
        let t0 = Instant::now();
        let (new, join_times, failures) =
            join_range(opts, system, server, &room, joined_so_far, target, n, &stop).await;
        joined_so_far = target;
        people.extend(new.into_iter().map(|(_, j, _)| j));
        eprintln!(
            "{system:?} {} n={n}: {} participants ({failures} failed) joined in {:.1}s",
            opts.scenario.name(),
            people.len(),
            t0.elapsed().as_secs_f64()
        );
        tokio::time::sleep(opts.settle).await;
        let s0 = sample(server, http, &people).await;
        tokio::time::sleep(opts.window).await;
        let s1 = sample(server, http, &people).await;
        let rss = server.pid.and_then(server::resident_kib);
        let w = window(
            opts,
            system,
            server,
            n,
            &people,
            &s0,
            &s1,
            baseline_rss,
            rss,
            join_times,
            failures,
            load_before,
        );
        eprintln!("{}", report::one_line(&w));
        let over = !w.within_limits;
        windows.push(w);
        if opts.ramp && over {
            break;
        }
        if failures * 10 > target {
            eprintln!("more than 10 % of the joins failed: stopping here");
            break;
        }
    }
    stop.cancel();
    for p in &people {
        for peer in [&p.publisher, &p.subscriber].into_iter().flatten() {
            peer.close();
        }
    }
    // Let the leaves go out before the server is stopped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(windows)
}

#[allow(clippy::too_many_arguments)]
fn window(
    opts: &Options,
    system: System,
    server: &Server,
    n: usize,
    people: &[Joined],
    s0: &Sample,
    s1: &Sample,
    baseline_rss: Option<server::Resident>,
    rss: Option<server::Resident>,
    mut join_times: Vec<Duration>,
    failures: usize,
    load_before: Option<f64>,
) -> Window {
    let secs = s1.at.duration_since(s0.at).as_secs_f64();
    let mut counters = Counters::default();
    let mut delay = Histogram::default();
    let mut subscribers = 0;
    let mut starving = 0;
    for (a, b) in s0.received.iter().zip(&s1.received) {
        let c = b.counters.since(&a.counters);
        if b.first_media.is_some() {
            subscribers += 1;
            if c.packets == 0 {
                starving += 1;
            }
        }
        counters.add(&c);
        delay.merge(&b.delay.since(&a.delay));
    }
    let forwarded = counters.packets as f64;
    let cpu = match (s0.cpu, s1.cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let own = match (s0.own_cpu, s1.own_cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let loss_pct = if counters.expected > 0 {
        (counters.expected.saturating_sub(counters.unique)) as f64 * 100.0
            / counters.expected as f64
    } else {
        0.0
    };
    join_times.sort_unstable();
    let pct = |v: &[Duration], p: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        Some(v[rank.min(v.len()) - 1].as_secs_f64() * 1000.0)
    };
    let p99 = delay.percentile_ms(99.0);
    let participants = people.len();
    let per_participant = |part: fn(&server::Resident) -> u64| match (&baseline_rss, &rss) {
        (Some(b), Some(r)) if participants > 0 => {
            Some(part(r).saturating_sub(part(b)) as f64 / participants as f64)
        }
        _ => None,
    };
    let within_limits = loss_pct <= opts.loss_limit_pct
        && p99.is_some_and(|p| p <= opts.p99_limit_ms)
        && starving == 0;
    Window {
        system: format!("{system:?}"),
        scenario: opts.scenario.name().to_owned(),
        n,
        participants,
        publishers: people.iter().filter(|p| p.publisher.is_some()).count(),
        subscribers,
        subscribers_without_media: starving,
        join_failures: failures,
        window_secs: secs,
        forwarded_pps: forwarded / secs,
        server_packets_out_pps: match (s0.packets_out, s1.packets_out) {
            (Some(a), Some(b)) => Some((b - a) / secs),
            _ => None,
        },
        publisher_sent_pps: (s1.sent.packets - s0.sent.packets) as f64 / secs,
        server_cpu_pct: cpu.map(|c| c * 100.0 / secs),
        cpu_us_per_packet: cpu.filter(|_| forwarded > 0.0).map(|c| c * 1e6 / forwarded),
        server_shares_process: server.shares_process,
        rss_baseline_mib: baseline_rss.map(|k| k.total as f64 / 1024.0),
        rss_mib: rss.map(|k| k.total as f64 / 1024.0),
        rss_kib_per_participant: per_participant(|r| r.total),
        anon_kib_per_participant: per_participant(|r| r.anon),
        join_p50_ms: pct(&join_times, 50.0),
        join_p95_ms: pct(&join_times, 95.0),
        joins_timed: join_times.len(),
        loss_pct,
        delay_p50_ms: delay.percentile_ms(50.0),
        delay_p95_ms: delay.percentile_ms(95.0),
        delay_p99_ms: p99,
        jitter_ms: if counters.jitter_streams > 0 {
            counters.jitter_us_sum / counters.jitter_streams as f64 / 1000.0
        } else {
            0.0
        },
        nacks_sent: counters.nacks_sent,
        nacked_packets: counters.nacked_packets,
        plis_sent: counters.plis_sent,
        keyframes_received: counters.keyframes,
        plis_received_by_publishers: s1.sent.plis_received - s0.sent.plis_received
            + (s1.sent.firs_received - s0.sent.firs_received),
        nacks_received_by_publishers: s1.sent.nacks_received - s0.sent.nacks_received,
        generator_cpu_pct: own.map(|c| c * 100.0 / secs),
        loadavg_before: load_before,
        loadavg_after: s1.load,
        within_limits,
        received_packets: people
            .iter()
            .zip(&s1.received)
            .filter(|(p, _)| p.subscriber.is_some())
            .map(|(_, r)| r.counters.packets)
            .collect(),
    }
}
