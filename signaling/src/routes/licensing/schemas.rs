//! Shapes of the licensing API for the OpenAPI document. The handlers serialize the
//! `parley_licensing` records themselves (so the wire format is the crate's, one definition);
//! these mirror them for readers of docs/openapi.json. Amounts are strings with two decimals,
//! dates `YYYY-MM-DD`.

#![allow(dead_code)]

use serde::Deserialize;
use utoipa::ToSchema;

/// The body of `POST .../quotes` and `POST .../orders` (the spec's contract).
#[derive(Deserialize, ToSchema)]
pub struct QuoteRequestDoc {
    /// `initial`, `renewal`, `top_up`, `renewal_with_top_up`, `renewal_with_reduction`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// Tariff code; required for `initial`, optional for renewals (default: the lot's tariff).
    pub tariff: Option<String>,
    /// Seat count of the new lot (`initial`, `renewal_with_reduction`), 1 to 100000.
    pub seats: Option<i64>,
    /// The lot being renewed or topped up (all but `initial`).
    pub license_id: Option<String>,
    /// Seats to add (`top_up`, `renewal_with_top_up`).
    pub add_seats: Option<i64>,
    /// `prepay` (default) or `postpay`.
    pub payment_terms: Option<String>,
    /// `portal` (default) or `manager`.
    pub channel: Option<String>,
    /// The start date D2, `YYYY-MM-DD`, default today (Moscow).
    pub start_date: Option<String>,
    pub promo_code: Option<String>,
}

/// Inputs of a pro-rated price: `A = B × days / basis`, `days = D1 − D2 − logistics_days`.
#[derive(ToSchema)]
pub struct FormulaDoc {
    #[schema(rename = "B", example = "12000.00")]
    pub b: String,
    #[schema(rename = "D1")]
    pub d1: String,
    #[schema(rename = "D2")]
    pub d2: String,
    pub days: i64,
    pub logistics_days: i64,
    pub basis: i64,
}

#[derive(ToSchema)]
pub struct QuoteLineDoc {
    /// `initial`, `renewal`, `top_up`, `renewal_with_reduction`.
    pub kind: String,
    pub seats: u32,
    #[schema(example = "3049.18")]
    pub unit_price: String,
    #[schema(example = "15245.90")]
    pub amount: String,
    pub starts_on: String,
    /// Exclusive.
    pub ends_on: String,
    /// For pro-rated lines only.
    pub formula: Option<FormulaDoc>,
}

#[derive(ToSchema)]
pub struct AppliedDiscountDoc {
    pub promotion_id: String,
    pub name: String,
    pub kind: String,
    pub code: Option<String>,
    pub amount: String,
}

#[derive(ToSchema)]
pub struct QuoteDoc {
    #[schema(rename = "type")]
    pub order_type: String,
    pub tariff: String,
    pub license_id: Option<String>,
    pub payment_terms: String,
    pub channel: String,
    pub start_date: String,
    pub lines: Vec<QuoteLineDoc>,
    pub discounts: Vec<AppliedDiscountDoc>,
    pub subtotal: String,
    pub total: String,
    #[schema(example = "RUB")]
    pub currency: String,
}

#[derive(ToSchema)]
pub struct OrderDoc {
    pub id: String,
    pub account_id: String,
    pub idempotency_key: String,
    /// `pending_payment`, `signed` (postpay, granted, invoice unpaid), `paid` or `cancelled`.
    pub status: String,
    pub placed_on: String,
    pub quote: QuoteDoc,
}

#[derive(ToSchema)]
pub struct InvoiceDoc {
    pub id: String,
    pub account_id: String,
    pub order_id: String,
    pub year: i32,
    /// Gap-free within the year.
    pub number: i64,
    /// `2026-000001`.
    pub number_text: String,
    pub issued_on: String,
    pub amount: String,
    /// `exempt` or `rate20`.
    pub vat: String,
    /// `issued`, `paid` or `cancelled`.
    pub status: String,
    /// When a signed postpay invoice must be paid; null for prepay invoices.
    pub due_on: Option<String>,
}

/// An order as placed: its invoice, or (a free order) the lot granted at once.
#[derive(ToSchema)]
pub struct PlacedOrderDoc {
    pub order: OrderDoc,
    pub invoice: Option<InvoiceDoc>,
    pub granted_lot: Option<String>,
}

/// A postpay order signed and granted; its invoice unpaid until `payment_due_on`.
#[derive(ToSchema)]
pub struct SignedOrderDoc {
    pub order: OrderDoc,
    pub invoice: InvoiceDoc,
    /// The lot now holding the seats (the same lot for a top-up).
    pub lot_id: String,
    pub signed_on: String,
    /// The latest grant the agreement allows after signing (5.1).
    pub grant_deadline: String,
    pub payment_due_on: String,
}

#[derive(ToSchema)]
pub struct PaymentDoc {
    pub id: String,
    pub invoice_id: String,
    /// `card` or `bank_transfer`.
    pub method: String,
    pub amount: String,
    pub paid_on: String,
    /// The latest grant the agreement allows (3.2.7, 5.1).
    pub grant_deadline: String,
    pub granted_on: String,
    pub granted_late: bool,
    pub lot_id: String,
    /// The bank's reference of a transfer, as registered.
    pub reference: Option<String>,
}

