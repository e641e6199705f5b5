//! An outbox in process memory: for tests and for a server run without a database. Same
//! semantics as the SQLite store; a mutex makes claims atomic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    AttemptRecord, Claimed, NewMessage, OutboxError, OutboxMessage, OutboxStore, Settle, Status,
    new_id,
};

#[derive(Default)]
struct Inner {
    messages: HashMap<String, Entry>,
    by_key: HashMap<String, String>,
    log: HashMap<String, Vec<AttemptRecord>>,
}

struct Entry {
    message: OutboxMessage,
    lease: Option<(String, DateTime<Utc>)>,
}

impl Entry {
    fn claimable(&self, now: DateTime<Utc>) -> bool {
        self.message.status == Status::Pending
            && self.message.next_attempt_at <= now
            && self.lease.as_ref().is_none_or(|(_, until)| *until <= now)
    }
}

#[derive(Default)]
pub struct MemoryOutboxStore {
    inner: Mutex<Inner>,
}

impl MemoryOutboxStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below completes before the guard drops, so a poisoned lock still
        // guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl OutboxStore for MemoryOutboxStore {
    async fn enqueue(
        &self,
        message: NewMessage,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, OutboxError> {
        let mut g = self.lock();
        let key = message.idempotency_key.unwrap_or_else(new_id);
        if let Some(id) = g.by_key.get(&key)
            && let Some(e) = g.messages.get(id)
        {
            return Ok(e.message.clone());
        }
        let m = OutboxMessage {
            id: new_id(),
            kind: message.kind,
            destination: message.destination,
            payload: message.payload,
            idempotency_key: key.clone(),
            status: Status::Pending,
            attempts: 0,
            max_attempts: max_attempts.max(1),
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            delivered_at: None,
            account_id: message.account_id,
        };
        g.by_key.insert(key, m.id.clone());
        g.messages.insert(
            m.id.clone(),
            Entry {
                message: m.clone(),
                lease: None,
            },
        );
        Ok(m)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claimed>, OutboxError> {
        let mut g = self.lock();
        let Some(entry) = g
            .messages
            .values_mut()
            .filter(|e| e.claimable(now))
            .min_by_key(|e| (e.message.next_attempt_at, e.message.created_at))
        else {
            return Ok(None);
        };
        let token = new_id();
        let until = now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        entry.lease = Some((token.clone(), until));
        entry.message.attempts += 1;
        Ok(Some(Claimed {
            message: entry.message.clone(),
            lease: token,
        }))
    }

    async fn settle(
        &self,
        claimed: &Claimed,
        record: &AttemptRecord,
        next: Settle,
    ) -> Result<bool, OutboxError> {
        let mut g = self.lock();
        let Some(entry) = g.messages.get_mut(&claimed.message.id) else {
            return Ok(false);
        };
        let ours = entry
            .lease
            .as_ref()
            .is_some_and(|(token, _)| *token == claimed.lease)
            && entry.message.status == Status::Pending;
        if !ours {
            return Ok(false);
        }
        entry.lease = None;
        let m = &mut entry.message;
        match next {
            Settle::Delivered => {
                m.status = Status::Delivered;
                m.delivered_at = Some(record.at);
                m.last_error = None;
            }
            Settle::RetryAt(at) => {
                m.next_attempt_at = at;
                m.last_error = record.detail.clone();
            }
            Settle::Failed => {
                m.status = Status::Failed;
                m.last_error = record.detail.clone();
            }
        }
        g.log
            .entry(claimed.message.id.clone())
            .or_default()
            .push(record.clone());
        Ok(true)
    }

    async fn replace_payload(&self, id: &str, payload: &Value) -> Result<(), OutboxError> {
        let mut g = self.lock();
        let entry = g
            .messages
            .get_mut(id)
            .ok_or_else(|| OutboxError::NotFound(id.to_owned()))?;
        entry.message.payload = payload.clone();
        Ok(())
    }

    async fn retry(
        &self,
        id: &str,
        now: DateTime<Utc>,
        extra_attempts: u32,
    ) -> Result<OutboxMessage, OutboxError> {
        let mut g = self.lock();
        let entry = g
            .messages
            .get_mut(id)
            .ok_or_else(|| OutboxError::NotFound(id.to_owned()))?;
        let m = &mut entry.message;
        if m.status != Status::Failed {
            return Err(OutboxError::NotRetryable {
                id: id.to_owned(),
                status: m.status,
            });
        }
        m.status = Status::Pending;
        m.next_attempt_at = now;
        m.max_attempts = m.attempts + extra_attempts.max(1);
        entry.lease = None;
        Ok(m.clone())
    }

    async fn get(&self, id: &str) -> Result<Option<OutboxMessage>, OutboxError> {
        Ok(self.lock().messages.get(id).map(|e| e.message.clone()))
    }

    async fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, OutboxError> {
        Ok(self.lock().log.get(id).cloned().unwrap_or_default())
    }

    async fn list(&self, status: Status, limit: u32) -> Result<Vec<OutboxMessage>, OutboxError> {
        let g = self.lock();
        let mut v: Vec<OutboxMessage> = g
            .messages
            .values()
            .filter(|e| e.message.status == status)
            .map(|e| e.message.clone())
            .collect();
        v.sort_by_key(|m| m.created_at);
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let g = self.lock();
        Ok(g.messages
            .values()
            .filter(|e| e.message.status == Status::Pending)
            .map(|e| match &e.lease {
                Some((_, until)) => e.message.next_attempt_at.max(*until),
                None => e.message.next_attempt_at,
            })
            .min())
    }
}
