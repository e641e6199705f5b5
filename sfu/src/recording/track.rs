//! Per-track recorders: RTP packets of one published track in, file writes out.
//!
//! [`OpusTrack`] turns RTP timestamp jumps into concealment packets so the Ogg file keeps time.
//! [`VideoTrack`] reassembles video frames from RTP (a frame ends at the marker bit) — VP8 into
//! WebM ([`Vp8Track`]), H.264 access units into MP4 ([`H264Track`]) — never writes a frame that
//! lost a packet (it then waits for the next keyframe), and records one simulcast layer of the
//! *publisher's* stream: the highest layer that has delivered a keyframe.
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

use super::h264::{self, AuAssembler};
use super::mp4::Mp4Writer;
use super::ogg::OggOpusWriter;
use super::opus_toc;
use super::webm::WebmWriter;

/// A publisher layer gone quiet this long is considered dropped by the publisher.
pub const LAYER_SILENCE: Duration = Duration::from_millis(1_000);
/// While a video recorder waits for a keyframe it asks for one this often (the engine's own
/// limiter coalesces requests per layer, too).
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(1_000);
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

/// What a video depacketizer says about one RTP payload before it is assembled.
#[derive(Debug, Clone, Copy)]
pub struct PayloadInfo {
    /// A frame can begin with this packet (VP8: start of partition 0; H.264: not an FU-A
    /// continuation).
    pub starts_frame: bool,
    /// The packet begins a picture a decoder can start from: a layer may switch here.
    pub keyframe: bool,
    /// Bytes of payload header before the codec data (the VP8 payload descriptor).
    pub header_len: usize,
    /// The frame counter the payload carries, if any (VP8 picture ID), and its wrap mask.
    pub picture_id: Option<(u16, u16)>,
}

/// A frame completed by a [`Depacketizer`].
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub key: bool,
    /// The codec's own numbering shows this frame comes right after the previous complete one,
    /// so a gap in sequence numbers before it lost nothing (padding-only packets are neither
    /// forwarded nor recorded, but they take sequence numbers).
    pub follows: bool,
    /// The frame as the file stores it.
    pub data: &'a [u8],
}

/// The codec-specific half of a [`VideoTrack`]: RTP payloads in, whole frames out.
pub trait Depacketizer {
    /// `None` for a payload the recorder cannot use.
    fn inspect(&self, payload: &[u8]) -> Option<PayloadInfo>;
    /// Adds a packet of the frame in progress; `false` when the frame is broken by it.
    fn push(&mut self, payload: &[u8], info: PayloadInfo) -> bool;
    /// Completes the frame at its marker bit; `None` when the frame is incomplete.
    fn finish(&mut self) -> Option<Frame<'_>>;
    /// Forgets the frame in progress.
    fn clear(&mut self);
}

/// The container half of a [`VideoTrack`].
pub trait FrameSink {
    type Out;
    /// Appends a whole frame at `ms` since the recording started.
    fn write_frame(&mut self, ms: u64, keyframe: bool, frame: &[u8]) -> io::Result<()>;
    /// The picture size the file declares, once known.
    fn size(&self) -> Option<(u16, u16)>;
    fn close(self) -> io::Result<Self::Out>;
}

/// VP8 payloads (RFC 7741): the payload descriptor is dropped, the rest concatenated.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    frame: Vec<u8>,
    started: bool,
    key: bool,
    picture_id: Option<(u16, u16)>,
    /// Picture ID of the previous complete frame.
    last_picture_id: Option<u16>,
}

impl Depacketizer for Vp8Depacketizer {
    fn inspect(&self, payload: &[u8]) -> Option<PayloadInfo> {
        let desc = crate::forward::vp8::parse(payload).ok()?;
        Some(PayloadInfo {
            starts_frame: desc.start_of_partition && desc.partition_id == 0,
            keyframe: desc.is_keyframe,
            header_len: desc.header_len,
            picture_id: desc.picture_id.map(|(id, width)| (id, width.mask())),
        })
    }

    fn push(&mut self, payload: &[u8], info: PayloadInfo) -> bool {
        if !self.started {
            // The frame's first packet: only a VP8 keyframe's first partition says "key".
            self.started = true;
            self.key = info.keyframe;
            self.picture_id = info.picture_id;
        }
        self.frame
            .extend_from_slice(payload.get(info.header_len..).unwrap_or(&[]));
        true
    }

