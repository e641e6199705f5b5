//! One subscriber's copy of one published track: which layer it gets, how packets are rewritten
//! for it, and what it can retransmit.

use std::time::Instant;

use rtc::rtp::packet::Packet;

use crate::engine::participant::Codec;
use crate::forward::rtp_munger::{Decision, RtpIn, RtpMunger};
use crate::forward::vp8::{self, Vp8Munger};
use rtc::rtp_transceiver::RTCRtpSenderId;

use crate::api::{MediaKind, TrackSource};
use crate::engine::participant::PKey;

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
    /// Render size the subscriber asked for; `None` until told (treated as "any").
    pub render: Option<(u32, u32)>,
    /// The spatial layer we want to forward (None = paused).
    target_layer: Option<usize>,
    munger: RtpMunger,
    vp8: Vp8Munger,
    /// Set when a keyframe must be requested for the target layer (subscribe, switch).
    pub wants_keyframe: bool,
    cache: Vec<Option<Packet>>,
}

const CACHE_SIZE: usize = 512;

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
        _now: Instant,
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
            render: None,
            target_layer: Some(0),
            munger: RtpMunger::new(ssrc, clock_rate),
            vp8: Vp8Munger::new(),
            wants_keyframe: true,
            cache: vec![None; if kind == MediaKind::Video { CACHE_SIZE } else { 64 }],
        }
    }

    pub fn set_render_size(&mut self, width: u32, height: u32, _now: Instant) {
        self.render = Some((width, height));
    }

    /// The layer currently forwarded, if any.
    pub fn current_layer(&self) -> Option<usize> {
        self.target_layer
    }

    /// Chooses the layer to forward from the publisher's layers and the subscriber's estimate.
    pub fn select_layer(&mut self, layers: &[Option<u32>; 3], estimate_bps: Option<u64>, _now: Instant) {
        let paused = self.render == Some((0, 0));
        let want = if paused {
            None
        } else {
            let budget = estimate_bps.unwrap_or(u64::MAX);
            let ceiling = if budget < 300_000 { 0 } else if budget < 900_000 { 1 } else { 2 };
            (0..=ceiling).rev().find(|l| layers[*l].is_some())
        };
        if want != self.target_layer {
            self.target_layer = want;
            self.munger.set_target(want.and_then(|l| layers[l]));
            self.wants_keyframe = want.is_some();
        }
    }

    /// The layer a keyframe should be requested on, once (cleared by the call).
    pub fn keyframe_request(&mut self) -> Option<usize> {
        if self.munger.needs_keyframe().is_some() || self.wants_keyframe {
            self.wants_keyframe = false;
            self.target_layer
        } else {
            None
        }
    }

    /// Rewrites a publisher packet for this subscriber, or says to drop it.
    pub fn forward(
        &mut self,
        layer: usize,
        packet: &Packet,
        keyframe: bool,
        layers: &[Option<u32>; 3],
        now: Instant,
    ) -> Option<Packet> {
        if self.munger.target().is_none() && self.target_layer.is_some() {
            self.munger.set_target(self.target_layer.and_then(|l| layers[l]));
        }
        let _ = layer;
        let input = RtpIn {
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            keyframe: keyframe || self.kind == MediaKind::Audio,
            padding_only: packet.payload.is_empty(),
        };
        let decision = self.munger.process(&input, now);
        let Decision::Forward(out) = decision else {
            return None;
        };
        let mut pkt = packet.clone();
        pkt.header.ssrc = out.ssrc;
        pkt.header.sequence_number = out.seq;
        pkt.header.timestamp = out.timestamp;
        pkt.header.payload_type = self.payload_type;
        pkt.header.extension = false;
        pkt.header.extensions.clear();
        pkt.header.extensions_padding = 0;
        if self.codec == Codec::Vp8 {
            if let Ok(desc) = vp8::parse(&pkt.payload) {
                let mut payload = bytes::BytesMut::from(&pkt.payload[..]);
                if self.vp8.rewrite(&mut payload, &desc, out.switched).is_ok() {
                    pkt.payload = payload.freeze();
                }
            }
        }
        let slot = out.seq as usize % self.cache.len();
        self.cache[slot] = Some(pkt.clone());
        Some(pkt)
    }

    /// Packets to retransmit for a NACK, as they were sent.
    pub fn nack(&mut self, seqs: impl Iterator<Item = u16>, _now: Instant) -> Vec<Packet> {
        seqs.filter_map(|s| {
            let slot = s as usize % self.cache.len();
            self.cache[slot]
                .as_ref()
                .filter(|p| p.header.sequence_number == s)
                .cloned()
        })
        .collect()
    }
}
