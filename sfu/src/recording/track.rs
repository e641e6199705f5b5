//! Per-track recorders: RTP packets of one published track in, file writes out.
//!
//! [`OpusTrack`] turns RTP timestamp jumps into concealment packets so the Ogg file keeps time.
//! [`Vp8Track`] reassembles VP8 frames from RTP (a frame ends at the marker bit), never writes a
//! frame that lost a packet (it then waits for the next keyframe), and records one simulcast
//! layer of the *publisher's* stream: the highest layer that has delivered a keyframe.
//!
//! Why the publisher's layers rather than a subscriber's rewritten output: the rewritten stream
//! is per subscriber and follows that subscriber's bandwidth (a recording would inherit someone's
//! bad network), and a room may have no subscriber of a track at all. The recorder switches up
//! when a higher layer delivers a keyframe and down only when its layer has been silent for
//! [`LAYER_SILENCE`] (the publisher dropped it) and a lower layer delivers a keyframe. Each layer
//! has its own RTP timestamp origin, so on a switch the new layer is anchored to the wall-clock
//! time elapsed since the last written frame; block times stay monotonic.

use std::io::{self, Seek, Write};
use std::time::{Duration, Instant};

use super::ogg::OggOpusWriter;
use super::opus_toc;
use super::webm::WebmWriter;

/// A publisher layer gone quiet this long is considered dropped by the publisher.
pub const LAYER_SILENCE: Duration = Duration::from_millis(1_000);
/// RTP timestamp jumps larger than this (10 minutes of audio) are a sender's clock reset, not a
/// gap; the gap is then taken from arrival times instead.
const MAX_TS_GAP: i64 = 48_000 * 600;

/// Extends 32-bit RTP timestamps to a monotonic 64-bit count (wrap-around handled both ways).
#[derive(Debug, Default, Clone)]
pub struct TsUnwrapper {
    last: Option<i64>,
}

impl TsUnwrapper {
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let v = match self.last {
            None => i64::from(ts),
            Some(last) => {
                let delta = ts.wrapping_sub(last as u32) as i32;
                last + i64::from(delta)
            }
        };
        // Only move the reference forward, so a late packet does not shift later ones.
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }
}

/// One RTP packet as the recorders see it.
#[derive(Debug, Clone, Copy)]
pub struct RtpIn<'a> {
    pub layer: u8,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub payload: &'a [u8],
    pub arrival: Instant,
}

/// Counts of what a recorder had to leave out, for the sidecar.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TrackStats {
    pub packets: u64,
    pub late_or_invalid: u64,
    pub concealed_samples: u64,
    pub frames: u64,
    pub frames_dropped: u64,
    pub layer_switches: u64,
}

/// Opus RTP → Ogg Opus.
pub struct OpusTrack<W: Write> {
    ogg: OggOpusWriter<W>,
    ts: TsUnwrapper,
    /// Unwrapped timestamp where the next packet should start, and when the last one arrived.
    next: Option<(i64, Instant)>,
    pub first_arrival: Option<Instant>,
    pub stats: TrackStats,
}

impl<W: Write> OpusTrack<W> {
    pub fn new(ogg: OggOpusWriter<W>) -> Self {
        Self {
            ogg,
            ts: TsUnwrapper::default(),
            next: None,
            first_arrival: None,
            stats: TrackStats::default(),
        }
    }