    fn finish(&mut self) -> Option<Frame<'_>> {
        let follows = match (self.last_picture_id, self.picture_id) {
            (Some(last), Some((id, mask))) => id == last.wrapping_add(1) & mask,
            _ => false,
        };
        self.last_picture_id = self.picture_id.map(|p| p.0);
        Some(Frame {
            key: self.key,
            follows,
            data: &self.frame,
        })
    }

    fn clear(&mut self) {
        self.frame.clear();
        self.started = false;
        self.key = false;
        self.picture_id = None;
    }
}

/// H.264 payloads (RFC 6184): access units as length-prefixed NAL units.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    au: AuAssembler,
}

impl Depacketizer for H264Depacketizer {
    fn inspect(&self, payload: &[u8]) -> Option<PayloadInfo> {
        let info = h264::inspect(payload)?;
        Some(PayloadInfo {
            starts_frame: info.starts_unit,
            keyframe: info.keyframe,
            header_len: 0,
            picture_id: None,
        })
    }

    fn push(&mut self, payload: &[u8], _: PayloadInfo) -> bool {
        self.au.push(payload).is_ok()
    }

    fn finish(&mut self) -> Option<Frame<'_>> {
        let au = self.au.finish().ok()?;
        Some(Frame {
            key: au.key,
            follows: au.follows,
            data: au.data,
        })
    }

    fn clear(&mut self) {
        self.au.clear();
    }
}

impl<W: Write + Seek> FrameSink for WebmWriter<W> {
    type Out = W;
    fn write_frame(&mut self, ms: u64, keyframe: bool, frame: &[u8]) -> io::Result<()> {
        WebmWriter::write_frame(self, ms, keyframe, frame)
    }
    fn size(&self) -> Option<(u16, u16)> {
        WebmWriter::size(self)
    }
    fn close(self) -> io::Result<W> {
        WebmWriter::close(self)
    }
}

impl<W: Write + Seek> FrameSink for Mp4Writer<W> {
    type Out = W;
    fn write_frame(&mut self, ms: u64, keyframe: bool, frame: &[u8]) -> io::Result<()> {
        Mp4Writer::write_frame(self, ms, keyframe, frame)
    }
    fn size(&self) -> Option<(u16, u16)> {
        Mp4Writer::size(self)
    }
    fn close(self) -> io::Result<W> {
        Mp4Writer::close(self)
    }
}

/// VP8 RTP → WebM.
pub type Vp8Track<W> = VideoTrack<Vp8Depacketizer, WebmWriter<W>>;
/// H.264 RTP → MP4.
pub type H264Track<W> = VideoTrack<H264Depacketizer, Mp4Writer<W>>;

/// Video RTP → a file, one layer at a time.
pub struct VideoTrack<D, S> {
    depacketizer: D,
    sink: S,
    /// The recording's start: frame times are milliseconds since then, shared by all tracks.
    origin: Instant,
    layer: Option<u8>,
    ts: TsUnwrapper,
    /// Unwrapped RTP time and output ms the current layer's timeline is anchored at.
    anchor: (i64, u64),
    last_arrival_on_layer: Option<Instant>,
    /// RTP timestamp of the frame being assembled.
    frame_ts: Option<u32>,
    next_seq: Option<u16>,
    /// Sequence numbers were skipped since the last frame: lost packets, or padding-only ones
    /// (which never reach the recorder). The next frame's numbering tells which.
    gap: bool,
    /// After a loss nothing is written until a keyframe: later frames reference the lost one.
    need_keyframe: bool,
    /// A layer the recorder would switch to at its next keyframe (up to a better one, down
    /// from one gone quiet, or the first one).
    switch_to: Option<u8>,
    last_keyframe_request: Option<Instant>,
    last_written: Option<(u64, Instant)>,
    pub first_arrival: Option<Instant>,
    pub stats: TrackStats,
}

impl<D: Depacketizer + Default, S: FrameSink> VideoTrack<D, S> {
    pub fn new(sink: S, origin: Instant) -> Self {
        Self {
            depacketizer: D::default(),
            sink,
            origin,
            layer: None,
            ts: TsUnwrapper::default(),
            anchor: (0, 0),
            last_arrival_on_layer: None,
            frame_ts: None,
            next_seq: None,
            gap: false,
            need_keyframe: true,
            switch_to: None,
            last_keyframe_request: None,
            last_written: None,
            first_arrival: None,
            stats: TrackStats::default(),
        }
    }

