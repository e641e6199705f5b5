//! The crate's one error type. Each variant is a refusal a person can act on; `code()` is the
//! stable snake_case string the HTTP layer puts in `{"error": {"code", "message", ...}}`, and
//! `details()` carries the dates and numbers that explain it.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::money::Money;
use crate::order::OrderType;
use crate::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LicensingError {
    #[error("the {window} window opens on {opens_on}")]
    WindowNotOpen { window: Window, opens_on: NaiveDate },
    #[error("the {window} window closed on {closed_on}{}", alternative.map(|a| format!("; a {} order is possible", a.as_str())).unwrap_or_default())]
    WindowClosed {
        window: Window,
        closed_on: NaiveDate,
        alternative: Option<OrderType>,
    },
    #[error("the license expired on {ended_on}; only an initial purchase is possible")]
    LicenseExpired {
        license_id: String,
        ended_on: NaiveDate,
    },
    #[error("invalid seat count {seats}: {reason}")]
    InvalidSeats { seats: i64, reason: String },
    #[error("invalid INN {value:?}: {reason}")]
    InvalidInn { value: String, reason: String },
    #[error("invalid date {value:?}: expected YYYY-MM-DD")]
    InvalidDate { value: String },
    #[error("invalid amount {value:?}: {reason}")]
    InvalidAmount { value: String, reason: String },
    #[error("invalid {field}: {reason}")]
    InvalidRequest { field: &'static str, reason: String },
    #[error("unknown tariff {code:?}")]
    UnknownTariff { code: String },
    #[error("tariff {code:?} is archived and can no longer be bought")]
    TariffArchived { code: String },
    #[error("license {license_id} not found for this account")]
    UnknownLicense { license_id: String },
    #[error("license {license_id} is {status}, not active")]
    LicenseNotActive { license_id: String, status: String },
    #[error("account not found")]
    UnknownAccount,
    #[error("an account for {crm_system}:{crm_external_id} already exists")]
    AccountExists {
        crm_system: String,
        crm_external_id: String,
    },
    #[error("the account is suspended ({reason}); its users cannot start or join meetings")]
    AccountSuspended { reason: String },
    #[error("the agreement with this account is terminated")]
    AccountTerminated,
    #[error("corporate clients must be residents of the Russian Federation")]
    NotResident,
    #[error("postpay is not agreed for this account; choose prepay")]
    PostpayNotAllowed,
    #[error("card payment is not possible: {reason}")]
    CardNotAllowed { reason: String },
    #[error("this account has already used its free trial")]
    TrialAlreadyUsed,
    #[error("a trial license cannot be renewed or topped up; buy a paid tariff instead")]
    TrialNotExtendable,
    #[error("unknown promo code {code:?}")]
    PromoCodeUnknown { code: String },
    #[error("promo code {code:?} has reached its usage limit")]
    PromoCodeExhausted { code: String },
    #[error("promo code {code:?} does not apply to this order")]
    PromoCodeNotApplicable { code: String },
    #[error("license {license_id} already has an unpaid order {order_id}; pay or cancel it first")]
    OrderInProgress {
        license_id: String,
        order_id: String,
    },
    #[error(
        "{assigned} seats are assigned but the reduced lot has {requested}; reclaim seats first"
    )]
    SeatsInUse { assigned: u32, requested: u32 },
    #[error("all {seats} seats of license {license_id} are assigned")]
    NoFreeSeat { license_id: String, seats: u32 },
    #[error("user {user_id} already holds a seat of this account")]
    SeatAlreadyAssigned { user_id: String },
    #[error("user {user_id} holds no seat; ask the account admin to assign one")]
    NoSeat { user_id: String },
    #[error("the account has no active license")]
    NoActiveLicense,
    #[error("{feature} is not included in the tariff")]
    FeatureNotIncluded { feature: &'static str },
    #[error("Idempotency-Key {key:?} was already used for a different request")]
    IdempotencyConflict { key: String },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("invoice {number} is already paid")]
    InvoiceAlreadyPaid { number: String },
    #[error("invoice {number} is {status}")]
    InvoiceNotPayable { number: String, status: String },
    #[error("payment of {got} does not match the invoice total {expected}")]
    PaymentAmountMismatch { expected: Money, got: Money },
    #[error("the termination needs {days} days' notice; the earliest date is {earliest}")]
    NoticeTooShort { days: i64, earliest: NaiveDate },
    #[error("the transfer document is {status}")]
    DocumentNotOpen { status: String },
    #[error(
        "order {order_id} is prepaid; it is granted when its payment is registered, not signed"
    )]
    OrderNotPostpay { order_id: String },
    #[error("order {order_id} was already signed on {signed_on}")]
    OrderAlreadySigned {
        order_id: String,
        signed_on: NaiveDate,
    },
    #[error("order {order_id} is {status}; only an unpaid order can be signed")]
    OrderNotSignable { order_id: String, status: String },
    #[error("storage failure: {0}")]
    Storage(String),
}

