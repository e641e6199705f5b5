//! Customer webhooks: events of an account's meetings, licenses and orders POSTed to the URLs
//! the account registered, signed like the generic CRM webhook (see [`crate::crm::webhook`]) and
//! carrying the message's `Idempotency-Key` so the receiver can drop a retry's duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Delivery, DeliveryReport, NewMessage, OutboxMessage};
use crate::crm::webhook::post_signed;
use crate::crm::{CrmError, SecretString};

/// The outbox kind of customer webhooks.
pub const CUSTOMER_WEBHOOK: &str = "customer_webhook";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "meeting.started")]
    MeetingStarted,
    #[serde(rename = "meeting.ended")]
    MeetingEnded,
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    #[serde(rename = "license.expiring")]
    LicenseExpiring,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "recording.ready")]
    RecordingReady,
    /// The monthly review of seats unused for 30 days or more (licensing 6.2).
    #[serde(rename = "seats.review")]
    SeatsReview,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::MeetingStarted,
        EventType::MeetingEnded,
        EventType::ParticipantJoined,
        EventType::ParticipantLeft,
        EventType::LicenseExpiring,
        EventType::OrderPaid,
        EventType::RecordingReady,
        EventType::SeatsReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MeetingStarted => "meeting.started",
            EventType::MeetingEnded => "meeting.ended",
            EventType::ParticipantJoined => "participant.joined",
            EventType::ParticipantLeft => "participant.left",
            EventType::LicenseExpiring => "license.expiring",
            EventType::OrderPaid => "order.paid",
            EventType::RecordingReady => "recording.ready",
            EventType::SeatsReview => "seats.review",
        }
    }
}

/// The outbox message for one event to one endpoint. The body is
/// `{"id", "type", "created_at", "account_id", "data"}`; `event_id` must be stable for the event
/// (e.g. the meeting id and event name) so that enqueuing twice stores one message.
pub fn customer_webhook_message(
    endpoint_id: &str,
    event: EventType,
    event_id: &str,
    account_id: &str,
    created_at: DateTime<Utc>,
    data: Value,
) -> NewMessage {
    NewMessage {
        kind: CUSTOMER_WEBHOOK.into(),
        destination: endpoint_id.into(),
        payload: json!({
            "id": event_id,
            "type": event.as_str(),
            "created_at": created_at.to_rfc3339(),
            "account_id": account_id,
            "data": data,
        }),
        idempotency_key: Some(format!("{endpoint_id}:{event_id}")),
        account_id: Some(account_id.into()),
    }
}

/// A registered endpoint as the delivery needs it.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: String,
    pub secret: SecretString,
}

/// Looks endpoints up at send time, so a rotated secret or changed URL applies to messages
/// already waiting. The lead backs this by the database.
#[async_trait]
pub trait WebhookEndpoints: Send + Sync {
    /// `Ok(None)` when the endpoint was deleted; `Err` for a storage failure (retried).
    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, String>;
}

#[derive(Debug, Default)]
pub struct InMemoryEndpoints {
    map: Mutex<HashMap<String, WebhookEndpoint>>,
}

impl InMemoryEndpoints {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, id: &str, endpoint: WebhookEndpoint) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), endpoint);
    }
}

#[async_trait]
impl WebhookEndpoints for InMemoryEndpoints {
    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, String> {
        Ok(self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned())
    }
}

pub struct CustomerWebhookDelivery {
    http: reqwest::Client,
    endpoints: Arc<dyn WebhookEndpoints>,
    timeout: Duration,
}

impl CustomerWebhookDelivery {
    pub fn new(
        http: reqwest::Client,
        endpoints: Arc<dyn WebhookEndpoints>,
        timeout: Duration,
    ) -> Self {
        CustomerWebhookDelivery {
            http,
            endpoints,
            timeout,
        }
    }
}

#[async_trait]
impl Delivery for CustomerWebhookDelivery {
    async fn deliver(&self, m: &OutboxMessage) -> DeliveryReport {
        let endpoint = match self.endpoints.endpoint(&m.destination).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                return DeliveryReport::permanent(
                    format!("webhook endpoint {} no longer exists", m.destination),
                    None,
                );
            }
            Err(e) => {
                return DeliveryReport::retryable(
                    format!("could not look up the endpoint: {e}"),
                    None,
                    None,
                );
            }
        };
        let body = match serde_json::to_vec(&m.payload) {
            Ok(b) => b,
            Err(e) => return DeliveryReport::permanent(format!("payload: {e}"), None),
        };
        let answer = match post_signed(
            &self.http,
            &endpoint.url,
            &endpoint.secret,
            body,
            Some(&m.idempotency_key),
            self.timeout,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => return DeliveryReport::from_crm_error(&e),
        };
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            return DeliveryReport::delivered(Some(status));
        }
        // The receiver's body is not ours to interpret; its status says everything.
        let e =
            crate::crm::http::status_error(&answer, format!("the endpoint answered HTTP {status}"));
        match e {
            CrmError::Unauthorized(d) => DeliveryReport::permanent(d, Some(status)),
            other => DeliveryReport::from_crm_error(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_the_documented_ones() {
        let names: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "meeting.started",
                "meeting.ended",
                "participant.joined",
                "participant.left",
                "license.expiring",
                "order.paid",
                "recording.ready",
                "seats.review"
            ]
        );
        for e in EventType::ALL {
            assert_eq!(
                serde_json::to_value(e).expect("json"),
                Value::String(e.as_str().into())
            );
        }
    }

    #[test]
    fn message_shape() {
        let m = customer_webhook_message(
            "ep1",
            EventType::MeetingEnded,
            "mtg-9:ended",
            "acc-1",
            DateTime::from_timestamp(1_767_000_000, 0).expect("time"),
            json!({"meeting_id": "mtg-9"}),
        );
        assert_eq!(m.kind, CUSTOMER_WEBHOOK);
        assert_eq!(m.idempotency_key.as_deref(), Some("ep1:mtg-9:ended"));
        assert_eq!(m.payload["type"], "meeting.ended");
        assert_eq!(m.payload["data"]["meeting_id"], "mtg-9");
    }
}
