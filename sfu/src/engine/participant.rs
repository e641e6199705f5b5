//! A participant on the media plane: its two peer connections, what it publishes and what it
//! receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};

use crate::api::{MediaKind, ParticipantId, ParticipantOptions, PeerRole, RoomId, TrackSource};
use crate::engine::downtrack::DownTrack;

/// Key of a participant inside the core (stable for its lifetime, never reused).
pub type PKey = u64;

/// One server-side peer connection and the bookkeeping the core keeps about it.
pub struct Peer {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    /// Next instant `handle_timeout` must run, as last reported by `poll_timeout`.
    pub deadline: Option<Instant>,
    pub connected: bool,
    /// Remote addresses learned from ICE, for routing and cleanup.
    pub remote_addrs: Vec<SocketAddr>,
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
    /// When a keyframe was last requested per layer (relay rate limit).
    pub last_keyframe_request: [Option<Instant>; 3],
}

impl PublishedTrack {
    pub fn layer_of(&self, ssrc: u32) -> Option<usize> {
        self.layer_ssrcs.iter().position(|s| *s == Some(ssrc))
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
    pub published: HashMap<String, PublishedTrack>,
    /// What this participant receives, keyed by (publisher, source).
    pub downtracks: HashMap<(PKey, TrackSource), DownTrack>,
    /// rtc track id of a down-track's sender → its key, for routing subscriber RTCP.
    pub downtrack_by_track: HashMap<String, (PKey, TrackSource)>,
    /// A subscriber offer is out and unanswered.
    pub sub_negotiating: bool,
    /// Something changed while an offer was out: offer again after the answer.
    pub sub_dirty: bool,
    pub data_channel: Option<RTCDataChannelId>,
    /// Subscriber-side bandwidth estimate in bit/s (REMB), when known.
    pub estimate_bps: Option<u64>,
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

    /// Looks up the published track whose media has this sender id (for sender-side bookkeeping).
    pub fn downtrack_sender(&self, key: &(PKey, TrackSource)) -> Option<RTCRtpSenderId> {
        self.downtracks.get(key).map(|d| d.sender_id)
    }
}
