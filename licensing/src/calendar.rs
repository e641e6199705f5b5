//! Dates as the agreement counts them: Moscow calendar dates, month arithmetic that clamps to
//! the month's end, and the Russian production calendar for business-day deadlines.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc, Weekday};
use chrono_tz::Europe::Moscow;
use serde::{Deserialize, Serialize};

use crate::error::LicensingError;

/// "Today" for every rule is the date in Moscow, whatever the server's zone.
pub fn moscow_date(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&Moscow).date_naive()
}

/// Strict `YYYY-MM-DD`; anything else is refused rather than guessed.
pub fn parse_date(input: &str) -> Result<NaiveDate, LicensingError> {
    let bad = || LicensingError::InvalidDate {
        value: input.to_string(),
    };
    if input.len() != 10 {
        return Err(bad());
    }
    NaiveDate::parse_from_str(input, "%Y-%m-%d").map_err(|_| bad())
}

/// 2026-01-31 + 1 month = 2026-02-28: chrono's `Months` clamps to the last day of the month,
/// which is the rule the spec fixes. Saturates at the far end of the calendar instead of failing.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

pub fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    let r = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    r.unwrap_or(if days >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
}

/// Calendar days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

/// One year's decree of the Government moving days off (they change every year, so they are
/// data, not code). `days_off` become non-working, `working_days` become working (usually
/// Saturdays).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct YearTransfers {
    pub days_off: Vec<NaiveDate>,
    pub working_days: Vec<NaiveDate>,
}

/// The production calendar: weekends, the non-working holidays of Labour Code article 112,
/// the automatic move of a holiday that falls on a weekend, and each year's decree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessCalendar {
    transfers: BTreeMap<i32, YearTransfers>,
}

/// Article 112 part 1: 1-6 and 8 January (New Year holidays), 7 January (Christmas),
/// 23 February, 8 March, 1 May, 9 May, 12 June, 4 November.
const HOLIDAYS: [(u32, u32); 14] = [
    (1, 1),
    (1, 2),
    (1, 3),
    (1, 4),
    (1, 5),
    (1, 6),
    (1, 7),
    (1, 8),
    (2, 23),
    (3, 8),
    (5, 1),
    (5, 9),
    (6, 12),
    (11, 4),
];

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

pub fn is_holiday(d: NaiveDate) -> bool {
    HOLIDAYS.contains(&(d.month(), d.day()))
}

impl Default for BusinessCalendar {
    /// Ships the decrees we know; operators add next year's with [`BusinessCalendar::set_year`].
    fn default() -> Self {
        let mut cal = BusinessCalendar::empty();
        // Decree for 2026: 3 January (Sat) moves to 9 January, 4 January (Sun) to 31 December.
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day);
        let days_off = [d(1, 9), d(12, 31)].into_iter().flatten().collect();
        cal.set_year(
            2026,
            YearTransfers {
                days_off,
                working_days: vec![],
            },
        );
        cal
    }
}

impl BusinessCalendar {
    pub fn empty() -> Self {
        BusinessCalendar {
            transfers: BTreeMap::new(),
        }
    }

    pub fn set_year(&mut self, year: i32, transfers: YearTransfers) {
        self.transfers.insert(year, transfers);
    }

    pub fn year(&self, year: i32) -> Option<&YearTransfers> {
        self.transfers.get(&year)
    }

    /// Article 112 part 2: a holiday on a weekend gives the next working day off, except the
    /// January holidays, whose weekend days the Government moves by decree (the year's data).
    fn automatic_days_off(&self, year: i32) -> BTreeSet<NaiveDate> {
        let mut moved = BTreeSet::new();
        for (m, d) in HOLIDAYS.iter().filter(|(m, _)| *m != 1) {
            let Some(h) = NaiveDate::from_ymd_opt(year, *m, *d) else {
                continue;
            };
            if !is_weekend(h) {
                continue;
            }
            let mut next = add_days(h, 1);
            while is_weekend(next) || is_holiday(next) || moved.contains(&next) {
                next = add_days(next, 1);
            }
            moved.insert(next);
        }
        moved
    }

    pub fn is_business_day(&self, d: NaiveDate) -> bool {
        if let Some(t) = self.transfers.get(&d.year()) {
            if t.working_days.contains(&d) {
                return true;
            }
            if t.days_off.contains(&d) {
                return false;
            }
        }
        !(is_weekend(d) || is_holiday(d) || self.automatic_days_off(d.year()).contains(&d))
    }

