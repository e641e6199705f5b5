//! The licensing API over HTTP, black-box: the spec's flow (quote → order → invoice → payment →
//! lot active → top-up → renewal) with its figures, idempotent retries, concurrency, bad input,
//! the authorization table, and licensed meeting creation and joins.
//!
//! Each storage test runs on the server's temporary SQLite file, and again on PostgreSQL when
//! `PARLEY_TEST_POSTGRES_URL` is set (licensing tables in a schema of their own, dropped at the
//! end). "Today" is the server's test clock, moved by hand between calls.

use std::future::Future;

use chrono::NaiveDate;
use parley_signaling::configuration::LicensingClock;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Executor;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// One server with its licensing clock (and PostgreSQL schema, if any).
struct Lic {
    app: TestApp,
    clock: LicensingClock,
    pg: Option<(String, String)>,
}

/// `None`: SQLite (always); `Some(url)`: PostgreSQL when configured.
fn backends() -> Vec<Option<String>> {
    let mut v = vec![None];
    if let Ok(url) = std::env::var("PARLEY_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        v.push(Some(url));
    }
    v
}

/// Runs `test` once per backend.
async fn each_backend<F, Fut>(today: &str, test: F)
where
    F: Fn(Lic) -> Fut,
    Fut: Future<Output = Lic>,
{
    for pg in backends() {
        let lic = Lic::spawn(pg.as_deref(), today, |_| {}).await;
        let lic = test(lic).await;
        lic.finish().await;
    }
}

impl Lic {
    async fn spawn(
        pg: Option<&str>,
        today: &str,
        tweak: impl FnOnce(&mut parley_signaling::Config),
    ) -> Lic {
        let clock = LicensingClock::new(d(today));
        let pg = pg.map(|url| {
            (
                url.to_owned(),
                format!("lic_http_{}", uuid::Uuid::new_v4().simple()),
            )
        });
        let (c, p) = (clock.clone(), pg.clone());
        let app = TestApp::spawn_with(move |cfg| {
            cfg.licensing_clock = Some(c);
            if let Some((url, schema)) = p {
                cfg.licensing_database_url = Some(url);
                cfg.licensing_schema = Some(schema);
            }
            tweak(cfg);
        })
        .await;
        Lic { app, clock, pg }
    }

    async fn finish(mut self) {
        self.app.shutdown().await;
        if let Some((url, schema)) = self.pg.take() {
            let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
            pool.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
                .await
                .expect("drop schema");
            pool.close().await;
        }
    }

    fn today(&self, s: &str) {
        self.clock.set(d(s));
    }

