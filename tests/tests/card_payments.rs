//! Card payments through the acquirer, black-box: the real server against the YooKassa
//! stand-in (`parley_tests::yookassa`). An account's card payment grants only when the
//! acquirer's own API says the money was taken, exactly once however many notifications come;
//! forged notifications grant nothing; the rules (individuals and sole proprietors, the card
//! limit) are checked before the acquirer is asked; the account can no longer register a card
//! payment by its own word.

use std::time::Duration;

use chrono::NaiveDate;
use parley_signaling::configuration::LicensingClock;
use parley_tests::fixtures::{Fixture, PASSWORD, SEAT_PRICE, TARIFF};
use parley_tests::yookassa::YooKassaStandIn;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of};
use reqwest::Method;
use serde_json::{Value, json};

/// An individual's account: its id, its API key, and a signed-in admin's session token.
struct Individual {
    id: String,
    key: String,
    admin: String,
}

/// Creates an individual's account (with its own card limit when given) and, when `with_admin`,
/// an account admin signed in through the invitation mail.
async fn individual(f: &Fixture, card_limit: Option<&str>, with_admin: bool) -> Individual {
    let label = f.unique();
    let mut body = json!({"name": format!("Иван Петров {label}"), "kind": "individual",
        "resident": true, "crm_system": "sbercrm", "crm_external_id": format!("person-{label}")});
    if let Some(l) = card_limit {
        body["card_limit"] = json!(l);
    }
    let v = f
        .must(
            201,
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(body),
        )
        .await;
    let id = str_of(&v["account"], "id");
    let key = str_of(&v["api_key"], "bearer");
    let mut admin = String::new();
    if with_admin {
        let email = format!("owner-{label}@person.example");
        f.must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{id}/invitations"),
            Some(&key),
            Some(json!({"email": email, "role": "account_admin"})),
        )
        .await;
        let token = f.mailed_token(&email, "inv_", 1).await;
        let v = f
            .must(
                200,
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": PASSWORD})),
            )
            .await;
        admin = str_of(&v, "token");
    }
    Individual { id, key, admin }
}

/// An unpaid initial order of `seats`: `(invoice id, amount)`.
async fn order(f: &Fixture, acc: &str, key: &str, seats: u32) -> (String, String) {
    let v = f
        .must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{acc}/orders"),
            Some(key),
            Some(json!({"type": "initial", "tariff": TARIFF, "seats": seats})),
        )
        .await;
    (str_of(&v["invoice"], "id"), str_of(&v["invoice"], "amount"))
}

