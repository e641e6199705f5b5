//! The seven worked examples of `shared/spec/licensing.md`, through the public API, with the
//! spec's exact figures.
//!
//! Tariff "Business 12", B = 12 000.00 per seat per 12 months. Lot: 10 seats,
//! 2026-03-01 .. 2027-03-01.

use chrono::NaiveDate;
use parley_licensing::calendar::parse_date;
use parley_licensing::pricing::renewal_end;
use parley_licensing::termination::{self, PaidPeriod};
use parley_licensing::*;
use uuid::Uuid;

fn d(s: &str) -> NaiveDate {
    parse_date(s).unwrap()
}

fn tariff() -> Tariff {
    Tariff {
        code: TariffCode::parse("business-12").unwrap(),
        name: "Business 12".into(),
        term_months: 12,
        price_per_seat: "12000.00".parse().unwrap(),
        vat: VatMode::Exempt,
        features: Features {
            max_participants: 100,
            max_meeting_minutes: 600,
            recording: None,
            sdk_embedding: false,
            results_to_recipients: true,
            screen_share: true,
        },
        trial: false,
        archived: false,
    }
}

fn account(postpay: bool) -> Account {
    Account {
        id: Uuid::from_u128(1),
        name: "ООО Ромашка".into(),
        kind: AccountKind::LegalEntity,
        inn: Inn::parse("7707083893").ok(),
        resident: true,
        crm: CrmLink {
            system: "sbercrm".into(),
            external_id: "A-1".into(),
        },
        status: AccountStatus::Active,
        postpay_allowed: postpay,
        card_limit: None,
        address: None,
    }
}

fn lot() -> Lot {
    Lot {
        id: Uuid::from_u128(10),
        account_id: Uuid::from_u128(1),
        tariff: tariff().code,
        seats: Seats::new(10).unwrap(),
        starts_on: d("2026-03-01"),
        ends_on: d("2027-03-01"),
        status: LotStatus::Active,
        trial: false,
    }
}

fn quote(json: serde_json::Value, today: &str, postpay: bool) -> Result<Quote, LicensingError> {
    let req: QuoteRequest = serde_json::from_value(json).unwrap();
    let spec = OrderSpec::parse(&req, d(today))?;
    let (acc, t, l) = (account(postpay), [tariff()], lot());
    quote::compute(
        &spec,
        &QuoteContext {
            account: &acc,
            today: d(today),
            tariffs: &t,
            lot: Some(&l),
            promotions: &[],
            usage: &[],
            paid_total: Money::ZERO,
            trial_used: false,
        },
    )
}

fn lid() -> String {
    Uuid::from_u128(10).to_string()
}

#[test]
fn example_1_top_up_prepay_portal() {
    let q = quote(
        serde_json::json!({"type": "top_up", "license_id": lid(), "add_seats": 5, "start_date": "2026-11-21"}),
        "2026-11-21",
        false,
    )
    .unwrap();
    let line = &q.lines[0];
    let f = line.formula.unwrap();
    assert_eq!(
        (f.d1, f.d2, f.days, f.logistics_days, f.basis),
        (d("2027-03-01"), d("2026-11-21"), 93, 7, 366)
    );
    assert_eq!(line.unit_price.to_string(), "3049.18");
    assert_eq!(line.amount.to_string(), "15245.90");
    assert_eq!(q.total.to_string(), "15245.90");
    let v = serde_json::to_value(&q).unwrap();
    assert_eq!(v["lines"][0]["formula"]["B"], "12000.00");
    assert_eq!(v["lines"][0]["formula"]["D1"], "2027-03-01");
    assert_eq!(v["lines"][0]["formula"]["D2"], "2026-11-21");
    assert_eq!(v["lines"][0]["amount"], "15245.90");
    assert_eq!(v["total"], "15245.90");
}

#[test]
fn example_2_top_up_postpay() {
    let q = quote(
        serde_json::json!({"type": "top_up", "license_id": lid(), "add_seats": 5, "start_date": "2026-11-21", "payment_terms": "postpay"}),
        "2026-11-21",
        true,
    )
    .unwrap();
    assert_eq!(q.lines[0].formula.unwrap().days, 100);
    assert_eq!(q.lines[0].unit_price.to_string(), "3278.69");
    assert_eq!(q.total.to_string(), "16393.45");
}