    pub fn on_packet(&mut self, p: &RtpIn) -> io::Result<()> {
        self.stats.packets += 1;
        let Some(samples) = opus_toc::packet_samples(p.payload) else {
            self.stats.late_or_invalid += 1;
            return Ok(());
        };
        let ts = self.ts.unwrap(p.ts);
        if let Some((expected, last_arrival)) = self.next {
            let mut gap = ts - expected;
            if gap < 0 {
                // Late or duplicate: its place was already concealed or written.
                self.stats.late_or_invalid += 1;
                return Ok(());
            }
            if gap > MAX_TS_GAP {
                let elapsed = p.arrival.saturating_duration_since(last_arrival);
                gap = (elapsed.as_millis() as i64 * 48).min(MAX_TS_GAP);
            }
            if gap > 0 {
                self.ogg.write_gap(gap as u32)?;
                self.stats.concealed_samples += gap as u64;
            }
        }
        self.first_arrival.get_or_insert(p.arrival);
        self.ogg.write_packet(p.payload)?;
        self.next = Some((ts + i64::from(samples), p.arrival));
        Ok(())
    }

    pub fn close(self) -> io::Result<(W, TrackStats, u64)> {
        let granule = self.ogg.granule();
        Ok((self.ogg.close()?, self.stats, granule))
    }
}

/// VP8 RTP → WebM, one layer at a time.
pub struct Vp8Track<W: Write + Seek> {
    webm: WebmWriter<W>,
    /// The recording's start: block times are milliseconds since then, shared by all tracks.
    origin: Instant,
    layer: Option<u8>,
    ts: TsUnwrapper,
    /// Unwrapped RTP time and output ms the current layer's timeline is anchored at.
    anchor: (i64, u64),
    last_arrival_on_layer: Option<Instant>,
    /// Frame being assembled: its RTP timestamp, whether it is a keyframe, its bytes.
    frame: Vec<u8>,
    frame_ts: Option<u32>,
    frame_key: bool,
    next_seq: Option<u16>,
    /// After a loss nothing is written until a keyframe: later frames reference the lost one.
    need_keyframe: bool,
    last_written: Option<(u64, Instant)>,
    pub first_arrival: Option<Instant>,
    pub stats: TrackStats,
}

impl<W: Write + Seek> Vp8Track<W> {
    pub fn new(webm: WebmWriter<W>, origin: Instant) -> Self {
        Self {
            webm,
            origin,
            layer: None,
            ts: TsUnwrapper::default(),
            anchor: (0, 0),
            last_arrival_on_layer: None,
            frame: Vec::new(),
            frame_ts: None,
            frame_key: false,
            next_seq: None,
            need_keyframe: true,
            last_written: None,
            first_arrival: None,
            stats: TrackStats::default(),
        }
    }

    pub fn on_packet(&mut self, p: &RtpIn) -> io::Result<()> {
        self.stats.packets += 1;
        let Ok(desc) = crate::forward::vp8::parse(p.payload) else {
            self.stats.late_or_invalid += 1;
            return Ok(());
        };
        let starts_frame = desc.start_of_partition && desc.partition_id == 0;
        if Some(p.layer) != self.layer {
            let switch = match self.layer {
                None => true,
                Some(cur) if p.layer > cur => true,
                Some(_) => self
                    .last_arrival_on_layer
                    .is_none_or(|t| p.arrival.saturating_duration_since(t) >= LAYER_SILENCE),
            };
            if !(switch && desc.is_keyframe) {
                return Ok(());
            }
            self.switch_layer(p);
        }
        self.last_arrival_on_layer = Some(p.arrival);
        let seq_ok = self.next_seq.is_none_or(|s| s == p.seq);
        self.next_seq = Some(p.seq.wrapping_add(1));
        if !seq_ok {
            // A lost (or reordered) packet: the frame in progress, or a whole frame, is gone.
            self.drop_frame();
            self.need_keyframe = true;
        }
        if self.frame_ts.is_some_and(|t| t != p.ts) {
            // A new timestamp before the marker: the previous frame's end was lost.
            self.drop_frame();
            self.need_keyframe = true;
        }
        if self.frame_ts.is_none() {
            if !starts_frame {
                // The middle of a frame whose start we did not see.
                self.need_keyframe = true;
                return Ok(());
            }
            self.frame_ts = Some(p.ts);
            self.frame_key = desc.is_keyframe;
        }
        self.frame
            .extend_from_slice(p.payload.get(desc.header_len..).unwrap_or(&[]));
        if p.marker {
            self.finish_frame(p.arrival)?;
        }
        Ok(())
    }