    /// Any call: optional bearer, optional Idempotency-Key, optional JSON body.
    async fn req(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.app.http.request(method, self.app.url(path));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        if let Some(k) = idem {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn op(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.req(method, path, Some(ADMIN_TOKEN), None, body).await
    }

    async fn get(&self, bearer: &str, path: &str) -> Value {
        let (s, v) = self.req(Method::GET, path, Some(bearer), None, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    async fn put_tariff(&self, code: &str, price: &str, max_participants: u32, screen: bool) {
        let (s, v) = self
            .op(
                Method::PUT,
                &format!("/api/v1/tariffs/{code}"),
                Some(json!({
                    "name": code, "term_months": 12, "price_per_seat": price,
                    "features": {"max_participants": max_participants, "max_meeting_minutes": 240,
                        "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                        "sdk_embedding": true, "results_to_recipients": true,
                        "screen_share": screen}
                })),
            )
            .await;
        assert_eq!(s, 200, "put tariff: {v}");
    }

    /// A legal entity (postpay agreed) with its first key: (account id, bearer).
    async fn account(&self, crm_id: &str) -> (String, String) {
        let (s, v) = self
            .op(
                Method::POST,
                "/api/v1/accounts",
                Some(json!({
                    "name": format!("ООО Ромашка {crm_id}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                    "crm_external_id": crm_id, "postpay_allowed": true, "address": "Москва"
                })),
            )
            .await;
        assert_eq!(s, 201, "create account: {v}");
        (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"))
    }

    /// Orders and pays `seats` of business-12 today; returns (lot id, invoice id).
    async fn buy(&self, acc: &str, key: &str, seats: i64, idem: &str) -> (String, String) {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{acc}/orders"),
                Some(key),
                Some(idem),
                Some(json!({"type": "initial", "tariff": "business-12", "seats": seats})),
            )
            .await;
        assert_eq!(s, 201, "order: {v}");
        let inv = v["invoice"].clone();
        let (s, p) = self
            .req(
                Method::POST,
                &format!(
                    "/api/v1/accounts/{acc}/invoices/{}/payments",
                    str_of(&inv, "id")
                ),
                Some(ADMIN_TOKEN),
                Some(&format!("pay-{idem}")),
                Some(json!({"method": "bank_transfer", "amount": inv["amount"]})),
            )
            .await;
        assert_eq!(s, 201, "payment: {p}");
        (str_of(&p, "lot_id"), str_of(&inv, "id"))
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_quote_order_invoice_payment_top_up_renewal() {
    each_backend("2026-03-01", |lic| async move {
        lic.put_tariff("business-12", "12000.00", 100, true).await;
        let (a, key) = lic.account("A-1").await;
        let base = format!("/api/v1/accounts/{a}");

        // Quote: the contract's shape, amounts as two-decimal strings.
        let initial = json!({"type": "initial", "tariff": "business-12", "seats": 10});
        let (s, q) = lic
            .req(Method::POST, &format!("{base}/quotes"), Some(&key), None, Some(initial.clone()))
            .await;
        assert_eq!(s, 200, "{q}");
        assert_eq!((q["total"].clone(), q["subtotal"].clone()), (json!("120000.00"), json!("120000.00")));
        assert_eq!(q["currency"], "RUB");
        assert_eq!(q["lines"][0]["kind"], "initial");
        assert_eq!(q["lines"][0]["unit_price"], "12000.00");
        assert_eq!((q["lines"][0]["starts_on"].clone(), q["lines"][0]["ends_on"].clone()),
            (json!("2026-03-01"), json!("2027-03-01")));

        // Order: the key is required; a retry returns the first result with the same status.
        let (s, v) = lic
            .req(Method::POST, &format!("{base}/orders"), Some(&key), None, Some(initial.clone()))
            .await;
        assert_code(s, &v, 400, "idempotency_key_required");
        let (s, placed) = lic
            .req(Method::POST, &format!("{base}/orders"), Some(&key), Some("k1"), Some(initial.clone()))
            .await;
        assert_eq!(s, 201, "{placed}");
        assert_eq!(placed["order"]["quote"], q, "a quote and the order placed from it agree");
        let inv = placed["invoice"].clone();
        assert_eq!(inv["number_text"], "2026-000001");
        let (s, again) = lic
            .req(Method::POST, &format!("{base}/orders"), Some(&key), Some("k1"), Some(initial.clone()))
            .await;
        assert_eq!((s, again.clone()), (201, placed.clone()));
        let (s, v) = lic
            .req(Method::POST, &format!("{base}/orders"), Some(&key), Some("k1"),
                Some(json!({"type": "initial", "tariff": "business-12", "seats": 11})))
            .await;
        assert_code(s, &v, 409, "idempotency_conflict");
        let order_id = str_of(&placed["order"], "id");
        let got = lic.get(&key, &format!("{base}/orders/{order_id}")).await;
        assert_eq!(got["invoice"]["id"], inv["id"]);

        // The invoice, JSON and printable.
        let inv_id = str_of(&inv, "id");
        let got = lic.get(&key, &format!("{base}/invoices/{inv_id}")).await;
        assert_eq!(got["amount"], "120000.00");
        let r = lic.app.http.get(lic.app.url(&format!("{base}/invoices/{inv_id}.html")))
            .bearer_auth(&key).send().await.expect("request");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("text/html"));
        let page = r.text().await.expect("text");
        assert!(page.contains("2026-000001") && page.contains("НДС"), "{page}");

        // Payment: the account cannot register card money itself (the acquirer confirms it:
        // tests/tests/card_payments.rs); a bank transfer is the operator's.
        let pay = format!("{base}/invoices/{inv_id}/payments");
        let (s, v) = lic.req(Method::POST, &pay, Some(&key), Some("p0"),
            Some(json!({"method": "card", "amount": "120000.00"}))).await;
        assert_code(s, &v, 403, "forbidden");
        let (s, v) = lic.req(Method::POST, &pay, Some(&key), Some("p0"),
            Some(json!({"method": "bank_transfer", "amount": "120000.00"}))).await;
        assert_code(s, &v, 403, "forbidden");
        let (s, v) = lic.req(Method::POST, &pay, Some(ADMIN_TOKEN), Some("p1"),
            Some(json!({"method": "bank_transfer", "amount": "1.00"}))).await;
        assert_code(s, &v, 422, "payment_amount_mismatch");
        assert_eq!(lic.get(&key, &format!("{base}/lots")).await, json!([]), "nothing granted");
        let (s, p1) = lic.req(Method::POST, &pay, Some(ADMIN_TOKEN), Some("p1"),
            Some(json!({"method": "bank_transfer", "amount": "120000.00"}))).await;
        assert_eq!(s, 201, "{p1}");
        assert_eq!((p1["granted_on"].clone(), p1["grant_deadline"].clone()),
            (json!("2026-03-01"), json!("2026-03-06")));
        let (s, retry) = lic.req(Method::POST, &pay, Some(ADMIN_TOKEN), Some("p1"),
            Some(json!({"method": "bank_transfer", "amount": "120000.00"}))).await;
        assert_eq!((s, retry["id"].clone()), (201, p1["id"].clone()));
        let (s, v) = lic.req(Method::POST, &pay, Some(ADMIN_TOKEN), Some("p2"),
            Some(json!({"method": "bank_transfer", "amount": "120000.00"}))).await;
        assert_code(s, &v, 422, "invoice_already_paid");
        assert_eq!(lic.get(&key, &format!("{base}/payments")).await.as_array().map(Vec::len), Some(1));

        // The lot is active; a transfer document was issued; a seat can be assigned.
        let lots = lic.get(&key, &format!("{base}/lots")).await;
        assert_eq!(lots.as_array().map(Vec::len), Some(1), "{lots}");
        let lot = lots[0].clone();
        assert_eq!((lot["status"].clone(), lot["seats"].clone(), lot["starts_on"].clone(), lot["ends_on"].clone()),
            (json!("active"), json!(10), json!("2026-03-01"), json!("2027-03-01")));
        let lot_id = str_of(&lot, "id");
        let docs = lic.get(&key, &format!("{base}/documents")).await;
        assert_eq!((docs[0]["kind"].clone(), docs[0]["grant_date"].clone()), (json!("upd"), json!("2026-03-01")));
        let (s, v) = lic.req(Method::POST, &format!("{base}/lots/{lot_id}/seats"), Some(&key), None,
            Some(json!({"user_id": "alice"}))).await;
        assert_eq!(s, 201, "{v}");

        // Top-up, example 1 (prepay, portal, placed 2026-11-21) and 2 (postpay).
        lic.today("2026-11-21");
        let top = json!({"type": "top_up", "license_id": lot_id, "add_seats": 5});
        let (s, q) = lic.req(Method::POST, &format!("{base}/quotes"), Some(&key), None, Some(top.clone())).await;
        assert_eq!(s, 200, "{q}");
        assert_eq!(q["total"], "15245.90");
        let f = &q["lines"][0]["formula"];
        assert_eq!((f["B"].clone(), f["D1"].clone(), f["D2"].clone(), f["days"].clone(), f["logistics_days"].clone(), f["basis"].clone()),
            (json!("12000.00"), json!("2027-03-01"), json!("2026-11-21"), json!(93), json!(7), json!(366)));
        assert_eq!(q["lines"][0]["unit_price"], "3049.18");
        let (s, q2) = lic.req(Method::POST, &format!("{base}/quotes"), Some(&key), None,
            Some(json!({"type": "top_up", "license_id": lot_id, "add_seats": 5, "payment_terms": "postpay"}))).await;
        assert_eq!((s, q2["total"].clone()), (200, json!("16393.45")), "{q2}");
        let (s, t) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("k2"), Some(top.clone())).await;
        assert_eq!(s, 201, "{t}");
        assert_eq!(t["invoice"]["number_text"], "2026-000002");
        // Paid later: no recalculation; the seats join the lot.
        lic.today("2026-11-25");
        let (s, v) = lic.req(Method::POST,
            &format!("{base}/invoices/{}/payments", str_of(&t["invoice"], "id")),
            Some(ADMIN_TOKEN), Some("p3"), Some(json!({"method": "bank_transfer", "amount": "15245.90"}))).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(lic.get(&key, &format!("{base}/lots/{lot_id}")).await["seats"], 15);

        // Example 3: the top-up window closed on 2026-12-01.
        lic.today("2026-12-02");
        let (s, v) = lic.req(Method::POST, &format!("{base}/quotes"), Some(&key), None, Some(top.clone())).await;
        assert_code(s, &v, 422, "window_closed");
        assert_eq!(v["error"]["closed_on"], "2026-12-01");

        // Renewal with top-up priced as example 5 (on the 15-seat lot), then renewal, example 4.
        lic.today("2027-01-15");
        let (s, q) = lic.req(Method::POST, &format!("{base}/quotes"), Some(&key), None,
            Some(json!({"type": "renewal_with_top_up", "license_id": lot_id, "add_seats": 5}))).await;
        assert_eq!(s, 200, "{q}");
        let added = q["lines"].as_array().and_then(|l| l.iter().find(|l| l["kind"] == "top_up")).cloned().unwrap_or_default();
        assert_eq!((added["unit_price"].clone(), added["amount"].clone(), added["ends_on"].clone()),
            (json!("13213.11"), json!("66065.55"), json!("2028-02-29")), "{q}");
        assert_eq!(q["total"], "246065.55");
        let (s, ren) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("k3"),
            Some(json!({"type": "renewal", "license_id": lot_id}))).await;
        assert_eq!(s, 201, "{ren}");
        assert_eq!((ren["order"]["quote"]["total"].clone(), ren["invoice"]["number_text"].clone()),
            (json!("180000.00"), json!("2027-000001")), "numbering restarts each year");
        lic.today("2027-01-20");
        let (s, pay) = lic.req(Method::POST,
            &format!("{base}/invoices/{}/payments", str_of(&ren["invoice"], "id")),
            Some(ADMIN_TOKEN), Some("p4"),
            Some(json!({"method": "bank_transfer", "amount": "180000.00", "paid_on": "2027-01-15"}))).await;
        assert_eq!(s, 201, "{pay}");
        assert_eq!((pay["grant_deadline"].clone(), pay["granted_late"].clone()), (json!("2027-01-20"), json!(false)));
        let lots = lic.get(&key, &format!("{base}/lots")).await;
        let find = |id: &Value| lots.as_array().and_then(|l| l.iter().find(|x| x["id"] == *id)).cloned().unwrap_or_default();
        let old = find(&json!(lot_id));
        assert_eq!((old["status"].clone(), old["ends_on"].clone()), (json!("superseded"), json!("2027-01-20")));
        let new = find(&pay["lot_id"]);
        assert_eq!((new["starts_on"].clone(), new["ends_on"].clone(), new["seats"].clone(), new["status"].clone()),
            (json!("2027-01-20"), json!("2028-02-29"), json!(15), json!("active")));

        // The CRM view of the license.
        let st = lic.get(&key, "/api/v1/accounts/by-crm/sbercrm/A-1/license").await;
        assert_eq!((st["licensed"].clone(), st["valid_until"].clone(), st["seats"].clone(), st["seats_assigned"].clone()),
            (json!(true), json!("2028-02-29"), json!(15), json!(1)), "{st}");
        lic
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_code_and_nothing_written() {
    each_backend("2026-03-01", |lic| async move {
        lic.put_tariff("business-12", "12000.00", 100, true).await;
        let (a, key) = lic.account("A-1").await;
        let (b, bkey) = lic.account("B-1").await;
        let (b_lot, _) = lic.buy(&b, &bkey, 3, "b1").await;
        let base = format!("/api/v1/accounts/{a}");
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({"type": "initial", "tariff": "no-such", "seats": 1}), 422, "unknown_tariff"),
            (json!({"type": "initial", "tariff": "Bad Code!", "seats": 1}), 422, "unknown_tariff"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 0}), 422, "invalid_seats"),
            (json!({"type": "initial", "tariff": "business-12", "seats": -3}), 422, "invalid_seats"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 100_001}), 422, "invalid_seats"),
            (json!({"type": "initial", "tariff": "business-12", "seats": "ten"}), 422, "invalid_body"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 1, "start_date": "01.03.2026"}), 422, "invalid_date"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 1, "start_date": "2026-3-1"}), 422, "invalid_date"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 1, "start_date": "2026-02-30"}), 422, "invalid_date"),
            (json!({"type": "initial", "tariff": "business-12", "seats": 1, "colour": "red"}), 422, "invalid_body"),
            (json!({"type": "gift", "tariff": "business-12", "seats": 1}), 422, "invalid_request"),
            (json!({"type": "top_up", "license_id": b_lot, "add_seats": 1}), 404, "unknown_license"),
            (json!({"type": "top_up", "license_id": "not-a-uuid", "add_seats": 1}), 404, "unknown_license"),
            (json!({"type": "top_up", "license_id": b_lot, "add_seats": 0}), 422, "invalid_seats"),
        ];
        for (i, (body, status, code)) in cases.iter().enumerate() {
            let (s, v) = lic.req(Method::POST, &format!("{base}/quotes"), Some(&key), None, Some(body.clone())).await;
            assert_code(s, &v, *status, code);
            let (s, v) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some(&format!("bad-{i}")), Some(body.clone())).await;
            assert_code(s, &v, *status, code);
        }
        // A foreign account's lot and invoice, by id: the same 404 as one that does not exist.
        let (s, v) = lic.req(Method::GET, &format!("{base}/lots/{b_lot}"), Some(&key), None, None).await;
        assert_eq!(s, 404, "{v}");
        let (s, v) = lic.req(Method::POST, &format!("{base}/lots/{b_lot}/seats"), Some(&key), None,
            Some(json!({"user_id": "mallory"}))).await;
        assert_eq!(s, 404, "{v}");
        // Amounts with three decimals, as a string or a number; a bad date; a huge user id.
        let (_, placed) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("ok-1"),
            Some(json!({"type": "initial", "tariff": "business-12", "seats": 1}))).await;
        let inv = str_of(&placed["invoice"], "id");
        let pay = format!("{base}/invoices/{inv}/payments");
        for (i, (body, code)) in [
            (json!({"method": "bank_transfer", "amount": "12000.001"}), "invalid_amount"),
            (json!({"method": "bank_transfer", "amount": 12000.005}), "invalid_amount"),
            (json!({"method": "bank_transfer", "amount": "1e4"}), "invalid_amount"),
            (json!({"method": "bank_transfer", "amount": "12000.00", "paid_on": "2026/03/01"}), "invalid_date"),
            (json!({"method": "cash", "amount": "12000.00"}), "invalid_request"),
        ].into_iter().enumerate() {
            let (s, v) = lic.req(Method::POST, &pay, Some(ADMIN_TOKEN), Some(&format!("pay-bad-{i}")), Some(body)).await;
            assert_code(s, &v, 422, code);
        }
        let (s, v) = lic.req(Method::POST, &format!("{base}/invoices/{inv}/payments"), Some(ADMIN_TOKEN), Some(&"x".repeat(201)),
            Some(json!({"method": "bank_transfer", "amount": "12000.00"}))).await;
        assert_code(s, &v, 400, "invalid_idempotency_key");
        let (s, v) = lic.op(Method::PUT, "/api/v1/tariffs/cheap",
            Some(json!({"name": "x", "term_months": 12, "price_per_seat": "10.555",
                "features": {"max_participants": 5, "max_meeting_minutes": 60}}))).await;
        assert_code(s, &v, 422, "invalid_amount");

        // Nothing was written: one order (the valid one), one unpaid invoice, no payments, no
        // lots, no tariff "cheap"; B's lot is untouched.
        assert_eq!(lic.get(&key, &format!("{base}/orders")).await.as_array().map(Vec::len), Some(1));
        let invoices = lic.get(&key, &format!("{base}/invoices")).await;
        assert_eq!(invoices.as_array().map(Vec::len), Some(1));
        assert_eq!(lic.get(&key, &format!("{base}/payments")).await, json!([]));
        assert_eq!(lic.get(&key, &format!("{base}/lots")).await, json!([]));
        assert_eq!(lic.get(&key, &format!("{base}/seats")).await, json!([]));
        let (s, _) = lic.req(Method::GET, "/api/v1/tariffs/cheap", None, None, None).await;
        assert_eq!(s, 422);
        let blots = lic.get(&bkey, &format!("/api/v1/accounts/{b}/lots")).await;
        assert_eq!((blots.as_array().map(Vec::len), blots[0]["seats"].clone()), (Some(1), json!(3)));
        assert_eq!(lic.get(&bkey, &format!("/api/v1/accounts/{b}/seats")).await, json!([]));
        lic
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_payments_and_seats_over_http() {
    each_backend("2026-03-01", |lic| async move {
        lic.put_tariff("business-12", "12000.00", 100, true).await;
        let (a, key) = lic.account("A-1").await;
        let base = format!("/api/v1/accounts/{a}");
        let lic = std::sync::Arc::new(lic);

        // The same order sent 8 times at once with one key: one order, one invoice.
        let body = json!({"type": "initial", "tariff": "business-12", "seats": 10});
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (lic, base, key, body) = (lic.clone(), base.clone(), key.clone(), body.clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("{base}/orders"),
                        Some(&key),
                        Some("same"),
                        Some(body),
                    )
                    .await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            let (s, v) = t.await.expect("task");
            assert_eq!(s, 201, "{v}");
            ids.push(v["order"]["id"].clone());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "one order for one key");
        assert_eq!(
            lic.get(&key, &format!("{base}/orders"))
                .await
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let inv = lic.get(&key, &format!("{base}/invoices")).await[0].clone();

        // The same payment 8 times at once: one payment, one lot.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (lic, base, inv) = (lic.clone(), base.clone(), inv.clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("{base}/invoices/{}/payments", str_of(&inv, "id")),
                        Some(ADMIN_TOKEN),
                        Some("pay-same"),
                        Some(json!({"method": "bank_transfer", "amount": inv["amount"]})),
                    )
                    .await
                })
            })
            .collect();
        let mut pids = Vec::new();
        for t in tasks {
            let (s, v) = t.await.expect("task");
            assert_eq!(s, 201, "{v}");
            pids.push(v["id"].clone());
        }
        pids.dedup();
        assert_eq!(pids.len(), 1, "one payment for one key");
        assert_eq!(
            lic.get(&key, &format!("{base}/payments"))
                .await
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let lots = lic.get(&key, &format!("{base}/lots")).await;
        assert_eq!(
            lots.as_array().map(Vec::len),
            Some(1),
            "granted once: {lots}"
        );
        let lot_id = str_of(&lots[0], "id");

        // 15 users at once on a 10-seat lot: exactly 10 seats, never more.
        let tasks: Vec<_> = (0..15)
            .map(|i| {
                let (lic, base, key, lot_id) =
                    (lic.clone(), base.clone(), key.clone(), lot_id.clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("{base}/lots/{lot_id}/seats"),
                        Some(&key),
                        None,
                        Some(json!({"user_id": format!("user{i}")})),
                    )
                    .await
                })
            })
            .collect();
        let (mut ok, mut full) = (0, 0);
        for t in tasks {
            let (s, v) = t.await.expect("task");
            match s {
                201 => ok += 1,
                _ => {
                    assert_code(s, &v, 422, "no_free_seat");
                    full += 1;
                }
            }
        }
        assert_eq!((ok, full), (10, 5));
        assert_eq!(
            lic.get(&key, &format!("{base}/seats"))
                .await
                .as_array()
                .map(Vec::len),
            Some(10)
        );

        // Parallel renewals of one lot (distinct keys): one order; the others are told one is
        // in progress. Then parallel payments of its invoice (distinct keys): one grant.
        lic.today("2026-12-15");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (lic, base, key, lot_id) =
                    (lic.clone(), base.clone(), key.clone(), lot_id.clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("{base}/orders"),
                        Some(&key),
                        Some(&format!("ren-{i}")),
                        Some(json!({"type": "renewal", "license_id": lot_id})),
                    )
                    .await
                })
            })
            .collect();
        let (mut placed, mut refused, mut renewal) = (0, 0, Value::Null);
        for t in tasks {
            let (s, v) = t.await.expect("task");
            if s == 201 {
                placed += 1;
                renewal = v;
            } else {
                assert_code(s, &v, 422, "order_in_progress");
                refused += 1;
            }
        }
        assert_eq!((placed, refused), (1, 5));
        let ren_inv = renewal["invoice"].clone();
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (lic, base, inv) = (lic.clone(), base.clone(), ren_inv.clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("{base}/invoices/{}/payments", str_of(&inv, "id")),
                        Some(ADMIN_TOKEN),
                        Some(&format!("ren-pay-{i}")),
                        Some(json!({"method": "bank_transfer", "amount": inv["amount"]})),
                    )
                    .await
                })
            })
            .collect();
        let mut paid = 0;
        for t in tasks {
            let (s, v) = t.await.expect("task");
            if s == 201 {
                paid += 1;
            } else {
                assert_code(s, &v, 422, "invoice_already_paid");
            }
        }
        assert_eq!(paid, 1, "one grant per invoice");
        let lots = lic.get(&key, &format!("{base}/lots")).await;
        assert_eq!(
            lots.as_array().map(Vec::len),
            Some(2),
            "old + renewed: {lots}"
        );
        assert_eq!(
            lic.get(&key, &format!("{base}/payments"))
                .await
                .as_array()
                .map(Vec::len),
            Some(2)
        );

        // Invoice numbers under parallel orders of several accounts: gap-free and unique.
        let mut accounts = Vec::new();
        for i in 0..4 {
            accounts.push(lic.account(&format!("N-{i}")).await);
        }
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (lic, (acc, key)) = (lic.clone(), accounts[i % 4].clone());
                tokio::spawn(async move {
                    lic.req(
                        Method::POST,
                        &format!("/api/v1/accounts/{acc}/orders"),
                        Some(&key),
                        Some(&format!("n-{i}")),
                        Some(json!({"type": "initial", "tariff": "business-12", "seats": 1})),
                    )
                    .await
                })
            })
            .collect();
        let mut numbers = Vec::new();
        for t in tasks {
            let (s, v) = t.await.expect("task");
            assert_eq!(s, 201, "{v}");
            numbers.push(v["invoice"]["number"].as_i64().unwrap_or(-1));
        }
        numbers.sort_unstable();
        // Invoices 1 (initial) and 2 (the renewal) came before.
        assert_eq!(numbers, (3..=14).collect::<Vec<i64>>());
        match std::sync::Arc::try_unwrap(lic) {
            Ok(lic) => lic,
            Err(_) => panic!("tasks still hold the server"),
        }
    })
    .await;
}

