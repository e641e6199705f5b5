//! The vocabulary shared by the SFU and whoever drives it (the signaling server, tests).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

/// A meeting on the media plane.
pub type RoomId = String;
/// A participant of a room; unique within the room.
pub type ParticipantId = String;

/// What a published track carries, as the publishing client declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

impl TrackSource {
    pub fn is_audio(self) -> bool {
        matches!(self, TrackSource::Microphone | TrackSource::ScreenAudio)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen_audio",
        }
    }
}

/// Media kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// Which of a participant's two peer connections a message concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// Client offers, server answers; carries what the client sends.
    Publisher,
    /// Server offers, client answers; carries what the client receives.
    Subscriber,
}

/// A track the client says it is publishing: the m-line `mid` of its offer and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackDescriptor {
    pub mid: String,
    pub source: TrackSource,
}

/// What a participant may do on the media plane (from the join token's grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantOptions {
    pub display_name: String,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_screen_share: bool,
}

/// One receive-only transceiver in a subscriber offer, so the client knows whose media arrives on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribedTrack {
    pub mid: String,
    pub participant_id: ParticipantId,
    pub source: TrackSource,
    pub kind: MediaKind,
}

/// State of one published track, as others should see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackState {
    pub source: TrackSource,
    pub muted: bool,
}

/// What the media plane tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    /// The subscriber connection needs (re)negotiation: send this offer to the client.
    SubscriberOffer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<SubscribedTrack>,
    },
    /// The set of tracks a participant publishes changed (added, removed).
    TracksChanged {
        room: RoomId,
        participant: ParticipantId,
        tracks: Vec<TrackState>,
    },
    /// The dominant speaker of a room changed.
    ActiveSpeaker {
        room: RoomId,
        participant: Option<ParticipantId>,
    },
    /// A data-channel message (chat, reaction) that was relayed to the room.
    Data {
        room: RoomId,
        participant: ParticipantId,
        text: String,
    },
    /// A peer connection reached connected, or failed / closed.
    PeerState {
        room: RoomId,
        participant: ParticipantId,
        role: PeerRole,
        connected: bool,
    },
    /// Time spent speaking, reported every few seconds per participant (for talk-time summaries).
    /// The increments stop when the participant leaves; what was not reported by then comes
    /// back from the leave itself as a [`TalkTimeTotal`].
    TalkTime {
        room: RoomId,
        participant: ParticipantId,
        speaking_ms: u64,
    },
}

/// A participant's whole talk time in the room, from joining to leaving: every `TalkTime`
/// increment plus what had not been reported yet. Returned by the commands that take
/// participants out (leave, close a room), so the caller can record the last seconds before
/// the participant is gone. A total rather than a last increment: an increment still on its
/// way when the participant left cannot be lost or counted twice by a caller that subtracts
/// the increments it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkTimeTotal {
    pub participant: ParticipantId,
    pub speaking_ms: u64,
}

/// Why the media plane refused a request.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SfuError {
    #[error("no such room")]
    NoSuchRoom,
    #[error("no such participant")]
    NoSuchParticipant,
    #[error("participant already in the room")]
    AlreadyJoined,
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("media plane stopped")]
    Stopped,
    #[error("recording: {0}")]
    Recording(String),
}

/// Configuration of the media plane.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the single UDP socket binds, e.g. 0.0.0.0:7882.
    pub udp_bind: SocketAddr,
    /// Addresses written as host candidates; empty means loopback plus the machine's own addresses.
    pub announced_ips: Vec<IpAddr>,
}

/// Counters read by `/metrics`; updated by the media plane without locks.
#[derive(Debug, Default)]
pub struct SfuMetrics {
    pub rooms: AtomicU64,
    pub participants: AtomicU64,
    pub tracks: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub nacks_received: AtomicU64,
    pub retransmissions: AtomicU64,
    pub plis_sent: AtomicU64,
    pub plis_received: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub unknown_source_datagrams: AtomicU64,
    pub layer_switches: AtomicU64,
    /// Subscriber connections whose forwarded media the SFU protects itself (AES-GCM), and
    /// those left on rtc's SRTP path (any other profile): see `engine::srtp_out`.
    pub own_srtp_connections: AtomicU64,
    pub rtc_srtp_connections: AtomicU64,
}

impl SfuMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the recording side of the media plane reports, polled with
/// `Sfu::poll_recording_event` (kept apart from [`SfuEvent`] so its consumers need no new arms).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingEvent {
    /// A room's recording began; its files go under `dir`.
    Started {
        room: RoomId,
        dir: std::path::PathBuf,
    },
    /// The room stopped recording (asked to, or the room closed); files are being finalized.
    Stopped { room: RoomId },
    /// The writer could not keep up and packets were left out (total so far). The meeting goes
    /// on; the files have gaps (concealed audio, video held until the next keyframe).
    Degraded { room: RoomId, dropped: u64 },
    /// Every file of the recording is closed and complete.
    Finished {
        room: RoomId,
        files: Vec<std::path::PathBuf>,
    },
    /// A file could not be written (disk full, permissions); what was written so far is kept.
    Failed { room: RoomId, error: String },
}