/// Starts a card payment of `invoice` with `bearer` and `idem` as the Idempotency-Key.
async fn start(f: &Fixture, acc: &str, invoice: &str, bearer: &str, idem: &str) -> (u16, Value) {
    let r = f
        .app
        .http
        .post(f.app.url(&format!(
            "/api/v1/accounts/{acc}/invoices/{invoice}/card-payments"
        )))
        .bearer_auth(bearer)
        .header("Idempotency-Key", idem)
        .send()
        .await
        .expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn lots(f: &Fixture, acc: &str, key: &str) -> Vec<Value> {
    f.must(
        200,
        Method::GET,
        &format!("/api/v1/accounts/{acc}/lots"),
        Some(key),
        None,
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

async fn card_payments(f: &Fixture, acc: &str, key: &str) -> Vec<Value> {
    f.must(
        200,
        Method::GET,
        &format!("/api/v1/accounts/{acc}/card-payments"),
        Some(key),
        None,
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

async fn invoice_status(f: &Fixture, acc: &str, key: &str, invoice: &str) -> String {
    let v = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{acc}/invoices/{invoice}"),
            Some(key),
            None,
        )
        .await;
    str_of(&v, "status")
}

async fn spawn(yk: &YooKassaStandIn) -> Fixture {
    let cfg = yk.config();
    Fixture::spawn_with(move |c| {
        c.yookassa = Some(cfg);
        // Every look at the payments re-checks pending ones, so the lost-notification path
        // needs no minute of waiting.
        c.card_payment_recheck = Duration::ZERO;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_individual_pays_by_card_and_is_granted_once_the_acquirer_confirms() {
    let yk = YooKassaStandIn::start().await;
    let mut f = spawn(&yk).await;
    let p = individual(&f, None, true).await;
    let (invoice, amount) = order(&f, &p.id, &p.key, 1).await;
    assert_eq!(amount, SEAT_PRICE);

    // The admin starts the payment and gets the acquirer's page.
    let (s, cp) = start(&f, &p.id, &invoice, &p.admin, "pay-1").await;
    assert_eq!(s, 201, "{cp}");
    assert_eq!(
        (cp["status"].as_str(), cp["amount"].as_str()),
        (Some("pending"), Some(SEAT_PRICE))
    );
    let provider_id = str_of(&cp, "provider_id");
    assert!(
        str_of(&cp, "confirmation_url").starts_with("https://yoomoney.ru/checkout/"),
        "{cp}"
    );
    // What the acquirer was asked: the invoice's amount in roubles, with Parley's ids.
    let asked = yk.payment(&provider_id);
    assert_eq!(
        asked["amount"],
        json!({"value": SEAT_PRICE, "currency": "RUB"})
    );
    assert_eq!(
        (
            asked["metadata"]["account"].as_str(),
            asked["metadata"]["invoice"].as_str()
        ),
        (Some(p.id.as_str()), Some(invoice.as_str()))
    );
    let return_url = asked["confirmation"]["return_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        return_url.ends_with(&format!("/admin/#/payments?invoice={invoice}&card=return")),
        "{return_url}"
    );
    assert!(
        yk.requests().iter().all(|(_, _, auth_ok)| *auth_ok),
        "Basic auth on every call"
    );

    // A retried start (same key) is the same payment; nothing new at the acquirer.
    let (s, again) = start(&f, &p.id, &invoice, &p.admin, "pay-1").await;
    assert_eq!((s, again["id"].clone()), (201, cp["id"].clone()));
    assert_eq!(yk.payments_created(), 1);

    // Nothing is granted while the payer has not paid.
    assert!(lots(&f, &p.id, &p.key).await.is_empty());
    assert_eq!(invoice_status(&f, &p.id, &p.key, &invoice).await, "issued");

    // The payer pays; YooKassa notifies; the lot is active and the payment listed as card.
    yk.succeed(&provider_id);
    assert_eq!(yk.notify(&f.app.base, &provider_id).await, 200);
    let l = lots(&f, &p.id, &p.key).await;
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0]["status"].as_str(), l[0]["seats"].as_u64()),
        (Some("active"), Some(1))
    );
    assert_eq!(invoice_status(&f, &p.id, &p.key, &invoice).await, "paid");
    let paid = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/payments", p.id),
            Some(&p.admin),
            None,
        )
        .await;
    assert_eq!(paid.as_array().map(Vec::len), Some(1), "{paid}");
    assert_eq!(
        (
            paid[0]["method"].as_str(),
            paid[0]["amount"].as_str(),
            paid[0]["reference"].as_str()
        ),
        (Some("card"), Some(SEAT_PRICE), Some(provider_id.as_str()))
    );
    let cps = card_payments(&f, &p.id, &p.admin).await;
    assert_eq!(
        (cps[0]["status"].as_str(), cps[0]["payment_id"].as_str()),
        (Some("succeeded"), paid[0]["id"].as_str())
    );

    // The same notification again, and several at once: still one payment, one lot.
    let base = f.app.base.clone();
    let (a, b, c) = tokio::join!(
        yk.notify(&base, &provider_id),
        yk.notify(&base, &provider_id),
        yk.notify(&base, &provider_id)
    );
    assert_eq!((a, b, c), (200, 200, 200));
    let paid = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/payments", p.id),
            Some(&p.key),
            None,
        )
        .await;
    assert_eq!(paid.as_array().map(Vec::len), Some(1), "{paid}");
    assert_eq!(lots(&f, &p.id, &p.key).await.len(), 1);
    // Paying the paid invoice again is refused before the acquirer is asked.
    let (s, v) = start(&f, &p.id, &invoice, &p.admin, "pay-2").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invoice_already_paid")),
        "{v}"
    );
    assert_eq!(yk.payments_created(), 1);
    f.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_not_believed_only_the_acquirer_is() {
    let yk = YooKassaStandIn::start().await;
    let mut f = spawn(&yk).await;
    let p = individual(&f, None, false).await;
    let (invoice, _) = order(&f, &p.id, &p.key, 1).await;
    let (s, cp) = start(&f, &p.id, &invoice, &p.key, "forge-1").await;
    assert_eq!(s, 201, "{cp}");
    let provider_id = str_of(&cp, "provider_id");
    let base = f.app.base.clone();

    // A notification saying "succeeded" while the acquirer says pending.
    let mut forged = yk.payment(&provider_id);
    forged["status"] = json!("succeeded");
    forged["paid"] = json!(true);
    assert_eq!(
        yk.send_notification(&base, "payment.succeeded", forged)
            .await,
        200
    );
    // A payment Parley never started: the same quiet 200, no oracle.
    let unknown = json!({"id": uuid::Uuid::new_v4().to_string(), "status": "succeeded", "paid": true,
        "amount": {"value": SEAT_PRICE, "currency": "RUB"},
        "metadata": {"account": p.id, "invoice": invoice}});
    assert_eq!(
        yk.send_notification(&base, "payment.succeeded", unknown)
            .await,
        200
    );
    assert!(lots(&f, &p.id, &p.key).await.is_empty());
    assert_eq!(
        card_payments(&f, &p.id, &p.key).await[0]["status"],
        "pending"
    );

    // Not a notification, or too large: refused.
    let r = f
        .app
        .http
        .post(f.app.url("/api/v1/payments/yookassa/notifications"))
        .header("content-type", "application/json")
        .body("{\"hello\": 1}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let big = json!({"type": "notification", "event": "payment.succeeded",
        "object": {"id": provider_id, "pad": "x".repeat(64 * 1024)}});
    let r = f
        .app
        .http
        .post(f.app.url("/api/v1/payments/yookassa/notifications"))
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(v["error"]["code"], "payload_too_large");

    // The acquirer's record says succeeded, but for another amount: nothing granted.
    yk.set_amount(&provider_id, "1.00");
    yk.succeed(&provider_id);
    assert_eq!(yk.notify(&base, &provider_id).await, 200);
    assert!(lots(&f, &p.id, &p.key).await.is_empty());
    assert_eq!(invoice_status(&f, &p.id, &p.key, &invoice).await, "issued");
    assert_eq!(
        card_payments(&f, &p.id, &p.key).await[0]["status"],
        "rejected"
    );

    // A canceled payment grants nothing either.
    let q = individual(&f, None, false).await;
    let (q_invoice, _) = order(&f, &q.id, &q.key, 1).await;
    let (_, qcp) = start(&f, &q.id, &q_invoice, &q.key, "cancel-1").await;
    let q_provider = str_of(&qcp, "provider_id");
    yk.cancel(&q_provider);
    assert_eq!(yk.notify(&base, &q_provider).await, 200);
    let qcps = card_payments(&f, &q.id, &q.key).await;
    assert_eq!(
        (qcps[0]["status"].as_str(), qcps[0]["failure"].as_str()),
        (Some("canceled"), Some("expired_on_confirmation"))
    );
    assert!(lots(&f, &q.id, &q.key).await.is_empty());
    f.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_come_first_and_an_account_cannot_register_card_money_itself() {
    let yk = YooKassaStandIn::start().await;
    let mut f = spawn(&yk).await;

    // A legal entity pays by bank transfer.
    let (_, a_invoice, _) = f.unpaid_order(&f.a).await;
    let (s, v) = start(&f, &f.a.id, &a_invoice, &f.a.admin.token, "le-1").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("card_not_allowed")),
        "{v}"
    );
    // Above the account's card limit.
    let p = individual(&f, Some("10000.00"), false).await;
    let (invoice, _) = order(&f, &p.id, &p.key, 1).await;
    let (s, v) = start(&f, &p.id, &invoice, &p.key, "lim-1").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("card_not_allowed")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("10000.00"),
        "{v}"
    );
    // Neither reached the acquirer.
    assert_eq!(yk.payments_created(), 0);
    // Another account's invoice is simply not there.
    let (s, _) = start(&f, &p.id, &a_invoice, &p.key, "foreign-1").await;
    assert_eq!(s, 404);

    // The account's own word that a card was charged: refused, nothing granted.
    let q = individual(&f, None, true).await;
    let (q_invoice, q_amount) = order(&f, &q.id, &q.key, 1).await;
    let direct = format!("/api/v1/accounts/{}/invoices/{q_invoice}/payments", q.id);
    for bearer in [&q.key, &q.admin] {
        let (s, v) = f
            .call(
                Method::POST,
                &direct,
                Some(bearer),
                Some(json!({"method": "card", "amount": q_amount})),
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("payment provider"),
            "{v}"
        );
    }
    assert!(lots(&f, &q.id, &q.key).await.is_empty());
    // The operator may register one by hand (from the acquirer's report).
    let paid = f
        .must(201, Method::POST, &direct, Some(ADMIN_TOKEN),
            Some(json!({"method": "card", "amount": q_amount, "reference": "2f3c6a99-000f-5000-9000-1d2a3b4c5d6e"})))
        .await;
    assert_eq!(paid["method"], "card");
    assert_eq!(lots(&f, &q.id, &q.key).await.len(), 1);
    f.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_picked_up_when_the_account_opens_its_payments() {
    let yk = YooKassaStandIn::start().await;
    let mut f = spawn(&yk).await;
    let p = individual(&f, None, false).await;
    let (invoice, _) = order(&f, &p.id, &p.key, 1).await;
    let (_, cp) = start(&f, &p.id, &invoice, &p.key, "lost-1").await;
    let provider_id = str_of(&cp, "provider_id");
    // Paid at the acquirer; its notification never arrives.
    yk.succeed(&provider_id);
    assert!(
        lots(&f, &p.id, &p.key).await.is_empty(),
        "nothing knows yet"
    );
    let paid = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/payments", p.id),
            Some(&p.key),
            None,
        )
        .await;
    assert_eq!(paid.as_array().map(Vec::len), Some(1), "{paid}");
    assert_eq!(paid[0]["method"], "card");
    let l = lots(&f, &p.id, &p.key).await;
    assert_eq!((l.len(), l[0]["status"].as_str()), (1, Some("active")));
    // The late notification then changes nothing.
    assert_eq!(yk.notify(&f.app.base, &provider_id).await, 200);
    let paid = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/payments", p.id),
            Some(&p.key),
            None,
        )
        .await;
    assert_eq!(paid.as_array().map(Vec::len), Some(1));
    f.app.shutdown().await;
}