/// Who may call what: anonymous, another account's key, the account's own key, the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_table() {
    let lic = Lic::spawn(None, "2026-03-01", |_| {}).await;
    lic.put_tariff("business-12", "12000.00", 100, true).await;
    let (a, akey) = lic.account("A-1").await;
    let (b, bkey) = lic.account("B-1").await;
    let (lot, inv) = lic.buy(&a, &akey, 2, "a1").await;
    let (b_lot, _) = lic.buy(&b, &bkey, 1, "b1").await;
    let doc = str_of(
        &lic.get(&akey, &format!("/api/v1/accounts/{a}/documents"))
            .await[0],
        "id",
    );
    let (_, unpaid) = lic
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{a}/orders"),
            Some(&akey),
            Some("u1"),
            Some(json!({"type": "initial", "tariff": "business-12", "seats": 1})),
        )
        .await;
    let unpaid_inv = str_of(&unpaid["invoice"], "id");
    let acc = format!("/api/v1/accounts/{a}");

    // Expected status per caller: (anonymous, other account, own account, operator).
    // `OK` means the authorization passed (no 401/403, no "unknown account" 404).
    const OK: u16 = 0;
    let quote = json!({"type": "initial", "tariff": "business-12", "seats": 1});
    let tariff = json!({"name": "t", "term_months": 12, "price_per_seat": "1.00",
        "features": {"max_participants": 5, "max_meeting_minutes": 60}});
    let rows: Vec<(Method, String, Option<Value>, [u16; 4])> = vec![
        (
            Method::GET,
            "/api/v1/tariffs".into(),
            None,
            [OK, OK, OK, OK],
        ),
        (
            Method::PUT,
            "/api/v1/tariffs/t-auth".into(),
            Some(tariff),
            [401, 403, 403, OK],
        ),
        (
            Method::POST,
            "/api/v1/tariffs/t-auth/archive".into(),
            None,
            [401, 403, 403, OK],
        ),
        (
            Method::GET,
            "/api/v1/promotions".into(),
            None,
            [401, 403, 403, OK],
        ),
        (
            Method::POST,
            "/api/v1/promotions".into(),
            Some(json!({"name": "p", "discount": {"kind": "percent", "percent": "5"}})),
            [401, 403, 403, OK],
        ),
        (
            Method::POST,
            "/api/v1/accounts".into(),
            Some(
                json!({"name": "x", "kind": "individual", "crm_system": "s", "crm_external_id": "auth"}),
            ),
            [401, 403, 403, OK],
        ),
        (Method::GET, acc.clone(), None, [401, 404, OK, OK]),
        (
            Method::GET,
            "/api/v1/accounts/by-crm/sbercrm/A-1".into(),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            "/api/v1/accounts/by-crm/sbercrm/A-1/license".into(),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/api-keys"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/api-keys"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::DELETE,
            format!("{acc}/api-keys/pk_nosuchkey"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/orders/{}/sign", str_of(&unpaid["order"], "id")),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/quotes"),
            Some(quote.clone()),
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/orders"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/orders/{}", str_of(&unpaid["order"], "id")),
            None,
            [401, 404, OK, OK],
        ),
        (Method::GET, format!("{acc}/lots"), None, [401, 404, OK, OK]),
        (
            Method::GET,
            format!("{acc}/lots/{lot}"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/lots/{b_lot}"),
            None,
            [401, 404, 404, 404],
        ),
        (
            Method::GET,
            format!("{acc}/seats"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/lots/{lot}/seats"),
            Some(json!({"user_id": "u-auth"})),
            [401, 404, OK, OK],
        ),
        (
            Method::DELETE,
            format!("{acc}/seats/u-auth"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/invoices"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/invoices/{inv}"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/invoices/{inv}.html"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/invoices/{inv}/retro-discounts"),
            Some(json!({"discount": "100.00", "reason": "loyalty"})),
            [401, 404, 403, OK],
        ),
        (
            Method::GET,
            format!("{acc}/corrective-invoices"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/payments"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/documents"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/documents/{doc}.html"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/documents/{doc}/objection"),
            Some(json!({"reason": "wrong date"})),
            [401, 404, OK, OK],
        ),
        (
            Method::GET,
            format!("{acc}/refunds"),
            None,
            [401, 404, OK, OK],
        ),
        (
            Method::POST,
            format!("{acc}/suspension"),
            Some(json!({"reason": "audit"})),
            [401, 404, 403, OK],
        ),
        (
            Method::DELETE,
            format!("{acc}/suspension"),
            None,
            [401, 404, 403, OK],
        ),
        (
            Method::POST,
            format!("{acc}/termination"),
            Some(json!({"kind": "sideways"})),
            [401, 404, 403, OK],
        ),
        (
            Method::POST,
            format!("{acc}/orders/{}/cancel", str_of(&unpaid["order"], "id")),
            None,
            [401, 404, OK, OK],
        ),
    ];
    let callers: [Option<&str>; 4] = [None, Some(&bkey), Some(&akey), Some(ADMIN_TOKEN)];
    let names = ["anonymous", "other account", "own account", "operator"];
    for (method, path, body, expected) in &rows {
        for (i, caller) in callers.iter().enumerate() {
            let (s, v) = lic
                .req(method.clone(), path, *caller, None, body.clone())
                .await;
            let want = expected[i];
            if want == OK {
                // A 404 of the rules themselves (e.g. an order already cancelled by the row's
                // previous caller) is fine; an unknown account or a refusal is not.
                assert!(
                    ![401, 403].contains(&s) && v["error"]["code"] != "unknown_account",
                    "{method} {path} as {}: {s} {v}",
                    names[i]
                );
            } else {
                assert_eq!(s, want, "{method} {path} as {}: {v}", names[i]);
            }
        }
    }
    // Payments: the account pays by card (refused here by the rules, not by authorization);
    // a bank transfer is the operator's; strangers get nothing.
    let pay = format!("{acc}/invoices/{unpaid_inv}/payments");
    let card = json!({"method": "card", "amount": "12000.00"});
    let (s, _) = lic
        .req(Method::POST, &pay, None, Some("x1"), Some(card.clone()))
        .await;
    assert_eq!(s, 401);
    let (s, _) = lic
        .req(
            Method::POST,
            &pay,
            Some(&bkey),
            Some("x1"),
            Some(card.clone()),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = lic
        .req(
            Method::POST,
            &pay,
            Some(&akey),
            Some("x1"),
            Some(json!({"method": "bank_transfer", "amount": "12000.00"})),
        )
        .await;
    assert_eq!(s, 403);
    // A forged or revoked-looking key is a 401, never anonymous.
    // The last character changed (to one it is not: a key ending in "x" once made this the key).
    let swap = if akey.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{swap}", &akey[..akey.len() - 1]);
    let (s, v) = lic.req(Method::GET, &acc, Some(&forged), None, None).await;
    assert_code(s, &v, 401, "unauthorized");
    // B's data is as it was.
    let blots = lic.get(&bkey, &format!("/api/v1/accounts/{b}/lots")).await;
    assert_eq!(
        (blots.as_array().map(Vec::len), blots[0]["seats"].clone()),
        (Some(1), json!(1))
    );
    assert_eq!(
        lic.get(&bkey, &format!("/api/v1/accounts/{b}/orders"))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        lic.get(&bkey, &format!("/api/v1/accounts/{b}/seats")).await,
        json!([])
    );
    lic.finish().await;
}

/// Postpay: the order is granted when signed (5.1, 5.2.3), its invoice paid later without a
/// second grant; the signature takes an Idempotency-Key; several signatures at once grant once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpay_orders_are_granted_at_signing_and_paid_later() {
    each_backend("2026-03-01", |lic| async move {
        lic.put_tariff("business-12", "12000.00", 100, true).await;
        let (a, key) = lic.account("A-1").await;
        let base = format!("/api/v1/accounts/{a}");
        let (lot, _) = lic.buy(&a, &key, 10, "b1").await;

        // Example 2: a postpay top-up placed 2026-11-21; nothing granted until it is signed.
        lic.today("2026-11-21");
        let (s, top) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("top"),
            Some(json!({"type": "top_up", "license_id": lot, "add_seats": 5, "payment_terms": "postpay"}))).await;
        assert_eq!(s, 201, "{top}");
        assert_eq!((top["invoice"]["amount"].clone(), top["invoice"]["due_on"].clone()), (json!("16393.45"), Value::Null));
        assert_eq!(lic.get(&key, &format!("{base}/lots/{lot}")).await["seats"], 10);
        let order = str_of(&top["order"], "id");
        let sign = format!("{base}/orders/{order}/sign");
        let (s, v) = lic.req(Method::POST, &sign, Some(&key), None, None).await;
        assert_code(s, &v, 400, "idempotency_key_required");

        // Signed on Monday: the seats are there at once; the invoice is due 10 business days on.
        lic.today("2026-11-23");
        let (s, signed) = lic.req(Method::POST, &sign, Some(&key), Some("sig-1"), None).await;
        assert_eq!(s, 201, "{signed}");
        assert_eq!((signed["lot_id"].clone(), signed["signed_on"].clone(), signed["grant_deadline"].clone(),
            signed["payment_due_on"].clone(), signed["order"]["status"].clone()),
            (json!(lot), json!("2026-11-23"), json!("2026-11-26"), json!("2026-12-07"), json!("signed")));
        assert_eq!((signed["invoice"]["status"].clone(), signed["invoice"]["due_on"].clone()),
            (json!("issued"), json!("2026-12-07")));
        assert_eq!(lic.get(&key, &format!("{base}/lots/{lot}")).await["seats"], 15);
        let inv_id = str_of(&top["invoice"], "id");
        let inv = lic.get(&key, &format!("{base}/invoices/{inv_id}")).await;
        assert_eq!((inv["status"].clone(), inv["due_on"].clone()), (json!("issued"), json!("2026-12-07")));
        let (s, again) = lic.req(Method::POST, &sign, Some(&key), Some("sig-1"), None).await;
        assert_eq!((s, again["signed_on"].clone(), again["lot_id"].clone()), (201, json!("2026-11-23"), json!(lot)));
        let (s, v) = lic.req(Method::POST, &sign, Some(ADMIN_TOKEN), Some("sig-2"), None).await;
        assert_code(s, &v, 422, "order_already_signed");
        assert_eq!(v["error"]["signed_on"], "2026-11-23");
        assert_eq!(lic.get(&key, &format!("{base}/lots/{lot}")).await["seats"], 15, "granted once");

        // A prepay order is granted by its payment, not signed.
        let (_, pre) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("pre"),
            Some(json!({"type": "top_up", "license_id": lot, "add_seats": 1}))).await;
        let (s, v) = lic.req(Method::POST, &format!("{base}/orders/{}/sign", str_of(&pre["order"], "id")),
            Some(&key), Some("sig-3"), None).await;
        assert_code(s, &v, 422, "order_not_postpay");

        // The payment registered later settles the invoice and grants nothing more.
        lic.today("2026-12-01");
        let (s, p) = lic.req(Method::POST, &format!("{base}/invoices/{inv_id}/payments"), Some(ADMIN_TOKEN),
            Some("pay-top"), Some(json!({"method": "bank_transfer", "amount": "16393.45"}))).await;
        assert_eq!(s, 201, "{p}");
        assert_eq!((p["lot_id"].clone(), p["granted_on"].clone(), p["granted_late"].clone()),
            (json!(lot), json!("2026-11-23"), json!(false)));
        assert_eq!(lic.get(&key, &format!("{base}/lots/{lot}")).await["seats"], 15, "not granted twice");
        assert_eq!(lic.get(&key, &format!("{base}/lots")).await.as_array().map(Vec::len), Some(1));
        assert_eq!(lic.get(&key, &format!("{base}/orders/{order}")).await["order"]["status"], "paid");
        let (s, v) = lic.req(Method::POST, &sign, Some(&key), Some("sig-4"), None).await;
        assert_code(s, &v, 422, "order_not_signable");

        // A postpay initial order signed by several requests at once (distinct keys): one lot.
        let (_, init) = lic.req(Method::POST, &format!("{base}/orders"), Some(&key), Some("init"),
            Some(json!({"type": "initial", "tariff": "business-12", "seats": 2, "payment_terms": "postpay"}))).await;
        let sign = format!("{base}/orders/{}/sign", str_of(&init["order"], "id"));
        let lic = std::sync::Arc::new(lic);
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (lic, sign, key) = (lic.clone(), sign.clone(), key.clone());
                tokio::spawn(async move {
                    lic.req(Method::POST, &sign, Some(&key), Some(&format!("par-{i}")), None).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let (s, v) = t.await.expect("task");
            if s == 201 {
                ok += 1;
            } else {
                assert_code(s, &v, 422, "order_already_signed");
            }
        }
        assert_eq!(ok, 1, "one signature");
        let lots = lic.get(&key, &format!("{base}/lots")).await;
        assert_eq!(lots.as_array().map(Vec::len), Some(2), "one new lot: {lots}");
        match std::sync::Arc::try_unwrap(lic) {
            Ok(lic) => lic,
            Err(_) => panic!("tasks still hold the server"),
        }
    })
    .await;
}