    fn switch_layer(&mut self, p: &RtpIn) {
        if self.layer.is_some() {
            self.stats.layer_switches += 1;
        }
        self.drop_frame();
        self.layer = Some(p.layer);
        self.ts = TsUnwrapper::default();
        let rtp = self.ts.unwrap(p.ts);
        let ms = match self.last_written {
            // Continue from the last frame by the wall-clock time since it (at least 1 ms).
            Some((ms, at)) => {
                ms + (p.arrival.saturating_duration_since(at).as_millis() as u64).max(1)
            }
            None => p.arrival.saturating_duration_since(self.origin).as_millis() as u64,
        };
        self.anchor = (rtp, ms);
        self.next_seq = None;
        self.need_keyframe = true;
    }

    fn drop_frame(&mut self) {
        if self.frame_ts.take().is_some() {
            self.stats.frames_dropped += 1;
        }
        self.frame.clear();
    }

    fn finish_frame(&mut self, arrival: Instant) -> io::Result<()> {
        let Some(ts) = self.frame_ts.take() else {
            return Ok(());
        };
        if self.need_keyframe && !self.frame_key {
            self.stats.frames_dropped += 1;
            self.frame.clear();
            return Ok(());
        }
        self.need_keyframe = false;
        let rtp = self.ts.unwrap(ts);
        let ms = (self.anchor.1 as i64 + (rtp - self.anchor.0) / 90).max(0) as u64;
        self.first_arrival.get_or_insert(arrival);
        self.webm.write_frame(ms, self.frame_key, &self.frame)?;
        self.last_written = Some((ms, arrival));
        self.stats.frames += 1;
        self.frame.clear();
        Ok(())
    }

    pub fn size(&self) -> Option<(u16, u16)> {
        self.webm.size()
    }