    /// The date `n` business days after `from` ("within 10 business days of the termination").
    pub fn add_business_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut d = from;
        let mut left = n;
        while left > 0 {
            d = add_days(d, 1);
            if d == NaiveDate::MAX {
                return d;
            }
            if self.is_business_day(d) {
                left -= 1;
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn month_end_clamping() {
        let cases = [
            ("2026-01-31", 1, "2026-02-28"),
            ("2028-01-31", 1, "2028-02-29"),
            ("2026-03-31", 1, "2026-04-30"),
            ("2028-02-29", 12, "2029-02-28"),
            ("2027-02-28", 12, "2028-02-28"),
            ("2026-03-01", 12, "2027-03-01"),
            ("2026-08-31", 6, "2027-02-28"),
            ("2026-05-15", 0, "2026-05-15"),
        ];
        for (from, m, want) in cases {
            assert_eq!(add_months(d(from), m), d(want), "{from} + {m} months");
        }
    }

    #[test]
    fn leap_years_in_day_counts() {
        assert_eq!(days_between(d("2027-03-01"), d("2028-03-01")), 366);
        assert_eq!(days_between(d("2026-03-01"), d("2027-03-01")), 365);
        assert_eq!(add_days(d("2028-01-20"), 40), d("2028-02-29"));
        assert_eq!(add_days(d("2027-01-20"), 40), d("2027-03-01"));
    }

    #[test]
    fn parse_date_is_strict() {
        assert!(parse_date("2026-1-05").is_err());
        assert!(parse_date("05.01.2026").is_err());
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date(" 2026-02-03").is_err());
        assert_eq!(parse_date("2026-02-03").unwrap(), d("2026-02-03"));
    }

    #[test]
    fn moscow_today_differs_from_utc_late_in_the_evening() {
        let late = DateTime::parse_from_rfc3339("2026-12-31T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(moscow_date(late), d("2027-01-01"));
    }

    #[test]
    fn business_days_table() {
        let cal = BusinessCalendar::default();
        let cases = [
            ("2026-10-16", true),  // Friday
            ("2026-10-17", false), // Saturday
            ("2026-11-04", false), // Unity Day, Wednesday
            ("2026-01-07", false), // Christmas
            ("2026-01-08", false),
            ("2026-01-09", false), // decree: moved from 3 January
            ("2026-01-12", true),
            ("2026-02-23", false),
            ("2026-03-08", false), // Sunday holiday
            ("2026-03-09", false), // ... gives Monday off
            ("2026-05-09", false), // Saturday holiday
            ("2026-05-11", false), // ... gives Monday off
            ("2026-06-12", false),
            ("2026-12-31", false), // decree: moved from 4 January
        ];
        for (day, want) in cases {
            assert_eq!(cal.is_business_day(d(day)), want, "{day}");
        }
    }

    #[test]
    fn transfer_rule_skips_over_following_holidays() {
        // 2027: 1 May is a Saturday and 9 May a Sunday: Monday 3 May and Monday 10 May are off.
        let cal = BusinessCalendar::empty();
        assert!(!cal.is_business_day(d("2027-05-03")));
        assert!(!cal.is_business_day(d("2027-05-10")));
        assert!(cal.is_business_day(d("2027-05-04")));
        // 2021: 23 February Tuesday stays; 4 November 2023 Saturday moves to Monday 6 November.
        assert!(!cal.is_business_day(d("2023-11-06")));
        // January holidays on weekends are not moved automatically.
        assert!(cal.is_business_day(d("2027-01-11")));
    }

    #[test]
    fn editable_transfers_win() {
        let mut cal = BusinessCalendar::empty();
        cal.set_year(
            2027,
            YearTransfers {
                days_off: vec![d("2027-01-11")],
                working_days: vec![d("2027-05-03")],
            },
        );
        assert!(!cal.is_business_day(d("2027-01-11")));
        assert!(cal.is_business_day(d("2027-05-03")));
    }

    #[test]
    fn adding_business_days() {
        let cal = BusinessCalendar::default();
        assert_eq!(cal.add_business_days(d("2026-10-16"), 10), d("2026-10-30"));
        // Over Unity Day (Wednesday 4 November 2026).
        assert_eq!(cal.add_business_days(d("2026-11-02"), 3), d("2026-11-06"));
        // Over the New Year break: 31 Dec 2026 is off by decree, 1-8 January 2027 are holidays.
        assert_eq!(cal.add_business_days(d("2026-12-30"), 1), d("2027-01-11"));
        assert_eq!(cal.add_business_days(d("2026-10-16"), 0), d("2026-10-16"));
    }
}
