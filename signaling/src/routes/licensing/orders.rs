//! Quotes and orders: the spec's contract. A quote is pure (nothing written); an order with
//! the same `Idempotency-Key` and body returns the first result with the same status, never a
//! second order, invoice or grant; the same key with another body is a 409.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::store::{Invoice, OrderRecord, PlacedOrder, SignedOrder};
use parley_licensing::{Quote, QuoteRequest};
use serde::Serialize;

use super::schemas::{OrderDoc, PlacedOrderDoc, QuoteDoc, QuoteRequestDoc, SignedOrderDoc};
use super::{account_scope, idempotency_key, path_id};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;

/// Prices an order without placing it.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/quotes", tag = "licensing",
    params(("account" = String, Path)), request_body = QuoteRequestDoc, security(("bearer" = [])),
    responses((status = 200, body = QuoteDoc), (status = 401, body = ErrorBody),
        (status = 404, description = "unknown_account, unknown_license", body = ErrorBody),
        (status = 422, description = "window_not_open, window_closed, license_expired, invalid_seats, \
            invalid_date, unknown_tariff, tariff_archived, invalid_request, promo_code_*, ...", body = ErrorBody)))]
pub async fn quote(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<QuoteRequest>,
) -> Result<Json<Quote>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(app.licensing.quote(id, &req).await?))
}

/// Places an order: an invoice to pay. A prepay order is granted when its payment is
/// registered; a postpay order when it is signed (`.../orders/{order}/sign`).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/orders", tag = "licensing",
    params(("account" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per order; resend it on retry")),
    request_body = QuoteRequestDoc, security(("bearer" = [])),
    responses((status = 201, description = "Placed (or the first result of a retry)", body = PlacedOrderDoc),
        (status = 400, description = "idempotency_key_required", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 422, description = "As for quotes, plus order_in_progress, postpay_not_allowed", body = ErrorBody)))]
pub async fn place(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<QuoteRequest>,
) -> Result<(StatusCode, Json<PlacedOrder>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let key = idempotency_key(&headers)?;
    let placed = app.licensing.place_order(id, &key, &req).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "order.place",
        crate::privacy::Target::new("order", &placed.order.id.to_string()),
    )
    .await;
    Ok((StatusCode::CREATED, Json(placed)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/orders", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<OrderDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<OrderRecord>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(page.apply(app.licensing.orders(id).await?)?))
}

/// An order with its invoice.
#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order: OrderRecord,
    pub invoice: Option<Invoice>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/orders/{order}", tag = "licensing",
    params(("account" = String, Path), ("order" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "`{order, invoice}`", body = PlacedOrderDoc),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path((account, order)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<OrderView>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    let order_id = path_id(&order, "order")?;
    let order = app.licensing.store().order(id, order_id).await?;
    let invoice = app
        .licensing
        .invoices(id)
        .await?
        .into_iter()
        .find(|i| i.order_id == order_id);
    Ok(Json(OrderView { order, invoice }))
}

/// Cancels an unpaid order (its invoice is annulled; the number stays used).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/orders/{order}/cancel", tag = "licensing",
    params(("account" = String, Path), ("order" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Cancelled"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel(
    State(app): State<AppState>,
    Path((account, order)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let order_id = path_id(&order, "order")?;
    app.licensing.cancel_order(id, order_id).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "order.cancel",
        crate::privacy::Target::new("order", &order_id.to_string()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs a postpay order and grants it at once (5.1, 5.2.3): the lot is created or extended as
/// a prepay payment would, and the invoice stays unpaid with its `due_on`. Registering the
/// payment later settles the invoice without granting again. A retry with the same
/// `Idempotency-Key` returns the first signature.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/orders/{order}/sign", tag = "licensing",
    params(("account" = String, Path), ("order" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per signature; resend it on retry")),
    security(("bearer" = [])),
    responses((status = 201, description = "Signed and granted (or the first result of a retry)", body = SignedOrderDoc),
        (status = 400, description = "idempotency_key_required, invalid_idempotency_key", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "unknown_account, not_found", body = ErrorBody),
        (status = 409, description = "idempotency_conflict: the key signed another order", body = ErrorBody),
        (status = 422, description = "order_not_postpay, order_already_signed (with `signed_on`), \
            order_not_signable (paid or cancelled, with `status`), postpay_not_allowed, \
            account_suspended, account_terminated, license_not_active, invalid_seats", body = ErrorBody)))]
pub async fn sign(
    State(app): State<AppState>,
    Path((account, order)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<SignedOrder>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let key = idempotency_key(&headers)?;
    let order_id = path_id(&order, "order")?;
    let signed = app.licensing.sign_order(id, order_id, &key).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "order.sign",
        crate::privacy::Target::new("order", &order_id.to_string()),
    )
    .await;
    tracing::info!(account = %id, order = %order_id, lot = %signed.lot_id, "postpay order signed");
    Ok((StatusCode::CREATED, Json(signed)))
}
