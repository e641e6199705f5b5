//! A tariff: what one seat buys, for how long, for how much (1.19, 4.3). Sold lots keep the
//! terms they were sold with, so archiving a tariff only stops new sales.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::LicensingError;
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TariffCode(String);

impl TariffCode {
    pub fn parse(s: &str) -> Result<TariffCode, LicensingError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(TariffCode(s.to_string()))
        } else {
            Err(LicensingError::UnknownTariff {
                code: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TariffCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TariffCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TariffCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Licences are VAT-exempt (4.4, Tax Code 149.2.26); other rates are a tariff setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VatMode {
    #[default]
    Exempt,
    Rate20,
}

impl VatMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VatMode::Exempt => "exempt",
            VatMode::Rate20 => "rate20",
        }
    }

    pub fn parse(s: &str) -> Result<VatMode, LicensingError> {
        match s {
            "exempt" => Ok(VatMode::Exempt),
            "rate20" => Ok(VatMode::Rate20),
            _ => Err(LicensingError::InvalidRequest {
                field: "vat_mode",
                reason: format!("unknown VAT mode {s:?}"),
            }),
        }
    }

    /// The line a document prints about VAT.
    pub fn label(self) -> &'static str {
        match self {
            VatMode::Exempt => "Без НДС (пп. 26 п. 2 ст. 149 НК РФ) / without VAT",
            VatMode::Rate20 => "НДС 20% / VAT 20%",
        }
    }

    /// VAT contained in a gross amount, for documents only (prices are gross).
    pub fn vat_included(self, gross: Money) -> Money {
        match self {
            VatMode::Exempt => Money::ZERO,
            VatMode::Rate20 => {
                Money::round_half_up(gross.amount() * Decimal::from(20) / Decimal::from(120))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub storage_quota_mb: u64,
    pub retention_days: u32,
}

/// What a seat of this tariff may do (3.6, 1.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub max_participants: u32,
    pub max_meeting_minutes: u32,
    pub recording: Option<Recording>,
    pub sdk_embedding: bool,
    pub results_to_recipients: bool,
    pub screen_share: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    pub code: TariffCode,
    pub name: String,
    pub term_months: u32,
    /// B: the price of one licence for the whole term.
    pub price_per_seat: Money,
    pub vat: VatMode,
    pub features: Features,
    /// Free, limited trial (4.5): one per account, no top-ups, no renewals.
    pub trial: bool,
    pub archived: bool,
}

pub const CURRENCY: &str = "RUB";

impl Tariff {
    pub fn validate(&self) -> Result<(), LicensingError> {
        if self.term_months == 0 || self.term_months > 120 {
            return Err(LicensingError::InvalidRequest {
                field: "term_months",
                reason: "must be between 1 and 120".into(),
            });
        }
        if self.price_per_seat.is_negative() {
            return Err(LicensingError::InvalidAmount {
                value: self.price_per_seat.to_string(),
                reason: "a price cannot be negative".into(),
            });
        }
        if self.trial && !self.price_per_seat.amount().is_zero() {
            return Err(LicensingError::InvalidRequest {
                field: "trial",
                reason: "a trial tariff is free".into(),
            });
        }
        Ok(())
    }

    /// The day count a year-priced licence is divided by: 366 for a 12-month term, as 5.3.4
    /// fixes; for other terms (our extension) 30 days per month.
    pub fn basis_days(&self) -> i64 {
        if self.term_months == 12 {
            366
        } else {
            30 * i64::from(self.term_months)
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn business12() -> Tariff {
        Tariff {
            code: TariffCode::parse("business-12").unwrap(),
            name: "Business 12".into(),
            term_months: 12,
            price_per_seat: "12000.00".parse().unwrap(),
            vat: VatMode::Exempt,
            features: Features {
                max_participants: 100,
                max_meeting_minutes: 600,
                recording: Some(Recording {
                    storage_quota_mb: 10_240,
                    retention_days: 90,
                }),
                sdk_embedding: true,
                results_to_recipients: true,
                screen_share: true,
            },
            trial: false,
            archived: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis() {
        let mut t = fixtures::business12();
        assert_eq!(t.basis_days(), 366);
        t.term_months = 6;
        assert_eq!(t.basis_days(), 180);
        t.term_months = 24;
        assert_eq!(t.basis_days(), 720);
    }

    #[test]
    fn codes() {
        assert!(TariffCode::parse("business-12").is_ok());
        assert!(TariffCode::parse("Business").is_err());
        assert!(TariffCode::parse("").is_err());
        assert!(TariffCode::parse("a b").is_err());
    }

    #[test]
    fn validation() {
        let mut t = fixtures::business12();
        assert!(t.validate().is_ok());
        t.trial = true;
        assert!(t.validate().is_err());
        t.price_per_seat = Money::ZERO;
        assert!(t.validate().is_ok());
        t.term_months = 0;
        assert!(t.validate().is_err());
    }
}