#[test]
fn example_3_top_up_after_window_refused() {
    let e = quote(
        serde_json::json!({"type": "top_up", "license_id": lid(), "add_seats": 5, "start_date": "2026-12-02"}),
        "2026-12-02",
        false,
    )
    .unwrap_err();
    assert_eq!(e.code(), "window_closed");
    let body = e.to_body();
    assert_eq!(body["error"]["closed_on"], "2026-12-01");
    assert_eq!(body["error"]["alternative"], "renewal_with_top_up");
    // The last day of the window still works.
    assert!(
        quote(
            serde_json::json!({"type": "top_up", "license_id": lid(), "add_seats": 5}),
            "2026-12-01",
            false
        )
        .is_ok()
    );
    // ... and a renewal with top-up is possible instead.
    assert!(
        quote(
            serde_json::json!({"type": "renewal_with_top_up", "license_id": lid(), "add_seats": 5}),
            "2026-12-02",
            false
        )
        .is_ok()
    );
}

#[test]
fn example_4_renewal_granted_later() {
    let q = quote(
        serde_json::json!({"type": "renewal", "license_id": lid(), "start_date": "2027-01-15"}),
        "2027-01-15",
        false,
    )
    .unwrap();
    assert_eq!(q.total.to_string(), "120000.00");
    // Paid and granted 2027-01-20: 40 days remain; the new lot runs to 2028-01-20 + 40 days.
    let grant = d("2027-01-20");
    assert_eq!((lot().ends_on - grant).num_days(), 40);
    assert_eq!(renewal_end(grant, 12, lot().ends_on), d("2028-02-29"));
}

#[test]
fn example_5_renewal_with_top_up_prepay_portal() {
    let q = quote(
        serde_json::json!({"type": "renewal_with_top_up", "license_id": lid(), "add_seats": 5, "start_date": "2027-01-15"}),
        "2027-01-15",
        false,
    )
    .unwrap();
    assert_eq!(q.lines.len(), 2);
    assert_eq!(q.lines[0].amount.to_string(), "120000.00");
    assert_eq!(q.lines[0].ends_on, d("2028-02-29"));
    let f = q.lines[1].formula.unwrap();
    assert_eq!((f.d1, f.days), (d("2028-02-29"), 403));
    assert_eq!(q.lines[1].unit_price.to_string(), "13213.11");
    assert_eq!(q.lines[1].amount.to_string(), "66065.55");
    assert_eq!(q.total.to_string(), "186065.55");
}

#[test]
fn example_6_renewal_with_reduction() {
    let refused = quote(
        serde_json::json!({"type": "renewal_with_reduction", "license_id": lid(), "seats": 6}),
        "2027-02-10",
        false,
    )
    .unwrap_err();
    assert_eq!(refused.code(), "window_not_open");
    assert_eq!(refused.to_body()["error"]["opens_on"], "2027-02-15");
    // Placed 2027-02-20, granted 2027-02-22 (the quote assumes the grant on its start date).
    quote(
        serde_json::json!({"type": "renewal_with_reduction", "license_id": lid(), "seats": 6}),
        "2027-02-20",
        false,
    )
    .unwrap();
    let q = quote(
        serde_json::json!({"type": "renewal_with_reduction", "license_id": lid(), "seats": 6, "start_date": "2027-02-22"}),
        "2027-02-20",
        false,
    )
    .unwrap();
    assert_eq!(
        (q.lines[0].starts_on, q.lines[0].ends_on),
        (d("2027-02-22"), d("2028-02-22"))
    );
    assert_eq!(q.total.to_string(), "72000.00");
}

#[test]
fn example_7_provider_termination_refund() {
    let cal = BusinessCalendar::default();
    let paid = [PaidPeriod {
        amount: "120000.00".parse().unwrap(),
        starts_on: d("2026-03-01"),
        ends_on: d("2027-03-01"),
    }];
    let o = termination::provider(d("2026-09-01"), d("2026-10-16"), &paid, &cal).unwrap();
    assert_eq!((d("2027-03-01") - d("2026-10-16")).num_days(), 136);
    assert_eq!(o.refund.to_string(), "44712.33");
    assert_eq!(o.refund_due_on, Some(d("2026-10-30")));
    assert_eq!(
        termination::provider(d("2026-09-02"), d("2026-10-16"), &paid, &cal)
            .unwrap_err()
            .code(),
        "notice_too_short"
    );
}
