//! The report: one [`Window`] per system and size, written as JSON (for tools) and markdown
//! (for docs/PERFORMANCE.md), with the Parley / Janus ratio of each figure when both ran.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Options;

/// The figures of one measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub system: String,
    pub scenario: String,
    pub n: usize,
    pub participants: usize,
    pub publishers: usize,
    /// Participants whose subscriber connection received media.
    pub subscribers: usize,
    /// Of those, how many received nothing during the window.
    pub subscribers_without_media: usize,
    pub join_failures: usize,
    pub window_secs: f64,
    /// RTP packets per second arriving at the subscribers (retransmissions included).
    pub forwarded_pps: f64,
    /// Parley's own count (`parley_sfu_packets_out_total`), RTP and RTCP it sent.
    pub server_packets_out_pps: Option<f64>,
    pub publisher_sent_pps: f64,
    /// Server user + system CPU time over the window, in % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU time divided by the packets the subscribers received.
    pub cpu_us_per_packet: Option<f64>,
    /// The server ran inside the generator's process: CPU and memory include the generator.
    pub server_shares_process: bool,
    pub rss_baseline_mib: Option<f64>,
    pub rss_mib: Option<f64>,
    pub rss_kib_per_participant: Option<f64>,
    /// The anonymous part of the above (heap and stacks; see `server::Resident`).
    #[serde(default)]
    pub anon_kib_per_participant: Option<f64>,
    pub join_p50_ms: Option<f64>,
    pub join_p95_ms: Option<f64>,
    pub joins_timed: usize,
    pub loss_pct: f64,
    pub delay_p50_ms: Option<f64>,
    pub delay_p95_ms: Option<f64>,
    pub delay_p99_ms: Option<f64>,
    pub jitter_ms: f64,
    pub nacks_sent: u64,
    pub nacked_packets: u64,
    pub plis_sent: u64,
    pub keyframes_received: u64,
    pub plis_received_by_publishers: u64,
    pub nacks_received_by_publishers: u64,
    pub generator_cpu_pct: Option<f64>,
    pub loadavg_before: Option<f64>,
    pub loadavg_after: Option<f64>,
    /// Loss and p99 delay within the limits, and every subscriber received media.
    pub within_limits: bool,
    /// Packets each subscriber received since it joined (the smoke test checks them).
    pub received_packets: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub sizes: Vec<usize>,
    pub ramp: bool,
    pub window_secs: f64,
    pub settle_secs: f64,
    pub server_cpus: Option<String>,
    pub generator_cpus: Option<String>,
    /// The SRTP profile the simulated participants offered.
    pub srtp: String,
    pub cores: usize,
    pub loss_limit_pct: f64,
    pub p99_limit_ms: f64,
    pub windows: Vec<Window>,
    pub failures: Vec<String>,
}

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        Some(_) => "∞".into(),
        None => "—".into(),
    }
}

/// One line per window for the progress output.
pub fn one_line(w: &Window) -> String {
    format!(
        "{} {} n={}: {:.0} pkt/s fwd, cpu {}% ({} µs/pkt), rss {} (anon {}) KiB/participant, \
         join p50/p95 {}/{} ms, loss {:.3} %, delay p50/p95/p99 {}/{}/{} ms, nacks {}, plis {}, \
         generator cpu {}%",
        w.system,
        w.scenario,
        w.n,
        w.forwarded_pps,
        f(w.server_cpu_pct, 0),
        f(w.cpu_us_per_packet, 2),
        f(w.rss_kib_per_participant, 0),
        f(w.anon_kib_per_participant, 0),
        f(w.join_p50_ms, 0),
        f(w.join_p95_ms, 0),
        w.loss_pct,
        f(w.delay_p50_ms, 2),
        f(w.delay_p95_ms, 2),
        f(w.delay_p99_ms, 2),
        w.nacks_sent,
        w.plis_sent,
        f(w.generator_cpu_pct, 0),
    )
}

