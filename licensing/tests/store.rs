//! Storage tests: the whole order → invoice → payment → lot flow, idempotency and concurrency.
//! Each runs on a temporary SQLite file, and again on PostgreSQL when
//! `PARLEY_TEST_POSTGRES_URL` is set (in a schema of its own, dropped at the end).

use std::sync::Arc;

use chrono::NaiveDate;
use parley_licensing::calendar::parse_date;
use parley_licensing::discount::{DiscountKind, Promotion};
use parley_licensing::service::{ManualClock, Service};
use parley_licensing::store::{PaymentMethod, Store};
use parley_licensing::termination::TerminationKind;
use parley_licensing::*;
use rust_decimal_macros::dec;
use sqlx::Executor;
use uuid::Uuid;

fn d(s: &str) -> NaiveDate {
    parse_date(s).unwrap()
}

struct Db {
    url: String,
    schema: Option<String>,
    file: Option<std::path::PathBuf>,
}

impl Db {
    async fn cleanup(self, store: Store) {
        store.close().await;
        if let Some(f) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
        if let Some(s) = self.schema {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&self.url).await.unwrap();
            pool.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

fn databases() -> Vec<Db> {
    let file =
        std::env::temp_dir().join(format!("parley-licensing-{}.db", Uuid::new_v4().simple()));
    let mut v = vec![Db {
        url: format!("sqlite://{}?mode=rwc", file.display()),
        schema: None,
        file: Some(file),
    }];
    if let Ok(url) = std::env::var("PARLEY_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        v.push(Db {
            url,
            schema: Some(format!("lic_{}", Uuid::new_v4().simple())),
            file: None,
        });
    }
    v
}

fn tariff(code: &str, price: &str, trial: bool) -> Tariff {
    Tariff {
        code: TariffCode::parse(code).unwrap(),
        name: code.to_string(),
        term_months: 12,
        price_per_seat: price.parse().unwrap(),
        vat: VatMode::Exempt,
        features: Features {
            max_participants: 50,
            max_meeting_minutes: 240,
            recording: Some(Recording {
                storage_quota_mb: 1024,
                retention_days: 30,
            }),
            sdk_embedding: true,
            results_to_recipients: true,
            screen_share: true,
        },
        trial,
        archived: false,
    }
}

async fn setup(db: &Db, today: &str) -> (Service, Arc<ManualClock>, Account) {
    let store = Store::connect_in_schema(&db.url, db.schema.as_deref())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(d(today)));
    let svc = Service::new(
        store,
        BusinessCalendar::default(),
        clock.clone(),
        "100000".parse().unwrap(),
    );
    svc.upsert_tariff(&tariff("business-12", "12000.00", false))
        .await
        .unwrap();
    svc.upsert_tariff(&tariff("trial", "0", true))
        .await
        .unwrap();
    let acc = NewAccount::parse(
        "ООО Ромашка",
        AccountKind::LegalEntity,
        Some("7707083893"),
        true,
        "sbercrm",
        "A-1",
        true,
        Some("Москва"),
    )
    .unwrap();
    let acc = svc.create_account(&acc).await.unwrap();
    (svc, clock, acc)
}

fn req(v: serde_json::Value) -> QuoteRequest {
    serde_json::from_value(v).unwrap()
}

