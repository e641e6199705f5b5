//! Meetings: create, read, list, exchange a link for a join token, end, chat history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use parley_licensing::LicensingError;
use uuid::Uuid;

use crate::auth::{Grants, HostCredential, ServiceCredential, bearer_token};
use crate::domain::{DisplayName, MeetingId, MeetingTitle, Role, constant_time_eq, random_token};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::metrics::Metrics;
use crate::routes::licensing::bounded_text;
use crate::routes::licensing::lots::MAX_USER_ID;
use crate::routes::meeting_access::{identify, require_credential};
use crate::startup::AppState;
use crate::store::{MeetingLicense, MeetingRow};
use crate::ws::HostCommand;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    /// 1 to 200 characters.
    pub title: String,
    /// RFC 3339, e.g. `2030-01-31T10:00:00Z`.
    #[serde(default)]
    pub scheduled_start: Option<String>,
    /// With an account API key: the user whose seat hosts the meeting. The meeting then runs
    /// under that license's limits (participants, screen share, recording, SDK).
    #[serde(default)]
    pub host_user_id: Option<String>,
    /// Invited contacts (at most 50) who get the summary by email when the meeting ends and
    /// its results rule allows it.
    #[serde(default)]
    pub contacts: Option<Vec<crate::summaries::http::Contact>>,
    /// Email the summary to the invited contacts. Unlicensed meetings send only when this is
    /// `true`; licensed ones send when the license includes results to recipients (agreement
    /// 1.12) unless this is `false`.
    #[serde(default)]
    pub send_results: Option<bool>,
}

/// Public information about a meeting.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingInfo {
    pub id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub locked: bool,
}

impl From<&MeetingRow> for MeetingInfo {
    fn from(m: &MeetingRow) -> Self {
        MeetingInfo {
            id: m.id.clone(),
            title: m.title.clone(),
            scheduled_start: m.scheduled_start,
            created_at: m.created_at,
            started_at: m.started_at,
            ended_at: m.ended_at,
            locked: m.locked,
        }
    }
}

/// A new meeting with its links. The secrets appear only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingCreated {
    pub id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Opens the meeting as host: `{base}/m/{id}?t=<host token>`.
    pub host_link: String,
    /// For guests: `{base}/m/{id}?invite=<invite secret>`.
    pub invite_link: String,
    /// A join token with the host role (the one in `host_link`).
    pub host_token: String,
    /// Manages the meeting through the API (`Authorization: Bearer <host_key>`).
    pub host_key: String,
    /// The invitation secret of `invite_link`.
    pub invite: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingList {
    pub meetings: Vec<MeetingInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InviteParam {
    /// The invitation secret (alternative to a bearer credential).
    pub invite: Option<String>,
}

/// Exchange an invitation (guest) or the host key or host token (host) for a join token with
/// the chosen display name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinMeeting {
    /// 1 to 64 characters.
    pub display_name: String,
    /// The invitation secret from the invite link.
    #[serde(default)]
    pub invite: Option<String>,
    /// The meeting's host key.
    #[serde(default)]
    pub host_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinToken {
    /// Send as `token` in the WebSocket `join` message.
    pub token: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    /// Path of the signaling WebSocket.
    pub ws_path: String,
    pub meeting: MeetingInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessage {
    pub participant_id: String,
    pub display_name: String,
    pub text: String,
    /// `websocket` or `data_channel`.
    pub via: String,
    pub sent_at: DateTime<Utc>,
}

/// The answer for a meeting that does not exist, and for one the caller may not know of (of
/// another account): the same words, so that the two cannot be told apart.
pub(crate) fn no_such_meeting(id: &str) -> ApiError {
    ApiError::NotFound(format!("No meeting with id {id:.40?}."))
}

/// Loads a meeting by its path id; a malformed id is just "not found".
pub async fn load(app: &AppState, id: &str) -> Result<(MeetingId, MeetingRow), ApiError> {
    let not_found = || no_such_meeting(id);
    let id = MeetingId::parse(id).map_err(|_| not_found())?;
    let row = app.store.meeting(&id).await?.ok_or_else(not_found)?;
    Ok((id, row))
}

pub(crate) fn parse_scheduled_start(s: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        ApiError::invalid(
            "invalid_scheduled_start",
            format!(
                "scheduled_start must be an RFC 3339 date-time such as 2030-01-31T10:00:00Z ({e})."
            ),
        )
    })?;
    Ok(Some(t.with_timezone(&Utc)))
}