/// Without an acquirer configured, card payment says so, and the notification endpoint stays
/// a quiet 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_acquirer_card_payment_is_unavailable() {
    let mut app = TestApp::spawn_with(|c| {
        c.licensing_clock = Some(LicensingClock::new(
            NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        ));
    })
    .await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tariffs/{TARIFF}"),
            Some(ADMIN_TOKEN),
            Some(json!({
            "name": "Business", "term_months": 12, "price_per_seat": SEAT_PRICE,
            "features": {"max_participants": 10, "max_meeting_minutes": 240,
                "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                "sdk_embedding": true, "results_to_recipients": true, "screen_share": true}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(json!({
            "name": "Иван Петров", "kind": "individual", "resident": true,
            "crm_system": "sbercrm", "crm_external_id": "person-x"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (id, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
    let r = app
        .http
        .post(app.url(&format!("/api/v1/accounts/{id}/orders")))
        .bearer_auth(&key)
        .header("Idempotency-Key", "o1")
        .json(&json!({"type": "initial", "tariff": TARIFF, "seats": 1}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 201);
    let placed: Value = r.json().await.expect("json");
    let invoice = str_of(&placed["invoice"], "id");
    let r = app
        .http
        .post(app.url(&format!(
            "/api/v1/accounts/{id}/invoices/{invoice}/card-payments"
        )))
        .bearer_auth(&key)
        .header("Idempotency-Key", "c1")
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "card_payments_unavailable", "{v}");
    let r = app
        .http
        .post(app.url("/api/v1/payments/yookassa/notifications"))
        .json(&json!({"type": "notification", "event": "payment.succeeded", "object": {"id": "x"}}))
        .send()
        .await
        .expect("notify");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}
