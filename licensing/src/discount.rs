//! Promotions and how they stack (4.5 and the discount schemes seed).
//!
//! At most one non-combinable promotion applies, the one worth most to the client; the
//! combinable ones follow in priority order, each on what is left. Each discount is computed
//! from exact values and rounded once; the total never goes below zero.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::LicensingError;
use crate::money::Money;
use crate::order::OrderType;
use crate::tariff::TariffCode;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatTier {
    pub min_seats: u32,
    pub percent: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyTier {
    pub min_paid: Money,
    pub percent: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DiscountKind {
    Percent {
        percent: Decimal,
    },
    FixedPerSeat {
        amount: Money,
    },
    /// By the order's seat count, e.g. 10+ seats 5 %, 50+ seats 10 %.
    ProgressiveBySeats {
        tiers: Vec<SeatTier>,
    },
    /// By the account's paid total, e.g. from 100 000 RUB 5 %, from 1 000 000 RUB 7 %.
    Loyalty {
        tiers: Vec<LoyaltyTier>,
    },
}

impl DiscountKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscountKind::Percent { .. } => "percent",
            DiscountKind::FixedPerSeat { .. } => "fixed_per_seat",
            DiscountKind::ProgressiveBySeats { .. } => "progressive_by_seats",
            DiscountKind::Loyalty { .. } => "loyalty",
        }
    }

    fn validate(&self) -> Result<(), LicensingError> {
        let pct_ok = |p: &Decimal| *p > Decimal::ZERO && *p <= Decimal::ONE_HUNDRED;
        let ok = match self {
            DiscountKind::Percent { percent } => pct_ok(percent),
            DiscountKind::FixedPerSeat { amount } => {
                !amount.is_negative() && !amount.amount().is_zero()
            }
            DiscountKind::ProgressiveBySeats { tiers } => {
                !tiers.is_empty() && tiers.iter().all(|t| pct_ok(&t.percent) && t.min_seats >= 1)
            }
            DiscountKind::Loyalty { tiers } => {
                !tiers.is_empty()
                    && tiers
                        .iter()
                        .all(|t| pct_ok(&t.percent) && !t.min_paid.is_negative())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(LicensingError::InvalidRequest {
                field: "discount",
                reason: "percentages must be in (0, 100], amounts positive, tiers non-empty".into(),
            })
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: Uuid,
    pub name: String,
    /// A promotion with a code applies only when the client enters it.
    pub code: Option<String>,
    pub discount: DiscountKind,
    pub combinable: bool,
    /// Lower applies first among combinable promotions.
    pub priority: i32,
    /// Time-limited promotions (4.5); `None` is permanent on that side. Both days inclusive.
    pub valid_from: Option<NaiveDate>,
    pub valid_until: Option<NaiveDate>,
    /// Empty means every tariff / order type.
    pub tariffs: Vec<TariffCode>,
    pub order_types: Vec<OrderType>,
    pub total_limit: Option<u32>,
    pub per_account_limit: Option<u32>,
    pub active: bool,
}

impl Promotion {
    pub fn validate(&self) -> Result<(), LicensingError> {
        self.discount.validate()?;
        if let (Some(f), Some(u)) = (self.valid_from, self.valid_until)
            && u < f
        {
            return Err(LicensingError::InvalidRequest {
                field: "valid_until",
                reason: "ends before it starts".into(),
            });
        }
        if let Some(c) = &self.code
            && (c.trim().is_empty() || c.len() > 64)
        {
            return Err(LicensingError::InvalidRequest {
                field: "code",
                reason: "1 to 64 characters".into(),
            });
        }
        Ok(())
    }

    fn applies_to(&self, ctx: &DiscountContext<'_>) -> bool {
        self.active
            && self.valid_from.is_none_or(|f| ctx.on >= f)
            && self.valid_until.is_none_or(|u| ctx.on <= u)
            && (self.tariffs.is_empty() || self.tariffs.contains(ctx.tariff))
            && (self.order_types.is_empty() || self.order_types.contains(&ctx.order_type))
    }

    fn code_matches(&self, code: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(code.trim()))
    }

    /// The exact (unrounded) value of this promotion on `base`.
    fn value(&self, base: Decimal, ctx: &DiscountContext<'_>) -> Decimal {
        let pct = |p: Decimal| base * p / Decimal::ONE_HUNDRED;
        match &self.discount {
            DiscountKind::Percent { percent } => pct(*percent),
            DiscountKind::FixedPerSeat { amount } => amount.amount() * Decimal::from(ctx.seats),
            DiscountKind::ProgressiveBySeats { tiers } => tiers
                .iter()
                .filter(|t| ctx.seats >= t.min_seats)
                .max_by_key(|t| t.min_seats)
                .map(|t| pct(t.percent))
                .unwrap_or_default(),
            DiscountKind::Loyalty { tiers } => tiers
                .iter()
                .filter(|t| ctx.paid_total >= t.min_paid)
                .max_by_key(|t| t.min_paid)
                .map(|t| pct(t.percent))
                .unwrap_or_default(),
        }
    }
}

/// How often a promotion was redeemed, in total and by this account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PromoUsage {
    pub promotion_id: Uuid,
    pub total: u32,
    pub by_account: u32,
}

