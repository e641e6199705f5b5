//! Seat counts: a positive number of licences, bounded so that no order can overflow a total.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::LicensingError;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Seats(u32);

impl Seats {
    /// No account of a sales team needs more in one lot; larger values are typing mistakes.
    pub const MAX: u32 = 100_000;

    pub fn new(n: i64) -> Result<Seats, LicensingError> {
        if n < 1 {
            return Err(LicensingError::InvalidSeats {
                seats: n,
                reason: "must be at least 1".into(),
            });
        }
        if n > i64::from(Self::MAX) {
            return Err(LicensingError::InvalidSeats {
                seats: n,
                reason: format!("must be at most {}", Self::MAX),
            });
        }
        // Bounded to 1..=MAX above, so the conversion cannot fail.
        Ok(Seats(u32::try_from(n).unwrap_or(Self::MAX)))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn checked_add(self, other: Seats) -> Result<Seats, LicensingError> {
        Seats::new(i64::from(self.0) + i64::from(other.0))
    }
}

impl fmt::Display for Seats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Seats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Seats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Seats::new(n).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Seats::new(0).is_err());
        assert!(Seats::new(-3).is_err());
        assert_eq!(Seats::new(1).map(Seats::get).ok(), Some(1));
        assert!(Seats::new(i64::from(Seats::MAX)).is_ok());
        assert!(Seats::new(i64::from(Seats::MAX) + 1).is_err());
        assert_eq!(Seats::new(-3).unwrap_err().code(), "invalid_seats");
    }
}
