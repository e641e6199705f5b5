//! Taxpayer identification number (ИНН) with its check digits verified.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::LicensingError;

/// A valid INN: 10 digits (legal entity) or 12 digits (sole proprietor or individual).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Inn(String);

const W10: [u32; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];
const W11: [u32; 10] = [7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const W12: [u32; 11] = [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8];

fn check_digit(digits: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    sum % 11 % 10
}

impl Inn {
    pub fn parse(input: &str) -> Result<Inn, LicensingError> {
        let bad = |reason: &str| LicensingError::InvalidInn {
            value: input.to_string(),
            reason: reason.to_string(),
        };
        let digits: Vec<u32> = input
            .chars()
            .map(|c| c.to_digit(10))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("only digits are allowed"))?;
        let ok = match digits.len() {
            10 => check_digit(&digits[..9], &W10) == digits[9],
            12 => {
                check_digit(&digits[..10], &W11) == digits[10]
                    && check_digit(&digits[..11], &W12) == digits[11]
            }
            _ => return Err(bad("an INN has 10 or 12 digits")),
        };
        if ok {
            Ok(Inn(input.to_string()))
        } else {
            Err(bad("check digits do not match"))
        }
    }

    pub fn is_legal_entity(&self) -> bool {
        self.0.len() == 10
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Inn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Inn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Inn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Inn::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_inns() {
        for inn in ["7707083893", "7736050003", "500100732259", "773370857141"] {
            assert!(Inn::parse(inn).is_ok(), "{inn}");
        }
        assert!(Inn::parse("7707083893").unwrap().is_legal_entity());
        assert!(!Inn::parse("500100732259").unwrap().is_legal_entity());
    }

    #[test]
    fn invalid_inns() {
        for inn in [
            "7707083894",
            "500100732258",
            "500100732269",
            "12345",
            "77070838931",
            "",
            "77070838a3",
            "７７０７０８３８９３",
        ] {
            assert!(Inn::parse(inn).is_err(), "{inn}");
        }
    }
}