/// API keys: listed without secrets, revoked at once (401 on the next call). An account's key
/// may revoke its account's keys but never the last active one; the operator may revoke any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_listed_without_secrets_and_revoked_at_once() {
    let lic = Lic::spawn(None, "2026-03-01", |_| {}).await;
    let (a, k1) = lic.account("A-1").await;
    let (b, bkey) = lic.account("B-1").await;
    let keys = format!("/api/v1/accounts/{a}/api-keys");
    let id_of = |bearer: &str| bearer.split('.').next().unwrap_or_default().to_owned();
    let (s, v) = lic.req(Method::POST, &keys, Some(&k1), None, None).await;
    assert_eq!(s, 201, "{v}");
    let k2 = str_of(&v, "bearer");
    let (s, v) = lic
        .req(Method::POST, &keys, Some(ADMIN_TOKEN), None, None)
        .await;
    assert_eq!(s, 201, "{v}");
    let k3 = str_of(&v, "bearer");

    // The list: ids and times, never a secret or its hash; used keys show when.
    let list = lic.get(&k1, &keys).await;
    let items = list.as_array().cloned().unwrap_or_default();
    assert_eq!(
        items
            .iter()
            .map(|k| str_of(k, "key_id"))
            .collect::<Vec<_>>(),
        vec![id_of(&k1), id_of(&k2), id_of(&k3)]
    );
    for k in &items {
        let mut fields: Vec<&str> = k
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["created_at", "key_id", "last_used_at", "revoked_at"],
            "{k}"
        );
        assert!(k["revoked_at"].is_null());
    }
    assert!(items[0]["last_used_at"].is_string(), "k1 was used: {list}");
    let text = list.to_string();
    for secret in [&k1, &k2, &k3] {
        let s = secret.split('.').nth(1).unwrap_or("x");
        assert!(!text.contains(s), "a secret leaked: {text}");
    }
    assert_eq!(
        lic.get(ADMIN_TOKEN, &keys).await.as_array().map(Vec::len),
        Some(3)
    );
    let (s, _) = lic.req(Method::GET, &keys, None, None, None).await;
    assert_eq!(s, 401);
    let (s, _) = lic.req(Method::GET, &keys, Some(&bkey), None, None).await;
    assert_eq!(s, 404);

    // Another account's key, or a key of another account through this path: 404.
    let (s, v) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k2)),
            Some(&bkey),
            None,
            None,
        )
        .await;
    assert_code(s, &v, 404, "unknown_account");
    let (s, v) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&bkey)),
            Some(&k1),
            None,
            None,
        )
        .await;
    assert_code(s, &v, 404, "not_found");
    let (s, _) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k2)),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);
    lic.get(&bkey, &format!("/api/v1/accounts/{b}")).await;

    // k1 revokes k2: k2 is refused at once; revoking again answers with the first time.
    let (s, r) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k2)),
            Some(&k1),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert!(
        r["revoked_at"].is_string() && r.get("secret").is_none(),
        "{r}"
    );
    let (s, v) = lic
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{a}"),
            Some(&k2),
            None,
            None,
        )
        .await;
    assert_code(s, &v, 401, "unauthorized");
    let (s, again) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k2)),
            Some(&k1),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, again["revoked_at"].clone()),
        (200, r["revoked_at"].clone())
    );

    // k3 revokes itself (k1 remains); then k1 is the last active key and may not revoke itself.
    let (s, v) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k3)),
            Some(&k3),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = lic.req(Method::GET, &keys, Some(&k3), None, None).await;
    assert_code(s, &v, 401, "unauthorized");
    let (s, v) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k1)),
            Some(&k1),
            None,
            None,
        )
        .await;
    assert_code(s, &v, 422, "last_active_key");
    lic.get(&k1, &format!("/api/v1/accounts/{a}")).await;

    // The operator may revoke the last key (a leaked one), and issue a new one.
    let (s, v) = lic
        .req(
            Method::DELETE,
            &format!("{keys}/{}", id_of(&k1)),
            Some(ADMIN_TOKEN),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = lic
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{a}"),
            Some(&k1),
            None,
            None,
        )
        .await;
    assert_code(s, &v, 401, "unauthorized");
    let listed = lic.get(ADMIN_TOKEN, &keys).await;
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().all(|k| k["revoked_at"].is_string())),
        "{listed}"
    );
    let (s, v) = lic
        .req(Method::POST, &keys, Some(ADMIN_TOKEN), None, None)
        .await;
    assert_eq!(s, 201, "{v}");
    lic.get(&str_of(&v, "bearer"), &format!("/api/v1/accounts/{a}"))
        .await;
    // B was never touched.
    lic.get(&bkey, &format!("/api/v1/accounts/{b}")).await;
    lic.finish().await;
}