/// The grants of a role in this meeting: a licensed meeting narrows them to its tariff.
pub(crate) fn grants_for(role: Role, row: &MeetingRow) -> Grants {
    let mut g = Grants::for_role(role);
    g.screen_share &= row.screen_share_allowed();
    g.record &= row.recording_allowed.unwrap_or(true);
    g
}

/// Decides under which license (if any) a meeting is created. Without `PARLEY_REQUIRE_LICENSE`
/// an anonymous caller gets an unlicensed meeting, as the landing page always did; an account
/// key must name its host, who must hold a seat on an active lot of a usable account.
async fn license_for(
    app: &AppState,
    headers: &HeaderMap,
    host_user_id: Option<&str>,
) -> Result<Option<MeetingLicense>, ApiError> {
    // A signed-in user (session cookie or `Bearer s_…`) hosts on their own seat.
    if let Some(license) =
        crate::routes::users::session_host_license(app, headers, host_user_id).await?
    {
        return Ok(Some(license));
    }
    let caller = ServiceCredential::from_headers(app, headers).await?;
    let user = host_user_id
        .map(|u| bounded_text("host_user_id", u, MAX_USER_ID))
        .transpose()?;
    let account = match (caller, user) {
        (ServiceCredential::AccountKey(account), Some(user)) => (account, user),
        (ServiceCredential::AccountKey(_), None) => {
            return Err(LicensingError::InvalidRequest {
                field: "host_user_id",
                reason: "required with an account API key: the user whose seat hosts the meeting"
                    .into(),
            }
            .into());
        }
        (ServiceCredential::None, Some(_)) => {
            return Err(ApiError::Unauthorized(
                "host_user_id needs the account's API key (Authorization: Bearer <key_id>.<secret>)."
                    .into(),
            ));
        }
        // The platform operator's own meetings are not sold seats.
        (ServiceCredential::Operator, _) => return Ok(None),
        (ServiceCredential::None, None) if app.config.require_license => {
            return Err(ApiError::Status {
                status: StatusCode::FORBIDDEN,
                code: "license_required",
                message: "This server requires a license: create meetings with an account API \
                          key and the host_user_id of a user holding a seat."
                    .into(),
            });
        }
        (ServiceCredential::None, None) => return Ok(None),
    };
    let (account_id, user) = account;
    let e = app
        .licensing
        .may_host(account_id, user)
        .await
        .map_err(|e| refusal(e, user))?;
    Ok(Some(MeetingLicense {
        account_id: account_id.to_string(),
        host_user_id: user.to_owned(),
        max_participants: e.max_participants,
        max_meeting_minutes: e.max_meeting_minutes,
        recording_allowed: e.recording_allowed,
        screen_share_allowed: e.screen_share_allowed,
        sdk_allowed: e.sdk_allowed,
    }))
}

/// The enforcement refusals as 403s a person can act on; anything else keeps its own status.
pub(crate) fn refusal(e: LicensingError, user: &str) -> ApiError {
    let forbidden = |code, message| ApiError::Status {
        status: StatusCode::FORBIDDEN,
        code,
        message,
    };
    match e {
        LicensingError::NoSeat { .. } | LicensingError::NoActiveLicense => forbidden(
            "no_seat",
            format!("{user} holds no seat on an active license of this account."),
        ),
        e @ LicensingError::AccountSuspended { .. } => forbidden("account_suspended", e.message()),
        e @ LicensingError::AccountTerminated => forbidden("account_terminated", e.message()),
        other => other.into(),
    }
}