    pub fn on_packet(&mut self, p: &RtpIn) -> io::Result<()> {
        self.stats.packets += 1;
        let Some(info) = self.depacketizer.inspect(p.payload) else {
            self.stats.late_or_invalid += 1;
            return Ok(());
        };
        if Some(p.layer) != self.layer {
            let switch = match self.layer {
                None => true,
                Some(cur) if p.layer > cur => true,
                Some(_) => self
                    .last_arrival_on_layer
                    .is_none_or(|t| p.arrival.saturating_duration_since(t) >= LAYER_SILENCE),
            };
            if !switch {
                return Ok(());
            }
            if !info.keyframe {
                self.switch_to = Some(self.switch_to.map_or(p.layer, |l| l.max(p.layer)));
                return Ok(());
            }
            self.switch_layer(p);
        }
        self.last_arrival_on_layer = Some(p.arrival);
        if let Some(expected) = self.next_seq {
            let ahead = p.seq.wrapping_sub(expected) as i16;
            if ahead < 0 {
                // Late or duplicate: its frame was completed or dropped already.
                self.stats.late_or_invalid += 1;
                return Ok(());
            }
            if ahead > 0 {
                if self.frame_ts.is_some() {
                    // Lost inside a frame: the frame is gone.
                    self.drop_frame();
                    self.need_keyframe = true;
                } else {
                    self.gap = true;
                }
            }
        }
        self.next_seq = Some(p.seq.wrapping_add(1));
        if self.frame_ts.is_some_and(|t| t != p.ts) {
            // A new timestamp before the marker: the previous frame's end was lost.
            self.drop_frame();
            self.need_keyframe = true;
        }
        if self.frame_ts.is_none() {
            if !info.starts_frame {
                // The middle of a frame whose start we did not see.
                self.need_keyframe = true;
                return Ok(());
            }
            self.frame_ts = Some(p.ts);
        }
        if !self.depacketizer.push(p.payload, info) {
            // Broken inside (a malformed aggregate, a fragment without its start).
            self.drop_frame();
            self.need_keyframe = true;
            return Ok(());
        }
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
        self.switch_to = None;
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
        self.gap = false;
        self.need_keyframe = true;
    }

    fn drop_frame(&mut self) {
        if self.frame_ts.take().is_some() {
            self.stats.frames_dropped += 1;
        }
        self.depacketizer.clear();
    }

    fn finish_frame(&mut self, arrival: Instant) -> io::Result<()> {
        let Some(ts) = self.frame_ts.take() else {
            return Ok(());
        };
        let gap = std::mem::take(&mut self.gap);
        let r = match self.depacketizer.finish() {
            None => {
                self.stats.frames_dropped += 1;
                self.need_keyframe = true;
                Ok(())
            }
            Some(frame) => {
                if gap && !frame.follows {
                    // A whole frame (or more) was lost before this one.
                    self.need_keyframe = true;
                }
                if self.need_keyframe && !frame.key {
                    self.stats.frames_dropped += 1;
                    Ok(())
                } else {
                    self.need_keyframe = false;
                    let rtp = self.ts.unwrap(ts);
                    let ms = (self.anchor.1 as i64 + (rtp - self.anchor.0) / 90).max(0) as u64;
                    self.first_arrival.get_or_insert(arrival);
                    self.last_written = Some((ms, arrival));
                    self.stats.frames += 1;
                    self.sink.write_frame(ms, frame.key, frame.data)
                }
            }
        };
        self.depacketizer.clear();
        r
    }

