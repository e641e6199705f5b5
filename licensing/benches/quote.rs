//! Quote computation without I/O: parsing the request and pricing a renewal with top-up
//! (the longest path: windows, two lines, the pro-rata formula) with two promotions to stack.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use parley_licensing::calendar::parse_date;
use parley_licensing::discount::{DiscountKind, Promotion, SeatTier};
use parley_licensing::*;
use rust_decimal_macros::dec;
use uuid::Uuid;

fn bench(c: &mut Criterion) {
    let today = parse_date("2027-01-15").unwrap_or_default();
    let tariff = Tariff {
        code: TariffCode::parse("business-12").unwrap(),
        name: "Business 12".into(),
        term_months: 12,
        price_per_seat: "12000.00".parse().unwrap(),
        vat: VatMode::Exempt,
        features: Features {
            max_participants: 100,
            max_meeting_minutes: 600,
            recording: None,
            sdk_embedding: true,
            results_to_recipients: true,
            screen_share: true,
        },
        trial: false,
        archived: false,
    };
    let account = Account {
        id: Uuid::from_u128(1),
        name: "Acme".into(),
        kind: AccountKind::LegalEntity,
        inn: None,
        resident: true,
        crm: CrmLink {
            system: "amo".into(),
            external_id: "1".into(),
        },
        status: AccountStatus::Active,
        postpay_allowed: true,
        card_limit: None,
        address: None,
    };
    let lot = Lot {
        id: Uuid::from_u128(10),
        account_id: account.id,
        tariff: tariff.code.clone(),
        seats: Seats::new(10).unwrap(),
        starts_on: parse_date("2026-03-01").unwrap(),
        ends_on: parse_date("2027-03-01").unwrap(),
        status: LotStatus::Active,
        trial: false,
    };
    let promo = |n: u128, discount, combinable| Promotion {
        id: Uuid::from_u128(n),
        name: format!("p{n}"),
        code: None,
        discount,
        combinable,
        priority: 0,
        valid_from: None,
        valid_until: None,
        tariffs: vec![],
        order_types: vec![],
        total_limit: None,
        per_account_limit: None,
        active: true,
    };
    let promotions = [
        promo(
            1,
            DiscountKind::ProgressiveBySeats {
                tiers: vec![SeatTier {
                    min_seats: 10,
                    percent: dec!(5),
                }],
            },
            false,
        ),
        promo(2, DiscountKind::Percent { percent: dec!(2.5) }, true),
    ];
    let tariffs = [tariff];
    let req: QuoteRequest = serde_json::from_value(serde_json::json!({
        "type": "renewal_with_top_up", "license_id": lot.id.to_string(), "add_seats": 5, "start_date": "2027-01-15"
    }))
    .unwrap();
    c.bench_function("quote_renewal_with_top_up", |b| {
        b.iter(|| {
            let spec = OrderSpec::parse(black_box(&req), today).unwrap();
            let ctx = QuoteContext {
                account: &account,
                today,
                tariffs: &tariffs,
                lot: Some(&lot),
                promotions: &promotions,
                usage: &[],
                paid_total: Money::ZERO,
                trial_used: false,
            };
            black_box(quote::compute(&spec, &ctx).unwrap())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
