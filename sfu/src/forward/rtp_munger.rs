//! Per down-track rewriting of SSRC, sequence number and timestamp (LiveKit's "RTP munger").
//!
//! A subscriber receives one outgoing stream per track, while the publisher sends up to three
//! simulcast layers, each with its own SSRC, sequence numbers and RTP timestamps. The munger
//! forwards one layer at a time and maps its numbering onto the outgoing stream:
//!
//! - A switch to another layer (or a resume after a pause) happens only on a keyframe of the
//!   target layer: the decoder can start afresh there. Until then the current layer goes on.
//! - At the switch the first packet gets `last sequence number + 1`, and a timestamp advanced from
//!   the last one sent by the wall-clock time since it was sent (at least one tick), so jitter
//!   buffers and lip sync see a continuous clock.
//! - Packets dropped from the current layer (padding-only probes, for instance) must not leave
//!   holes in the output, or the subscriber would NACK packets that never existed. Each drop of the
//!   newest packet bumps the sequence offset; the history of offsets is kept in a small bounded ring
//!   so a late (reordered) packet still maps to the number it would have had.
//! - Late packets of the previous layer (from before a switch) keep their old mapping, which fills
//!   holes instead of leaving them for NACKs that the cache could not answer.
//!
//! All sequence arithmetic is done on "extended" numbers (`i64`, unwrapped across the 16-bit
//! wrap), which keeps comparisons simple; the wire value is the low 16 bits.
//!
//! For audio, create one munger with the single source as target and mark every packet as a
//! keyframe: audio needs no switch point.

use std::collections::VecDeque;
use std::time::Instant;

/// One incoming RTP packet, reduced to the fields the munger needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn {
    /// SSRC of the publisher's layer this packet came on.
    pub ssrc: u32,
    /// Sequence number as received.
    pub seq: u16,
    /// RTP timestamp as received.
    pub timestamp: u32,
    /// The packet starts a keyframe (see `vp8::is_keyframe`, `h264::is_keyframe`); always true for
    /// audio.
    pub keyframe: bool,
    /// The packet carries only padding (bandwidth probing): it is never forwarded as the newest
    /// packet, and its sequence number is taken out of the output stream.
    pub padding_only: bool,
}

/// The rewritten header fields of a packet to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpOut {
    /// The down-track's own SSRC.
    pub ssrc: u32,
    /// Output sequence number.
    pub seq: u16,
    /// Output RTP timestamp.
    pub timestamp: u32,
    /// This is the first packet of a new layer: codec mungers (VP8 picture id) re-base here.
    pub switched: bool,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// From a layer that is neither being forwarded nor the target.
    NotSelected,
    /// The subscriber paused this track (target is `None`).
    Paused,
    /// From the target layer, but the switch waits for its keyframe.
    WaitingForKeyframe,
    /// Padding-only packet; its sequence number is removed from the output.
    Padding,
    /// A late packet of the current layer from before the switch point.
    BeforeSwitch,
    /// A late packet older than the remembered offset history.
    TooOld,
    /// A late copy of a packet that was itself dropped.
    WasDropped,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it with these header fields.
    Forward(RtpOut),
    /// Do not send it.
    Drop(DropReason),
}

/// Extended numbers start here so they never go negative when a late packet precedes the first.
const EXT_BASE: i64 = 1 << 32;

/// Offset history entries kept per source. Consecutive drops share one entry, so this covers up
/// to this many separate drop runs within the reorder window.
const SEGMENTS: usize = 32;

/// From `first_dropped` (inclusive) to `start` (exclusive) packets were dropped; from `start` on,
/// output = input - `offset` until the next segment.
#[derive(Debug, Clone, Copy, Default)]
struct Segment {
    first_dropped: i64,
    start: i64,
    offset: i64,
}

/// The offset history, oldest evicted first once it holds [`SEGMENTS`]. It grows only as drop
/// runs happen: most streams never drop a packet (audio never does) and keep the one segment
/// they start with, so a down-track does not carry room for 32 it will not use (two sources of
/// a fixed ring were 1.5 KiB of every down-track, 45 KiB per participant of a 16-person meeting).
/// Once full, pushing reuses the freed slot and allocates nothing.
#[derive(Debug, Clone)]
struct Segments {
    /// Oldest first.
    ring: VecDeque<Segment>,
}