/// Places and pays an initial order of `seats` today; returns the lot id.
async fn buy(svc: &Service, acc: Uuid, seats: i64, key: &str) -> Uuid {
    let placed = svc
        .place_order(
            acc,
            key,
            &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": seats})),
        )
        .await
        .unwrap();
    let inv = placed.invoice.unwrap();
    svc.register_payment(
        acc,
        inv.id,
        &format!("pay-{key}"),
        PaymentMethod::BankTransfer,
        inv.amount,
        None,
    )
    .await
    .unwrap()
    .lot_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_quote_order_pay_top_up_renew() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let a = acc.id;
        let q = svc
            .quote(
                a,
                &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 10})),
            )
            .await
            .unwrap();
        assert_eq!(q.total.to_string(), "120000.00");
        let placed = svc
            .place_order(
                a,
                "k1",
                &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 10})),
            )
            .await
            .unwrap();
        assert_eq!(
            placed.order.quote, q,
            "a quote and the order placed from it agree"
        );
        let inv = placed.invoice.clone().unwrap();
        assert_eq!(inv.number_text, "2026-000001");
        // A retry with the same key returns the first result; another body is a conflict.
        let again = svc
            .place_order(
                a,
                "k1",
                &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 10})),
            )
            .await
            .unwrap();
        assert_eq!(again.order.id, placed.order.id);
        assert_eq!(again.invoice.as_ref().map(|i| i.id), Some(inv.id));
        let conflict = svc
            .place_order(
                a,
                "k1",
                &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 11})),
            )
            .await
            .unwrap_err();
        assert_eq!(conflict.code(), "idempotency_conflict");

        // Legal entities cannot pay by card; a wrong amount is refused; nothing is granted.
        assert_eq!(
            svc.register_payment(a, inv.id, "p0", PaymentMethod::Card, inv.amount, None)
                .await
                .unwrap_err()
                .code(),
            "card_not_allowed"
        );
        assert_eq!(
            svc.register_payment(
                a,
                inv.id,
                "p0",
                PaymentMethod::BankTransfer,
                "1.00".parse().unwrap(),
                None
            )
            .await
            .unwrap_err()
            .code(),
            "payment_amount_mismatch"
        );
        assert!(svc.lots(a).await.unwrap().is_empty());

        let pay = svc
            .register_payment(
                a,
                inv.id,
                "p1",
                PaymentMethod::BankTransfer,
                inv.amount,
                None,
            )
            .await
            .unwrap();
        assert_eq!(pay.granted_on, d("2026-03-01"));
        // 5 business days for an initial purchase, from Sunday 2026-03-01.
        assert_eq!(pay.grant_deadline, d("2026-03-06"));
        assert!(!pay.granted_late);
        let retry = svc
            .register_payment(
                a,
                inv.id,
                "p1",
                PaymentMethod::BankTransfer,
                inv.amount,
                None,
            )
            .await
            .unwrap();
        assert_eq!(retry.id, pay.id);
        assert_eq!(
            svc.register_payment(
                a,
                inv.id,
                "p2",
                PaymentMethod::BankTransfer,
                inv.amount,
                None
            )
            .await
            .unwrap_err()
            .code(),
            "invoice_already_paid"
        );
        let lots = svc.lots(a).await.unwrap();
        assert_eq!(lots.len(), 1);
        let lot = lots[0].clone();
        assert_eq!(
            (lot.starts_on, lot.ends_on, lot.seats.get(), lot.status),
            (d("2026-03-01"), d("2027-03-01"), 10, LotStatus::Active)
        );

        // Transfer document and reminders.
        let docs = svc.transfer_documents(a).await.unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (
                docs[0].kind.as_str(),
                docs[0].grant_date,
                docs[0].status.as_str()
            ),
            ("upd", d("2026-03-01"), "sent")
        );
        let events = svc.store().events_for(a).await.unwrap();
        let due: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "lot_ending")
            .map(|e| e.due_on.to_string())
            .collect();
        assert_eq!(
            due,
            vec![
                "2026-12-01",
                "2027-01-30",
                "2027-02-15",
                "2027-02-22",
                "2027-02-28"
            ]
        );

        // Seats: assign up to the count, then refuse; enforcement follows the seat.
        for i in 0..10 {
            svc.assign_seat(a, lot.id, &format!("user{i}"))
                .await
                .unwrap();
        }
        assert_eq!(
            svc.assign_seat(a, lot.id, "user10")
                .await
                .unwrap_err()
                .code(),
            "no_free_seat"
        );
        assert_eq!(
            svc.assign_seat(a, lot.id, "user0")
                .await
                .unwrap_err()
                .code(),
            "seat_already_assigned"
        );
        assert_eq!(svc.may_host(a, "user3").await.unwrap().max_participants, 50);
        assert_eq!(
            svc.may_host(a, "stranger").await.unwrap_err().code(),
            "no_seat"
        );
        svc.suspend(a, "non-payment").await.unwrap();
        assert_eq!(
            svc.may_host(a, "user3").await.unwrap_err().code(),
            "account_suspended"
        );
        assert_eq!(
            svc.may_join(a).await.unwrap_err().code(),
            "account_suspended"
        );
        svc.resume(a).await.unwrap();
        svc.reclaim_seat(a, "user9").await.unwrap();
        svc.assign_seat(a, lot.id, "user10").await.unwrap();

        // Top-up: example 1 of the spec, placed 2026-11-21.
        clock.set(d("2026-11-21"));
        let lid = lot.id.to_string();
        let top = svc
            .place_order(
                a,
                "k2",
                &req(serde_json::json!({"type": "top_up", "license_id": lid, "add_seats": 5})),
            )
            .await
            .unwrap();
        assert_eq!(top.order.quote.total.to_string(), "15245.90");
        let inv2 = top.invoice.unwrap();
        assert_eq!(inv2.number_text, "2026-000002");
        // Paid later: no recalculation (5.3.4.2); the seats join the lot.
        clock.set(d("2026-11-25"));
        svc.register_payment(
            a,
            inv2.id,
            "p3",
            PaymentMethod::BankTransfer,
            "15245.90".parse().unwrap(),
            None,
        )
        .await
        .unwrap();
        let lot = svc.store().lot(a, lot.id).await.unwrap();
        assert_eq!(lot.seats.get(), 15);

        // Renewal: example 4, placed 2027-01-15, paid and granted 2027-01-20.
        clock.set(d("2027-01-15"));
        let ren = svc
            .place_order(
                a,
                "k3",
                &req(serde_json::json!({"type": "renewal", "license_id": lid})),
            )
            .await
            .unwrap();
        assert_eq!(ren.order.quote.total.to_string(), "180000.00");
        assert_eq!(
            ren.invoice.as_ref().unwrap().number_text,
            "2027-000001",
            "numbering restarts each year"
        );
        let dup = svc.place_order(a, "k4", &req(serde_json::json!({"type": "renewal_with_top_up", "license_id": lid, "add_seats": 1}))).await.unwrap_err();
        assert_eq!(dup.code(), "order_in_progress");
        clock.set(d("2027-01-20"));
        let pay = svc
            .register_payment(
                a,
                ren.invoice.unwrap().id,
                "p4",
                PaymentMethod::BankTransfer,
                "180000.00".parse().unwrap(),
                Some(d("2027-01-15")),
            )
            .await
            .unwrap();
        // 3 business days from 15 January 2027 is the 20th: granted on time.
        assert_eq!(pay.grant_deadline, d("2027-01-20"));
        assert!(!pay.granted_late);
        let lots = svc.lots(a).await.unwrap();
        let old = lots.iter().find(|l| l.id == lot.id).unwrap();
        assert_eq!(
            (old.status, old.ends_on),
            (LotStatus::Superseded, d("2027-01-20"))
        );
        let new = lots.iter().find(|l| l.id == pay.lot_id).unwrap();
        assert_eq!(
            (new.starts_on, new.ends_on, new.seats.get()),
            (d("2027-01-20"), d("2028-02-29"), 15)
        );
        assert_eq!(
            svc.may_host(a, "user3").await.unwrap().license_id,
            new.id,
            "seats move to the renewed lot"
        );
        // The superseded lot takes no more orders.
        let e = svc
            .quote(
                a,
                &req(serde_json::json!({"type": "renewal", "license_id": lid})),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), "license_not_active");

        // Documents render with the names the spec uses.
        let html = svc.invoice_html(a, inv2.id).await.unwrap();
        assert!(html.contains("Счёт-оферта № 2026-000002"));
        assert!(html.contains("15\u{a0}245,90"));
        assert!(html.contains("7707083893"));
        assert!(html.contains("Без НДС"));
        let docs = svc.transfer_documents(a).await.unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[0].status, "accepted",
            "accepted by silence after 5 business days"
        );
        let html = svc.transfer_document_html(a, docs[2].id).await.unwrap();
        assert!(html.contains("УПД") && html.contains("2027-01-20"));

        // A retro-discount makes a corrective invoice and a credit.
        let c = svc
            .retro_discount(a, inv.id, "6000.00".parse().unwrap(), "loyalty 5 %")
            .await
            .unwrap();
        assert_eq!(
            (
                c.before.to_string(),
                c.after.to_string(),
                c.difference.to_string()
            ),
            ("120000.00".into(), "114000.00".into(), "-6000.00".into())
        );
        let html = svc.corrective_invoice_html(a, c.id).await.unwrap();
        assert!(
            html.contains("Корректировочный счёт-фактура")
                && html.contains("114\u{a0}000,00")
                && html.contains("-6\u{a0}000,00")
        );

        // Objection to the newest document within its period opens a dispute.
        let disputed = svc
            .object_to_document(a, docs[2].id, "wrong seat count")
            .await
            .unwrap();
        assert_eq!(disputed.status, "disputed");
        assert_eq!(
            svc.object_to_document(a, docs[0].id, "late")
                .await
                .unwrap_err()
                .code(),
            "document_not_open"
        );

        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_writes_nothing() {
    for db in databases() {
        let (svc, _clock, acc) = setup(&db, "2026-03-01").await;
        let a = acc.id;
        let other = svc
            .create_account(
                &NewAccount::parse(
                    "Other",
                    AccountKind::Individual,
                    None,
                    true,
                    "sbercrm",
                    "B-2",
                    false,
                    None,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let foreign_lot = buy(&svc, other.id, 1, "o1").await;
        let cases = [
            (
                serde_json::json!({"type": "initial", "tariff": "nope", "seats": 1}),
                "unknown_tariff",
            ),
            (
                serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 0}),
                "invalid_seats",
            ),
            (
                serde_json::json!({"type": "initial", "tariff": "business-12", "seats": -1}),
                "invalid_seats",
            ),
            (
                serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1_000_000}),
                "invalid_seats",
            ),
            (
                serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1, "start_date": "2026/03/05"}),
                "invalid_date",
            ),
            (
                serde_json::json!({"type": "top_up", "license_id": foreign_lot.to_string(), "add_seats": 1}),
                "unknown_license",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(
                svc.place_order(a, "bad", &req(body.clone()))
                    .await
                    .unwrap_err()
                    .code(),
                code,
                "{body}"
            );
        }
        assert!(svc.orders(a).await.unwrap().is_empty());
        assert!(svc.invoices(a).await.unwrap().is_empty());
        assert_eq!(
            svc.place_order(
                Uuid::new_v4(),
                "x",
                &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1}))
            )
            .await
            .unwrap_err()
            .code(),
            "unknown_account"
        );
        assert!("1.001".parse::<Money>().is_err());
        // Duplicate CRM link.
        let dup = NewAccount::parse(
            "Again",
            AccountKind::LegalEntity,
            Some("7707083893"),
            true,
            "sbercrm",
            "A-1",
            false,
            None,
        )
        .unwrap();
        assert_eq!(
            svc.create_account(&dup).await.unwrap_err().code(),
            "account_exists"
        );
        // A trial is granted at once, only once, and an initial purchase ends it.
        let t = svc
            .place_order(
                a,
                "t1",
                &req(serde_json::json!({"type": "initial", "tariff": "trial", "seats": 3})),
            )
            .await
            .unwrap();
        assert!(t.invoice.is_none() && t.granted_lot.is_some());
        assert_eq!(
            svc.place_order(
                a,
                "t2",
                &req(serde_json::json!({"type": "initial", "tariff": "trial", "seats": 3}))
            )
            .await
            .unwrap_err()
            .code(),
            "trial_already_used"
        );
        buy(&svc, a, 2, "paid").await;
        let trial = svc
            .lots(a)
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.trial)
            .unwrap();
        assert_eq!(trial.status, LotStatus::Superseded);
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seat_assignment_never_oversells() {
    for db in databases() {
        let (svc, _clock, acc) = setup(&db, "2026-03-01").await;
        let lot = buy(&svc, acc.id, 10, "k").await;
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.assign_seat(acc.id, lot, &format!("u{i}")).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e.code(), "no_free_seat"),
            }
        }
        assert_eq!(ok, 10);
        assert_eq!(svc.seats(acc.id).await.unwrap().len(), 10);
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

