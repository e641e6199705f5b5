//! One subscriber's copy of one published track: which layer it gets, how packets are rewritten
//! for it, and what it can retransmit. The decisions live in `forward::*`; this type holds their
//! state for one (subscriber, track) pair and turns `rtc` packets into their inputs and back.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::RTCRtpSenderId;

use crate::api::{MediaKind, TrackSource};
use crate::engine::participant::{Codec, PKey};
use crate::forward::layer_selector::{LayerSelector, Layers};
use crate::forward::packet_cache::{CachedPacket, PacketCache, RetransmitLimits, VIDEO_CAPACITY};
use crate::forward::rtp_munger::{Decision, RtpIn, RtpMunger};
use crate::forward::vp8::{self, Vp8Munger};

/// Render size assumed until the subscriber reports one: a typical grid tile.
const DEFAULT_RENDER: (u32, u32) = (640, 360);

/// Rewritten payloads one fan-out keeps for sharing (beyond this, each down-track copies).
const MAX_SHARED_REWRITES: usize = 8;

/// One publisher packet on its way to every down-track of its track: what they can share.
///
/// The VP8 descriptor is parsed once, and a payload rewritten with new picture ids is kept for
/// the next down-track that writes the same ids. Down-tracks share ids far more often than not:
/// a fresh one sends the publisher's own ids, and after a layer switch the offset is set by the
/// difference between the layers' numbering, the same for everyone who made the same switch. So
/// a webinar's hundreds of subscribers on one layer cost one payload copy per packet, not one
/// each.
pub struct FanOut<'a> {
    packet: &'a Packet,
    keyframe: bool,
    vp8: Option<vp8::Vp8Descriptor>,
    rewritten: &'a mut Vec<(vp8::Vp8Ids, Bytes)>,
}

impl<'a> FanOut<'a> {
    /// `rewritten` is scratch space, emptied here (kept by the caller to reuse its allocation).
    pub fn new(
        packet: &'a Packet,
        codec: Codec,
        keyframe: bool,
        rewritten: &'a mut Vec<(vp8::Vp8Ids, Bytes)>,
    ) -> Self {
        rewritten.clear();
        let vp8 = match codec {
            Codec::Vp8 => vp8::parse(&packet.payload).ok(),
            _ => None,
        };
        Self {
            packet,
            keyframe,
            vp8,
            rewritten,
        }
    }

    /// The payload with `ids` written over its descriptor, shared when already made.
    fn rewrite(&mut self, desc: &vp8::Vp8Descriptor, ids: vp8::Vp8Ids) -> Bytes {
        if let Some((_, b)) = self.rewritten.iter().find(|(i, _)| *i == ids) {
            return b.clone();
        }
        let mut owned = BytesMut::from(&self.packet.payload[..]);
        if vp8::apply(&mut owned, desc, ids).is_err() {
            return self.packet.payload.clone();
        }
        let b = owned.freeze();
        if self.rewritten.len() < MAX_SHARED_REWRITES {
            self.rewritten.push((ids, b.clone()));
        }
        b
    }
}

pub struct DownTrack {
    pub publisher: PKey,
    pub source: TrackSource,
    pub kind: MediaKind,
    pub sender_id: RTCRtpSenderId,
    /// rtc track id of the sender on the subscriber connection.
    pub track_id: String,
    /// Our SSRC towards the subscriber: constant across layer switches.
    pub ssrc: u32,
    pub payload_type: u8,
    pub codec: Codec,
    /// Render size the subscriber asked for; 0×0 pauses the track.
    pub render: (u32, u32),
    selector: LayerSelector,
    /// The layer the munger is steering to (what `selector` last chose).
    target_layer: Option<usize>,
    munger: RtpMunger,
    vp8: Vp8Munger,
    /// What was sent, to answer NACKs. Video only: Opus is negotiated without NACK feedback
    /// (`peer::media_engine`), so no subscriber asks for audio again, and a cache would only keep
    /// the last half second of every publisher's audio alive in each of its subscribers.
    cache: Option<PacketCache>,
    /// A keyframe must be requested for the target layer (first subscription, reconnect).
    pub wants_keyframe: bool,
    clock_rate: u32,
    /// What went out, for the sender reports (RFC 3550 §6.4.1).
    sent: SentCounters,
}

/// RTP packets and payload octets sent on a down-track, and its newest RTP timestamp with the
/// instant it was sent, from which a sender report extrapolates the RTP time of "now".
#[derive(Default, Clone, Copy)]
struct SentCounters {
    packets: u32,
    octets: u32,
    last: Option<(u32, Instant)>,
}