enum Lookup {
    Offset(i64),
    Dropped,
    Unknown,
}

impl Segments {
    fn new(first: Segment) -> Self {
        let mut ring = VecDeque::with_capacity(1);
        ring.push_back(first);
        Segments { ring }
    }

    /// The newest segment (there always is one: created with one, a push evicts only when full).
    fn newest_mut(&mut self) -> Option<&mut Segment> {
        self.ring.back_mut()
    }

    fn push(&mut self, s: Segment) {
        if self.ring.len() == SEGMENTS {
            self.ring.pop_front();
        }
        self.ring.push_back(s);
    }

    fn lookup(&self, ext: i64) -> Lookup {
        for s in self.ring.iter().rev() {
            if ext >= s.start {
                return Lookup::Offset(s.offset);
            }
            if ext >= s.first_dropped {
                return Lookup::Dropped;
            }
        }
        Lookup::Unknown
    }
}

/// The layer being (or last) forwarded and how its numbers map to the output.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    /// Highest extended input sequence number seen.
    highest: i64,
    /// Extended input sequence number of the switch keyframe; earlier packets are dropped.
    switch_point: i64,
    /// Current sequence offset (output = input - offset).
    offset: i64,
    /// Timestamp offset (output = input - ts_offset, wrapping).
    ts_offset: u32,
    segments: Segments,
}

impl Source {
    /// Unwraps a 16-bit sequence number against the highest seen (nearest within ±2^15).
    fn extend(&self, seq: u16) -> i64 {
        let diff = seq.wrapping_sub(self.highest as u16) as i16;
        self.highest + i64::from(diff)
    }

    /// Maps a late (not newest) packet through the offset history.
    fn map_late(&self, ext: i64) -> Result<i64, DropReason> {
        if ext < self.switch_point {
            return Err(DropReason::BeforeSwitch);
        }
        match self.segments.lookup(ext) {
            // A late padding packet is forwarded: it fills the hole its number left, which the
            // subscriber would otherwise NACK in vain.
            Lookup::Offset(off) => Ok(ext - off),
            Lookup::Dropped => Err(DropReason::WasDropped),
            Lookup::Unknown => Err(DropReason::TooOld),
        }
    }
}

/// The last packet sent (highest output sequence number).
#[derive(Debug, Clone, Copy)]
struct LastOut {
    ext_seq: i64,
    timestamp: u32,
    at: Instant,
}

/// Rewrites one down-track's packets. See the module documentation.
#[derive(Debug, Clone)]
pub struct RtpMunger {
    out_ssrc: u32,
    clock_rate: u32,
    target: Option<u32>,
    /// A switch (to `target`) waits for a keyframe.
    awaiting_keyframe: bool,
    current: Option<Source>,
    /// The source forwarded before the last switch, kept to place its late packets.
    previous: Option<Source>,
    last_out: Option<LastOut>,
}

impl RtpMunger {
    /// A munger for a down-track with its own `out_ssrc`, for a codec with `clock_rate` Hz
    /// (90 000 for video, 48 000 for Opus). It forwards nothing until a target is set.
    pub fn new(out_ssrc: u32, clock_rate: u32) -> Self {
        RtpMunger {
            out_ssrc,
            clock_rate,
            target: None,
            awaiting_keyframe: false,
            current: None,
            previous: None,
            last_out: None,
        }
    }

    /// Chooses the layer (by its SSRC) to forward; `None` pauses the track. A change takes effect
    /// at the target's next keyframe; until then the current layer goes on (unless paused).
    pub fn set_target(&mut self, ssrc: Option<u32>) {
        if ssrc == self.target {
            return;
        }
        self.target = ssrc;
        if ssrc.is_none() {
            // Packets skipped while paused are not counted in the offsets, so the paused layer's
            // mapping is stale: only its late packets may still use it.
            if let Some(cur) = self.current.take() {
                self.previous = Some(cur);
            }
        }
        // Going back to the layer still being forwarded needs no switch. Resuming after a pause
        // does need a keyframe, even on the same layer: the frames skipped during the pause broke
        // the reference chain (and a pause took the layer out of `current`).
        self.awaiting_keyframe = ssrc.is_some() && ssrc != self.current();
    }

