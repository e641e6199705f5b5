//! The node registry: every node writes `<prefix>:node:<id>` (its [`NodeInfo`] as JSON) every
//! heartbeat with a TTL a few heartbeats long, and adds its id to the set `<prefix>:nodes`. A
//! node whose key has expired is dead: nothing else needs to notice or clean up, and a node that
//! comes back simply writes its key again.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::routes::operator::node::ProcStat;

/// What a node reports about itself each heartbeat (also what the claim scripts read:
/// `draining` is looked at inside Redis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// The node's own http(s) base, reachable by clients (the redirect target).
    pub url: String,
    pub load: NodeLoad,
    pub draining: bool,
    /// When this was written, Unix milliseconds (for the operator; liveness is the key's TTL).
    pub heartbeat_ms: i64,
}

impl NodeInfo {
    /// The signaling WebSocket of this node.
    pub fn ws_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        format!("{base}/api/v1/ws")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// CPU used by the process over the last interval, in cores (1.0 = one core busy).
    pub cpu: f64,
    /// Participants in this node's meetings, including those reconnecting.
    pub participants: u64,
    /// Media forwarded (sent on the media socket) over the last interval, bits per second.
    pub bitrate_bps: u64,
}

/// Where a node's load comes from. The server's own probe reads the process and its counters;
/// the registry tests give fixed loads to see placement follow them.
pub trait LoadProbe: Send + Sync {
    fn sample(&self) -> NodeLoad;
}

/// A fixed load (an embedding that does not want CPU-driven placement, and tests).
pub struct FixedLoad(pub Mutex<NodeLoad>);

impl LoadProbe for FixedLoad {
    fn sample(&self) -> NodeLoad {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// The running server's load: CPU time from `/proc/self/stat`, the participants gauge and the
/// media plane's sent-bytes counter, turned into rates between two samples.
pub struct ProcessProbe {
    pub participants: std::sync::Arc<crate::metrics::Metrics>,
    pub media: std::sync::Arc<parley_sfu::SfuMetrics>,
    last: Mutex<Option<(Instant, u64, u64)>>,
}

impl ProcessProbe {
    pub fn new(
        participants: std::sync::Arc<crate::metrics::Metrics>,
        media: std::sync::Arc<parley_sfu::SfuMetrics>,
    ) -> Self {
        ProcessProbe {
            participants,
            media,
            last: Mutex::new(None),
        }
    }
}

/// `USER_HZ`, fixed at 100 for user space on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

impl LoadProbe for ProcessProbe {
    fn sample(&self) -> NodeLoad {
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let ticks = cpu_ticks().unwrap_or(0);
        let bytes = get(&self.media.bytes_out);
        let participants = get(&self.participants.participants);
        let Ok(mut last) = self.last.lock() else {
            return NodeLoad {
                participants,
                ..NodeLoad::default()
            };
        };
        let (cpu, bitrate_bps) = match *last {
            Some((at, t0, b0)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    (
                        ticks.saturating_sub(t0) as f64 / TICKS_PER_SECOND / secs,
                        (bytes.saturating_sub(b0) as f64 * 8.0 / secs) as u64,
                    )
                } else {
                    (0.0, 0)
                }
            }
            None => (0.0, 0),
        };
        *last = Some((now, ticks, bytes));
        NodeLoad {
            cpu,
            participants,
            bitrate_bps,
        }
    }
}

/// utime + stime of this process, in ticks (Linux; `None` elsewhere).
fn cpu_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    ProcStat::parse(&text).map(|p| p.cpu_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_follows_the_scheme() {
        let mut n = NodeInfo {
            id: "a".into(),
            url: "https://node-a.example.com/".into(),
            load: NodeLoad::default(),
            draining: false,
            heartbeat_ms: 0,
        };
        assert_eq!(n.ws_url(), "wss://node-a.example.com/api/v1/ws");
        n.url = "http://10.0.0.5:8080".into();
        assert_eq!(n.ws_url(), "ws://10.0.0.5:8080/api/v1/ws");
    }

    #[test]
    fn cpu_ticks_count_from_the_last_parenthesis() {
        let line = "4242 (par ley) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 \
                    17 0 98765 123456789 2000 18446744073709551615";
        assert_eq!(ProcStat::parse(line).map(|p| p.cpu_ticks), Some(380));
        assert_eq!(ProcStat::parse("4242 (parley) S 1 2"), None);
    }

    #[test]
    fn draining_is_a_plain_json_boolean() {
        // The claim scripts read it with cjson inside Redis.
        let n = NodeInfo {
            id: "a".into(),
            url: "http://a".into(),
            load: NodeLoad::default(),
            draining: true,
            heartbeat_ms: 1,
        };
        let v: serde_json::Value = serde_json::to_value(&n).expect("json");
        assert_eq!(v["draining"], serde_json::Value::Bool(true));
    }
}
