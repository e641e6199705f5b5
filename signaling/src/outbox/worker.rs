//! The delivery loop: claim a due message, make one attempt, settle it; sleep until the next
//! message is due when there is nothing to do. Run several workers (tasks or processes) on one
//! store for parallelism: the store's claims keep them apart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    AttemptOutcome, AttemptRecord, Claimed, Delivery, DeliveryReport, Outbox, OutboxError, Outcome,
    Settle,
};

/// Deliveries by message kind.
#[derive(Clone, Default)]
pub struct Deliveries {
    by_kind: HashMap<String, Arc<dyn Delivery>>,
}

impl Deliveries {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kind: &str, delivery: Arc<dyn Delivery>) -> Self {
        self.by_kind.insert(kind.to_owned(), delivery);
        self
    }
}

pub struct OutboxWorker {
    outbox: Outbox,
    deliveries: Deliveries,
    /// How long a claim holds a message. Longer than any delivery may take (each is also cut
    /// off at `lease - LEASE_MARGIN`), short enough that a crashed worker's messages come back
    /// soon.
    lease: Duration,
    /// Upper bound on an idle sleep, in case a wake-up from another process was missed.
    poll_interval: Duration,
}

/// Kept between the attempt deadline and the lease end, so we settle before anyone else may
/// claim.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl OutboxWorker {
    pub fn new(outbox: Outbox, deliveries: Deliveries) -> Self {
        OutboxWorker {
            outbox,
            deliveries,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(5),
        }
    }

    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(LEASE_MARGIN * 2);
        self
    }

    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll_interval = poll;
        self
    }

    /// Runs until `shutdown`. A delivery in progress finishes first (its lease would otherwise
    /// have to run out before another worker could retry it).
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.outbox.wake_handle();
        while !shutdown.is_cancelled() {
            match self.run_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "outbox: store failed; backing off"),
            }
            let sleep = self.idle_sleep().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn idle_sleep(&self) -> Duration {
        let next = match self.outbox.store().next_due().await {
            Ok(n) => n,
            Err(_) => return self.poll_interval,
        };
        match next {
            Some(at) => (at - self.outbox.clock().now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.poll_interval),
            None => self.poll_interval,
        }
    }

    /// Delivers every message due now, one after another; returns how many attempts were made.
    pub async fn drain(&self) -> Result<usize, OutboxError> {
        let mut n = 0;
        while self.run_once().await? {
            n += 1;
        }
        Ok(n)
    }

    /// Claims and attempts one due message; false when none was due.
    pub async fn run_once(&self) -> Result<bool, OutboxError> {
        let store = self.outbox.store();
        let Some(claimed) = store.claim(self.outbox.clock().now(), self.lease).await? else {
            return Ok(false);
        };
        let report = self.attempt(&claimed).await;
        let now = self.outbox.clock().now();
        let m = &claimed.message;
        let (outcome, detail, next) = match &report.outcome {
            Outcome::Delivered => (AttemptOutcome::Delivered, None, Settle::Delivered),
            Outcome::Retryable {
                retry_after,
                reason,
            } => {
                let next = if m.attempts >= m.max_attempts {
                    Settle::Failed
                } else {
                    let wait = self.outbox.policy().delay(m.attempts, *retry_after);
                    Settle::RetryAt(
                        now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX),
                    )
                };
                (AttemptOutcome::Retryable, Some(reason.clone()), next)
            }
            Outcome::Permanent { reason } => (
                AttemptOutcome::Permanent,
                Some(reason.clone()),
                Settle::Failed,
            ),
        };
        let record = AttemptRecord {
            message_id: m.id.clone(),
            attempt: m.attempts,
            at: now,
            outcome,
            http_status: report.http_status,
            detail,
        };
        match next {
            Settle::Failed => tracing::warn!(
                message = %m.id, kind = %m.kind, attempt = m.attempts,
                reason = record.detail.as_deref().unwrap_or_default(),
                "outbox: message failed"
            ),
            Settle::RetryAt(at) => tracing::info!(
                message = %m.id, kind = %m.kind, attempt = m.attempts, next = %at,
                reason = record.detail.as_deref().unwrap_or_default(),
                "outbox: attempt failed; will retry"
            ),
            Settle::Delivered => {
                tracing::debug!(message = %m.id, kind = %m.kind, attempt = m.attempts, "outbox: delivered")
            }
        }
        if !store.settle(&claimed, &record, next).await? {
            tracing::warn!(message = %m.id, "outbox: lease lost before settling; another worker owns the message now");
        } else if next == Settle::Delivered
            && let Some(kept) = self
                .deliveries
                .by_kind
                .get(&m.kind)
                .and_then(|d| d.retained_payload(m))
        {
            store.replace_payload(&m.id, &kept).await?;
        }
        Ok(true)
    }

    async fn attempt(&self, claimed: &Claimed) -> DeliveryReport {
        let m = &claimed.message;
        let Some(delivery) = self.deliveries.by_kind.get(&m.kind) else {
            return DeliveryReport::permanent(
                format!(
                    "no delivery is configured for messages of kind {:?}",
                    m.kind
                ),
                None,
            );
        };
        let deadline = self.lease.saturating_sub(LEASE_MARGIN);
        match tokio::time::timeout(deadline, delivery.deliver(m)).await {
            Ok(report) => report,
            Err(_) => DeliveryReport::retryable(
                format!("the attempt took longer than {deadline:?}"),
                None,
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::super::{
        Clock, MemoryOutboxStore, NewMessage, OutboxMessage, OutboxStore, RetryPolicy, Status,
        TokioClock,
    };
    use super::*;

    /// A delivery that answers from a script and records when (on the outbox clock) it was
    /// called.
    struct Scripted {
        clock: Arc<dyn Clock>,
        script: Mutex<Vec<DeliveryReport>>,
        calls: Mutex<Vec<chrono::DateTime<chrono::Utc>>>,
    }

    impl Scripted {
        fn new(clock: Arc<dyn Clock>, mut script: Vec<DeliveryReport>) -> Arc<Self> {
            script.reverse();
            Arc::new(Scripted {
                clock,
                script: Mutex::new(script),
                calls: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> Vec<chrono::DateTime<chrono::Utc>> {
            self.calls.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl Delivery for Scripted {
        async fn deliver(&self, _m: &OutboxMessage) -> DeliveryReport {
            self.calls.lock().expect("lock").push(self.clock.now());
            self.script
                .lock()
                .expect("lock")
                .pop()
                .unwrap_or_else(|| DeliveryReport::delivered(Some(200)))
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
            jitter: 0.5,
            max_retry_after: Duration::from_secs(3600),
        }
    }

    fn msg() -> NewMessage {
        NewMessage {
            kind: "test".into(),
            destination: "dest".into(),
            payload: json!({"n": 1}),
            idempotency_key: None,
            account_id: None,
        }
    }

    fn setup(
        max_attempts: u32,
        script: Vec<DeliveryReport>,
    ) -> (Outbox, Arc<Scripted>, CancellationToken) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let outbox = Outbox::new(
            Arc::new(MemoryOutboxStore::new()),
            policy(max_attempts),
            clock.clone(),
        );
        let delivery = Scripted::new(clock, script);
        let worker = OutboxWorker::new(
            outbox.clone(),
            Deliveries::new().with("test", delivery.clone()),
        )
        .with_poll_interval(Duration::from_secs(60));
        let stop = CancellationToken::new();
        tokio::spawn(worker.run(stop.clone()));
        (outbox, delivery, stop)
    }

    async fn wait_status(outbox: &Outbox, id: &str, want: Status) -> OutboxMessage {
        // Virtual time: this deadline is generous and costs nothing real.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        loop {
            let m = outbox.get(id).await.expect("get").expect("exists");
            if m.status == want {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never became {want:?}: {m:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_backoff_grows() {
        let (outbox, delivery, stop) = setup(
            5,
            vec![
                DeliveryReport::retryable("429", Some(Duration::from_secs(120)), Some(429)),
                DeliveryReport::retryable("503", None, Some(503)),
                DeliveryReport::retryable("503", None, Some(503)),
            ],
        );
        let m = outbox.enqueue(msg()).await.expect("enqueue");
        let done = wait_status(&outbox, &m.id, Status::Delivered).await;
        stop.cancel();
        let calls = delivery.calls();
        assert_eq!(calls.len(), 4);
        let gaps: Vec<i64> = calls
            .windows(2)
            .map(|w| (w[1] - w[0]).num_milliseconds())
            .collect();
        // Retry-After 120 s beats the 5–10 s backoff of attempt 1.
        assert!(gaps[0] >= 120_000, "{gaps:?}");
        // Attempt 2: 20 s with up to half jitter; attempt 3: 40 s likewise (+1 s for timer
        // rounding).
        assert!((10_000..=21_000).contains(&gaps[1]), "{gaps:?}");
        assert!((20_000..=41_000).contains(&gaps[2]), "{gaps:?}");
        let log = outbox.attempts(&m.id).await.expect("log");
        let summary: Vec<(u32, AttemptOutcome, Option<u16>)> = log
            .iter()
            .map(|a| (a.attempt, a.outcome, a.http_status))
            .collect();
        assert_eq!(
            summary,
            [
                (1, AttemptOutcome::Retryable, Some(429)),
                (2, AttemptOutcome::Retryable, Some(503)),
                (3, AttemptOutcome::Retryable, Some(503)),
                (4, AttemptOutcome::Delivered, Some(200)),
            ]
        );
        assert_eq!(done.attempts, 4);
        assert!(done.delivered_at.is_some() && done.last_error.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn last_attempt_fails_visibly_and_manual_retry_revives() {
        let down = || DeliveryReport::retryable("connection refused", None, None);
        let (outbox, delivery, stop) = setup(3, vec![down(), down(), down()]);
        let m = outbox.enqueue(msg()).await.expect("enqueue");
        let failed = wait_status(&outbox, &m.id, Status::Failed).await;
        assert_eq!(failed.attempts, 3);
        assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
        assert_eq!(delivery.calls().len(), 3);
        // Nothing more happens on its own.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(delivery.calls().len(), 3);

        let revived = outbox.retry(&m.id).await.expect("retry");
        assert_eq!(revived.status, Status::Pending);
        let done = wait_status(&outbox, &m.id, Status::Delivered).await;
        assert_eq!(done.attempts, 4);
        let log = outbox.attempts(&m.id).await.expect("log");
        assert_eq!(
            log.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(matches!(
            outbox.retry(&m.id).await,
            Err(OutboxError::NotRetryable { .. })
        ));
        assert!(matches!(
            outbox.retry("nope").await,
            Err(OutboxError::NotFound(_))
        ));
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failure_is_not_retried() {
        let (outbox, delivery, stop) = setup(
            5,
            vec![DeliveryReport::permanent("HTTP 422: bad field", Some(422))],
        );
        let m = outbox.enqueue(msg()).await.expect("enqueue");
        let failed = wait_status(&outbox, &m.id, Status::Failed).await;
        assert_eq!(failed.attempts, 1);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(delivery.calls().len(), 1);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kind_fails_instead_of_looping() {
        let (outbox, _delivery, stop) = setup(5, vec![]);
        let mut m = msg();
        m.kind = "carrier_pigeon".into();
        let m = outbox.enqueue(m).await.expect("enqueue");
        let failed = wait_status(&outbox, &m.id, Status::Failed).await;
        assert!(
            failed
                .last_error
                .unwrap_or_default()
                .contains("carrier_pigeon")
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn enqueue_is_idempotent_by_key() {
        let (outbox, delivery, stop) = setup(5, vec![]);
        let mut a = msg();
        a.idempotency_key = Some("meeting-1:note".into());
        let first = outbox.enqueue(a.clone()).await.expect("enqueue");
        let second = outbox.enqueue(a).await.expect("enqueue");
        assert_eq!(first.id, second.id);
        wait_status(&outbox, &first.id, Status::Delivered).await;
        assert_eq!(delivery.calls().len(), 1);
        stop.cancel();
    }

    /// A worker that stalls past its lease loses the message to another worker, and its late
    /// result does not overwrite the newer one.
    #[tokio::test(start_paused = true)]
    async fn expired_lease_passes_the_message_on() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let store = Arc::new(MemoryOutboxStore::new());
        let outbox = Outbox::new(store.clone(), policy(5), clock.clone());
        let m = outbox.enqueue(msg()).await.expect("enqueue");
        let lease = Duration::from_secs(30);
        let first = store
            .claim(clock.now(), lease)
            .await
            .expect("claim")
            .expect("due");
        assert!(
            store
                .claim(clock.now(), lease)
                .await
                .expect("claim")
                .is_none()
        );
        tokio::time::sleep(lease).await;
        let second = store
            .claim(clock.now(), lease)
            .await
            .expect("claim")
            .expect("lease ran out");
        assert_eq!(second.message.attempts, 2);
        let rec = |c: &Claimed| AttemptRecord {
            message_id: m.id.clone(),
            attempt: c.message.attempts,
            at: clock.now(),
            outcome: AttemptOutcome::Delivered,
            http_status: Some(200),
            detail: None,
        };
        assert!(
            !store
                .settle(&first, &rec(&first), Settle::Delivered)
                .await
                .expect("settle")
        );
        assert!(
            store
                .settle(&second, &rec(&second), Settle::Delivered)
                .await
                .expect("settle")
        );
        assert_eq!(outbox.attempts(&m.id).await.expect("log").len(), 1);
    }
}
