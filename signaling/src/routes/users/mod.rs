//! Users over HTTP: sign-in and sessions (`/auth/…`), invitations and password resets, the
//! account's users and their seats (`/accounts/{account}/users…`), and `/me`.
//!
//! Who may do what:
//! - anonymous: sign in, read and accept an invitation (by its token), request and confirm a
//!   password reset;
//! - a member: `/me`, their own sessions, their own user record;
//! - an account admin (session), the account's API key, the operator: manage the account's
//!   users and seats. Another account's admin or key gets 404, like an account that does not
//!   exist (nothing to learn about other accounts); a member of the account gets 403.

pub(crate) mod auth;
pub(crate) mod manage;
pub(crate) mod me;
pub(crate) mod seat_review;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post, put};
use chrono::{DateTime, Utc};
use parley_licensing::LicensingError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::MeetingLicense;
use crate::users::session::{SESSION_PREFIX, authenticate, presented_session};
use crate::users::store::SessionRow;
use crate::users::{Principal, SignedIn, UserView};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/sign-in", post(auth::sign_in))
        .route("/auth/sign-out", post(auth::sign_out))
        .route("/auth/sessions", get(auth::list_sessions))
        .route("/auth/sessions/{session}", delete(auth::revoke_session))
        .route("/auth/password-reset", post(auth::request_reset))
        .route("/auth/password-reset/confirm", post(auth::confirm_reset))
        .route("/invitations/accept", post(auth::accept_invitation))
        .route("/invitations/preview", post(auth::preview_invitation))
        .route("/me", get(me::me))
        .route("/accounts/{account}/users", get(manage::list))
        .route("/accounts/{account}/invitations", post(manage::invite))
        .route(
            "/accounts/{account}/users/{user}",
            get(manage::get).patch(manage::update),
        )
        .route(
            "/accounts/{account}/users/{user}/seat",
            put(manage::assign_seat).delete(manage::reclaim_seat),
        )
        .route("/accounts/{account}/seat-review", get(seat_review::report))
        .route(
            "/accounts/{account}/seat-review/reclaim",
            post(seat_review::reclaim),
        )
}

/// A session as its owner sees it (never the token).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end.
    pub expires_at: DateTime<Utc>,
    /// When it ends if not used before then.
    pub idle_expires_at: DateTime<Utc>,
    /// The session of this request.
    pub current: bool,
    pub user_agent: Option<String>,
}

impl SessionView {
    pub fn new(app: &AppState, s: &SessionRow, current: Option<&str>) -> Self {
        let idle = s.last_seen_at + crate::users::chrono_dur(app.users.session_idle);
        SessionView {
            id: s.id.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            idle_expires_at: idle.min(s.expires_at),
            current: current == Some(s.id.as_str()),
            user_agent: s.user_agent.clone(),
        }
    }
}

/// The answer to a sign-in or an accepted invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedInView {
    /// For API clients: `Authorization: Bearer <token>`. Browsers use the `parley_session`
    /// cookie set by the same response. Shown only here.
    pub token: String,
    pub session: SessionView,
    pub user: UserView,
}

/// Who manages an account's users.
#[derive(Debug)]
pub enum Manager {
    Operator,
    AccountKey,
    Admin(Box<SignedIn>),
}

fn unknown_account() -> ApiError {
    LicensingError::UnknownAccount.into()
}

/// Checks that the caller may manage `account`'s users (see the module docs).
pub(crate) async fn manager(
    app: &AppState,
    headers: &HeaderMap,
    account: &str,
) -> Result<(Manager, Uuid), ApiError> {
    let principal = Principal::from_headers(app, headers).await?;
    if matches!(principal, Principal::Anonymous) {
        return Err(ApiError::Unauthorized(
            "This call needs an account admin's session, the account's API key or the \
             operator's token."
                .into(),
        ));
    }
    let id = Uuid::parse_str(account).map_err(|_| unknown_account())?;
    let manager = match principal {
        Principal::Operator => Manager::Operator,
        Principal::AccountKey(a) if a == id => Manager::AccountKey,
        Principal::User(u) if u.account_id == id && u.is_admin() => Manager::Admin(u),
        Principal::User(u) if u.account_id == id => {
            return Err(ApiError::Forbidden(
                "Only an account admin may manage the account's users.".into(),
            ));
        }
        _ => return Err(unknown_account()),
    };
    Ok((manager, id))
}

pub(crate) fn not_found_user() -> ApiError {
    ApiError::NotFound("No such user in this account.".into())
}

/// Meeting creation by a signed-in user: the host is that user, on their account's license.
/// `Ok(None)` when the request carries no session (an API key, the operator or nobody), so the
/// caller goes on with its own rules.
pub(crate) async fn session_host_license(
    app: &AppState,
    headers: &HeaderMap,
    host_user_id: Option<&str>,
) -> Result<Option<MeetingLicense>, ApiError> {
    if crate::auth::bearer_token(headers).is_some_and(|b| !b.starts_with(SESSION_PREFIX)) {
        return Ok(None);
    }
    let Some(token) = presented_session(headers) else {
        return Ok(None);
    };
    let me = authenticate(app, token).await?;
    if host_user_id.is_some_and(|h| h != me.user.id) {
        return Err(LicensingError::InvalidRequest {
            field: "host_user_id",
            reason: "a signed-in user hosts their own meetings; leave host_user_id out".into(),
        }
        .into());
    }
    let e = app
        .licensing
        .may_host(me.account_id, &me.user.id)
        .await
        .map_err(|e| crate::routes::meetings::refusal(e, &me.user.email))?;
    Ok(Some(MeetingLicense {
        account_id: me.account_id.to_string(),
        host_user_id: me.user.id.clone(),
        max_participants: e.max_participants,
        max_meeting_minutes: e.max_meeting_minutes,
        recording_allowed: e.recording_allowed,
        screen_share_allowed: e.screen_share_allowed,
        sdk_allowed: e.sdk_allowed,
    }))
}

pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Status {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code,
        message: message.into(),
    }
}
