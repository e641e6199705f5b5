//! Signing the admin console in and out as the operator: the operator token is exchanged once
//! for an expiring session (see [`crate::auth::operator_session`]), which the console keeps in
//! the tab's sessionStorage instead of the token.

use axum::Json;
use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, bearer_token, operator_session};
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorSession {
    /// `Authorization: Bearer <token>` for the operator's calls; shown only here.
    pub token: String,
    /// The session's public id (for logs).
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// The latest it can live; it ends earlier after `idle_timeout_seconds` without a call.
    pub expires_at: DateTime<Utc>,
    pub idle_timeout_seconds: u64,
}

/// Opens an operator session. Needs the operator token itself (`Bearer <PARLEY_ADMIN_TOKEN>`):
/// a session cannot open another, so a stolen session dies at its own end.
#[utoipa::path(post, path = "/api/v1/operator/sessions", tag = "operator",
    security(("bearer" = [])),
    responses((status = 201, body = OperatorSession),
        (status = 401, description = "No or a wrong credential", body = ErrorBody),
        (status = 403, description = "An account key, a user, or an operator session", body = ErrorBody)))]
pub async fn open(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<OperatorSession>), ApiError> {
    Caller::from_headers(&app, &headers)
        .await?
        .require_operator()?;
    if bearer_token(&headers).is_some_and(|b| b.starts_with(operator_session::PREFIX)) {
        return Err(ApiError::Forbidden(
            "An operator session cannot open another; sign in with the operator token.".into(),
        ));
    }
    let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    let s = operator_session::open(&app, agent).await?;
    tracing::info!(session = %s.id, "operator session opened");
    Ok((
        StatusCode::CREATED,
        Json(OperatorSession {
            token: s.token,
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            idle_timeout_seconds: operator_session::IDLE.as_secs(),
        }),
    ))
}

/// Signs out: ends the operator session the call is made with, at once. Called with the
/// operator token itself there is no session to end, and nothing happens.
#[utoipa::path(delete, path = "/api/v1/operator/sessions/current", tag = "operator",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn close(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    Caller::from_headers(&app, &headers)
        .await?
        .require_operator()?;
    if let Some(token) = bearer_token(&headers).filter(|b| b.starts_with(operator_session::PREFIX))
        && operator_session::revoke(&app, token).await?
    {
        tracing::info!("operator session ended");
    }
    Ok(StatusCode::NO_CONTENT)
}
