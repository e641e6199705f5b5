//! The outbox end to end on SQLite (and the two-worker race on PostgreSQL too, when
//! `PARLEY_TEST_POSTGRES_URL` is set): CRM notes through stand-ins that rate-limit, fail and hang;
//! customer webhooks signed and keyed; two workers on one database delivering each message once.
//! Timing assertions use the arrival times the stand-ins recorded, never sleeps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parley_signaling::crm::amocrm::{AmoCrm, AmoCrmConfig, AmoTokens, InMemoryTokenStore};
use parley_signaling::crm::bitrix24::{Bitrix24, Bitrix24Config};
use parley_signaling::crm::{CrmConnector, SecretString};
use parley_signaling::outbox::crm::{CRM_NOTE, ConnectorResolver, CrmDelivery, note_message};
use parley_signaling::outbox::webhooks::{
    CUSTOMER_WEBHOOK, CustomerWebhookDelivery, EventType, InMemoryEndpoints, WebhookEndpoint,
    customer_webhook_message,
};
use parley_signaling::outbox::{
    AttemptOutcome, DbOutboxStore, Deliveries, Delivery, DeliveryReport, Outbox, OutboxMessage,
    OutboxWorker, RetryPolicy, Status, TokioClock,
};
use parley_signaling::store::Store;
use parley_tests::crm_standins::*;
use parley_tests::wait_for;
use tokio_util::sync::CancellationToken;

struct Resolver(HashMap<String, Arc<dyn CrmConnector>>);

#[async_trait]
impl ConnectorResolver for Resolver {
    async fn connector(
        &self,
        connection_id: &str,
    ) -> Result<Option<Arc<dyn CrmConnector>>, String> {
        Ok(self.0.get(connection_id).cloned())
    }
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        jitter: 0.5,
        max_retry_after: Duration::from_secs(60),
    }
}

async fn sqlite_outbox(dir: &tempfile::TempDir, policy: RetryPolicy) -> Outbox {
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("parley.db").display()
    ))
    .await
    .expect("database");
    Outbox::new(
        Arc::new(DbOutboxStore::new(store.pool().clone())),
        policy,
        Arc::new(TokioClock::new()),
    )
}

fn start_worker(outbox: &Outbox, deliveries: Deliveries) -> CancellationToken {
    let stop = CancellationToken::new();
    let worker = OutboxWorker::new(outbox.clone(), deliveries)
        .with_lease(Duration::from_secs(30))
        .with_poll_interval(Duration::from_millis(50));
    tokio::spawn(worker.run(stop.clone()));
    stop
}

async fn wait_status(outbox: &Outbox, id: &str, want: Status) -> OutboxMessage {
    wait_for(&format!("message {id} to be {want:?}"), || async {
        outbox
            .get(id)
            .await
            .expect("get")
            .filter(|m| m.status == want)
    })
    .await
}

#[tokio::test]
async fn crm_note_survives_429_refresh_and_5xx_and_waits_for_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = sqlite_outbox(&dir, fast_policy(5)).await;
    let amo = AmoStandIn::start("refresh-0").await;
    let tokens = Arc::new(InMemoryTokenStore::with(
        "amo-1",
        AmoTokens {
            access_token: SecretString::new("access-expired"),
            refresh_token: SecretString::new("refresh-0"),
            expires_at: None,
        },
    ));
    let crm: Arc<dyn CrmConnector> = Arc::new(AmoCrm::new(
        AmoCrmConfig {
            base_url: amo.base_url.clone(),
            client_id: AMO_CLIENT_ID.into(),
            client_secret: SecretString::new(AMO_CLIENT_SECRET),
            redirect_uri: AMO_REDIRECT_URI.into(),
            connection_id: "amo-1".into(),
            timeout: Duration::from_secs(2),
            task_type_id: 1,
        },
        reqwest::Client::new(),
        tokens.clone(),
    ));
    let resolver = Arc::new(Resolver(HashMap::from([("amo-1".to_owned(), crm)])));
    // Attempt 1: 429 with Retry-After 1 s. Attempt 2: 500 (faults are served before the auth
    // check). Attempt 3: 401 for the expired token -> refresh -> delivered.
    amo.push_faults([Fault::Status(429, Some(1)), Fault::Status(500, None)]);
    let m = outbox
        .enqueue(note_message(
            "amo-1",
            &AMO_LEAD_ID.to_string(),
            "Meeting: demo",
            "mtg-1:note",
        ))
        .await
        .expect("enqueue");
    let stop = start_worker(
        &outbox,
        Deliveries::new().with(CRM_NOTE, Arc::new(CrmDelivery::new(resolver))),
    );
    let done = wait_status(&outbox, &m.id, Status::Delivered).await;
    stop.cancel();

    let notes_path = format!("/api/v4/leads/{AMO_LEAD_ID}/notes");
    let reqs = amo.requests();
    let api: Vec<(&str, u16)> = reqs.iter().map(|r| (r.path.as_str(), r.status)).collect();
    assert_eq!(
        api,
        [
            (notes_path.as_str(), 429),
            (notes_path.as_str(), 500),
            (notes_path.as_str(), 401),
            ("/oauth2/access_token", 200),
            (notes_path.as_str(), 200),
        ]
    );
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_secs(1),
        "the retry came {gap:?} after a Retry-After of 1 s"
    );
    assert_eq!(amo.lock().notes.len(), 1, "delivered exactly once");
    assert_eq!(amo.lock().refreshes, 1);
    assert_eq!(
        tokens.get("amo-1").expect("tokens").refresh_token.expose(),
        "refresh-1"
    );
    let log = outbox.attempts(&m.id).await.expect("log");
    let outcomes: Vec<(u32, AttemptOutcome, Option<u16>)> = log
        .iter()
        .map(|a| (a.attempt, a.outcome, a.http_status))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, AttemptOutcome::Retryable, Some(429)),
            (2, AttemptOutcome::Retryable, Some(500)),
            (3, AttemptOutcome::Delivered, None),
        ]
    );
    assert!(
        log[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("rate")
    );
    assert_eq!(done.attempts, 3);
}

