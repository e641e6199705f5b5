//! A lot: seats of one tariff valid on `starts_on <= d < ends_on`.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::days_between;
use crate::error::LicensingError;
use crate::seats::Seats;
use crate::tariff::TariffCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LotStatus {
    PendingPayment,
    Active,
    Suspended,
    Expired,
    Superseded,
    Terminated,
}

impl LotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LotStatus::PendingPayment => "pending_payment",
            LotStatus::Active => "active",
            LotStatus::Suspended => "suspended",
            LotStatus::Expired => "expired",
            LotStatus::Superseded => "superseded",
            LotStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Result<LotStatus, LicensingError> {
        Ok(match s {
            "pending_payment" => LotStatus::PendingPayment,
            "active" => LotStatus::Active,
            "suspended" => LotStatus::Suspended,
            "expired" => LotStatus::Expired,
            "superseded" => LotStatus::Superseded,
            "terminated" => LotStatus::Terminated,
            _ => return Err(LicensingError::Storage(format!("unknown lot status {s:?}"))),
        })
    }
}

impl fmt::Display for LotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub id: Uuid,
    pub account_id: Uuid,
    pub tariff: TariffCode,
    pub seats: Seats,
    pub starts_on: NaiveDate,
    /// Exclusive: the first day the lot no longer grants access.
    pub ends_on: NaiveDate,
    pub status: LotStatus,
    pub trial: bool,
}

impl Lot {
    pub fn is_valid_on(&self, d: NaiveDate) -> bool {
        self.starts_on <= d && d < self.ends_on
    }

    /// Active in status and within its dates: the status alone may lag behind the calendar
    /// (expiry is not a write), so every check asks both.
    pub fn grants_access_on(&self, d: NaiveDate) -> bool {
        self.status == LotStatus::Active && self.is_valid_on(d)
    }

    /// Status as of `d`, turning an active lot past its end into an expired one.
    pub fn status_on(&self, d: NaiveDate) -> LotStatus {
        if self.status == LotStatus::Active && d >= self.ends_on {
            LotStatus::Expired
        } else {
            self.status
        }
    }

    pub fn remaining_days(&self, d: NaiveDate) -> i64 {
        days_between(d, self.ends_on).max(0)
    }

    pub fn term_days(&self) -> i64 {
        days_between(self.starts_on, self.ends_on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;

    #[test]
    fn ends_on_is_exclusive() {
        let lot = Lot {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            tariff: TariffCode::parse("b").unwrap(),
            seats: Seats::new(10).unwrap(),
            starts_on: parse_date("2026-03-01").unwrap(),
            ends_on: parse_date("2027-03-01").unwrap(),
            status: LotStatus::Active,
            trial: false,
        };
        assert!(!lot.is_valid_on(parse_date("2026-02-28").unwrap()));
        assert!(lot.is_valid_on(parse_date("2026-03-01").unwrap()));
        assert!(lot.is_valid_on(parse_date("2027-02-28").unwrap()));
        assert!(!lot.is_valid_on(parse_date("2027-03-01").unwrap()));
        assert_eq!(
            lot.status_on(parse_date("2027-03-01").unwrap()),
            LotStatus::Expired
        );
        assert_eq!(lot.term_days(), 365);
        assert_eq!(lot.remaining_days(parse_date("2026-10-16").unwrap()), 136);
    }
}
