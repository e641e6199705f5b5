//! The CRM deal card, black-box: signed launches (valid, forged, expired, too far ahead,
//! unknown account, unlinked CRM user), the frame-ancestors of the card page (the CRM
//! connection's origin: given, or derived from the Bitrix24 portal / amoCRM address), the card
//! session on the card API, isolation between accounts, and meetings started from the card
//! linked to their deal.

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use hmac::{Hmac, Mac};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender};
use parley_tests::crm_standins::{BITRIX_DEAL_ID, BitrixStandIn};
use parley_tests::{ADMIN_TOKEN, TestApp, str_of};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

const CRM_A: &str = "http://127.0.0.1:9001";
const CRM_B: &str = "http://localhost:9002";
/// Where the generic CRMs of these tests would be called: nothing listens (the card then shows
/// the deal id with "the CRM could not be read").
const DEAD_CRM_URL: &str = "http://127.0.0.1:9/parley";

/// A generic webhook CRM whose web UI is at `origin` (given with a trailing slash: the server
/// normalises it).
fn webhook_crm(origin: &str) -> Value {
    json!({"kind": "webhook", "frame_origin": format!("{origin}/"),
        "settings": {"url": DEAD_CRM_URL, "secret": "generic-crm-secret-0123456789"}})
}

struct Account {
    id: String,
    key: String,
    lot: String,
    secret: String,
}

