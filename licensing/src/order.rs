//! What a client may ask for (section 5): the order types and the terms of payment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::LicensingError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    Initial,
    Renewal,
    TopUp,
    RenewalWithTopUp,
    RenewalWithReduction,
}

impl OrderType {
    pub const ALL: [OrderType; 5] = [
        OrderType::Initial,
        OrderType::Renewal,
        OrderType::TopUp,
        OrderType::RenewalWithTopUp,
        OrderType::RenewalWithReduction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Initial => "initial",
            OrderType::Renewal => "renewal",
            OrderType::TopUp => "top_up",
            OrderType::RenewalWithTopUp => "renewal_with_top_up",
            OrderType::RenewalWithReduction => "renewal_with_reduction",
        }
    }

    /// Orders that replace the current lot by a new one when granted.
    pub fn renews(self) -> bool {
        matches!(
            self,
            OrderType::Renewal | OrderType::RenewalWithTopUp | OrderType::RenewalWithReduction
        )
    }

    /// The deadline for granting access after payment: 5 business days for a first purchase
    /// (3.2.7), 3 for renewals and top-ups (5.1).
    pub fn grant_deadline_business_days(self) -> u32 {
        if self == OrderType::Initial { 5 } else { 3 }
    }
}

impl fmt::Display for OrderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderType {
    type Err = LicensingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| LicensingError::InvalidRequest {
                field: "type",
                reason: format!("unknown order type {s:?}"),
            })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentTerms {
    #[default]
    Prepay,
    Postpay,
}

impl PaymentTerms {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentTerms::Prepay => "prepay",
            PaymentTerms::Postpay => "postpay",
        }
    }
}

impl FromStr for PaymentTerms {
    type Err = LicensingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prepay" => Ok(PaymentTerms::Prepay),
            "postpay" => Ok(PaymentTerms::Postpay),
            _ => Err(LicensingError::InvalidRequest {
                field: "payment_terms",
                reason: format!("expected prepay or postpay, got {s:?}"),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[default]
    Portal,
    Manager,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Portal => "portal",
            Channel::Manager => "manager",
        }
    }
}

impl FromStr for Channel {
    type Err = LicensingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portal" => Ok(Channel::Portal),
            "manager" => Ok(Channel::Manager),
            _ => Err(LicensingError::InvalidRequest {
                field: "channel",
                reason: format!("expected portal or manager, got {s:?}"),
            }),
        }
    }
}

/// The 7 calendar days "for logistics" that 5.3.4.2 deducts only for prepaid orders placed on
/// the portal; a manager's order or a postpaid one counts every day.
pub fn logistics_days(terms: PaymentTerms, channel: Channel) -> i64 {
    match (terms, channel) {
        (PaymentTerms::Prepay, Channel::Portal) => 7,
        _ => 0,
    }
}
