//! The outbox in the server's database (`migrations/*/20260405000000_outbox.sql`), shared by
//! every worker, process and node that uses the same database, SQLite or PostgreSQL.
//!
//! A claim is one `UPDATE … WHERE id = (SELECT … LIMIT 1) AND <still claimable> RETURNING …`
//! statement that sets a lease (`lease_token`, `lease_until`). On SQLite a write statement runs
//! under the database's single write lock, taken before it reads, so choosing the message and
//! leasing it are one atomic step. On PostgreSQL (READ COMMITTED) two pollers may pick the same
//! id in the subquery, but the row lock makes the second wait for the first, and it then
//! re-checks the outer conditions on the row as the first left it: the lease is taken, so the
//! second updates nothing. Either way exactly one poller gets each message. Settling checks the
//! lease token, so a worker whose lease ran out (and whose message another worker took over)
//! cannot overwrite the newer attempt's result.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    AttemptOutcome, AttemptRecord, Claimed, NewMessage, OutboxError, OutboxMessage, OutboxStore,
    Settle, Status, new_id,
};
use crate::store::DbPool;

const COLUMNS: &str = "id, kind, destination, payload, idempotency_key, status, attempts, \
                       max_attempts, next_attempt_at, last_error, created_at, delivered_at, \
                       account_id";

#[derive(Clone)]
pub struct DbOutboxStore {
    pool: DbPool,
}

