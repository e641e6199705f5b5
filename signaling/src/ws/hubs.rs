//! The registry of room hubs: meeting id → the hub task's inbox. The mutex guards only map
//! lookups and inserts, never an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use parley_sfu::SfuEvent;
use tokio::sync::{mpsc, oneshot};

use super::hub::{
    CloseReason, Conn, HostCommand, Hub, HubCommand, HubContext, HubTx, JoinAccepted, JoinRequest,
    OUTBOUND_QUEUE, RecordingNotice,
};
use super::messages::Resume;
use crate::auth::Claims;
use crate::domain::MeetingId;

pub use super::hub::HostError;

/// What a socket gets back from a successful join: its queues and identity in the room.
pub struct Joined {
    pub accepted: JoinAccepted,
    pub hub: HubTx,
    pub outbound: mpsc::Receiver<Arc<str>>,
    pub close: oneshot::Receiver<CloseReason>,
}

#[derive(Clone)]
pub struct Hubs {
    ctx: HubContext,
}

impl Hubs {
    pub fn new(ctx: HubContext) -> Self {
        Hubs { ctx }
    }

    fn get(&self, id: &MeetingId) -> Option<HubTx> {
        self.ctx.map.lock().ok()?.get(id).cloned()
    }

    fn get_or_spawn(&self, id: &MeetingId) -> Option<HubTx> {
        let mut map = self.ctx.map.lock().ok()?;
        if let Some(tx) = map.get(id)
            && !tx.is_closed()
        {
            return Some(tx.clone());
        }
        let tx = Hub::spawn(id.clone(), self.ctx.clone());
        map.insert(id.clone(), tx.clone());
        Some(tx)
    }

    /// Joins (or resumes) through the meeting's hub, creating it if needed. A hub that is just
    /// stopping drops the request; then a fresh hub is tried.
    pub async fn join(
        &self,
        meeting: &MeetingId,
        claims: Claims,
        resume: Option<Resume>,
        conn_id: u64,
        received_at: Instant,
    ) -> Result<Joined, CloseReason> {
        for _ in 0..3 {
            let Some(hub) = self.get_or_spawn(meeting) else {
                break;
            };
            let (out_tx, outbound) = mpsc::channel(OUTBOUND_QUEUE);
            let (close_tx, close) = oneshot::channel();
            let (reply, reply_rx) = oneshot::channel();
            let req = JoinRequest {
                claims: claims.clone(),
                resume: resume.clone(),
                conn: Conn {
                    id: conn_id,
                    tx: out_tx,
                    close: close_tx,
                },
                received_at,
                reply,
            };
            if hub.send(HubCommand::Join(Box::new(req))).is_err() {
                continue;
            }
            match reply_rx.await {
                Ok(Ok(accepted)) => {
                    return Ok(Joined {
                        accepted,
                        hub,
                        outbound,
                        close,
                    });
                }
                Ok(Err(refused)) => return Err(refused),
                Err(_) => continue,
            }
        }
        Err(CloseReason::new(1011, "meeting unavailable, try again"))
    }

    /// A host action from the REST API; `NotActive` when nobody is in the meeting.
    pub async fn host(&self, meeting: &MeetingId, command: HostCommand) -> Result<(), HostError> {
        let hub = self.get(meeting).ok_or(HostError::NotActive)?;
        let (reply, rx) = oneshot::channel();
        hub.send(HubCommand::Host { command, reply })
            .map_err(|_| HostError::NotActive)?;
        rx.await.map_err(|_| HostError::NotActive)?
    }

    /// Tells the meeting's hub (when it runs) about its recording; `false` when no hub runs.
    pub fn recording(&self, meeting: &MeetingId, notice: RecordingNotice) -> bool {
        self.get(meeting)
            .is_some_and(|hub| hub.send(HubCommand::Recording(notice)).is_ok())
    }

    /// Routes a media-plane event to its room's hub; events for rooms without a hub are dropped.
    pub fn route(&self, event: SfuEvent) {
        let room = match &event {
            SfuEvent::SubscriberOffer { room, .. }
            | SfuEvent::TracksChanged { room, .. }
            | SfuEvent::ActiveSpeaker { room, .. }
            | SfuEvent::Data { room, .. }
            | SfuEvent::PeerState { room, .. }
            | SfuEvent::TalkTime { room, .. } => room,
        };
        let Ok(id) = MeetingId::parse(room) else {
            return;
        };
        if let Some(hub) = self.get(&id) {
            let _ = hub.send(HubCommand::Sfu(event));
        }
    }

    /// Stops every hub, closing open sessions in the database.
    pub async fn shutdown(&self) {
        let hubs: Vec<HubTx> = match self.ctx.map.lock() {
            Ok(mut map) => map.drain().map(|(_, tx)| tx).collect(),
            Err(_) => return,
        };
        for hub in hubs {
            let (reply, rx) = oneshot::channel();
            if hub.send(HubCommand::Shutdown { reply }).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// The meetings with a hub on this node now (the cluster keeps their claims alive).
    pub fn live_meetings(&self) -> Vec<String> {
        match self.ctx.map.lock() {
            Ok(map) => map.keys().map(|id| id.to_string()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn new_map() -> super::hub::HubMap {
        Arc::new(Mutex::new(HashMap::new()))
    }
}
