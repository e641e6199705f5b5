//! Money in roubles with exactly two decimals.
//!
//! Every amount a client sees or pays is a `Money`. Intermediate results of a formula stay plain
//! `Decimal`s and become `Money` through [`Money::round_half_up`] exactly once, at the end: the
//! agreement (5.3.4) forbids rounding in the middle of a calculation.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg, Sub};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::LicensingError;

/// Largest amount we accept from input: far above any real licence bill, far below the
/// 96-bit limit of `Decimal`, so products of seats and prices can never overflow.
const MAX_ABS: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0); // 1e15

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// The single rounding point of every formula: half up (away from zero at .xx5).
    pub fn round_half_up(value: Decimal) -> Money {
        let mut d = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        d.rescale(2);
        Money(d)
    }

    /// Accepts only values that already have at most two decimals: input that would need
    /// rounding is refused rather than silently changed.
    pub fn from_decimal(value: Decimal) -> Result<Money, LicensingError> {
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(LicensingError::InvalidAmount {
                value: value.to_string(),
                reason: "more than two decimals".into(),
            });
        }
        if normalized.abs() > MAX_ABS {
            return Err(LicensingError::InvalidAmount {
                value: value.to_string(),
                reason: "too large".into(),
            });
        }
        let mut d = normalized;
        d.rescale(2);
        Ok(Money(d))
    }

    pub fn from_kopecks(kopecks: i64) -> Money {
        Money(Decimal::new(kopecks, 2))
    }

    /// Kopecks are how the store keeps amounts: an integer column is exact and portable across
    /// SQLite and PostgreSQL.
    pub fn kopecks(self) -> i64 {
        let mut d = self.0;
        d.rescale(2);
        // A Money never exceeds MAX_ABS (1e15 roubles = 1e17 kopecks < i64::MAX).
        i64::try_from(d.mantissa()).unwrap_or(if d.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        })
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// Lines and totals never go below zero (spec: "a line never goes below zero").
    pub fn clamp_non_negative(self) -> Money {
        if self.is_negative() {
            Money::ZERO
        } else {
            self
        }
    }

    pub fn times(self, n: u32) -> Money {
        let mut d = self.0 * Decimal::from(n);
        d.rescale(2);
        Money(d)
    }

    pub fn min(self, other: Money) -> Money {
        if self <= other { self } else { other }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl FromStr for Money {
    type Err = LicensingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = Decimal::from_str_exact(s.trim()).map_err(|_| LicensingError::InvalidAmount {
            value: s.to_string(),
            reason: "not a decimal number".into(),
        })?;
        Money::from_decimal(d)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

/// Amounts travel as strings with two decimals (`"15245.90"`) so no JSON client turns them
/// into binary floats.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_half_up_at_xx5() {
        assert_eq!(Money::round_half_up(dec!(1.005)).to_string(), "1.01");
        assert_eq!(Money::round_half_up(dec!(1.0049999)).to_string(), "1.00");
        assert_eq!(Money::round_half_up(dec!(2.675)).to_string(), "2.68");
        assert_eq!(Money::round_half_up(dec!(-1.005)).to_string(), "-1.01");
        assert_eq!(Money::round_half_up(dec!(10)).to_string(), "10.00");
    }

    #[test]
    fn parses_and_refuses_more_than_two_decimals() {
        assert_eq!(
            "15245.9".parse::<Money>().map(|m| m.to_string()).ok(),
            Some("15245.90".into())
        );
        assert!("1.005".parse::<Money>().is_err());
        assert!("abc".parse::<Money>().is_err());
        assert!("1e3".parse::<Money>().is_err());
        assert_eq!(
            "1.500".parse::<Money>().map(|m| m.to_string()).ok(),
            Some("1.50".into())
        );
    }

    #[test]
    fn kopecks_round_trip() {
        let m: Money = "44712.33".parse().unwrap();
        assert_eq!(m.kopecks(), 4_471_233);
        assert_eq!(Money::from_kopecks(4_471_233), m);
        assert_eq!(Money::from_kopecks(-5).to_string(), "-0.05");
    }

    #[test]
    fn serializes_as_two_decimal_string() {
        let m = Money::round_half_up(dec!(15245.9));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"15245.90\"");
        let back: Money = serde_json::from_str("\"15245.90\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>("\"1.001\"").is_err());
    }
}
