//! When each order type may be placed, relative to the end `E` of the current lot (5.2.1,
//! 5.3.1, 5.3.2, 5.4.1, 5.5.1). A refusal names the window and the date it opens or closed, so
//! the client knows what to do and when.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::add_days;
use crate::error::LicensingError;
use crate::order::OrderType;

pub const RENEWAL_OPENS_DAYS_BEFORE_END: i64 = 90;
pub const TOP_UP_CLOSES_DAYS_BEFORE_END: i64 = 90;
pub const REDUCTION_OPENS_DAYS_BEFORE_END: i64 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Renewal,
    TopUp,
    Reduction,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Window::Renewal => "renewal (opens 90 days before the license ends)",
            Window::TopUp => "top-up (closes 90 days before the license ends)",
            Window::Reduction => "renewal with reduction (opens 14 days before the license ends)",
        })
    }
}

/// The dates at which the windows of a lot ending on `ends_on` open and close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Windows {
    pub renewal_opens_on: NaiveDate,
    pub top_up_closes_on: NaiveDate,
    pub reduction_opens_on: NaiveDate,
    pub ends_on: NaiveDate,
}

impl Windows {
    pub fn for_lot(ends_on: NaiveDate) -> Windows {
        Windows {
            renewal_opens_on: add_days(ends_on, -RENEWAL_OPENS_DAYS_BEFORE_END),
            top_up_closes_on: add_days(ends_on, -TOP_UP_CLOSES_DAYS_BEFORE_END),
            reduction_opens_on: add_days(ends_on, -REDUCTION_OPENS_DAYS_BEFORE_END),
            ends_on,
        }
    }
}

/// May an order of `kind` against a lot ending on `ends_on` be placed on `on`?
/// Both edges are inclusive ("not earlier than 90 days", "not later than 90 days"); on `E`
/// itself the lot is no longer valid (`ends_on` is exclusive), so it has expired.
pub fn check(
    kind: OrderType,
    license_id: &str,
    ends_on: NaiveDate,
    on: NaiveDate,
) -> Result<(), LicensingError> {
    if kind == OrderType::Initial {
        return Ok(());
    }
    let w = Windows::for_lot(ends_on);
    if on >= ends_on {
        return Err(LicensingError::LicenseExpired {
            license_id: license_id.to_string(),
            ended_on: ends_on,
        });
    }
    match kind {
        OrderType::Initial => Ok(()),
        OrderType::Renewal | OrderType::RenewalWithTopUp if on < w.renewal_opens_on => {
            Err(LicensingError::WindowNotOpen {
                window: Window::Renewal,
                opens_on: w.renewal_opens_on,
            })
        }
        OrderType::TopUp if on > w.top_up_closes_on => Err(LicensingError::WindowClosed {
            window: Window::TopUp,
            closed_on: w.top_up_closes_on,
            alternative: Some(OrderType::RenewalWithTopUp),
        }),
        OrderType::RenewalWithReduction if on < w.reduction_opens_on => {
            Err(LicensingError::WindowNotOpen {
                window: Window::Reduction,
                opens_on: w.reduction_opens_on,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    const E: &str = "2027-03-01";

    fn outcome(kind: OrderType, on: &str) -> &'static str {
        match check(kind, "lot", d(E), d(on)) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn window_dates_for_the_spec_lot() {
        let w = Windows::for_lot(d(E));
        assert_eq!(w.renewal_opens_on, d("2026-12-01"));
        assert_eq!(w.top_up_closes_on, d("2026-12-01"));
        assert_eq!(w.reduction_opens_on, d("2027-02-15"));
    }

    #[test]
    fn every_window_edge() {
        use OrderType::*;
        let table = [
            // renewal opens 2026-12-01
            (Renewal, "2026-11-30", "window_not_open"),
            (Renewal, "2026-12-01", "ok"),
            (Renewal, "2026-12-02", "ok"),
            (RenewalWithTopUp, "2026-11-30", "window_not_open"),
            (RenewalWithTopUp, "2026-12-01", "ok"),
            (RenewalWithTopUp, "2026-12-02", "ok"),
            // top-up closes 2026-12-01
            (TopUp, "2026-11-30", "ok"),
            (TopUp, "2026-12-01", "ok"),
            (TopUp, "2026-12-02", "window_closed"),
            // reduction opens 2027-02-15
            (RenewalWithReduction, "2027-02-14", "window_not_open"),
            (RenewalWithReduction, "2027-02-15", "ok"),
            (RenewalWithReduction, "2027-02-16", "ok"),
            // the lot's end: the day before is still inside, the day of and after are expired
            (Renewal, "2027-02-28", "ok"),
            (Renewal, "2027-03-01", "license_expired"),
            (Renewal, "2027-03-02", "license_expired"),
            (RenewalWithReduction, "2027-02-28", "ok"),
            (RenewalWithReduction, "2027-03-01", "license_expired"),
            (TopUp, "2027-03-01", "license_expired"),
            (Initial, "2030-01-01", "ok"),
        ];
        for (kind, on, want) in table {
            assert_eq!(outcome(kind, on), want, "{kind} on {on}");
        }
    }

    #[test]
    fn refusals_name_window_and_date() {
        let e = check(OrderType::TopUp, "lot", d(E), d("2026-12-02")).unwrap_err();
        assert_eq!(
            e,
            LicensingError::WindowClosed {
                window: Window::TopUp,
                closed_on: d("2026-12-01"),
                alternative: Some(OrderType::RenewalWithTopUp)
            }
        );
        assert!(e.message().contains("2026-12-01"), "{}", e.message());
        assert!(
            e.message().contains("renewal_with_top_up"),
            "{}",
            e.message()
        );
        let body = e.to_body();
        assert_eq!(body["error"]["code"], "window_closed");
        assert_eq!(body["error"]["closed_on"], "2026-12-01");
        let e = check(
            OrderType::RenewalWithReduction,
            "lot",
            d(E),
            d("2027-02-10"),
        )
        .unwrap_err();
        assert_eq!(e.to_body()["error"]["opens_on"], "2027-02-15");
    }

    #[test]
    fn leap_year_window() {
        // A lot ending 2028-03-01: 90 days back crosses 29 February.
        let w = Windows::for_lot(d("2028-03-01"));
        assert_eq!(w.renewal_opens_on, d("2027-12-02"));
        assert_eq!(w.reduction_opens_on, d("2028-02-16"));
    }
}
