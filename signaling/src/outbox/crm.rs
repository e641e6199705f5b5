//! CRM writes through the outbox: the meeting summary as a note on the deal and the follow-up
//! task. The message names the CRM connection (`destination`) and the deal; the connector is
//! resolved at send time, so refreshed tokens or a changed webhook URL apply to waiting
//! messages.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Delivery, DeliveryReport, NewMessage, OutboxMessage};
use crate::crm::{CrmConnector, FollowUpTask};

pub const CRM_NOTE: &str = "crm_note";
pub const CRM_TASK: &str = "crm_task";

/// Finds the connector of a CRM connection. The lead backs this by the account's connection
/// record (amoCRM tokens, Bitrix24 URL, webhook secret).
#[async_trait]
pub trait ConnectorResolver: Send + Sync {
    /// `Ok(None)` when the connection was removed; `Err` for a storage failure (retried).
    async fn connector(&self, connection_id: &str)
    -> Result<Option<Arc<dyn CrmConnector>>, String>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NotePayload {
    deal_id: String,
    text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskPayload {
    deal_id: String,
    task: FollowUpTask,
}

/// A note for a deal; `key` should be stable per meeting (e.g. "{meeting_id}:note").
pub fn note_message(connection_id: &str, deal_id: &str, text: &str, key: &str) -> NewMessage {
    NewMessage {
        kind: CRM_NOTE.into(),
        destination: connection_id.into(),
        payload: json!({"deal_id": deal_id, "text": text}),
        idempotency_key: Some(key.into()),
        // The connection names the account.
        account_id: None,
    }
}

/// A follow-up task for a deal; `key` as for [`note_message`].
pub fn task_message(
    connection_id: &str,
    deal_id: &str,
    task: &FollowUpTask,
    key: &str,
) -> NewMessage {
    NewMessage {
        kind: CRM_TASK.into(),
        destination: connection_id.into(),
        payload: json!({"deal_id": deal_id, "task": task}),
        idempotency_key: Some(key.into()),
        account_id: None,
    }
}

/// Delivers both [`CRM_NOTE`] and [`CRM_TASK`] messages.
pub struct CrmDelivery {
    resolver: Arc<dyn ConnectorResolver>,
}

impl CrmDelivery {
    pub fn new(resolver: Arc<dyn ConnectorResolver>) -> Self {
        CrmDelivery { resolver }
    }
}

#[async_trait]
impl Delivery for CrmDelivery {
    async fn deliver(&self, m: &OutboxMessage) -> DeliveryReport {
        let connector = match self.resolver.connector(&m.destination).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return DeliveryReport::permanent(
                    format!("CRM connection {} no longer exists", m.destination),
                    None,
                );
            }
            Err(e) => {
                return DeliveryReport::retryable(
                    format!("could not load the CRM connection: {e}"),
                    None,
                    None,
                );
            }
        };
        let result = match m.kind.as_str() {
            CRM_NOTE => match serde_json::from_value::<NotePayload>(m.payload.clone()) {
                Ok(p) => connector.add_note(&p.deal_id, &p.text).await,
                Err(e) => return DeliveryReport::permanent(format!("note payload: {e}"), None),
            },
            CRM_TASK => match serde_json::from_value::<TaskPayload>(m.payload.clone()) {
                Ok(p) => connector.create_task(&p.deal_id, &p.task).await,
                Err(e) => return DeliveryReport::permanent(format!("task payload: {e}"), None),
            },
            other => {
                return DeliveryReport::permanent(format!("not a CRM message kind: {other}"), None);
            }
        };
        match result {
            Ok(created) => {
                tracing::info!(message = %m.id, crm = connector.system(), created = %created.0, "outbox: written to the CRM");
                DeliveryReport::delivered(None)
            }
            Err(e) => DeliveryReport::from_crm_error(&e),
        }
    }
}
