//! Invoices (JSON or printable HTML at `{id}.html`) and corrective invoices from
//! retro-discounts (operator).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_licensing::LicensingError;
use parley_licensing::store::{CorrectiveInvoice, Invoice};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::schemas::{CorrectiveInvoiceDoc, InvoiceDoc};
use super::{account_scope, amount, bounded_text, html, path_id, split_html};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;

#[utoipa::path(get, path = "/api/v1/accounts/{account}/invoices", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<InvoiceDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<Invoice>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(page.apply(app.licensing.invoices(id).await?)?))
}

/// One invoice; `{invoice}.html` is its printable form ("without VAT", seller and buyer, lines).
#[utoipa::path(get, path = "/api/v1/accounts/{account}/invoices/{invoice}", tag = "licensing",
    params(("account" = String, Path), ("invoice" = String, Path, description = "id, or id.html")),
    security(("bearer" = [])),
    responses((status = 200, description = "JSON, or printable HTML for `{id}.html`", content((InvoiceDoc = "application/json"), (String = "text/html"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path((account, invoice)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    let (invoice, printable) = split_html(&invoice);
    let invoice_id = path_id(invoice, "invoice")?;
    if printable {
        return Ok(html(app.licensing.invoice_html(id, invoice_id).await?));
    }
    Ok(Json(app.licensing.store().invoice(id, invoice_id).await?).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetroDiscount {
    /// The discount granted after payment, e.g. `"1200.00"`.
    #[schema(value_type = String)]
    pub discount: Value,
    /// Why (it is printed on the corrective invoice), 1 to 500 characters.
    pub reason: String,
}

/// A discount granted after the invoice was paid: a corrective invoice (before, after,
/// difference) and a credit to the account (operator).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/invoices/{invoice}/retro-discounts", tag = "licensing",
    params(("account" = String, Path), ("invoice" = String, Path)), request_body = RetroDiscount,
    security(("bearer" = [])),
    responses((status = 201, body = CorrectiveInvoiceDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retro_discount(
    State(app): State<AppState>,
    Path((account, invoice)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RetroDiscount>,
) -> Result<(StatusCode, Json<CorrectiveInvoice>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    caller.require_operator()?;
    let invoice_id = path_id(&invoice, "invoice")?;
    let discount = amount("discount", &body.discount)?;
    if discount.is_negative() || discount.amount().is_zero() {
        return Err(LicensingError::InvalidAmount {
            value: discount.to_string(),
            reason: "a discount is positive".into(),
        }
        .into());
    }
    let reason = bounded_text("reason", &body.reason, 500)?;
    let c = app
        .licensing
        .retro_discount(id, invoice_id, discount, reason)
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/corrective-invoices", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<CorrectiveInvoiceDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_corrective(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<CorrectiveInvoice>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(
        page.apply(app.licensing.corrective_invoices(id).await?)?,
    ))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/corrective-invoices/{corrective}", tag = "licensing",
    params(("account" = String, Path), ("corrective" = String, Path, description = "id, or id.html")),
    security(("bearer" = [])),
    responses((status = 200, description = "JSON, or printable HTML for `{id}.html`", content((CorrectiveInvoiceDoc = "application/json"), (String = "text/html"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_corrective(
    State(app): State<AppState>,
    Path((account, corrective)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    let (corrective, printable) = split_html(&corrective);
    let cid = path_id(corrective, "corrective invoice")?;
    if printable {
        return Ok(html(app.licensing.corrective_invoice_html(id, cid).await?));
    }
    app.licensing
        .corrective_invoices(id)
        .await?
        .into_iter()
        .find(|c| c.id == cid)
        .map(|c| Json(c).into_response())
        .ok_or_else(|| {
            LicensingError::NotFound {
                what: "corrective invoice",
            }
            .into()
        })
}
