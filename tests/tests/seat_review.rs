//! The monthly inactive-seat review (licensing spec 6.2), black-box: the report lists the seats
//! unused for 30 days or more on the licensing clock's date; one call reclaims exactly those
//! still inactive (a user who hosted since the report keeps their seat and is reported as
//! skipped), each reclaim audited; who may do either; and the monthly job, which sends the review
//! once per account and month as a signed `seats.review` webhook and an email to the account's
//! admins through a real SMTP server on loopback.
//!
//! Time moves by the server's licensing clock (a test hook), never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender};
use parley_tests::crm_standins::WebhookReceiver;
use parley_tests::smtp::SmtpSink;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

enum Mail {
    Memory(MemoryEmailSender),
    Smtp(Box<SmtpSink>),
}

struct World {
    app: TestApp,
    clock: LicensingClock,
    mail: Mail,
}

struct Account {
    id: String,
    key: String,
    lot: String,
}

struct User {
    id: String,
    token: String,
}

impl World {
    /// A server on 2026-03-01 (Moscow) mailing to memory.
    async fn spawn() -> World {
        let mail = MemoryEmailSender::new();
        let m = mail.clone();
        Self::spawn_with(Mail::Memory(mail), move |cfg| {
            cfg.email_sender = Some(EmailSenderHook(Arc::new(m)));
        })
        .await
    }

    /// A server mailing through aiosmtpd, its review job polling often; `None` where aiosmtpd
    /// is missing outside CI (the test stops, as in users.rs).
    async fn spawn_smtp() -> Option<World> {
        let smtp = SmtpSink::start().await?;
        let port = smtp.port;
        Some(
            Self::spawn_with(Mail::Smtp(Box::new(smtp)), move |cfg| {
                cfg.smtp_url = Some(parley_signaling::configuration::Secret::new(format!(
                    "smtp://127.0.0.1:{port}"
                )));
                cfg.smtp_from = "Parley <no-reply@parley.test>".into();
                cfg.license_events_interval = Duration::from_millis(100);
            })
            .await,
        )
    }

    async fn spawn_with(
        mail: Mail,
        tweak: impl FnOnce(&mut parley_signaling::Config) + Send + 'static,
    ) -> World {
        let clock = LicensingClock::new(day("2026-03-01"));
        let c = clock.clone();
        let app = TestApp::spawn_with(move |cfg| {
            cfg.licensing_clock = Some(c);
            cfg.outbox_base_delay = Duration::from_millis(20);
            cfg.outbox_max_delay = Duration::from_millis(100);
            tweak(cfg);
        })
        .await;
        let w = World { app, clock, mail };
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

    async fn req(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.app.call(method, path, bearer, body).await
    }

    /// An account with a paid lot of `seats` seats.
    async fn account(&self, crm_id: &str, seats: i64) -> Account {
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
            .json(&json!({"type": "initial", "tariff": "business-12", "seats": seats}))
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
        Account {
            id,
            key,
            lot: str_of(&p, "lot_id"),
        }
    }

    /// The invitation link's token in the last mail to `email`, once it has arrived.
    async fn invitation_token(&self, email: &str) -> String {
        wait_for("the invitation mail", || async {
            let texts: Vec<String> = match &self.mail {
                Mail::Memory(m) => m.sent_to(email).into_iter().map(|m| m.text).collect(),
                Mail::Smtp(s) => s.messages_to(email),
            };
            texts.iter().rev().find_map(|t| token_in(t))
        })
        .await
    }

    /// Invites (by `bearer`) and accepts: a signed-in user.
    async fn user(&self, acc: &Account, bearer: &str, email: &str, name: &str, role: &str) -> User {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(bearer),
                Some(json!({"email": email, "role": role, "display_name": name})),
            )
            .await;
        assert_eq!(s, 201, "invite {email}: {v}");
        let id = str_of(&v["user"], "id");
        let token = self.invitation_token(email).await;
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 200, "accept: {v}");
        User {
            id,
            token: str_of(&v, "token"),
        }
    }

    async fn give_seat(&self, acc: &Account, bearer: &str, user: &User) {
        let (s, v) = self
            .req(
                Method::PUT,
                &format!("/api/v1/accounts/{}/users/{}/seat", acc.id, user.id),
                Some(bearer),
                Some(json!({"lot_id": acc.lot})),
            )
            .await;
        assert_eq!(s, 201, "seat: {v}");
    }

    /// The user (by their session) creates a meeting: they host, which is seat activity.
    async fn host(&self, user: &User) -> (u16, Value) {
        self.req(
            Method::POST,
            "/api/v1/meetings",
            Some(&user.token),
            Some(json!({"title": "Demo with the client"})),
        )
        .await
    }

    async fn review(&self, acc: &Account, bearer: Option<&str>) -> (u16, Value) {
        self.app
            .get_json(&format!("/api/v1/accounts/{}/seat-review", acc.id), bearer)
            .await
    }

    async fn reclaim(&self, acc: &Account, bearer: Option<&str>, body: Value) -> (u16, Value) {
        self.req(
            Method::POST,
            &format!("/api/v1/accounts/{}/seat-review/reclaim", acc.id),
            bearer,
            Some(body),
        )
        .await
    }

    fn smtp(&self) -> &SmtpSink {
        match &self.mail {
            Mail::Smtp(s) => s,
            Mail::Memory(_) => panic!("this world mails to memory"),
        }
    }

    /// The account's outbox messages in `status`.
    async fn outbox(&self, acc: &Account, status: &str) -> Vec<Value> {
        let (s, v) = self
            .app
            .get_json(
                &format!("/api/v1/accounts/{}/outbox?status={status}", acc.id),
                Some(&acc.key),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }
}

