//! Payment registration: a card payment by the account itself (individuals and sole
//! proprietors, up to the card limit, 4.7) or a bank transfer registered by the operator.
//! Registration grants at once; a retry with the same `Idempotency-Key` returns the first
//! payment and never grants twice.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::LicensingError;
use parley_licensing::store::{Payment, PaymentMethod};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::schemas::PaymentDoc;
use super::{account_scope, amount, idempotency_key, opt_date, path_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPayment {
    /// `card` (the account, individuals and sole proprietors) or `bank_transfer` (operator).
    pub method: String,
    /// Must equal the invoice total, e.g. `"15245.90"`; at most two decimals.
    #[schema(value_type = String)]
    pub amount: Value,
    /// The day the money reached the provider's bank, `YYYY-MM-DD`; default today.
    #[serde(default)]
    pub paid_on: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{account}/invoices/{invoice}/payments", tag = "licensing",
    params(("account" = String, Path), ("invoice" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per payment; resend it on retry")),
    request_body = RegisterPayment, security(("bearer" = [])),
    responses((status = 201, description = "Registered and granted (or the first result of a retry)", body = PaymentDoc),
        (status = 400, description = "idempotency_key_required", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A bank transfer is registered by the operator", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 422, description = "card_not_allowed, payment_amount_mismatch, invoice_already_paid, invalid_amount, invalid_date", body = ErrorBody)))]
pub async fn register(
    State(app): State<AppState>,
    Path((account, invoice)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterPayment>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let key = idempotency_key(&headers)?;
    let invoice_id = path_id(&invoice, "invoice")?;
    let method = match body.method.as_str() {
        "card" => PaymentMethod::Card,
        "bank_transfer" => PaymentMethod::BankTransfer,
        other => {
            return Err(LicensingError::InvalidRequest {
                field: "method",
                reason: format!("unknown payment method {other:.40?}; card or bank_transfer"),
            }
            .into());
        }
    };
    // Money on the provider's account is something only the provider can attest.
    if method == PaymentMethod::BankTransfer && caller != Caller::Operator {
        return Err(ApiError::Forbidden(
            "A bank transfer is registered by the platform operator.".into(),
        ));
    }
    let amount = amount("amount", &body.amount)?;
    let paid_on = opt_date(body.paid_on.as_deref())?;
    let payment = app
        .licensing
        .register_payment(id, invoice_id, &key, method, amount, paid_on)
        .await?;
    tracing::info!(account = %id, invoice = %invoice_id, lot = %payment.lot_id, "payment registered");
    // Keyed by the payment, so a retried registration (same payment) emits nothing new. A
    // failed enqueue must not turn a registered payment into an error: it is logged.
    if let Err(e) = crate::integrations::emit_event(
        &app,
        &id.to_string(),
        crate::outbox::webhooks::EventType::OrderPaid,
        &format!("order.paid:{}", payment.id),
        serde_json::json!({"payment": &payment}),
    )
    .await
    {
        tracing::warn!(account = %id, error = %e, "cannot enqueue the order.paid webhook");
    }
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "payment.register",
        crate::privacy::Target::new("payment", &payment.id.to_string()),
    )
    .await;
    Ok((StatusCode::CREATED, Json(payment)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/payments", tag = "licensing",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<PaymentDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<Payment>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(app.licensing.payments(id).await?))
}
