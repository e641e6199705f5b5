//! A participant on the media plane: its two peer connections, what it publishes and what it
//! receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::RTCRtpReceiverId;

use crate::api::{MediaKind, ParticipantId, ParticipantOptions, PeerRole, RoomId, TrackSource};
use crate::engine::FastMap;
use crate::engine::downtrack::DownTrack;

/// Key of a participant inside the core (stable for its lifetime, never reused).
pub type PKey = u64;

/// One server-side peer connection and the bookkeeping the core keeps about it.
pub struct Peer {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    /// Next instant `handle_timeout` must run, as last reported by `poll_timeout` and given to
    /// the engine's timer queue (kept here so an unchanged deadline costs no queue update).
    pub deadline: Option<Instant>,
    pub connected: bool,
    /// Remote addresses learned from ICE, for routing and cleanup.
    pub remote_addrs: Vec<SocketAddr>,
    /// Subscriber connections: the provider wrapper their outbound SRTP key is read from.
    pub key_tap: Option<std::sync::Arc<crate::engine::srtp_out::KeyTap>>,
    /// Subscriber connections, once up with a profile `srtp_out` supports (AES-GCM, AES-CM): what
    /// forwarded packets are protected and addressed with (`None`: they go through rtc).
    pub srtp_out: Option<crate::engine::srtp_out::OutboundSrtp>,
    /// Our socket and the remote address of the last DTLS/SRTP datagram rtc sent: the selected
    /// ICE pair.
    pub media_path: Option<(SocketAddr, SocketAddr)>,
    /// When the next sender reports are due (subscriber connections).
    pub next_sender_report: Option<Instant>,
}

impl Peer {
    /// Notes where a datagram rtc sends on this connection goes: DTLS and SRTCP follow the
    /// selected pair, so the SFU's own SRTP follows it too (after an ICE restart, say).
    pub fn note_path(&mut self, local: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        if !crate::engine::srtp_out::follows_selected_pair(datagram) {
            return;
        }
        self.media_path = Some((local, to));
        if let Some(out) = &mut self.srtp_out {
            out.local = local;
            out.to = to;
        }
    }
}

/// The codec a published track uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Vp8,
    H264,
}

/// A track a participant publishes (one per m-line; simulcast layers share it).
pub struct PublishedTrack {
    /// The m-line this track arrives on in the publisher connection.
    pub mid: Option<String>,
    pub source: TrackSource,
    pub kind: MediaKind,
    pub receiver_id: RTCRtpReceiverId,
    pub codec: Codec,
    /// Media SSRC of each spatial layer (0 = lowest). A non-simulcast track has only layer 0.
    pub layer_ssrcs: [Option<u32>; 3],
    pub simulcast: bool,
    /// Negotiated id of the RFC 6464 audio-level extension, when present.
    pub audio_level_ext: Option<u8>,
    pub muted: bool,
    /// PLI/FIR towards the publisher, rate limited per layer.
    pub keyframes: crate::forward::keyframe_requester::KeyframeRequester,
    /// Received bitrate and activity per layer.
    pub bitrate: crate::forward::bitrate::LayerBitrates,
    /// Resolution per layer, read from VP8 keyframes (0×0 until one is seen).
    pub resolution: [(u32, u32); 3],
    /// A keyframe has been seen on the layer (a switch to it can complete).
    pub keyframe_seen: [bool; 3],
}

/// Below this a simulcast layer above the lowest is not worth switching to.
const MIN_USABLE_BPS: u64 = 40_000;

impl PublishedTrack {
    pub fn layer_of(&self, ssrc: u32) -> Option<usize> {
        self.layer_ssrcs.iter().position(|s| *s == Some(ssrc))
    }

    /// What the layer selector needs to know about each layer now.
    pub fn layers(&self, now: Instant) -> crate::forward::layer_selector::Layers {
        use crate::forward::layer_selector::{LayerInfo, layer_resolution};
        let full = self.resolution[2];
        let mut out = [None; 3];
        for (i, ssrc) in self.layer_ssrcs.iter().enumerate() {
            if ssrc.is_none() {
                continue;
            }
            let (mut width, mut height) = self.resolution[i];
            if width == 0 {
                // Not seen a keyframe of this layer yet: assume the simulcast ladder of a 720p
                // camera (or of whatever the full layer showed).
                let base = if full.0 > 0 { full } else { (1280, 720) };
                let layer = if self.simulcast { i } else { 2 };
                (width, height) = layer_resolution(base.0, base.1, layer);
            }
            out[i] = Some(LayerInfo {
                active: self.bitrate.is_active(i, now),
                bitrate_bps: self.bitrate.bitrate_bps(i, now),
                width,
                height,
            });
        }
        // A layer the encoder starves (a browser short of uplink bandwidth keeps the top layer
        // alive with a trickle of frames) or that never produced a keyframe cannot carry a
        // subscriber: switching there would stall its video. The lowest live layer always counts.
        let lowest = out.iter().position(|l| l.is_some_and(|l| l.active));
        for (i, slot) in out.iter_mut().enumerate() {
            if let Some(l) = slot
                && Some(i) != lowest
                && (l.bitrate_bps < MIN_USABLE_BPS || !self.keyframe_seen[i])
            {
                l.active = false;
            }
        }
        out
    }
}

pub struct Participant {
    pub room: RoomId,
    pub id: ParticipantId,
    pub options: ParticipantOptions,
    pub publisher: Peer,
    pub subscriber: Peer,
    /// The mid → source map the client declared with its last publisher offer.
    pub declared: HashMap<String, TrackSource>,
    /// Published tracks by the rtc track id of the publisher connection.
    pub published: FastMap<String, PublishedTrack>,
    /// What this participant receives, keyed by (publisher, source). Boxed: a table grows at
    /// 7/8 full, so one holding 30 down-tracks (a 16-person meeting) has 64 slots, and inline
    /// values (over 400 bytes each) would keep twice the memory the down-tracks need.
    pub downtracks: FastMap<(PKey, TrackSource), Box<DownTrack>>,
    /// rtc track id of a down-track's sender → its key, for routing subscriber RTCP.
    pub downtrack_by_track: FastMap<String, (PKey, TrackSource)>,
    /// A subscriber offer is out and unanswered.
    pub sub_negotiating: bool,
    /// Something changed while an offer was out: offer again after the answer.
    pub sub_dirty: bool,
    pub data_channel: Option<RTCDataChannelId>,
    /// Subscriber-side bandwidth estimate in bit/s (REMB), when known.
    pub bwe: crate::forward::bwe::SubscriberBwe,
}

impl Participant {
    pub fn peer(&self, role: PeerRole) -> &Peer {
        match role {
            PeerRole::Publisher => &self.publisher,
            PeerRole::Subscriber => &self.subscriber,
        }
    }

    pub fn peer_mut(&mut self, role: PeerRole) -> &mut Peer {
        match role {
            PeerRole::Publisher => &mut self.publisher,
            PeerRole::Subscriber => &mut self.subscriber,
        }
    }
}