impl DbOutboxStore {
    /// Uses a pool whose database has the signaling migrations applied (`Store::connect` does).
    pub fn new(pool: DbPool) -> Self {
        DbOutboxStore { pool }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, OutboxError> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| OutboxError::Storage(format!("time {v} out of range")))
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> i64 {
    ms(now).saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

fn row_to_message(r: &AnyRow) -> Result<OutboxMessage, OutboxError> {
    let status: String = r.try_get("status")?;
    let payload: String = r.try_get("payload")?;
    let attempts: i64 = r.try_get("attempts")?;
    let max_attempts: i64 = r.try_get("max_attempts")?;
    let delivered_at: Option<i64> = r.try_get("delivered_at")?;
    Ok(OutboxMessage {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        destination: r.try_get("destination")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| OutboxError::Storage(format!("stored payload is not JSON: {e}")))?,
        idempotency_key: r.try_get("idempotency_key")?,
        status: Status::parse(&status)
            .ok_or_else(|| OutboxError::Storage(format!("unknown status {status:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
        last_error: r.try_get("last_error")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        delivered_at: delivered_at.map(from_ms).transpose()?,
        account_id: r.try_get("account_id")?,
    })
}

#[async_trait]
impl OutboxStore for DbOutboxStore {
    async fn enqueue(
        &self,
        message: NewMessage,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, OutboxError> {
        let key = message.idempotency_key.unwrap_or_else(new_id);
        let payload = serde_json::to_string(&message.payload)
            .map_err(|e| OutboxError::Storage(format!("payload does not encode: {e}")))?;
        sqlx::query(
            "INSERT INTO outbox_messages (id, kind, destination, payload, idempotency_key, status, \
             attempts, max_attempts, next_attempt_at, created_at, account_id) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8, $9) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(new_id())
        .bind(&message.kind)
        .bind(&message.destination)
        .bind(payload)
        .bind(&key)
        .bind(i64::from(max_attempts.max(1)))
        .bind(ms(now))
        .bind(ms(now))
        .bind(&message.account_id)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox_messages WHERE idempotency_key = $1"
        ))
        .bind(&key)
        .fetch_one(&self.pool)
        .await?;
        row_to_message(&row)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claimed>, OutboxError> {
        let token = new_id();
        // The outer conditions repeat the inner ones: on PostgreSQL they are what a poller that
        // lost the race re-checks after the winner's commit (see the module doc).
        let row = sqlx::query(&format!(
            "UPDATE outbox_messages \
             SET lease_token = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox_messages \
                         WHERE status = 'pending' AND next_attempt_at <= $3 \
                           AND (lease_until IS NULL OR lease_until <= $3) \
                         ORDER BY next_attempt_at, seq LIMIT 1) \
               AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $3) \
             RETURNING {COLUMNS}"
        ))
        .bind(&token)
        .bind(lease_until(now, lease))
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Claimed {
                message: row_to_message(&r)?,
                lease: token,
            })
        })
        .transpose()
    }

    async fn settle(
        &self,
        claimed: &Claimed,
        record: &AttemptRecord,
        next: Settle,
    ) -> Result<bool, OutboxError> {
        let (status, next_at, delivered_at) = match next {
            Settle::Delivered => (Status::Delivered, None, Some(ms(record.at))),
            Settle::RetryAt(at) => (Status::Pending, Some(ms(at)), None),
            Settle::Failed => (Status::Failed, None, None),
        };
        let last_error = match next {
            Settle::Delivered => None,
            _ => record.detail.clone(),
        };
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction holds the write lock from its start.
        let updated = sqlx::query(
            "UPDATE outbox_messages \
             SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3, \
                 delivered_at = COALESCE($4, delivered_at), lease_token = NULL, lease_until = NULL \
             WHERE id = $5 AND lease_token = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(next_at)
        .bind(last_error)
        .bind(delivered_at)
        .bind(&claimed.message.id)
        .bind(&claimed.lease)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO outbox_attempts (message_id, attempt, at, outcome, http_status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.message_id)
        .bind(i64::from(record.attempt))
        .bind(ms(record.at))
        .bind(record.outcome.as_str())
        .bind(record.http_status.map(i64::from))
        .bind(&record.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replace_payload(&self, id: &str, payload: &Value) -> Result<(), OutboxError> {
        let payload = serde_json::to_string(payload)
            .map_err(|e| OutboxError::Storage(format!("payload does not encode: {e}")))?;
        sqlx::query("UPDATE outbox_messages SET payload = $1 WHERE id = $2")
            .bind(payload)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry(
        &self,
        id: &str,
        now: DateTime<Utc>,
        extra_attempts: u32,
    ) -> Result<OutboxMessage, OutboxError> {
        let row = sqlx::query(&format!(
            "UPDATE outbox_messages \
             SET status = 'pending', next_attempt_at = $1, max_attempts = attempts + $2, \
                 lease_token = NULL, lease_until = NULL \
             WHERE id = $3 AND status = 'failed' RETURNING {COLUMNS}"
        ))
        .bind(ms(now))
        .bind(i64::from(extra_attempts.max(1)))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => row_to_message(&r),
            None => match self.get(id).await? {
                Some(m) => Err(OutboxError::NotRetryable {
                    id: id.to_owned(),
                    status: m.status,
                }),
                None => Err(OutboxError::NotFound(id.to_owned())),
            },
        }
    }

    async fn get(&self, id: &str) -> Result<Option<OutboxMessage>, OutboxError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox_messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_message).transpose()
    }

    async fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, OutboxError> {
        let rows = sqlx::query(
            "SELECT message_id, attempt, at, outcome, http_status, detail \
             FROM outbox_attempts WHERE message_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let outcome: String = r.try_get("outcome")?;
                let attempt: i64 = r.try_get("attempt")?;
                let status: Option<i64> = r.try_get("http_status")?;
                Ok(AttemptRecord {
                    message_id: r.try_get("message_id")?,
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    at: from_ms(r.try_get("at")?)?,
                    outcome: AttemptOutcome::parse(&outcome).ok_or_else(|| {
                        OutboxError::Storage(format!("unknown outcome {outcome:?}"))
                    })?,
                    http_status: status.and_then(|s| u16::try_from(s).ok()),
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn list(&self, status: Status, limit: u32) -> Result<Vec<OutboxMessage>, OutboxError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox_messages WHERE status = $1 ORDER BY seq LIMIT $2"
        ))
        .bind(status.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_message).collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until \
                     ELSE next_attempt_at END) \
             FROM outbox_messages WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        v.map(from_ms).transpose()
    }
}
