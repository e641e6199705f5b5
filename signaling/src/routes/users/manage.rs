//! An account's users: invite, list, read, change role or status, assign and reclaim seats.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::store::SeatAssignment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::INVITATION_PREFIX;
use super::{Manager, manager, not_found_user, unprocessable};
use crate::domain::{DisplayName, Email};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::outbox::email::{Purpose, email_message};
use crate::routes::licensing::path_id;
use crate::routes::licensing::schemas::SeatDoc;
use crate::startup::AppState;
use crate::users::model::TokenPurpose;
use crate::users::store::{NewUser, UserRow, is_unique_violation};
use crate::users::{
    AccountRole, INVITATION_TTL, OutgoingEmail, Principal, UserStatus, UserView, chrono_dur,
    hash_token, new_token,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub email: String,
    /// `account_admin` or `member`.
    pub role: String,
    /// 1 to 64 characters; default: the part of the email before `@`.
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invited {
    pub user: UserView,
    /// The emailed link works until then (7 days).
    pub invitation_expires_at: chrono::DateTime<chrono::Utc>,
    /// The outbox message that carries the link (see the account's outbox for its delivery).
    pub email_message_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub display_name: Option<String>,
    /// `account_admin` or `member`.
    #[serde(default)]
    pub role: Option<String>,
    /// `active` (re-enable a disabled user) or `disabled` (revokes their sessions).
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSeat {
    /// The lot (license) of the account to take a seat from.
    pub lot_id: String,
}

/// A user with the lot whose seat they hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountUser {
    pub user: UserView,
    pub seat_lot_id: Option<Uuid>,
}

fn parse_role(s: &str) -> Result<AccountRole, ApiError> {
    AccountRole::parse(s).ok_or_else(|| {
        unprocessable(
            "invalid_role",
            "The role must be `account_admin` or `member`.",
        )
    })
}

fn parse_name(s: &str) -> Result<DisplayName, ApiError> {
    DisplayName::parse(s)
        .map_err(|e| unprocessable("invalid_display_name", format!("The {}.", e.0)))
}

/// A user of `account` by path id; anything else (malformed, another account's) is 404.
async fn user_of(app: &AppState, account: Uuid, user: &str) -> Result<UserRow, ApiError> {
    let id = Uuid::parse_str(user).map_err(|_| not_found_user())?;
    match app.users.store.by_id(&id.to_string()).await? {
        Some(u) if u.account_id == account.to_string() => Ok(u),
        _ => Err(not_found_user()),
    }
}

/// Invites a person by email: creates an invited user and mails them a link (valid 7 days)
/// to set a password, through the outbox (a failed mail shows in the account's outbox and can be
/// retried there). Inviting an address that is still only invited in this account sends a fresh
/// link (the old one stops working).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/invitations", tag = "users",
    params(("account" = String, Path)), request_body = Invite, security(("bearer" = [])),
    responses((status = 201, body = Invited), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "email_taken", body = ErrorBody),
        (status = 422, description = "invalid_email, invalid_role, invalid_display_name", body = ErrorBody)))]