impl Report {
    pub fn new(o: &Options) -> Report {
        Report {
            scenario: o.scenario.name().to_owned(),
            sizes: o.sizes.clone(),
            ramp: o.ramp,
            window_secs: o.window.as_secs_f64(),
            settle_secs: o.settle.as_secs_f64(),
            server_cpus: o.server_cpus.clone(),
            generator_cpus: o.generator_cpus.clone(),
            srtp: o.srtp.name().to_owned(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loss_limit_pct: o.loss_limit_pct,
            p99_limit_ms: o.p99_limit_ms,
            windows: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### {} {}{}\n",
            self.scenario,
            if self.ramp { "ramp " } else { "" },
            self.sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "Window {:.0} s after {:.0} s settling; server CPUs {}, generator CPUs {}, {} cores; \
             participants offer SRTP {} only.\n",
            self.window_secs,
            self.settle_secs,
            self.server_cpus.as_deref().unwrap_or("not pinned"),
            self.generator_cpus.as_deref().unwrap_or("not pinned"),
            self.cores,
            self.srtp
        );
        s.push_str(
            "| server | n | participants | fwd pkt/s | server CPU | CPU µs/pkt \
             | RSS KiB/participant | anon KiB/participant | join p50 / p95 ms | loss % \
             | delay p50 / p95 / p99 ms | jitter ms | NACKs | PLIs | generator CPU | load |\n",
        );
        s.push_str(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for w in &self.windows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {}% | {} | {} | {} | {} / {} | {:.3} | {} / {} / {} \
                 | {:.2} | {} | {} | {}% | {}→{} |",
                w.system,
                w.n,
                w.participants,
                w.forwarded_pps,
                f(w.server_cpu_pct, 0),
                f(w.cpu_us_per_packet, 2),
                f(w.rss_kib_per_participant, 0),
                f(w.anon_kib_per_participant, 0),
                f(w.join_p50_ms, 0),
                f(w.join_p95_ms, 0),
                w.loss_pct,
                f(w.delay_p50_ms, 2),
                f(w.delay_p95_ms, 2),
                f(w.delay_p99_ms, 2),
                w.jitter_ms,
                w.nacks_sent,
                w.plis_sent,
                f(w.generator_cpu_pct, 0),
                f(w.loadavg_before, 1),
                f(w.loadavg_after, 1),
            );
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            s.push_str(
                "\nParley / Janus (below 1: Parley uses less, or is faster):\n\n\
                 | n | fwd pkt/s | CPU µs/pkt | RSS/participant | anon/participant | join p95 \
                 | loss | delay p99 |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            s.push_str(&ratios);
        }
        for e in &self.failures {
            let _ = writeln!(s, "\nFailed: {e}");
        }
        s
    }

    fn ratios(&self) -> String {
        let mut s = String::new();
        let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "—".into(),
        };
        for p in self.windows.iter().filter(|w| w.system == "Parley") {
            let Some(j) = self
                .windows
                .iter()
                .find(|w| w.system == "Janus" && w.n == p.n)
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                p.n,
                r(Some(p.forwarded_pps), Some(j.forwarded_pps)),
                r(p.cpu_us_per_packet, j.cpu_us_per_packet),
                r(p.rss_kib_per_participant, j.rss_kib_per_participant),
                r(p.anon_kib_per_participant, j.anon_kib_per_participant),
                r(p.join_p95_ms, j.join_p95_ms),
                r(Some(p.loss_pct), Some(j.loss_pct)),
                r(p.delay_p99_ms, j.delay_p99_ms),
            );
        }
        s
    }

    /// Writes `report.json` and `report.md` into `dir` (named after the scenario).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let base = format!(
            "{}-{}",
            self.scenario,
            self.sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("_")
        );
        std::fs::write(
            dir.join(format!("{base}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join(format!("{base}.md")), self.markdown())?;
        Ok(())
    }
}