impl LicensingError {
    pub fn code(&self) -> &'static str {
        use LicensingError::*;
        match self {
            WindowNotOpen { .. } => "window_not_open",
            WindowClosed { .. } => "window_closed",
            LicenseExpired { .. } => "license_expired",
            InvalidSeats { .. } => "invalid_seats",
            InvalidInn { .. } => "invalid_inn",
            InvalidDate { .. } => "invalid_date",
            InvalidAmount { .. } => "invalid_amount",
            InvalidRequest { .. } => "invalid_request",
            UnknownTariff { .. } => "unknown_tariff",
            TariffArchived { .. } => "tariff_archived",
            UnknownLicense { .. } => "unknown_license",
            LicenseNotActive { .. } => "license_not_active",
            UnknownAccount => "unknown_account",
            AccountExists { .. } => "account_exists",
            AccountSuspended { .. } => "account_suspended",
            AccountTerminated => "account_terminated",
            NotResident => "not_resident",
            PostpayNotAllowed => "postpay_not_allowed",
            CardNotAllowed { .. } => "card_not_allowed",
            TrialAlreadyUsed => "trial_already_used",
            TrialNotExtendable => "trial_not_extendable",
            PromoCodeUnknown { .. } => "promo_code_unknown",
            PromoCodeExhausted { .. } => "promo_code_exhausted",
            PromoCodeNotApplicable { .. } => "promo_code_not_applicable",
            OrderInProgress { .. } => "order_in_progress",
            SeatsInUse { .. } => "seats_in_use",
            NoFreeSeat { .. } => "no_free_seat",
            SeatAlreadyAssigned { .. } => "seat_already_assigned",
            NoSeat { .. } => "no_seat",
            NoActiveLicense => "no_active_license",
            FeatureNotIncluded { .. } => "feature_not_included",
            IdempotencyConflict { .. } => "idempotency_conflict",
            NotFound { .. } => "not_found",
            InvoiceAlreadyPaid { .. } => "invoice_already_paid",
            InvoiceNotPayable { .. } => "invoice_not_payable",
            PaymentAmountMismatch { .. } => "payment_amount_mismatch",
            NoticeTooShort { .. } => "notice_too_short",
            DocumentNotOpen { .. } => "document_not_open",
            OrderNotPostpay { .. } => "order_not_postpay",
            OrderAlreadySigned { .. } => "order_already_signed",
            OrderNotSignable { .. } => "order_not_signable",
            Storage(_) => "internal",
        }
    }

    /// A sentence for a person (the `message` of the error body).
    pub fn message(&self) -> String {
        let mut m = self.to_string();
        if let Some(first) = m.get(..1) {
            let upper = first.to_uppercase();
            m.replace_range(..1, &upper);
        }
        m.push('.');
        m
    }

    /// The status the HTTP layer should answer with: 422 for business refusals (the spec's
    /// contract), 404 for things that do not exist, 409 for conflicts, 500 for storage.
    pub fn http_status(&self) -> u16 {
        use LicensingError::*;
        match self {
            UnknownAccount | UnknownLicense { .. } | NotFound { .. } => 404,
            IdempotencyConflict { .. } | AccountExists { .. } => 409,
            Storage(_) => 500,
            _ => 422,
        }
    }

    /// The fields that explain the refusal, besides code and message.
    pub fn details(&self) -> Map<String, Value> {
        use LicensingError::*;
        let v = match self {
            WindowNotOpen { window, opens_on } => json!({"window": window, "opens_on": opens_on}),
            WindowClosed {
                window,
                closed_on,
                alternative,
            } => json!({"window": window, "closed_on": closed_on, "alternative": alternative}),
            LicenseExpired {
                license_id,
                ended_on,
            } => json!({"license_id": license_id, "ended_on": ended_on}),
            InvalidSeats { seats, .. } => json!({"seats": seats}),
            InvalidDate { value } | InvalidInn { value, .. } | InvalidAmount { value, .. } => {
                json!({"value": value})
            }
            InvalidRequest { field, .. } => json!({"field": field}),
            UnknownTariff { code } | TariffArchived { code } => json!({"tariff": code}),
            UnknownLicense { license_id } | NoFreeSeat { license_id, .. } => {
                json!({"license_id": license_id})
            }
            LicenseNotActive { license_id, status } => {
                json!({"license_id": license_id, "status": status})
            }
            OrderInProgress {
                license_id,
                order_id,
            } => json!({"license_id": license_id, "order_id": order_id}),
            SeatsInUse {
                assigned,
                requested,
            } => json!({"assigned": assigned, "requested": requested}),
            PaymentAmountMismatch { expected, got } => json!({"expected": expected, "got": got}),
            OrderNotPostpay { order_id } => json!({"order_id": order_id}),
            OrderAlreadySigned {
                order_id,
                signed_on,
            } => json!({"order_id": order_id, "signed_on": signed_on}),
            OrderNotSignable { order_id, status } => {
                json!({"order_id": order_id, "status": status})
            }
            NoticeTooShort { days, earliest } => json!({"notice_days": days, "earliest": earliest}),
            PromoCodeUnknown { code }
            | PromoCodeExhausted { code }
            | PromoCodeNotApplicable { code } => json!({"promo_code": code}),
            _ => json!({}),
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// `{"error": {"code", "message", ...details}}` as the spec's 422 body.
    pub fn to_body(&self) -> Value {
        let mut m = self.details();
        m.insert("code".into(), Value::from(self.code()));
        m.insert("message".into(), Value::from(self.message()));
        json!({ "error": m })
    }
}

impl From<sqlx::Error> for LicensingError {
    fn from(e: sqlx::Error) -> Self {
        LicensingError::Storage(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for LicensingError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        LicensingError::Storage(e.to_string())
    }
}