pub async fn invite(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Invite>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    let (by, account_id) = manager(&app, &headers, &account).await?;
    // The operator may name any account: it must exist.
    app.licensing.account(account_id).await?;
    let email = Email::parse(&body.email)
        .map_err(|e| unprocessable("invalid_email", format!("The {}.", e.0)))?;
    let role = parse_role(&body.role)?;
    let local = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let name = parse_name(body.display_name.as_deref().unwrap_or(&local))?;
    let users = &app.users;
    let now = users.now();
    let taken = || ApiError::Conflict {
        code: "email_taken",
        message: "This email already belongs to a user.".into(),
    };
    let user = match users.store.by_email_key(email.key()).await? {
        Some(u) if u.account_id == account_id.to_string() && u.status() == UserStatus::Invited => {
            users
                .store
                .update(&u.id, name.as_str(), role, UserStatus::Invited)
                .await?
        }
        Some(_) => return Err(taken()),
        None => {
            let id = Uuid::new_v4().to_string();
            users
                .store
                .insert_invited(NewUser {
                    id: &id,
                    account_id: &account_id.to_string(),
                    email: email.as_str(),
                    email_key: email.key(),
                    display_name: name.as_str(),
                    role,
                    now,
                })
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        taken()
                    } else {
                        e.into()
                    }
                })?
        }
    };
    let token = new_token(INVITATION_PREFIX);
    let expires_at = now + chrono_dur(INVITATION_TTL);
    users
        .store
        .replace_token(
            &user.id,
            TokenPurpose::Invitation,
            &hash_token(&token),
            now,
            expires_at,
        )
        .await?;
    let inviter = match &by {
        Manager::Admin(u) => u.user.display_name.clone(),
        Manager::AccountKey | Manager::Operator => "Your administrator".into(),
    };
    // The token travels in the fragment: browsers never send it to a server or a Referer.
    let link = format!("{}/invitation#token={token}", users.public_url);
    let mail = OutgoingEmail {
        to: email,
        html: None,
        subject: "You are invited to Parley".into(),
        text: format!(
            "Hello {},\n\n{inviter} invited you to Parley as {}. Open this link within 7 days \
             to choose your password:\n\n{link}\n",
            user.display_name,
            match role {
                AccountRole::AccountAdmin => "an account admin",
                AccountRole::Member => "a member",
            }
        ),
    };
    // Through the outbox: a mail server that is down delays the invitation instead of losing
    // it, and a refused one shows in the account's outbox, where it can be retried.
    let queued = app
        .outbox
        .enqueue(email_message(
            Purpose::Invitation,
            &mail,
            Some(&account_id.to_string()),
            None,
        ))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(account = %account_id, user = %user.id, role = role.as_str(), "user invited");
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account_id),
        Some(&account_id.to_string()),
        "user.invite",
        crate::privacy::Target::new("user", &user.id),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(Invited {
            user: UserView::from(&user),
            invitation_expires_at: expires_at,
            email_message_id: queued.id,
        }),
    ))
}

/// The account's users with their seats.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/users", tag = "users",
    params(("account" = String, Path), crate::routes::licensing::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountUser>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<crate::routes::licensing::ListPage>,
) -> Result<Json<Vec<AccountUser>>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    let seats = app.licensing.seats(account_id).await?;
    let users = page.apply(app.users.store.of_account(&account_id.to_string()).await?)?;
    Ok(Json(
        users
            .iter()
            .map(|u| AccountUser {
                user: UserView::from(u),
                seat_lot_id: seats.iter().find(|s| s.user_id == u.id).map(|s| s.lot_id),
            })
            .collect(),
    ))
}

