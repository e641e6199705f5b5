//! After the meeting and privacy, black-box: the summary made when a meeting ends (host and two
//! guests over the WebSocket, chat, join and leave times), who may read it, the results emailed
//! to invited contacts when the results rule allows (in-memory sender, and once through a real
//! SMTP server on loopback), the audit log, and erasure of a person's data.
//!
//! Talk-time numbers need the media plane's audio levels; their bookkeeping and the ratio are
//! unit tests in `parley_signaling::summaries`. Nothing here sleeps: conditions are awaited with
//! deadlines.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender};
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

struct World {
    app: TestApp,
    mail: MemoryEmailSender,
}

struct Account {
    id: String,
    key: String,
    lot: String,
}

impl World {
    async fn spawn() -> World {
        let mail = MemoryEmailSender::new();
        let m = mail.clone();
        let app = TestApp::spawn_with(move |cfg| {
            cfg.licensing_clock = Some(LicensingClock::new(
                NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
            ));
            cfg.email_sender = Some(EmailSenderHook(Arc::new(m)));
        })
        .await;
        World { app, mail }
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

    /// A tariff whose seats do (or do not) include results to recipients (agreement 1.12).
    async fn tariff(&self, code: &str, results: bool) {
        let (s, v) = self
            .req(
                Method::PUT,
                &format!("/api/v1/tariffs/{code}"),
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": code, "term_months": 12, "price_per_seat": "12000.00",
                    "features": {"max_participants": 10, "max_meeting_minutes": 240,
                        "recording": null, "sdk_embedding": false,
                        "results_to_recipients": results, "screen_share": true}
                })),
            )
            .await;
        assert_eq!(s, 200, "tariff: {v}");
    }

    /// An account with a paid lot of `tariff` and a seat for `host`.
    async fn account(&self, crm_id: &str, tariff: &str, host: &str) -> Account {
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
            .json(&json!({"type": "initial", "tariff": tariff, "seats": 2}))
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
        let lot = str_of(&p, "lot_id");
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{id}/lots/{lot}/seats"),
                Some(&key),
                Some(json!({"user_id": host})),
            )
            .await;
        assert_eq!(s, 201, "seat: {v}");
        Account { id, key, lot }
    }

    async fn create(&self, bearer: Option<&str>, body: Value) -> Value {
        let (s, v) = self
            .req(Method::POST, "/api/v1/meetings", bearer, Some(body))
            .await;
        assert_eq!(s, 201, "create: {v}");
        v
    }

    async fn end(&self, m: &Value) {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/meetings/{}/end", str_of(m, "id")),
                Some(&str_of(m, "host_key")),
                None,
            )
            .await;
        assert_eq!(s, 204, "end: {v}");
    }

    async fn summary(&self, m: &Value) -> Value {
        let path = format!("/api/v1/meetings/{}/summary", str_of(m, "id"));
        let key = str_of(m, "host_key");
        wait_for("the summary", || async {
            let (s, v) = self.app.get_json(&path, Some(&key)).await;
            (s == 200).then_some(v)
        })
        .await
    }

    /// Invites `email` with `role` and accepts: the user's session token.
    async fn user(&self, acc: &Account, email: &str, name: &str, role: &str) -> String {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": email, "role": role, "display_name": name})),
            )
            .await;
        assert_eq!(s, 201, "invite: {v}");
        // The mail goes out through the outbox: wait for it.
        let mail = wait_for("the invitation mail", || async {
            self.mail
                .sent_to(email)
                .into_iter()
                .rfind(|m| m.text.contains("#token=inv_"))
        })
        .await;
        let start = mail.text.find("#token=inv_").expect("link") + "#token=".len();
        let token: String = mail.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(s, 200, "accept: {v}");
        str_of(&v, "token")
    }

    async fn audit(&self, acc: &Account) -> Vec<Value> {
        let (s, v) = self
            .app
            .get_json(
                &format!("/api/v1/accounts/{}/audit", acc.id),
                Some(&acc.key),
            )
            .await;
        assert_eq!(s, 200, "audit: {v}");
        v["entries"].as_array().cloned().unwrap_or_default()
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| str_of(e, "action")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_over_the_websocket_makes_the_summary_and_mails_the_contacts() {
    let mut w = World::spawn().await;
    let m = w
        .create(
            None,
            json!({"title": "Demo for ACME", "send_results": true,
                "contacts": [{"name": "Anna Client", "email": "anna@example.com"}]}),
        )
        .await;
    let id = str_of(&m, "id");
    let host_key = str_of(&m, "host_key");
    let invite = str_of(&m, "invite");
    // One more contact added by the host; a guest may not.
    let contacts = format!("/api/v1/meetings/{id}/contacts");
    let more = json!({"contacts": [{"name": "Boris", "email": "Boris@Example.com"}]});
    let (s, v) = w
        .req(Method::POST, &contacts, Some(&invite), Some(more.clone()))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = w
        .req(Method::POST, &contacts, Some(&host_key), Some(more))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["added"], 1);
    assert_eq!(v["contacts"].as_array().map(Vec::len), Some(2));

    let meeting = parley_tests::Meeting {
        id: id.clone(),
        host_key: host_key.clone(),
        host_token: str_of(&m, "host_token"),
        invite: invite.clone(),
        raw: m.clone(),
    };
    let host_token = w.app.host_token(&meeting, "Ivan Rep").await;
    let g1_token = w.app.guest_token(&meeting, "Anna Client").await;
    let g2_token = w.app.guest_token(&meeting, "Carl").await;
    let (mut host, _) = w.app.join(&host_token).await;
    let (mut g1, _) = w.app.join(&g1_token).await;
    let (mut g2, _) = w.app.join(&g2_token).await;
    g1.send(json!({"type": "chat", "text": "Hello from Anna"}))
        .await;
    host.expect_where("chat", |v| v["text"] == "Hello from Anna")
        .await;
    g2.send(json!({"type": "leave"})).await;
    host.expect_type("participant_left").await;

    // Before the end there is no summary yet.
    let (s, v) = w
        .app
        .get_json(&format!("/api/v1/meetings/{id}/summary"), Some(&host_key))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("no_summary")));

    host.send(json!({"type": "host", "action": "end"})).await;
    let sum = w.summary(&m).await;
    assert_eq!(sum["title"], "Demo for ACME");
    let parts = sum["participants"].as_array().cloned().unwrap_or_default();
    assert_eq!(parts.len(), 3, "{sum}");
    let names: Vec<String> = parts.iter().map(|p| str_of(p, "name")).collect();
    assert_eq!(names, ["Ivan Rep", "Anna Client", "Carl"]);
    assert_eq!(parts[0]["side"], "rep");
    assert_eq!(parts[1]["side"], "client");
    let (start, end) = (time(&sum["started_at"]), time(&sum["ended_at"]));
    assert!(start <= end);
    for p in &parts {
        let (joined, left) = (time(&p["joined_at"]), time(&p["left_at"]));
        assert!(start <= joined && joined <= left && left <= end, "{p}");
        assert_eq!(p["talk_time_secs"], 0);
    }
    // Carl left before the end.
    assert!(time(&parts[2]["left_at"]) < end);
    assert_eq!(
        sum["duration_secs"].as_i64(),
        Some((end - start).num_seconds())
    );
    assert_eq!(sum["chat"][0]["from"], "Anna Client");
    assert_eq!(sum["chat"][0]["text"], "Hello from Anna");
    assert_eq!(sum["recording_url"], Value::Null);
    assert_eq!(sum["talk_ratio"]["rep_share"], Value::Null);
    assert_eq!(sum["emailed_to"], 2);

    // The results reach both contacts, text and HTML.
    for to in ["anna@example.com", "boris@example.com"] {
        let mail = wait_for("the summary email", || async {
            w.mail.sent_to(to).into_iter().next()
        })
        .await;
        assert_eq!(mail.subject, "Meeting summary: Demo for ACME");
        assert!(mail.text.contains("Hello from Anna"), "{}", mail.text);
        assert!(mail.html.as_deref().is_some_and(|h| h.contains("<table>")));
    }
    // Ending again (REST) changes nothing and sends nothing more.
    w.end(&m).await;
    assert_eq!(w.mail.sent().len(), 2);
    // Contacts cannot be added after the end.
    let (s, _) = w
        .req(
            Method::POST,
            &contacts,
            Some(&host_key),
            Some(json!({"contacts": [{"name": "Late", "email": "late@example.com"}]})),
        )
        .await;
    assert_eq!(s, 410);
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_read_a_summary_and_bad_contacts() {
    let mut w = World::spawn().await;
    w.tariff("results-12", true).await;
    let a = w.account("auth-a", "results-12", "rep-a").await;
    let b = w.account("auth-b", "results-12", "rep-b").await;
    let m = w
        .create(
            Some(&a.key),
            json!({"title": "Licensed", "host_user_id": "rep-a"}),
        )
        .await;
    let id = str_of(&m, "id");
    let meeting = parley_tests::Meeting {
        id: id.clone(),
        host_key: str_of(&m, "host_key"),
        host_token: str_of(&m, "host_token"),
        invite: str_of(&m, "invite"),
        raw: m.clone(),
    };
    let guest = w.app.guest_token(&meeting, "Guest").await;
    w.end(&m).await;
    w.summary(&m).await;
    let admin = w
        .user(&a, "admin@a.example", "Admin A", "account_admin")
        .await;
    let member = w.user(&a, "member@a.example", "Member A", "member").await;
    let admin_b = w
        .user(&b, "admin@b.example", "Admin B", "account_admin")
        .await;
    let path = format!("/api/v1/meetings/{id}/summary");
    for (bearer, want) in [
        (Some(admin.as_str()), 200),
        (Some(member.as_str()), 403),
        (Some(admin_b.as_str()), 404),
        (None, 401),
        (Some("garbage"), 401),
        (Some(meeting.invite.as_str()), 403),
        (Some(guest.as_str()), 403),
        (Some(b.key.as_str()), 404),
        (Some(a.key.as_str()), 200),
        (Some(meeting.host_token.as_str()), 200),
        (Some(ADMIN_TOKEN), 200),
    ] {
        let (s, v) = w.app.get_json(&path, bearer).await;
        assert_eq!(s, want, "{bearer:?}: {v}");
    }

    // Bad contacts at creation: refused before anything is created.
    let too_many: Vec<Value> = (0..51)
        .map(|i| json!({"name": format!("C{i}"), "email": format!("c{i}@example.com")}))
        .collect();
    for (contacts, code) in [
        (json!(too_many), "too_many_contacts"),
        (
            json!([{"name": "", "email": "x@example.com"}]),
            "invalid_contact_name",
        ),
        (
            json!([{"name": "X", "email": "not an email"}]),
            "invalid_contact_email",
        ),
    ] {
        let (s, v) = w
            .req(
                Method::POST,
                "/api/v1/meetings",
                None,
                Some(json!({"title": "Bad", "contacts": contacts})),
            )
            .await;
        assert_eq!((s, v["error"]["code"].as_str()), (422, Some(code)), "{v}");
    }
    // 50 in all: 49 at creation, then 2 more is one too many.
    let many: Vec<Value> = (0..49)
        .map(|i| json!({"name": format!("C{i}"), "email": format!("c{i}@example.com")}))
        .collect();
    let m = w
        .create(None, json!({"title": "Many", "contacts": many}))
        .await;
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{}/contacts", str_of(&m, "id")),
            Some(&str_of(&m, "host_key")),
            Some(json!({"contacts": [
                {"name": "Y", "email": "y@example.com"}, {"name": "Z", "email": "z@example.com"}]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("too_many_contacts"))
    );
    let _ = a.lot;
    // The audit log: the account's admin reads it; a member may not; another admin sees 404.
    let audit = format!("/api/v1/accounts/{}/audit", a.id);
    let (s, v) = w.app.get_json(&audit, Some(&admin)).await;
    assert_eq!(s, 200, "{v}");
    let acts: Vec<String> = v["entries"]
        .as_array()
        .map(|e| actions(e))
        .unwrap_or_default();
    for want in ["user.invite", "user.accept_invitation", "summary.read"] {
        assert!(acts.iter().any(|a| a == want), "{want} in {acts:?}");
    }
    assert_eq!(w.app.get_json(&audit, Some(&member)).await.0, 403);
    assert_eq!(w.app.get_json(&audit, Some(&admin_b)).await.0, 404);
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_go_out_only_when_the_rule_allows() {
    let mut w = World::spawn().await;
    w.tariff("results-12", true).await;
    w.tariff("noresults-12", false).await;
    let yes = w.account("rules-yes", "results-12", "rep-yes").await;
    let no = w.account("rules-no", "noresults-12", "rep-no").await;
    let contact = |email: &str| json!([{"name": "Client", "email": email}]);

    // Licensed without results to recipients: not even when the host asks.
    let forbidden = w
        .create(
            Some(&no.key),
            json!({"title": "No results", "host_user_id": "rep-no", "send_results": true,
                "contacts": contact("forbidden@example.com")}),
        )
        .await;
    // Unlicensed without an explicit request.
    let unasked = w
        .create(
            None,
            json!({"title": "Unasked", "contacts": contact("unasked@example.com")}),
        )
        .await;
    // Licensed with results to recipients, the host saying nothing: sent.
    let allowed = w
        .create(
            Some(&yes.key),
            json!({"title": "Results", "host_user_id": "rep-yes",
                "contacts": contact("allowed@example.com")}),
        )
        .await;
    // ... unless the host opted out.
    let opted_out = w
        .create(
            Some(&yes.key),
            json!({"title": "Opted out", "host_user_id": "rep-yes", "send_results": false,
                "contacts": contact("optout@example.com")}),
        )
        .await;
    for m in [&forbidden, &unasked, &allowed, &opted_out] {
        w.end(m).await;
    }
    for (m, want) in [
        (&forbidden, 0),
        (&unasked, 0),
        (&allowed, 1),
        (&opted_out, 0),
    ] {
        let s = w.summary(m).await;
        assert_eq!(s["emailed_to"], want, "{}: {s}", str_of(m, "title"));
    }
    wait_for("the allowed email", || async {
        w.mail.sent_to("allowed@example.com").into_iter().next()
    })
    .await;
    for to in [
        "forbidden@example.com",
        "unasked@example.com",
        "optout@example.com",
    ] {
        assert!(w.mail.sent_to(to).is_empty(), "{to}");
    }

    // The audit log of the allowed account: licensing and personal-data actions, from loopback.
    let (s, _) = w
        .app
        .get_json(
            &format!("/api/v1/meetings/{}/summary", str_of(&allowed, "id")),
            Some(&yes.key),
        )
        .await;
    assert_eq!(s, 200);
    let entries = w.audit(&yes).await;
    let acts = actions(&entries);
    for want in [
        "order.place",
        "payment.register",
        "seat.assign",
        "contact.add",
        "summary.read",
    ] {
        assert!(acts.iter().any(|a| a == want), "{want} in {acts:?}");
    }
    assert!(
        entries
            .iter()
            .all(|e| e["account_id"] == yes.id.as_str() && e["from_ip"] == "127.0.0.1"),
        "{entries:?}"
    );
    let payment = entries
        .iter()
        .find(|e| e["action"] == "payment.register")
        .cloned()
        .unwrap_or_default();
    assert_eq!(payment["actor_kind"], "operator");
    // Paging: one at a time, newest first, until the end.
    let (s, page) = w
        .app
        .get_json(
            &format!("/api/v1/accounts/{}/audit?limit=1", yes.id),
            Some(&yes.key),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["entries"][0]["action"], "summary.read");
    let cursor = str_of(&page, "next_cursor");
    let (_, page2) = w
        .app
        .get_json(
            &format!("/api/v1/accounts/{}/audit?limit=1&cursor={cursor}", yes.id),
            Some(&yes.key),
        )
        .await;
    assert_ne!(page2["entries"][0]["seq"], page["entries"][0]["seq"]);
    // Another account's key, nobody, a bad limit.
    let audit = format!("/api/v1/accounts/{}/audit", yes.id);
    assert_eq!(w.app.get_json(&audit, Some(&no.key)).await.0, 404);
    assert_eq!(w.app.get_json(&audit, None).await.0, 401);
    assert_eq!(
        w.app
            .get_json(&format!("{audit}?limit=0"), Some(&yes.key))
            .await
            .0,
        400
    );
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_anonymises_the_person_but_keeps_invoices() {
    let mut w = World::spawn().await;
    w.tariff("results-12", true).await;
    let a = w.account("erase-a", "results-12", "rep-e").await;
    let other = w.account("erase-b", "results-12", "rep-f").await;
    let m = w
        .create(
            Some(&a.key),
            json!({"title": "Erasable", "host_user_id": "rep-e",
                "contacts": [{"name": "Anna Client", "email": "anna@example.com"},
                    {"name": "Dora", "email": "dora@example.com"}]}),
        )
        .await;
    let meeting = parley_tests::Meeting {
        id: str_of(&m, "id"),
        host_key: str_of(&m, "host_key"),
        host_token: str_of(&m, "host_token"),
        invite: str_of(&m, "invite"),
        raw: m.clone(),
    };
    let (mut host, _) = w
        .app
        .join(&w.app.host_token(&meeting, "Ivan Rep").await)
        .await;
    let (mut anna, _) = w
        .app
        .join(&w.app.guest_token(&meeting, "Anna Client").await)
        .await;
    anna.send(json!({"type": "chat", "text": "Mail me at ANNA@example.com"}))
        .await;
    host.expect_type("chat").await;
    w.end(&m).await;
    let before = w.summary(&m).await;
    assert!(before.to_string().contains("Anna Client"));
    let (s, invoices) = w
        .app
        .get_json(&format!("/api/v1/accounts/{}/invoices", a.id), Some(&a.key))
        .await;
    assert_eq!(s, 200);
    // Anna is also a user of the account; the account's admin erases her.
    w.user(&a, "Anna@Example.com", "Anna Client", "member")
        .await;
    let admin = w.user(&a, "boss@a.example", "Boss", "account_admin").await;

    let path = format!("/api/v1/accounts/{}/erasure", a.id);
    let body = json!({"email": "anna@example.com"});
    // Who may erase: not nobody, not the API key, not another account.
    for (bearer, want) in [
        (None, 401),
        (Some(a.key.as_str()), 403),
        (Some(other.key.as_str()), 404),
    ] {
        let (s, v) = w.req(Method::POST, &path, bearer, Some(body.clone())).await;
        assert_eq!(s, want, "{bearer:?}: {v}");
    }
    let (s, v) = w
        .req(
            Method::POST,
            &path,
            Some(ADMIN_TOKEN),
            Some(json!({"email": "nope"})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, report) = w.req(Method::POST, &path, Some(&admin), Some(body)).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["users"], 1);
    assert_eq!(report["contacts"], 1);
    assert_eq!(report["participant_sessions"], 1);
    assert_eq!(report["chat_messages"], 1);
    assert_eq!(report["summaries"], 1);
    // Her summary email and her invitation, both through the account's outbox.
    assert_eq!(report["outbox_emails"], 2);
    for status in ["pending", "delivered", "failed"] {
        let (s, list) = w
            .app
            .get_json(
                &format!("/api/v1/accounts/{}/outbox?status={status}", a.id),
                Some(&a.key),
            )
            .await;
        assert_eq!(s, 200);
        assert!(!list.to_string().to_lowercase().contains("anna"), "{list}");
    }

    let after = w.summary(&m).await;
    let text = after.to_string().to_lowercase();
    assert!(!text.contains("anna"), "{after}");
    assert_eq!(after["participants"][1]["name"], "erased user");
    assert_eq!(after["chat"][0]["from"], "erased user");
    assert_eq!(after["chat"][0]["text"], "Mail me at [erased]");
    assert_eq!(after["participants"][0]["name"], "Ivan Rep");
    // The chat endpoint shows the same.
    let (_, chat) = w
        .app
        .get_json(
            &format!("/api/v1/meetings/{}/chat", meeting.id),
            Some(&meeting.host_key),
        )
        .await;
    assert!(!chat.to_string().to_lowercase().contains("anna"), "{chat}");
    // Financial records are untouched.
    let (s, invoices_after) = w
        .app
        .get_json(&format!("/api/v1/accounts/{}/invoices", a.id), Some(&a.key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(invoices_after, invoices);
    // Audited, without the address.
    let entries = w.audit(&a).await;
    let erase = entries
        .iter()
        .find(|e| e["action"] == "person.erase")
        .cloned()
        .unwrap_or_default();
    assert_eq!(erase["actor_kind"], "user");
    // The user record is anonymised too, and can no longer sign in.
    let (_, users) = w
        .app
        .get_json(&format!("/api/v1/accounts/{}/users", a.id), Some(&a.key))
        .await;
    assert!(
        !users.to_string().to_lowercase().contains("anna"),
        "{users}"
    );
    let (s, _) = w
        .req(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"email": "anna@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(erase["target_kind"], "person");
    assert_eq!(str_of(&erase, "target_id").len(), 64);
    assert!(
        !serde_json::to_string(&entries)
            .unwrap_or_default()
            .contains("anna")
    );
    w.app.shutdown().await;
}

/// The summary goes out over real SMTP to Python's aiosmtpd on loopback (as in users.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_mail_reaches_a_real_smtp_server() {
    let Some(smtp) = parley_tests::smtp::SmtpSink::start().await else {
        return;
    };
    let port = smtp.port;
    let mut app = TestApp::spawn_with(move |cfg| {
        cfg.smtp_url = Some(parley_signaling::configuration::Secret::new(format!(
            "smtp://127.0.0.1:{port}"
        )));
        cfg.smtp_from = "Parley <no-reply@parley.test>".into();
    })
    .await;
    let (s, m) = app
        .call(
            Method::POST,
            "/api/v1/meetings",
            None,
            Some(json!({"title": "SMTP demo", "send_results": true,
                "contacts": [{"name": "Erin", "email": "erin@example.com"}]})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/end", str_of(&m, "id")),
            Some(&str_of(&m, "host_key")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    wait_for("the summary at the SMTP server", || async {
        let text = smtp.received();
        (text.contains("erin@example.com")
            && text.contains("Subject: Meeting summary: SMTP demo")
            && text.contains("text/html"))
        .then_some(())
    })
    .await;
    app.shutdown().await;
    smtp.stop().await;
}