    pub fn close(self) -> io::Result<(W, TrackStats)> {
        Ok((self.webm.close()?, self.stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::ogg::tests::read_pages;
    use crate::recording::webm::tests::{blocks, vp8_frame};
    use std::io::Cursor;

    #[test]
    fn unwrapper_crosses_the_wrap_both_ways() {
        let mut u = TsUnwrapper::default();
        assert_eq!(u.unwrap(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(u.unwrap(5), i64::from(u32::MAX) + 6);
        assert_eq!(
            u.unwrap(u32::MAX - 20),
            i64::from(u32::MAX - 20),
            "late packet"
        );
        assert_eq!(u.unwrap(10), i64::from(u32::MAX) + 11);
    }

    #[test]
    fn opus_rtp_gap_becomes_concealment_and_late_packets_are_dropped() {
        let t0 = Instant::now();
        let mut tr = OpusTrack::new(OggOpusWriter::new(Vec::new(), 1, vec![]));
        let pkt = [31u8 << 3, 1, 2, 3];
        let send = |tr: &mut OpusTrack<Vec<u8>>, seq: u16, ts: u32| {
            tr.on_packet(&RtpIn {
                layer: 0,
                seq,
                ts,
                marker: false,
                payload: &pkt,
                arrival: t0 + Duration::from_millis(u64::from(seq) * 20),
            })
            .unwrap();
        };
        let base = u32::MAX - 960; // crosses the wrap, too
        send(&mut tr, 0, base);
        send(&mut tr, 1, base.wrapping_add(960));
        // seq 2 and 3 lost
        send(&mut tr, 4, base.wrapping_add(4 * 960));
        send(&mut tr, 3, base.wrapping_add(3 * 960)); // arrives late: dropped
        let (bytes, stats, granule) = tr.close().unwrap();
        assert_eq!(granule, 5 * 960);
        assert_eq!(stats.concealed_samples, 2 * 960);
        assert_eq!(stats.late_or_invalid, 1);
        let pages = read_pages(&bytes);
        assert_eq!(pages.last().unwrap().granule, 5 * 960);
    }

    /// RTP packets for one VP8 frame split in `parts`, with a minimal payload descriptor.
    fn packetize(frame: &[u8], parts: usize) -> Vec<Vec<u8>> {
        let chunk = frame.len().div_ceil(parts);
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    struct Sender {
        seq: u16,
        ts: u32,
    }

    impl Sender {
        /// Sends one frame; `lose` drops the packet at that index.
        fn frame(
            &mut self,
            tr: &mut Vp8Track<Cursor<Vec<u8>>>,
            layer: u8,
            key: bool,
            at: Instant,
            lose: Option<usize>,
        ) {
            let (w, h) = [(320, 180), (640, 360), (1280, 720)][usize::from(layer)];
            let frame = vp8_frame(key, w, h, 120);
            let pkts = packetize(&frame, 3);
            let n = pkts.len();
            for (i, payload) in pkts.iter().enumerate() {
                let seq = self.seq;
                self.seq = self.seq.wrapping_add(1);
                if lose == Some(i) {
                    continue;
                }
                tr.on_packet(&RtpIn {
                    layer,
                    seq,
                    ts: self.ts,
                    marker: i == n - 1,
                    payload,
                    arrival: at,
                })
                .unwrap();
            }
            self.ts = self.ts.wrapping_add(3000);
        }
    }

    #[test]
    fn vp8_frames_survive_loss_and_a_layer_switch_with_monotonic_times() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut tr = Vp8Track::new(WebmWriter::new(Cursor::new(Vec::new())), t0);
        let mut low = Sender {
            seq: 100,
            ts: 1_000_000,
        };
        let mut high = Sender {
            seq: 60_000,
            ts: u32::MAX - 6000,
        };
        // Layer 0 starts at 100 ms: keyframe + 4 frames.
        low.frame(&mut tr, 0, true, at(100), None);
        for i in 1..5 {
            low.frame(&mut tr, 0, false, at(100 + i * 33), None);
        }
        // A loss in the middle of a frame: that frame and the next are dropped.
        low.frame(&mut tr, 0, false, at(265), Some(1));
        low.frame(&mut tr, 0, false, at(298), None);
        // Layer 1 delivers its keyframe: the recorder switches up.
        high.frame(&mut tr, 1, true, at(331), None);
        low.frame(&mut tr, 0, false, at(331), None); // ignored now
        for i in 1..4 {
            high.frame(&mut tr, 1, false, at(331 + i * 33), None);
        }
        // Layer 1 stops; after a second of silence layer 0's keyframe takes over.
        low.frame(&mut tr, 0, true, at(500), None); // too soon: ignored
        low.frame(&mut tr, 0, true, at(1500), None);
        low.frame(&mut tr, 0, false, at(1533), None);
        assert_eq!(tr.size(), Some((320, 180)));
        let (file, stats) = tr.close().unwrap();
        let (_, blocks) = blocks(&file.into_inner());
        let times: Vec<u64> = blocks.iter().map(|b| b.0).collect();
        let keys: Vec<bool> = blocks.iter().map(|b| b.1).collect();
        assert_eq!(
            times,
            // 3000 ticks are 33.3 ms; a switch continues from the last frame by arrival time.
            vec![100, 133, 166, 200, 233, 332, 365, 398, 432, 1502, 1535]
        );
        assert_eq!(
            keys,
            vec![
                true, false, false, false, false, true, false, false, false, true, false
            ]
        );
        assert_eq!(stats.layer_switches, 2);
        assert!(stats.frames_dropped >= 2);
        // Every written frame is whole: keyframes carry the start code of their layer's size.
        for b in blocks.iter().filter(|b| b.1) {
            assert_eq!(&b.2[3..6], &[0x9d, 0x01, 0x2a]);
            assert_eq!(b.2.len(), 120);
        }
    }
}
