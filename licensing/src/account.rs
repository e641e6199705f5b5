//! A client (1.6) tied to a CRM account. Corporate clients must be Russian residents and carry
//! an INN of the right length for their kind.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::LicensingError;
use crate::inn::Inn;
use crate::money::Money;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Individual,
    SoleProprietor,
    LegalEntity,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Individual => "individual",
            AccountKind::SoleProprietor => "sole_proprietor",
            AccountKind::LegalEntity => "legal_entity",
        }
    }

    pub fn parse(s: &str) -> Result<AccountKind, LicensingError> {
        match s {
            "individual" => Ok(AccountKind::Individual),
            "sole_proprietor" => Ok(AccountKind::SoleProprietor),
            "legal_entity" => Ok(AccountKind::LegalEntity),
            _ => Err(LicensingError::InvalidRequest {
                field: "kind",
                reason: format!("unknown account kind {s:?}"),
            }),
        }
    }

    pub fn is_corporate(self) -> bool {
        self != AccountKind::Individual
    }

    /// Card payment is open to individuals and sole proprietors only (4.7).
    pub fn may_pay_by_card(self) -> bool {
        self != AccountKind::LegalEntity
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum AccountStatus {
    Active,
    Suspended { reason: String },
    Terminated,
}

impl AccountStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended { .. } => "suspended",
            AccountStatus::Terminated => "terminated",
        }
    }

    /// May the account's users start or join meetings? The term keeps running while suspended
    /// (3.5, 6.5): suspension only blocks use.
    pub fn check_usable(&self) -> Result<(), LicensingError> {
        match self {
            AccountStatus::Active => Ok(()),
            AccountStatus::Suspended { reason } => Err(LicensingError::AccountSuspended {
                reason: reason.clone(),
            }),
            AccountStatus::Terminated => Err(LicensingError::AccountTerminated),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmLink {
    pub system: String,
    pub external_id: String,
}

/// Input for a new account; [`NewAccount::parse`] is the only way to a valid one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub name: String,
    pub kind: AccountKind,
    pub inn: Option<Inn>,
    pub resident: bool,
    pub crm: CrmLink,
    pub postpay_allowed: bool,
    /// The most a card payment may be (4.7); `None` uses the platform's limit.
    pub card_limit: Option<Money>,
    pub address: Option<String>,
}

impl NewAccount {
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        name: &str,
        kind: AccountKind,
        inn: Option<&str>,
        resident: bool,
        crm_system: &str,
        crm_external_id: &str,
        postpay_allowed: bool,
        address: Option<&str>,
    ) -> Result<NewAccount, LicensingError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 300 {
            return Err(LicensingError::InvalidRequest {
                field: "name",
                reason: "must be 1 to 300 characters".into(),
            });
        }
        let (crm_system, crm_external_id) = (crm_system.trim(), crm_external_id.trim());
        if crm_system.is_empty() || crm_external_id.is_empty() {
            return Err(LicensingError::InvalidRequest {
                field: "crm",
                reason: "CRM system and external id are required".into(),
            });
        }
        if kind.is_corporate() && !resident {
            return Err(LicensingError::NotResident);
        }
        let inn = inn.map(Inn::parse).transpose()?;
        match (&inn, kind) {
            (None, AccountKind::Individual) => {}
            (None, _) => {
                return Err(LicensingError::InvalidInn {
                    value: String::new(),
                    reason: "a corporate client needs an INN".into(),
                });
            }
            (Some(i), AccountKind::LegalEntity) if !i.is_legal_entity() => {
                return Err(LicensingError::InvalidInn {
                    value: i.to_string(),
                    reason: "a legal entity has a 10-digit INN".into(),
                });
            }
            (Some(i), AccountKind::SoleProprietor | AccountKind::Individual)
                if i.is_legal_entity() =>
            {
                return Err(LicensingError::InvalidInn {
                    value: i.to_string(),
                    reason: "a sole proprietor or individual has a 12-digit INN".into(),
                });
            }
            _ => {}
        }
        Ok(NewAccount {
            name: name.to_string(),
            kind,
            inn,
            resident,
            crm: CrmLink {
                system: crm_system.to_string(),
                external_id: crm_external_id.to_string(),
            },
            postpay_allowed,
            card_limit: None,
            address: address.map(str::to_string),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub kind: AccountKind,
    pub inn: Option<Inn>,
    pub resident: bool,
    pub crm: CrmLink,
    pub status: AccountStatus,
    pub postpay_allowed: bool,
    pub card_limit: Option<Money>,
    pub address: Option<String>,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inn {
            Some(inn) => write!(f, "{} (ИНН {inn})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        kind: AccountKind,
        inn: Option<&str>,
        resident: bool,
    ) -> Result<NewAccount, &'static str> {
        NewAccount::parse("Acme", kind, inn, resident, "amo", "42", false, None)
            .map_err(|e| e.code())
    }

    #[test]
    fn account_rules() {
        use AccountKind::*;
        assert!(parse(LegalEntity, Some("7707083893"), true).is_ok());
        assert_eq!(
            parse(LegalEntity, Some("7707083893"), false).unwrap_err(),
            "not_resident"
        );
        assert_eq!(
            parse(LegalEntity, Some("500100732259"), true).unwrap_err(),
            "invalid_inn"
        );
        assert_eq!(parse(LegalEntity, None, true).unwrap_err(), "invalid_inn");
        assert!(parse(SoleProprietor, Some("500100732259"), true).is_ok());
        assert_eq!(
            parse(SoleProprietor, Some("7707083893"), true).unwrap_err(),
            "invalid_inn"
        );
        assert!(parse(Individual, None, false).is_ok());
        assert_eq!(
            parse(Individual, Some("500100732258"), true).unwrap_err(),
            "invalid_inn"
        );
        assert!(NewAccount::parse(" ", Individual, None, true, "amo", "1", false, None).is_err());
        assert!(NewAccount::parse("A", Individual, None, true, "", "1", false, None).is_err());
    }

    #[test]
    fn suspension_blocks_use() {
        let s = AccountStatus::Suspended {
            reason: "non-payment".into(),
        };
        assert_eq!(s.check_usable().unwrap_err().code(), "account_suspended");
        assert!(AccountStatus::Active.check_usable().is_ok());
    }
}
