//! Sign-in, sign-out, sessions, password reset, accepting an invitation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{SessionView, SignedInView, unprocessable};
use crate::domain::{Email, constant_time_eq};
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorDetail};
use crate::startup::AppState;
use crate::users::model::TokenPurpose;
use crate::users::password::Password;
use crate::users::session::{self, authenticate, presented_session};
use crate::users::store::{TokenRow, UserRow};
use crate::users::{
    Principal, RESET_TTL, UserStatus, UserView, chrono_dur, hash_token, new_token, well_formed,
};

pub const INVITATION_PREFIX: &str = "inv_";
pub const RESET_PREFIX: &str = "rst_";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The `rst_…` token from the emailed link.
    pub token: String,
    /// 10 to 128 characters.
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `inv_…` token from the emailed link.
    pub token: String,
    /// 10 to 128 characters.
    pub password: String,
    /// Replaces the name the admin gave, 1 to 64 characters.
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationToken {
    /// The `inv_…` token from the emailed link.
    pub token: String,
}

/// What the invited person may see before accepting: whose invitation it is and for which
/// address. Nothing else (no inviter, role or ids): the token is all the caller proves.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationPreview {
    /// The inviting account's name.
    pub account_name: String,
    /// The invited address, the future sign-in email.
    pub email: String,
    /// The link works until then.
    pub expires_at: DateTime<Utc>,
}

fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    (status, Json(body)).into_response()
}

/// 429 with the time to come back, in Moscow time (the agreement's and the users' clock),
/// rounded up to the minute so "after HH:MM" is never too early.
fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> Response {
    let moscow = until.with_timezone(&chrono_tz::Europe::Moscow);
    let shown = if moscow.second() > 0 || moscow.nanosecond() > 0 {
        moscow + chrono::Duration::minutes(1)
    } else {
        moscow
    };
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "account_locked",
        format!(
            "Too many failed sign-in attempts: sign-in is locked. Try again after {} \
             (Europe/Moscow).",
            shown.format("%H:%M")
        ),
    );
    let secs = (until - now).num_seconds().max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

fn invalid_credentials() -> ApiError {
    ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code: "invalid_credentials",
        message: "The email or the password is wrong.".into(),
    }
}

/// The signed-in answer with its cookie.
fn signed_in(
    app: &AppState,
    status: StatusCode,
    user: &UserRow,
    s: session::NewSession,
) -> Result<Response, ApiError> {
    let cookie = session::set_cookie(app, &s.token, s.row.expires_at);
    let view = SignedInView {
        session: SessionView::new(app, &s.row, Some(&s.row.id)),
        user: UserView::from(user),
        token: s.token,
    };
    let mut r = (status, Json(view)).into_response();
    let v = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?;
    r.headers_mut().insert(SET_COOKIE, v);
    Ok(r)
}

/// Sign in with email and password. Sets the `parley_session` cookie and returns the same token
/// for API clients. Five failures within 15 minutes lock sign-in for that email for 15 minutes
/// (429 `account_locked`, `Retry-After`); unknown emails behave exactly like known ones.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", tag = "users", request_body = SignIn,
    responses(
        (status = 200, body = SignedInView, headers(("set-cookie" = String, description = "parley_session"))),
        (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 422, description = "invalid_email", body = ErrorBody),
        (status = 429, description = "account_locked: the message says when to try again", body = ErrorBody)))]
pub async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&body.email)
        .map_err(|e| unprocessable("invalid_email", format!("The {}.", e.0)))?;
    let password = Password::presented(&body.password);
    let users = &app.users;
    let key = email.key();
    // A running lock refuses before the password is looked at, for known and unknown emails.
    let now = users.now();
    if let Some(until) = users.store.throttle(key).await?.locked(now) {
        return Ok(locked(until, now));
    }
    let user = users.store.by_email_key(key).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Unknown email or no password yet: verified against a dummy hash, same cost.
    let ok = users.hasher.verify(password, stored).await?;
    if ok && let Some(user) = user.filter(|u| u.status() == UserStatus::Active) {
        users.store.clear_throttle(key).await?;
        let s = session::open(&app, &user, &headers).await?;
        tracing::info!(user = %user.id, session = %s.row.id, "signed in");
        crate::privacy::record(
            &app,
            &headers,
            crate::privacy::Actor::user(&user.id),
            Some(&user.account_id),
            "auth.sign_in",
            crate::privacy::Target::new("user", &user.id),
        )
        .await;
        return signed_in(&app, StatusCode::OK, &user, s);
    }
    // Wrong password, unknown email, invited or disabled user: one answer, one counter.
    let _serial = users.throttle_lock.lock().await;
    let now = users.now();
    let t = users.store.throttle(key).await?;
    if let Some(until) = t.locked(now) {
        return Ok(locked(until, now));
    }
    let t = t.after_failure(&users.lockout, now);
    users.store.put_throttle(key, &t).await?;
    if let Some(until) = t.locked(now) {
        tracing::warn!("sign-in locked after repeated failures");
        return Ok(locked(until, now));
    }
    Err(invalid_credentials())
}

