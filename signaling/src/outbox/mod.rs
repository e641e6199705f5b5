//! Reliable outbound delivery: CRM notes and tasks, customer webhooks and emails are
//! written to an outbox first and delivered by workers, so a CRM that is down, slow or
//! rate-limiting us delays a message instead of losing it.
//!
//! - A message is `pending` until a [`Delivery`] reports success (`delivered`) or it runs out of
//!   attempts or meets a permanent refusal (`failed`, visible, with the last error). A person can
//!   put a failed message back with [`Outbox::retry`].
//! - Workers *claim* a due message with a lease (see [`OutboxStore::claim`]): while the lease
//!   runs no other worker takes it, so two workers never deliver one message at the same time;
//!   if a worker dies mid-delivery the lease runs out and another worker picks the message up.
//! - Retryable failures come back after exponential backoff with jitter, never earlier than a
//!   `Retry-After` the receiver asked for ([`RetryPolicy`]).
//! - Every message has an idempotency key, sent to receivers that understand one (customer
//!   webhooks carry `Idempotency-Key`), because "at least once" is all a network allows: a
//!   timeout can hide a success.
//! - Every attempt is logged (number, time, outcome, HTTP status) for the admin console.

pub mod crm;
pub mod db;
pub mod email;
pub mod memory;
pub mod webhooks;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use db::DbOutboxStore;
pub use memory::MemoryOutboxStore;
pub use worker::{Deliveries, OutboxWorker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "delivered" => Some(Status::Delivered),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Which [`Delivery`] sends it (e.g. [`webhooks::CUSTOMER_WEBHOOK`], [`crm::CRM_NOTE`]).
    pub kind: String,
    /// Where, in the delivery's terms (a webhook endpoint id, a CRM connection id). Never a
    /// secret: the delivery resolves credentials when it sends.
    pub destination: String,
    pub payload: Value,
    /// Enqueuing twice with the same key yields the one message (the caller's retry of an
    /// enqueue is safe). A random key is made when `None`.
    pub idempotency_key: Option<String>,
    /// The account whose message it is, when the destination does not say (an email goes
    /// through the one mail relay): its outbox lists the message. `None` for a message of no
    /// account (the summary of an unlicensed meeting).
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: String,
    pub destination: String,
    pub payload: Value,
    pub idempotency_key: String,
    pub status: Status,
    /// Attempts started so far (a claimed message counts its current attempt).
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub account_id: Option<String>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Worth another try later; `retry_after` is the receiver's own request, if it made one.
    Retryable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Will fail the same way every time (a refusal, an unknown deal, a bad payload).
    Permanent {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    pub outcome: Outcome,
    /// The receiver's HTTP status, for the delivery log.
    pub http_status: Option<u16>,
}

impl DeliveryReport {
    pub fn delivered(http_status: Option<u16>) -> Self {
        DeliveryReport {
            outcome: Outcome::Delivered,
            http_status,
        }
    }

    pub fn retryable(
        reason: impl Into<String>,
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    ) -> Self {
        DeliveryReport {
            outcome: Outcome::Retryable {
                retry_after,
                reason: reason.into(),
            },
            http_status,
        }
    }

    pub fn permanent(reason: impl Into<String>, http_status: Option<u16>) -> Self {
        DeliveryReport {
            outcome: Outcome::Permanent {
                reason: reason.into(),
            },
            http_status,
        }
    }

    /// A CRM call's result as a delivery outcome.
    pub fn from_crm_error(e: &crate::crm::CrmError) -> Self {
        if e.is_retryable() {
            Self::retryable(e.to_string(), e.retry_after(), e.http_status())
        } else {
            Self::permanent(e.to_string(), e.http_status())
        }
    }
}

/// Sends one kind of message. One call is one attempt; the worker decides what happens next.
#[async_trait]
pub trait Delivery: Send + Sync {
    async fn deliver(&self, message: &OutboxMessage) -> DeliveryReport;

    /// What to keep of a message's payload once it is delivered; `None` keeps all of it. Lets
    /// a kind drop what must not outlive the delivery (an email's body and one-time link).
    fn retained_payload(&self, _message: &OutboxMessage) -> Option<Value> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Retryable,
    Permanent,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Permanent => "permanent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(AttemptOutcome::Delivered),
            "retryable" => Some(AttemptOutcome::Retryable),
            "permanent" => Some(AttemptOutcome::Permanent),
            _ => None,
        }
    }
}

/// One line of a message's delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub message_id: String,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    pub http_status: Option<u16>,
    pub detail: Option<String>,
}

/// What becomes of a claimed message after its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// A claimed message and the lease that proves the claim is still ours when we settle it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub message: OutboxMessage,
    pub lease: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage failed: {0}")]
    Storage(String),
    #[error("no outbox message {0}")]
    NotFound(String),
    #[error("outbox message {id} is {status:?}; only failed messages can be retried")]
    NotRetryable { id: String, status: Status },
}