/// Two keys of one account revoking each other at once: the account keeps one active key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_revoking_each_other_at_once_leave_one_active() {
    let lic = Lic::spawn(None, "2026-03-01", |_| {}).await;
    let (a, k1) = lic.account("A-1").await;
    let keys = format!("/api/v1/accounts/{a}/api-keys");
    let (_, v) = lic.req(Method::POST, &keys, Some(&k1), None, None).await;
    let k2 = str_of(&v, "bearer");
    let id_of = |bearer: &str| bearer.split('.').next().unwrap_or_default().to_owned();
    let lic = std::sync::Arc::new(lic);
    let tasks: Vec<_> = [
        (k1.clone(), id_of(&k2)),
        (k2.clone(), id_of(&k1)),
        (k1.clone(), id_of(&k1)),
        (k2.clone(), id_of(&k2)),
    ]
    .into_iter()
    .map(|(bearer, target)| {
        let (lic, keys) = (lic.clone(), keys.clone());
        tokio::spawn(async move {
            lic.req(
                Method::DELETE,
                &format!("{keys}/{target}"),
                Some(&bearer),
                None,
                None,
            )
            .await
        })
    })
    .collect();
    for t in tasks {
        let (s, v) = t.await.expect("task");
        assert!([200, 401, 422].contains(&s), "{s} {v}");
    }
    let listed = lic.get(ADMIN_TOKEN, &keys).await;
    let active = listed
        .as_array()
        .map(|l| l.iter().filter(|k| k["revoked_at"].is_null()).count());
    assert_eq!(active, Some(1), "{listed}");
    match std::sync::Arc::try_unwrap(lic) {
        Ok(lic) => lic.finish().await,
        Err(_) => panic!("tasks still hold the server"),
    }
}