#[tokio::test]
async fn nothing_is_lost_timeouts_and_outages_end_in_visible_failure_then_manual_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = sqlite_outbox(&dir, fast_policy(3)).await;
    let bx = BitrixStandIn::start().await;
    let crm: Arc<dyn CrmConnector> = Arc::new(
        Bitrix24::new(
            Bitrix24Config {
                webhook_url: SecretString::new(bx.webhook_url()),
                timeout: Duration::from_millis(300),
                default_responsible_id: None,
            },
            reqwest::Client::new(),
        )
        .expect("url"),
    );
    let resolver = Arc::new(Resolver(HashMap::from([("bx-1".to_owned(), crm)])));
    bx.push_faults([
        Fault::Hang,
        Fault::BitrixQueryLimit,
        Fault::Status(503, None),
    ]);
    let m = outbox
        .enqueue(note_message(
            "bx-1",
            &BITRIX_DEAL_ID.to_string(),
            "Meeting: demo",
            "mtg-2:note",
        ))
        .await
        .expect("enqueue");
    let stop = start_worker(
        &outbox,
        Deliveries::new().with(CRM_NOTE, Arc::new(CrmDelivery::new(resolver))),
    );
    let failed = wait_status(&outbox, &m.id, Status::Failed).await;
    assert_eq!(failed.attempts, 3);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("503"),
        "{failed:?}"
    );
    let log = outbox.attempts(&m.id).await.expect("log");
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|a| a.outcome == AttemptOutcome::Retryable));
    assert!(
        log[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("did not answer"),
        "{:?}",
        log[0]
    );
    assert!(bx.lock().comments.is_empty());
    let listed = outbox.list(Status::Failed, 10).await.expect("list");
    assert!(listed.iter().any(|x| x.id == m.id), "visible as failed");

    // The CRM is back; a person retries by hand.
    outbox.retry(&m.id).await.expect("retry");
    let done = wait_status(&outbox, &m.id, Status::Delivered).await;
    assert_eq!(done.attempts, 4);
    assert_eq!(bx.lock().comments.len(), 1);

    // A permanent refusal (after the faults above were used up): an unknown deal fails at once.
    let unknown = outbox
        .enqueue(note_message(
            "bx-1",
            "999999",
            "Meeting: demo",
            "mtg-3:note",
        ))
        .await
        .expect("enqueue");
    let unknown = wait_status(&outbox, &unknown.id, Status::Failed).await;
    assert_eq!(unknown.attempts, 1);
    assert!(unknown.last_error.unwrap_or_default().contains("999999"));

    stop.cancel();
}

#[tokio::test]
async fn customer_webhook_is_signed_keyed_and_waits_for_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = sqlite_outbox(&dir, fast_policy(5)).await;
    let secret = "whsec_customer_1";
    let rx = WebhookReceiver::start(secret).await;
    rx.push_faults([Fault::Status(429, Some(1))]);
    let endpoints = Arc::new(InMemoryEndpoints::new());
    endpoints.insert(
        "ep-1",
        WebhookEndpoint {
            url: rx.url.clone(),
            secret: SecretString::new(secret),
        },
    );
    let delivery = Arc::new(CustomerWebhookDelivery::new(
        reqwest::Client::new(),
        endpoints,
        Duration::from_secs(2),
    ));
    let m = outbox
        .enqueue(customer_webhook_message(
            "ep-1",
            EventType::MeetingEnded,
            "mtg-7:meeting.ended",
            "acc-1",
            chrono::Utc::now(),
            serde_json::json!({"meeting_id": "mtg-7", "duration_seconds": 2700}),
        ))
        .await
        .expect("enqueue");
    let stop = start_worker(&outbox, Deliveries::new().with(CUSTOMER_WEBHOOK, delivery));
    wait_status(&outbox, &m.id, Status::Delivered).await;
    stop.cancel();
    let got = rx.lock().received.clone();
    assert_eq!(got.len(), 2);
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_secs(1));
    for w in &got {
        assert!(w.signature_ok, "{w:?}");
        assert_eq!(
            w.idempotency_key.as_deref(),
            Some("ep-1:mtg-7:meeting.ended")
        );
        assert_eq!(w.body["type"], "meeting.ended");
        assert_eq!(w.body["data"]["meeting_id"], "mtg-7");
    }
    // Parley's own inbound verifier accepts what Parley sends (one scheme both ways).
    let verifier = parley_signaling::crm::webhook::WebhookVerifier::new(SecretString::new(secret));
    let w = &got[1];
    let body = serde_json::to_vec(&w.body).expect("body");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        verifier.verify(
            w.timestamp.as_deref().expect("ts"),
            w.signature.as_deref().expect("sig"),
            &body,
            now
        ),
        Ok(())
    );
}

