//! CRM connections, the outbox and customer webhooks wired into the running server, black-box:
//! connections stored per account and used by the server's own outbox worker against local
//! stand-ins of amoCRM, Bitrix24 and a customer's webhook receiver; meeting events from real
//! WebSocket joins; the failed state and manual retry; the inbound generic CRM endpoint with
//! its signature checks; and who may touch what.
//!
//! Nothing sleeps: every expectation waits for its condition with a deadline (`wait_for`).

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::outbox::crm::note_message;
use parley_signaling::outbox::webhooks::EventType;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender};
use parley_tests::crm_standins::{
    AMO_CLIENT_ID, AMO_CLIENT_SECRET, AMO_LEAD_ID, AMO_REDIRECT_URI, AmoStandIn, BITRIX_CODE,
    BITRIX_DEAL_ID, BitrixStandIn, Fault, WebhookReceiver, expected_signature,
};
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const REFRESH: &str = "amo-refresh-0001";
const INBOUND_SECRET: &str = "inbound-secret-of-the-generic-crm";

struct World {
    app: TestApp,
    mail: MemoryEmailSender,
    clock: LicensingClock,
}

struct Account {
    id: String,
    key: String,
    lot: String,
}

impl World {
    async fn spawn() -> World {
        Self::spawn_with(|_| {}).await
    }

    async fn spawn_with(
        tweak: impl FnOnce(&mut parley_signaling::configuration::Config) + Send + 'static,
    ) -> World {
        let mail = MemoryEmailSender::new();
        let clock = LicensingClock::new(NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"));
        let (m, c) = (mail.clone(), clock.clone());
        let app = TestApp::spawn_with(move |cfg| {
            configure(cfg, m, c);
            tweak(cfg);
        })
        .await;
        let w = World { app, mail, clock };
        let (s, v) = w
            .req(
                Method::PUT,
                "/api/v1/tariffs/business-12",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": "Business", "term_months": 12, "price_per_seat": "12000.00",
                    "features": {"max_participants": 10, "max_meeting_minutes": 240,
                        "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                        "sdk_embedding": true, "results_to_recipients": true,
                        "screen_share": true}
                })),
            )
            .await;
        assert_eq!(s, 200, "tariff: {v}");
        w
    }

    /// Stops the server and starts it again on the same database (and key file), configured
    /// as at spawn and then by `tweak`; the start's error when it refuses to start.
    async fn restart_with(
        &mut self,
        tweak: impl FnOnce(&mut parley_signaling::configuration::Config),
    ) -> anyhow::Result<()> {
        let (m, c) = (self.mail.clone(), self.clock.clone());
        self.app
            .restart_with(move |cfg| {
                configure(cfg, m, c);
                tweak(cfg);
            })
            .await
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.app.call(method, path, bearer, body).await
    }

    fn state(&self) -> &parley_signaling::startup::AppState {
        self.app.server.as_ref().expect("running").state()
    }

    /// An account with a paid lot of 3 seats, `rep-1` holding one.
    async fn account(&self, crm_id: &str) -> Account {
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": format!("ООО Ромашка {crm_id}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                    "crm_external_id": crm_id, "address": "Москва"
                })),
            )
            .await;
        assert_eq!(s, 201, "account: {v}");
        let (id, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
        let r = self
            .app
            .http
            .post(self.app.url(&format!("/api/v1/accounts/{id}/orders")))
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("order-{crm_id}"))
            .json(&json!({"type": "initial", "tariff": "business-12", "seats": 3}))
            .send()
            .await
            .expect("order");
        assert_eq!(r.status(), 201);
        let order: Value = r.json().await.expect("json");
        let inv = &order["invoice"];
        let r = self
            .app
            .http
            .post(self.app.url(&format!(
                "/api/v1/accounts/{id}/invoices/{}/payments",
                str_of(inv, "id")
            )))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", format!("pay-{crm_id}"))
            .json(&json!({"method": "bank_transfer", "amount": inv["amount"]}))
            .send()
            .await
            .expect("payment");
        assert_eq!(r.status(), 201);
        let p: Value = r.json().await.expect("json");
        let acc = Account {
            id,
            key,
            lot: str_of(&p, "lot_id"),
        };
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/lots/{}/seats", acc.id, acc.lot),
                Some(&acc.key),
                Some(json!({"user_id": "rep-1"})),
            )
            .await;
        assert!(s == 201 || s == 200, "seat: {s} {v}");
        acc
    }

    /// Invites `email` with `role` by the account's key and accepts: a session token.
    async fn session(&self, acc: &Account, email: &str, role: &str) -> String {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "invite {email}: {v}");
        // The mail goes out through the outbox: wait for it.
        let token = wait_for("the invitation mail", || async {
            self.mail
                .sent_to(email)
                .last()
                .and_then(|m| token_in(&m.text, "inv_"))
        })
        .await;
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 200, "accept: {v}");
        str_of(&v, "token")
    }

    async fn put_crm(&self, acc: &Account, body: Value) -> Value {
        let (s, v) = self
            .req(
                Method::PUT,
                &format!("/api/v1/accounts/{}/crm", acc.id),
                Some(&acc.key),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "put crm: {v}");
        v
    }

    async fn outbox(&self, acc: &Account, status: &str) -> Vec<Value> {
        let (s, v) = self
            .req(
                Method::GET,
                &format!("/api/v1/accounts/{}/outbox?status={status}", acc.id),
                Some(&acc.key),
                None,
            )
            .await;
        assert_eq!(s, 200, "outbox: {v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// A customer webhook endpoint at a fresh receiver, which checks the generated secret.
    async fn receiver(&self, acc: &Account, events: &[&str]) -> (WebhookReceiver, String) {
        let receiver = WebhookReceiver::start("unknown-until-registered").await;
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/webhooks", acc.id),
                Some(&acc.key),
                Some(json!({"url": receiver.url, "events": events})),
            )
            .await;
        assert_eq!(s, 201, "webhook: {v}");
        let secret = str_of(&v, "secret");
        receiver.lock().secret = Some(secret);
        (receiver, str_of(&v, "id"))
    }
}

