//! One WebSocket connection: the join handshake, then a loop that reads client frames, writes
//! what the hub queues, and obeys close requests. Everything that can go wrong with one client
//! ends in a close frame for that client only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use parley_sfu::{PeerRole, SfuError, TrackSource};
use tokio::sync::{mpsc, oneshot};

use super::hub::{CloseReason, HostCommand, HubCommand, HubTx};
use super::hubs::HostError;
use super::messages::{ClientMessage, HostAction, RecordingAction, ServerMessage, parse_client};
use super::rate_limit::TokenBucket;
use super::{MAX_CHAT_CHARS, MAX_FRAME_BYTES};
use crate::auth::{Claims, TokenError};
use crate::cluster::{MOVE_CLOSE, REDIRECT_CLOSE, Route};
use crate::domain::{MeetingId, ParticipantId};
use crate::metrics::Metrics;
use crate::startup::AppState;

/// Consecutive protocol errors that close the socket.
const MAX_PROTOCOL_ERRORS: u32 = 3;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// A frame that passed the flood and size checks.
enum Frame {
    Text(Utf8Bytes),
    Binary,
}

type Parsed = Result<ClientMessage, (&'static str, String)>;

impl Frame {
    fn parse(self) -> Parsed {
        match self {
            Frame::Text(t) => parse_client(&t),
            Frame::Binary => Err(("binary_frame", "binary frames are not accepted".to_owned())),
        }
    }
}

/// Why the read loop ended.
enum Exit {
    /// Send this close frame; the participant keeps its seat for the grace period.
    Drop(Option<CloseReason>),
    /// The client asked to leave, or the hub closed us (removed, ended, replaced): no grace.
    Final(Option<CloseReason>),
}

struct Conn {
    app: AppState,
    sink: Sink,
    stream: Stream,
    bucket: TokenBucket,
    protocol_errors: u32,
    /// The upgrade request's `Origin` header (checked for SDK tokens).
    origin: Option<String>,
}

/// Decrements the connection gauge however the task ends.
struct ConnectionGauge(Arc<Metrics>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        Metrics::dec(&self.0.ws_connections);
    }
}

pub async fn run(socket: WebSocket, app: AppState, origin: Option<String>) {
    let metrics = app.metrics.clone();
    Metrics::inc(&metrics.ws_connections);
    let _gauge = ConnectionGauge(metrics);
    let (sink, stream) = socket.split();
    let config = &app.config;
    let bucket = TokenBucket::new(config.ws_rate_per_sec, config.ws_burst, Instant::now());
    let mut conn = Conn {
        app: app.clone(),
        sink,
        stream,
        bucket,
        protocol_errors: 0,
        origin,
    };
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);

    let (claims, meeting, resume, received_at) = match conn.await_join().await {
        Ok(j) => j,
        Err(close) => {
            conn.close(close).await;
            return;
        }
    };
    let joined = match app
        .hubs
        .join(&meeting, claims.clone(), resume, conn_id, received_at)
        .await
    {
        Ok(j) => j,
        Err(close) => {
            conn.close(Some(close)).await;
            return;
        }
    };
    let participant = joined.accepted.participant_id.clone();
    let hub = joined.hub.clone();
    let session = Session {
        meeting,
        participant: participant.clone(),
        claims,
        hub: hub.clone(),
        conn_id,
    };
    let exit = conn.serve(&session, joined.outbound, joined.close).await;
    match exit {
        Exit::Drop(close) => {
            let _ = hub.send(HubCommand::Disconnected {
                participant,
                conn: conn_id,
            });
            conn.close(close).await;
        }
        Exit::Final(close) => {
            conn.close(close).await;
        }
    }
}

/// What a joined connection knows about itself.
struct Session {
    meeting: MeetingId,
    participant: ParticipantId,
    claims: Claims,
    hub: HubTx,
    conn_id: u64,
}

