//! Suspension (3.5, 6.5), termination (8.3.3-8.3.5) and the refunds they produce. Changing an
//! account's standing is the operator's; the account may read its refunds.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::NaiveDate;
use parley_licensing::termination::{TerminationKind, TerminationOutcome};
use parley_licensing::{Account, LicensingError, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schemas::{AccountDoc, TerminationDoc};
use super::{account_scope, bounded_text, opt_date};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    /// The ground (non-payment, breach, a lawful order), 1 to 500 characters; users see it.
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    /// `provider` (45 days' notice, pro-rata refund), `breach` (no refund) or `client` (at the
    /// end of the paid month).
    pub kind: String,
    /// `YYYY-MM-DD`; default the earliest the kind allows.
    #[serde(default)]
    pub effective_on: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refund {
    #[schema(value_type = String)]
    pub amount: Money,
    pub reason: String,
    #[schema(value_type = Option<String>)]
    pub due_on: Option<NaiveDate>,
}

/// Suspends the account (operator): its users can neither start nor join meetings.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/suspension", tag = "licensing",
    params(("account" = String, Path)), request_body = Suspend, security(("bearer" = [])),
    responses((status = 200, body = AccountDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn suspend(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Suspend>,
) -> Result<Json<Account>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    caller.require_operator()?;
    let reason = bounded_text("reason", &body.reason, 500)?;
    Ok(Json(app.licensing.suspend(id, reason).await?))
}

/// Lifts a suspension (operator).
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/suspension", tag = "licensing",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AccountDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Account>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    caller.require_operator()?;
    Ok(Json(app.licensing.resume(id).await?))
}

/// Ends the agreement (operator) and records the refund it owes, if any.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/termination", tag = "licensing",
    params(("account" = String, Path)), request_body = Terminate, security(("bearer" = [])),
    responses((status = 200, body = TerminationDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "notice_too_short, invalid_date", body = ErrorBody)))]
pub async fn terminate(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Terminate>,
) -> Result<Json<TerminationOutcome>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    caller.require_operator()?;
    let kind = termination_kind(&body.kind)?;
    let effective_on = opt_date(body.effective_on.as_deref())?;
    let outcome = app.licensing.terminate(id, kind, effective_on).await?;
    tracing::info!(account = %id, kind = kind.as_str(), "agreement terminated");
    Ok(Json(outcome))
}

fn termination_kind(kind: &str) -> Result<TerminationKind, ApiError> {
    match kind {
        "provider" => Ok(TerminationKind::Provider),
        "breach" => Ok(TerminationKind::Breach),
        "client" => Ok(TerminationKind::Client),
        other => Err(LicensingError::InvalidRequest {
            field: "kind",
            reason: format!("unknown termination kind {other:.40?}; provider, breach or client"),
        }
        .into()),
    }
}

/// What ending the agreement now would give (operator), changing nothing: the effective date,
/// the refund the rules give (8.3.3: paid × unexpired days / paid days, rounded once at the
/// end) and its due date, so the operator sees them before confirming. The same body as the
/// termination; the same refusals (`notice_too_short`, ...).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/termination/preview", tag = "licensing",
    params(("account" = String, Path)), request_body = Terminate, security(("bearer" = [])),
    responses((status = 200, body = TerminationDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "notice_too_short, no_active_license, invalid_date", body = ErrorBody)))]
pub async fn preview(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Terminate>,
) -> Result<Json<TerminationOutcome>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    caller.require_operator()?;
    let kind = termination_kind(&body.kind)?;
    let effective_on = opt_date(body.effective_on.as_deref())?;
    Ok(Json(
        app.licensing
            .termination_preview(id, kind, effective_on)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/refunds", tag = "licensing",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<Refund>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn refunds(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<Refund>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(
        app.licensing
            .refunds(id)
            .await?
            .into_iter()
            .map(|(amount, reason, due_on)| Refund {
                amount,
                reason,
                due_on,
            })
            .collect(),
    ))
}
