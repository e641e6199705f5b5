//! Property: a quote and the order placed from it agree — the same lines, amounts and dates —
//! for generated valid inputs (every order type, seat counts, dates inside their windows,
//! prepay and postpay, portal and manager); and granting on the start date (a payment for
//! prepay, the signature for postpay) gives the lot exactly the quoted seats and dates.
//!
//! One SQLite store serves every case (each case a fresh account), so the property exercises
//! the same `place_order` path as the HTTP API at a few milliseconds per case.

use std::sync::Arc;

use chrono::{Days, NaiveDate};
use parley_licensing::pricing::LineKind;
use parley_licensing::service::{ManualClock, Service};
use parley_licensing::store::{PaymentMethod, Store};
use parley_licensing::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

fn tariff() -> Tariff {
    Tariff {
        code: TariffCode::parse("business-12").unwrap(),
        name: "Business 12".into(),
        term_months: 12,
        price_per_seat: "12000.00".parse().unwrap(),
        vat: VatMode::Exempt,
        features: Features {
            max_participants: 50,
            max_meeting_minutes: 240,
            recording: None,
            sdk_embedding: false,
            results_to_recipients: false,
            screen_share: true,
        },
        trial: false,
        archived: false,
    }
}

/// One generated order: the lot it works on and the day it is placed (inside its window).
#[derive(Clone, Debug)]
struct Case {
    kind: OrderType,
    bought_on: NaiveDate,
    lot_seats: i64,
    /// Days from the window's first day (clamped to the window's length).
    offset: u64,
    seats: i64,
    postpay: bool,
    manager: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(OrderType::ALL.to_vec()),
        0u64..1100,
        2i64..60,
        0u64..400,
        1i64..60,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, start, lot_seats, offset, seats, postpay, manager)| Case {
                kind,
                bought_on: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Days::new(start),
                lot_seats,
                offset,
                seats,
                postpay,
                manager,
            },
        )
}

/// The first and last day the order may be placed, for a lot `[bought_on, end)`.
fn window(kind: OrderType, bought_on: NaiveDate, end: NaiveDate) -> (NaiveDate, NaiveDate) {
    let last = end - Days::new(1);
    match kind {
        OrderType::Initial => (bought_on, end + Days::new(60)),
        OrderType::TopUp => (bought_on, end - Days::new(90)),
        OrderType::Renewal | OrderType::RenewalWithTopUp => (end - Days::new(90), last),
        OrderType::RenewalWithReduction => (end - Days::new(14), last),
    }
}

async fn run_case(svc: &Service, clock: &ManualClock, c: &Case) -> Result<(), TestCaseError> {
    clock.set(c.bought_on);
    let crm = Uuid::new_v4().to_string();
    let acc = NewAccount::parse(
        "ООО Ромашка",
        AccountKind::LegalEntity,
        Some("7707083893"),
        true,
        "sbercrm",
        &crm,
        true,
        None,
    )
    .unwrap();
    let a = svc.create_account(&acc).await.unwrap().id;
    let buy: QuoteRequest = serde_json::from_value(
        serde_json::json!({"type": "initial", "tariff": "business-12", "seats": c.lot_seats}),
    )
    .unwrap();
    let inv = svc
        .place_order(a, "buy", &buy)
        .await
        .unwrap()
        .invoice
        .unwrap();
    let lot = svc
        .register_payment(
            a,
            inv.id,
            "buy",
            PaymentMethod::BankTransfer,
            inv.amount,
            None,
        )
        .await
        .unwrap()
        .lot_id;
    let end = svc.store().lot(a, lot).await.unwrap().ends_on;
    let (first, last) = window(c.kind, c.bought_on, end);
    let span = u64::try_from((last - first).num_days()).unwrap();
    let today = first + Days::new(c.offset % (span + 1));
    clock.set(today);

    let mut body = serde_json::json!({
        "type": c.kind.as_str(),
        "payment_terms": if c.postpay { "postpay" } else { "prepay" },
        "channel": if c.manager { "manager" } else { "portal" },
    });
    match c.kind {
        OrderType::Initial => {
            body["tariff"] = "business-12".into();
            body["seats"] = c.seats.into();
        }
        OrderType::TopUp | OrderType::RenewalWithTopUp => {
            body["license_id"] = lot.to_string().into();
            body["add_seats"] = c.seats.into();
        }
        OrderType::Renewal => body["license_id"] = lot.to_string().into(),
        OrderType::RenewalWithReduction => {
            body["license_id"] = lot.to_string().into();
            body["seats"] = (1 + c.seats % (c.lot_seats - 1)).into();
        }
    }
    let req: QuoteRequest = serde_json::from_value(body).unwrap();
    let quote = svc
        .quote(a, &req)
        .await
        .map_err(|e| TestCaseError::fail(format!("quote refused on {today}: {e}")))?;
    let placed = svc
        .place_order(a, "order", &req)
        .await
        .map_err(|e| TestCaseError::fail(format!("order refused on {today}: {e}")))?;
    prop_assert_eq!(&placed.order.quote, &quote);
    prop_assert_eq!(placed.order.placed_on, today);
    let inv = placed.invoice.clone().unwrap();
    prop_assert_eq!((inv.amount, inv.issued_on), (quote.total, today));
    prop_assert!(quote.total >= Money::ZERO);

    // Granted on the start date: by payment (prepay) or signature (postpay).
    let granted = if c.postpay {
        svc.sign_order(a, placed.order.id, "sign")
            .await
            .unwrap()
            .lot_id
    } else {
        svc.register_payment(
            a,
            inv.id,
            "pay",
            PaymentMethod::BankTransfer,
            inv.amount,
            None,
        )
        .await
        .unwrap()
        .lot_id
    };
    let new = svc.store().lot(a, granted).await.unwrap();
    let seats: u32 = quote.lines.iter().map(|l| l.seats.get()).sum();
    for line in &quote.lines {
        prop_assert_eq!(line.ends_on, new.ends_on, "{:?}", line);
        if line.kind != LineKind::TopUp {
            prop_assert_eq!(line.starts_on, new.starts_on, "{:?}", line);
        }
    }
    if c.kind == OrderType::TopUp {
        prop_assert_eq!(granted, lot);
        prop_assert_eq!(new.seats.get(), u32::try_from(c.lot_seats).unwrap() + seats);
    } else {
        prop_assert_eq!(new.seats.get(), seats);
        prop_assert_eq!(new.starts_on, today);
    }
    Ok(())
}

#[test]
fn a_quote_and_the_order_placed_from_it_agree() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let file = std::env::temp_dir().join(format!("parley-prop-{}.db", Uuid::new_v4().simple()));
    let clock = Arc::new(ManualClock::new(
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    ));
    let svc = rt.block_on(async {
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        let svc = Service::new(
            store,
            BusinessCalendar::default(),
            clock.clone(),
            "100000".parse().unwrap(),
        );
        svc.upsert_tariff(&tariff()).await.unwrap();
        svc
    });
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = runner.run(&arb_case(), |c| rt.block_on(run_case(&svc, &clock, &c)));
    rt.block_on(svc.store().close());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}
