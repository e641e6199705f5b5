//! Operator sessions: the admin console trades the platform operator's token
//! (`PARLEY_ADMIN_TOKEN`) for a short-lived, revocable session, so the long-lived token is typed
//! once and never kept in the browser. A session token is `op_` + 43 random alphanumerics; it
//! acts exactly like the operator token wherever that is accepted ([`super::ServiceCredential`]),
//! except that it cannot open further sessions (only the token itself can).
//!
//! A session ends when revoked (sign-out), after [`IDLE`] without use, at [`MAX_AGE`] after it
//! opened, or when the operator token changes: the stored hash is keyed by the operator token,
//! so a rotated token finds none of the old sessions. Neither the session token nor the operator
//! token is ever logged or stored in clear.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use crate::domain::{constant_time_eq, random_token};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::users::{chrono_dur, new_token, well_formed};

pub const PREFIX: &str = "op_";
/// Without a call for this long, the session ends: the console's node page polls every few
/// seconds, so an open console stays signed in and an abandoned one does not.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A working day: the operator types the token again the next morning.
pub const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// `last_seen_at` is written at most this often: one write a minute per session, not per call.
const TOUCH_EVERY_SECS: i64 = 60;

/// A newly opened session: the only place its token exists on the server side.
pub struct Opened {
    pub token: String,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn status(code: &'static str, message: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code,
        message: message.into(),
    }
}

/// Hex HMAC-SHA256 of the session token keyed by the operator token.
fn token_hash(operator_token: &str, token: &str) -> Result<String, ApiError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(operator_token.as_bytes())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("HMAC key: {e}")))?;
    mac.update(token.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn operator_token(app: &AppState) -> Result<&str, ApiError> {
    app.config
        .admin_token
        .as_ref()
        .map(|t| t.expose())
        .ok_or_else(|| {
            status(
                "invalid_session",
                "Operator sessions are disabled: no operator token is configured.",
            )
        })
}

/// Opens a session. The caller has already proved it holds the operator token itself.
pub async fn open(app: &AppState, user_agent: Option<&str>) -> Result<Opened, ApiError> {
    let now = app.users.now();
    let token = new_token(PREFIX);
    let opened = Opened {
        id: format!("ops_{}", random_token(20)),
        created_at: now,
        expires_at: now + chrono_dur(MAX_AGE),
        token,
    };
    sqlx::query(
        "INSERT INTO operator_sessions (id, token_hash, created_at, last_seen_at, expires_at, \
         user_agent) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&opened.id)
    .bind(token_hash(operator_token(app)?, &opened.token)?)
    .bind(crate::store::time::text(now))
    .bind(crate::store::time::text(now))
    .bind(crate::store::time::text(opened.expires_at))
    .bind(user_agent.map(|s| s.chars().take(200).collect::<String>()))
    .execute(app.store.pool())
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(opened)
}

/// Checks a presented `op_…` token; the session's id when it is live. Unknown, revoked and
/// malformed tokens are `invalid_session`, timed-out ones `session_expired` (both 401), so the
/// console can tell the operator to sign in again.
pub async fn authenticate(app: &AppState, token: &str) -> Result<String, ApiError> {
    let invalid = || {
        status(
            "invalid_session",
            "The operator session is not valid; sign in again.",
        )
    };
    if !well_formed(token, PREFIX) {
        return Err(invalid());
    }
    let hash = token_hash(operator_token(app)?, token)?;
    let row = sqlx::query(
        "SELECT id, token_hash, last_seen_at, expires_at, revoked_at FROM operator_sessions \
         WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(app.store.pool())
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .ok_or_else(invalid)?;
    let get = |col: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        row.try_get::<crate::store::time::OptDbTime, _>(col)
            .map(|t| t.0)
            .map_err(|e| ApiError::Internal(e.into()))
    };
    let stored: String = row
        .try_get("token_hash")
        .map_err(|e| ApiError::Internal(e.into()))?;
    // Found by its hash; compared again in constant time so that no decision rests on a
    // partial match of secret material.
    if !constant_time_eq(&stored, &hash) || get("revoked_at")?.is_some() {
        return Err(invalid());
    }
    let (Some(last_seen), Some(expires)) = (get("last_seen_at")?, get("expires_at")?) else {
        return Err(invalid());
    };
    let now = app.users.now();
    if now >= expires || now >= last_seen + chrono_dur(IDLE) {
        return Err(status(
            "session_expired",
            "The operator session has expired; sign in again.",
        ));
    }
    let id: String = row
        .try_get("id")
        .map_err(|e| ApiError::Internal(e.into()))?;
    if (now - last_seen).num_seconds() >= TOUCH_EVERY_SECS {
        sqlx::query("UPDATE operator_sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(crate::store::time::text(now))
            .bind(&id)
            .execute(app.store.pool())
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    Ok(id)
}

/// Ends the session of `token` at once; `false` if it was not a live session. Later calls with
/// it get 401.
pub async fn revoke(app: &AppState, token: &str) -> Result<bool, ApiError> {
    if !well_formed(token, PREFIX) {
        return Ok(false);
    }
    let hash = token_hash(operator_token(app)?, token)?;
    let r = sqlx::query(
        "UPDATE operator_sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
    )
    .bind(crate::store::time::text(app.users.now()))
    .bind(hash)
    .execute(app.store.pool())
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(r.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_the_operator_token() {
        let t = "op_abc";
        let one = token_hash("first operator token", t).unwrap();
        assert_eq!(one, token_hash("first operator token", t).unwrap());
        assert_ne!(one, token_hash("rotated operator token", t).unwrap());
        assert_eq!(one.len(), 64);
        assert!(!one.contains("abc"));
    }
}