/// The test servers' configuration beyond [`parley_tests::test_config`].
fn configure(
    cfg: &mut parley_signaling::configuration::Config,
    mail: MemoryEmailSender,
    clock: LicensingClock,
) {
    cfg.licensing_clock = Some(clock);
    // The reminder mover polls often, so a moved licensing date shows up quickly.
    cfg.license_events_interval = std::time::Duration::from_millis(50);
    cfg.email_sender = Some(EmailSenderHook(Arc::new(mail)));
    // Fast retries: tests wait for conditions, not for backoff.
    cfg.outbox_max_attempts = 2;
    cfg.outbox_base_delay = std::time::Duration::from_millis(10);
    cfg.outbox_max_delay = std::time::Duration::from_millis(50);
    cfg.crm_timeout = std::time::Duration::from_secs(3);
}

fn token_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(&format!("#token={prefix}"))? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == prefix.len() + 43).then_some(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_note_goes_out_through_the_servers_worker_after_a_token_refresh() {
    let w = World::spawn().await;
    let acc = w.account("amo-1").await;
    let amo = AmoStandIn::start(REFRESH).await;
    let v = w
        .put_crm(
            &acc,
            json!({"kind": "amocrm", "frame_origin": "https://romashka.amocrm.ru",
                "settings": {"base_url": amo.base_url, "client_id": AMO_CLIENT_ID,
                    "client_secret": AMO_CLIENT_SECRET, "redirect_uri": AMO_REDIRECT_URI,
                    "access_token": "expired-access-token", "refresh_token": REFRESH}}),
        )
        .await;
    let text = v.to_string();
    for secret in [AMO_CLIENT_SECRET, REFRESH, "expired-access-token"] {
        assert!(!text.contains(secret), "a secret in the answer: {text}");
    }
    assert_eq!(v["kind"], "amocrm");
    assert_eq!(v["secrets"]["client_secret"], "********");
    assert_eq!(v["frame_origin"], "https://romashka.amocrm.ru");
    let connection = str_of(&v, "connection_id");

    w.state()
        .outbox
        .enqueue(note_message(
            &connection,
            &AMO_LEAD_ID.to_string(),
            "Call summary: the client wants a proposal.",
            "m-1:note",
        ))
        .await
        .expect("enqueue");
    wait_for("the note at amoCRM", || async {
        (!amo.lock().notes.is_empty()).then_some(())
    })
    .await;
    {
        let st = amo.lock();
        assert_eq!(st.refreshes, 1, "one refresh on the 401");
        assert_eq!(st.notes.len(), 1);
        assert_eq!(st.notes[0].0, AMO_LEAD_ID);
    }
    let delivered = wait_for("the message delivered", || async {
        let d = w.outbox(&acc, "delivered").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(delivered[0]["kind"], "crm_note");
    let (s, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/crm", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "connected", "{v}");
    assert!(!v.to_string().contains(REFRESH));

    // The refreshed pair was saved: a second note needs no refresh (the old refresh token is
    // spent at amoCRM, so a lost save would fail here).
    w.state()
        .outbox
        .enqueue(note_message(
            &connection,
            &AMO_LEAD_ID.to_string(),
            "Second",
            "m-2:note",
        ))
        .await
        .expect("enqueue");
    wait_for("the second note", || async {
        (amo.lock().notes.len() == 2).then_some(())
    })
    .await;
    assert_eq!(amo.lock().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_comment_is_retried_after_a_5xx_and_delivered() {
    let w = World::spawn().await;
    let acc = w.account("b24-1").await;
    let b24 = BitrixStandIn::start().await;
    let v = w
        .put_crm(
            &acc,
            json!({"kind": "bitrix24", "settings": {"webhook_url": b24.webhook_url()}}),
        )
        .await;
    assert!(
        !v.to_string().contains(&b24.webhook_url()),
        "the webhook URL is a credential: {v}"
    );
    assert_eq!(v["settings"]["portal"], b24.origin);
    b24.push_faults([Fault::Status(502, None)]);
    w.state()
        .outbox
        .enqueue(note_message(
            &str_of(&v, "connection_id"),
            &BITRIX_DEAL_ID.to_string(),
            "Call summary",
            "m-b:note",
        ))
        .await
        .expect("enqueue");
    wait_for("the comment at Bitrix24", || async {
        (!b24.lock().comments.is_empty()).then_some(())
    })
    .await;
    let d = wait_for("delivered", || async {
        let d = w.outbox(&acc, "delivered").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    let log = d[0]["attempt_log"].as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["outcome"], "retryable");
    assert_eq!(log[0]["http_status"], 502);
    assert_eq!(log[1]["outcome"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_events_reach_the_customer_endpoint_signed() {
    let w = World::spawn().await;
    let acc = w.account("hooks-1").await;
    let (receiver, _) = w
        .receiver(
            &acc,
            &["meeting.started", "participant.joined", "meeting.ended"],
        )
        .await;
    let (s, m) = w
        .req(
            Method::POST,
            "/api/v1/meetings",
            Some(&acc.key),
            Some(json!({"title": "Demo", "host_user_id": "rep-1"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let meeting = parley_tests::Meeting {
        id: str_of(&m, "id"),
        host_key: str_of(&m, "host_key"),
        host_token: str_of(&m, "host_token"),
        invite: str_of(&m, "invite"),
        raw: m.clone(),
    };
    let host = w.app.host_token(&meeting, "Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let (_h, _) = w.app.join(&host).await;
    let (_g, _) = w.app.join(&guest).await;
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{}/end", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    assert_eq!(s, 204, "end: {v}");
    let got = wait_for("joined twice, started and ended", || async {
        let st = receiver.lock();
        let types: Vec<String> = st
            .received
            .iter()
            .filter_map(|r| r.body["type"].as_str().map(str::to_owned))
            .collect();
        let joined = types.iter().filter(|t| *t == "participant.joined").count();
        (joined == 2
            && types.iter().any(|t| t == "meeting.ended")
            && types.iter().any(|t| t == "meeting.started"))
        .then(|| st.received.clone())
    })
    .await;
    for r in &got {
        assert!(
            r.signature_ok,
            "signed with the endpoint's secret: {:?}",
            r.body
        );
        assert!(r.idempotency_key.is_some());
        assert_eq!(r.body["account_id"], acc.id);
        assert_eq!(r.body["data"]["meeting_id"], meeting.id);
    }
    // Not subscribed: never sent.
    assert!(
        got.iter().all(|r| r.body["type"] != "participant.left"),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_is_listed_and_a_manual_retry_delivers_it() {
    let w = World::spawn().await;
    let acc = w.account("retry-1").await;
    let (receiver, endpoint) = w.receiver(&acc, &["order.paid"]).await;
    // Two attempts (the test config), both refused with 503.
    receiver.push_faults([Fault::Status(503, None), Fault::Status(503, None)]);
    let n = parley_signaling::integrations::emit_event(
        w.state(),
        &acc.id,
        EventType::OrderPaid,
        "order.paid:test-1",
        json!({"order": "test-1"}),
    )
    .await
    .expect("emit");
    assert_eq!(n, 1);
    let failed = wait_for("the message failed", || async {
        let f = w.outbox(&acc, "failed").await;
        (!f.is_empty()).then_some(f)
    })
    .await;
    let m = &failed[0];
    assert_eq!(m["destination"], endpoint);
    assert_eq!(m["attempt_log"].as_array().map(Vec::len), Some(2), "{m}");
    assert!(m["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    let id = str_of(m, "id");

    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/{id}/retry", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "retry: {v}");
    wait_for("delivered after the retry", || async {
        receiver
            .lock()
            .received
            .iter()
            .any(|r| {
                r.signature_ok
                    && r.body["type"] == "order.paid"
                    && r.body["id"] == "order.paid:test-1"
            })
            .then_some(())
    })
    .await;
    wait_for("listed as delivered", || async {
        w.outbox(&acc, "delivered")
            .await
            .iter()
            .any(|m| m["id"] == id.as_str())
            .then_some(())
    })
    .await;
    // Only failed messages can be retried; unknown ids are 404.
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/{id}/retry", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/nope/retry", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

async fn signed_post(w: &World, account: &str, ts: i64, body: &[u8], secret: &str) -> (u16, Value) {
    let r = w
        .app
        .http
        .post(
            w.app
                .url(&format!("/api/v1/crm/webhook/{account}/meetings")),
        )
        .header("content-type", "application/json")
        .header("x-parley-timestamp", ts.to_string())
        .header(
            "x-parley-signature",
            expected_signature(secret, &ts.to_string(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn meeting_count(w: &World) -> usize {
    let (s, v) = w
        .req(
            Method::GET,
            "/api/v1/meetings?limit=100",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["meetings"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbound_generic_endpoint_creates_meetings_only_for_good_signatures() {
    let w = World::spawn().await;
    let acc = w.account("generic-1").await;
    w.put_crm(
        &acc,
        json!({"kind": "webhook", "settings": {"url": "https://crm.example/parley", "secret": INBOUND_SECRET}}),
    )
    .await;
    let body = serde_json::to_vec(&json!({
        "deal_id": "D-77", "title": "Demo for deal 77", "host_user_id": "rep-1",
        "contacts": [{"name": "Ivan Petrov", "email": "ivan@client.example"}]
    }))
    .expect("json");
    let now = Utc::now().timestamp();

    let (s, v) = signed_post(&w, &acc.id, now, &body, "wrong-secret-wrong-secret").await;
    assert_eq!(s, 401, "bad signature: {v}");
    let (s, v) = signed_post(&w, &acc.id, now - 3600, &body, INBOUND_SECRET).await;
    assert_eq!(s, 401, "stale: {v}");
    assert_eq!(meeting_count(&w).await, 0, "nothing created");

    let (s, v) = signed_post(&w, &acc.id, now, &body, INBOUND_SECRET).await;
    assert_eq!(s, 201, "good: {v}");
    assert_eq!(v["deal_id"], "D-77");
    assert!(str_of(&v, "host_link").contains(&str_of(&v, "id")));
    assert!(str_of(&v, "invite_link").contains("invite="));
    let (s, m) = w
        .req(
            Method::GET,
            &format!("/api/v1/meetings/{}", str_of(&v, "id")),
            Some(&str_of(&v, "host_key")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["title"], "Demo for deal 77");

    // The very same request again is a replay.
    let (s, v) = signed_post(&w, &acc.id, now, &body, INBOUND_SECRET).await;
    assert_eq!(s, 401, "replay: {v}");
    // Unsigned, or for an account without a generic connection: the same 401.
    let other = w.account("generic-2").await;
    let (s, _) = signed_post(&w, &other.id, now, &body, INBOUND_SECRET).await;
    assert_eq!(s, 401);
    assert_eq!(
        meeting_count(&w).await,
        1,
        "only the good request created a meeting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_reads_or_changes_another_accounts_integrations() {
    let w = World::spawn().await;
    let a = w.account("authz-a").await;
    let b = w.account("authz-b").await;
    let first = w.put_crm(
        &a,
        json!({"kind": "webhook", "settings": {"url": "https://crm.example/a", "secret": INBOUND_SECRET}}),
    )
    .await;
    // Changing the settings keeps the connection (messages waiting for it still go out).
    let again = w.put_crm(
        &a,
        json!({"kind": "webhook", "settings": {"url": "https://crm.example/a", "secret": INBOUND_SECRET}}),
    )
    .await;
    assert_eq!(first["connection_id"], again["connection_id"]);
    let (_, endpoint) = w.receiver(&a, &["meeting.ended"]).await;
    let admin_a = w.session(&a, "admin@a.example", "account_admin").await;
    let member_a = w.session(&a, "member@a.example", "member").await;
    let admin_b = w.session(&b, "admin@b.example", "account_admin").await;

    let crm_put = json!({"kind": "webhook", "settings": {"url": "https://evil.example", "secret": "sixteen-chars-or-more"}});
    let hook = json!({"url": "https://evil.example/hook", "events": ["meeting.ended"]});
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/accounts/{}/crm", a.id), None),
        (
            Method::PUT,
            format!("/api/v1/accounts/{}/crm", a.id),
            Some(crm_put),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{}/crm", a.id),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/webhooks", a.id),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/webhooks", a.id),
            Some(hook),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{}/webhooks/{endpoint}", a.id),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/outbox", a.id),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/outbox/any/retry", a.id),
            None,
        ),
    ];
    for (method, path, body) in &calls {
        for (who, bearer, want) in [
            ("other account's key", Some(b.key.as_str()), 404),
            ("other account's admin", Some(admin_b.as_str()), 404),
            ("member", Some(member_a.as_str()), 403),
            ("anonymous", None, 401),
        ] {
            let (s, v) = w.req(method.clone(), path, bearer, body.clone()).await;
            assert_eq!(s, want, "{who} {method} {path}: {v}");
        }
    }
    // Nothing changed: the connection and the endpoint are still there, for the admin.
    let (s, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/crm", a.id),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settings"]["url"], "https://crm.example/a");
    assert!(!v.to_string().contains(INBOUND_SECRET));
    let (s, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/webhooks", a.id),
            Some(&admin_a),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        v[0].get("secret").is_none(),
        "the secret is shown only once: {v}"
    );
    // The operator may.
    let (s, _) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/outbox", a.id),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200);
    // Plain http off loopback is refused.
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/webhooks", a.id),
            Some(&admin_a),
            Some(json!({"url": "http://example.com/hook", "events": ["meeting.ended"]})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licensing_reminders_go_out_as_license_expiring_webhooks() {
    let w = World::spawn().await;
    let acc = w.account("remind-1").await;
    let (receiver, _) = w.receiver(&acc, &["license.expiring"]).await;
    let (s, lot) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/lots/{}", acc.id, acc.lot),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{lot}");
    let ends_on: NaiveDate = str_of(&lot, "ends_on").parse().expect("ends_on date");
    // The 30-day reminder is due (and the 90-day one before it).
    w.clock.set(ends_on - chrono::Days::new(30));
    let got = wait_for("the reminders", || async {
        let st = receiver.lock();
        (st.received.len() >= 2).then(|| st.received.clone())
    })
    .await;
    let days: Vec<i64> = got
        .iter()
        .map(|r| {
            assert!(r.signature_ok);
            assert_eq!(r.body["type"], "license.expiring");
            assert_eq!(r.body["account_id"], acc.id);
            r.body["data"]["days_left"].as_i64().unwrap_or_default()
        })
        .collect();
    assert!(days.contains(&90) && days.contains(&30), "{days:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_payment_goes_out_as_order_paid() {
    let w = World::spawn().await;
    let (s, v) = w
        .req(
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(json!({
                "name": "ООО Ромашка paid", "kind": "legal_entity", "inn": "7707083893",
                "resident": true, "crm_system": "sbercrm", "crm_external_id": "paid-1",
                "address": "Москва"
            })),
        )
        .await;
    assert_eq!(s, 201, "account: {v}");
    let acc = Account {
        id: str_of(&v["account"], "id"),
        key: str_of(&v["api_key"], "bearer"),
        lot: String::new(),
    };
    let (receiver, _) = w.receiver(&acc, &["order.paid"]).await;
    let r = w
        .app
        .http
        .post(w.app.url(&format!("/api/v1/accounts/{}/orders", acc.id)))
        .bearer_auth(&acc.key)
        .header("Idempotency-Key", "order-paid-1")
        .json(&json!({"type": "initial", "tariff": "business-12", "seats": 2}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.expect("json");
    let inv = &order["invoice"];
    let pay = || async {
        let r = w
            .app
            .http
            .post(w.app.url(&format!(
                "/api/v1/accounts/{}/invoices/{}/payments",
                acc.id,
                str_of(inv, "id")
            )))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "pay-paid-1")
            .json(&json!({"method": "bank_transfer", "amount": inv["amount"]}))
            .send()
            .await
            .expect("payment");
        assert_eq!(r.status(), 201);
    };
    pay().await;
    // The client's retry of the same registration: still one event.
    pay().await;
    let got = wait_for("order.paid", || async {
        let st = receiver.lock();
        (!st.received.is_empty()).then(|| st.received.clone())
    })
    .await;
    assert!(got[0].signature_ok);
    assert_eq!(got[0].body["type"], "order.paid");
    assert_eq!(got[0].body["data"]["payment"]["invoice_id"], inv["id"]);
    let delivered = wait_for("delivered", || async {
        let d = w.outbox(&acc, "delivered").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(delivered.len(), 1, "one message for one payment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_meeting_ends_with_its_summary_as_a_note_and_a_task_at_amocrm() {
    let w = World::spawn().await;
    let acc = w.account("amo-deal").await;
    let amo = AmoStandIn::start(REFRESH).await;
    w.put_crm(
        &acc,
        json!({"kind": "amocrm", "frame_origin": "https://romashka.amocrm.ru",
            "settings": {"base_url": amo.base_url, "client_id": AMO_CLIENT_ID,
                "client_secret": AMO_CLIENT_SECRET, "redirect_uri": AMO_REDIRECT_URI,
                "access_token": "expired-access-token", "refresh_token": REFRESH}}),
    )
    .await;
    // A meeting the account's rep hosts, for the amoCRM lead (the deal card and the inbound
    // endpoint link meetings to deals the same way).
    let (s, m) = w
        .req(
            Method::POST,
            "/api/v1/meetings",
            Some(&acc.key),
            Some(json!({"title": "Pricing call", "host_user_id": "rep-1"})),
        )
        .await;
    assert_eq!(s, 201, "meeting: {m}");
    let meeting = str_of(&m, "id");
    sqlx::query("UPDATE meetings SET deal_id = $1 WHERE id = $2")
        .bind(AMO_LEAD_ID.to_string())
        .bind(&meeting)
        .execute(w.state().store.pool())
        .await
        .expect("link the meeting to the deal");
    let (s, t) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{meeting}/join"),
            None,
            Some(json!({"display_name": "Rep", "host_key": str_of(&m, "host_key")})),
        )
        .await;
    assert_eq!(s, 200, "host token: {t}");
    let (mut ws, _) = w.app.join(&str_of(&t, "token")).await;
    // The hub handles one socket's messages in order: the chat is stored before the end.
    ws.send(json!({"type": "chat", "text": "proposal by Friday"}))
        .await;
    ws.send(json!({"type": "host", "action": "end"})).await;
    assert_eq!(ws.expect_close().await.code, 4001);

    wait_for(
        "the summary note and the follow-up task at amoCRM",
        || async {
            let st = amo.lock();
            (!st.notes.is_empty() && !st.tasks.is_empty()).then_some(())
        },
    )
    .await;
    let st = amo.lock();
    assert_eq!(st.notes.len(), 1, "one note per meeting");
    assert_eq!(st.notes[0].0, AMO_LEAD_ID);
    let note = st.notes[0].1.to_string();
    assert!(
        note.contains("Pricing call"),
        "the note is the summary: {note}"
    );
    assert!(note.contains("proposal by Friday"), "with the chat: {note}");
    let task = st.tasks[0].to_string();
    assert!(
        task.contains("Pricing call") && task.contains(&AMO_LEAD_ID.to_string()),
        "{task}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tariffs_meeting_length_warns_everyone_then_ends_the_meeting() {
    // The tariff allows 240 minutes; a "minute" lasts 20 ms here, so the meeting may run 4.8 s and
    // the five-minute warning comes 100 ms before the end.
    let w =
        World::spawn_with(|cfg| cfg.meeting_minute = std::time::Duration::from_millis(20)).await;
    let acc = w.account("length-1").await;
    let (s, m) = w
        .req(
            Method::POST,
            "/api/v1/meetings",
            Some(&acc.key),
            Some(json!({"title": "Long call", "host_user_id": "rep-1"})),
        )
        .await;
    assert_eq!(s, 201, "meeting: {m}");
    let meeting = str_of(&m, "id");
    let (s, t) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{meeting}/join"),
            None,
            Some(json!({"display_name": "Rep", "host_key": str_of(&m, "host_key")})),
        )
        .await;
    assert_eq!(s, 200, "host token: {t}");
    let (mut ws, _) = w.app.join(&str_of(&t, "token")).await;
    let warning = ws.expect_type("meeting_ending").await;
    assert_eq!(warning["minutes_left"], 5);
    assert!(warning["ends_at"].as_str().is_some_and(|s| !s.is_empty()));
    let closed = ws.expect_close().await;
    assert_eq!(closed.code, 4001, "{closed:?}");
    assert!(closed.reason.contains("time limit"), "{closed:?}");
    let (s, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/meetings/{meeting}"),
            Some(&str_of(&m, "host_key")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !v["ended_at"].is_null(),
        "the meeting is recorded as ended: {v}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets at rest

/// amoCRM at the stand-in, with an expired access token (the first call refreshes).
fn amo_crm(amo: &AmoStandIn) -> Value {
    json!({"kind": "amocrm",
        "settings": {"base_url": amo.base_url, "client_id": AMO_CLIENT_ID,
            "client_secret": AMO_CLIENT_SECRET, "redirect_uri": AMO_REDIRECT_URI,
            "access_token": "expired-access-token", "refresh_token": REFRESH}})
}

/// Every text value of every table in the database file, read with a connection of its own, as
/// anyone holding the file could: (table.column, value).
async fn stored_text(db: &std::path::Path) -> Vec<(String, String)> {
    use sqlx::{Column, Row};
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .expect("tables");
    let mut out = Vec::new();
    for t in tables {
        let rows = sqlx::query(&format!("SELECT * FROM \"{t}\""))
            .fetch_all(&pool)
            .await
            .expect("rows");
        for r in &rows {
            for (i, c) in r.columns().iter().enumerate() {
                // Text columns only: numbers and blobs do not decode as text.
                if let Ok(Some(v)) = r.try_get::<Option<String>, _>(i) {
                    out.push((format!("{t}.{}", c.name()), v));
                }
            }
        }
    }
    pool.close().await;
    out
}

/// Asserts no stored value contains any of `secrets`, and that the secret columns hold `v1:`
/// values only.
async fn assert_sealed(db: &std::path::Path, secrets: &[&str]) {
    let rows = stored_text(db).await;
    assert!(rows.iter().any(|(c, _)| c == "crm_connections.secrets"));
    for (column, value) in &rows {
        for secret in secrets {
            assert!(
                !value.contains(secret),
                "{column} holds a secret in plain text: {value}"
            );
        }
    }
    for column in [
        "crm_connections.secrets",
        "crm_connections.amo_access_token",
        "crm_connections.amo_refresh_token",
        "webhook_endpoints.secret",
        "crm_card_settings.secret",
    ] {
        let values: Vec<&String> = rows
            .iter()
            .filter(|(c, _)| c == column)
            .map(|(_, v)| v)
            .collect();
        assert!(!values.is_empty(), "{column}: nothing stored");
        assert!(
            values.iter().all(|v| v.starts_with("v1:")),
            "{column}: {values:?}"
        );
    }
}

/// Whether the database's files (the file itself, its write-ahead log) hold `needle` anywhere,
/// free space included.
fn files_contain(db: &std::path::Path, needle: &str) -> bool {
    let dir = db.parent().expect("dir");
    let name = db.file_name().expect("name").to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == name || n == format!("{name}-wal")
        })
        .any(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
}

/// A signed deal-card launch for `acc` with `secret`: the refusal code of the page. CRM user 7
/// is linked to nobody, so a good signature gets as far as `crm_user_not_linked`.
async fn card_launch_code(w: &World, acc: &Account, secret: &str) -> String {
    let exp = Utc::now().timestamp() + 600;
    let text = parley_signaling::card::canonical(&acc.id, "42", "7", exp);
    let sig = parley_signaling::card::sign(secret, &text);
    let r = w
        .app
        .http
        .get(w.app.url(&format!("/crm/card?{text}&sig={sig}")))
        .send()
        .await
        .expect("launch");
    let body = r.text().await.expect("body");
    let start = body.find("data-code=\"").expect("a refusal page") + "data-code=\"".len();
    body[start..].chars().take_while(|c| *c != '"').collect()
}

/// What each stored secret is used for, once more: an amoCRM note (the tokens, the client
/// secret on a refresh), a signed customer webhook (the endpoint secret), an inbound signed
/// request (the generic CRM's secret) and a card launch (the card secret).
struct SecretsInUse {
    amo: AmoStandIn,
    amo_acc: Account,
    amo_connection: String,
    receiver: WebhookReceiver,
    card_secret: String,
    generic_acc: Account,
}

impl SecretsInUse {
    async fn exercise(&self, w: &World, round: usize) {
        w.state()
            .outbox
            .enqueue(note_message(
                &self.amo_connection,
                &AMO_LEAD_ID.to_string(),
                &format!("Note {round}"),
                &format!("secrets-{round}:note"),
            ))
            .await
            .expect("enqueue");
        wait_for("the note at amoCRM", || async {
            (self.amo.lock().notes.len() == round).then_some(())
        })
        .await;
        let n = parley_signaling::integrations::emit_event(
            w.state(),
            &self.amo_acc.id,
            EventType::OrderPaid,
            &format!("order-{round}"),
            json!({"order_id": format!("order-{round}")}),
        )
        .await
        .expect("emit");
        assert_eq!(n, 1);
        let got = wait_for("the customer webhook", || async {
            let st = self.receiver.lock();
            (st.received.len() == round).then(|| st.received.clone())
        })
        .await;
        assert!(got.iter().all(|r| r.signature_ok), "signed with the secret");
        let body = serde_json::to_vec(&json!({
            "deal_id": format!("D-{round}"), "host_user_id": "rep-1"
        }))
        .expect("json");
        let (s, v) = signed_post(
            w,
            &self.generic_acc.id,
            Utc::now().timestamp(),
            &body,
            INBOUND_SECRET,
        )
        .await;
        assert_eq!(s, 201, "inbound: {v}");
        assert_eq!(
            card_launch_code(w, &self.amo_acc, &self.card_secret).await,
            "crm_user_not_linked",
            "the card secret verifies the launch"
        );
        assert_eq!(
            card_launch_code(w, &self.amo_acc, "forged-card-secret").await,
            "invalid_signature"
        );
    }

    /// Every secret the server holds, in plain text.
    fn plain(&self) -> Vec<String> {
        let endpoint = self
            .receiver
            .lock()
            .secret
            .clone()
            .expect("endpoint secret");
        let mut all: Vec<String> = [
            AMO_CLIENT_SECRET,
            REFRESH,
            "expired-access-token",
            INBOUND_SECRET,
        ]
        .map(str::to_owned)
        .to_vec();
        all.extend([endpoint, self.card_secret.clone()]);
        // The pairs the stand-in issued on refreshes.
        let generation = self.amo.lock().generation;
        for g in 1..=generation {
            all.extend([format!("access-{g}"), format!("refresh-{g}")]);
        }
        all
    }
}

async fn secrets_in_use(w: &World, tag: &str) -> SecretsInUse {
    let amo_acc = w.account(&format!("{tag}-amo")).await;
    let amo = AmoStandIn::start(REFRESH).await;
    let v = w.put_crm(&amo_acc, amo_crm(&amo)).await;
    // No frame_origin given: amoCRM's own address frames the deal card.
    assert_eq!(v["frame_origin"], amo.base_url, "{v}");
    let (s, card) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/card-secret", amo_acc.id),
            Some(&amo_acc.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "card secret: {card}");
    assert_eq!(card["crm_origin"], amo.base_url);
    let (receiver, _) = w.receiver(&amo_acc, &["order.paid"]).await;
    let generic_acc = w.account(&format!("{tag}-generic")).await;
    w.put_crm(
        &generic_acc,
        json!({"kind": "webhook",
            "settings": {"url": "https://crm.example/parley", "secret": INBOUND_SECRET}}),
    )
    .await;
    SecretsInUse {
        amo,
        amo_connection: str_of(&v, "connection_id"),
        amo_acc,
        receiver,
        card_secret: str_of(&card, "secret"),
        generic_acc,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_secrets_are_stored_encrypted_and_work_across_restarts_with_their_key_only() {
    // The key file beside the database and the database file itself are SQLite's; on
    // PostgreSQL the key must be configured (postgres_store.rs runs with one).
    if parley_tests::postgres::suite_url().is_some() {
        eprintln!(
            "crm_secrets_are_stored_encrypted_and_work_across_restarts_with_their_key_only: SQLite only"
        );
        return;
    }
    let mut w = World::spawn().await;
    let used = secrets_in_use(&w, "sealed").await;
    // A Bitrix24 connection too: its webhook URL's path is the credential.
    let b24_acc = w.account("sealed-b24").await;
    let b24 = BitrixStandIn::start().await;
    let v = w
        .put_crm(
            &b24_acc,
            json!({"kind": "bitrix24", "settings": {"webhook_url": b24.webhook_url()}}),
        )
        .await;
    assert_eq!(v["frame_origin"], b24.origin, "the portal frames the card");
    w.state()
        .outbox
        .enqueue(note_message(
            &str_of(&v, "connection_id"),
            &BITRIX_DEAL_ID.to_string(),
            "Call summary",
            "sealed-b24:note",
        ))
        .await
        .expect("enqueue");
    wait_for("the comment at Bitrix24", || async {
        (!b24.lock().comments.is_empty()).then_some(())
    })
    .await;
    used.exercise(&w, 1).await;
    assert_eq!(
        used.amo.lock().refreshes,
        1,
        "the expired token was refreshed"
    );

    let db = w.app.database_path();
    let key_file = db.with_file_name("parley.db.secrets-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("a key file beside the database")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    w.app.shutdown().await;
    let mut plain = used.plain();
    plain.push(BITRIX_CODE.to_owned());
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    assert_sealed(&db, &plain).await;
    for secret in &plain {
        assert!(!files_contain(&db, secret), "{secret} in the database file");
    }

    // The same key file after a restart: everything still works, and the refreshed tokens
    // were stored readably (amoCRM would refuse the spent ones: no second refresh).
    w.restart_with(|_| {}).await.expect("restart");
    used.exercise(&w, 2).await;
    assert_eq!(used.amo.lock().refreshes, 1);

    // Another key cannot open them: the server refuses to start, and says why without a secret.
    let other = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let e = w
        .restart_with(|cfg| {
            cfg.secrets_key = Some(parley_signaling::configuration::Secret::new(other));
        })
        .await
        .expect_err("a wrong key must stop the start");
    let text = format!("{e:#}");
    assert!(text.contains("cannot be decrypted"), "{text}");
    assert!(text.contains("PARLEY_SECRETS_KEY"), "{text}");
    for secret in &plain {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!text.contains(other), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stored_in_plain_text_by_an_earlier_version_are_encrypted_at_start() {
    // The key file beside the database and the database file itself are SQLite's; on
    // PostgreSQL the key must be configured (postgres_store.rs runs with one).
    if parley_tests::postgres::suite_url().is_some() {
        eprintln!(
            "secrets_stored_in_plain_text_by_an_earlier_version_are_encrypted_at_start: SQLite only"
        );
        return;
    }
    let mut w = World::spawn().await;
    let used = secrets_in_use(&w, "legacy").await;
    let endpoint_secret = used.receiver.lock().secret.clone().expect("secret");
    let db = w.app.database_path();
    w.app.shutdown().await;

    // Write the secrets back in plain text, as the version before encryption stored them.
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
        let statements: [(&str, Vec<String>); 4] = [
            (
                "UPDATE crm_connections SET secrets = ?, amo_access_token = ?, \
                 amo_refresh_token = ? WHERE id = ?",
                vec![
                    json!({"client_secret": AMO_CLIENT_SECRET}).to_string(),
                    "expired-access-token".into(),
                    REFRESH.into(),
                    used.amo_connection.clone(),
                ],
            ),
            (
                "UPDATE crm_connections SET secrets = ? WHERE account_id = ? \
                 AND deleted_at IS NULL",
                vec![
                    json!({"webhook_secret": INBOUND_SECRET}).to_string(),
                    used.generic_acc.id.clone(),
                ],
            ),
            (
                "UPDATE webhook_endpoints SET secret = ? WHERE account_id = ?",
                vec![endpoint_secret.clone(), used.amo_acc.id.clone()],
            ),
            (
                "UPDATE crm_card_settings SET secret = ? WHERE account_id = ?",
                vec![used.card_secret.clone(), used.amo_acc.id.clone()],
            ),
        ];
        for (sql, binds) in statements {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            assert_eq!(q.execute(&pool).await.expect("update").rows_affected(), 1);
        }
        pool.close().await;
    }
    assert!(
        files_contain(&db, AMO_CLIENT_SECRET),
        "the plain text is there"
    );

    w.restart_with(|_| {}).await.expect("start");
    w.app.shutdown().await;
    let plain = used.plain();
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    assert_sealed(&db, &plain).await;
    for secret in &plain {
        assert!(
            !files_contain(&db, secret),
            "{secret} left in the database file"
        );
    }
    let sealed = stored_text(&db).await;

    // Sealed once: another start opens them and changes nothing; every secret works.
    w.restart_with(|_| {}).await.expect("restart");
    used.exercise(&w, 1).await;
    assert_eq!(used.amo.lock().refreshes, 1);
    let card_column = |rows: &[(String, String)]| {
        rows.iter()
            .filter(|(c, _)| c == "crm_card_settings.secret" || c == "webhook_endpoints.secret")
            .cloned()
            .collect::<Vec<_>>()
    };
    w.app.shutdown().await;
    assert_eq!(
        card_column(&stored_text(&db).await),
        card_column(&sealed),
        "not sealed twice"
    );
}
