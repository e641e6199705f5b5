//! Ending the agreement early (8.3.3-8.3.5).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::calendar::{BusinessCalendar, add_days, add_months, days_between};
use crate::error::LicensingError;
use crate::money::Money;

pub const PROVIDER_NOTICE_DAYS: i64 = 45;
pub const REFUND_DUE_BUSINESS_DAYS: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminationKind {
    /// 8.3.3: without reasons, 45 days' notice, pro-rata refund.
    Provider,
    /// 8.3.4: for the client's breach, no refund.
    Breach,
    /// 8.3.5: the client's early termination, at the end of the paid month.
    Client,
}

impl TerminationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationKind::Provider => "provider",
            TerminationKind::Breach => "breach",
            TerminationKind::Client => "client",
        }
    }
}

/// One paid grant: the amount paid for seats valid on `[starts_on, ends_on)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaidPeriod {
    pub amount: Money,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationOutcome {
    pub kind: TerminationKind,
    pub notice_on: NaiveDate,
    pub effective_on: NaiveDate,
    pub refund: Money,
    pub refund_due_on: Option<NaiveDate>,
}

/// Refund = Σ paid × unexpired days / paid days, summed exactly and rounded once at the end.
pub fn pro_rata_refund(periods: &[PaidPeriod], effective_on: NaiveDate) -> Money {
    let exact: Decimal = periods
        .iter()
        .filter_map(|p| {
            let total = days_between(p.starts_on, p.ends_on);
            if total <= 0 {
                return None;
            }
            let unexpired = days_between(effective_on.max(p.starts_on), p.ends_on).clamp(0, total);
            Some(p.amount.amount() * Decimal::from(unexpired) / Decimal::from(total))
        })
        .sum();
    Money::round_half_up(exact).clamp_non_negative()
}

pub fn provider(
    notice_on: NaiveDate,
    effective_on: NaiveDate,
    periods: &[PaidPeriod],
    calendar: &BusinessCalendar,
) -> Result<TerminationOutcome, LicensingError> {
    let earliest = add_days(notice_on, PROVIDER_NOTICE_DAYS);
    if effective_on < earliest {
        return Err(LicensingError::NoticeTooShort {
            days: PROVIDER_NOTICE_DAYS,
            earliest,
        });
    }
    Ok(TerminationOutcome {
        kind: TerminationKind::Provider,
        notice_on,
        effective_on,
        refund: pro_rata_refund(periods, effective_on),
        refund_due_on: Some(calendar.add_business_days(effective_on, REFUND_DUE_BUSINESS_DAYS)),
    })
}

pub fn breach(on: NaiveDate) -> TerminationOutcome {
    TerminationOutcome {
        kind: TerminationKind::Breach,
        notice_on: on,
        effective_on: on,
        refund: Money::ZERO,
        refund_due_on: None,
    }
}

/// The end of the paid month of the term in which the client gave notice. Months are counted
/// from the lot's start (each from the start date, so clamping never drifts), and the result
/// never passes the lot's own end. The agreement names no refund for this case, so none is due.
pub fn client(
    notice_on: NaiveDate,
    lot_starts_on: NaiveDate,
    lot_ends_on: NaiveDate,
) -> TerminationOutcome {
    let mut k = 1u32;
    let mut end = add_months(lot_starts_on, k);
    while end <= notice_on && end < lot_ends_on && k < 1200 {
        k += 1;
        end = add_months(lot_starts_on, k);
    }
    TerminationOutcome {
        kind: TerminationKind::Client,
        notice_on,
        effective_on: end.min(lot_ends_on),
        refund: Money::ZERO,
        refund_due_on: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn notice_edges() {
        let cal = BusinessCalendar::default();
        let p = [PaidPeriod {
            amount: "120000".parse().unwrap(),
            starts_on: d("2026-03-01"),
            ends_on: d("2027-03-01"),
        }];
        assert_eq!(
            provider(d("2026-09-01"), d("2026-10-15"), &p, &cal)
                .unwrap_err()
                .code(),
            "notice_too_short"
        );
        assert!(provider(d("2026-09-01"), d("2026-10-16"), &p, &cal).is_ok());
        assert!(provider(d("2026-09-01"), d("2026-10-17"), &p, &cal).is_ok());
    }

    #[test]
    fn refund_sums_exactly_then_rounds() {
        // Two top-up periods, each 1/3 unexpired of 100.00: 33.333.. + 33.333.. = 66.67, not 66.66.
        let p = [
            PaidPeriod {
                amount: "100".parse().unwrap(),
                starts_on: d("2026-01-01"),
                ends_on: d("2026-01-04"),
            },
            PaidPeriod {
                amount: "100".parse().unwrap(),
                starts_on: d("2026-01-01"),
                ends_on: d("2026-01-04"),
            },
        ];
        assert_eq!(pro_rata_refund(&p, d("2026-01-03")).to_string(), "66.67");
        assert_eq!(pro_rata_refund(&p, d("2026-02-01")), Money::ZERO);
        assert_eq!(pro_rata_refund(&p, d("2025-12-01")).to_string(), "200.00");
    }

    #[test]
    fn breach_refunds_nothing() {
        let o = breach(d("2026-05-05"));
        assert_eq!(o.refund, Money::ZERO);
        assert_eq!(o.effective_on, d("2026-05-05"));
    }

    #[test]
    fn client_termination_at_end_of_paid_month() {
        let cases = [
            ("2026-03-01", "2026-03-01", "2026-04-01"),
            ("2026-03-31", "2026-03-01", "2026-04-01"),
            ("2026-04-01", "2026-03-01", "2026-05-01"),
            ("2026-02-27", "2026-01-31", "2026-02-28"),
            ("2026-02-28", "2026-01-31", "2026-03-31"),
            ("2027-02-20", "2026-03-01", "2027-03-01"),
        ];
        for (notice, start, want) in cases {
            let o = client(d(notice), d(start), add_months(d(start), 12));
            assert_eq!(o.effective_on, d(want), "notice {notice} start {start}");
        }
    }

    proptest! {
        #[test]
        fn refund_never_negative_nor_above_paid(k in 0i64..100_000_000, len in 1i64..800, at in -100i64..900) {
            let start = d("2026-01-01");
            let p = [PaidPeriod { amount: Money::from_kopecks(k), starts_on: start, ends_on: add_days(start, len) }];
            let r = pro_rata_refund(&p, add_days(start, at));
            prop_assert!(!r.is_negative());
            prop_assert!(r <= Money::from_kopecks(k));
        }
    }
}