/// Create a meeting. Open to anyone unless `PARLEY_REQUIRE_LICENSE` is set; with an account API
/// key and `host_user_id` it runs under that user's license.
#[utoipa::path(post, path = "/api/v1/meetings", tag = "meetings", request_body = CreateMeeting,
    security((), ("bearer" = [])),
    responses(
        (status = 201, body = MeetingCreated),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Invalid credential", body = ErrorBody),
        (status = 403, description = "no_seat, account_suspended, account_terminated, license_required", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid title or date", body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateMeeting>,
) -> Result<(StatusCode, Json<MeetingCreated>), ApiError> {
    let title =
        MeetingTitle::parse(&req.title).map_err(|e| ApiError::invalid("invalid_title", e.0))?;
    let scheduled_start = parse_scheduled_start(req.scheduled_start.as_deref())?;
    let contacts = req
        .contacts
        .as_deref()
        .map(crate::summaries::http::parse_contacts)
        .transpose()?;
    let license = license_for(&app, &headers, req.host_user_id.as_deref()).await?;
    let created = create_with_license(&app, &title, scheduled_start, license.as_ref()).await?;
    crate::summaries::http::after_create(&app, &headers, &created.id, req.send_results, contacts)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates a meeting under `license` (already decided by the caller) and issues its links.
/// Shared with the CRM deal card, whose caller is identified by a card session instead.
pub(crate) async fn create_with_license(
    app: &AppState,
    title: &MeetingTitle,
    scheduled_start: Option<DateTime<Utc>>,
    license: Option<&MeetingLicense>,
) -> Result<MeetingCreated, ApiError> {
    let id = MeetingId::generate();
    let row = app
        .store
        .insert_meeting(&id, title.as_str(), scheduled_start, license)
        .await?;
    crate::summaries::copy_results_rule(app, id.as_str(), license).await?;
    Metrics::inc(&app.metrics.meetings_created);
    let host_token = app
        .tokens
        .issue_with_grants(
            &id,
            &format!("host-{}", random_token(12)),
            "Host",
            Role::Host,
            grants_for(Role::Host, &row),
            scheduled_start,
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
    let base = &app.config.public_url;
    tracing::info!(meeting = %id, licensed = license.is_some(), "meeting created");
    Ok(MeetingCreated {
        host_link: format!("{base}/m/{id}?t={host_token}"),
        invite_link: format!("{base}/m/{id}?invite={}", row.invite_secret),
        id: row.id,
        title: row.title,
        scheduled_start: row.scheduled_start,
        created_at: row.created_at,
        host_token,
        host_key: row.host_key,
        invite: row.invite_secret,
    })
}

/// List meetings, newest first. Needs the operator's admin token (`PARLEY_ADMIN_TOKEN`).
#[utoipa::path(get, path = "/api/v1/meetings", tag = "meetings", params(ListParams),
    security(("bearer" = [])),
    responses((status = 200, body = MeetingList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<MeetingList>, ApiError> {
    let Some(admin) = &app.config.admin_token else {
        return Err(ApiError::Forbidden(
            "Listing meetings is disabled: no admin token is configured (PARLEY_ADMIN_TOKEN)."
                .into(),
        ));
    };
    match bearer_token(&headers) {
        Some(t) if constant_time_eq(t, admin.expose()) => {}
        // The admin console's operator session; an expired or revoked one is 401.
        Some(t) if t.starts_with(crate::auth::operator_session::PREFIX) => {
            crate::auth::operator_session::authenticate(&app, t).await?;
        }
        Some(_) => return Err(ApiError::Forbidden("The admin token is not valid.".into())),
        None => {
            return Err(ApiError::Unauthorized(
                "Listing meetings needs the admin token.".into(),
            ));
        }
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: "limit must be between 1 and 100.".into(),
        });
    }
    let before = match params.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::BadRequest {
            code: "invalid_cursor",
            message: "cursor is not one this server returned.".into(),
        })?),
    };
    let rows = app.store.list_meetings(limit, before).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(MeetingList {
        meetings: rows.iter().map(MeetingInfo::from).collect(),
        next_cursor,
    }))
}

/// A meeting's public information: for its invitation (`?invite=`) or any credential of it,
/// the session of the user who hosts it, its account's admins and API key, the operator. A
/// member of the account who does not host it gets 403; another account's users and keys
/// 404.
#[utoipa::path(get, path = "/api/v1/meetings/{id}", tag = "meetings",
    params(("id" = String, Path), InviteParam), security(("bearer" = [])),
    responses((status = 200, body = MeetingInfo), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<InviteParam>,
) -> Result<Json<MeetingInfo>, ApiError> {
    let (_, row, caller) = identify(&app, &headers, &id, q.invite.as_deref()).await?;
    caller.require_reader()?;
    Ok(Json(MeetingInfo::from(&row)))
}