#[derive(ToSchema)]
pub struct LotDoc {
    pub id: String,
    pub account_id: String,
    pub tariff: String,
    pub seats: u32,
    pub starts_on: String,
    /// Exclusive: the lot is valid on `starts_on <= d < ends_on`.
    pub ends_on: String,
    /// `pending_payment`, `active`, `suspended`, `expired`, `superseded`, `terminated`.
    pub status: String,
    pub trial: bool,
}

#[derive(ToSchema)]
pub struct SeatDoc {
    pub lot_id: String,
    pub user_id: String,
    pub assigned_on: String,
    pub last_active_on: Option<String>,
}

#[derive(ToSchema)]
pub struct CrmLinkDoc {
    pub system: String,
    pub external_id: String,
}

#[derive(ToSchema)]
pub struct AccountStatusDoc {
    /// `active`, `suspended` or `terminated`.
    pub status: String,
    /// The ground of a suspension.
    pub reason: Option<String>,
}

#[derive(ToSchema)]
pub struct AccountDoc {
    pub id: String,
    pub name: String,
    /// `individual`, `sole_proprietor`, `legal_entity`.
    pub kind: String,
    pub inn: Option<String>,
    pub resident: bool,
    pub crm: CrmLinkDoc,
    pub status: AccountStatusDoc,
    pub postpay_allowed: bool,
    pub card_limit: Option<String>,
    pub address: Option<String>,
}

/// An API key; the secret is shown only in this response.
#[derive(ToSchema)]
pub struct ApiKeyDoc {
    pub key_id: String,
    pub secret: String,
    /// `Authorization: Bearer <bearer>` (`<key_id>.<secret>`).
    pub bearer: String,
}

/// An API key as listed: never its secret.
#[derive(ToSchema)]
pub struct ApiKeyInfoDoc {
    pub key_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, to the hour; null if never used.
    pub last_used_at: Option<String>,
    /// RFC 3339; null while the key is active.
    pub revoked_at: Option<String>,
}

#[derive(ToSchema)]
pub struct AccountCreatedDoc {
    pub account: AccountDoc,
    pub api_key: ApiKeyDoc,
}

#[derive(ToSchema)]
pub struct RecordingDoc {
    pub storage_quota_mb: u64,
    pub retention_days: u32,
}

#[derive(ToSchema)]
pub struct FeaturesDoc {
    pub max_participants: u32,
    pub max_meeting_minutes: u32,
    /// Absent: no recording.
    pub recording: Option<RecordingDoc>,
    pub sdk_embedding: bool,
    pub results_to_recipients: bool,
    pub screen_share: bool,
}

#[derive(ToSchema)]
pub struct TariffDoc {
    pub code: String,
    pub name: String,
    pub term_months: u32,
    pub price_per_seat: String,
    pub vat: String,
    pub features: FeaturesDoc,
    pub trial: bool,
    pub archived: bool,
}

#[derive(ToSchema)]
pub struct PromotionDoc {
    pub id: String,
    pub name: String,
    pub code: Option<String>,
    /// `{"kind": "percent", "percent": "10"}`, `{"kind": "fixed_per_seat", "amount": "500.00"}`,
    /// `{"kind": "progressive_by_seats", "tiers": [{"min_seats": 10, "percent": "5"}]}`,
    /// `{"kind": "loyalty", "tiers": [{"min_paid": "100000.00", "percent": "5"}]}`.
    pub discount: serde_json::Value,
    pub combinable: bool,
    pub priority: i32,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub tariffs: Vec<String>,
    pub order_types: Vec<String>,
    pub total_limit: Option<u32>,
    pub per_account_limit: Option<u32>,
    pub active: bool,
}

#[derive(ToSchema)]
pub struct TransferDocumentDoc {
    pub id: String,
    pub account_id: String,
    pub order_id: String,
    pub invoice_id: String,
    /// `upd` or `act`.
    pub kind: String,
    pub number_text: String,
    pub issued_on: String,
    pub grant_date: String,
    pub amount: String,
    /// Accepted automatically after this date without a reasoned objection (3.2.6).
    pub accept_by: String,
    /// `sent`, `accepted`, `disputed`.
    pub status: String,
    pub objection: Option<String>,
}

#[derive(ToSchema)]
pub struct CorrectiveInvoiceDoc {
    pub id: String,
    pub account_id: String,
    pub invoice_id: String,
    pub number_text: String,
    pub issued_on: String,
    pub reason: String,
    pub before: String,
    pub after: String,
    pub difference: String,
}

#[derive(ToSchema)]
pub struct TerminationDoc {
    /// `provider`, `breach`, `client`.
    pub kind: String,
    pub notice_on: String,
    pub effective_on: String,
    pub refund: String,
    pub refund_due_on: Option<String>,
}

/// One account of the operator's list: the account's fields plus what it holds today.
#[derive(ToSchema)]
pub struct AccountSummaryDoc {
    pub id: String,
    pub name: String,
    /// `individual`, `sole_proprietor`, `legal_entity`.
    pub kind: String,
    pub inn: Option<String>,
    pub resident: bool,
    pub crm: CrmLinkDoc,
    pub status: AccountStatusDoc,
    pub postpay_allowed: bool,
    pub card_limit: Option<String>,
    pub address: Option<String>,
    /// Seats on active lots valid today.
    pub seats: u32,
    /// Invoices issued and not yet paid.
    pub unpaid_invoices: u32,
    /// The day a termination takes (or took) effect.
    pub terminates_on: Option<String>,
}

#[derive(ToSchema)]
pub struct AccountPageDoc {
    /// Newest first.
    pub items: Vec<AccountSummaryDoc>,
    /// Accounts matching the search in all.
    pub total: u64,
}