impl From<sqlx::Error> for OutboxError {
    fn from(e: sqlx::Error) -> Self {
        OutboxError::Storage(e.to_string())
    }
}

/// Where messages wait. Implementations must make [`claim`](OutboxStore::claim) atomic: of
/// several concurrent claimers, exactly one gets a given message.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Stores a new pending message due at `now`, or returns the one already stored under the
    /// same idempotency key.
    async fn enqueue(
        &self,
        message: NewMessage,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, OutboxError>;

    /// Takes the earliest due pending message whose lease (if any) has run out, leases it until
    /// `now + lease` and counts the attempt.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Claimed>, OutboxError>;

    /// Records the attempt and moves the message on, if `lease` still holds it. Returns false
    /// (and changes nothing) when the lease was lost to another worker.
    async fn settle(
        &self,
        claimed: &Claimed,
        record: &AttemptRecord,
        next: Settle,
    ) -> Result<bool, OutboxError>;

    /// Replaces a message's payload (see [`Delivery::retained_payload`]).
    async fn replace_payload(&self, id: &str, payload: &Value) -> Result<(), OutboxError>;

    /// Puts a failed message back: due at `now`, with `extra_attempts` more attempts.
    async fn retry(
        &self,
        id: &str,
        now: DateTime<Utc>,
        extra_attempts: u32,
    ) -> Result<OutboxMessage, OutboxError>;

    async fn get(&self, id: &str) -> Result<Option<OutboxMessage>, OutboxError>;

    /// The delivery log of one message, oldest first.
    async fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, OutboxError>;

    /// Messages in a state, oldest first (for the admin console).
    async fn list(&self, status: Status, limit: u32) -> Result<Vec<OutboxMessage>, OutboxError>;

    /// When the next pending message becomes claimable (due and unleased), so an idle worker
    /// can sleep exactly that long.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, OutboxError>;
}

/// Backoff between attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before a message is marked failed (the first attempt counts).
    pub max_attempts: u32,
    /// Wait after the first failure; doubles after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Fraction of each wait drawn at random (0 = none, 0.5 = between half and all of it), so
    /// messages that failed together (a CRM outage) do not all come back in the same second.
    pub jitter: f64,
    /// Cap on a receiver's `Retry-After`, so a broken header cannot park a message for weeks.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(30 * 60),
            jitter: 0.5,
            max_retry_after: Duration::from_secs(60 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), before `Retry-After`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return full;
        }
        let r: f64 = rand::random::<f64>();
        full.mul_f64(1.0 - jitter * r)
    }

    /// The wait after a retryable failure: the backoff, but never less than the receiver asked.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(attempt);
        match retry_after {
            Some(ra) => backoff.max(ra.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

/// Wall-clock time for the outbox, behind a trait so tests can run on tokio's paused clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// `Utc::now()` anchored once and advanced by tokio's monotonic clock. In production it tracks
/// the wall clock (and does not jump when NTP steps it); under `start_paused` tests it moves
/// with tokio's virtual time, so backoff sleeps and due times agree.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            base_utc: Utc::now(),
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base;
        self.base_utc + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// The outbox as the rest of the server uses it: enqueue, look, retry by hand.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub fn new(store: Arc<dyn OutboxStore>, policy: RetryPolicy, clock: Arc<dyn Clock>) -> Self {
        Outbox {
            store,
            policy,
            clock,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.store
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    pub async fn enqueue(&self, message: NewMessage) -> Result<OutboxMessage, OutboxError> {
        let m = self
            .store
            .enqueue(message, self.policy.max_attempts, self.clock.now())
            .await?;
        // An idle worker would otherwise notice only at its next poll.
        self.wake.notify_one();
        Ok(m)
    }

    /// Manual retry of a failed message: a fresh budget of attempts, due now.
    pub async fn retry(&self, id: &str) -> Result<OutboxMessage, OutboxError> {
        let m = self
            .store
            .retry(id, self.clock.now(), self.policy.max_attempts)
            .await?;
        self.wake.notify_one();
        Ok(m)
    }

    pub async fn get(&self, id: &str) -> Result<Option<OutboxMessage>, OutboxError> {
        self.store.get(id).await
    }

    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, OutboxError> {
        self.store.attempts(id).await
    }

    pub async fn list(
        &self,
        status: Status,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, OutboxError> {
        self.store.list(status, limit).await
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_respects_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            jitter: 0.0,
            max_retry_after: Duration::from_secs(600),
        };
        let secs: Vec<u64> = (1..=7).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        // A shorter Retry-After does not shorten our backoff.
        assert_eq!(
            p.delay(3, Some(Duration::from_secs(1))),
            Duration::from_secs(8)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(600)
        );
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy {
            jitter: 0.5,
            base_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        for _ in 0..1000 {
            let d = p.backoff(1);
            assert!(
                d > Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