/// Counts attempts per worker so the test can tell both workers took part.
struct Counting {
    inner: Arc<dyn Delivery>,
    n: AtomicUsize,
}

#[async_trait]
impl Delivery for Counting {
    async fn deliver(&self, m: &OutboxMessage) -> DeliveryReport {
        self.n.fetch_add(1, Ordering::Relaxed);
        self.inner.deliver(m).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_sqlite_database_deliver_each_message_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two pools on one file: as two server processes would share it.
    let a = sqlite_outbox(&dir, fast_policy(5)).await;
    let b = sqlite_outbox(&dir, fast_policy(5)).await;
    two_workers_deliver_each_message_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_schema_deliver_each_message_once() {
    let Some(url) = parley_tests::postgres::url() else {
        eprintln!("skipped: PARLEY_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = parley_tests::postgres::Schema::fresh(&url);
    // Two pools on one schema: as two nodes would share it.
    let a = postgres_outbox(&schema, fast_policy(5)).await;
    let b = postgres_outbox(&schema, fast_policy(5)).await;
    two_workers_deliver_each_message_once(a, b).await;
}

async fn postgres_outbox(schema: &parley_tests::postgres::Schema, policy: RetryPolicy) -> Outbox {
    let store = Store::connect_in_schema(&schema.url, Some(&schema.name))
        .await
        .expect("database");
    Outbox::new(
        Arc::new(DbOutboxStore::new(store.pool().clone())),
        policy,
        Arc::new(TokioClock::new()),
    )
}

/// Two workers, each with its own pool on one database, race for 100 messages.
async fn two_workers_deliver_each_message_once(a: Outbox, b: Outbox) {
    let secret = "whsec_pair";
    let rx = WebhookReceiver::start(secret).await;
    let endpoints = Arc::new(InMemoryEndpoints::new());
    endpoints.insert(
        "ep-1",
        WebhookEndpoint {
            url: rx.url.clone(),
            secret: SecretString::new(secret),
        },
    );
    let http = reqwest::Client::new();
    let counting = |_: ()| {
        Arc::new(Counting {
            inner: Arc::new(CustomerWebhookDelivery::new(
                http.clone(),
                endpoints.clone(),
                Duration::from_secs(5),
            )),
            n: AtomicUsize::new(0),
        })
    };
    let (da, db) = (counting(()), counting(()));

    let mut ids = Vec::new();
    for i in 0..100 {
        let m = a
            .enqueue(customer_webhook_message(
                "ep-1",
                EventType::ParticipantJoined,
                &format!("evt-{i}"),
                "acc-1",
                chrono::Utc::now(),
                serde_json::json!({"n": i}),
            ))
            .await
            .expect("enqueue");
        ids.push(m.id);
    }
    let stop_a = start_worker(&a, Deliveries::new().with(CUSTOMER_WEBHOOK, da.clone()));
    let stop_b = start_worker(&b, Deliveries::new().with(CUSTOMER_WEBHOOK, db.clone()));

    wait_for("all 100 messages delivered", || async {
        let n = a.list(Status::Delivered, 1000).await.expect("list").len();
        (n == 100).then_some(())
    })
    .await;
    stop_a.cancel();
    stop_b.cancel();

    let got = rx.lock().received.clone();
    assert_eq!(got.len(), 100, "one request per message");
    let keys: HashSet<String> = got
        .iter()
        .filter_map(|w| w.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 100, "no message delivered twice");
    assert!(got.iter().all(|w| w.signature_ok));
    assert_eq!(
        da.n.load(Ordering::Relaxed) + db.n.load(Ordering::Relaxed),
        100,
        "no attempt made twice"
    );
    for id in &ids {
        let log = b.attempts(id).await.expect("log");
        assert_eq!(log.len(), 1, "{id}: {log:?}");
        assert_eq!(log[0].outcome, AttemptOutcome::Delivered);
        assert_eq!(log[0].http_status, Some(204));
    }
    eprintln!(
        "worker a delivered {}, worker b {}",
        da.n.load(Ordering::Relaxed),
        db.n.load(Ordering::Relaxed)
    );
}