/// The first frame's outcome.
type JoinFrame = (Claims, MeetingId, Option<super::messages::Resume>, Instant);

impl Conn {
    /// Waits for `join` (within the join timeout) and checks its token.
    async fn await_join(&mut self) -> Result<JoinFrame, Option<CloseReason>> {
        let deadline = tokio::time::Instant::now() + self.app.config.join_timeout;
        let shutdown = self.app.shutdown.clone();
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => {
                    return Err(Some(CloseReason::new(1001, "server shutting down")));
                }
                r = tokio::time::timeout_at(deadline, self.stream.next()) => match r {
                    Err(_) => return Err(Some(CloseReason::new(1008, "join timeout"))),
                    Ok(f) => f,
                },
            };
            let received_at = Instant::now();
            let parsed = match self.admit(frame)? {
                Some(f) => f.parse(),
                None => continue,
            };
            match parsed {
                Ok(ClientMessage::Join {
                    token,
                    meeting_id,
                    resume,
                }) => {
                    let (claims, meeting) = self.check_token(&token, meeting_id.as_deref()).await?;
                    return Ok((claims, meeting, resume, received_at));
                }
                Ok(_) => {
                    self.protocol_error("not_joined", "the first message must be join")
                        .await?
                }
                Err((code, message)) => self.protocol_error(code, message).await?,
            }
        }
    }

    async fn check_token(
        &mut self,
        token: &str,
        expected: Option<&str>,
    ) -> Result<(Claims, MeetingId), Option<CloseReason>> {
        let invalid = |why: &dyn std::fmt::Display| {
            Some(CloseReason::new(1008, format!("invalid token: {why}")))
        };
        // The signature is checked before the meeting id inside the claims is trusted.
        let claims = self.app.tokens.verify(token, None).map_err(|e| {
            self.app.metrics.protocol_error("invalid_token");
            invalid(&e)
        })?;
        let meeting =
            MeetingId::parse(&claims.meeting).map_err(|_| invalid(&TokenError::WrongMeeting))?;
        if expected.is_some_and(|m| m != meeting.as_str()) {
            self.app.metrics.protocol_error("invalid_token");
            return Err(invalid(&TokenError::WrongMeeting));
        }
        self.route(&meeting).await?;
        match self.app.store.meeting(&meeting).await {
            Ok(Some(m)) if m.ended_at.is_some() => {
                Err(Some(CloseReason::new(4001, "meeting ended")))
            }
            Ok(Some(m)) => {
                self.check_account(&m).await?;
                if let Some(key) = claims.sdk.as_deref() {
                    self.check_sdk(key, &m).await?;
                }
                Ok((claims, meeting))
            }
            Ok(None) => Err(invalid(&"unknown meeting")),
            Err(e) => {
                tracing::error!(error = %e, "cannot load meeting for join");
                Err(Some(CloseReason::new(1011, "internal error")))
            }
        }
    }

    /// On a cluster, sends a participant whose meeting is (or is now placed) on another node
    /// there: a `redirect` with that node's WebSocket, then a close. Decided on the signed
    /// token alone, before the meeting is read: the owner makes every other check, and this
    /// node need not read what it will not serve.
    async fn route(&mut self, meeting: &MeetingId) -> Result<(), Option<CloseReason>> {
        let Some(cluster) = self.app.cluster.clone() else {
            return Ok(());
        };
        match cluster.route(meeting.as_str()).await {
            Ok(Route::Here) => Ok(()),
            Ok(Route::There { node, ws_url }) => {
                tracing::debug!(meeting = %meeting, node = %node, "join redirected");
                let _ = self
                    .send(&ServerMessage::Redirect { url: Some(ws_url) }.encode())
                    .await;
                Err(Some(CloseReason::new(
                    REDIRECT_CLOSE,
                    "meeting is on another node",
                )))
            }
            Err(e) => {
                tracing::error!(meeting = %meeting, error = %e, "cannot route a join through Redis");
                Err(Some(CloseReason::new(1013, "try again later")))
            }
        }
    }

    /// A licensed meeting's account must be usable (not suspended or terminated) to join.
    async fn check_account(
        &self,
        meeting: &crate::store::MeetingRow,
    ) -> Result<(), Option<CloseReason>> {
        let Some(account) = meeting
            .account_id
            .as_deref()
            .and_then(|a| uuid::Uuid::parse_str(a).ok())
        else {
            return Ok(());
        };
        match self.app.licensing.may_join(account).await {
            Ok(()) => Ok(()),
            Err(e @ parley_licensing::LicensingError::Storage(_)) => {
                tracing::error!(error = %e, "cannot check the meeting's account for join");
                Err(Some(CloseReason::new(1011, "internal error")))
            }
            Err(e) => Err(Some(CloseReason::new(
                4006,
                close_reason_text(&format!("{}: {}", e.code(), e.message())),
            ))),
        }
    }

    /// A token minted for an SDK key: the key is live, the tariff includes the SDK, and the
    /// socket comes from one of the key's origins. A refusal is an `error` with its code, then
    /// the close (docs/protocol.md, "SDK tokens").
    async fn check_sdk(
        &mut self,
        key: &str,
        meeting: &crate::store::MeetingRow,
    ) -> Result<(), Option<CloseReason>> {
        let refusal = match crate::sdk::admit(
            &self.app,
            key,
            meeting.account_id.as_deref(),
            self.origin.as_deref(),
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(r) => r,
        };
        if let crate::sdk::Refusal::Internal(e) = &refusal {
            tracing::error!(error = %format!("{e:#}"), "cannot check an SDK token");
        }
        self.app.metrics.protocol_error(refusal.code());
        let _ = self
            .send(&ServerMessage::error(refusal.code(), refusal.message()).encode())
            .await;
        let (code, reason) = refusal.close();
        Err(Some(CloseReason::new(code, close_reason_text(&reason))))
    }

    /// Applies the per-frame rules (flood, size, binary) and returns the text of a usable frame.
    /// `Ok(None)`: nothing to act on; `Err`: close the socket.
    fn admit(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<Option<Frame>, Option<CloseReason>> {
        let msg = match frame {
            None => return Err(None),
            Some(Err(e)) => {
                // tungstenite refuses frames above its own (larger) limit before we see them.
                let text = e.to_string();
                if text.contains("too long") || text.contains("too big") {
                    self.app.metrics.protocol_error("too_big");
                    return Err(Some(CloseReason::new(1009, "message too big")));
                }
                tracing::debug!(error = %text, "websocket read error");
                return Err(None);
            }
            Some(Ok(m)) => m,
        };
        Metrics::inc(&self.app.metrics.ws_messages_in);
        if !self.bucket.allow(Instant::now()) {
            self.app.metrics.protocol_error("flood");
            return Err(Some(CloseReason::new(1008, "flood")));
        }
        match msg {
            Message::Text(t) if t.len() > MAX_FRAME_BYTES => {
                self.app.metrics.protocol_error("too_big");
                Err(Some(CloseReason::new(1009, "message too big")))
            }
            Message::Text(t) => Ok(Some(Frame::Text(t))),
            Message::Binary(b) if b.len() > MAX_FRAME_BYTES => {
                self.app.metrics.protocol_error("too_big");
                Err(Some(CloseReason::new(1009, "message too big")))
            }
            Message::Binary(_) => Ok(Some(Frame::Binary)),
            Message::Close(_) => Err(None),
            Message::Ping(_) | Message::Pong(_) => Ok(None),
        }
    }

    /// Sends an `error` and counts it; the third in a row closes the socket.
    async fn protocol_error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
    ) -> Result<(), Option<CloseReason>> {
        self.app.metrics.protocol_error(code);
        self.protocol_errors += 1;
        if self.protocol_errors >= MAX_PROTOCOL_ERRORS {
            return Err(Some(CloseReason::new(1008, "protocol error")));
        }
        self.send(&ServerMessage::error(code, message).encode())
            .await
            .map_err(|_| None)
    }

    async fn send(&mut self, frame: &str) -> Result<(), axum::Error> {
        Metrics::inc(&self.app.metrics.ws_messages_out);
        self.sink.send(Message::Text(frame.into())).await
    }

    async fn reply(&mut self, msg: ServerMessage) -> Result<(), Option<CloseReason>> {
        self.send(&msg.encode()).await.map_err(|_| None)
    }

    /// Sends the close frame (best effort, bounded in time) and ends the connection.
    async fn close(&mut self, reason: Option<CloseReason>) {
        let frame = reason.map(|r| CloseFrame {
            code: r.code,
            reason: r.reason.into(),
        });
        // At shutdown every client gets only a short moment to answer: the server is draining.
        let patience = if frame.as_ref().is_some_and(|f| f.code == 1001) {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(2)
        };
        let _ = tokio::time::timeout(patience, async {
            if self.sink.send(Message::Close(frame)).await.is_err() {
                return;
            }
            // Read (and discard) what the client still sends until its close reply or until it
            // goes quiet. Dropping a socket with unread bytes makes the kernel send a reset, and
            // the client would lose our close frame (a flooder would never learn why).
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_millis(100), self.stream.next()).await
            {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// The joined phase.
    async fn serve(
        &mut self,
        s: &Session,
        mut outbound: mpsc::Receiver<Arc<str>>,
        mut close: oneshot::Receiver<CloseReason>,
    ) -> Exit {
        let shutdown = self.app.shutdown.clone();
        // A node that is not clustered never drains: a token nobody cancels.
        let moving = self
            .app
            .cluster
            .as_ref()
            .map(|c| c.moving())
            .unwrap_or_default();
        loop {
            tokio::select! {
                // Close requests first: when the hub drops a connection it sends the close and
                // drops the queue at once, and the close must win over "queue ended".
                biased;
                _ = shutdown.cancelled() => {
                    return Exit::Final(Some(CloseReason::new(1001, "server shutting down")));
                }
                _ = moving.cancelled() => {
                    // The node drains: the client rejoins through the public address and lands
                    // on the meeting's new node. It leaves here at once (no grace seat).
                    let _ = self.send(&ServerMessage::Redirect { url: None }.encode()).await;
                    let _ = s.hub.send(HubCommand::Leave {
                        participant: s.participant.clone(),
                        conn: s.conn_id,
                    });
                    return Exit::Final(Some(CloseReason::new(MOVE_CLOSE, "node draining, rejoin")));
                }
                reason = &mut close => {
                    // Deliver what the hub queued before the close (e.g. a last update).
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(frame) = outbound.try_recv() {
                            if self.send(&frame).await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                    return match reason {
                        Ok(r) => Exit::Final(Some(r)),
                        // The hub vanished without a word: nothing sensible to resume into.
                        Err(_) => Exit::Final(Some(CloseReason::new(1011, "internal error"))),
                    };
                }
                frame = outbound.recv() => match frame {
                    Some(frame) => {
                        if self.send(&frame).await.is_err() {
                            return Exit::Drop(None);
                        }
                    }
                    None => {
                        return Exit::Final(Some(close.try_recv().unwrap_or_else(|_| {
                            CloseReason::new(1011, "internal error")
                        })));
                    }
                },
                frame = self.stream.next() => {
                    let parsed = match self.admit(frame) {
                        Ok(Some(f)) => f.parse(),
                        Ok(None) => continue,
                        Err(close) => return Exit::Drop(close),
                    };
                    if let Err(exit) = self.handle(s, parsed).await {
                        return exit;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, s: &Session, parsed: Parsed) -> Result<(), Exit> {
        let msg = match parsed {
            Ok(m) => m,
            Err((code, message)) => {
                return self.protocol_error(code, message).await.map_err(Exit::Drop);
            }
        };
        self.protocol_errors = 0;
        self.dispatch(s, msg).await.map_err(|e| match e {
            Some(r) if r.code == 1000 => Exit::Final(Some(r)),
            other => Exit::Drop(other),
        })
    }

    async fn dispatch(
        &mut self,
        s: &Session,
        msg: ClientMessage,
    ) -> Result<(), Option<CloseReason>> {
        let sfu = &self.app.sfu;
        let room = s.meeting.as_str();
        let me = s.participant.as_str();
        match msg {
            ClientMessage::Join { .. } => {
                self.reply(ServerMessage::error(
                    "already_joined",
                    "this connection has already joined",
                ))
                .await
            }
            ClientMessage::Ping {} => self.reply(ServerMessage::Pong).await,
            ClientMessage::Leave {} => {
                let _ = s.hub.send(HubCommand::Leave {
                    participant: s.participant.clone(),
                    conn: s.conn_id,
                });
                Err(Some(CloseReason::new(1000, "left")))
            }
            ClientMessage::PublishOffer { sdp, tracks } => {
                if !s.claims.grants.publish {
                    return self
                        .reply(ServerMessage::error(
                            "not_allowed",
                            "your token does not allow publishing",
                        ))
                        .await;
                }
                let screen = tracks
                    .iter()
                    .any(|t| matches!(t.source, TrackSource::Screen | TrackSource::ScreenAudio));
                if screen && !s.claims.grants.screen_share {
                    return self
                        .reply(ServerMessage::error(
                            "not_allowed",
                            "screen sharing is not included in this meeting's license",
                        ))
                        .await;
                }
                match sfu.publish(room, me, sdp, tracks).await {
                    Ok(sdp) => self.reply(ServerMessage::PublishAnswer { sdp }).await,
                    Err(e) => self.sfu_error(e).await,
                }
            }
            ClientMessage::SubscribeAnswer { sdp } => {
                match sfu.subscriber_answer(room, me, sdp).await {
                    Ok(()) => Ok(()),
                    Err(e) => self.sfu_error(e).await,
                }
            }
            ClientMessage::IceCandidate { target, candidate } => {
                let role: PeerRole = target;
                match sfu
                    .remote_candidate(
                        room,
                        me,
                        role,
                        candidate.candidate,
                        candidate.sdp_mid,
                        candidate.sdp_mline_index,
                    )
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => self.sfu_error(e).await,
                }
            }
            ClientMessage::Mute { source, muted } => {
                let _ = s.hub.send(HubCommand::Mute {
                    participant: s.participant.clone(),
                    source,
                    muted,
                });
                Ok(())
            }
            ClientMessage::VideoSize {
                participant_id,
                source,
                width,
                height,
            } => {
                if ParticipantId::parse(&participant_id).is_err() {
                    return self
                        .reply(ServerMessage::error(
                            "invalid_message",
                            "unknown participant_id",
                        ))
                        .await;
                }
                // Clamp to sane render sizes so a bogus value cannot confuse layer selection.
                sfu.video_size(
                    room,
                    me,
                    &participant_id,
                    source,
                    width.min(16384),
                    height.min(16384),
                );
                Ok(())
            }
            ClientMessage::Chat { text } => {
                let n = text.chars().count();
                if n == 0 || n > MAX_CHAT_CHARS {
                    return self
                        .reply(ServerMessage::error(
                            "invalid_chat",
                            format!("chat text must be 1 to {MAX_CHAT_CHARS} characters"),
                        ))
                        .await;
                }
                let _ = s.hub.send(HubCommand::Chat {
                    participant: s.participant.clone(),
                    text,
                });
                Ok(())
            }
            ClientMessage::Host {
                action,
                participant_id,
                source,
            } => self.host_action(s, action, participant_id, source).await,
            ClientMessage::Recording { action } => self.recording_action(s, action).await,
        }
    }

    /// Start or stop the meeting's recording. Success is seen by everyone (the `recording`
    /// broadcast); a refusal is an `error` to this participant only.
    async fn recording_action(
        &mut self,
        s: &Session,
        action: RecordingAction,
    ) -> Result<(), Option<CloseReason>> {
        use crate::recordings::{RecordingError, StopReason, control, http::requester_of};
        let who = requester_of(&s.claims);
        let headers = axum::http::HeaderMap::new();
        let result = match action {
            RecordingAction::Start => match self.app.store.meeting(&s.meeting).await {
                Ok(Some(row)) => control::start(&self.app, &row, who, &headers)
                    .await
                    .map(|_| ()),
                Ok(None) => Err(RecordingError::MeetingEnded),
                Err(e) => Err(e.into()),
            },
            RecordingAction::Stop if !who.record_grant => Err(RecordingError::NotPermitted),
            RecordingAction::Stop => {
                match control::stop(&self.app, &s.meeting, StopReason::Stopped, None).await {
                    Ok(stopped) => {
                        let account = self
                            .app
                            .store
                            .meeting(&s.meeting)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|m| m.account_id);
                        control::audit_stop(
                            &self.app,
                            &headers,
                            who.actor,
                            account.as_deref(),
                            &stopped.id,
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if let RecordingError::Internal(err) = &e {
                    tracing::error!(meeting = %s.meeting, error = %format!("{err:#}"), "recording action failed");
                }
                self.reply(ServerMessage::error(e.ws_code(), e.message()))
                    .await
            }
        }
    }

    async fn host_action(
        &mut self,
        s: &Session,
        action: HostAction,
        participant_id: Option<String>,
        source: Option<TrackSource>,
    ) -> Result<(), Option<CloseReason>> {
        if !s.claims.grants.admin {
            return self
                .reply(ServerMessage::error(
                    "forbidden",
                    "host actions need the admin grant",
                ))
                .await;
        }
        let target = participant_id.as_deref().map(ParticipantId::parse);
        let command = match (action, target, source) {
            (HostAction::Mute, Some(Ok(target)), Some(source)) => {
                HostCommand::Mute { target, source }
            }
            (HostAction::Remove, Some(Ok(target)), _) => HostCommand::Remove { target },
            (HostAction::End, _, _) => HostCommand::End,
            (HostAction::Lock, _, _) => HostCommand::Lock(true),
            (HostAction::Unlock, _, _) => HostCommand::Lock(false),
            _ => {
                return self
                    .reply(ServerMessage::error(
                        "invalid_message",
                        "mute needs participant_id and source; remove needs participant_id",
                    ))
                    .await;
            }
        };
        let (reply, rx) = oneshot::channel();
        if s.hub.send(HubCommand::Host { command, reply }).is_err() {
            return Ok(());
        }
        match rx.await {
            Ok(Err(HostError::NoSuchParticipant)) => {
                self.reply(ServerMessage::error(
                    "not_found",
                    "no such participant in the meeting",
                ))
                .await
            }
            _ => Ok(()),
        }
    }

    async fn sfu_error(&mut self, e: SfuError) -> Result<(), Option<CloseReason>> {
        let code = match &e {
            SfuError::InvalidSdp(_) => "invalid_sdp",
            SfuError::InvalidCandidate(_) => "invalid_candidate",
            SfuError::NotAllowed(_) => "not_allowed",
            SfuError::Negotiation(_) => "negotiation_failed",
            _ => "media_error",
        };
        self.app.metrics.protocol_error(code);
        self.reply(ServerMessage::error(code, e.to_string())).await
    }
}

/// A close frame's reason is at most 123 bytes; cut at a character boundary.
fn close_reason_text(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