    /// The SSRC the subscriber should end up on, `None` when paused.
    pub fn target(&self) -> Option<u32> {
        self.target
    }

    /// The SSRC currently forwarded, if any.
    pub fn current(&self) -> Option<u32> {
        self.current.as_ref().map(|s| s.ssrc)
    }

    /// The SSRC whose keyframe a pending switch waits for: the caller should request one from the
    /// publisher (through the rate-limited keyframe requester).
    pub fn needs_keyframe(&self) -> Option<u32> {
        if self.awaiting_keyframe {
            self.target
        } else {
            None
        }
    }

    /// Output sequence number and timestamp of the newest packet sent.
    pub fn last_sent(&self) -> Option<(u16, u32)> {
        self.last_out.map(|l| (l.ext_seq as u16, l.timestamp))
    }

    /// Decides about one incoming packet and, when it is forwarded, returns its new header fields.
    pub fn process(&mut self, pkt: &RtpIn, now: Instant) -> Decision {
        let Some(target) = self.target else {
            return Decision::Drop(DropReason::Paused);
        };
        if self.awaiting_keyframe && pkt.ssrc == target {
            if pkt.keyframe && !pkt.padding_only {
                return self.switch(pkt, now);
            }
            return Decision::Drop(DropReason::WaitingForKeyframe);
        }
        match &self.current {
            Some(c) if c.ssrc == pkt.ssrc => self.forward_current(pkt, now),
            _ => self.forward_previous(pkt),
        }
    }