/// What a CRM does: sign `account&deal&crm_user&exp` with the card secret.
fn launch_url(acc: &Account, deal: &str, crm_user: &str, exp: i64, secret: &str) -> String {
    let text = format!(
        "account={}&deal={deal}&crm_user={crm_user}&exp={exp}",
        acc.id
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(text.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!("/crm/card?{text}&sig={sig}")
}

fn in_minutes(m: i64) -> i64 {
    Utc::now().timestamp() + m * 60
}

async fn spawn() -> TestApp {
    let app = TestApp::spawn_with(|cfg| {
        // Licensing's "today" must be before the lots' end; a fixed date keeps it stable.
        cfg.licensing_clock = Some(LicensingClock::new(
            NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        ));
        // Invitations mail a link; nobody reads it here (the card does not need a password).
        cfg.email_sender = Some(EmailSenderHook(Arc::new(MemoryEmailSender::new())));
    })
    .await;
    let (s, v) = app
        .call(
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
    app
}

/// An account with a paid lot, a CRM connection (`crm`, the body of `PUT …/crm`) and a deal-card
/// secret; the card answers the connection's origin, `origin`.
async fn account(app: &TestApp, crm_id: &str, crm: Value, origin: &str) -> Account {
    let acc = account_without_crm(app, crm_id).await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/api/v1/accounts/{}/crm", acc.id),
            Some(&acc.key),
            Some(crm),
        )
        .await;
    assert_eq!(s, 200, "crm: {v}");
    assert_eq!(v["frame_origin"], origin, "{v}");
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/card-secret", acc.id),
            Some(&acc.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "card secret: {v}");
    assert_eq!(v["crm_origin"], origin);
    Account {
        secret: str_of(&v, "secret"),
        ..acc
    }
}

/// An account with a paid lot, no CRM and no card secret.
async fn account_without_crm(app: &TestApp, crm_id: &str) -> Account {
    let (s, v) = app
        .call(
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
    let r = app
        .http
        .post(app.url(&format!("/api/v1/accounts/{id}/orders")))
        .bearer_auth(&key)
        .header("Idempotency-Key", format!("order-{crm_id}"))
        .json(&json!({"type": "initial", "tariff": "business-12", "seats": 2}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.expect("json");
    let inv = &order["invoice"];
    let r = app
        .http
        .post(app.url(&format!(
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
        secret: String::new(),
    }
}

/// An invited user of `acc`, linked to `crm_user`, with a seat when `seat`.
async fn linked_user(
    app: &TestApp,
    acc: &Account,
    email: &str,
    crm_user: &str,
    seat: bool,
) -> String {
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/invitations", acc.id),
            Some(&acc.key),
            Some(json!({"email": email, "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "invite: {v}");
    let user = str_of(&v["user"], "id");
    if seat {
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/api/v1/accounts/{}/users/{user}/seat", acc.id),
                Some(&acc.key),
                Some(json!({"lot_id": acc.lot})),
            )
            .await;
        assert_eq!(s, 201, "seat: {v}");
    }
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/users", acc.id),
            Some(&acc.key),
            Some(json!({"crm_user_id": crm_user, "user_id": user})),
        )
        .await;
    assert_eq!(s, 201, "link: {v}");
    user
}

struct Launch {
    status: u16,
    csp: String,
    cookie: Option<String>,
    body: String,
}

async fn launch(app: &TestApp, path: &str) -> Launch {
    let r = app.http.get(app.url(path)).send().await.expect("launch");
    let h = r.headers().clone();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Launch {
        status: r.status().as_u16(),
        csp: get("content-security-policy").unwrap_or_default(),
        cookie: get("set-cookie"),
        body: r.text().await.expect("body"),
    }
}

/// The card token the page carries (`<meta name="parley-card-token" content="cs_…">`).
fn page_token(body: &str) -> String {
    let marker = "name=\"parley-card-token\" content=\"";
    let start = body.find(marker).expect("token meta") + marker.len();
    let token: String = body[start..].chars().take_while(|c| *c != '"').collect();
    assert!(token.starts_with("cs_") && token.len() == 46, "{token}");
    token
}

fn assert_refused(l: &Launch, status: u16, code: &str) {
    assert_eq!(l.status, status, "{code}: {}", l.body);
    assert!(
        l.body.contains(&format!("data-code=\"{code}\"")),
        "{code}: {}",
        l.body
    );
    assert!(l.cookie.is_none(), "{code}: a refusal opens no session");
    assert!(!l.body.contains("cs_"), "{code}: no card token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_launch_opens_the_card_framable_only_by_the_crm_and_refusals_are_clear() {
    let mut app = spawn().await;
    // A's CRM is a Bitrix24 portal: no origin given, the portal's frames the card.
    let bitrix = BitrixStandIn::start().await;
    let crm_a = bitrix.origin.clone();
    let a = account(
        &app,
        "CARD-A",
        json!({"kind": "bitrix24", "settings": {"webhook_url": bitrix.webhook_url()}}),
        &crm_a,
    )
    .await;
    let b = account(&app, "CARD-B", webhook_crm(CRM_B), CRM_B).await;
    linked_user(&app, &a, "rep@a.example", "7", true).await;

    let ok = launch(&app, &launch_url(&a, "42", "7", in_minutes(10), &a.secret)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.csp.contains(&format!("frame-ancestors {crm_a}")),
        "{}",
        ok.csp
    );
    assert!(!ok.csp.contains("frame-ancestors 'none'") && !ok.csp.contains('*'));
    let token = page_token(&ok.body);
    assert!(ok.body.contains("/crm/card.js"));
    let cookie = ok.cookie.expect("card cookie");
    assert!(
        cookie.starts_with(&format!("parley_card={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "Path=/api/v1/crm/card", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // Other pages still refuse every frame.
    let r = app.http.get(app.url("/")).send().await.expect("index");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // The card session works on the card API, by bearer and by cookie. Deal 42 is not in the
    // CRM: the card still opens, with the deal id and no contacts.
    let (s, deal) = app.get_json("/api/v1/crm/card/deal", Some(&token)).await;
    assert_eq!(s, 200, "{deal}");
    assert_eq!(deal["deal_id"], "42");
    assert_eq!(deal["source"], "error", "{deal}");
    assert_eq!(deal["title"], "Deal 42");
    assert_eq!(deal["contacts"], json!([]));
    let r = app
        .http
        .get(app.url("/api/v1/crm/card/meetings"))
        .header("Cookie", format!("parley_card={token}"))
        .send()
        .await
        .expect("meetings");
    assert_eq!(r.status(), 200);

    // Forged: signed with another key, or a changed deal under a valid signature.
    let forged = launch(
        &app,
        &launch_url(&a, "42", "7", in_minutes(10), "not-the-secret"),
    )
    .await;
    assert_refused(&forged, 403, "invalid_signature");
    assert!(forged.csp.contains(&format!("frame-ancestors {crm_a}")));
    let good = launch_url(&a, "42", "7", in_minutes(10), &a.secret);
    let tampered = launch(&app, &good.replace("deal=42", "deal=43")).await;
    assert_refused(&tampered, 403, "invalid_signature");
    // B's secret does not open A's card.
    let cross = launch(&app, &launch_url(&a, "42", "7", in_minutes(10), &b.secret)).await;
    assert_refused(&cross, 403, "invalid_signature");

    let expired = launch(&app, &launch_url(&a, "42", "7", in_minutes(-1), &a.secret)).await;
    assert_refused(&expired, 403, "launch_expired");
    let far = launch(
        &app,
        &launch_url(&a, "42", "7", in_minutes(25 * 60), &a.secret),
    )
    .await;
    assert_refused(&far, 400, "launch_expiry_too_far");

    let ghost = Account {
        id: uuid::Uuid::new_v4().to_string(),
        key: String::new(),
        lot: String::new(),
        secret: a.secret.clone(),
    };
    let unknown = launch(
        &app,
        &launch_url(&ghost, "42", "7", in_minutes(10), &a.secret),
    )
    .await;
    assert_refused(&unknown, 404, "card_not_configured");
    assert!(unknown.csp.contains("frame-ancestors 'none'"));

    let unmapped = launch(
        &app,
        &launch_url(&a, "42", "999", in_minutes(10), &a.secret),
    )
    .await;
    assert_refused(&unmapped, 403, "crm_user_not_linked");
    assert!(unmapped.body.contains("not linked to a Parley user"));

    let incomplete = launch(&app, &format!("/crm/card?account={}&deal=42", a.id)).await;
    assert_refused(&incomplete, 400, "invalid_launch");
    let bad_deal = launch(
        &app,
        &launch_url(&a, "4%262", "7", in_minutes(10), &a.secret),
    )
    .await;
    assert_refused(&bad_deal, 400, "invalid_launch");

    // A deal the CRM knows: the card reads it (title, contacts with their emails) through the
    // connection whose portal frames it.
    let deal_id = BITRIX_DEAL_ID.to_string();
    let known = launch(
        &app,
        &launch_url(&a, &deal_id, "7", in_minutes(10), &a.secret),
    )
    .await;
    assert_eq!(known.status, 200, "{}", known.body);
    let (s, deal) = app
        .get_json("/api/v1/crm/card/deal", Some(&page_token(&known.body)))
        .await;
    assert_eq!(s, 200, "{deal}");
    assert_eq!(deal["source"], "crm", "{deal}");
    assert_eq!(deal["title"], "Внедрение видеосвязи для отдела продаж");
    let emails: Vec<String> = deal["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .flat_map(|c| c["emails"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    assert!(
        emails.iter().any(|e| e == "m.kuznetsova@client.example"),
        "{deal}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_api_needs_the_card_session_and_stays_within_its_account_and_deal() {
    let mut app = spawn().await;
    let a = account(&app, "CARD-C", webhook_crm(CRM_A), CRM_A).await;
    let b = account(&app, "CARD-D", webhook_crm(CRM_B), CRM_B).await;
    linked_user(&app, &a, "rep@c.example", "7", true).await;
    linked_user(&app, &a, "seatless@c.example", "8", false).await;
    linked_user(&app, &b, "rep@d.example", "7", true).await;

    // No session, a forged one, another kind of credential: 401.
    for bearer in [
        None,
        Some("cs_forged"),
        Some(a.key.as_str()),
        Some(ADMIN_TOKEN),
    ] {
        for path in ["/api/v1/crm/card/deal", "/api/v1/crm/card/meetings"] {
            let (s, v) = app.get_json(path, bearer).await;
            assert_eq!(s, 401, "{path} with {bearer:?}: {v}");
            assert_eq!(v["error"]["code"], "card_session_required");
        }
        let (s, _) = app
            .call(
                Method::POST,
                "/api/v1/crm/card/meetings",
                bearer,
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 401);
    }

    let card_a = page_token(
        &launch(&app, &launch_url(&a, "42", "7", in_minutes(10), &a.secret))
            .await
            .body,
    );
    let card_b = page_token(
        &launch(&app, &launch_url(&b, "42", "7", in_minutes(10), &b.secret))
            .await
            .body,
    );
    let other_deal = page_token(
        &launch(&app, &launch_url(&a, "77", "7", in_minutes(10), &a.secret))
            .await
            .body,
    );

    // Start now: a meeting linked to the deal, listed on the deal's card.
    let (s, m) = app
        .call(
            Method::POST,
            "/api/v1/crm/card/meetings",
            Some(&card_a),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let host_link = str_of(&m, "host_link");
    assert!(host_link.contains("/m/") && host_link.contains("?t="));
    assert!(str_of(&m, "invite_link").contains("?invite="));
    let (s, sched) = app
        .call(
            Method::POST,
            "/api/v1/crm/card/meetings",
            Some(&card_a),
            Some(json!({"scheduled_start": "2030-01-31T10:00:00Z", "title": "Proposal review"})),
        )
        .await;
    assert_eq!(s, 201, "{sched}");
    // B's meeting for its own deal 42.
    let (s, mb) = app
        .call(
            Method::POST,
            "/api/v1/crm/card/meetings",
            Some(&card_b),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "{mb}");

    let (s, list) = app
        .get_json("/api/v1/crm/card/meetings", Some(&card_a))
        .await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["meetings"]
        .as_array()
        .expect("meetings")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![str_of(&sched, "id"), str_of(&m, "id")],
        "newest first"
    );
    assert_eq!(
        list["meetings"][0]["scheduled_start"],
        "2030-01-31T10:00:00Z"
    );
    assert_eq!(list["meetings"][0]["title"], "Proposal review");
    assert!(list["meetings"][1]["invite_link"].is_string());

    // B's card sees only B's meeting; the same deal id in A is not B's deal.
    let (_, list_b) = app
        .get_json("/api/v1/crm/card/meetings", Some(&card_b))
        .await;
    assert_eq!(list_b["meetings"].as_array().map(Vec::len), Some(1));
    assert_eq!(list_b["meetings"][0]["id"], mb["id"]);
    // Another deal of A: its own (empty) list.
    let (_, list_77) = app
        .get_json("/api/v1/crm/card/meetings", Some(&other_deal))
        .await;
    assert_eq!(list_77["meetings"], json!([]));
    // The card session is no account credential: it opens nothing else.
    let (s, _) = app
        .get_json(&format!("/api/v1/accounts/{}/users", a.id), Some(&card_a))
        .await;
    assert_eq!(s, 401);
    let (s, _) = app
        .get_json(&format!("/api/v1/accounts/{}/users", b.id), Some(&card_a))
        .await;
    assert_eq!(s, 401);
    // Query parameters cannot point the card elsewhere (the session fixes account and deal).
    let (s, v) = app
        .get_json(
            &format!("/api/v1/crm/card/meetings?account={}&deal=42", b.id),
            Some(&card_a),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["meetings"].as_array().map(Vec::len), Some(2));

    // A linked user without a seat gets the licensing refusal.
    let seatless = page_token(
        &launch(&app, &launch_url(&a, "42", "8", in_minutes(10), &a.secret))
            .await
            .body,
    );
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/crm/card/meetings",
            Some(&seatless),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "no_seat");

    // Unlinking the CRM user ends their card sessions.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/accounts/{}/crm/users/7", a.id),
            Some(&a.key),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.get_json("/api/v1/crm/card/deal", Some(&card_a)).await;
    assert_eq!(s, 401);
    app.shutdown().await;
}

/// A meeting the card made, as the test helpers know meetings.
fn meeting_of(created: &Value) -> parley_tests::Meeting {
    parley_tests::Meeting {
        id: str_of(created, "id"),
        host_key: str_of(created, "host_key"),
        host_token: str_of(created, "host_token"),
        invite: String::new(),
        raw: created.clone(),
    }
}

/// Ends a meeting through its host key (no one has to be in it).
async fn end(app: &TestApp, m: &parley_tests::Meeting) {
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/end", m.id),
            Some(&m.host_key),
            None,
        )
        .await;
    assert_eq!(s, 204, "end: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_shows_the_summaries_of_its_own_deal_only() {
    let mut app = spawn().await;
    let a = account(&app, "CARD-S", webhook_crm(CRM_A), CRM_A).await;
    let b = account(&app, "CARD-T", webhook_crm(CRM_B), CRM_B).await;
    let rep_a = linked_user(&app, &a, "rep@s.example", "7", true).await;
    linked_user(&app, &b, "rep@t.example", "7", true).await;
    let card = |acc: &Account, deal: &str| {
        let path = launch_url(acc, deal, "7", in_minutes(10), &acc.secret);
        let app = &app;
        async move { page_token(&launch(app, &path).await.body) }
    };
    let (card_a, card_a77, card_b) = (
        card(&a, "42").await,
        card(&a, "77").await,
        card(&b, "42").await,
    );
    let start = |token: String| {
        let app = &app;
        async move {
            let (s, m) = app
                .call(
                    Method::POST,
                    "/api/v1/crm/card/meetings",
                    Some(&token),
                    Some(json!({})),
                )
                .await;
            assert_eq!(s, 201, "{m}");
            m
        }
    };

    // Start now without a title: the CRM cannot be read here, so the meeting is "Deal 42"
    // (the summary's note and email add their own "Meeting" label).
    let created = start(card_a.clone()).await;
    assert_eq!(created["title"], "Deal 42");
    let m = meeting_of(&created);
    // The rep holds it: joins, writes in the chat, ends it for everyone.
    let token = app.host_token(&m, "Ivan Rep").await;
    let (mut host, _) = app.join(&token).await;
    host.send(json!({"type": "chat", "text": "Prices attached"}))
        .await;
    host.send(json!({"type": "host", "action": "end"})).await;
    let _ = host.expect_close().await;
    // Meetings of the same account's other deal and of another account, ended too, and one of
    // this deal that has not happened yet.
    let m77 = meeting_of(&start(card_a77.clone()).await);
    let mb = meeting_of(&start(card_b.clone()).await);
    let later = meeting_of(&start(card_a.clone()).await);
    end(&app, &m77).await;
    end(&app, &mb).await;

    // The card lists the summary at its card-scoped address, and reads it with its session.
    let path = format!("/api/v1/crm/card/meetings/{}/summary", m.id);
    let (s, list) = app
        .get_json("/api/v1/crm/card/meetings", Some(&card_a))
        .await;
    assert_eq!(s, 200, "{list}");
    let listed = list["meetings"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == m.id.as_str()).cloned())
        .expect("the meeting on the card");
    assert!(
        listed["summary_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&path)),
        "{listed}"
    );
    let summary = parley_tests::wait_for("the summary on the card", || async {
        let (s, v) = app.get_json(&path, Some(&card_a)).await;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(summary["meeting_id"], m.id.as_str());
    assert_eq!(summary["title"], "Deal 42");
    assert_eq!(summary["participants"][0]["name"], "Ivan Rep", "{summary}");
    assert_eq!(summary["participants"][0]["side"], "rep");
    assert!(summary["participants"][0]["talk_time_secs"].is_u64());
    assert_eq!(summary["chat"][0]["text"], "Prices attached", "{summary}");
    assert!(summary["talk_ratio"].is_object() && summary["duration_secs"].is_u64());
    // The read is in the account's audit log, by the card's user.
    let (s, log) = app
        .get_json(&format!("/api/v1/accounts/{}/audit", a.id), Some(&a.key))
        .await;
    assert_eq!(s, 200, "{log}");
    let read = log["entries"].as_array().and_then(|e| {
        e.iter()
            .find(|e| e["action"] == "summary.read" && e["target_id"] == m.id.as_str())
    });
    assert_eq!(
        read.map(|e| (e["actor_kind"].clone(), e["actor_id"].clone())),
        Some((json!("user"), json!(rep_a))),
        "{log}"
    );

    // Not ended yet: nothing to show, said as such.
    let (s, v) = app
        .get_json(
            &format!("/api/v1/crm/card/meetings/{}/summary", later.id),
            Some(&card_a),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("no_summary")),
        "{v}"
    );
    // Another deal's meeting, another account's, a made-up id: as if they did not exist, even
    // though they have summaries.
    for (token, other) in [
        (&card_a, m77.id.as_str()),
        (&card_a, mb.id.as_str()),
        (&card_a77, m.id.as_str()),
        (&card_b, m.id.as_str()),
        (&card_a, "no-such-meeting"),
    ] {
        let (s, v) = app
            .get_json(
                &format!("/api/v1/crm/card/meetings/{other}/summary"),
                Some(token),
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{other}: {v}"
        );
    }
    // The other deal's card reads its own.
    let (s, v) = app
        .get_json(
            &format!("/api/v1/crm/card/meetings/{}/summary", m77.id),
            Some(&card_a77),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Without the card's session: no summary, whatever else is presented.
    for bearer in [
        None,
        Some("cs_forged"),
        Some(a.key.as_str()),
        Some(m.host_key.as_str()),
        Some(ADMIN_TOKEN),
    ] {
        let (s, v) = app.get_json(&path, bearer).await;
        assert_eq!(s, 401, "{bearer:?}: {v}");
        assert_eq!(v["error"]["code"], "card_session_required");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_settings_are_for_the_account_admin_and_origins_are_strict() {
    let mut app = spawn().await;
    let a = account(&app, "CARD-E", webhook_crm(CRM_A), CRM_A).await;
    let b = account(&app, "CARD-F", webhook_crm(CRM_B), CRM_B).await;
    let path = format!("/api/v1/accounts/{}/crm/card-secret", a.id);
    let crm_path = format!("/api/v1/accounts/{}/crm", a.id);
    let (s, _) = app.call(Method::POST, &path, None, Some(json!({}))).await;
    assert_eq!(s, 401);
    // Another account's key: as if the account did not exist.
    let (s, _) = app
        .call(Method::POST, &path, Some(&b.key), Some(json!({})))
        .await;
    assert_eq!(s, 404);
    // The origin is the CRM connection's, and as strict there as anywhere it frames the card.
    for bad in [
        "*",
        "https://*.crm.example",
        "http://crm.example",
        "https://crm.example/x",
        "https://crm.example 'unsafe-inline'",
    ] {
        let mut body = webhook_crm(CRM_A);
        body["frame_origin"] = json!(bad);
        let (s, v) = app
            .call(Method::PUT, &crm_path, Some(&a.key), Some(body))
            .await;
        assert_eq!(s, 422, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_origin");
        // The deprecated field of the card secret checks the same way.
        let (s, v) = app
            .call(
                Method::POST,
                &path,
                Some(&a.key),
                Some(json!({"crm_origin": bad})),
            )
            .await;
        assert_eq!(s, 422, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_origin");
    }

    // Rotation: the old secret stops working.
    linked_user(&app, &a, "rep@e.example", "7", true).await;
    let (s, v) = app
        .call(Method::POST, &path, Some(&a.key), Some(json!({})))
        .await;
    assert_eq!(s, 201, "{v}");
    let new_secret = str_of(&v, "secret");
    assert_ne!(new_secret, a.secret);
    let old = launch(&app, &launch_url(&a, "1", "7", in_minutes(5), &a.secret)).await;
    assert_refused(&old, 403, "invalid_signature");
    let new = launch(&app, &launch_url(&a, "1", "7", in_minutes(5), &new_secret)).await;
    assert_eq!(new.status, 200);
    assert!(
        new.csp.contains(&format!("frame-ancestors {CRM_A}")),
        "{}",
        new.csp
    );

    // One place for the origin: changing the connection's moves the card, secret untouched.
    let mut body = webhook_crm(CRM_A);
    body["frame_origin"] = json!("https://crm.example.com");
    let (s, v) = app
        .call(Method::PUT, &crm_path, Some(&a.key), Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    let moved = launch(&app, &launch_url(&a, "1", "7", in_minutes(5), &new_secret)).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert!(
        moved
            .csp
            .contains("frame-ancestors https://crm.example.com;")
            || moved
                .csp
                .ends_with("frame-ancestors https://crm.example.com"),
        "{}",
        moved.csp
    );
    assert!(!moved.csp.contains(CRM_A), "{}", moved.csp);

    // The deprecated `crm_origin` still works for one version: it is written to the connection.
    let (s, v) = app
        .call(
            Method::POST,
            &path,
            Some(&a.key),
            Some(json!({"crm_origin": "https://crm2.example.com/"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["crm_origin"], "https://crm2.example.com");
    let third_secret = str_of(&v, "secret");
    let (s, crm) = app.get_json(&crm_path, Some(&a.key)).await;
    assert_eq!(s, 200);
    assert_eq!(crm["frame_origin"], "https://crm2.example.com", "{crm}");
    let l = launch(
        &app,
        &launch_url(&a, "1", "7", in_minutes(5), &third_secret),
    )
    .await;
    assert!(
        l.csp.contains("frame-ancestors https://crm2.example.com"),
        "{}",
        l.csp
    );

    // amoCRM: the account's address is the origin when none is given.
    let (s, v) = app
        .call(
            Method::PUT,
            &crm_path,
            Some(&a.key),
            Some(
                json!({"kind": "amocrm", "settings": {"subdomain": "romashka",
                "client_id": "c", "client_secret": "s", "redirect_uri": "https://parley.example/cb",
                "access_token": "a", "refresh_token": "r"}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["frame_origin"], "https://romashka.amocrm.ru");
    let l = launch(
        &app,
        &launch_url(&a, "1", "7", in_minutes(5), &third_secret),
    )
    .await;
    assert_eq!(l.status, 200, "{}", l.body);
    assert!(
        l.csp.contains("frame-ancestors https://romashka.amocrm.ru"),
        "{}",
        l.csp
    );

    // A generic CRM without a web origin cannot frame a card.
    let mut body = webhook_crm(CRM_A);
    body.as_object_mut().expect("object").remove("frame_origin");
    let (s, v) = app
        .call(Method::PUT, &crm_path, Some(&a.key), Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["frame_origin"], Value::Null);
    let (s, v) = app
        .call(Method::POST, &path, Some(&a.key), Some(json!({})))
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "frame_origin_required");
    let l = launch(
        &app,
        &launch_url(&a, "1", "7", in_minutes(5), &third_secret),
    )
    .await;
    assert_refused(&l, 409, "crm_not_connected");
    assert!(l.csp.contains("frame-ancestors 'none'"), "{}", l.csp);

    // No CRM connection at all: connect it first (the deprecated field cannot stand in).
    let c = account_without_crm(&app, "CARD-G").await;
    let c_path = format!("/api/v1/accounts/{}/crm/card-secret", c.id);
    for body in [json!({}), json!({"crm_origin": CRM_A})] {
        let (s, v) = app
            .call(Method::POST, &c_path, Some(&c.key), Some(body))
            .await;
        assert_eq!(s, 409, "{v}");
        assert_eq!(v["error"]["code"], "crm_not_connected");
    }
    // Disconnecting the CRM takes the card out of it.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/accounts/{}/crm", b.id),
            Some(&b.key),
            None,
        )
        .await;
    assert_eq!(s, 204);
    linked_user(&app, &b, "rep@f.example", "7", true).await;
    let l = launch(&app, &launch_url(&b, "1", "7", in_minutes(5), &b.secret)).await;
    assert_refused(&l, 409, "crm_not_connected");

    // Linking needs a user of the account.
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/users", a.id),
            Some(&a.key),
            Some(json!({"crm_user_id": "9", "user_id": uuid::Uuid::new_v4().to_string()})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/users", a.id),
            Some(&a.key),
            Some(json!({"crm_user_id": "bad id!", "user_id": uuid::Uuid::new_v4().to_string()})),
        )
        .await;
    assert_eq!(s, 422);
    app.shutdown().await;
}
