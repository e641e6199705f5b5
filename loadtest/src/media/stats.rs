//! What subscribers count: a compact delay histogram, and per received stream the sequence
//! bookkeeping behind loss, NACKs and PLIs, plus RFC 3550 interarrival jitter.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Delay histogram: 10 µs buckets up to 10 ms, 100 µs up to 100 ms, 1 ms up to 2 s, then one
/// overflow bucket. Fixed size, so recording a sample never allocates.
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u32]>,
    pub count: u64,
}

const FINE: u64 = 1_000; // 0..10 ms in 10 µs
const MID: u64 = 900; // 10..100 ms in 100 µs
const COARSE: u64 = 1_900; // 100 ms..2 s in 1 ms
const BUCKETS: usize = (FINE + MID + COARSE + 1) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        let i = if us < 10_000 {
            us / 10
        } else if us < 100_000 {
            FINE + (us - 10_000) / 100
        } else if us < 2_000_000 {
            FINE + MID + (us - 100_000) / 1_000
        } else {
            FINE + MID + COARSE
        };
        i as usize
    }

    /// The upper edge of bucket `i`, in µs.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE {
            (i + 1) * 10
        } else if i < FINE + MID {
            10_000 + (i - FINE + 1) * 100
        } else if i < FINE + MID + COARSE {
            100_000 + (i - FINE - MID + 1) * 1_000
        } else {
            u64::MAX
        }
    }

    pub fn record(&mut self, us: u64) {
        self.buckets[Self::index(us)] += 1;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += *b;
        }
        self.count += other.count;
    }

    /// `self - earlier` (an earlier snapshot of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (a, b) in out.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *a = a.saturating_sub(*b);
        }
        out.count = self.count.saturating_sub(earlier.count);
        out
    }

    /// The `p`-th percentile in milliseconds (bucket upper edge); `None` without samples.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                let us = Self::upper(i);
                return Some(if us == u64::MAX {
                    f64::INFINITY
                } else {
                    us as f64 / 1000.0
                });
            }
        }
        None
    }
}

/// Cumulative counters of one subscriber (all its received streams), cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    /// Sequence numbers from the first to the highest seen, per stream, summed.
    pub expected: u64,
    /// Distinct sequence numbers received (retransmissions fill gaps, duplicates do not count).
    pub unique: u64,
    pub duplicates: u64,
    pub nacks_sent: u64,
    pub nacked_packets: u64,
    pub plis_sent: u64,
    pub keyframes: u64,
    /// Sum of the streams' current jitter (µs) and how many streams, for the mean.
    pub jitter_us_sum: f64,
    pub jitter_streams: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.expected += o.expected;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.nacks_sent += o.nacks_sent;
        self.nacked_packets += o.nacked_packets;
        self.plis_sent += o.plis_sent;
        self.keyframes += o.keyframes;
        self.jitter_us_sum += o.jitter_us_sum;
        self.jitter_streams += o.jitter_streams;
    }

    /// Counters accumulated since `earlier` (jitter is a level, not a sum: kept as is).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            expected: self.expected - earlier.expected,
            unique: self.unique - earlier.unique,
            duplicates: self.duplicates - earlier.duplicates,
            nacks_sent: self.nacks_sent - earlier.nacks_sent,
            nacked_packets: self.nacked_packets - earlier.nacked_packets,
            plis_sent: self.plis_sent - earlier.plis_sent,
            keyframes: self.keyframes - earlier.keyframes,
            jitter_us_sum: self.jitter_us_sum,
            jitter_streams: self.jitter_streams,
        }
    }
}

/// How long a gap may stay open before a NACK for it is repeated, how many times, and after
/// how long an unrepaired video gap makes the subscriber ask for a key frame (a real decoder
/// would be stuck by then).
pub const NACK_INTERVAL: Duration = Duration::from_millis(100);
pub const NACK_TRIES: u8 = 3;
pub const PLI_AFTER: Duration = Duration::from_millis(400);
pub const PLI_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How far back the received-set window reaches (packets).
const WINDOW: u64 = 1024;