    fn switch(&mut self, pkt: &RtpIn, now: Instant) -> Decision {
        let ext = EXT_BASE + i64::from(pkt.seq);
        // Numbers already promised: not only the last sent, but also those of packets still
        // missing below the newest seen of the layers whose late packets may still be forwarded
        // (found by the property test: a late packet of the old layer took the new layer's first
        // number).
        let reserved = [self.current.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.highest - s.offset)
            .chain(self.last_out.map(|l| l.ext_seq))
            .max();
        let (offset, ts_offset) = match (self.last_out, reserved) {
            (Some(last), Some(reserved)) => {
                let gap = now.saturating_duration_since(last.at);
                let ticks = (gap.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                let out_ts = last.timestamp.wrapping_add(ticks);
                (ext - (reserved + 1), pkt.timestamp.wrapping_sub(out_ts))
            }
            _ => (0, 0),
        };
        let source = Source {
            ssrc: pkt.ssrc,
            highest: ext,
            switch_point: ext,
            offset,
            ts_offset,
            segments: Segments::new(Segment {
                first_dropped: ext,
                start: ext,
                offset,
            }),
        };
        if let Some(old) = self.current.replace(source) {
            self.previous = Some(old);
        }
        // Resuming the same layer after a pause renumbers it; its old mapping must not be used.
        if self.previous.as_ref().is_some_and(|p| p.ssrc == pkt.ssrc) {
            self.previous = None;
        }
        self.awaiting_keyframe = false;
        self.emit(
            ext - offset,
            pkt.timestamp.wrapping_sub(ts_offset),
            true,
            now,
        )
    }

    fn forward_current(&mut self, pkt: &RtpIn, now: Instant) -> Decision {
        let Some(src) = self.current.as_mut() else {
            return Decision::Drop(DropReason::NotSelected);
        };
        let ext = src.extend(pkt.seq);
        let ts = pkt.timestamp.wrapping_sub(src.ts_offset);
        if ext > src.highest {
            let prev_highest = src.highest;
            src.highest = ext;
            if pkt.padding_only {
                // Take this number out of the output. Consecutive drops extend one segment.
                src.offset += 1;
                let offset = src.offset;
                let newest = src.segments.newest_mut().filter(|newest| {
                    newest.start == ext && prev_highest + 1 == ext && newest.first_dropped < ext
                });
                if let Some(newest) = newest {
                    newest.start = ext + 1;
                    newest.offset = offset;
                } else {
                    src.segments.push(Segment {
                        first_dropped: ext,
                        start: ext + 1,
                        offset: src.offset,
                    });
                }
                return Decision::Drop(DropReason::Padding);
            }
            let out = ext - src.offset;
            return self.emit(out, ts, false, now);
        }
        match src.map_late(ext) {
            Ok(out) => self.emit(out, ts, false, now),
            Err(reason) => Decision::Drop(reason),
        }
    }

    fn forward_previous(&mut self, pkt: &RtpIn) -> Decision {
        let Some(prev) = self.previous.as_ref().filter(|p| p.ssrc == pkt.ssrc) else {
            return Decision::Drop(DropReason::NotSelected);
        };
        let ext = prev.extend(pkt.seq);
        if ext > prev.highest {
            // Newer than anything forwarded from it: the subscriber has moved on.
            return Decision::Drop(DropReason::NotSelected);
        }
        match prev.map_late(ext) {
            Ok(out) => Decision::Forward(RtpOut {
                ssrc: self.out_ssrc,
                seq: out as u16,
                timestamp: pkt.timestamp.wrapping_sub(prev.ts_offset),
                switched: false,
            }),
            Err(reason) => Decision::Drop(reason),
        }
    }

    fn emit(&mut self, out_ext: i64, ts: u32, switched: bool, now: Instant) -> Decision {
        if self.last_out.is_none_or(|l| out_ext > l.ext_seq) {
            self.last_out = Some(LastOut {
                ext_seq: out_ext,
                timestamp: ts,
                at: now,
            });
        }
        Decision::Forward(RtpOut {
            ssrc: self.out_ssrc,
            seq: out_ext as u16,
            timestamp: ts,
            switched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const OUT: u32 = 0xD0D0;
    const A: u32 = 0xA;
    const B: u32 = 0xB;
    const C: u32 = 0xC;

    fn pkt(ssrc: u32, seq: u16, timestamp: u32, keyframe: bool) -> RtpIn {
        RtpIn {
            ssrc,
            seq,
            timestamp,
            keyframe,
            padding_only: false,
        }
    }

    fn pad(ssrc: u32, seq: u16, timestamp: u32) -> RtpIn {
        RtpIn {
            padding_only: true,
            ..pkt(ssrc, seq, timestamp, false)
        }
    }

    fn fwd(d: Decision) -> (u16, u32) {
        match d {
            Decision::Forward(o) => {
                assert_eq!(o.ssrc, OUT);
                (o.seq, o.timestamp)
            }
            Decision::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    fn dropped(d: Decision) -> DropReason {
        match d {
            Decision::Drop(r) => r,
            Decision::Forward(o) => panic!("forwarded: {o:?}"),
        }
    }

    #[test]
    fn nothing_without_target_then_waits_for_keyframe() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        assert_eq!(
            dropped(m.process(&pkt(A, 1, 0, true), t0)),
            DropReason::Paused
        );
        m.set_target(Some(A));
        assert_eq!(m.needs_keyframe(), Some(A));
        assert_eq!(
            dropped(m.process(&pkt(A, 2, 0, false), t0)),
            DropReason::WaitingForKeyframe
        );
        assert_eq!(
            dropped(m.process(&pkt(B, 2, 0, true), t0)),
            DropReason::NotSelected
        );
        let d = m.process(&pkt(A, 3, 3000, true), t0);
        assert!(matches!(
            d,
            Decision::Forward(RtpOut { switched: true, .. })
        ));
        assert_eq!(fwd(d), (3, 3000));
        assert_eq!(m.needs_keyframe(), None);
        assert_eq!(m.current(), Some(A));
        assert_eq!(fwd(m.process(&pkt(A, 4, 3000, false), t0)), (4, 3000));
    }

    #[test]
    fn two_switches_with_seq_and_ts_wraparound() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        // Layer A near both wraps.
        let mut out = Vec::new();
        out.push(fwd(m.process(&pkt(A, 65534, u32::MAX - 2999, true), ms(0))));
        out.push(fwd(m.process(&pkt(A, 65535, u32::MAX - 2999, false), ms(0))));
        out.push(fwd(m.process(&pkt(A, 0, 1, false), ms(33))));
        // Ask for B; A goes on until B's keyframe.
        m.set_target(Some(B));
        assert_eq!(
            dropped(m.process(&pkt(B, 700, 50_000, false), ms(40))),
            DropReason::WaitingForKeyframe
        );
        out.push(fwd(m.process(&pkt(A, 1, 1, false), ms(40))));
        // B's keyframe 60 ms after the last A packet: 60 ms = 5400 ticks at 90 kHz.
        let d = m.process(&pkt(B, 701, 53_000, true), ms(100));
        assert!(matches!(
            d,
            Decision::Forward(RtpOut { switched: true, .. })
        ));
        out.push(fwd(d));
        assert_eq!(
            dropped(m.process(&pkt(A, 2, 3001, false), ms(101))),
            DropReason::NotSelected
        );
        out.push(fwd(m.process(&pkt(B, 702, 53_000, false), ms(101))));
        out.push(fwd(m.process(&pkt(B, 703, 56_000, false), ms(133))));
        // Switch to C, whose numbers wrap right after the switch.
        m.set_target(Some(C));
        let d = m.process(&pkt(C, 65535, 10, true), ms(143));
        out.push(fwd(d));
        out.push(fwd(m.process(&pkt(C, 0, 3010, false), ms(176))));
        let seqs: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(seqs, [65534, 65535, 0, 1, 2, 3, 4, 5, 6]);
        let ts: Vec<u32> = out.iter().map(|o| o.1).collect();
        let a_last = 1u32;
        let b0 = a_last.wrapping_add(5400);
        let c0 = b0 + 3000 + 900; // 10 ms after B's last packet
        assert_eq!(
            ts,
            [
                u32::MAX - 2999,
                u32::MAX - 2999,
                1,
                1,
                b0,
                b0,
                b0 + 3000,
                c0,
                c0 + 3000
            ]
        );
    }

    #[test]
    fn switch_at_same_instant_advances_timestamp_by_one_tick() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 48_000);
        m.set_target(Some(A));
        fwd(m.process(&pkt(A, 10, 1000, true), t0));
        m.set_target(Some(B));
        assert_eq!(fwd(m.process(&pkt(B, 500, 77, true), t0)), (11, 1001));
    }

    #[test]
    fn late_packets_map_to_their_offset() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        assert_eq!(fwd(m.process(&pkt(A, 100, 0, true), t0)).0, 100);
        // 101 late, 102 arrives first.
        assert_eq!(fwd(m.process(&pkt(A, 102, 0, false), t0)).0, 102);
        assert_eq!(fwd(m.process(&pkt(A, 101, 0, false), t0)).0, 101);
        // Packet before the switch point.
        assert_eq!(
            dropped(m.process(&pkt(A, 99, 0, false), t0)),
            DropReason::BeforeSwitch
        );
        // Switch to B, then a late A packet from before the switch keeps its old number.
        m.set_target(Some(B));
        assert_eq!(fwd(m.process(&pkt(A, 104, 0, false), t0)).0, 104);
        assert_eq!(fwd(m.process(&pkt(B, 9000, 0, true), t0)).0, 105);
        assert_eq!(fwd(m.process(&pkt(A, 103, 0, false), t0)).0, 103);
        assert_eq!(
            dropped(m.process(&pkt(A, 105, 0, false), t0)),
            DropReason::NotSelected
        );
        // Late B packet before its switch point.
        assert_eq!(
            dropped(m.process(&pkt(B, 8999, 0, false), t0)),
            DropReason::BeforeSwitch
        );
    }

    #[test]
    fn padding_drops_leave_no_gap_and_late_packets_keep_place() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        assert_eq!(fwd(m.process(&pkt(A, 10, 0, true), t0)).0, 10);
        // 11 is late; 12, 13 are padding; 14 media.
        assert_eq!(dropped(m.process(&pad(A, 12, 0), t0)), DropReason::Padding);
        assert_eq!(dropped(m.process(&pad(A, 13, 0), t0)), DropReason::Padding);
        assert_eq!(fwd(m.process(&pkt(A, 14, 0, false), t0)).0, 12);
        assert_eq!(fwd(m.process(&pkt(A, 11, 0, false), t0)).0, 11);
        // A late copy of a dropped padding packet stays dropped (its number is taken).
        assert_eq!(
            dropped(m.process(&pad(A, 12, 0), t0)),
            DropReason::WasDropped
        );
        assert_eq!(
            dropped(m.process(&pkt(A, 13, 0, false), t0)),
            DropReason::WasDropped
        );
        // Padding with a gap before it: 15 missing, 16 padding, 17 media, then 15 arrives.
        assert_eq!(dropped(m.process(&pad(A, 16, 0), t0)), DropReason::Padding);
        assert_eq!(fwd(m.process(&pkt(A, 17, 0, false), t0)).0, 14);
        assert_eq!(fwd(m.process(&pkt(A, 15, 0, false), t0)).0, 13);
        // A duplicate maps to the same number.
        assert_eq!(fwd(m.process(&pkt(A, 17, 0, false), t0)).0, 14);
        // A late padding packet that fills a hole is forwarded.
        assert_eq!(fwd(m.process(&pkt(A, 19, 0, false), t0)).0, 16);
        assert_eq!(fwd(m.process(&pad(A, 18, 0), t0)).0, 15);
    }