impl DownTrack {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        publisher: PKey,
        source: TrackSource,
        kind: MediaKind,
        sender_id: RTCRtpSenderId,
        track_id: String,
        ssrc: u32,
        payload_type: u8,
        clock_rate: u32,
        codec: Codec,
    ) -> Self {
        Self {
            publisher,
            source,
            kind,
            sender_id,
            track_id,
            ssrc,
            payload_type,
            codec,
            render: if source == TrackSource::Screen {
                // A shared screen is read, not glanced at: full detail unless told otherwise.
                (1920, 1080)
            } else {
                DEFAULT_RENDER
            },
            selector: LayerSelector::new(),
            target_layer: None,
            munger: RtpMunger::new(ssrc, clock_rate),
            vp8: Vp8Munger::new(),
            cache: (kind == MediaKind::Video)
                .then(|| PacketCache::new(VIDEO_CAPACITY, RetransmitLimits::default())),
            wants_keyframe: true,
            clock_rate,
            sent: SentCounters::default(),
        }
    }

    /// The sender report of this down-track at `now` (`ntp_time`: `now` on the NTP clock), once
    /// it has sent anything. The RTP time is the newest packet's, advanced by the time since it
    /// went out at the codec's clock rate: what the receiver needs to line audio up with video.
    pub fn sender_report(&self, now: Instant, ntp_time: u64) -> Option<SenderReport> {
        let (timestamp, at) = self.sent.last?;
        let elapsed = now.saturating_duration_since(at);
        let ticks = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time,
            rtp_time: timestamp.wrapping_add(ticks),
            packet_count: self.sent.packets,
            octet_count: self.sent.octets,
            ..Default::default()
        })
    }

    fn count_sent(&mut self, payload_len: usize) {
        self.sent.packets = self.sent.packets.wrapping_add(1);
        self.sent.octets = self.sent.octets.wrapping_add(payload_len as u32);
    }

    pub fn set_render_size(&mut self, width: u32, height: u32) {
        self.render = (width, height);
    }

    /// The layer being steered to, if any.
    pub fn current_layer(&self) -> Option<usize> {
        self.target_layer
    }

    /// Chooses the layer from the publisher's layers and the subscriber's estimate. Audio has a
    /// single layer and is never paused or dropped here.
    pub fn select_layer(
        &mut self,
        layers: &Layers,
        ssrcs: &[Option<u32>; 3],
        estimate_bps: Option<u64>,
        now: Instant,
    ) -> Option<usize> {
        let choice = if self.kind == MediaKind::Audio {
            Some(0)
        } else {
            self.selector.select(now, estimate_bps, self.render, layers)
        };
        let ssrc = choice.and_then(|l| ssrcs.get(l).copied().flatten());
        if choice != self.target_layer || ssrc != self.munger.target() {
            self.target_layer = choice;
            self.munger.set_target(ssrc);
        }
        choice
    }

    /// The layer a keyframe should be requested on now, if the forwarding is waiting for one.
    pub fn keyframe_wanted(&mut self) -> Option<usize> {
        if self.kind == MediaKind::Audio {
            return None;
        }
        let waiting = self.munger.needs_keyframe().is_some() || self.wants_keyframe;
        self.wants_keyframe = false;
        if waiting { self.target_layer } else { None }
    }

    /// Rewrites a publisher packet for this subscriber, or says to drop it.
    pub fn forward(&mut self, fan: &mut FanOut<'_>, now: Instant) -> Option<Packet> {
        let packet = fan.packet;
        let keyframe = fan.keyframe;
        let input = RtpIn {
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            keyframe: keyframe || self.kind == MediaKind::Audio,
            padding_only: packet.payload.is_empty(),
        };
        let Decision::Forward(out) = self.munger.process(&input, now) else {
            return None;
        };
        let mut payload = packet.payload.clone();
        let mut vp8_ids = None;
        if self.codec == Codec::Vp8
            && let Some(desc) = fan.vp8
        {
            let ids = self.vp8.munge(&desc, out.switched);
            // Copy the payload only when the ids actually change (after a layer switch).
            if !ids_match(&desc, ids) {
                payload = fan.rewrite(&desc, ids);
            }
            vp8_ids = Some(ids);
        }
        if let Some(cache) = &mut self.cache {
            cache.insert(
                CachedPacket {
                    ssrc: out.ssrc,
                    seq: out.seq,
                    timestamp: out.timestamp,
                    marker: packet.header.marker,
                    payload_type: self.payload_type,
                    payload: packet.payload.clone(),
                    vp8: vp8_ids,
                },
                now,
            );
        }
        self.count_sent(payload.len());
        self.sent.last = Some((out.timestamp, now));
        Some(Packet {
            header: Header {
                version: 2,
                padding: false,
                marker: packet.header.marker,
                payload_type: self.payload_type,
                sequence_number: out.seq,
                timestamp: out.timestamp,
                ssrc: out.ssrc,
                ..Default::default()
            },
            payload,
        })
    }

    /// Packets to retransmit for a NACK, exactly as they were first sent.
    pub fn nack(&mut self, seqs: impl IntoIterator<Item = u16>, now: Instant) -> Vec<Packet> {
        let codec = self.codec;
        let Some(cache) = &mut self.cache else {
            return Vec::new();
        };
        let resend: Vec<Packet> = cache
            .nack_lookup(seqs, now)
            .map(|c| {
                let mut payload = c.payload.clone();
                if codec == Codec::Vp8
                    && let Some(ids) = c.vp8
                    && let Ok(desc) = vp8::parse(&payload)
                    && !ids_match(&desc, ids)
                {
                    let mut owned = BytesMut::from(&payload[..]);
                    if vp8::apply(&mut owned, &desc, ids).is_ok() {
                        payload = owned.freeze();
                    }
                }
                Packet {
                    header: Header {
                        version: 2,
                        marker: c.marker,
                        payload_type: c.payload_type,
                        sequence_number: c.seq,
                        timestamp: c.timestamp,
                        ssrc: c.ssrc,
                        ..Default::default()
                    },
                    payload,
                }
            })
            .collect();
        for p in &resend {
            self.count_sent(p.payload.len());
        }
        resend
    }
}

