//! Terms and prices of each order type (sections 5.2-5.5).
//!
//! Every formula multiplies before it divides and rounds once, half up to kopecks, at the very
//! end (5.3.4: "rounding ... only at the end of the calculation"); `B / 366` first would lose
//! kopecks on every seat.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::calendar::{add_days, add_months, days_between};
use crate::lot::Lot;
use crate::money::Money;
use crate::order::{Channel, OrderType, PaymentTerms, logistics_days};
use crate::seats::Seats;
use crate::tariff::Tariff;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Initial,
    Renewal,
    TopUp,
    RenewalWithReduction,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Initial => "initial",
            LineKind::Renewal => "renewal",
            LineKind::TopUp => "top_up",
            LineKind::RenewalWithReduction => "renewal_with_reduction",
        }
    }
}

/// The inputs of a pro-rated price, shown in the quote so a client can redo the sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formula {
    #[serde(rename = "B")]
    pub b: Money,
    #[serde(rename = "D1")]
    pub d1: NaiveDate,
    #[serde(rename = "D2")]
    pub d2: NaiveDate,
    /// The day count the price is multiplied by: `D1 − D2 − logistics_days`, never negative.
    pub days: i64,
    pub logistics_days: i64,
    pub basis: i64,
}

impl Formula {
    pub fn new(b: Money, d1: NaiveDate, d2: NaiveDate, logistics_days: i64, basis: i64) -> Formula {
        let days = (days_between(d2, d1) - logistics_days).max(0);
        Formula {
            b,
            d1,
            d2,
            days,
            logistics_days,
            basis,
        }
    }

    /// A = B × days / basis, rounded half up only here.
    pub fn unit_price(&self) -> Money {
        if self.basis <= 0 {
            return Money::ZERO;
        }
        let exact = self.b.amount() * Decimal::from(self.days) / Decimal::from(self.basis);
        Money::round_half_up(exact).clamp_non_negative()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub kind: LineKind,
    pub seats: Seats,
    pub unit_price: Money,
    pub amount: Money,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub formula: Option<Formula>,
}

impl Line {
    fn full_term(
        kind: LineKind,
        seats: Seats,
        tariff: &Tariff,
        starts_on: NaiveDate,
        ends_on: NaiveDate,
    ) -> Line {
        Line {
            kind,
            seats,
            unit_price: tariff.price_per_seat,
            amount: tariff.price_per_seat.times(seats.get()),
            starts_on,
            ends_on,
            formula: None,
        }
    }

    fn pro_rated(seats: Seats, formula: Formula, starts_on: NaiveDate) -> Line {
        let unit = formula.unit_price();
        Line {
            kind: LineKind::TopUp,
            seats,
            unit_price: unit,
            // The line is seats × A with A already rounded: each added licence has one price.
            amount: unit.times(seats.get()),
            starts_on,
            ends_on: formula.d1,
            formula: Some(formula),
        }
    }
}

/// End of a first purchase granted on `grant`.
pub fn initial_end(grant: NaiveDate, term_months: u32) -> NaiveDate {
    add_months(grant, term_months)
}

/// End of a renewal granted on `grant` of a lot ending on `current_end` (5.2.2): the tariff's
/// term counted from the grant, in months, then the days the current lot had left.
pub fn renewal_end(grant: NaiveDate, term_months: u32, current_end: NaiveDate) -> NaiveDate {
    let remaining = days_between(grant, current_end).max(0);
    add_days(add_months(grant, term_months), remaining)
}

/// End of a renewal with reduction (5.5.2): the remaining term is not carried over.
pub fn reduction_end(grant: NaiveDate, term_months: u32) -> NaiveDate {
    add_months(grant, term_months)
}

/// What is being priced, with the records it refers to already looked up and checked.
#[derive(Clone, Copy, Debug)]
pub enum Priced<'a> {
    Initial {
        tariff: &'a Tariff,
        seats: Seats,
    },
    Renewal {
        lot: &'a Lot,
        tariff: &'a Tariff,
    },
    TopUp {
        lot: &'a Lot,
        lot_tariff: &'a Tariff,
        add: Seats,
    },
    RenewalWithTopUp {
        lot: &'a Lot,
        tariff: &'a Tariff,
        add: Seats,
    },
    RenewalWithReduction {
        lot: &'a Lot,
        tariff: &'a Tariff,
        seats: Seats,
    },
}