/// What to send back for a stream after a packet or a timer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Feedback {
    pub nack: Vec<u16>,
    pub pli: bool,
}

/// Receive state of one stream (one SSRC on the subscriber connection).
pub struct Stream {
    pub video: bool,
    pub media_ssrc: u32,
    first: Option<u64>,
    highest: u64,
    received: [u64; (WINDOW / 64) as usize],
    /// Missing sequence numbers: (extended seq, when last NACKed, NACKs so far, first missed).
    missing: VecDeque<(u64, Instant, u8, Instant)>,
    last_pli: Option<Instant>,
    last_transit_us: Option<i64>,
    pub jitter_us: f64,
    pub counters: Counters,
}

impl Stream {
    pub fn new(video: bool, media_ssrc: u32) -> Self {
        Stream {
            video,
            media_ssrc,
            first: None,
            highest: 0,
            received: [0; (WINDOW / 64) as usize],
            missing: VecDeque::new(),
            last_pli: None,
            last_transit_us: None,
            jitter_us: 0.0,
            counters: Counters::default(),
        }
    }

    fn bit(&mut self, ext: u64) -> (&mut u64, u64) {
        let slot = (ext % WINDOW) as usize;
        (&mut self.received[slot / 64], 1 << (slot % 64))
    }

    /// Extends a 16-bit sequence number to the one closest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let base = self.highest;
        let cand = (base & !0xffff) | u64::from(seq);
        let mut best = cand;
        for c in [cand.wrapping_add(0x10000), cand.wrapping_sub(0x10000)] {
            if c.abs_diff(base) < best.abs_diff(base) {
                best = c;
            }
        }
        best
    }

    /// Accounts for one packet; `transit_us` is arrival minus send stamp (when the payload
    /// carried one). Returns NACKs for newly found gaps.
    pub fn on_packet(
        &mut self,
        now: Instant,
        seq: u16,
        bytes: usize,
        keyframe: bool,
        transit_us: Option<i64>,
    ) -> Feedback {
        let mut fb = Feedback::default();
        self.counters.packets += 1;
        self.counters.bytes += bytes as u64;
        if keyframe {
            self.counters.keyframes += 1;
        }
        if let Some(t) = transit_us {
            if let Some(last) = self.last_transit_us {
                let d = (t - last).unsigned_abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
            self.last_transit_us = Some(t);
        }
        let Some(first) = self.first else {
            // Start at a large offset so sequence numbers just below the first stay positive.
            let ext = (1 << 32) | u64::from(seq);
            self.first = Some(ext);
            self.highest = ext;
            let (w, b) = self.bit(ext);
            *w |= b;
            self.counters.unique += 1;
            return fb;
        };
        let ext = self.extend(seq);
        if ext < first {
            return fb;
        }
        if ext > self.highest {
            // Clear the window slots of everything skipped, then note the gap.
            let gap = ext - self.highest - 1;
            for s in self.highest + 1..ext {
                let (w, b) = self.bit(s);
                *w &= !b;
            }
            if gap > 0 && gap < WINDOW / 2 {
                for s in self.highest + 1..ext {
                    self.missing.push_back((s, now, 1, now));
                    fb.nack.push(s as u16);
                }
            }
            self.highest = ext;
            let (w, b) = self.bit(ext);
            *w |= b;
            self.counters.unique += 1;
        } else if self.highest - ext < WINDOW {
            let (w, b) = self.bit(ext);
            if *w & b != 0 {
                self.counters.duplicates += 1;
            } else {
                *w |= b;
                self.counters.unique += 1;
                self.missing.retain(|m| m.0 != ext);
            }
        }
        self.counters.expected = self.highest - first + 1;
        if !fb.nack.is_empty() {
            self.counters.nacks_sent += 1;
            self.counters.nacked_packets += fb.nack.len() as u64;
        }
        fb
    }

    /// Repeats NACKs for gaps still open, gives up on old ones, and asks for a key frame when a
    /// video gap stayed open too long.
    pub fn on_timer(&mut self, now: Instant) -> Feedback {
        let mut fb = Feedback::default();
        let highest = self.highest;
        let mut stuck = false;
        self.missing.retain_mut(|m| {
            if highest - m.0 >= WINDOW / 2 {
                return false;
            }
            if now.duration_since(m.3) >= PLI_AFTER {
                stuck = true;
                return false;
            }
            if m.2 < NACK_TRIES && now.duration_since(m.1) >= NACK_INTERVAL {
                m.1 = now;
                m.2 += 1;
                fb.nack.push(m.0 as u16);
            }
            true
        });
        if !fb.nack.is_empty() {
            self.counters.nacks_sent += 1;
            self.counters.nacked_packets += fb.nack.len() as u64;
        }
        if stuck
            && self.video
            && self
                .last_pli
                .is_none_or(|t| now.duration_since(t) >= PLI_MIN_INTERVAL)
        {
            self.last_pli = Some(now);
            self.counters.plis_sent += 1;
            fb.pli = true;
        }
        fb
    }

    pub fn has_open_gaps(&self) -> bool {
        !self.missing.is_empty()
    }

    pub fn snapshot(&self) -> Counters {
        let mut c = self.counters;
        c.jitter_us_sum = self.jitter_us;
        c.jitter_streams = 1;
        c
    }
}

