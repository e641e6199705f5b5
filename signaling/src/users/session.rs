//! Sessions and the principal of a request.
//!
//! A session token is `s_` + 43 random alphanumerics. The browser holds it in the HttpOnly
//! `parley_session` cookie (SameSite=Lax, Secure over HTTPS), API clients send
//! `Authorization: Bearer s_<token>`. The server stores its SHA-256 only. A session ends when
//! revoked (sign-out, password reset, the user disabled), after the idle timeout without use,
//! or at its absolute end, whichever comes first.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, USER_AGENT};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{AccountRole, UserStatus};
use super::store::{SessionRow, UserRow};
use super::{chrono_dur, hash_token, new_token, well_formed};
use crate::auth::{ServiceCredential, bearer_token};
use crate::domain::{constant_time_eq, random_token};
use crate::error::ApiError;
use crate::startup::AppState;

pub const COOKIE_NAME: &str = "parley_session";
pub const SESSION_PREFIX: &str = "s_";
/// `last_seen_at` is written at most this often: one write per minute per session, not per call.
const TOUCH_EVERY_SECS: i64 = 60;

/// A signed-in user of one request.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserRow,
    pub account_id: Uuid,
    pub session_id: String,
}

impl SignedIn {
    pub fn is_admin(&self) -> bool {
        self.user.role() == AccountRole::AccountAdmin
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    /// `Bearer <PARLEY_ADMIN_TOKEN>`.
    Operator,
    /// `Bearer <key_id>.<secret>` of an account.
    AccountKey(Uuid),
    User(Box<SignedIn>),
}

/// A newly opened session: the token exists only in this value and the response.
pub struct NewSession {
    pub token: String,
    pub row: SessionRow,
}

fn session_error(code: &'static str, message: &str) -> ApiError {
    ApiError::Status {
        status: axum::http::StatusCode::UNAUTHORIZED,
        code,
        message: message.into(),
    }
}

/// The `parley_session` cookie value, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
}

/// The session token a request carries: a `Bearer s_…` first, else the cookie.
pub fn presented_session(headers: &HeaderMap) -> Option<&str> {
    match bearer_token(headers) {
        Some(b) if b.starts_with(SESSION_PREFIX) => Some(b),
        _ => session_cookie(headers),
    }
}

impl Principal {
    /// Identifies the caller. A bearer that is not a session goes to the operator/API-key check
    /// (an invalid one is 401, never silently anonymous); a session that is unknown, revoked or
    /// expired is 401 too, so a signed-out browser is told to sign in again rather than
    /// quietly treated as a stranger.
    pub async fn from_headers(app: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if let Some(b) = bearer_token(headers)
            && !b.starts_with(SESSION_PREFIX)
        {
            return Ok(match ServiceCredential::from_headers(app, headers).await? {
                ServiceCredential::None => Principal::Anonymous,
                ServiceCredential::Operator => Principal::Operator,
                ServiceCredential::AccountKey(a) => Principal::AccountKey(a),
            });
        }
        match presented_session(headers) {
            Some(token) => Ok(Principal::User(Box::new(authenticate(app, token).await?))),
            None => Ok(Principal::Anonymous),
        }
    }

    /// The signed-in user, or 401/403 for everyone else.
    pub fn require_user(self) -> Result<SignedIn, ApiError> {
        match self {
            Principal::User(u) => Ok(*u),
            Principal::Anonymous => Err(ApiError::Unauthorized(
                "Sign in first: this call needs a user session.".into(),
            )),
            Principal::Operator | Principal::AccountKey(_) => Err(ApiError::Forbidden(
                "This call is for signed-in users, not for API keys or the operator token.".into(),
            )),
        }
    }
}

/// Checks a presented session token and returns its user.
pub async fn authenticate(app: &AppState, token: &str) -> Result<SignedIn, ApiError> {
    let invalid = || {
        session_error(
            "invalid_session",
            "The session is not valid; sign in again.",
        )
    };
    if !well_formed(token, SESSION_PREFIX) {
        return Err(invalid());
    }
    let users = &app.users;
    let hash = hash_token(token);
    // One indexed read for session and user: this runs on every session request, the quote
    // endpoint's included.
    let Some((s, user)) = users.store.session_with_user(&hash).await? else {
        return Err(invalid());
    };
    // Found by its hash; compared again in constant time so no code path depends on a partial
    // match of secret material.
    if !constant_time_eq(&s.token_hash, &hash) || s.revoked_at.is_some() {
        return Err(invalid());
    }
    let now = users.now();
    if now >= s.expires_at || now >= s.last_seen_at + chrono_dur(users.session_idle) {
        return Err(session_error(
            "session_expired",
            "The session has expired; sign in again.",
        ));
    }
    if user.status() != UserStatus::Active {
        return Err(invalid());
    }
    let account_id = Uuid::parse_str(&user.account_id)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored user has a bad account id")))?;
    if (now - s.last_seen_at).num_seconds() >= TOUCH_EVERY_SECS {
        users.store.touch_session(&s.id, now).await?;
    }
    Ok(SignedIn {
        user,
        account_id,
        session_id: s.id,
    })
}

/// Opens a session for `user` (after a successful sign-in or an accepted invitation).
pub async fn open(
    app: &AppState,
    user: &UserRow,
    headers: &HeaderMap,
) -> Result<NewSession, ApiError> {
    let users = &app.users;
    let now = users.now();
    let token = new_token(SESSION_PREFIX);
    let user_agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect::<String>());
    let row = SessionRow {
        id: format!("ses_{}", random_token(20)),
        token_hash: hash_token(&token),
        user_id: user.id.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + chrono_dur(users.session_max),
        revoked_at: None,
        user_agent,
    };
    users.store.insert_session(&row).await?;
    users.store.touch_sign_in(&user.id, now).await?;
    Ok(NewSession { token, row })
}

/// `Set-Cookie` for a new session: lives as long as the session's absolute lifetime.
pub fn set_cookie(app: &AppState, token: &str, expires_at: DateTime<Utc>) -> String {
    let max_age = (expires_at - app.users.now()).num_seconds().max(0);
    format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if app.users.secure_cookies() {
            "; Secure"
        } else {
            ""
        }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(app: &AppState) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if app.users.secure_cookies() {
            "; Secure"
        } else {
            ""
        }
    )
}
