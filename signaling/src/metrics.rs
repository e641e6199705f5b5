//! Signaling counters and the Prometheus text exposition (hand-written: a dozen series do not need
//! a registry, and the media plane's counters are plain atomics we read at scrape time).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parley_sfu::SfuMetrics;

/// Upper bounds (seconds) of the join latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Counters owned by the signaling layer.
#[derive(Default)]
pub struct Metrics {
    pub ws_connections: AtomicU64,
    pub ws_messages_in: AtomicU64,
    pub ws_messages_out: AtomicU64,
    pub ws_slow_consumers: AtomicU64,
    pub meetings_active: AtomicU64,
    pub participants: AtomicU64,
    pub meetings_created: AtomicU64,
    pub chat_messages: AtomicU64,
    /// Protocol errors by kind (`malformed_json`, `unknown_type`, `flood`, ...). A mutex is fine:
    /// it is touched only on errors, never on the media path.
    ws_protocol_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Runs of scheduled jobs this node claimed and ran, by job (see `schedule`).
    scheduled_runs: Mutex<BTreeMap<&'static str, u64>>,
    /// `join` received → `joined` sent.
    pub join_latency: Histogram,
    /// `join` received → first peer connection of the participant connected.
    pub join_media_latency: Histogram,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        // Saturating: a gauge must not wrap if an increment was missed.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
    }

    pub fn protocol_error(&self, kind: &'static str) {
        if let Ok(mut m) = self.ws_protocol_errors.lock() {
            *m.entry(kind).or_insert(0) += 1;
        }
    }

    pub fn scheduled_run(&self, job: &'static str) {
        if let Ok(mut m) = self.scheduled_runs.lock() {
            *m.entry(job).or_insert(0) += 1;
        }
    }

    pub fn render(&self, sfu: &SfuMetrics) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "parley_meetings_active",
            "gauge",
            "Meetings with at least one participant (signaling).",
            get(&self.meetings_active),
        );
        one(
            "parley_meetings_created_total",
            "counter",
            "Meetings created.",
            get(&self.meetings_created),
        );
        one(
            "parley_participants",
            "gauge",
            "Participants in meetings (signaling, including those in the resume grace period).",
            get(&self.participants),
        );
        one(
            "parley_ws_connections",
            "gauge",
            "Open WebSocket connections.",
            get(&self.ws_connections),
        );
        one(
            "parley_ws_messages_in_total",
            "counter",
            "WebSocket frames received.",
            get(&self.ws_messages_in),
        );
        one(
            "parley_ws_messages_out_total",
            "counter",
            "WebSocket messages sent.",
            get(&self.ws_messages_out),
        );
        one(
            "parley_ws_slow_consumers_total",
            "counter",
            "Connections dropped because their outbound queue was full.",
            get(&self.ws_slow_consumers),
        );
        one(
            "parley_chat_messages_total",
            "counter",
            "Chat messages stored.",
            get(&self.chat_messages),
        );
        one(
            "parley_sfu_rooms",
            "gauge",
            "Rooms on the media plane.",
            get(&sfu.rooms),
        );
        one(
            "parley_sfu_participants",
            "gauge",
            "Participants on the media plane.",
            get(&sfu.participants),
        );
        one(
            "parley_sfu_tracks",
            "gauge",
            "Published tracks.",
            get(&sfu.tracks),
        );
        one(
            "parley_sfu_packets_in_total",
            "counter",
            "Datagrams received on the media socket.",
            get(&sfu.packets_in),
        );
        one(
            "parley_sfu_bytes_in_total",
            "counter",
            "Bytes received on the media socket.",
            get(&sfu.bytes_in),
        );
        one(
            "parley_sfu_packets_out_total",
            "counter",
            "Datagrams sent on the media socket.",
            get(&sfu.packets_out),
        );
        one(
            "parley_sfu_bytes_out_total",
            "counter",
            "Bytes sent on the media socket.",
            get(&sfu.bytes_out),
        );
        one(
            "parley_sfu_own_srtp_connections_total",
            "counter",
            "Subscriber connections whose forwarded media the SFU encrypted itself (AES-GCM).",
            get(&sfu.own_srtp_connections),
        );
        one(
            "parley_sfu_rtc_srtp_connections_total",
            "counter",
            "Subscriber connections whose forwarded media went through the WebRTC stack's SRTP (other profiles).",
            get(&sfu.rtc_srtp_connections),
        );
        one(
            "parley_sfu_nacks_received_total",
            "counter",
            "NACKs received from subscribers.",
            get(&sfu.nacks_received),
        );
        one(
            "parley_sfu_retransmissions_total",
            "counter",
            "Packets retransmitted from the NACK cache.",
            get(&sfu.retransmissions),
        );
        one(
            "parley_sfu_plis_sent_total",
            "counter",
            "PLIs sent to publishers.",
            get(&sfu.plis_sent),
        );
        one(
            "parley_sfu_plis_received_total",
            "counter",
            "PLIs received from subscribers.",
            get(&sfu.plis_received),
        );
        one(
            "parley_sfu_packets_dropped_total",
            "counter",
            "Packets dropped by the media plane.",
            get(&sfu.packets_dropped),
        );
        one(
            "parley_sfu_unknown_source_datagrams_total",
            "counter",
            "Datagrams from unknown sources.",
            get(&sfu.unknown_source_datagrams),
        );
        one(
            "parley_sfu_layer_switches_total",
            "counter",
            "Simulcast layer switches.",
            get(&sfu.layer_switches),
        );
        let name = "parley_ws_protocol_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} WebSocket protocol errors by kind.\n# TYPE {name} counter"
        );
        if let Ok(m) = self.ws_protocol_errors.lock() {
            for (kind, n) in m.iter() {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
            }
        }
        let name = "parley_scheduled_runs_total";
        let _ = writeln!(
            out,
            "# HELP {name} Runs of scheduled jobs this node ran, by job.\n# TYPE {name} counter"
        );
        if let Ok(m) = self.scheduled_runs.lock() {
            for (job, n) in m.iter() {
                let _ = writeln!(out, "{name}{{job=\"{job}\"}} {n}");
            }
        }
        self.join_latency.render(
            &mut out,
            "parley_join_latency_seconds",
            "From the join message received to joined sent.",
        );
        self.join_media_latency.render(
            &mut out,
            "parley_join_media_latency_seconds",
            "From the join message received to the participant's first peer connection connected.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_series() {
        let m = Metrics::default();
        m.protocol_error("flood");
        m.join_latency.observe(Duration::from_millis(20));
        let s = m.render(&SfuMetrics::default());
        assert!(s.contains("parley_ws_protocol_errors_total{kind=\"flood\"} 1"));
        assert!(s.contains("parley_join_latency_seconds_bucket{le=\"0.025\"} 1"));
        assert!(s.contains("parley_join_latency_seconds_bucket{le=\"0.01\"} 0"));
        assert!(s.contains("parley_join_latency_seconds_count 1"));
    }
}
