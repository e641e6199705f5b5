//! The room hub: one tokio task per active meeting that owns the meeting's live state.
//!
//! Why a task (actor) and not a mutex-protected map: every change to a room (join, leave, mute,
//! track changes from the SFU, host actions) must be applied and fanned out in one order that all
//! sockets observe, and several of them await the database or the media plane in between. A task
//! that handles one command at a time gives that order without holding a lock across an await, and
//! a slow socket cannot stall it: fan-out uses `try_send` on each socket's bounded queue, and a
//! socket whose queue is full is detached (closed 4004) instead of blocking everyone.
//!
//! The hub's inbox is unbounded on purpose: its producers are sockets (each flood-limited) and the
//! SFU event router, which must never block on one busy room.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parley_sfu::{ParticipantOptions, SfuEvent, SfuHandle, TalkTimeTotal, TrackSource, TrackState};
use tokio::sync::{mpsc, oneshot};

use super::messages::{
    LeaveReason, MeetingView, ParticipantView, RecordingState, Resume, ServerMessage,
};
use crate::auth::{Claims, Grants};
use crate::domain::{MeetingId, ParticipantId, Role, constant_time_eq, random_token};
use crate::metrics::Metrics;
use crate::outbox::webhooks::EventType;
use crate::store::{NewSession, Store};

/// Outbound queue length per socket; a client this far behind is dropped.
pub const OUTBOUND_QUEUE: usize = 256;

pub type HubTx = mpsc::UnboundedSender<HubCommand>;
pub type HubMap = Arc<Mutex<HashMap<MeetingId, HubTx>>>;

/// A close frame the hub asks a socket to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

impl CloseReason {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        CloseReason {
            code,
            reason: reason.into(),
        }
    }
}

/// The hub's end of one WebSocket.
pub struct Conn {
    pub id: u64,
    pub tx: mpsc::Sender<Arc<str>>,
    pub close: oneshot::Sender<CloseReason>,
}

pub struct JoinRequest {
    pub claims: Claims,
    pub resume: Option<Resume>,
    pub conn: Conn,
    pub received_at: Instant,
    pub reply: oneshot::Sender<Result<JoinAccepted, CloseReason>>,
}

#[derive(Debug, Clone)]
pub struct JoinAccepted {
    pub participant_id: ParticipantId,
    pub resumed: bool,
}