/// Whether the descriptor already carries these ids (no rewrite, and no copy, needed).
fn ids_match(desc: &vp8::Vp8Descriptor, ids: vp8::Vp8Ids) -> bool {
    desc.picture_id.map(|(p, _)| p) == ids.picture_id && desc.tl0_pic_idx == ids.tl0_pic_idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::layer_selector::LayerInfo;
    use std::time::Duration;

    fn rtp_packet(payload_type: u8, seq: u16, timestamp: u32) -> Packet {
        Packet {
            header: Header {
                version: 2,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: 42,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0x78; 60]),
        }
    }

    /// A report made between packets carries the RTP time of its own instant (the newest
    /// packet's advanced at the clock rate), so the receiver maps RTP time to wall time right.
    #[test]
    fn a_sender_report_counts_what_was_sent_and_extrapolates_rtp_time() {
        let mut dt = DownTrack::new(
            1,
            TrackSource::Microphone,
            MediaKind::Audio,
            RTCRtpSenderId::default(),
            "t".to_owned(),
            7,
            111,
            48_000,
            Codec::Opus,
        );
        let t0 = Instant::now();
        assert!(
            dt.sender_report(t0, 1).is_none(),
            "nothing sent, nothing reported"
        );
        let layers: Layers = [None, None, None];
        dt.select_layer(&layers, &[Some(42), None, None], None, t0);
        let mut rewritten = Vec::new();
        let (mut last_ts, mut last_seq) = (0, 0);
        for i in 0..50u16 {
            let p = rtp_packet(111, 100 + i, 1_000 + u32::from(i) * 960);
            let mut fan = FanOut::new(&p, Codec::Opus, false, &mut rewritten);
            let out = dt
                .forward(&mut fan, t0 + Duration::from_millis(20 * u64::from(i)))
                .expect("audio is forwarded");
            last_ts = out.header.timestamp;
            last_seq = out.header.sequence_number;
        }
        let last_sent = t0 + Duration::from_millis(20 * 49);
        let sr = dt
            .sender_report(last_sent + Duration::from_millis(500), 99)
            .expect("a report");
        assert_eq!(sr.ssrc, 7);
        assert_eq!(sr.ntp_time, 99);
        assert_eq!(sr.packet_count, 50);
        assert_eq!(sr.octet_count, 50 * 60);
        assert_eq!(sr.rtp_time, last_ts.wrapping_add(24_000));
        // Audio is not retransmitted (no NACK negotiated for Opus), so nothing is kept for it.
        assert!(dt.nack([last_seq], last_sent).is_empty());
        assert_eq!(dt.sender_report(last_sent, 0).unwrap().packet_count, 50);
    }

    /// A NACKed video packet goes out again as first sent, and counts as sent.
    #[test]
    fn video_is_retransmitted_as_sent_and_counted() {
        let mut dt = DownTrack::new(
            1,
            TrackSource::Camera,
            MediaKind::Video,
            RTCRtpSenderId::default(),
            "t".to_owned(),
            7,
            102,
            90_000,
            Codec::H264,
        );
        let t0 = Instant::now();
        let layer = LayerInfo {
            active: true,
            bitrate_bps: 150_000,
            width: 320,
            height: 180,
        };
        dt.select_layer(
            &[Some(layer), None, None],
            &[Some(42), None, None],
            None,
            t0,
        );
        let mut rewritten = Vec::new();
        let mut sent = Vec::new();
        for i in 0..10u16 {
            let p = rtp_packet(102, 500 + i, 3_000 * u32::from(i));
            let mut fan = FanOut::new(&p, Codec::H264, i == 0, &mut rewritten);
            sent.push(
                dt.forward(&mut fan, t0)
                    .expect("video from its keyframe on"),
            );
        }
        let nacked = &sent[4];
        let resent = dt.nack([nacked.header.sequence_number], t0);
        assert_eq!(resent.len(), 1);
        assert_eq!(
            resent[0].header.sequence_number,
            nacked.header.sequence_number
        );
        assert_eq!(resent[0].header.timestamp, nacked.header.timestamp);
        assert_eq!(resent[0].header.ssrc, 7);
        assert_eq!(resent[0].payload, nacked.payload);
        assert_eq!(dt.sender_report(t0, 0).unwrap().packet_count, 11);
    }
}
