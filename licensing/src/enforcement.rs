//! What the meeting server asks before letting someone host: is the account usable, does it
//! hold an active lot today, does this user hold a seat in it, and what does the tariff allow.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::Account;
use crate::error::LicensingError;
use crate::lot::Lot;
use crate::tariff::Tariff;

/// The limits a host's meetings run under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    pub license_id: Uuid,
    pub tariff: String,
    pub valid_until: NaiveDate,
    pub max_participants: u32,
    pub max_meeting_minutes: u32,
    pub recording_allowed: bool,
    pub storage_quota_mb: u64,
    pub retention_days: u32,
    pub sdk_allowed: bool,
    pub results_to_recipients_allowed: bool,
    pub screen_share_allowed: bool,
}

impl Entitlements {
    pub fn from_lot(lot: &Lot, tariff: &Tariff) -> Entitlements {
        let f = &tariff.features;
        Entitlements {
            license_id: lot.id,
            tariff: tariff.code.to_string(),
            valid_until: lot.ends_on,
            max_participants: f.max_participants,
            max_meeting_minutes: f.max_meeting_minutes,
            recording_allowed: f.recording.is_some(),
            storage_quota_mb: f.recording.map(|r| r.storage_quota_mb).unwrap_or(0),
            retention_days: f.recording.map(|r| r.retention_days).unwrap_or(0),
            sdk_allowed: f.sdk_embedding,
            results_to_recipients_allowed: f.results_to_recipients,
            screen_share_allowed: f.screen_share,
        }
    }

    pub fn require_recording(&self) -> Result<(), LicensingError> {
        self.require(self.recording_allowed, "recording")
    }

    pub fn require_sdk(&self) -> Result<(), LicensingError> {
        self.require(self.sdk_allowed, "SDK embedding")
    }

    pub fn require_results_to_recipients(&self) -> Result<(), LicensingError> {
        self.require(
            self.results_to_recipients_allowed,
            "sending results to recipients",
        )
    }

    pub fn require_screen_share(&self) -> Result<(), LicensingError> {
        self.require(self.screen_share_allowed, "screen sharing")
    }

    fn require(&self, ok: bool, feature: &'static str) -> Result<(), LicensingError> {
        if ok {
            Ok(())
        } else {
            Err(LicensingError::FeatureNotIncluded { feature })
        }
    }
}

/// May `user_id` host a meeting on `today`? `lots` are the account's lots with their tariffs;
/// `seat_lot` is the lot in which the user holds a seat, if any.
pub fn may_host(
    account: &Account,
    lots: &[(Lot, Tariff)],
    user_id: &str,
    seat_lot: Option<Uuid>,
    today: NaiveDate,
) -> Result<Entitlements, LicensingError> {
    account.status.check_usable()?;
    let mut active = lots
        .iter()
        .filter(|(l, _)| l.grants_access_on(today))
        .peekable();
    if active.peek().is_none() {
        return Err(LicensingError::NoActiveLicense);
    }
    let (lot, tariff) = active
        .find(|(l, _)| Some(l.id) == seat_lot)
        .ok_or_else(|| LicensingError::NoSeat {
            user_id: user_id.to_string(),
        })?;
    Ok(Entitlements::from_lot(lot, tariff))
}

/// Guests need no seat (1.12), but a suspended account's meetings are closed to everyone.
pub fn may_join(account: &Account) -> Result<(), LicensingError> {
    account.status.check_usable()
}