/// Host actions, from a host's socket or from the REST API.
#[derive(Debug, Clone)]
pub enum HostCommand {
    Mute {
        target: ParticipantId,
        source: TrackSource,
    },
    Remove {
        target: ParticipantId,
    },
    End,
    Lock(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no such participant in the meeting")]
    NoSuchParticipant,
    #[error("the meeting is not active")]
    NotActive,
}

pub enum HubCommand {
    Join(Box<JoinRequest>),
    Disconnected {
        participant: ParticipantId,
        conn: u64,
    },
    Leave {
        participant: ParticipantId,
        conn: u64,
    },
    Mute {
        participant: ParticipantId,
        source: TrackSource,
        muted: bool,
    },
    Chat {
        participant: ParticipantId,
        text: String,
    },
    Host {
        command: HostCommand,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    Sfu(SfuEvent),
    /// News of the meeting's recording, from the recordings service.
    Recording(RecordingNotice),
    GraceExpired {
        participant: ParticipantId,
        generation: u64,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What the recordings service tells a meeting's hub; the hub keeps the running recording for
/// `joined` and tells everyone.
#[derive(Debug, Clone)]
pub enum RecordingNotice {
    Started(RecordingState),
    /// `reason`: stopped, quota_exceeded, meeting_ended, failed.
    Stopped {
        recording_id: String,
        reason: &'static str,
    },
    Degraded {
        dropped: u64,
    },
}

/// How often a meeting with participants from the JS SDK checks whether their SDK key was
/// revoked. The check reads the database, so a revocation made on any node takes effect on
/// every node within this.
const SDK_KEY_CHECK: Duration = Duration::from_secs(5);

/// What every hub needs from the application.
#[derive(Clone)]
pub struct HubContext {
    pub store: Store,
    pub sfu: SfuHandle,
    pub metrics: Arc<Metrics>,
    pub resume_grace: Duration,
    /// The length of one minute of a tariff's meeting-length limit (a test hook; 60 s).
    pub meeting_minute: Duration,
    pub map: HubMap,
    /// Customer webhook events of the meeting (participant.joined, meeting.ended, ...).
    pub events: crate::integrations::Events,
    /// Told the id of every meeting a hub ends (the after-meeting summary listens).
    pub ended: Option<mpsc::UnboundedSender<MeetingId>>,
    /// The TURN relay whose credentials `joined` hands out.
    pub turn: Option<crate::configuration::TurnConfig>,
}

struct Member {
    id: ParticipantId,
    identity: String,
    display_name: String,
    role: Role,
    grants: Grants,
    joined_at: DateTime<Utc>,
    resume_token: String,
    /// Tracks as the media plane reports them.
    tracks: Vec<TrackState>,
    /// Mute state as the client (or a host) set it; overrides the media plane's view.
    muted: HashMap<TrackSource, bool>,
    conn: Option<Conn>,
    /// Bumped on every (dis)connect so that a stale grace timer does nothing.
    generation: u64,
    /// Set at join, taken when the first peer connection connects (join-to-media latency).
    join_received: Option<Instant>,
    /// Talk time the media plane reported in increments since this member's media session
    /// began; leaving, the media plane tells the whole, and the rest is recorded then.
    talk_reported_ms: u64,
    /// The SDK key the member's token was minted for: revoking it removes the member.
    sdk_key: Option<String>,
}

impl Member {
    fn view(&self) -> ParticipantView {
        ParticipantView {
            id: self.id.to_string(),
            display_name: self.display_name.clone(),
            role: self.role,
            tracks: self
                .tracks
                .iter()
                .map(|t| TrackState {
                    source: t.source,
                    muted: self.muted.get(&t.source).copied().unwrap_or(t.muted),
                })
                .collect(),
            joined_at: self.joined_at,
        }
    }

    fn options(&self) -> ParticipantOptions {
        ParticipantOptions {
            display_name: self.display_name.clone(),
            can_publish: self.grants.publish,
            can_subscribe: self.grants.subscribe,
            can_screen_share: self.grants.screen_share,
        }
    }
}

pub struct Hub {
    id: MeetingId,
    title: String,
    locked: bool,
    ended: bool,
    /// The license's participant ceiling (None: unlicensed meeting, no ceiling).
    max_participants: Option<usize>,
    /// When the tariff's maximum meeting length warns everyone, then ends the meeting.
    time_limit: Option<TimeLimit>,
    members: HashMap<ParticipantId, Member>,
    /// Chat sent through `SfuHandle::send_data` that the SFU will echo back as `SfuEvent::Data`;
    /// already stored, so the echo is skipped. Bounded in case the SFU drops some.
    relayed: VecDeque<(ParticipantId, String)>,
    /// The media plane reports the dominant speaker only when it changes; a newcomer is told the
    /// current one right after `joined` so its highlight is right from the start.
    active_speaker: Option<String>,
    /// The running recording, shown in `joined` so a late joiner sees the notice at once.
    recording: Option<RecordingState>,
    ctx: HubContext,
    me: HubTx,
}

const MAX_RELAYED: usize = 256;

impl Hub {
    /// Tells one participant who is speaking now, when anyone is.
    fn send_active_speaker(&mut self, to: &ParticipantId) {
        if let Some(speaker) = self.active_speaker.clone() {
            let msg = ServerMessage::ActiveSpeaker {
                participant_id: Some(speaker),
            };
            self.send_to(to, &msg.encode());
        }
    }

    /// Starts a hub task for `id` and returns its inbox. The caller registers it in the map.
    pub fn spawn(id: MeetingId, ctx: HubContext) -> HubTx {
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            id,
            title: String::new(),
            locked: false,
            ended: false,
            max_participants: None,
            time_limit: None,
            members: HashMap::new(),
            relayed: VecDeque::new(),
            active_speaker: None,
            recording: None,
            ctx,
            me: tx.clone(),
        };
        tokio::spawn(hub.run(rx));
        tx
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<HubCommand>) {
        Metrics::inc(&self.ctx.metrics.meetings_active);
        // Loaded after registration (see `Hubs::get_or_spawn`) so that an `end` written to the
        // database just before is seen here.
        match self.ctx.store.meeting(&self.id).await {
            Ok(Some(m)) => {
                // A hub starts where the meeting is placed; sessions another node still shows
                // open belong to a node that lost the meeting (their people rejoin here).
                if let Err(e) = self.ctx.store.close_sessions_elsewhere(&self.id).await {
                    tracing::warn!(meeting = %self.id, error = %e, "cannot close lost sessions");
                }
                let (pool, node) = (self.ctx.store.pool(), self.ctx.store.node());
                match crate::recordings::db::fail_lost(pool, self.id.as_str(), node).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(meeting = %self.id, n, "recordings lost with a node"),
                    Err(e) => {
                        tracing::warn!(meeting = %self.id, error = %e, "cannot fail lost recordings")
                    }
                }
                self.max_participants = m.participant_limit();
                self.time_limit = m
                    .max_meeting_minutes
                    .and_then(|max| TimeLimit::new(m.started_at, max, self.ctx.meeting_minute));
                self.title = m.title;
                self.locked = m.locked;
                self.ended = m.ended_at.is_some();
            }
            Ok(None) => self.ended = true,
            Err(e) => {
                tracing::error!(meeting = %self.id, error = %e, "cannot load meeting");
                self.ended = true;
            }
        }
        let mut sdk_check = tokio::time::interval(SDK_KEY_CHECK);
        sdk_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.time_limit.as_ref().and_then(TimeLimit::next);
            let embedded = self.members.values().any(|m| m.sdk_key.is_some());
            let stop = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => true,
                },
                () = sleep_until_opt(next) => self.on_time_limit().await,
                _ = sdk_check.tick(), if embedded => {
                    self.remove_revoked_sdk_members().await;
                    false
                }
            };
            if stop || self.members.is_empty() {
                break;
            }
        }
        // Unregister first, then refuse what is still queued: a socket whose join reply is dropped
        // retries and gets a fresh hub.
        if let Ok(mut map) = self.ctx.map.lock()
            && map
                .get(&self.id)
                .is_some_and(|tx| tx.same_channel(&self.me))
        {
            map.remove(&self.id);
        }
        rx.close();
        Metrics::dec(&self.ctx.metrics.meetings_active);
        tracing::debug!(meeting = %self.id, "hub stopped");
    }

    /// Removes the members whose SDK key was revoked (or deleted) since they joined: they get
    /// the `error` a join with that key gets now, then the same close.
    async fn remove_revoked_sdk_members(&mut self) {
        let mut keys: Vec<String> = self
            .members
            .values()
            .filter_map(|m| m.sdk_key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        let store = crate::sdk::store::SdkKeyStore::new(self.ctx.store.pool().clone());
        for key in keys {
            let revoked = match store.get(&key).await {
                Ok(Some(k)) => k.revoked_at.is_some(),
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(meeting = %self.id, error = %e, "cannot check an SDK key");
                    continue;
                }
            };
            if !revoked {
                continue;
            }
            let gone: Vec<ParticipantId> = self
                .members
                .iter()
                .filter(|(_, m)| m.sdk_key.as_deref() == Some(key.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            let frame = ServerMessage::Error {
                code: "sdk_key_revoked",
                message: "The SDK key this session was opened with has been revoked.".into(),
            }
            .encode();
            for pid in gone {
                tracing::info!(meeting = %self.id, participant = %pid, "SDK key revoked: removed");
                self.send_to(&pid, &frame);
                self.remove(
                    &pid,
                    LeaveReason::Removed,
                    Some(CloseReason::new(1008, "invalid token: sdk key revoked")),
                )
                .await;
            }
        }
    }

    /// The tariff's maximum meeting length: a warning to everyone five minutes before, then the
    /// meeting ends for everyone. Returns `true` when the hub must stop.
    async fn on_time_limit(&mut self) -> bool {
        let Some(limit) = self.time_limit.as_mut() else {
            return false;
        };
        if !limit.warned {
            limit.warned = true;
            let msg = ServerMessage::MeetingEnding {
                ends_at: limit.ends_at_utc.to_rfc3339(),
                minutes_left: limit.warn_minutes,
            };
            tracing::info!(meeting = %self.id, "meeting length limit near");
            self.broadcast(&msg, None);
            return false;
        }
        tracing::info!(meeting = %self.id, "meeting length limit reached");
        let (_, stop) = self.end_meeting("meeting ended: time limit reached").await;
        stop
    }

    /// Handles one command; `true` stops the hub.
    async fn handle(&mut self, cmd: HubCommand) -> bool {
        match cmd {
            HubCommand::Join(req) => self.join(*req).await,
            HubCommand::Disconnected { participant, conn } => self.disconnected(&participant, conn),
            HubCommand::Leave { participant, conn } => {
                let current = self
                    .members
                    .get(&participant)
                    .and_then(|m| m.conn.as_ref())
                    .is_some_and(|c| c.id == conn);
                if current {
                    self.remove(&participant, LeaveReason::Left, None).await;
                }
            }
            HubCommand::Mute {
                participant,
                source,
                muted,
            } => self.set_muted(&participant, source, muted),
            HubCommand::Chat { participant, text } => self.chat(&participant, text).await,
            HubCommand::Host { command, reply } => {
                let (result, stop) = self.host(command).await;
                let _ = reply.send(result);
                return stop;
            }
            HubCommand::Sfu(event) => self.sfu_event(event).await,
            HubCommand::Recording(notice) => self.recording_notice(notice),
            HubCommand::GraceExpired {
                participant,
                generation,
            } => {
                let expired = self
                    .members
                    .get(&participant)
                    .is_some_and(|m| m.conn.is_none() && m.generation == generation);
                if expired {
                    self.remove(&participant, LeaveReason::Timeout, None).await;
                }
            }
            HubCommand::Shutdown { reply } => {
                let reported = self
                    .members
                    .iter()
                    .map(|(pid, m)| (pid.to_string(), m.talk_reported_ms))
                    .collect();
                self.close_room_recording_talk(&reported).await;
                for id in self.members.keys() {
                    if let Err(e) = self.ctx.store.close_session(&self.id, id, "shutdown").await {
                        tracing::warn!(error = %e, "cannot close session at shutdown");
                    }
                }
                let n = self.members.len();
                for _ in 0..n {
                    Metrics::dec(&self.ctx.metrics.participants);
                }
                self.members.clear();
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    /// Participants of this meeting that other nodes hold (see `Store::open_sessions_elsewhere`);
    /// 0 when the database cannot say, as the meeting's own node is the one admitting.
    async fn held_elsewhere(&self) -> usize {
        match self.ctx.store.open_sessions_elsewhere(&self.id).await {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) => {
                tracing::warn!(meeting = %self.id, error = %e, "cannot count sessions on other nodes");
                0
            }
        }
    }

    /// Fresh relay credentials for `pid` (each join and resume gets its own, with a new
    /// expiry).
    fn ice_servers(&self, pid: &ParticipantId) -> Vec<crate::turn::IceServer> {
        self.ctx
            .turn
            .as_ref()
            .map(|t| crate::turn::ice_server(t, pid.as_str(), Utc::now()))
            .into_iter()
            .collect()
    }

    fn meeting_view(&self) -> MeetingView {
        MeetingView {
            id: self.id.to_string(),
            title: self.title.clone(),
            locked: self.locked,
            recording: self.recording.clone(),
        }
    }

    fn recording_notice(&mut self, notice: RecordingNotice) {
        let msg = match notice {
            RecordingNotice::Started(state) => {
                let msg = ServerMessage::Recording {
                    active: true,
                    recording_id: Some(state.recording_id.clone()),
                    started_at: Some(state.started_at),
                    started_by: Some(state.started_by.clone()),
                    reason: None,
                };
                self.recording = Some(state);
                msg
            }
            RecordingNotice::Stopped {
                recording_id,
                reason,
            } => {
                // Only the recording that runs can stop; a late word about an older one is news
                // to nobody.
                if self
                    .recording
                    .as_ref()
                    .is_none_or(|r| r.recording_id != recording_id)
                {
                    return;
                }
                self.recording = None;
                recording_stopped(reason)
            }
            RecordingNotice::Degraded { dropped } => {
                if self.recording.is_none() {
                    return;
                }
                ServerMessage::RecordingDegraded { dropped }
            }
        };
        self.broadcast(&msg, None);
    }

    async fn join(&mut self, req: JoinRequest) {
        let JoinRequest {
            claims,
            resume,
            conn,
            received_at,
            reply,
        } = req;
        if self.ended {
            let _ = reply.send(Err(CloseReason::new(4001, "meeting ended")));
            return;
        }
        if let Some(r) = resume
            && let Ok(pid) = ParticipantId::parse(&r.participant_id)
            && let Some(m) = self.members.get(&pid)
            && constant_time_eq(&m.resume_token, &r.resume_token)
            && m.identity == claims.sub
        {
            self.resume(pid, conn, received_at, reply).await;
            return;
        }
        // An unknown or expired resume falls through to a fresh join: the client sees a new
        // participant id in `joined` and knows its old seat is gone.
        if self.locked && claims.role != Role::Host {
            let _ = reply.send(Err(CloseReason::new(4003, "meeting is locked")));
            return;
        }
        // Members in their resume grace still hold their place: they are coming back. Every join
        // of the meeting is admitted here, one at a time; sessions other nodes still hold in the
        // database (a meeting split by a partition from Redis) count too, so that neither half
        // passes the license's limit on its own.
        if let Some(max) = self.max_participants
            && self.members.len() + self.held_elsewhere().await >= max
        {
            let _ = reply.send(Err(CloseReason::new(
                4005,
                format!("participant limit: the license allows {max} participants"),
            )));
            return;
        }
        let Ok(display_name) = crate::domain::DisplayName::parse(&claims.name) else {
            let _ = reply.send(Err(CloseReason::new(1008, "invalid token: bad name")));
            return;
        };
        let member = Member {
            id: ParticipantId::generate(),
            identity: claims.sub.clone(),
            display_name: display_name.into_string(),
            role: claims.role,
            grants: claims.grants,
            joined_at: Utc::now(),
            resume_token: random_token(32),
            tracks: Vec::new(),
            muted: HashMap::new(),
            conn: Some(conn),
            generation: 0,
            join_received: Some(received_at),
            talk_reported_ms: 0,
            sdk_key: claims.sdk.clone(),
        };
        if let Err(e) = self
            .ctx
            .sfu
            .join(self.id.as_str(), member.id.as_str(), member.options())
            .await
        {
            tracing::error!(meeting = %self.id, error = %e, "media plane refused join");
            let _ = reply.send(Err(CloseReason::new(1011, format!("media plane: {e}"))));
            return;
        }
        let stored = self
            .ctx
            .store
            .insert_session(NewSession {
                meeting: &self.id,
                participant: &member.id,
                identity: &member.identity,
                display_name: &member.display_name,
                role: member.role,
                joined_at: member.joined_at,
            })
            .await;
        if let Err(e) = stored {
            tracing::error!(meeting = %self.id, error = %e, "cannot store session");
            self.ctx.sfu.leave(self.id.as_str(), member.id.as_str());
            let _ = reply.send(Err(CloseReason::new(1011, "internal error")));
            return;
        }
        if let Err(e) = self.ctx.store.mark_started(&self.id).await {
            tracing::warn!(meeting = %self.id, error = %e, "cannot mark meeting started");
        }
        let pid = member.id.clone();
        let view = member.view();
        let joined = ServerMessage::Joined {
            participant_id: pid.to_string(),
            resume_token: member.resume_token.clone(),
            meeting: self.meeting_view(),
            you: view.clone(),
            participants: self.others(&pid),
            ice_servers: self.ice_servers(&pid),
        };
        let first = self.members.is_empty();
        let hook_data = serde_json::json!({
            "participant_id": pid.as_str(),
            "display_name": member.display_name,
            "role": member.role,
            "joined_at": member.joined_at,
        });
        self.members.insert(pid.clone(), member);
        Metrics::inc(&self.ctx.metrics.participants);
        tracing::info!(meeting = %self.id, participant = %pid, "joined");
        // Event ids are stable per meeting (and participant), so the outbox keeps one message
        // per endpoint even when the first participant leaves and someone joins again.
        if first {
            self.ctx.events.meeting_event(
                &self.id,
                EventType::MeetingStarted,
                format!("{}:meeting.started", self.id),
                serde_json::json!({"title": self.title}),
            );
        }
        self.ctx.events.meeting_event(
            &self.id,
            EventType::ParticipantJoined,
            format!("{}:{}:participant.joined", self.id, pid),
            hook_data,
        );
        let _ = reply.send(Ok(JoinAccepted {
            participant_id: pid.clone(),
            resumed: false,
        }));
        self.send_to(&pid, &ServerMessage::encode(&joined));
        self.send_active_speaker(&pid);
        self.ctx.metrics.join_latency.observe(received_at.elapsed());
        self.broadcast(
            &ServerMessage::ParticipantJoined { participant: view },
            Some(&pid),
        );
    }

    async fn resume(
        &mut self,
        pid: ParticipantId,
        conn: Conn,
        received_at: Instant,
        reply: oneshot::Sender<Result<JoinAccepted, CloseReason>>,
    ) {
        let Some(m) = self.members.get_mut(&pid) else {
            return;
        };
        if let Some(old) = m.conn.take() {
            let _ = old
                .close
                .send(CloseReason::new(4002, "replaced by a newer connection"));
        }
        m.conn = Some(conn);
        m.generation += 1;
        m.resume_token = random_token(32);
        m.tracks.clear();
        m.join_received = Some(received_at);
        let options = m.options();
        let resume_token = m.resume_token.clone();
        let reported = std::mem::take(&mut m.talk_reported_ms);
        // Fresh peer connections on the media plane; the others learn only about the track
        // changes (participant_updated), never a leave/join pair. The old media session's last
        // talk is kept; the new one counts from zero.
        let talk = self
            .ctx
            .sfu
            .leave_with_talk_time(self.id.as_str(), pid.as_str())
            .await;
        self.record_final_talk_time(reported, talk).await;
        if let Err(e) = self
            .ctx
            .sfu
            .join(self.id.as_str(), pid.as_str(), options)
            .await
        {
            tracing::error!(meeting = %self.id, error = %e, "media plane refused rejoin");
        }
        let Some(m) = self.members.get(&pid) else {
            return;
        };
        let view = m.view();
        let joined = ServerMessage::Joined {
            participant_id: pid.to_string(),
            resume_token,
            meeting: self.meeting_view(),
            you: view.clone(),
            participants: self.others(&pid),
            ice_servers: self.ice_servers(&pid),
        };
        tracing::info!(meeting = %self.id, participant = %pid, "resumed");
        let _ = reply.send(Ok(JoinAccepted {
            participant_id: pid.clone(),
            resumed: true,
        }));
        self.send_to(&pid, &joined.encode());
        self.send_active_speaker(&pid);
        self.ctx.metrics.join_latency.observe(received_at.elapsed());
        self.broadcast(
            &ServerMessage::ParticipantUpdated { participant: view },
            Some(&pid),
        );
    }

    fn others(&self, pid: &ParticipantId) -> Vec<ParticipantView> {
        let mut v: Vec<_> = self
            .members
            .values()
            .filter(|m| &m.id != pid)
            .map(Member::view)
            .collect();
        v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then(a.id.cmp(&b.id)));
        v
    }

    /// The socket of `pid` went away without `leave`: keep the seat for the grace period.
    fn disconnected(&mut self, pid: &ParticipantId, conn: u64) {
        let Some(m) = self.members.get_mut(pid) else {
            return;
        };
        if m.conn.as_ref().is_none_or(|c| c.id != conn) {
            return;
        }
        m.conn = None;
        self.start_grace(pid);
    }

    fn start_grace(&mut self, pid: &ParticipantId) {
        let Some(m) = self.members.get_mut(pid) else {
            return;
        };
        m.generation += 1;
        let generation = m.generation;
        let me = self.me.clone();
        let participant = pid.clone();
        let grace = self.ctx.resume_grace;
        tracing::info!(meeting = %self.id, participant = %pid, "disconnected; grace started");
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = me.send(HubCommand::GraceExpired {
                participant,
                generation,
            });
        });
    }

    async fn remove(
        &mut self,
        pid: &ParticipantId,
        reason: LeaveReason,
        close: Option<CloseReason>,
    ) {
        let Some(mut m) = self.members.remove(pid) else {
            return;
        };
        if let (Some(conn), Some(close)) = (m.conn.take(), close) {
            let _ = conn.close.send(close);
        }
        Metrics::dec(&self.ctx.metrics.participants);
        // The last seconds of talk are recorded before the session closes.
        let talk = self
            .ctx
            .sfu
            .leave_with_talk_time(self.id.as_str(), pid.as_str())
            .await;
        self.record_final_talk_time(m.talk_reported_ms, talk).await;
        if let Err(e) = self
            .ctx
            .store
            .close_session(&self.id, pid, reason.as_str())
            .await
        {
            tracing::error!(meeting = %self.id, error = %e, "cannot close session");
        }
        tracing::info!(meeting = %self.id, participant = %pid, reason = reason.as_str(), "left");
        self.ctx.events.meeting_event(
            &self.id,
            EventType::ParticipantLeft,
            format!("{}:{}:participant.left", self.id, pid),
            serde_json::json!({"participant_id": pid.as_str(), "reason": reason.as_str()}),
        );
        self.broadcast(
            &ServerMessage::ParticipantLeft {
                participant_id: pid.to_string(),
                reason,
            },
            None,
        );
    }

    fn set_muted(&mut self, pid: &ParticipantId, source: TrackSource, muted: bool) {
        let Some(m) = self.members.get_mut(pid) else {
            return;
        };
        m.muted.insert(source, muted);
        let view = m.view();
        self.ctx
            .sfu
            .set_muted(self.id.as_str(), pid.as_str(), source, muted);
        self.broadcast(
            &ServerMessage::ParticipantUpdated { participant: view },
            None,
        );
    }

    async fn chat(&mut self, pid: &ParticipantId, text: String) {
        let Some(m) = self.members.get(pid) else {
            return;
        };
        let display_name = m.display_name.clone();
        let at = Utc::now();
        if let Err(e) = self
            .ctx
            .store
            .insert_chat(&self.id, pid, &display_name, &text, "websocket", at)
            .await
        {
            tracing::error!(meeting = %self.id, error = %e, "cannot store chat");
        }
        Metrics::inc(&self.ctx.metrics.chat_messages);
        // Data-channel peers get it from the SFU, which adds from/display_name/at itself.
        let dc = serde_json::json!({"type": "chat", "text": text}).to_string();
        if self.relayed.len() == MAX_RELAYED {
            self.relayed.pop_front();
        }
        self.relayed.push_back((pid.clone(), dc.clone()));
        self.ctx.sfu.send_data(self.id.as_str(), pid.as_str(), dc);
        self.broadcast(
            &ServerMessage::Chat {
                from: pid.to_string(),
                display_name,
                text,
                at,
            },
            Some(pid),
        );
    }

    /// Returns the result for the caller and whether the hub stops.
    async fn host(&mut self, command: HostCommand) -> (Result<(), HostError>, bool) {
        match command {
            HostCommand::Mute { target, source } => {
                if !self.members.contains_key(&target) {
                    return (Err(HostError::NoSuchParticipant), false);
                }
                self.send_to(&target, &ServerMessage::MuteRequest { source }.encode());
                self.set_muted(&target, source, true);
                (Ok(()), false)
            }
            HostCommand::Remove { target } => {
                if !self.members.contains_key(&target) {
                    return (Err(HostError::NoSuchParticipant), false);
                }
                self.remove(
                    &target,
                    LeaveReason::Removed,
                    Some(CloseReason::new(4000, "removed by host")),
                )
                .await;
                (Ok(()), false)
            }
            HostCommand::End => self.end_meeting("meeting ended").await,
            HostCommand::Lock(locked) => {
                self.locked = locked;
                if let Err(e) = self.ctx.store.set_locked(&self.id, locked).await {
                    tracing::error!(meeting = %self.id, error = %e, "cannot store lock");
                }
                self.broadcast(&ServerMessage::MeetingLocked { locked }, None);
                (Ok(()), false)
            }
        }
    }

    /// Ends the meeting for everyone (host action or time limit), closing sockets with 4001.
    async fn end_meeting(&mut self, reason: &str) -> (Result<(), HostError>, bool) {
        self.ended = true;
        // Said before the sockets close (they deliver what is queued first); the media plane
        // stops the recording when the room closes below.
        if self.recording.take().is_some() {
            self.broadcast(&recording_stopped("meeting_ended"), None);
        }
        if let Err(e) = self.ctx.store.end_meeting(&self.id).await {
            tracing::error!(meeting = %self.id, error = %e, "cannot store meeting end");
        }
        let mut reported = HashMap::new();
        for (pid, mut m) in self.members.drain() {
            if let Some(conn) = m.conn.take() {
                let _ = conn.close.send(CloseReason::new(4001, reason));
            }
            Metrics::dec(&self.ctx.metrics.participants);
            reported.insert(pid.to_string(), m.talk_reported_ms);
        }
        // Everyone's last seconds of talk are stored before the summary is made (`ended`).
        self.close_room_recording_talk(&reported).await;
        if let Some(ended) = &self.ctx.ended {
            let _ = ended.send(self.id.clone());
        }
        tracing::info!(meeting = %self.id, "meeting ended");
        self.ctx.events.meeting_event(
            &self.id,
            EventType::MeetingEnded,
            format!("{}:meeting.ended", self.id),
            serde_json::json!({"title": self.title}),
        );
        (Ok(()), true)
    }

    async fn sfu_event(&mut self, event: SfuEvent) {
        match event {
            SfuEvent::SubscriberOffer {
                participant,
                sdp,
                tracks,
                ..
            } => {
                if let Ok(pid) = ParticipantId::parse(&participant) {
                    self.send_to(
                        &pid,
                        &ServerMessage::SubscribeOffer { sdp, tracks }.encode(),
                    );
                }
            }
            SfuEvent::TracksChanged {
                participant,
                tracks,
                ..
            } => {
                let Ok(pid) = ParticipantId::parse(&participant) else {
                    return;
                };
                let Some(m) = self.members.get_mut(&pid) else {
                    return;
                };
                m.tracks = tracks;
                let view = m.view();
                self.broadcast(
                    &ServerMessage::ParticipantUpdated { participant: view },
                    None,
                );
            }
            SfuEvent::ActiveSpeaker { participant, .. } => {
                self.active_speaker = participant.clone();
                self.broadcast(
                    &ServerMessage::ActiveSpeaker {
                        participant_id: participant,
                    },
                    None,
                );
            }
            SfuEvent::Data {
                participant, text, ..
            } => self.data_message(&participant, &text).await,
            SfuEvent::PeerState {
                participant,
                connected: true,
                ..
            } => {
                if let Ok(pid) = ParticipantId::parse(&participant)
                    && let Some(m) = self.members.get_mut(&pid)
                    && let Some(at) = m.join_received.take()
                {
                    self.ctx.metrics.join_media_latency.observe(at.elapsed());
                }
            }
            SfuEvent::TalkTime {
                participant,
                speaking_ms,
                ..
            } => {
                // For someone gone, the whole was recorded when they left (see `remove`).
                let Some(m) = ParticipantId::parse(&participant)
                    .ok()
                    .and_then(|pid| self.members.get_mut(&pid))
                else {
                    return;
                };
                m.talk_reported_ms = m.talk_reported_ms.saturating_add(speaking_ms);
                record_talk_time(&self.ctx.store, &self.id, &participant, speaking_ms).await;
            }
            SfuEvent::PeerState { .. } => {}
        }
    }

    /// Records what a departed media session's whole talk time adds to the increments already
    /// recorded (`reported`): the last seconds before leaving. An increment still on its way
    /// then is ignored when it arrives (the member is gone), so nothing counts twice.
    async fn record_final_talk_time(&self, reported: u64, total: Option<TalkTimeTotal>) {
        if let Some(t) = total {
            let rest = t.speaking_ms.saturating_sub(reported);
            record_talk_time(&self.ctx.store, &self.id, &t.participant, rest).await;
        }
    }

    /// Closes the meeting's room on the media plane and records everyone's last seconds of
    /// talk; `reported` holds each participant's increments recorded so far.
    async fn close_room_recording_talk(&self, reported: &HashMap<String, u64>) {
        for total in self
            .ctx
            .sfu
            .close_room_with_talk_time(self.id.as_str())
            .await
        {
            let seen = reported.get(&total.participant).copied().unwrap_or(0);
            self.record_final_talk_time(seen, Some(total)).await;
        }
    }

    /// A data-channel message the SFU already relayed: chat is kept for the meeting's record.
    async fn data_message(&mut self, participant: &str, text: &str) {
        #[derive(serde::Deserialize)]
        struct DataMessage {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            text: Option<String>,
        }
        let Ok(pid) = ParticipantId::parse(participant) else {
            return;
        };
        if let Some(i) = self
            .relayed
            .iter()
            .position(|(p, t)| *p == pid && t == text)
        {
            self.relayed.remove(i);
            return;
        }
        let Some(m) = self.members.get(&pid) else {
            return;
        };
        let Ok(msg) = serde_json::from_str::<DataMessage>(text) else {
            return;
        };
        let (true, Some(chat)) = (msg.kind == "chat", msg.text) else {
            return;
        };
        if chat.is_empty() || chat.chars().count() > super::MAX_CHAT_CHARS {
            return;
        }
        let name = m.display_name.clone();
        if let Err(e) = self
            .ctx
            .store
            .insert_chat(&self.id, &pid, &name, &chat, "data_channel", Utc::now())
            .await
        {
            tracing::error!(meeting = %self.id, error = %e, "cannot store chat");
        }
        Metrics::inc(&self.ctx.metrics.chat_messages);
    }

    fn send_to(&mut self, pid: &ParticipantId, frame: &Arc<str>) {
        let full = match self.members.get(pid).and_then(|m| m.conn.as_ref()) {
            Some(conn) => matches!(
                conn.tx.try_send(frame.clone()),
                Err(mpsc::error::TrySendError::Full(_))
            ),
            None => false,
        };
        if full {
            self.drop_slow(pid);
        }
    }

    fn broadcast(&mut self, msg: &ServerMessage, except: Option<&ParticipantId>) {
        let frame = msg.encode();
        let mut slow = Vec::new();
        for m in self.members.values() {
            if Some(&m.id) == except {
                continue;
            }
            if let Some(conn) = &m.conn
                && let Err(mpsc::error::TrySendError::Full(_)) = conn.tx.try_send(frame.clone())
            {
                slow.push(m.id.clone());
            }
        }
        for pid in slow {
            self.drop_slow(&pid);
        }
    }

    /// A client that cannot keep up is cut loose, not waited for; it may resume like any dropped
    /// connection.
    fn drop_slow(&mut self, pid: &ParticipantId) {
        let Some(m) = self.members.get_mut(pid) else {
            return;
        };
        if let Some(conn) = m.conn.take() {
            tracing::warn!(meeting = %self.id, participant = %pid, "slow consumer dropped");
            Metrics::inc(&self.ctx.metrics.ws_slow_consumers);
            let _ = conn.close.send(CloseReason::new(4004, "too slow"));
            self.start_grace(pid);
        }
    }
}