/// Ends the session of this request (cookie or bearer) and clears the cookie. Always 204: a
/// session that is already gone is signed out.
#[utoipa::path(post, path = "/api/v1/auth/sign-out", tag = "users", security((), ("bearer" = [])),
    responses((status = 204, description = "Signed out")))]
pub async fn sign_out(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = presented_session(&headers)
        && let Ok(me) = authenticate(&app, token).await
    {
        let now = app.users.now();
        app.users
            .store
            .revoke_session(&me.user.id, &me.session_id, now)
            .await?;
        crate::privacy::record(
            &app,
            &headers,
            crate::privacy::Actor::user(&me.user.id),
            Some(&me.account_id.to_string()),
            "auth.sign_out",
            crate::privacy::Target::new("user", &me.user.id),
        )
        .await;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let v = HeaderValue::from_str(&session::clear_cookie(&app))
        .map_err(|e| ApiError::Internal(e.into()))?;
    r.headers_mut().insert(SET_COOKIE, v);
    Ok(r)
}

/// The signed-in user's live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionView>), (status = 401, body = ErrorBody),
        (status = 403, description = "Not a user session", body = ErrorBody)))]
pub async fn list_sessions(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let me = Principal::from_headers(&app, &headers)
        .await?
        .require_user()?;
    let now = app.users.now();
    let sessions = app.users.store.sessions_of(&me.user.id).await?;
    Ok(Json(
        sessions
            .iter()
            .map(|s| SessionView::new(&app, s, Some(&me.session_id)))
            .filter(|v| now < v.idle_expires_at)
            .collect(),
    ))
}

/// Revokes one of the signed-in user's own sessions (e.g. a lost laptop).
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{session}", tag = "users",
    params(("session" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 404, description = "No such session of this user", body = ErrorBody)))]
pub async fn revoke_session(
    State(app): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let me = Principal::from_headers(&app, &headers)
        .await?
        .require_user()?;
    let now = app.users.now();
    if session.len() > 64
        || !app
            .users
            .store
            .revoke_session(&me.user.id, &session, now)
            .await?
    {
        return Err(ApiError::NotFound("No such session.".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Asks for a password reset link by email. Always 202, whether or not the address belongs to
/// a user; the lookup and the mail happen after the answer, so its timing says nothing either.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "users", request_body = ResetRequest,
    responses((status = 202, description = "If the address belongs to an active user, a link valid for an hour is on its way")))]
pub async fn request_reset(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<ResetRequest>,
) -> StatusCode {
    if let Ok(email) = Email::parse(&body.email) {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = send_reset(&app, &email).await {
                tracing::error!(error = %format!("{e:#}"), "password reset mail failed");
            }
        });
    }
    StatusCode::ACCEPTED
}

async fn send_reset(app: &AppState, email: &Email) -> anyhow::Result<()> {
    let users = &app.users;
    let Some(user) = users.store.by_email_key(email.key()).await? else {
        return Ok(());
    };
    if user.status() != UserStatus::Active {
        return Ok(());
    }
    let now = users.now();
    let token = new_token(RESET_PREFIX);
    users
        .store
        .replace_token(
            &user.id,
            TokenPurpose::PasswordReset,
            &hash_token(&token),
            now,
            now + chrono_dur(RESET_TTL),
        )
        .await?;
    // The token travels in the fragment: browsers never send it to a server or a Referer.
    let link = format!("{}/reset-password#token={token}", users.public_url);
    let to = Email::parse(&user.email).map_err(|e| anyhow::anyhow!("stored email: {e}"))?;
    let mail = crate::users::OutgoingEmail {
        to,
        html: None,
        subject: "Reset your Parley password".into(),
        text: format!(
            "Hello {},\n\nSomeone (hopefully you) asked to reset your Parley password. \
             Open this link within an hour to choose a new one:\n\n{link}\n\nIf it was not \
             you, ignore this message: your password stays as it is.\n",
            user.display_name
        ),
    };
    // The user's account owns the message: a refusal shows in its outbox.
    app.outbox
        .enqueue(crate::outbox::email::email_message(
            crate::outbox::email::Purpose::PasswordReset,
            &mail,
            Some(&user.account_id),
            None,
        ))
        .await?;
    tracing::info!(user = %user.id, "password reset link queued");
    Ok(())
}

fn invalid_token(what: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_token",
        message: format!("This {what} link is not valid or has expired; ask for a new one."),
    }
}