/// May the account embed meetings in its own sites with the SDK on `today` (agreement 1.14,
/// 3.6)? Not a per-user right: the account must be usable and hold at least one lot active
/// that day whose tariff includes SDK embedding.
pub fn may_embed(
    account: &Account,
    lots: &[(Lot, Tariff)],
    today: NaiveDate,
) -> Result<(), LicensingError> {
    account.status.check_usable()?;
    let mut active = lots
        .iter()
        .filter(|(l, _)| l.grants_access_on(today))
        .peekable();
    if active.peek().is_none() {
        return Err(LicensingError::NoActiveLicense);
    }
    if active.any(|(_, t)| t.features.sdk_embedding) {
        Ok(())
    } else {
        Err(LicensingError::FeatureNotIncluded {
            feature: "SDK embedding",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountKind, AccountStatus, CrmLink};
    use crate::calendar::parse_date;
    use crate::lot::LotStatus;
    use crate::seats::Seats;
    use crate::tariff::fixtures::business12;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn setup() -> (Account, Vec<(Lot, Tariff)>) {
        let acc = Account {
            id: Uuid::from_u128(1),
            name: "Acme".into(),
            kind: AccountKind::LegalEntity,
            inn: None,
            resident: true,
            crm: CrmLink {
                system: "amo".into(),
                external_id: "1".into(),
            },
            status: AccountStatus::Active,
            postpay_allowed: false,
            card_limit: None,
            address: None,
        };
        let t = business12();
        let lot = Lot {
            id: Uuid::from_u128(5),
            account_id: acc.id,
            tariff: t.code.clone(),
            seats: Seats::new(2).unwrap(),
            starts_on: d("2026-03-01"),
            ends_on: d("2027-03-01"),
            status: LotStatus::Active,
            trial: false,
        };
        (acc, vec![(lot, t)])
    }

    #[test]
    fn host_decisions() {
        let (acc, lots) = setup();
        let lot_id = Some(Uuid::from_u128(5));
        let e = may_host(&acc, &lots, "u1", lot_id, d("2026-06-01")).unwrap();
        assert_eq!(e.max_participants, 100);
        assert!(e.recording_allowed && e.sdk_allowed && e.screen_share_allowed);
        assert_eq!(e.storage_quota_mb, 10_240);
        assert_eq!(
            may_host(&acc, &lots, "u2", None, d("2026-06-01"))
                .unwrap_err()
                .code(),
            "no_seat"
        );
        assert_eq!(
            may_host(&acc, &lots, "u1", lot_id, d("2027-03-01"))
                .unwrap_err()
                .code(),
            "no_active_license"
        );
        assert_eq!(
            may_host(&acc, &lots, "u1", lot_id, d("2026-02-28"))
                .unwrap_err()
                .code(),
            "no_active_license"
        );
        let suspended = Account {
            status: AccountStatus::Suspended {
                reason: "non-payment".into(),
            },
            ..acc.clone()
        };
        let err = may_host(&suspended, &lots, "u1", lot_id, d("2026-06-01")).unwrap_err();
        assert_eq!(err.code(), "account_suspended");
        assert!(err.message().contains("non-payment"));
        assert_eq!(
            may_join(&suspended).unwrap_err().code(),
            "account_suspended"
        );
    }

    #[test]
    fn embedding_needs_an_active_lot_with_the_sdk() {
        let (acc, lots) = setup();
        assert!(may_embed(&acc, &lots, d("2026-06-01")).is_ok());
        assert_eq!(
            may_embed(&acc, &lots, d("2027-03-01")).unwrap_err().code(),
            "no_active_license"
        );
        assert_eq!(
            may_embed(&acc, &[], d("2026-06-01")).unwrap_err().code(),
            "no_active_license"
        );
        let suspended = Account {
            status: AccountStatus::Suspended {
                reason: "non-payment".into(),
            },
            ..acc.clone()
        };
        assert_eq!(
            may_embed(&suspended, &lots, d("2026-06-01"))
                .unwrap_err()
                .code(),
            "account_suspended"
        );
        // A second, SDK-less lot does not take the right away; the SDK lot alone grants it.
        let mut both = lots.clone();
        let mut basic = lots[0].clone();
        basic.0.id = Uuid::from_u128(6);
        basic.1.features.sdk_embedding = false;
        both.insert(0, basic.clone());
        assert!(may_embed(&acc, &both, d("2026-06-01")).is_ok());
        assert!(may_embed(&acc, &[basic], d("2026-06-01")).is_err());
    }

    #[test]
    fn feature_gates() {
        let (acc, mut lots) = setup();
        lots[0].1.features.recording = None;
        lots[0].1.features.sdk_embedding = false;
        let e = may_host(&acc, &lots, "u1", Some(Uuid::from_u128(5)), d("2026-06-01")).unwrap();
        assert_eq!(
            e.require_recording().unwrap_err().code(),
            "feature_not_included"
        );
        assert!(e.require_sdk().is_err());
        assert_eq!(
            may_embed(&acc, &lots, d("2026-06-01")).unwrap_err().code(),
            "feature_not_included"
        );
        assert!(e.require_screen_share().is_ok());
        assert!(e.require_results_to_recipients().is_ok());
        assert_eq!(e.storage_quota_mb, 0);
    }
}