/// `inv_` + 43 alphanumerics after `#token=`.
fn token_in(text: &str) -> Option<String> {
    let start = text.find("#token=inv_")? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == 4 + 43).then_some(token)
}

fn assert_code(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(body["error"]["code"], want_code, "code; body {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body {body}"
    );
}

fn listed(review: &Value) -> Vec<String> {
    let mut ids: Vec<String> = review["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| str_of(s, "user_id"))
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_lists_idle_seats_and_reclaim_frees_exactly_those_still_idle() {
    let mut w = World::spawn().await;
    let a = w.account("SR-1", 3).await;
    let b = w.account("SR-2", 1).await;
    let admin = w
        .user(&a, &a.key, "ann@a.example", "Ann Admin", "account_admin")
        .await;
    let busy = w
        .user(&a, &admin.token, "bob@a.example", "Bob Busy", "member")
        .await;
    let idle = w
        .user(&a, &admin.token, "ivan@a.example", "Ivan Idle", "member")
        .await;
    let late = w
        .user(&a, &admin.token, "lena@a.example", "Lena Late", "member")
        .await;
    let other_admin = w
        .user(&b, &b.key, "boss@b.example", "Boss B", "account_admin")
        .await;
    for u in [&busy, &idle, &late] {
        w.give_seat(&a, &admin.token, u).await;
    }

    // Bob hosts on the 25th; nobody else does.
    w.clock.set(day("2026-03-25"));
    let (s, v) = w.host(&busy).await;
    assert_eq!(s, 201, "{v}");
    w.clock.set(day("2026-03-30"));
    let (s, v) = w.review(&a, Some(&admin.token)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["as_of"], "2026-03-30");
    assert!(listed(&v).is_empty(), "29 days idle is not yet 30: {v}");

    w.clock.set(day("2026-04-01"));
    let (s, v) = w.review(&a, Some(&admin.token)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["account_id"], a.id);
    assert_eq!(v["inactive_days"], 30);
    assert_eq!(listed(&v), sorted(&[&idle.id, &late.id]), "{v}");
    let ivan = v["seats"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["user_id"] == idle.id.as_str()))
        .expect("Ivan listed");
    assert_eq!(
        ivan,
        &json!({"user_id": idle.id, "display_name": "Ivan Idle", "email": "ivan@a.example",
            "role": "member", "license_id": a.lot, "last_active_on": null,
            "assigned_on": "2026-03-01", "days_inactive": 31})
    );

    // Who may read and reclaim: the account's admin, its key and the operator; not a member
    // (403), not another account's admin (404), not nobody (401).
    for bearer in [a.key.as_str(), ADMIN_TOKEN] {
        let (s, v) = w.review(&a, Some(bearer)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(listed(&v).len(), 2);
    }
    let all = json!({"all": true});
    for (bearer, status, code) in [
        (Some(busy.token.as_str()), 403, "forbidden"),
        (Some(other_admin.token.as_str()), 404, "unknown_account"),
        (Some(b.key.as_str()), 404, "unknown_account"),
        (None, 401, "unauthorized"),
    ] {
        let (s, v) = w.review(&a, bearer).await;
        assert_code(s, &v, status, code);
        let (s, v) = w.reclaim(&a, bearer, all.clone()).await;
        assert_code(s, &v, status, code);
    }

    // Lena hosts after the report was read: she keeps her seat.
    let (s, v) = w.host(&late).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = w
        .reclaim(
            &a,
            Some(&admin.token),
            json!({"user_ids": [idle.id, late.id, busy.id, "nobody", idle.id]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["reclaimed"],
        json!([{"user_id": idle.id, "license_id": a.lot}])
    );
    assert_eq!(
        v["skipped"],
        json!([
            {"user_id": late.id, "reason": "active"},
            {"user_id": busy.id, "reason": "active"},
            {"user_id": "nobody", "reason": "no_seat"}
        ])
    );

    // Ivan can no longer host, and is told why; the others still can.
    let (s, v) = w.host(&idle).await;
    assert_code(s, &v, 403, "no_seat");
    let (s, v) = w.host(&busy).await;
    assert_eq!(s, 201, "{v}");
    let (s, users) = w
        .app
        .get_json(&format!("/api/v1/accounts/{}/users", a.id), Some(&a.key))
        .await;
    assert_eq!(s, 200);
    let seat_of = |id: &str| {
        users
            .as_array()
            .and_then(|u| u.iter().find(|u| u["user"]["id"] == id))
            .map(|u| u["seat_lot_id"].clone())
            .expect("listed")
    };
    assert_eq!(seat_of(&idle.id), Value::Null);
    assert_eq!(seat_of(&late.id), json!(a.lot));
    assert_eq!(seat_of(&busy.id), json!(a.lot));
    let (_, v) = w.review(&a, Some(&admin.token)).await;
    assert!(listed(&v).is_empty(), "{v}");

    // The reclaim is in the audit log, by the admin.
    let (s, audit) = w
        .app
        .get_json(&format!("/api/v1/accounts/{}/audit", a.id), Some(&a.key))
        .await;
    assert_eq!(s, 200, "{audit}");
    let reclaims: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "seat.reclaim")
        .collect();
    assert_eq!(reclaims.len(), 1, "{audit}");
    assert_eq!(reclaims[0]["target_id"], idle.id.as_str());
    assert_eq!(reclaims[0]["actor_kind"], "user");
    assert_eq!(reclaims[0]["actor_id"], admin.id.as_str());

    // Bad selections.
    for body in [
        json!({}),
        json!({"user_ids": []}),
        json!({"all": false}),
        json!({"all": true, "user_ids": [busy.id]}),
    ] {
        let (s, v) = w.reclaim(&a, Some(&admin.token), body.clone()).await;
        assert_code(s, &v, 422, "invalid_selection");
    }
    let (s, v) = w
        .reclaim(
            &a,
            Some(&admin.token),
            json!({"user_ids": ["x".repeat(201)]}),
        )
        .await;
    assert_code(s, &v, 422, "invalid_user_id");

    // Five weeks on, both remaining seats are idle: the operator reclaims them all at once.
    w.clock.set(day("2026-05-10"));
    let (_, v) = w.review(&a, Some(&admin.token)).await;
    assert_eq!(listed(&v), sorted(&[&busy.id, &late.id]), "{v}");
    let (s, v) = w.reclaim(&a, Some(ADMIN_TOKEN), json!({"all": true})).await;
    assert_eq!(s, 200, "{v}");
    let mut reclaimed: Vec<String> = v["reclaimed"]
        .as_array()
        .expect("reclaimed")
        .iter()
        .map(|r| str_of(r, "user_id"))
        .collect();
    reclaimed.sort();
    assert_eq!(reclaimed, sorted(&[&busy.id, &late.id]));
    assert_eq!(v["skipped"], json!([]));
    let (s, v) = w.host(&late).await;
    assert_code(s, &v, 403, "no_seat");
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_review_goes_out_once_as_a_webhook_and_an_email_to_the_admins() {
    let Some(mut w) = World::spawn_smtp().await else {
        return;
    };
    let a = w.account("SR-job", 2).await;
    let admin = w
        .user(&a, &a.key, "ann@job.example", "Ann Admin", "account_admin")
        .await;
    let idle = w
        .user(&a, &a.key, "ivan@job.example", "Ivan Idle", "member")
        .await;
    w.give_seat(&a, &admin.token, &idle).await;
    let receiver = WebhookReceiver::start("unknown-until-registered").await;
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/webhooks", a.id),
            Some(&a.key),
            Some(json!({"url": receiver.url, "events": ["seats.review"]})),
        )
        .await;
    assert_eq!(s, 201, "webhook: {v}");
    receiver.lock().secret = Some(str_of(&v, "secret"));

    // A month later the seat has been idle 31 days: the job (polling every 100 ms) sends the
    // review.
    w.clock.set(day("2026-04-01"));
    let hook = wait_for("the seats.review webhook", || async {
        receiver.lock().received.first().cloned()
    })
    .await;
    assert!(hook.signature_ok, "signed with the endpoint's secret");
    assert!(hook.idempotency_key.is_some());
    assert_eq!(hook.body["type"], "seats.review");
    assert_eq!(hook.body["account_id"], a.id);
    let data = &hook.body["data"];
    assert_eq!(data["month"], "2026-04");
    assert_eq!(data["inactive_days"], 30);
    assert!(
        data["review_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/admin/#/seat-review")),
        "{data}"
    );
    assert_eq!(
        data["seats"],
        json!([{"user_id": idle.id, "license_id": a.lot, "last_active_on": null}])
    );
    let smtp = w.smtp();
    let review_mails = |to: &str| -> Vec<String> {
        smtp.messages_to(to)
            .into_iter()
            .filter(|m| m.contains("Subject: Parley seats to review"))
            .collect()
    };
    let mail = wait_for("the review email to the admin", || async {
        review_mails("ann@job.example").pop()
    })
    .await;
    assert!(mail.contains("/admin/#/seat-review"), "{mail}");
    assert!(mail.contains("Ivan Idle"), "{mail}");
    assert!(review_mails("ivan@job.example").is_empty(), "admins only");

    // Running the job again this month sends nothing more: no second message exists.
    let state = w.app.server.as_ref().expect("running").state().clone();
    let seat_review_messages = || async {
        let mut n = (0, 0);
        for status in ["pending", "delivered", "failed"] {
            for m in w.outbox(&a, status).await {
                if m["kind"] == "customer_webhook" && m["payload"]["type"] == "seats.review" {
                    n.0 += 1;
                }
                if m["kind"] == "email" && m["payload"]["purpose"] == "seat_review" {
                    n.1 += 1;
                }
            }
        }
        n
    };
    for today in ["2026-04-01", "2026-04-01", "2026-04-30"] {
        w.clock.set(day(today));
        parley_signaling::integrations::seat_review::run_once(&state)
            .await
            .expect("the job runs");
        assert_eq!(seat_review_messages().await, (1, 1), "{today}");
    }
    assert_eq!(receiver.lock().received.len(), 1);
    assert_eq!(review_mails("ann@job.example").len(), 1);

    // Next month the seat is still idle: a new review.
    w.clock.set(day("2026-05-01"));
    let second = wait_for("May's review", || async {
        receiver.lock().received.get(1).cloned()
    })
    .await;
    assert_eq!(second.body["data"]["month"], "2026-05");
    wait_for("May's email", || async {
        (review_mails("ann@job.example").len() == 2).then_some(())
    })
    .await;
    drop(state);
    w.app.shutdown().await;
    if let Mail::Smtp(s) = w.mail {
        s.stop().await;
    }
}