/// Groups sequence numbers into RTCP generic NACK pairs (a base and a 16-bit bitmap).
pub fn nack_pairs(seqs: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &s in seqs {
        if let Some(last) = out.last_mut() {
            let d = s.wrapping_sub(last.0);
            if (1..=16).contains(&d) {
                last.1 |= 1 << (d - 1);
                continue;
            }
        }
        out.push((s, 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_right_buckets() {
        let mut h = Histogram::default();
        for us in [500u64, 600, 700, 20_000, 3_000_000] {
            h.record(us);
        }
        assert_eq!(h.percentile_ms(20.0), Some(0.51));
        assert_eq!(h.percentile_ms(60.0), Some(0.71));
        assert_eq!(h.percentile_ms(80.0), Some(20.1));
        assert_eq!(h.percentile_ms(100.0), Some(f64::INFINITY));
        let mut later = h.clone();
        later.record(1_000);
        assert_eq!(later.since(&h).count, 1);
        assert_eq!(later.since(&h).percentile_ms(50.0), Some(1.01));
    }

    #[test]
    fn a_gap_is_nacked_and_a_retransmission_repairs_it() {
        let t = Instant::now();
        let mut s = Stream::new(true, 1);
        assert!(s.on_packet(t, 65534, 100, false, None).nack.is_empty());
        assert!(s.on_packet(t, 65535, 100, false, None).nack.is_empty());
        // 0 and 1 are lost (across the wrap).
        assert_eq!(s.on_packet(t, 2, 100, false, None).nack, vec![0, 1]);
        assert_eq!(s.counters.expected, 5);
        assert_eq!(s.counters.unique, 3);
        // Repeated after the interval, then 0 arrives.
        let fb = s.on_timer(t + NACK_INTERVAL);
        assert_eq!(fb.nack, vec![0, 1]);
        s.on_packet(t + NACK_INTERVAL, 0, 100, false, None);
        s.on_packet(t + NACK_INTERVAL, 0, 100, false, None);
        assert_eq!(s.counters.unique, 4);
        assert_eq!(s.counters.duplicates, 1);
        // 1 never comes: a key frame is asked for once, then not again within the interval.
        assert!(s.on_timer(t + PLI_AFTER).pli);
        assert!(!s.has_open_gaps());
        assert_eq!(s.counters.plis_sent, 1);
        assert_eq!(s.counters.nacks_sent, 2);
    }

    #[test]
    fn nack_pairs_pack_neighbours() {
        assert_eq!(nack_pairs(&[10, 11, 13, 40]), vec![(10, 0b101), (40, 0)]);
        assert_eq!(nack_pairs(&[65535, 0]), vec![(65535, 1)]);
    }
}
