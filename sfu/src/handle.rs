//! The async face of the media plane: a cloneable handle that sends commands to the media thread.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::api::*;

/// A request to the media thread. Each carries its reply channel.
pub(crate) enum Command {
    Join {
        room: RoomId,
        participant: ParticipantId,
        options: ParticipantOptions,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Publish {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<TrackDescriptor>,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    SubscriberAnswer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    RemoteCandidate {
        room: RoomId,
        participant: ParticipantId,
        role: PeerRole,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    SetMuted {
        room: RoomId,
        participant: ParticipantId,
        source: TrackSource,
        muted: bool,
    },
    VideoSize {
        room: RoomId,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        source: TrackSource,
        width: u32,
        height: u32,
    },
    SendData {
        room: RoomId,
        participant: ParticipantId,
        text: String,
    },
    Leave {
        room: RoomId,
        participant: ParticipantId,
        /// Told the participant's whole talk time, when the caller wants it.
        reply: Option<oneshot::Sender<Option<TalkTimeTotal>>>,
    },
    CloseRoom {
        room: RoomId,
        reply: Option<oneshot::Sender<Vec<TalkTimeTotal>>>,
    },
    StartRecording {
        room: RoomId,
        dir: std::path::PathBuf,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    StopRecording {
        room: RoomId,
        reply: oneshot::Sender<Result<bool, SfuError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Cloneable handle to a running media plane.
#[derive(Clone)]
pub struct SfuHandle {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) metrics: Arc<SfuMetrics>,
    pub(crate) local_addr: SocketAddr,
    /// Recording events, handed once to whoever takes them (see `take_recording_events`).
    pub(crate) recording_events:
        Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<RecordingEvent>>>>,
}

impl SfuHandle {
    /// The UDP address the media plane listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live counters for `/metrics`.
    pub fn metrics(&self) -> &Arc<SfuMetrics> {
        &self.metrics
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// Adds a participant to a room (the room is created on first join).
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        options: ParticipantOptions,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::Join {
            room: room.into(),
            participant: participant.into(),
            options,
            reply,
        })
        .await
    }

    /// Applies the client's publisher offer and returns the server's answer SDP.
    pub async fn publish(
        &self,
        room: &str,
        participant: &str,
        sdp: String,
        tracks: Vec<TrackDescriptor>,
    ) -> Result<String, SfuError> {
        self.call(|reply| Command::Publish {
            room: room.into(),
            participant: participant.into(),
            sdp,
            tracks,
            reply,
        })
        .await
    }

    /// Applies the client's answer to the latest subscriber offer.
    pub async fn subscriber_answer(
        &self,
        room: &str,
        participant: &str,
        sdp: String,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::SubscriberAnswer {
            room: room.into(),
            participant: participant.into(),
            sdp,
            reply,
        })
        .await
    }

    /// Adds a trickled client ICE candidate to one of the participant's connections.
    pub async fn remote_candidate(
        &self,
        room: &str,
        participant: &str,
        role: PeerRole,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::RemoteCandidate {
            room: room.into(),
            participant: participant.into(),
            role,
            candidate,
            sdp_mid,
            sdp_mline_index,
            reply,
        })
        .await
    }

    /// Marks a published source muted or not; a muted source is not forwarded.
    pub fn set_muted(&self, room: &str, participant: &str, source: TrackSource, muted: bool) {
        let _ = self.tx.send(Command::SetMuted {
            room: room.into(),
            participant: participant.into(),
            source,
            muted,
        });
    }

    /// The size at which `subscriber` renders `publisher`'s video `source`; 0×0 pauses it.
    pub fn video_size(
        &self,
        room: &str,
        subscriber: &str,
        publisher: &str,
        source: TrackSource,
        width: u32,
        height: u32,
    ) {
        let _ = self.tx.send(Command::VideoSize {
            room: room.into(),
            subscriber: subscriber.into(),
            publisher: publisher.into(),
            source,
            width,
            height,
        });
    }

    /// Relays a chat/reaction message from `participant` to everyone else in the room over their
    /// data channels (used for messages that arrived over the WebSocket instead).
    pub fn send_data(&self, room: &str, participant: &str, text: String) {
        let _ = self.tx.send(Command::SendData {
            room: room.into(),
            participant: participant.into(),
            text,
        });
    }

    /// Removes a participant and its tracks from a room.
    pub fn leave(&self, room: &str, participant: &str) {
        let _ = self.tx.send(Command::Leave {
            room: room.into(),
            participant: participant.into(),
            reply: None,
        });
    }

    /// Removes a participant like [`SfuHandle::leave`] and returns its whole talk time in the
    /// room, with the last seconds that no `SfuEvent::TalkTime` reported (`None` when it was
    /// not in the room or the media plane has stopped).
    pub async fn leave_with_talk_time(
        &self,
        room: &str,
        participant: &str,
    ) -> Option<TalkTimeTotal> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Leave {
                room: room.into(),
                participant: participant.into(),
                reply: Some(reply),
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Closes every connection of a room.
    pub fn close_room(&self, room: &str) {
        let _ = self.tx.send(Command::CloseRoom {
            room: room.into(),
            reply: None,
        });
    }

    /// Closes a room like [`SfuHandle::close_room`] and returns the whole talk time of everyone
    /// who was in it (empty when the media plane has stopped).
    pub async fn close_room_with_talk_time(&self, room: &str) -> Vec<TalkTimeTotal> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::CloseRoom {
                room: room.into(),
                reply: Some(reply),
            })
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Starts recording a room into `<dir>/<room>/`.
    pub async fn start_recording(
        &self,
        room: &str,
        dir: impl Into<std::path::PathBuf>,
    ) -> Result<(), SfuError> {
        let dir = dir.into();
        self.call(|reply| Command::StartRecording {
            room: room.into(),
            dir,
            reply,
        })
        .await
    }

    /// Stops recording a room; `Ok(false)` if it was not being recorded. The files are complete
    /// when `RecordingEvent::Finished` arrives.
    pub async fn stop_recording(&self, room: &str) -> Result<bool, SfuError> {
        self.call(|reply| Command::StopRecording {
            room: room.into(),
            reply,
        })
        .await
    }

    /// The stream of recording events (started, stopped, degraded, finished, failed). There is
    /// one stream; the first caller gets it, later calls get `None`. A separate stream from
    /// `SfuEvent`s, so consumers of those are unaffected.
    pub fn take_recording_events(&self) -> Option<mpsc::UnboundedReceiver<RecordingEvent>> {
        self.recording_events.lock().ok().and_then(|mut r| r.take())
    }

    /// Closes all connections and stops the media thread.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}
