//! The JSON messages of docs/protocol.md.

use chrono::{DateTime, Utc};
use parley_sfu::{SubscribedTrack, TrackSource, TrackState};
use serde::{Deserialize, Serialize};

use crate::domain::Role;

/// Every client message type, so that "unknown type" can be told apart from "bad fields".
pub const CLIENT_TYPES: &[&str] = &[
    "join",
    "publish_offer",
    "subscribe_answer",
    "ice_candidate",
    "mute",
    "video_size",
    "chat",
    "host",
    "recording",
    "leave",
    "ping",
];

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        token: String,
        /// The meeting the client means to join (from its URL); must match the token's.
        #[serde(default)]
        meeting_id: Option<String>,
        #[serde(default)]
        resume: Option<Resume>,
    },
    PublishOffer {
        sdp: String,
        #[serde(default)]
        tracks: Vec<parley_sfu::TrackDescriptor>,
    },
    SubscribeAnswer {
        sdp: String,
    },
    IceCandidate {
        target: parley_sfu::PeerRole,
        candidate: IceCandidate,
    },
    Mute {
        source: TrackSource,
        muted: bool,
    },
    VideoSize {
        participant_id: String,
        source: TrackSource,
        width: u32,
        height: u32,
    },
    Chat {
        text: String,
    },
    Host {
        action: HostAction,
        #[serde(default)]
        participant_id: Option<String>,
        #[serde(default)]
        source: Option<TrackSource>,
    },
    Recording {
        action: RecordingAction,
    },
    Leave {},
    Ping {},
}

/// Start or stop the meeting's recording (needs the token's `record` grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingAction {
    Start,
    Stop,
}

/// A running recording as `joined` shows it to someone arriving while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingState {
    pub active: bool,
    pub recording_id: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub participant_id: String,
    pub resume_token: String,
}

/// The browser's `RTCIceCandidateInit`, field names as the browser spells them.
#[derive(Debug, Clone, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_mline_index: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAction {
    Mute,
    Remove,
    End,
    Lock,
    Unlock,
}

/// A participant as others see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ParticipantView {
    pub id: String,
    pub display_name: String,
    pub role: Role,
    #[schema(value_type = Vec<Object>)]
    pub tracks: Vec<TrackState>,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeetingView {
    pub id: String,
    pub title: String,
    pub locked: bool,
    /// The running recording, `null` when none: everyone must know they are recorded.
    pub recording: Option<RecordingState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Removed,
    Timeout,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Removed => "removed",
            LeaveReason::Timeout => "timeout",
        }
    }
}

