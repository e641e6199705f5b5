//! Card payments through the acquirer (see [`crate::card_payments`]): the account starts one
//! and is sent to the acquirer's page; the acquirer's notification (public, unsigned: only
//! its payment id is read, and the payment is then looked up at the acquirer) settles it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{account_scope, idempotency_key, path_id};
use crate::card_payments::{self, CardPayment};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::startup::AppState;

/// Largest notification accepted: a payment object is a few kilobytes.
pub const MAX_NOTIFICATION_BYTES: usize = 32 * 1024;

#[utoipa::path(post, path = "/api/v1/accounts/{account}/invoices/{invoice}/card-payments", tag = "licensing",
    params(("account" = String, Path), ("invoice" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per attempt; resend it on retry to get the same payment")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The payment is created at the acquirer: send the payer to `confirmation_url`. \
            Access is granted when the acquirer confirms the money (status `succeeded`).", body = CardPayment),
        (status = 400, description = "idempotency_key_required", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "idempotency_conflict (the key started a payment of another invoice)", body = ErrorBody),
        (status = 422, description = "card_not_allowed (a legal entity, or above the card limit), invoice_already_paid, \
            invoice_not_payable, card_payments_unavailable (no acquirer configured)", body = ErrorBody),
        (status = 502, description = "payment_provider_error: the acquirer did not accept the request", body = ErrorBody)))]
pub async fn start(
    State(app): State<AppState>,
    Path((account, invoice)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<CardPayment>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let key = idempotency_key(&headers)?;
    let invoice_id = path_id(&invoice, "invoice")?;
    let started = card_payments::start(&app, id, invoice_id, &key).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "card_payment.start",
        crate::privacy::Target::new("card_payment", &started.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(started)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/card-payments", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, description = "The account's card payments; pending ones without news for a \
            minute are looked up at the acquirer first", body = Vec<CardPayment>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<CardPayment>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    card_payments::reconcile(&app, &headers, id).await;
    Ok(Json(
        page.apply(card_payments::of_account(&app, id).await?)?,
    ))
}

/// The parts of YooKassa's notification that are read: which payment it is about. Everything
/// else in it is ignored — it is unsigned.
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "type")]
    kind: String,
    event: String,
    object: NotifiedObject,
}

#[derive(Debug, Deserialize)]
struct NotifiedObject {
    id: String,
}

#[utoipa::path(post, path = "/api/v1/payments/yookassa/notifications", tag = "licensing",
    request_body(content = String, content_type = "application/json",
        description = "YooKassa's notification: `{\"type\": \"notification\", \"event\": \"payment.succeeded\", \
            \"object\": {\"id\": \"…\", …}}`, at most 32 KiB. Public by design (the acquirer cannot \
            authenticate): only `object.id` is read, and the payment is then fetched from the \
            acquirer's API, whose answer alone counts."),
    responses(
        (status = 200, description = "Received. Also for payments Parley did not start and events it does not act on: \
            the answer says nothing about what Parley knows."),
        (status = 400, description = "invalid_notification: not a notification", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 502, description = "The acquirer could not be asked; the acquirer retries the notification", body = ErrorBody)))]
pub async fn notification(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|e| ApiError::Status {
        status: e.status(),
        code: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_notification"
        },
        message: format!(
            "A notification is a JSON body of at most {MAX_NOTIFICATION_BYTES} bytes."
        ),
    })?;
    let n: Notification = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest {
        code: "invalid_notification",
        message: "Expected {\"type\": \"notification\", \"event\": …, \"object\": {\"id\": …}}."
            .into(),
    })?;
    if n.kind != "notification" {
        return Err(ApiError::BadRequest {
            code: "invalid_notification",
            message: "Expected type \"notification\".".into(),
        });
    }
    // Refunds, payouts and deals are not Parley's business; any payment event is a reason to
    // look, since only the acquirer's own record is believed.
    if !n.event.starts_with("payment.") {
        return Ok(StatusCode::OK);
    }
    card_payments::notified(&app, &headers, &n.object.id).await?;
    Ok(StatusCode::OK)
}