/// One user: for the account's managers, and for the user themselves.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/users/{user}", tag = "users",
    params(("account" = String, Path), ("user" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AccountUser), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path((account, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<AccountUser>, ApiError> {
    // A member reading their own record is the one exception to "managers only".
    let principal = Principal::from_headers(&app, &headers).await?;
    let account_id = match &principal {
        Principal::User(me) if me.user.id == user && me.account_id.to_string() == account => {
            me.account_id
        }
        _ => manager(&app, &headers, &account).await?.1,
    };
    let u = user_of(&app, account_id, &user).await?;
    let seat = app.licensing.store().seat_of(account_id, &u.id).await?;
    Ok(Json(AccountUser {
        user: UserView::from(&u),
        seat_lot_id: seat,
    }))
}

/// Changes a user's name, role or status. Disabling revokes their sessions (their seat stays
/// until reclaimed). An admin cannot change their own role or status, so an account never
/// loses its last admin by accident.
#[utoipa::path(patch, path = "/api/v1/accounts/{account}/users/{user}", tag = "users",
    params(("account" = String, Path), ("user" = String, Path)), request_body = UpdateUser,
    security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "own_role_or_status, still_invited", body = ErrorBody),
        (status = 422, description = "invalid_role, invalid_status, invalid_display_name", body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    Path((account, user)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    let (by, account_id) = manager(&app, &headers, &account).await?;
    let u = user_of(&app, account_id, &user).await?;
    let role = body.role.as_deref().map(parse_role).transpose()?;
    let status = match body.status.as_deref() {
        None => None,
        Some("active") => Some(UserStatus::Active),
        Some("disabled") => Some(UserStatus::Disabled),
        Some(_) => {
            return Err(unprocessable(
                "invalid_status",
                "The status must be `active` or `disabled`.",
            ));
        }
    };
    let name = body.display_name.as_deref().map(parse_name).transpose()?;
    if let Manager::Admin(me) = &by
        && me.user.id == u.id
        && (role.is_some_and(|r| r != u.role()) || status.is_some_and(|s| s != u.status()))
    {
        return Err(ApiError::Conflict {
            code: "own_role_or_status",
            message: "Admins cannot change their own role or status; ask another admin.".into(),
        });
    }
    let new_status = match status {
        // An invited user becomes active only by accepting the invitation (setting a password).
        Some(UserStatus::Active) if u.status() == UserStatus::Invited => {
            return Err(ApiError::Conflict {
                code: "still_invited",
                message: "The user has not accepted the invitation yet.".into(),
            });
        }
        Some(s) => s,
        None => u.status(),
    };
    let updated = app
        .users
        .store
        .update(
            &u.id,
            name.as_ref()
                .map_or(u.display_name.as_str(), |n| n.as_str()),
            role.unwrap_or(u.role()),
            new_status,
        )
        .await?;
    if new_status == UserStatus::Disabled && u.status() != UserStatus::Disabled {
        let n = app
            .users
            .store
            .revoke_all_sessions(&u.id, app.users.now())
            .await?;
        tracing::info!(user = %u.id, revoked = n, "user disabled");
    }
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account_id),
        Some(&account_id.to_string()),
        "user.update",
        crate::privacy::Target::new("user", &u.id),
    )
    .await;
    Ok(Json(UserView::from(&updated)))
}

/// Gives the user a seat of one of the account's lots (one seat per user).
#[utoipa::path(put, path = "/api/v1/accounts/{account}/users/{user}/seat", tag = "users",
    params(("account" = String, Path), ("user" = String, Path)), request_body = AssignSeat,
    security(("bearer" = [])),
    responses((status = 201, body = SeatDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "user_disabled", body = ErrorBody),
        (status = 422, description = "no_free_seat, seat_already_assigned, license_not_active", body = ErrorBody)))]
pub async fn assign_seat(
    State(app): State<AppState>,
    Path((account, user)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AssignSeat>,
) -> Result<(StatusCode, Json<SeatAssignment>), ApiError> {
    let (by, account_id) = manager(&app, &headers, &account).await?;
    let u = user_of(&app, account_id, &user).await?;
    if u.status() == UserStatus::Disabled {
        return Err(ApiError::Conflict {
            code: "user_disabled",
            message: "A disabled user cannot be given a seat.".into(),
        });
    }
    let lot = path_id(&body.lot_id, "license")?;
    let seat = app.licensing.assign_seat(account_id, lot, &u.id).await?;
    tracing::info!(account = %account_id, user = %u.id, lot = %lot, "seat assigned");
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account_id),
        Some(&account_id.to_string()),
        "seat.assign",
        crate::privacy::Target::new("user", &u.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(seat)))
}

/// Takes the user's seat back.
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/users/{user}/seat", tag = "users",
    params(("account" = String, Path), ("user" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Reclaimed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reclaim_seat(
    State(app): State<AppState>,
    Path((account, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (by, account_id) = manager(&app, &headers, &account).await?;
    let u = user_of(&app, account_id, &user).await?;
    app.licensing.reclaim_seat(account_id, &u.id).await?;
    tracing::info!(account = %account_id, user = %u.id, "seat reclaimed");
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account_id),
        Some(&account_id.to_string()),
        "seat.reclaim",
        crate::privacy::Target::new("user", &u.id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