    #[test]
    fn returning_to_current_layer_needs_no_keyframe() {
        // Found by the property test: a target flip A -> B -> A must not stall A (which would
        // drop A's packets without renumbering and leave a hole).
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        assert_eq!(fwd(m.process(&pkt(A, 0, 0, true), t0)).0, 0);
        m.set_target(Some(B));
        m.set_target(Some(A));
        assert_eq!(m.needs_keyframe(), None);
        assert_eq!(fwd(m.process(&pkt(A, 1, 0, false), t0)).0, 1);
        m.set_target(Some(B));
        assert_eq!(fwd(m.process(&pkt(A, 2, 0, false), t0)).0, 2);
    }

    #[test]
    fn switch_skips_numbers_reserved_for_missing_packets() {
        // Found by the property test: B's 12 is missing when the switch to A happens; its number
        // stays reserved so the late 12 does not collide with A's first packet.
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(B));
        assert_eq!(fwd(m.process(&pkt(B, 11, 0, true), t0)).0, 11);
        m.set_target(Some(A));
        assert_eq!(dropped(m.process(&pad(B, 13, 0), t0)), DropReason::Padding);
        assert_eq!(fwd(m.process(&pkt(A, 500, 0, true), t0)).0, 13);
        assert_eq!(fwd(m.process(&pkt(B, 12, 0, false), t0)).0, 12);
    }

    #[test]
    fn pause_and_resume_continues_numbering() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        assert_eq!(fwd(m.process(&pkt(A, 1, 0, true), ms(0))), (1, 0));
        m.set_target(None);
        for s in 2..50 {
            assert_eq!(
                dropped(m.process(&pkt(A, s, 0, s == 20), ms(1))),
                DropReason::Paused
            );
        }
        m.set_target(Some(A));
        assert_eq!(m.needs_keyframe(), Some(A));
        assert_eq!(
            dropped(m.process(&pkt(A, 50, 0, false), ms(1000))),
            DropReason::WaitingForKeyframe
        );
        assert_eq!(
            fwd(m.process(&pkt(A, 51, 9000, true), ms(1000))),
            (2, 90_000)
        );
        assert_eq!(
            fwd(m.process(&pkt(A, 52, 12000, false), ms(1033))),
            (3, 93_000)
        );
        // Old packets from before the resume are gone.
        assert_eq!(
            dropped(m.process(&pkt(A, 1, 0, false), ms(1034))),
            DropReason::BeforeSwitch
        );
    }

    #[test]
    fn offset_history_overflow_reports_too_old() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new(OUT, 90_000);
        m.set_target(Some(A));
        fwd(m.process(&pkt(A, 0, 0, true), t0));
        // Leave 1 missing, then many separate padding runs to push the history out.
        let mut s = 2u16;
        for _ in 0..(SEGMENTS + 2) {
            fwd(m.process(&pkt(A, s, 0, false), t0));
            dropped(m.process(&pad(A, s + 1, 0), t0));
            s += 2;
        }
        assert_eq!(
            dropped(m.process(&pkt(A, 1, 0, false), t0)),
            DropReason::TooOld
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A packet of layer n (0..3); flags: keyframe, padding.
        Packet(usize, bool, bool),
        Target(Option<usize>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0usize..3, prop::bool::weighted(0.15), prop::bool::weighted(0.1))
                .prop_map(|(l, k, p)| Op::Packet(l, k, p)),
            1 => prop::option::weighted(0.9, 0usize..3).prop_map(Op::Target),
        ]
    }

    proptest! {
        /// In-order input with arbitrary switches, pauses, padding and wrap: forwarded output
        /// sequence numbers are strictly consecutive, and timestamps never go backwards
        /// across a switch.
        #[test]
        fn output_is_consecutive(
            starts in prop::array::uniform3(any::<u16>()),
            ts_starts in prop::array::uniform3(any::<u32>()),
            ops in prop::collection::vec(op(), 1..400),
        ) {
            let ssrcs = [A, B, C];
            let mut seq = starts;
            let mut ts = ts_starts;
            let t0 = Instant::now();
            let mut m = RtpMunger::new(OUT, 90_000);
            let mut last: Option<(u16, u32)> = None;
            for (i, op) in ops.iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64 * 5);
                match *op {
                    Op::Target(t) => m.set_target(t.map(|l| ssrcs[l])),
                    Op::Packet(l, key, padding) => {
                        let p = RtpIn { ssrc: ssrcs[l], seq: seq[l], timestamp: ts[l], keyframe: key, padding_only: padding };
                        seq[l] = seq[l].wrapping_add(1);
                        ts[l] = ts[l].wrapping_add(450);
                        if let Decision::Forward(o) = m.process(&p, now) {
                            prop_assert!(!padding);
                            if let Some((prev_seq, prev_ts)) = last {
                                prop_assert_eq!(o.seq, prev_seq.wrapping_add(1));
                                prop_assert!(o.timestamp.wrapping_sub(prev_ts) as i32 >= 0);
                            }
                            last = Some((o.seq, o.timestamp));
                        }
                    }
                }
            }
        }

        /// With reordering (adjacent swaps) and duplicates, no two different input packets get
        /// the same output sequence number.
        #[test]
        fn reordered_input_never_reuses_numbers(
            ops in prop::collection::vec(op(), 1..300),
            swaps in prop::collection::vec(any::<bool>(), 300),
            start in any::<u16>(),
        ) {
            let ssrcs = [A, B, C];
            // Build per-layer in-order packets, then swap neighbours.
            let mut seq = [start, start.wrapping_add(20_000), start.wrapping_add(40_000)];
            let mut stream = Vec::new();
            for op in &ops {
                match *op {
                    Op::Target(t) => stream.push(Err(t)),
                    Op::Packet(l, key, padding) => {
                        stream.push(Ok(RtpIn { ssrc: ssrcs[l], seq: seq[l], timestamp: 0, keyframe: key, padding_only: padding }));
                        seq[l] = seq[l].wrapping_add(1);
                    }
                }
            }
            for (i, s) in swaps.iter().enumerate() {
                if *s && i + 1 < stream.len() {
                    stream.swap(i, i + 1);
                }
            }
            let t0 = Instant::now();
            let mut m = RtpMunger::new(OUT, 90_000);
            let mut given: std::collections::HashMap<u16, (u32, u16)> = Default::default();
            for item in &stream {
                match item {
                    Err(t) => m.set_target(t.map(|l| ssrcs[l])),
                    Ok(p) => {
                        if let Decision::Forward(o) = m.process(p, t0) {
                            let key = (p.ssrc, p.seq);
                            if let Some(prev) = given.insert(o.seq, key) {
                                // Same output number only for the very same input packet,
                                // or for one from a layer abandoned at a resume.
                                prop_assert_eq!(prev, key);
                            }
                        }
                    }
                }
            }
        }
    }
}
