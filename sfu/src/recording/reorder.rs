//! A short reorder buffer in front of a video recorder, one per simulcast layer (each layer has
//! its own sequence numbers).
//!
//! A lost video packet costs the recording everything up to the next keyframe, which is a round
//! trip to the publisher away at best. But a lost packet is usually retransmitted (NACK) within
//! a few tens of milliseconds, and UDP sometimes reorders. So packets are held until the ones
//! before them have arrived, or for at most [`REORDER_WAIT`] after which the missing ones are
//! given up; the recorder then sees them in sequence order. Padding-only packets take sequence
//! numbers but never reach the recorder, so their holes always wait out the limit: that delays
//! the writer, never the meeting.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::tap::MediaPacket;

/// How long a hole in the sequence numbers is waited for.
pub const REORDER_WAIT: Duration = Duration::from_millis(250);
/// Most packets held at once (a hole is given up when more are waiting behind it).
const MAX_HELD: usize = 512;

#[derive(Debug, Default)]
pub struct Reorder {
    /// Last sequence number seen, extended to 64 bits (wrap-around handled).
    last: Option<i64>,
    /// The next sequence number to release.
    next: Option<i64>,
    held: BTreeMap<i64, MediaPacket>,
    ready: VecDeque<MediaPacket>,
}

impl Reorder {
    /// Takes one packet; what can be released is then available from [`Reorder::pop`]. Time is
    /// the packets' own arrival.
    pub fn push(&mut self, p: MediaPacket) {
        let seq = self.extend(p.seq);
        let now = p.arrival;
        let next = *self.next.get_or_insert(seq);
        if seq < next {
            // Later than its turn (given up for lost, or a duplicate): the recorder counts it.
            self.ready.push_back(p);
            return;
        }
        self.held.entry(seq).or_insert(p);
        while let Some(next) = self.next {
            if let Some(p) = self.held.remove(&next) {
                self.ready.push_back(p);
                self.next = Some(next + 1);
                continue;
            }
            let Some((&first, waiting)) = self.held.first_key_value() else {
                break;
            };
            if now.saturating_duration_since(waiting.arrival) >= REORDER_WAIT
                || self.held.len() >= MAX_HELD
            {
                self.next = Some(first);
                continue;
            }
            break;
        }
    }

    /// The next packet in sequence order.
    pub fn pop(&mut self) -> Option<MediaPacket> {
        self.ready.pop_front()
    }

    /// Releases everything held (the recording ends): holes are given up.
    pub fn flush(&mut self) {
        let held = std::mem::take(&mut self.held);
        if let Some((&last, _)) = held.last_key_value() {
            self.next = Some(last + 1);
        }
        self.ready.extend(held.into_values());
    }

    fn extend(&mut self, seq: u16) -> i64 {
        let v = match self.last {
            None => i64::from(seq),
            Some(last) => last + i64::from(seq.wrapping_sub(last as u16) as i16),
        };
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TrackSource;
    use bytes::Bytes;
    use std::time::Instant;

    fn packet(seq: u16, at: Instant) -> MediaPacket {
        MediaPacket {
            track: (1, TrackSource::Camera),
            layer: 0,
            seq,
            ts: 0,
            marker: false,
            arrival: at,
            payload: Bytes::new(),
        }
    }

    fn drain(r: &mut Reorder) -> Vec<u16> {
        std::iter::from_fn(|| r.pop()).map(|p| p.seq).collect()
    }

    #[test]
    fn reordered_and_retransmitted_packets_come_out_in_sequence() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Reorder::default();
        for (seq, at) in [(65_534, 0), (65_535, 1), (1, 2), (2, 3)] {
            r.push(packet(seq, ms(at)));
        }
        // 0 is missing (across the wrap): 1 and 2 wait for it.
        assert_eq!(drain(&mut r), vec![65_534, 65_535]);
        r.push(packet(0, ms(40))); // the retransmission
        assert_eq!(drain(&mut r), vec![0, 1, 2]);
        // A duplicate is passed on for the recorder to drop.
        r.push(packet(1, ms(41)));
        assert_eq!(drain(&mut r), vec![1]);
    }

    #[test]
    fn a_hole_is_given_up_after_the_wait_and_the_rest_flows() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Reorder::default();
        r.push(packet(10, ms(0)));
        r.push(packet(12, ms(10)));
        r.push(packet(13, ms(20)));
        assert_eq!(drain(&mut r), vec![10]);
        r.push(packet(14, ms(200)));
        assert_eq!(drain(&mut r), Vec::<u16>::new(), "still waiting for 11");
        r.push(packet(15, ms(10 + 250)));
        assert_eq!(drain(&mut r), vec![12, 13, 14, 15]);
        // 11 turns up after all: too late, passed on to be counted.
        r.push(packet(11, ms(300)));
        assert_eq!(drain(&mut r), vec![11]);
        r.push(packet(17, ms(301)));
        r.flush();
        assert_eq!(drain(&mut r), vec![17]);
        r.push(packet(18, ms(302)));
        assert_eq!(drain(&mut r), vec![18]);
    }

    #[test]
    fn a_long_run_behind_a_hole_does_not_wait() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        r.push(packet(0, t0));
        for seq in 2..=(MAX_HELD as u16 + 1) {
            r.push(packet(seq, t0));
        }
        let out = drain(&mut r);
        assert_eq!(out.len(), MAX_HELD + 1);
        assert_eq!(out[1], 2);
    }
}