/// Exchange an invitation, the host key or a host token for a join token with a display name.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/join", tag = "meetings",
    params(("id" = String, Path)), request_body = JoinMeeting, security((), ("bearer" = [])),
    responses((status = 200, body = JoinToken), (status = 401, body = ErrorBody),
        (status = 403, description = "participant_limit, account_suspended", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, description = "Meeting ended", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn join(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<JoinMeeting>,
) -> Result<Json<JoinToken>, ApiError> {
    // Whether the meeting exists is nobody's business without a credential.
    require_credential(&headers, req.invite.as_deref().or(req.host_key.as_deref()))?;
    let (id, row) = load(&app, &id).await?;
    let name = DisplayName::parse(&req.display_name)
        .map_err(|e| ApiError::invalid("invalid_display_name", e.0))?;
    let role = if let Some(key) = &req.host_key {
        if !constant_time_eq(key, &row.host_key) {
            return Err(ApiError::Unauthorized("The host key is not valid.".into()));
        }
        Role::Host
    } else if let Some(invite) = &req.invite {
        if !constant_time_eq(invite, &row.invite_secret) {
            return Err(ApiError::Unauthorized(
                "The invitation is not valid.".into(),
            ));
        }
        Role::Guest
    } else {
        // A host token (from the host link) in the Authorization header.
        match HostCredential::check(&app.tokens, &row, bearer_token(&headers), None)? {
            HostCredential::Host => Role::Host,
            HostCredential::Guest => Role::Guest,
        }
    };
    if row.ended_at.is_some() {
        return Err(ApiError::Status {
            status: StatusCode::GONE,
            code: "meeting_ended",
            message: "The meeting has ended.".into(),
        });
    }
    check_license_on_join(&app, &id, &row).await?;
    let identity = format!("{}-{}", role.as_str(), random_token(12));
    let token = app
        .tokens
        .issue_with_grants(
            &id,
            &identity,
            name.as_str(),
            role,
            grants_for(role, &row),
            row.scheduled_start,
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
    let claims = app
        .tokens
        .verify(&token, Some(&id))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("fresh token invalid: {e}")))?;
    Ok(Json(JoinToken {
        token,
        role,
        expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        ws_path: "/api/v1/ws".into(),
        meeting: MeetingInfo::from(&row),
    }))
}

/// A licensed meeting: its account must still be usable, and the tariff's participant ceiling
/// must leave room. The hub enforces the ceiling again at the WebSocket join (the authoritative
/// count); this early answer spares a client a token it could not use.
async fn check_license_on_join(
    app: &AppState,
    id: &MeetingId,
    row: &MeetingRow,
) -> Result<(), ApiError> {
    if let Some(account) = row
        .account_id
        .as_deref()
        .and_then(|a| Uuid::parse_str(a).ok())
    {
        app.licensing
            .may_join(account)
            .await
            .map_err(|e| refusal(e, ""))?;
    }
    if let Some(limit) = row.participant_limit() {
        let present = usize::try_from(app.store.open_sessions(id).await?).unwrap_or(usize::MAX);
        if present >= limit {
            return Err(ApiError::Status {
                status: StatusCode::FORBIDDEN,
                code: "participant_limit",
                message: format!("The meeting is full: its license allows {limit} participants."),
            });
        }
    }
    Ok(())
}

/// End the meeting for everyone: its host (host credential or the hosting user's session),
/// its account's admins and API key, the operator. Idempotent.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/end", tag = "meetings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Ended"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (id, row, caller) = identify(&app, &headers, &id, None).await?;
    let actor = caller.require_overseer()?;
    // Written before the hub is told, so that a hub starting concurrently loads the end.
    app.store.end_meeting(&id).await?;
    let _ = app.hubs.host(&id, HostCommand::End).await;
    // Also when no hub was running (nobody in the meeting); a no-op if the hub did it first.
    crate::summaries::meeting_ended(&app, &id).await;
    crate::privacy::record(
        &app,
        &headers,
        actor,
        row.account_id.as_deref(),
        "meeting.end",
        crate::privacy::Target::new("meeting", id.as_str()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The meeting's chat, oldest first: its host (host credential or the hosting user's
/// session), its account's admins and API key, the operator. Each read is audited.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/chat", tag = "meetings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<ChatMessage>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn chat(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<ChatMessage>>, ApiError> {
    let (id, row, caller) = identify(&app, &headers, &id, None).await?;
    let actor = caller.require_overseer()?;
    let rows = app.store.chat(&id).await?;
    crate::privacy::record(
        &app,
        &headers,
        actor,
        row.account_id.as_deref(),
        "chat.read",
        crate::privacy::Target::new("meeting", id.as_str()),
    )
    .await;
    Ok(Json(
        rows.into_iter()
            .map(|r| ChatMessage {
                participant_id: r.participant_id,
                display_name: r.display_name,
                text: r.text,
                via: r.via,
                sent_at: r.sent_at,
            })
            .collect(),
    ))
}