// `Joined` is much larger than the rest; every message is built, encoded once and dropped, never
// kept in bulk, so boxing it would only add an allocation per join.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        participant_id: String,
        resume_token: String,
        meeting: MeetingView,
        you: ParticipantView,
        participants: Vec<ParticipantView>,
        /// TURN relays for `RTCConfiguration.iceServers`, with credentials of this participant
        /// that expire (absent when no relay is configured).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<crate::turn::IceServer>,
    },
    PublishAnswer {
        sdp: String,
    },
    SubscribeOffer {
        sdp: String,
        tracks: Vec<SubscribedTrack>,
    },
    ParticipantJoined {
        participant: ParticipantView,
    },
    ParticipantUpdated {
        participant: ParticipantView,
    },
    ParticipantLeft {
        participant_id: String,
        reason: LeaveReason,
    },
    ActiveSpeaker {
        participant_id: Option<String>,
    },
    Chat {
        from: String,
        display_name: String,
        text: String,
        at: DateTime<Utc>,
    },
    MuteRequest {
        source: TrackSource,
    },
    MeetingLocked {
        locked: bool,
    },
    /// The tariff's maximum meeting length is near: the meeting ends at `ends_at`.
    MeetingEnding {
        ends_at: String,
        minutes_left: u32,
    },
    /// A recording started (`active: true` with its id, start and who started it) or stopped
    /// (`active: false` with the reason: stopped, quota_exceeded, meeting_ended, failed).
    Recording {
        active: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        recording_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        started_at: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        started_by: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// The recording could not keep up and left `dropped` packets out so far; it goes on.
    RecordingDegraded {
        dropped: u64,
    },
    Error {
        code: &'static str,
        message: String,
    },
    /// The meeting is on another node (`url`: its WebSocket; join there with the same token),
    /// or, without `url`, this node is draining: rejoin through the public address. The close
    /// follows (docs/protocol.md, "Several nodes").
    Redirect {
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    Pong,
}

impl ServerMessage {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    /// Serialized once, shared by every recipient of a broadcast.
    pub fn encode(&self) -> std::sync::Arc<str> {
        match serde_json::to_string(self) {
            Ok(s) => s.into(),
            // Serializing our own plain structs cannot fail; keep a valid frame just in case.
            Err(_) => r#"{"type":"error","code":"internal","message":"encoding failed"}"#.into(),
        }
    }
}

/// Parses one text frame. Returns the error code and message for an `error` reply otherwise.
pub fn parse_client(text: &str) -> Result<ClientMessage, (&'static str, String)> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ("malformed_json", format!("malformed JSON: {e}")))?;
    let ty = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(("invalid_message", "missing \"type\" field".to_owned()))?
        .to_owned();
    if !CLIENT_TYPES.contains(&ty.as_str()) {
        return Err(("unknown_type", format!("unknown message type {ty:.40?}")));
    }
    serde_json::from_value(value).map_err(|e| ("invalid_message", format!("invalid {ty}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        assert!(matches!(
            parse_client(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping {})
        ));
        assert!(matches!(
            parse_client(r#"{"type":"leave"}"#),
            Ok(ClientMessage::Leave {})
        ));
        assert!(matches!(
            parse_client(r#"{"type":"mute","source":"microphone","muted":true}"#),
            Ok(ClientMessage::Mute {
                source: TrackSource::Microphone,
                muted: true
            })
        ));
        assert!(matches!(
            parse_client(
                r#"{"type":"ice_candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
            ),
            Ok(ClientMessage::IceCandidate { .. })
        ));
        assert_eq!(parse_client("{").err().map(|e| e.0), Some("malformed_json"));
        assert_eq!(
            parse_client("[]").err().map(|e| e.0),
            Some("invalid_message")
        );
        assert!(matches!(
            parse_client(r#"{"type":"recording","action":"start"}"#),
            Ok(ClientMessage::Recording {
                action: RecordingAction::Start
            })
        ));
        assert_eq!(
            parse_client(r#"{"type":"recording","action":"pause"}"#)
                .err()
                .map(|e| e.0),
            Some("invalid_message")
        );
        assert_eq!(
            parse_client(r#"{"type":"dance"}"#).err().map(|e| e.0),
            Some("unknown_type")
        );
        assert_eq!(
            parse_client(r#"{"type":"mute","source":"nose","muted":true}"#)
                .err()
                .map(|e| e.0),
            Some("invalid_message")
        );
    }

    #[test]
    fn server_messages_have_protocol_shape() {
        let s = ServerMessage::Pong.encode();
        assert_eq!(&*s, r#"{"type":"pong"}"#);
        let s = ServerMessage::ParticipantLeft {
            participant_id: "p1".into(),
            reason: LeaveReason::Timeout,
        }
        .encode();
        assert_eq!(
            &*s,
            r#"{"type":"participant_left","participant_id":"p1","reason":"timeout"}"#
        );
        let s = ServerMessage::Recording {
            active: false,
            recording_id: None,
            started_at: None,
            started_by: None,
            reason: Some("quota_exceeded"),
        }
        .encode();
        assert_eq!(
            &*s,
            r#"{"type":"recording","active":false,"reason":"quota_exceeded"}"#
        );
    }
}