    /// The layer to ask the publisher for a keyframe on, when the recorder waits for one (after
    /// a loss, to begin, or to change layers) and has not asked within [`KEYFRAME_RETRY`]. A
    /// publisher sends keyframes on its own only every few seconds, if at all, so without asking
    /// a file would freeze that long after each lost packet.
    pub fn keyframe_wanted(&mut self, now: Instant) -> Option<u8> {
        let layer = self
            .switch_to
            .or(self.layer.filter(|_| self.need_keyframe))?;
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_RETRY)
        {
            return None;
        }
        self.last_keyframe_request = Some(now);
        // A candidate must show itself again (its layer may have stopped since).
        self.switch_to = None;
        Some(layer)
    }

    pub fn size(&self) -> Option<(u16, u16)> {
        self.sink.size()
    }

    /// The file's writer, for what only it knows (the MP4 file's first sample time).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn close(self) -> io::Result<(S::Out, TrackStats)> {
        Ok((self.sink.close()?, self.stats))
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    #[test]
    fn the_recorder_asks_for_the_keyframes_it_waits_for() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut tr = Vp8Track::new(WebmWriter::new(Cursor::new(Vec::new())), t0);
        let mut low = Sender { seq: 10, ts: 0 };
        let mut high = Sender { seq: 500, ts: 0 };
        // Before any keyframe: the best layer seen.
        low.frame(&mut tr, 0, false, at(0), None);
        high.frame(&mut tr, 2, false, at(0), None);
        assert_eq!(tr.keyframe_wanted(at(0)), Some(2));
        high.frame(&mut tr, 2, false, at(300), None);
        assert_eq!(
            tr.keyframe_wanted(at(300)),
            None,
            "asked less than a second ago"
        );
        high.frame(&mut tr, 2, true, at(400), None);
        high.frame(&mut tr, 2, false, at(1_100), None);
        low.frame(&mut tr, 0, false, at(1_100), None);
        assert_eq!(
            tr.keyframe_wanted(at(1_100)),
            None,
            "recording layer 2, nothing lost"
        );
        // A loss on layer 2: the next frames need a keyframe of that layer.
        high.frame(&mut tr, 2, false, at(1_200), Some(1));
        high.frame(&mut tr, 2, false, at(1_233), None);
        assert_eq!(tr.keyframe_wanted(at(1_233)), Some(2));
        high.frame(&mut tr, 2, true, at(1_300), None);
        // Layer 2 stops; once it has been quiet a while, layer 0 is wanted instead.
        low.frame(&mut tr, 0, false, at(1_800), None);
        assert_eq!(
            tr.keyframe_wanted(at(1_800)),
            None,
            "layer 2 not quiet long enough"
        );
        low.frame(&mut tr, 0, false, at(2_400), None);
        assert_eq!(tr.keyframe_wanted(at(2_400)), Some(0));
        low.frame(&mut tr, 0, true, at(2_500), None);
        low.frame(&mut tr, 0, false, at(3_600), None);
        assert_eq!(tr.keyframe_wanted(at(3_600)), None);
        let (_, stats) = tr.close().unwrap();
        assert_eq!(stats.layer_switches, 1);
    }

    /// VP8 RTP payloads of one frame with a 15-bit picture ID, as Chrome sends them.
    fn vp8_with_picture_id(frame: &[u8], picture_id: u16, parts: usize) -> Vec<Vec<u8>> {
        let chunk = frame.len().div_ceil(parts);
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                // X=1 (S=1 on the first), I=1, M=1 and the 15-bit picture ID.
                let mut p = vec![if i == 0 { 0x90 } else { 0x80 }, 0x80];
                p.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    #[test]
    fn sequence_gaps_of_padding_between_frames_lose_nothing_but_a_lost_frame_waits_for_a_keyframe()
    {
        let t0 = Instant::now();
        let mut tr = Vp8Track::new(WebmWriter::new(Cursor::new(Vec::new())), t0);
        let (mut seq, mut ts) = (1_000u16, 90_000u32);
        // (picture ID, keyframe, padding packets before it, frame lost)
        let plan: [(u16, bool, u16, bool); 9] = [
            (32_766, true, 0, false),
            (32_767, false, 3, false), // padding probes before it: kept
            (0, false, 0, false),      // the picture ID wraps
            (1, false, 5, true),       // lost whole, behind padding...
            (2, false, 0, false),      // ...so this one and
            (3, false, 2, false),      // this one cannot be decoded
            (4, true, 0, false),       // until a keyframe
            (5, false, 1, false),
            (6, false, 0, false),
        ];
        for (n, (pid, key, padding, lost)) in plan.into_iter().enumerate() {
            seq = seq.wrapping_add(padding);
            let pkts = vp8_with_picture_id(&vp8_frame(key, 320, 180, 90), pid, 3);
            let last = pkts.len() - 1;
            for (i, payload) in pkts.iter().enumerate() {
                let s = seq;
                seq = seq.wrapping_add(1);
                if lost {
                    continue;
                }
                let rtp = RtpIn {
                    layer: 0,
                    seq: s,
                    ts,
                    marker: i == last,
                    payload,
                    arrival: t0 + Duration::from_millis(n as u64 * 33),
                };
                tr.on_packet(&rtp).unwrap();
                if i == 1 {
                    // A late duplicate of the frame's first packet is ignored.
                    tr.on_packet(&RtpIn {
                        seq: s.wrapping_sub(1),
                        payload: &pkts[0],
                        ..rtp
                    })
                    .unwrap();
                }
            }
            ts = ts.wrapping_add(3_000);
        }
        let (file, stats) = tr.close().unwrap();
        let (_, blocks) = blocks(&file.into_inner());
        let times: Vec<u64> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(times, vec![0, 33, 66, 200, 233, 266]);
        assert_eq!(stats.frames_dropped, 2);
        assert_eq!(stats.late_or_invalid, 8);
    }

    /// RTP payloads of one H.264 access unit as a browser sends them: parameter sets in a
    /// STAP-A, NAL units larger than `mtu` as FU-A fragments, the rest as single NAL units.
    pub(crate) fn packetize_h264(nals: &[&[u8]], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut stap = vec![0x78u8];
        for nal in nals {
            let t = nal[0] & 0x1F;
            if t == 7 || t == 8 {
                stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                stap.extend_from_slice(nal);
                continue;
            }
            if stap.len() > 1 {
                out.push(std::mem::replace(&mut stap, vec![0x78]));
            }
            if nal.len() > mtu {
                out.extend(crate::recording::h264::tests::fu_a(nal, mtu));
            } else {
                out.push(nal.to_vec());
            }
        }
        if stap.len() > 1 {
            out.push(stap);
        }
        out
    }

    #[test]
    fn h264_access_units_are_dropped_after_a_loss_until_the_next_idr() {
        use crate::recording::h264::tests::{PPS, SPS_320X240};
        use crate::recording::mp4::tests::path;
        let t0 = Instant::now();
        let mut tr = H264Track::new(Mp4Writer::new(Cursor::new(Vec::new())), t0);
        let (mut seq, mut ts) = (65_530u16, u32::MAX - 3000);
        let idr: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let slice: Vec<u8> = [0x41]
            .into_iter()
            .chain((0..2500).map(|i| i as u8))
            .collect();
        let mut frame = |tr: &mut H264Track<Cursor<Vec<u8>>>, n: u64, key: bool, lose: bool| {
            let nals: Vec<&[u8]> = if key {
                vec![SPS_320X240, PPS, &idr]
            } else {
                vec![&slice]
            };
            let pkts = packetize_h264(&nals, 1000);
            let last = pkts.len() - 1;
            for (i, payload) in pkts.iter().enumerate() {
                let s = seq;
                seq = seq.wrapping_add(1);
                if lose && i == 1 {
                    continue;
                }
                tr.on_packet(&RtpIn {
                    layer: 0,
                    seq: s,
                    ts,
                    marker: i == last,
                    payload,
                    arrival: t0 + Duration::from_millis(200 + n * 33),
                })
                .unwrap();
            }
            ts = ts.wrapping_add(3000);
        };
        frame(&mut tr, 0, false, false); // before any keyframe: ignored
        frame(&mut tr, 1, true, false);
        frame(&mut tr, 2, false, false);
        frame(&mut tr, 3, false, true); // a fragment lost: dropped...
        frame(&mut tr, 4, false, false); // ...and so is what refers to it
        frame(&mut tr, 5, true, true); // the IDR's first fragment lost: dropped
        frame(&mut tr, 6, false, false);
        frame(&mut tr, 7, true, false);
        frame(&mut tr, 8, false, false);
        assert_eq!(tr.sink().first_ms(), Some(233));
        assert_eq!(tr.size(), Some((320, 240)));
        let (file, stats) = tr.close().unwrap();
        assert_eq!((stats.frames, stats.frames_dropped), (4, 4));
        let file = file.into_inner();
        let stbl = [b"moov", b"trak", b"mdia", b"minf", b"stbl"];
        let stts = path(
            &file,
            &[stbl[0], stbl[1], stbl[2], stbl[3], stbl[4], b"stts"],
        );
        let stss = path(
            &file,
            &[stbl[0], stbl[1], stbl[2], stbl[3], stbl[4], b"stss"],
        );
        // Samples at 233, 266, 433, 466 ms (3000 ticks = 33.3 ms; RTP time across the wrap).
        let word = |b: &[u8], i: usize| u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(
            (1..=7).map(|i| word(&stts.body, i)).collect::<Vec<_>>(),
            vec![3, 1, 33, 1, 167, 2, 33]
        );
        assert_eq!(
            (1..=3).map(|i| word(&stss.body, i)).collect::<Vec<_>>(),
            vec![2, 1, 3]
        );
    }
}