/// The review's list (6.2) is computed on the day asked; a reclaim takes a seat only while it is
/// still unused for 30 days, so a user who hosted after the list was read keeps theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_seats_are_listed_and_reclaimed_only_while_inactive() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let lot = buy(&svc, acc.id, 3, "k").await;
        for u in ["busy", "idle", "late"] {
            svc.assign_seat(acc.id, lot, u).await.unwrap();
        }
        clock.set(d("2026-03-20"));
        svc.may_host(acc.id, "busy").await.unwrap();
        clock.set(d("2026-03-30"));
        assert!(
            svc.inactive_seats(acc.id).await.unwrap().is_empty(),
            "29 days"
        );
        clock.set(d("2026-03-31"));
        let ids = |v: Vec<store::SeatAssignment>| -> Vec<String> {
            v.into_iter().map(|s| s.user_id).collect()
        };
        assert_eq!(
            ids(svc.inactive_seats(acc.id).await.unwrap()),
            ["idle", "late"],
            "30 days since assignment; busy hosted 11 days ago"
        );
        // "late" hosts after the list was read: no longer reclaimable.
        svc.may_host(acc.id, "late").await.unwrap();
        assert_eq!(
            svc.reclaim_inactive_seat(acc.id, "late").await.unwrap(),
            None
        );
        assert_eq!(
            svc.reclaim_inactive_seat(acc.id, "busy").await.unwrap(),
            None
        );
        assert_eq!(
            svc.reclaim_inactive_seat(acc.id, "nobody").await.unwrap(),
            None
        );
        assert_eq!(
            svc.reclaim_inactive_seat(acc.id, "idle").await.unwrap(),
            Some(lot)
        );
        assert_eq!(ids(svc.seats(acc.id).await.unwrap()), ["busy", "late"]);
        assert_eq!(
            svc.may_host(acc.id, "idle").await.unwrap_err().code(),
            "no_seat"
        );
        // The freed seat can be given again.
        svc.assign_seat(acc.id, lot, "new").await.unwrap();
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_number_invoices_without_gaps_and_retries_are_idempotent() {
    for db in databases() {
        let (svc, _clock, acc) = setup(&db, "2026-03-01").await;
        let mut accounts = vec![acc.id];
        for i in 0..3 {
            let a = NewAccount::parse(
                &format!("Co {i}"),
                AccountKind::Individual,
                None,
                true,
                "sbercrm",
                &format!("C-{i}"),
                false,
                None,
            )
            .unwrap();
            accounts.push(svc.create_account(&a).await.unwrap().id);
        }
        // 24 distinct orders across 4 accounts plus 8 retries of one key, all at once.
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (svc, a) = (svc.clone(), accounts[i % 4]);
            tasks.push(tokio::spawn(async move {
                svc.place_order(
                    a,
                    &format!("key-{i}"),
                    &req(
                        serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1}),
                    ),
                )
                .await
            }));
        }
        for _ in 0..8 {
            let (svc, a) = (svc.clone(), accounts[0]);
            tasks.push(tokio::spawn(async move {
                svc.place_order(
                    a,
                    "same",
                    &req(
                        serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 2}),
                    ),
                )
                .await
            }));
        }
        let mut same_ids = std::collections::BTreeSet::new();
        for t in tasks {
            let p = t.await.unwrap().unwrap();
            if p.order.idempotency_key == "same" {
                same_ids.insert(p.order.id);
            }
        }
        assert_eq!(same_ids.len(), 1, "retries return the first order");
        let mut numbers = Vec::new();
        for a in &accounts {
            numbers.extend(
                svc.invoices(*a)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|i| i.number),
            );
        }
        numbers.sort();
        assert_eq!(numbers, (1..=25).collect::<Vec<i64>>());

        // Concurrent payments of one invoice with different keys: one grant only.
        let inv = svc.invoices(accounts[1]).await.unwrap().remove(0);
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let svc = svc.clone();
                let a = accounts[1];
                tokio::spawn(async move {
                    svc.register_payment(
                        a,
                        inv.id,
                        &format!("pay{i}"),
                        PaymentMethod::Card,
                        inv.amount,
                        None,
                    )
                    .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e.code(), "invoice_already_paid"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(svc.lots(accounts[1]).await.unwrap().len(), 1);
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renewals_of_one_lot_grant_once() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let lot = buy(&svc, acc.id, 4, "k").await;
        clock.set(d("2027-01-15"));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.place_order(
                        acc.id,
                        &format!("r{i}"),
                        &req(serde_json::json!({"type": "renewal", "license_id": lot.to_string()})),
                    )
                    .await
                })
            })
            .collect();
        let mut placed = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(p) => placed.push(p),
                Err(e) => assert_eq!(e.code(), "order_in_progress"),
            }
        }
        assert_eq!(placed.len(), 1);
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promo_code_limits_hold_under_concurrency() {
    for db in databases() {
        let (svc, _clock, acc) = setup(&db, "2026-03-01").await;
        let promo = Promotion {
            id: Uuid::new_v4(),
            name: "Spring".into(),
            code: Some("SPRING".into()),
            discount: DiscountKind::Percent { percent: dec!(10) },
            combinable: false,
            priority: 0,
            valid_from: None,
            valid_until: None,
            tariffs: vec![],
            order_types: vec![],
            total_limit: Some(3),
            per_account_limit: None,
            active: true,
        };
        svc.create_promotion(&promo).await.unwrap();
        let q = svc.quote(acc.id, &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1, "promo_code": "spring"}))).await.unwrap();
        assert_eq!(q.total.to_string(), "10800.00");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.place_order(acc.id, &format!("p{i}"), &req(serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 1, "promo_code": "SPRING"}))).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(p) => {
                    assert_eq!(p.order.quote.total.to_string(), "10800.00");
                    ok += 1
                }
                Err(e) => assert_eq!(e.code(), "promo_code_exhausted"),
            }
        }
        assert_eq!(ok, 3);
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminations_refunds_and_reviews() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let lot = buy(&svc, acc.id, 10, "k").await;
        svc.assign_seat(acc.id, lot, "idle").await.unwrap();
        clock.set(d("2026-04-15"));
        assert_eq!(svc.emit_inactive_review().await.unwrap(), 1);
        assert_eq!(
            svc.emit_inactive_review().await.unwrap(),
            0,
            "once per month"
        );
        assert!(
            svc.due_events()
                .await
                .unwrap()
                .iter()
                .any(|e| e.kind == "inactive_seats_review")
        );

        // Example 7: notice 2026-09-01, effective 2026-10-16.
        clock.set(d("2026-09-01"));
        assert_eq!(
            svc.terminate(acc.id, TerminationKind::Provider, Some(d("2026-10-15")))
                .await
                .unwrap_err()
                .code(),
            "notice_too_short"
        );
        let o = svc
            .terminate(acc.id, TerminationKind::Provider, Some(d("2026-10-16")))
            .await
            .unwrap();
        assert_eq!(o.refund.to_string(), "44712.33");
        assert_eq!(o.refund_due_on, Some(d("2026-10-30")));
        assert_eq!(
            svc.refunds(acc.id).await.unwrap()[0].0.to_string(),
            "44712.33"
        );
        assert_eq!(svc.lots(acc.id).await.unwrap()[0].ends_on, d("2026-10-16"));
        assert!(svc.may_host(acc.id, "idle").await.is_ok());
        clock.set(d("2026-10-16"));
        assert_eq!(
            svc.may_host(acc.id, "idle").await.unwrap_err().code(),
            "account_terminated"
        );

        // Breach: at once, nothing back.
        let other = svc
            .create_account(
                &NewAccount::parse(
                    "Bad",
                    AccountKind::SoleProprietor,
                    Some("500100732259"),
                    true,
                    "sbercrm",
                    "X",
                    false,
                    None,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        buy(&svc, other.id, 1, "b").await;
        let o = svc
            .terminate(other.id, TerminationKind::Breach, None)
            .await
            .unwrap();
        assert_eq!(o.refund, Money::ZERO);
        assert_eq!(
            svc.lots(other.id).await.unwrap()[0].status,
            LotStatus::Terminated
        );
        assert_eq!(
            svc.may_join(other.id).await.unwrap_err().code(),
            "account_terminated"
        );
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

fn lot_of(lots: &[Lot], id: Uuid) -> Lot {
    lots.iter().find(|l| l.id == id).cloned().unwrap()
}

/// Postpay orders are granted when signed (5.1, 5.2.3): top-up, initial and renewal each change
/// the lots exactly as a payment would; the invoice stays unpaid with its due date; the later
/// payment settles it without a second grant; retries, double signatures and prepay orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpay_orders_are_granted_at_signing_and_paid_later() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let a = acc.id;
        let lot = buy(&svc, a, 10, "k0").await;

        // Top-up, postpay, example 2's figures; nothing granted at placing.
        clock.set(d("2026-11-21"));
        let top = svc
            .place_order(
                a,
                "top",
                &req(
                    serde_json::json!({"type": "top_up", "license_id": lot.to_string(),
                    "add_seats": 5, "payment_terms": "postpay", "start_date": "2026-11-21"}),
                ),
            )
            .await
            .unwrap();
        let top_inv = top.invoice.clone().unwrap();
        assert_eq!(top_inv.amount.to_string(), "16393.45");
        assert_eq!(top_inv.due_on, None);
        assert_eq!(top.granted_lot, None);
        assert_eq!(lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(), 10);

        // Signed by the last party two days later (5.1): the grant is the signing.
        clock.set(d("2026-11-23"));
        let signed = svc.sign_order(a, top.order.id, "s1").await.unwrap();
        let due = svc
            .calendar()
            .add_business_days(d("2026-11-23"), store::POSTPAY_PAYMENT_BUSINESS_DAYS);
        assert_eq!(due, d("2026-12-07"));
        assert_eq!(
            (
                signed.lot_id,
                signed.signed_on,
                signed.payment_due_on,
                signed.order.status
            ),
            (lot, d("2026-11-23"), due, store::OrderStatus::Signed)
        );
        assert_eq!(
            (signed.invoice.status.as_str(), signed.invoice.due_on),
            ("issued", Some(due))
        );
        assert_eq!(
            signed.grant_deadline,
            d("2026-11-26"),
            "3 business days (5.1)"
        );
        assert_eq!(
            lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(),
            15,
            "granted at signing"
        );
        let inv = svc.store().invoice(a, top_inv.id).await.unwrap();
        assert_eq!((inv.status.as_str(), inv.due_on), ("issued", Some(due)));

        // A retry returns the first signature; a second signature or a reused key is refused.
        let again = svc.sign_order(a, top.order.id, "s1").await.unwrap();
        assert_eq!(
            (again.lot_id, again.signed_on, again.payment_due_on),
            (lot, signed.signed_on, due)
        );
        let e = svc.sign_order(a, top.order.id, "s2").await.unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("order_already_signed", 422));
        assert_eq!(e.details()["signed_on"], "2026-11-23");
        let prepay = svc
            .place_order(
                a,
                "pre",
                &req(serde_json::json!({"type": "top_up", "license_id": lot.to_string(), "add_seats": 1})),
            )
            .await
            .unwrap();
        let e = svc.sign_order(a, prepay.order.id, "s1").await.unwrap_err();
        assert_eq!(e.code(), "idempotency_conflict");
        let e = svc.sign_order(a, prepay.order.id, "s3").await.unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("order_not_postpay", 422));
        let e = svc.sign_order(a, Uuid::new_v4(), "s4").await.unwrap_err();
        assert_eq!(e.code(), "not_found");
        assert_eq!(lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(), 15);

        // The payment, days later: settles the invoice, grants nothing more, keeps the
        // signature's grant date in the payment and the transfer document.
        clock.set(d("2026-11-30"));
        let p = svc
            .register_payment(
                a,
                top_inv.id,
                "pay-top",
                PaymentMethod::BankTransfer,
                top_inv.amount,
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            (p.lot_id, p.granted_on, p.grant_deadline, p.granted_late),
            (lot, d("2026-11-23"), d("2026-11-26"), false)
        );
        assert_eq!(lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(), 15);
        assert_eq!(
            svc.store().order(a, top.order.id).await.unwrap().status,
            store::OrderStatus::Paid
        );
        let doc = svc
            .transfer_documents(a)
            .await
            .unwrap()
            .into_iter()
            .find(|doc| doc.order_id == top.order.id)
            .unwrap();
        assert_eq!(doc.grant_date, d("2026-11-23"));
        let e = svc.sign_order(a, top.order.id, "s5").await.unwrap_err();
        assert_eq!(e.code(), "order_not_signable");
        assert_eq!(e.details()["status"], "paid");

        // A cancelled postpay order cannot be signed.
        let c = svc
            .place_order(
                a,
                "cancel-me",
                &req(
                    serde_json::json!({"type": "top_up", "license_id": lot.to_string(),
                    "add_seats": 1, "payment_terms": "postpay"}),
                ),
            )
            .await
            .unwrap();
        svc.cancel_order(a, c.order.id).await.unwrap();
        let e = svc.sign_order(a, c.order.id, "s6").await.unwrap_err();
        assert_eq!(e.code(), "order_not_signable");

        // Renewal, postpay, signed: the old lot ends at the signing, the new one starts there
        // with the remaining term carried over (5.2.3), as a payment on that day would.
        clock.set(d("2027-01-20"));
        let ren = svc
            .place_order(
                a,
                "ren",
                &req(
                    serde_json::json!({"type": "renewal", "license_id": lot.to_string(),
                    "payment_terms": "postpay"}),
                ),
            )
            .await
            .unwrap();
        let s = svc.sign_order(a, ren.order.id, "s-ren").await.unwrap();
        let lots = svc.lots(a).await.unwrap();
        let (old, new) = (lot_of(&lots, lot), lot_of(&lots, s.lot_id));
        assert_eq!(
            (old.status, old.ends_on),
            (LotStatus::Superseded, d("2027-01-20"))
        );
        assert_eq!(
            (new.starts_on, new.ends_on, new.seats.get(), new.status),
            (d("2027-01-20"), d("2028-02-29"), 15, LotStatus::Active)
        );

        // Initial, postpay: a new lot from the signing.
        let init = svc
            .place_order(
                a,
                "init",
                &req(
                    serde_json::json!({"type": "initial", "tariff": "business-12", "seats": 2,
                    "payment_terms": "postpay"}),
                ),
            )
            .await
            .unwrap();
        let s = svc.sign_order(a, init.order.id, "s-init").await.unwrap();
        let l = lot_of(&svc.lots(a).await.unwrap(), s.lot_id);
        assert_eq!(
            (l.starts_on, l.ends_on, l.seats.get()),
            (d("2027-01-20"), d("2028-01-20"), 2)
        );
        assert_eq!(
            s.grant_deadline,
            svc.calendar().add_business_days(d("2027-01-20"), 5)
        );

        // A provider termination refunds only what was paid: the signed, unpaid orders
        // (renewal, initial) have grants but no money behind them.
        let out = svc
            .terminate(a, TerminationKind::Provider, None)
            .await
            .unwrap();
        assert_eq!(out.refund, Money::ZERO, "{out:?}");
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