fn recording_stopped(reason: &'static str) -> ServerMessage {
    ServerMessage::Recording {
        active: false,
        recording_id: None,
        started_at: None,
        started_by: None,
        reason: Some(reason),
    }
}

/// Adds one TalkTime increment of the media plane to the participant's session (the summary
/// sums them). A free function so the bookkeeping is testable without a media plane.
pub async fn record_talk_time(
    store: &Store,
    meeting: &MeetingId,
    participant: &str,
    speaking_ms: u64,
) {
    if speaking_ms == 0 || ParticipantId::parse(participant).is_err() {
        return;
    }
    if let Err(e) = crate::summaries::db::add_talk_time(
        store.pool(),
        meeting.as_str(),
        participant,
        speaking_ms,
    )
    .await
    {
        tracing::warn!(%meeting, error = %e, "cannot record talk time");
    }
}

/// The maximum meeting length of a licensed meeting, counted from its start.
struct TimeLimit {
    warn_at: tokio::time::Instant,
    end_at: tokio::time::Instant,
    ends_at_utc: chrono::DateTime<chrono::Utc>,
    warn_minutes: u32,
    warned: bool,
}

impl TimeLimit {
    /// Minutes before the end at which everyone is warned.
    const WARN_MINUTES: u32 = 5;

    fn new(
        started: Option<chrono::DateTime<chrono::Utc>>,
        max_minutes: i64,
        minute: Duration,
    ) -> Option<Self> {
        let max = u32::try_from(max_minutes).ok().filter(|m| *m > 0)?;
        let now = tokio::time::Instant::now();
        let wall_now = chrono::Utc::now();
        // A meeting that was already running (hub restarted after everyone briefly left) keeps
        // its original start: leaving and rejoining does not reset the clock.
        let elapsed = started
            .map(|s| (wall_now - s).to_std().unwrap_or_default())
            .unwrap_or_default();
        let total = minute * max;
        let remaining = total.saturating_sub(elapsed);
        let warn_minutes = Self::WARN_MINUTES.min(max);
        let before = minute * warn_minutes;
        let end_at = now + remaining;
        let warn_at = end_at.checked_sub(before).unwrap_or(now).max(now);
        let ends_at_utc = wall_now + chrono::Duration::from_std(remaining).unwrap_or_default();
        Some(Self {
            warn_at,
            end_at,
            ends_at_utc,
            warn_minutes,
            warned: false,
        })
    }

    fn next(&self) -> Option<tokio::time::Instant> {
        Some(if self.warned {
            self.end_at
        } else {
            self.warn_at
        })
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