pub struct DiscountContext<'a> {
    pub order_type: OrderType,
    pub tariff: &'a TariffCode,
    pub on: NaiveDate,
    /// Seats the order pays for (the sum of its lines).
    pub seats: u32,
    pub subtotal: Money,
    pub paid_total: Money,
    pub promo_code: Option<&'a str>,
    pub usage: &'a [PromoUsage],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDiscount {
    pub promotion_id: Uuid,
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    pub amount: Money,
}

fn usage_of(ctx: &DiscountContext<'_>, id: Uuid) -> PromoUsage {
    ctx.usage
        .iter()
        .copied()
        .find(|u| u.promotion_id == id)
        .unwrap_or_default()
}

fn exhausted(p: &Promotion, u: PromoUsage) -> bool {
    p.total_limit.is_some_and(|l| u.total >= l)
        || p.per_account_limit.is_some_and(|l| u.by_account >= l)
}

/// The discounts that apply, in the order they apply. A code that is unknown, does not apply
/// or is used up is an error rather than silently ignored: the client typed it on purpose.
pub fn apply(
    promotions: &[Promotion],
    ctx: &DiscountContext<'_>,
) -> Result<Vec<AppliedDiscount>, LicensingError> {
    let mut candidates: Vec<&Promotion> = promotions
        .iter()
        .filter(|p| p.code.is_none() && p.applies_to(ctx) && !exhausted(p, usage_of(ctx, p.id)))
        .collect();
    if let Some(code) = ctx.promo_code.map(str::trim).filter(|c| !c.is_empty()) {
        let p = promotions
            .iter()
            .find(|p| p.code_matches(code))
            .ok_or_else(|| LicensingError::PromoCodeUnknown {
                code: code.to_string(),
            })?;
        if !p.applies_to(ctx) {
            return Err(LicensingError::PromoCodeNotApplicable {
                code: code.to_string(),
            });
        }
        if exhausted(p, usage_of(ctx, p.id)) {
            return Err(LicensingError::PromoCodeExhausted {
                code: code.to_string(),
            });
        }
        candidates.push(p);
    }

    let subtotal = ctx.subtotal.amount();
    let best_exclusive = candidates
        .iter()
        .filter(|p| !p.combinable)
        .map(|p| (p.value(subtotal, ctx), *p))
        .filter(|(v, _)| *v > Decimal::ZERO)
        // Worth most to the client; ties go to the higher priority, then the id, so the
        // choice is stable between a quote and the order placed from it.
        .max_by(|(va, a), (vb, b)| {
            va.cmp(vb)
                .then(b.priority.cmp(&a.priority))
                .then(b.id.cmp(&a.id))
        })
        .map(|(_, p)| p);
    let mut combinable: Vec<&Promotion> = candidates
        .iter()
        .copied()
        .filter(|p| p.combinable)
        .collect();
    combinable.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.id.cmp(&b.id)));

    let mut remaining = ctx.subtotal;
    let mut applied = Vec::new();
    for p in best_exclusive.into_iter().chain(combinable) {
        let amount = Money::round_half_up(p.value(remaining.amount(), ctx)).min(remaining);
        if amount.amount() <= Decimal::ZERO {
            continue;
        }
        remaining = remaining - amount;
        applied.push(AppliedDiscount {
            promotion_id: p.id,
            name: p.name.clone(),
            kind: p.discount.as_str().to_string(),
            code: p.code.clone(),
            amount,
        });
    }
    Ok(applied)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn promo(n: u128, discount: DiscountKind, combinable: bool, priority: i32) -> Promotion {
        Promotion {
            id: Uuid::from_u128(n),
            name: format!("promo {n}"),
            code: None,
            discount,
            combinable,
            priority,
            valid_from: None,
            valid_until: None,
            tariffs: vec![],
            order_types: vec![],
            total_limit: None,
            per_account_limit: None,
            active: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::promo;
    use super::*;
    use crate::calendar::parse_date;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn tariff() -> TariffCode {
        TariffCode::parse("business-12").unwrap()
    }

    fn ctx<'a>(
        t: &'a TariffCode,
        subtotal: &str,
        seats: u32,
        paid: &str,
        code: Option<&'a str>,
        usage: &'a [PromoUsage],
    ) -> DiscountContext<'a> {
        DiscountContext {
            order_type: OrderType::Initial,
            tariff: t,
            on: parse_date("2026-06-01").unwrap(),
            seats,
            subtotal: subtotal.parse().unwrap(),
            paid_total: paid.parse().unwrap(),
            promo_code: code,
            usage,
        }
    }

    fn amounts(v: &[AppliedDiscount]) -> Vec<String> {
        v.iter().map(|a| a.amount.to_string()).collect()
    }

    fn progressive() -> DiscountKind {
        DiscountKind::ProgressiveBySeats {
            tiers: vec![
                SeatTier {
                    min_seats: 10,
                    percent: dec!(5),
                },
                SeatTier {
                    min_seats: 50,
                    percent: dec!(10),
                },
            ],
        }
    }

    fn loyalty() -> DiscountKind {
        DiscountKind::Loyalty {
            tiers: vec![
                LoyaltyTier {
                    min_paid: "100000".parse().unwrap(),
                    percent: dec!(5),
                },
                LoyaltyTier {
                    min_paid: "1000000".parse().unwrap(),
                    percent: dec!(7),
                },
            ],
        }
    }

    #[test]
    fn each_kind() {
        let t = tariff();
        let table: Vec<(DiscountKind, u32, &str, &str)> = vec![
            (
                DiscountKind::Percent { percent: dec!(10) },
                10,
                "0",
                "12000.00",
            ),
            (
                DiscountKind::FixedPerSeat {
                    amount: "500".parse().unwrap(),
                },
                10,
                "0",
                "5000.00",
            ),
            (progressive(), 9, "0", ""),
            (progressive(), 10, "0", "6000.00"),
            (progressive(), 50, "0", "12000.00"),
            (loyalty(), 10, "99999.99", ""),
            (loyalty(), 10, "100000", "6000.00"),
            (loyalty(), 10, "1000000", "8400.00"),
        ];
        for (kind, seats, paid, want) in table {
            let p = [promo(1, kind.clone(), false, 0)];
            let got = apply(&p, &ctx(&t, "120000", seats, paid, None, &[])).unwrap();
            let want: Vec<String> = if want.is_empty() {
                vec![]
            } else {
                vec![want.to_string()]
            };
            assert_eq!(amounts(&got), want, "{kind:?} seats {seats} paid {paid}");
        }
    }

    #[test]
    fn best_exclusive_then_combinables_in_priority_order() {
        let t = tariff();
        let promos = [
            promo(1, DiscountKind::Percent { percent: dec!(5) }, false, 0),
            promo(2, DiscountKind::Percent { percent: dec!(8) }, false, 0),
            promo(
                3,
                DiscountKind::FixedPerSeat {
                    amount: "100".parse().unwrap(),
                },
                true,
                2,
            ),
            promo(4, DiscountKind::Percent { percent: dec!(10) }, true, 1),
        ];
        let got = apply(&promos, &ctx(&t, "120000", 10, "0", None, &[])).unwrap();
        let ids: Vec<u128> = got.iter().map(|a| a.promotion_id.as_u128()).collect();
        assert_eq!(ids, vec![2, 4, 3]);
        // 8 % of 120000 = 9600; 10 % of 110400 = 11040; 100 × 10 = 1000.
        assert_eq!(amounts(&got), vec!["9600.00", "11040.00", "1000.00"]);
    }

    #[test]
    fn never_below_zero() {
        let t = tariff();
        let promos = [
            promo(
                1,
                DiscountKind::FixedPerSeat {
                    amount: "20000".parse().unwrap(),
                },
                false,
                0,
            ),
            promo(2, DiscountKind::Percent { percent: dec!(100) }, true, 0),
        ];
        let got = apply(&promos, &ctx(&t, "12000", 1, "0", None, &[])).unwrap();
        assert_eq!(amounts(&got), vec!["12000.00"]);
    }

    #[test]
    fn each_discount_rounded_once_half_up() {
        let t = tariff();
        // 3049.18 × 5 = 15245.90; 2.5 % = 381.1475 → 381.15.
        let promos = [promo(
            1,
            DiscountKind::Percent { percent: dec!(2.5) },
            false,
            0,
        )];
        let got = apply(&promos, &ctx(&t, "15245.90", 5, "0", None, &[])).unwrap();
        assert_eq!(amounts(&got), vec!["381.15"]);
    }

    #[test]
    fn codes_limits_dates_and_scope() {
        let t = tariff();
        let mut coded = promo(7, DiscountKind::Percent { percent: dec!(15) }, false, 0);
        coded.code = Some("SPRING".into());
        coded.total_limit = Some(100);
        coded.per_account_limit = Some(1);
        let promos = [coded.clone()];
        // Without the code, it does not apply.
        assert!(
            apply(&promos, &ctx(&t, "1000", 1, "0", None, &[]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            amounts(&apply(&promos, &ctx(&t, "1000", 1, "0", Some("spring"), &[])).unwrap()),
            vec!["150.00"]
        );
        let code_of = |r: Result<Vec<AppliedDiscount>, LicensingError>| r.unwrap_err().code();
        assert_eq!(
            code_of(apply(
                &promos,
                &ctx(&t, "1000", 1, "0", Some("WINTER"), &[])
            )),
            "promo_code_unknown"
        );
        let used_by_account = [PromoUsage {
            promotion_id: coded.id,
            total: 1,
            by_account: 1,
        }];
        assert_eq!(
            code_of(apply(
                &promos,
                &ctx(&t, "1000", 1, "0", Some("SPRING"), &used_by_account)
            )),
            "promo_code_exhausted"
        );
        let used_total = [PromoUsage {
            promotion_id: coded.id,
            total: 100,
            by_account: 0,
        }];
        assert_eq!(
            code_of(apply(
                &promos,
                &ctx(&t, "1000", 1, "0", Some("SPRING"), &used_total)
            )),
            "promo_code_exhausted"
        );
        let mut expired = coded.clone();
        expired.valid_until = parse_date("2026-05-31").ok();
        assert_eq!(
            code_of(apply(
                &[expired],
                &ctx(&t, "1000", 1, "0", Some("SPRING"), &[])
            )),
            "promo_code_not_applicable"
        );
        let mut edge = coded.clone();
        edge.valid_until = parse_date("2026-06-01").ok();
        edge.valid_from = parse_date("2026-06-01").ok();
        assert!(apply(&[edge], &ctx(&t, "1000", 1, "0", Some("SPRING"), &[])).is_ok());
        let mut other_type = coded.clone();
        other_type.order_types = vec![OrderType::Renewal];
        assert_eq!(
            code_of(apply(
                &[other_type],
                &ctx(&t, "1000", 1, "0", Some("SPRING"), &[])
            )),
            "promo_code_not_applicable"
        );
        let mut other_tariff = coded;
        other_tariff.tariffs = vec![TariffCode::parse("pro").unwrap()];
        assert_eq!(
            code_of(apply(
                &[other_tariff],
                &ctx(&t, "1000", 1, "0", Some("SPRING"), &[])
            )),
            "promo_code_not_applicable"
        );
    }

    proptest! {
        #[test]
        fn total_never_negative(sub in 0i64..100_000_000, seats in 1u32..500, pcts in proptest::collection::vec(1u32..=100, 0..4), fixed in 0i64..10_000_000) {
            let t = tariff();
            let mut promos: Vec<Promotion> = pcts.iter().enumerate().map(|(i, p)| promo(i as u128, DiscountKind::Percent { percent: Decimal::from(*p) }, i % 2 == 0, i as i32)).collect();
            if fixed > 0 {
                promos.push(promo(99, DiscountKind::FixedPerSeat { amount: Money::from_kopecks(fixed) }, true, 5));
            }
            let c = DiscountContext { order_type: OrderType::Initial, tariff: &t, on: parse_date("2026-06-01").unwrap(), seats, subtotal: Money::from_kopecks(sub), paid_total: Money::ZERO, promo_code: None, usage: &[] };
            let got = apply(&promos, &c).unwrap();
            let total = Money::from_kopecks(sub) - got.iter().map(|a| a.amount).sum::<Money>();
            prop_assert!(!total.is_negative());
            prop_assert!(got.iter().all(|a| !a.amount.is_negative()));
            prop_assert!(got.iter().filter(|a| !promos.iter().any(|p| p.id == a.promotion_id && p.combinable)).count() <= 1);
        }
    }
}
