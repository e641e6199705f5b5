//! Customer webhook endpoints and the events they receive.
//!
//! An account registers endpoints (URL, events, a secret we generate, show once and store
//! sealed); each event becomes one outbox message per subscribed endpoint, delivered signed by
//! the outbox worker.
//! The endpoint is looked up again at send time ([`DbEndpoints`]), so a deleted endpoint's
//! waiting messages fail cleanly instead of going out.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::FromRow;

use crate::crm::SecretString;
use crate::domain::MeetingId;
use crate::outbox::webhooks::{
    EventType, WebhookEndpoint, WebhookEndpoints, customer_webhook_message,
};
use crate::outbox::{Outbox, OutboxError};
use crate::secrets::{Field, SecretsCipher};
use crate::store::DbPool;

/// A stored endpoint, without its secret (only the delivery opens that: [`DbEndpoints`]).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct Row {
    id: String,
    account_id: String,
    url: String,
    events: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    created_at: DateTime<Utc>,
}

impl From<Row> for Endpoint {
    fn from(r: Row) -> Self {
        Endpoint {
            // Stored by us from a validated list; an unknown name (from a newer version) is
            // skipped rather than making the endpoint unreadable.
            events: serde_json::from_str::<Vec<Value>>(&r.events)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            id: r.id,
            account_id: r.account_id,
            url: r.url,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, account_id, url, events, created_at";

/// Registers an endpoint with a fresh secret, stored sealed; returns the secret to show once.
pub async fn insert(
    pool: &DbPool,
    cipher: &SecretsCipher,
    account_id: &str,
    url: &str,
    events: &[EventType],
) -> sqlx::Result<(Endpoint, SecretString)> {
    let id = format!("whe_{}", crate::domain::random_token(20));
    let secret = format!("whsec_{}", crate::domain::random_token(40));
    let events_json = serde_json::to_string(events).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, account_id, url, secret, events, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    let row = sqlx::query_as::<_, Row>(&sql)
        .bind(&id)
        .bind(account_id)
        .bind(url)
        .bind(cipher.seal(Field::WebhookEndpointSecret, &id, &secret))
        .bind(events_json)
        .bind(crate::store::time::now_text())
        .fetch_one(pool)
        .await?;
    Ok((row.into(), SecretString::new(secret)))
}

pub async fn list(pool: &DbPool, account_id: &str) -> sqlx::Result<Vec<Endpoint>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE account_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at, id"
    );
    Ok(sqlx::query_as::<_, Row>(&sql)
        .bind(account_id)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(Endpoint::from)
        .collect())
}

/// Soft delete (see the migration); false when the account has no such endpoint.
pub async fn delete(pool: &DbPool, account_id: &str, id: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = $1 WHERE id = $2 AND account_id = $3 \
         AND deleted_at IS NULL",
    )
    .bind(crate::store::time::now_text())
    .bind(id)
    .bind(account_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Endpoints for the outbox's customer webhook delivery, secrets opened at send time.
#[derive(Clone)]
pub struct DbEndpoints {
    pool: DbPool,
    cipher: SecretsCipher,
}

impl DbEndpoints {
    pub fn new(pool: DbPool, cipher: SecretsCipher) -> Self {
        DbEndpoints { pool, cipher }
    }
}

#[async_trait]
impl WebhookEndpoints for DbEndpoints {
    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, String> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT url, secret FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        row.map(|(url, secret)| {
            Ok(WebhookEndpoint {
                url,
                secret: SecretString::new(
                    self.cipher
                        .open(Field::WebhookEndpointSecret, id, &secret)
                        .map_err(|e| e.to_string())?,
                ),
            })
        })
        .transpose()
    }
}

/// Turns events into outbox messages.
#[derive(Clone)]
pub struct Events {
    pool: DbPool,
    outbox: Outbox,
}

impl Events {
    pub fn new(pool: DbPool, outbox: Outbox) -> Self {
        Events { pool, outbox }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// One message per endpoint of the account subscribed to `event`; returns how many.
    pub async fn emit(
        &self,
        account_id: &str,
        event: EventType,
        event_id: &str,
        data: Value,
    ) -> Result<usize, OutboxError> {
        let endpoints = list(&self.pool, account_id).await?;
        let now = Utc::now();
        let mut n = 0;
        for e in endpoints.iter().filter(|e| e.events.contains(&event)) {
            self.outbox
                .enqueue(customer_webhook_message(
                    &e.id,
                    event,
                    event_id,
                    account_id,
                    now,
                    data.clone(),
                ))
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// An event of a meeting, for the meeting's account (none: an unlicensed meeting has no
    /// subscribers). Runs in its own task so the meeting's hub never waits for the database.
    pub fn meeting_event(
        &self,
        meeting: &MeetingId,
        event: EventType,
        event_id: String,
        mut data: Value,
    ) {
        let this = self.clone();
        let meeting = meeting.as_str().to_owned();
        tokio::spawn(async move {
            let account: Result<Option<(Option<String>,)>, _> =
                sqlx::query_as("SELECT account_id FROM meetings WHERE id = $1")
                    .bind(&meeting)
                    .fetch_optional(&this.pool)
                    .await;
            let account = match account {
                Ok(Some((Some(a),))) => a,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(%meeting, error = %e, "cannot look up the meeting's account");
                    return;
                }
            };
            if let Value::Object(m) = &mut data {
                m.insert("meeting_id".into(), Value::String(meeting.clone()));
            }
            if let Err(e) = this.emit(&account, event, &event_id, data).await {
                tracing::warn!(%meeting, event = event.as_str(), error = %e, "cannot enqueue the webhook event");
            }
        });
    }
}