/// A one-time token: well formed, stored for this purpose, unused and unexpired.
async fn redeemable(
    app: &AppState,
    token: &str,
    prefix: &str,
    purpose: TokenPurpose,
    what: &str,
) -> Result<(TokenRow, UserRow), ApiError> {
    if !well_formed(token, prefix) {
        return Err(invalid_token(what));
    }
    let hash = hash_token(token);
    let Some(row) = app.users.store.token(&hash).await? else {
        return Err(invalid_token(what));
    };
    let now = app.users.now();
    if !constant_time_eq(&row.token_hash, &hash)
        || row.purpose != purpose.as_str()
        || row.used_at.is_some()
        || now >= row.expires_at
    {
        return Err(invalid_token(what));
    }
    let user = app
        .users
        .store
        .by_id(&row.user_id)
        .await?
        .ok_or_else(|| invalid_token(what))?;
    Ok((row, user))
}

fn new_password(s: &str) -> Result<Password, ApiError> {
    Password::new_password(s)
        .map_err(|e| unprocessable("invalid_password", format!("The {}.", e.0)))
}

/// Sets a new password with the emailed token; every session of the user is revoked.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "users", request_body = ResetConfirm,
    responses((status = 204, description = "Password changed, sessions revoked"),
        (status = 400, description = "invalid_token", body = ErrorBody),
        (status = 422, description = "invalid_password", body = ErrorBody)))]
pub async fn confirm_reset(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    let password = new_password(&body.password)?;
    let (token, user) = redeemable(
        &app,
        &body.token,
        RESET_PREFIX,
        TokenPurpose::PasswordReset,
        "password reset",
    )
    .await?;
    if user.status() != UserStatus::Active {
        return Err(invalid_token("password reset"));
    }
    let phc = app.users.hasher.hash(password).await?;
    let now = app.users.now();
    if !app.users.store.use_token(&token.token_hash, now).await? {
        return Err(invalid_token("password reset"));
    }
    app.users.store.set_password(&user.id, &phc, false).await?;
    let revoked = app.users.store.revoke_all_sessions(&user.id, now).await?;
    // A fresh password also lifts a lockout: the person proved control of the mailbox.
    app.users.store.clear_throttle(&user.email_key).await?;
    tracing::info!(user = %user.id, revoked, "password reset");
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invitation: sets the password, activates the user and signs them in.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "users", request_body = AcceptInvitation,
    responses((status = 200, body = SignedInView),
        (status = 400, description = "invalid_token", body = ErrorBody),
        (status = 422, description = "invalid_password, invalid_display_name", body = ErrorBody)))]
pub async fn accept_invitation(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AcceptInvitation>,
) -> Result<Response, ApiError> {
    let password = new_password(&body.password)?;
    let name = body
        .display_name
        .as_deref()
        .map(crate::domain::DisplayName::parse)
        .transpose()
        .map_err(|e| unprocessable("invalid_display_name", format!("The {}.", e.0)))?;
    let (token, user) = redeemable(
        &app,
        &body.token,
        INVITATION_PREFIX,
        TokenPurpose::Invitation,
        "invitation",
    )
    .await?;
    if user.status() != UserStatus::Invited {
        return Err(invalid_token("invitation"));
    }
    let phc = app.users.hasher.hash(password).await?;
    let now = app.users.now();
    if !app.users.store.use_token(&token.token_hash, now).await? {
        return Err(invalid_token("invitation"));
    }
    app.users.store.set_password(&user.id, &phc, true).await?;
    let user = match name {
        Some(n) => {
            app.users
                .store
                .update(&user.id, n.as_str(), user.role(), UserStatus::Active)
                .await?
        }
        None => app
            .users
            .store
            .by_id(&user.id)
            .await?
            .ok_or_else(|| invalid_token("invitation"))?,
    };
    tracing::info!(user = %user.id, "invitation accepted");
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::user(&user.id),
        Some(&user.account_id),
        "user.accept_invitation",
        crate::privacy::Target::new("user", &user.id),
    )
    .await;
    let s = session::open(&app, &user, &headers).await?;
    signed_in(&app, StatusCode::OK, &user, s)
}

/// Reads an invitation by its token for the acceptance page: the account's name, the address
/// and the expiry. A POST so the token stays out of URLs and access logs, like the emailed link
/// keeps it in the fragment. Reading does not use the token up.
#[utoipa::path(post, path = "/api/v1/invitations/preview", tag = "users", request_body = InvitationToken,
    responses((status = 200, body = InvitationPreview),
        (status = 400, description = "invalid_token: unknown, used, replaced or expired", body = ErrorBody)))]
pub async fn preview_invitation(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<InvitationToken>,
) -> Result<Json<InvitationPreview>, ApiError> {
    let (token, user) = redeemable(
        &app,
        &body.token,
        INVITATION_PREFIX,
        TokenPurpose::Invitation,
        "invitation",
    )
    .await?;
    if user.status() != UserStatus::Invited {
        return Err(invalid_token("invitation"));
    }
    let account = uuid::Uuid::parse_str(&user.account_id)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored user has a bad account id")))?;
    let account = app.licensing.account(account).await?;
    Ok(Json(InvitationPreview {
        account_name: account.name,
        email: user.email,
        expires_at: token.expires_at,
    }))
}
