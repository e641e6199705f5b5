//! The node's load for the operator console: what the server already counts (the signaling
//! gauges of [`crate::metrics::Metrics`], the media plane's [`parley_sfu::SfuMetrics`]) plus
//! the process's CPU time, memory and uptime from `/proc` (Linux; elsewhere those are null).
//!
//! Counters are cumulative and stamped with the sampling time: the console turns two samples
//! into rates (packets and bits per second, CPU share), so the server keeps no per-viewer
//! state and two operators watching at once see the same figures.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use parley_sfu::SfuMetrics;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::routes::licensing::operator;
use crate::startup::AppState;

/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which Linux fixes at 100 for user
/// space on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStatus {
    pub version: String,
    /// When the figures were read, Unix milliseconds.
    pub sampled_at_ms: i64,
    /// Seconds since the server process started.
    pub uptime_seconds: Option<u64>,
    pub signaling: SignalingLoad,
    pub media: MediaLoad,
    pub process: ProcessLoad,
    pub host: HostLoad,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignalingLoad {
    /// Meetings with at least one participant.
    pub meetings_active: u64,
    /// Participants in meetings, including those reconnecting.
    pub participants: u64,
    pub ws_connections: u64,
}

/// The media plane (SFU). Counters (`*_total`-like) only grow.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaLoad {
    pub rooms: u64,
    pub participants: u64,
    pub tracks: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Forwarded: datagrams sent on the media socket.
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_dropped: u64,
    pub retransmissions: u64,
    pub nacks_received: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessLoad {
    /// User plus system CPU time of the process so far.
    pub cpu_seconds: Option<f64>,
    /// Resident memory.
    pub memory_rss_bytes: Option<u64>,
    pub threads: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostLoad {
    /// CPUs the process may use.
    pub cpus: u32,
    pub load_average_1m: Option<f64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
}

/// The node's load now (operator).
#[utoipa::path(get, path = "/api/v1/operator/node", tag = "operator", security(("bearer" = [])),
    responses((status = 200, body = NodeStatus), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn status(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<NodeStatus>, ApiError> {
    operator(&app, &headers).await?;
    let m = &app.metrics;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let sfu: &SfuMetrics = app.sfu.metrics();
    let proc_stat = read("/proc/self/stat").and_then(|s| ProcStat::parse(&s));
    let proc_status = read("/proc/self/status");
    let meminfo = read("/proc/meminfo");
    let host_uptime =
        read("/proc/uptime").and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    Ok(Json(NodeStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sampled_at_ms: chrono::Utc::now().timestamp_millis(),
        uptime_seconds: match (&proc_stat, host_uptime) {
            (Some(p), Some(up)) => {
                Some((up - p.start_ticks as f64 / TICKS_PER_SECOND).max(0.0) as u64)
            }
            _ => None,
        },
        signaling: SignalingLoad {
            meetings_active: get(&m.meetings_active),
            participants: get(&m.participants),
            ws_connections: get(&m.ws_connections),
        },
        media: MediaLoad {
            rooms: get(&sfu.rooms),
            participants: get(&sfu.participants),
            tracks: get(&sfu.tracks),
            packets_in: get(&sfu.packets_in),
            bytes_in: get(&sfu.bytes_in),
            packets_out: get(&sfu.packets_out),
            bytes_out: get(&sfu.bytes_out),
            packets_dropped: get(&sfu.packets_dropped),
            retransmissions: get(&sfu.retransmissions),
            nacks_received: get(&sfu.nacks_received),
        },
        process: ProcessLoad {
            cpu_seconds: proc_stat
                .as_ref()
                .map(|p| p.cpu_ticks as f64 / TICKS_PER_SECOND),
            memory_rss_bytes: proc_status.as_deref().and_then(|s| kib_field(s, "VmRSS:")),
            threads: proc_stat.as_ref().map(|p| p.threads),
        },
        host: HostLoad {
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
            load_average_1m: read("/proc/loadavg")
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
            memory_total_bytes: meminfo.as_deref().and_then(|s| kib_field(s, "MemTotal:")),
            memory_available_bytes: meminfo
                .as_deref()
                .and_then(|s| kib_field(s, "MemAvailable:")),
        },
    }))
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The fields of `/proc/self/stat` the console shows.
#[derive(Debug, PartialEq)]
pub(crate) struct ProcStat {
    /// utime + stime.
    pub(crate) cpu_ticks: u64,
    threads: u64,
    /// Start time after boot.
    start_ticks: u64,
}

impl ProcStat {
    /// The command name (field 2) is in parentheses and may itself hold spaces and `)`, so the
    /// fields are counted from the last `)`: utime and stime are fields 14 and 15, the thread
    /// count 20, the start time 22.
    pub(crate) fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3.
        let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(ProcStat {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            threads: field(20)?,
            start_ticks: field(22)?,
        })
    }
}

/// A `Name:   123 kB` line of `/proc/self/status` or `/proc/meminfo`, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        // A command name with a space and a `)` of its own.
        let line = "4242 (par ley) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 \
                    17 0 98765 123456789 2000 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                cpu_ticks: 380,
                threads: 17,
                start_ticks: 98765
            })
        );
        assert_eq!(ProcStat::parse("4242 (parley) S 1 2"), None);
        assert_eq!(ProcStat::parse("no parenthesis"), None);
    }

    #[test]
    fn kib_fields_become_bytes() {
        let status = "Name:\tparley\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t17\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_reads_on_linux() {
        if cfg!(target_os = "linux") {
            let p = ProcStat::parse(&read("/proc/self/stat").unwrap()).unwrap();
            assert!(p.threads >= 1);
            assert!(kib_field(&read("/proc/self/status").unwrap(), "VmRSS:").unwrap() > 0);
        }
    }
}