impl Priced<'_> {
    pub fn order_type(&self) -> OrderType {
        match self {
            Priced::Initial { .. } => OrderType::Initial,
            Priced::Renewal { .. } => OrderType::Renewal,
            Priced::TopUp { .. } => OrderType::TopUp,
            Priced::RenewalWithTopUp { .. } => OrderType::RenewalWithTopUp,
            Priced::RenewalWithReduction { .. } => OrderType::RenewalWithReduction,
        }
    }
}

/// The lines of an order whose start date (D2) is `start`. At quote time the grant is assumed
/// on the start date; the price stays fixed even if payment and grant come later (5.3.4.2).
pub fn price(
    order: Priced<'_>,
    terms: PaymentTerms,
    channel: Channel,
    start: NaiveDate,
) -> Vec<Line> {
    let logistics = logistics_days(terms, channel);
    match order {
        Priced::Initial { tariff, seats } => vec![Line::full_term(
            LineKind::Initial,
            seats,
            tariff,
            start,
            initial_end(start, tariff.term_months),
        )],
        Priced::Renewal { lot, tariff } => vec![Line::full_term(
            LineKind::Renewal,
            lot.seats,
            tariff,
            start,
            renewal_end(start, tariff.term_months, lot.ends_on),
        )],
        Priced::TopUp {
            lot,
            lot_tariff,
            add,
        } => {
            let f = Formula::new(
                lot_tariff.price_per_seat,
                lot.ends_on,
                start,
                logistics,
                lot_tariff.basis_days(),
            );
            vec![Line::pro_rated(add, f, start)]
        }
        Priced::RenewalWithTopUp { lot, tariff, add } => {
            let end = renewal_end(start, tariff.term_months, lot.ends_on);
            let f = Formula::new(
                tariff.price_per_seat,
                end,
                start,
                logistics,
                tariff.basis_days(),
            );
            vec![
                Line::full_term(LineKind::Renewal, lot.seats, tariff, start, end),
                Line::pro_rated(add, f, start),
            ]
        }
        Priced::RenewalWithReduction { tariff, seats, .. } => vec![Line::full_term(
            LineKind::RenewalWithReduction,
            seats,
            tariff,
            start,
            reduction_end(start, tariff.term_months),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;
    use crate::lot::LotStatus;
    use crate::tariff::fixtures::business12;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use uuid::Uuid;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn lot(seats: i64, start: NaiveDate, end: NaiveDate) -> Lot {
        Lot {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            tariff: business12().code,
            seats: Seats::new(seats).unwrap(),
            starts_on: start,
            ends_on: end,
            status: LotStatus::Active,
            trial: false,
        }
    }

    fn s(n: i64) -> Seats {
        Seats::new(n).unwrap()
    }

    #[test]
    fn order_type_table() {
        let t = business12();
        let l = lot(10, d("2026-03-01"), d("2027-03-01"));
        let pp = (PaymentTerms::Prepay, Channel::Portal);
        type Want<'a> = Vec<(&'a str, u32, &'a str, &'a str, &'a str)>;
        let cases: Vec<(Priced, &str, Want)> = vec![
            (
                Priced::Initial {
                    tariff: &t,
                    seats: s(3),
                },
                "2026-01-31",
                vec![("initial", 3, "36000.00", "2026-01-31", "2027-01-31")],
            ),
            (
                Priced::Renewal {
                    lot: &l,
                    tariff: &t,
                },
                "2027-01-20",
                vec![("renewal", 10, "120000.00", "2027-01-20", "2028-02-29")],
            ),
            (
                Priced::TopUp {
                    lot: &l,
                    lot_tariff: &t,
                    add: s(5),
                },
                "2026-11-21",
                vec![("top_up", 5, "15245.90", "2026-11-21", "2027-03-01")],
            ),
            (
                Priced::RenewalWithTopUp {
                    lot: &l,
                    tariff: &t,
                    add: s(5),
                },
                "2027-01-15",
                vec![
                    ("renewal", 10, "120000.00", "2027-01-15", "2028-02-29"),
                    ("top_up", 5, "66065.55", "2027-01-15", "2028-02-29"),
                ],
            ),
            (
                Priced::RenewalWithReduction {
                    lot: &l,
                    tariff: &t,
                    seats: s(6),
                },
                "2027-02-22",
                vec![(
                    "renewal_with_reduction",
                    6,
                    "72000.00",
                    "2027-02-22",
                    "2028-02-22",
                )],
            ),
        ];
        for (order, start, want) in cases {
            let lines = price(order, pp.0, pp.1, d(start));
            let got: Vec<_> = lines
                .iter()
                .map(|l| {
                    (
                        l.kind.as_str(),
                        l.seats.get(),
                        l.amount.to_string(),
                        l.starts_on.to_string(),
                        l.ends_on.to_string(),
                    )
                })
                .collect();
            let want: Vec<_> = want
                .into_iter()
                .map(|(k, n, a, f, e)| (k, n, a.to_string(), f.to_string(), e.to_string()))
                .collect();
            assert_eq!(got, want, "{:?}", order.order_type());
        }
    }

    #[test]
    fn logistics_days_by_terms_and_channel() {
        let t = business12();
        let l = lot(10, d("2026-03-01"), d("2027-03-01"));
        let table = [
            (PaymentTerms::Prepay, Channel::Portal, 93, "3049.18"),
            (PaymentTerms::Prepay, Channel::Manager, 100, "3278.69"),
            (PaymentTerms::Postpay, Channel::Portal, 100, "3278.69"),
            (PaymentTerms::Postpay, Channel::Manager, 100, "3278.69"),
        ];
        for (terms, channel, days, unit) in table {
            let lines = price(
                Priced::TopUp {
                    lot: &l,
                    lot_tariff: &t,
                    add: s(1),
                },
                terms,
                channel,
                d("2026-11-21"),
            );
            let f = lines[0].formula.unwrap();
            assert_eq!(f.days, days);
            assert_eq!(lines[0].unit_price.to_string(), unit);
        }
    }

    #[test]
    fn top_up_never_negative_near_the_end() {
        // Six days before the end minus seven logistics days would be negative: the line is zero.
        let f = Formula::new(
            "12000.00".parse().unwrap(),
            d("2027-03-01"),
            d("2027-02-23"),
            7,
            366,
        );
        assert_eq!(f.days, 0);
        assert_eq!(f.unit_price(), Money::ZERO);
    }

    #[test]
    fn multiply_before_divide_matters() {
        // 12000 / 366 rounded first is 32.79; × 93 = 3049.47, not the agreement's 3049.18.
        let f = Formula::new(
            "12000.00".parse().unwrap(),
            d("2027-03-01"),
            d("2026-11-21"),
            7,
            366,
        );
        assert_eq!(f.unit_price().amount(), dec!(3049.18));
        let early = Money::round_half_up(dec!(12000) / dec!(366)).amount() * dec!(93);
        assert_ne!(early, dec!(3049.18));
    }

    #[test]
    fn rounding_at_xx5_is_half_up() {
        // B × days / basis = 1.005 exactly: 201 × 1 / 200.
        let f = Formula::new(
            "201.00".parse().unwrap(),
            d("2026-01-02"),
            d("2026-01-01"),
            0,
            200,
        );
        assert_eq!(f.unit_price().to_string(), "1.01");
        // 0.125 → 0.13 (banker's rounding would give 0.12).
        let f = Formula::new(
            "1.00".parse().unwrap(),
            d("2026-01-02"),
            d("2026-01-01"),
            0,
            8,
        );
        assert_eq!(f.unit_price().to_string(), "0.13");
    }

    #[test]
    fn month_end_and_leap_year_terms() {
        assert_eq!(initial_end(d("2026-01-31"), 1), d("2026-02-28"));
        assert_eq!(initial_end(d("2028-02-29"), 12), d("2029-02-28"));
        assert_eq!(
            renewal_end(d("2027-01-20"), 12, d("2027-03-01")),
            d("2028-02-29")
        );
        assert_eq!(
            renewal_end(d("2027-01-31"), 1, d("2027-02-10")),
            d("2027-03-10")
        );
        // Granted after the end: nothing left to carry.
        assert_eq!(
            renewal_end(d("2027-03-05"), 12, d("2027-03-01")),
            d("2028-03-05")
        );
        assert_eq!(reduction_end(d("2027-02-22"), 12), d("2028-02-22"));
    }

    fn arb_date() -> impl Strategy<Value = NaiveDate> {
        (0i64..3650)
            .prop_map(|n| add_days(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(), n))
    }

    proptest! {
        #[test]
        fn n_added_seats_cost_n_times_unit(price_k in 0i64..10_000_000, n in 1i64..1000, start in arb_date(), len in 1i64..800, postpay in any::<bool>()) {
            let mut t = business12();
            t.price_per_seat = Money::from_kopecks(price_k);
            let l = lot(10, add_days(start, -10), add_days(start, len));
            let terms = if postpay { PaymentTerms::Postpay } else { PaymentTerms::Prepay };
            let lines = price(Priced::TopUp { lot: &l, lot_tariff: &t, add: s(n) }, terms, Channel::Portal, start);
            let one = price(Priced::TopUp { lot: &l, lot_tariff: &t, add: s(1) }, terms, Channel::Portal, start);
            prop_assert_eq!(lines[0].amount, one[0].amount.times(u32::try_from(n).unwrap()));
            prop_assert_eq!(lines[0].amount, lines[0].unit_price.times(lines[0].seats.get()));
            prop_assert!(!lines[0].amount.is_negative());
        }

        #[test]
        fn renewal_end_is_grant_plus_term_plus_remaining(grant in arb_date(), left in 0i64..400, term in 1u32..36) {
            let end = add_days(grant, left);
            let got = renewal_end(grant, term, end);
            prop_assert_eq!(got, add_days(add_months(grant, term), left));
            prop_assert_eq!(days_between(add_months(grant, term), got), left);
        }

        #[test]
        fn reduction_never_carries_remaining_term(grant in arb_date(), left in 0i64..400, term in 1u32..36, seats in 1i64..10) {
            let t = Tariff { term_months: term, ..business12() };
            let l = lot(10, add_days(grant, -300), add_days(grant, left));
            let lines = price(Priced::RenewalWithReduction { lot: &l, tariff: &t, seats: s(seats) }, PaymentTerms::Prepay, Channel::Portal, grant);
            prop_assert_eq!(lines[0].ends_on, add_months(grant, term));
        }

        #[test]
        fn rounding_only_at_the_end(price_k in 0i64..100_000_000, days in 0i64..800) {
            // The unit price equals the exact rational B × days / basis rounded once: within
            // half a kopeck of the exact value, which rounding B / basis first does not guarantee.
            let b = Money::from_kopecks(price_k);
            let f = Formula { b, d1: NaiveDate::MIN, d2: NaiveDate::MIN, days, logistics_days: 0, basis: 366 };
            let exact = b.amount() * Decimal::from(days) / Decimal::from(366);
            let diff = (f.unit_price().amount() - exact).abs();
            prop_assert!(diff <= dec!(0.005), "{} vs {}", f.unit_price(), exact);
            prop_assert_eq!(f.unit_price(), Money::round_half_up(exact));
        }
    }
}
