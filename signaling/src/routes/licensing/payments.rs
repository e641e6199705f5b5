//! Payment registration by the operator: a bank transfer, or a card payment entered by hand
//! from the acquirer's report. An account pays by card through the acquirer instead
//! ([`super::card_payments`]): its own word that a card was charged grants nothing.
//! Registration grants at once; a retry with the same `Idempotency-Key` returns the first
//! payment and never grants twice.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::LicensingError;
use parley_licensing::store::{MAX_PAYMENT_REFERENCE, Payment, PaymentMethod};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::schemas::PaymentDoc;
use super::{account_scope, amount, bounded_text, idempotency_key, opt_date, path_id};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPayment {
    /// `bank_transfer` or `card` (both the operator's; an account starts a card payment with
    /// `POST …/invoices/{invoice}/card-payments`, confirmed by the acquirer).
    pub method: String,
    /// Must equal the invoice total, e.g. `"15245.90"`; at most two decimals.
    #[schema(value_type = String)]
    pub amount: Value,
    /// The day the money reached the provider's bank, `YYYY-MM-DD`; default today.
    #[serde(default)]
    pub paid_on: Option<String>,
    /// The bank's reference of the transfer (the payment order's number), 1 to 100 characters.
    #[serde(default)]
    pub reference: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{account}/invoices/{invoice}/payments", tag = "licensing",
    params(("account" = String, Path), ("invoice" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per payment; resend it on retry")),
    request_body = RegisterPayment, security(("bearer" = [])),
    responses((status = 201, description = "Registered and granted (or the first result of a retry)", body = PaymentDoc),
        (status = 400, description = "idempotency_key_required", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Payments are registered by the operator; card payments are confirmed by the payment provider", body = ErrorBody),
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
    // Money on the provider's account is something only the provider can attest: a bank
    // transfer from its statement, a card payment from the acquirer.
    if method == PaymentMethod::BankTransfer && caller != Caller::Operator {
        return Err(ApiError::Forbidden(
            "A bank transfer is registered by the platform operator.".into(),
        ));
    }
    if method == PaymentMethod::Card {
        crate::card_payments::refuse_direct(&caller)?;
    }
    let amount = amount("amount", &body.amount)?;
    let paid_on = opt_date(body.paid_on.as_deref())?;
    let reference = body
        .reference
        .as_deref()
        .map(|r| bounded_text("reference", r, MAX_PAYMENT_REFERENCE))
        .transpose()?;
    let payment = app
        .licensing
        .register_referenced_payment(id, invoice_id, &key, method, amount, paid_on, reference)
        .await?;
    tracing::info!(account = %id, invoice = %invoice_id, lot = %payment.lot_id, "payment registered");
    after_registration(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        id,
        &payment,
    )
    .await;
    Ok((StatusCode::CREATED, Json(payment)))
}

/// What follows a registered payment, whoever registered it (the operator, or the acquirer's
/// confirmation): the `order.paid` webhook and the audit entry.
pub(crate) async fn after_registration(
    app: &AppState,
    headers: &HeaderMap,
    actor: crate::privacy::Actor,
    account: uuid::Uuid,
    payment: &Payment,
) {
    // Keyed by the payment, so a retried registration (same payment) emits nothing new. A
    // failed enqueue must not turn a registered payment into an error: it is logged.
    if let Err(e) = crate::integrations::emit_event(
        app,
        &account.to_string(),
        crate::outbox::webhooks::EventType::OrderPaid,
        &format!("order.paid:{}", payment.id),
        serde_json::json!({"payment": payment}),
    )
    .await
    {
        tracing::warn!(account = %account, error = %e, "cannot enqueue the order.paid webhook");
    }
    crate::privacy::record(
        app,
        headers,
        actor,
        Some(&account.to_string()),
        "payment.register",
        crate::privacy::Target::new("payment", &payment.id.to_string()),
    )
    .await;
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/payments", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<PaymentDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<Payment>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    // Opening the payments is when a card payment whose notification was lost shows up.
    crate::card_payments::reconcile(&app, &headers, id).await;
    Ok(Json(page.apply(app.licensing.payments(id).await?)?))
}