/// Several signatures of one postpay order at once, under distinct keys: one grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signatures_grant_once() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let lot = buy(&svc, acc.id, 10, "k").await;
        clock.set(d("2026-06-01"));
        let order = svc
            .place_order(
                acc.id,
                "top",
                &req(
                    serde_json::json!({"type": "top_up", "license_id": lot.to_string(),
                    "add_seats": 3, "payment_terms": "postpay"}),
                ),
            )
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let svc = svc.clone();
                let id = order.order.id;
                tokio::spawn(async move { svc.sign_order(acc.id, id, &format!("s{i}")).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e.code(), "order_already_signed"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(
            lot_of(&svc.lots(acc.id).await.unwrap(), lot).seats.get(),
            13
        );
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}

/// Top-ups of one lot are not exclusive (unlike renewals): each pays for its own seats at the
/// same lot end, so two open at once are one larger top-up split in two. Concurrent orders and
/// payments add exactly the ordered seats; what they may not do together is pass the lot limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_top_ups_of_one_lot_add_their_seats_within_the_limit() {
    for db in databases() {
        let (svc, clock, acc) = setup(&db, "2026-03-01").await;
        let a = acc.id;
        let lot = buy(&svc, a, 10, "k").await;
        clock.set(d("2026-06-01"));
        let tasks: Vec<_> = (1..=4)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.place_order(
                        a,
                        &format!("t{i}"),
                        &req(serde_json::json!({"type": "top_up", "license_id": lot.to_string(), "add_seats": i})),
                    )
                    .await
                })
            })
            .collect();
        let mut invoices = Vec::new();
        for t in tasks {
            invoices.push(t.await.unwrap().unwrap().invoice.unwrap());
        }
        assert_eq!(lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(), 10);
        let tasks: Vec<_> = invoices
            .into_iter()
            .map(|inv| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.register_payment(
                        a,
                        inv.id,
                        &format!("p-{}", inv.id),
                        PaymentMethod::BankTransfer,
                        inv.amount,
                        None,
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().lot_id, lot);
        }
        assert_eq!(
            lot_of(&svc.lots(a).await.unwrap(), lot).seats.get(),
            20,
            "10 + 1 + 2 + 3 + 4"
        );

        // Near the limit: open top-ups count against it, so paying all can never pass it.
        let big = buy(&svc, a, i64::from(Seats::MAX) - 10, "big").await;
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.place_order(
                        a,
                        &format!("b{i}"),
                        &req(serde_json::json!({"type": "top_up", "license_id": big.to_string(), "add_seats": 6})),
                    )
                    .await
                })
            })
            .collect();
        let mut placed = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(p) => placed.push(p),
                Err(e) => {
                    assert_eq!(e.code(), "invalid_seats");
                    assert_eq!(e.details()["seats"], i64::from(Seats::MAX) + 2);
                }
            }
        }
        assert_eq!(placed.len(), 1, "the second top-up would pass the limit");
        let inv = placed[0].invoice.clone().unwrap();
        svc.register_payment(
            a,
            inv.id,
            "p-big",
            PaymentMethod::BankTransfer,
            inv.amount,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            lot_of(&svc.lots(a).await.unwrap(), big).seats.get(),
            Seats::MAX - 4
        );
        let store = svc.store().clone();
        db.cleanup(store).await;
    }
}