/// Claims of a JWT, unverified (the test only reads what the server put in).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licensed_meetings_need_a_seat_and_keep_the_tariff_limits() {
    let lic = Lic::spawn(None, "2026-03-01", |c| c.require_license = true).await;
    lic.put_tariff("business-12", "12000.00", 2, false).await;
    let (a, key) = lic.account("A-1").await;
    let (lot, _) = lic.buy(&a, &key, 2, "a1").await;
    let (s, v) = lic
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{a}/lots/{lot}/seats"),
            Some(&key),
            None,
            Some(json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let create = |bearer: Option<String>, body: Value| {
        let lic = &lic;
        async move {
            lic.req(
                Method::POST,
                "/api/v1/meetings",
                bearer.as_deref(),
                None,
                Some(body),
            )
            .await
        }
    };

    let (s, v) = create(None, json!({"title": "Demo"})).await;
    assert_code(s, &v, 403, "license_required");
    let (s, v) = create(
        Some(key.clone()),
        json!({"title": "Demo", "host_user_id": "bob"}),
    )
    .await;
    assert_code(s, &v, 403, "no_seat");
    assert_eq!(
        v["error"]["message"],
        "bob holds no seat on an active license of this account."
    );
    let (s, v) = create(Some(key.clone()), json!({"title": "Demo"})).await;
    assert_code(s, &v, 422, "invalid_request");
    let (s, v) = create(None, json!({"title": "Demo", "host_user_id": "alice"})).await;
    assert_code(s, &v, 401, "unauthorized");
    let (s, m) = create(
        Some(key.clone()),
        json!({"title": "Demo", "host_user_id": "alice"}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        claims(&str_of(&m, "host_token"))["grants"]["screen_share"],
        false
    );
    let id = str_of(&m, "id");
    let invite = str_of(&m, "invite");

    // Three tokens while the room is empty; the third joiner finds it full.
    let mut tokens = Vec::new();
    for name in ["Gail", "Gus", "Gwen"] {
        let (s, v) = lic
            .req(
                Method::POST,
                &format!("/api/v1/meetings/{id}/join"),
                None,
                None,
                Some(json!({"display_name": name, "invite": invite})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            claims(&str_of(&v, "token"))["grants"]["screen_share"],
            false
        );
        tokens.push(str_of(&v, "token"));
    }
    let (mut c1, _) = lic.app.join(&tokens[0]).await;
    let (_c2, _) = lic.app.join(&tokens[1]).await;
    let mut c3 = lic.app.connect().await;
    c3.send(json!({"type": "join", "token": tokens[2]})).await;
    let closed = c3.expect_close().await;
    assert_eq!(closed.code, 4005, "{closed:?}");
    assert!(closed.reason.contains("participant limit"), "{closed:?}");
    let (s, v) = lic
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{id}/join"),
            None,
            None,
            Some(json!({"display_name": "Late", "invite": invite})),
        )
        .await;
    assert_code(s, &v, 403, "participant_limit");

    // The tariff has no screen sharing: a screen track is refused before the media plane.
    c1.send(json!({"type": "publish_offer", "sdp": "v=0", "tracks": [{"mid": "0", "source": "screen"}]})).await;
    let e = c1.expect_type("error").await;
    assert_eq!(e["code"], "not_allowed", "{e}");

    // Suspension blocks new meetings and joins with its reason.
    let (s, v) = lic
        .op(
            Method::POST,
            &format!("/api/v1/accounts/{a}/suspension"),
            Some(json!({"reason": "non-payment"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = create(
        Some(key.clone()),
        json!({"title": "Demo", "host_user_id": "alice"}),
    )
    .await;
    assert_code(s, &v, 403, "account_suspended");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("non-payment"),
        "{v}"
    );
    let (s, v) = lic
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{id}/join"),
            None,
            None,
            Some(json!({"display_name": "Late", "invite": invite})),
        )
        .await;
    assert_code(s, &v, 403, "account_suspended");
    lic.finish().await;
}

#[tokio::test]
async fn without_the_license_flag_the_landing_page_still_creates_meetings() {
    let lic = Lic::spawn(None, "2026-03-01", |_| {}).await;
    let (s, v) = lic
        .req(
            Method::POST,
            "/api/v1/meetings",
            None,
            None,
            Some(json!({"title": "Open"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        claims(&str_of(&v, "host_token"))["grants"]["screen_share"],
        true
    );
    lic.finish().await;
}
