//! Recordings over HTTP: start and stop (`/meetings/{id}/recording`), metadata and files
//! (`/meetings/{id}/recordings`, `/recordings/{rid}`, `/accounts/{account}/recordings`), signed
//! links (`/recordings/{rid}/links`), deletion, and the download itself
//! (`GET /recordings/{rid}/{file}?expires=…&sig=…`, outside `/api/v1`: a link opened by a browser).
//!
//! Who sees a recording: the meeting's host user (session), the account's admins (session), the
//! account's API key and the operator. Someone of another account gets 404, as if it did not
//! exist; a member of the account who did not host the meeting gets 403. Deleting is for the
//! account's admins, its key and the operator.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeFile;
use utoipa::{IntoParams, ToSchema};

use super::control::{self, Requester, StopReason};
use super::db::{self, FileRow, RecordingRow};
use super::files::mime_of;
use super::links::{self, LinkError};
use crate::auth::{Claims, bearer_token};
use crate::domain::{MeetingId, Role, constant_time_eq};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::privacy::{Actor, Target, record};
use crate::startup::AppState;
use crate::store::MeetingRow;
use crate::users::Principal;

/// Most recordings one account listing returns.
const MAX_LISTED: u32 = 200;

/// One file of a recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingFileView {
    /// The file's name (also its name in download links).
    pub name: String,
    /// `track_audio`, `track_video`, `mixed_audio` or `composite`.
    pub kind: String,
    /// Whose track it is (track files only).
    pub participant_id: Option<String>,
    pub display_name: Option<String>,
    /// `opus`, `vp8`, `h264`, or `vp8+opus` for the composite.
    pub codec: String,
    pub bytes: i64,
    pub duration_ms: Option<i64>,
    /// Where the file starts on the recording's timeline.
    pub start_offset_ms: i64,
}

impl From<FileRow> for RecordingFileView {
    fn from(f: FileRow) -> Self {
        RecordingFileView {
            name: f.name,
            kind: f.kind,
            participant_id: f.participant_id,
            display_name: f.display_name,
            codec: f.codec,
            bytes: f.bytes,
            duration_ms: f.duration_ms,
            start_offset_ms: f.start_offset_ms,
        }
    }
}

/// A recording and its files.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    pub id: String,
    pub meeting_id: String,
    pub meeting_title: String,
    pub account_id: Option<String>,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// `recording`, `processing`, `ready` or `failed`.
    pub status: String,
    /// Why it stopped: `stopped`, `quota_exceeded`, `meeting_ended`, `failed`.
    pub stop_reason: Option<String>,
    pub bytes: i64,
    /// When retention deletes it; absent: kept until deleted.
    pub expires_at: Option<DateTime<Utc>>,
    /// What went wrong, for a failed recording (its files are kept).
    pub error: Option<String>,
    /// The recording's page, for people.
    pub page_url: String,
    /// Empty until the recording has stopped and its files are complete.
    pub files: Vec<RecordingFileView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingList {
    /// Oldest first for a meeting; newest first for an account.
    pub recordings: Vec<RecordingView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageView {
    /// Bytes the account's recordings take, running ones included.
    pub used_bytes: u64,
    /// What the account's tariff allows; absent when no active license includes recording.
    pub quota_bytes: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRecordings {
    /// Newest first, one page (`limit`, default and at most 200).
    pub recordings: Vec<RecordingView>,
    /// All the account's recordings, for paging.
    pub total: u64,
    pub storage: StorageView,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccountRecordingsParams {
    /// 1 to 200, default 200.
    pub limit: Option<u32>,
    /// Recordings to skip (newest first), default 0.
    pub offset: Option<u32>,
}

/// The answer to a start.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingStarted {
    pub recording_id: String,
    pub meeting_id: String,
    /// `recording`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub page_url: String,
}

/// The answer to a stop.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingStopped {
    pub recording_id: String,
    /// `processing`: the files are being finished; `ready` follows.
    pub status: String,
    pub stopped_at: DateTime<Utc>,
}

/// A signed download link of one file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileLink {
    pub name: String,
    pub kind: String,
    pub bytes: i64,
    pub duration_ms: Option<i64>,
    /// `GET` it (no credential needed) until `expires_at`.
    pub url: String,
    /// The same link relative to the server (for a page on the server's own origin).
    pub path: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingLinks {
    pub recording_id: String,
    pub expires_at: DateTime<Utc>,
    pub files: Vec<FileLink>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LinkParams {
    /// Unix seconds after which the link no longer works.
    pub expires: i64,
    /// Hex HMAC-SHA256 of the link.
    pub sig: String,
}

fn not_found() -> ApiError {
    ApiError::NotFound("No recording with this id.".into())
}

/// The start/stop credential: a join token of this meeting, or its host key.
fn requester(
    app: &AppState,
    headers: &HeaderMap,
    meeting: &MeetingRow,
) -> Result<Requester, ApiError> {
    let Some(bearer) = bearer_token(headers) else {
        return Err(ApiError::Unauthorized(
            "This call needs a join token with the record grant, or the meeting's host key.".into(),
        ));
    };
    if constant_time_eq(bearer, &meeting.host_key) {
        return Ok(Requester {
            name: "Host".into(),
            record_grant: true,
            host: true,
            actor: Actor::meeting_host(&meeting.id),
        });
    }
    let id =
        MeetingId::parse(&meeting.id).map_err(|e| ApiError::Internal(anyhow::anyhow!("{e:?}")))?;
    let claims = app
        .tokens
        .verify(bearer, Some(&id))
        .map_err(|e| ApiError::Unauthorized(format!("Invalid token: {e}.")))?;
    Ok(requester_of(&claims))
}

/// A participant with a join token, as a requester.
pub fn requester_of(claims: &Claims) -> Requester {
    let host = claims.role == Role::Host;
    Requester {
        name: claims.name.clone(),
        record_grant: claims.grants.record,
        host,
        actor: if host {
            Actor::meeting_host(&claims.meeting)
        } else {
            Actor {
                kind: "participant",
                id: Some(claims.sub.clone()),
            }
        },
    }
}

/// Start recording the meeting: a join token with the `record` grant, or the host key.
/// Everyone in the meeting is told (`recording` message).
#[utoipa::path(post, path = "/api/v1/meetings/{id}/recording", tag = "recordings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = RecordingStarted),
        (status = 401, body = ErrorBody),
        (status = 403, description = "recording_not_permitted (no record grant), \
            recording_not_in_tariff, storage_quota_exceeded (message gives used and quota), \
            no_seat, account_suspended", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "already_recording, meeting_not_active (nobody joined)", body = ErrorBody),
        (status = 410, description = "meeting_ended", body = ErrorBody)))]
pub async fn start(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RecordingStarted>), ApiError> {
    let (id, row) = crate::routes::meetings::load(&app, &id).await?;
    let who = requester(&app, &headers, &row)?;
    let started = control::start(&app, &row, who, &headers).await?;
    Ok((
        StatusCode::CREATED,
        Json(RecordingStarted {
            page_url: app.recordings.page_url(&started.id),
            recording_id: started.id,
            meeting_id: id.to_string(),
            status: "recording".into(),
            started_at: started.started_at,
            started_by: started.started_by,
        }),
    ))
}

/// Stop the meeting's recording (the same credentials as start). The files are finished in the
/// background: the recording is `processing`, then `ready`.
#[utoipa::path(delete, path = "/api/v1/meetings/{id}/recording", tag = "recordings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RecordingStopped),
        (status = 401, body = ErrorBody),
        (status = 403, description = "recording_not_permitted", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not_recording", body = ErrorBody)))]
pub async fn stop(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecordingStopped>, ApiError> {
    let (id, row) = crate::routes::meetings::load(&app, &id).await?;
    let who = requester(&app, &headers, &row)?;
    if !who.record_grant {
        return Err(control::RecordingError::NotPermitted.into());
    }
    let stopped = control::stop(&app, &id, StopReason::Stopped, None).await?;
    control::audit_stop(
        &app,
        &headers,
        who.actor,
        row.account_id.as_deref(),
        &stopped.id,
    )
    .await;
    Ok(Json(RecordingStopped {
        recording_id: stopped.id,
        status: "processing".into(),
        stopped_at: stopped.stopped_at,
    }))
}

/// Who may see the recordings of a meeting of `account` hosted by `host_user` (module docs).
async fn viewer(
    app: &AppState,
    headers: &HeaderMap,
    account: Option<&str>,
    host_user: Option<&str>,
    missing: &(dyn Fn() -> ApiError + Send + Sync),
) -> Result<Actor, ApiError> {
    let principal = Principal::from_headers(app, headers).await?;
    let same = |a: &uuid::Uuid| account == Some(a.to_string().as_str());
    match &principal {
        Principal::Anonymous => Err(ApiError::Unauthorized(
            "Sign in, or call with the account's API key, to see recordings.".into(),
        )),
        Principal::Operator => Ok(Actor::operator()),
        Principal::AccountKey(a) if same(a) => Ok(Actor::from_principal(&principal)),
        Principal::User(u)
            if same(&u.account_id) && (u.is_admin() || host_user == Some(u.user.id.as_str())) =>
        {
            Ok(Actor::from_principal(&principal))
        }
        Principal::User(u) if same(&u.account_id) => Err(ApiError::Forbidden(
            "Only the meeting's host and the account's admins may see its recordings.".into(),
        )),
        _ => Err(missing()),
    }
}

/// Who may delete a recording of `account`: its admins, its key, the operator.
async fn admin(
    app: &AppState,
    headers: &HeaderMap,
    account: Option<&str>,
) -> Result<Actor, ApiError> {
    let principal = Principal::from_headers(app, headers).await?;
    let same = |a: &uuid::Uuid| account == Some(a.to_string().as_str());
    match &principal {
        Principal::Anonymous => Err(ApiError::Unauthorized(
            "Deleting a recording needs an account admin's session, the account's API key or \
             the operator's token."
                .into(),
        )),
        Principal::Operator => Ok(Actor::operator()),
        Principal::AccountKey(a) if same(a) => Ok(Actor::from_principal(&principal)),
        Principal::User(u) if same(&u.account_id) && u.is_admin() => {
            Ok(Actor::from_principal(&principal))
        }
        Principal::User(u) if same(&u.account_id) => Err(ApiError::Forbidden(
            "Only the account's admins may delete recordings.".into(),
        )),
        _ => Err(not_found()),
    }
}

async fn view(app: &AppState, r: RecordingRow) -> Result<RecordingView, ApiError> {
    let files = db::files(&app.recordings.pool, &r.id).await?;
    Ok(RecordingView {
        page_url: app.recordings.page_url(&r.id),
        files: files.into_iter().map(RecordingFileView::from).collect(),
        id: r.id,
        meeting_id: r.meeting_id,
        meeting_title: r.meeting_title,
        account_id: r.account_id,
        started_by: r.started_by,
        started_at: r.started_at,
        stopped_at: r.stopped_at,
        status: r.status,
        stop_reason: r.stop_reason,
        bytes: r.bytes,
        expires_at: r.expires_at,
        error: r.error,
    })
}

async fn load(app: &AppState, rid: &str) -> Result<RecordingRow, ApiError> {
    if !super::is_id(rid) {
        return Err(not_found());
    }
    db::get(&app.recordings.pool, rid)
        .await?
        .ok_or_else(not_found)
}

/// A meeting's recordings with their files, oldest first.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/recordings", tag = "recordings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RecordingList), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account who did not host the meeting", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn of_meeting(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecordingList>, ApiError> {
    let (id, row) = crate::routes::meetings::load(&app, &id).await?;
    // Exactly the answer for a meeting that does not exist, so another account learns nothing.
    let no_meeting = || crate::routes::meetings::no_such_meeting(id.as_str());
    viewer(
        &app,
        &headers,
        row.account_id.as_deref(),
        row.host_user_id.as_deref(),
        &no_meeting,
    )
    .await?;
    let mut recordings = Vec::new();
    for r in db::of_meeting(&app.recordings.pool, id.as_str()).await? {
        recordings.push(view(&app, r).await?);
    }
    Ok(Json(RecordingList { recordings }))
}

/// One recording with its files.
#[utoipa::path(get, path = "/api/v1/recordings/{rid}", tag = "recordings",
    params(("rid" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RecordingView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecordingView>, ApiError> {
    let r = load(&app, &rid).await?;
    viewer(
        &app,
        &headers,
        r.account_id.as_deref(),
        r.host_user_id.as_deref(),
        &not_found,
    )
    .await?;
    Ok(Json(view(&app, r).await?))
}

/// Delete a recording, files and metadata (the account's admins, its key, the operator).
#[utoipa::path(delete, path = "/api/v1/recordings/{rid}", tag = "recordings",
    params(("rid" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "recording_in_progress: stop it and let it finish first", body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let r = load(&app, &rid).await?;
    let actor = admin(&app, &headers, r.account_id.as_deref()).await?;
    in_progress(&r)?;
    super::jobs::delete(&app, &r, &headers, actor, "recording.delete").await?;
    Ok(StatusCode::NO_CONTENT)
}

fn in_progress(r: &RecordingRow) -> Result<(), ApiError> {
    if matches!(r.status.as_str(), "recording" | "processing") {
        return Err(ApiError::Conflict {
            code: "recording_in_progress",
            message: "The recording is still running or being processed; its files are not \
                      complete yet."
                .into(),
        });
    }
    Ok(())
}

/// Short-lived signed download links, one per file (who may see the recording).
#[utoipa::path(post, path = "/api/v1/recordings/{rid}/links", tag = "recordings",
    params(("rid" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RecordingLinks), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "recording_in_progress", body = ErrorBody)))]
pub async fn links(
    State(app): State<AppState>,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RecordingLinks>, ApiError> {
    let r = load(&app, &rid).await?;
    let actor = viewer(
        &app,
        &headers,
        r.account_id.as_deref(),
        r.host_user_id.as_deref(),
        &not_found,
    )
    .await?;
    in_progress(&r)?;
    let rec = &app.recordings;
    let expires_at = rec.now()
        + chrono::Duration::from_std(rec.link_ttl).unwrap_or(chrono::Duration::minutes(15));
    let expires = expires_at.timestamp();
    let files = db::files(&rec.pool, &r.id)
        .await?
        .into_iter()
        .map(|f| {
            let sig = links::sign(&rec.link_key, &r.id, &f.name, expires);
            let path = format!(
                "/recordings/{}/{}?expires={expires}&sig={sig}",
                r.id, f.name
            );
            FileLink {
                url: format!("{}{path}", rec.public_url),
                path,
                name: f.name,
                kind: f.kind,
                bytes: f.bytes,
                duration_ms: f.duration_ms,
            }
        })
        .collect();
    record(
        &app,
        &headers,
        actor,
        r.account_id.as_deref(),
        "recording.link",
        Target::new("recording", &r.id),
    )
    .await;
    Ok(Json(RecordingLinks {
        recording_id: r.id,
        expires_at: DateTime::from_timestamp(expires, 0).unwrap_or(expires_at),
        files,
    }))
}

/// An account's recordings, newest first and paged, and its storage used and allowed (the
/// account's admins, its key, the operator).
#[utoipa::path(get, path = "/api/v1/accounts/{account}/recordings", tag = "recordings",
    params(("account" = String, Path), AccountRecordingsParams), security(("bearer" = [])),
    responses((status = 200, body = AccountRecordings), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn of_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<AccountRecordingsParams>,
) -> Result<Json<AccountRecordings>, ApiError> {
    let (_, account) = crate::routes::users::manager(&app, &headers, &account).await?;
    let limit = page.limit.unwrap_or(MAX_LISTED);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!("limit must be between 1 and {MAX_LISTED}."),
        });
    }
    let id = account.to_string();
    let mut recordings = Vec::new();
    let rows = db::of_account(&app.recordings.pool, &id, limit, page.offset.unwrap_or(0)).await?;
    for r in rows {
        recordings.push(view(&app, r).await?);
    }
    let total = db::count_of_account(&app.recordings.pool, &id).await?;
    let used_bytes = control::storage_used(&app, &id).await?;
    let quota_bytes = account_quota(&app, account).await?;
    Ok(Json(AccountRecordings {
        recordings,
        total,
        storage: StorageView {
            used_bytes,
            quota_bytes,
        },
    }))
}

/// The largest storage quota among the account's licenses in force today.
async fn account_quota(app: &AppState, account: uuid::Uuid) -> Result<Option<u64>, ApiError> {
    let today = app.licensing.today();
    let tariffs = app.licensing.tariffs().await?;
    let lots = app.licensing.lots(account).await?;
    Ok(lots
        .iter()
        .filter(|l| l.grants_access_on(today))
        .filter_map(|l| tariffs.iter().find(|t| t.code == l.tariff))
        .filter_map(|t| t.features.recording.map(|r| r.storage_quota_mb))
        .max()
        .map(|mb| mb.saturating_mul(app.recordings.megabyte)))
}

fn link_refused(code: &'static str, message: &str) -> Response {
    ApiError::Status {
        status: StatusCode::FORBIDDEN,
        code,
        message: message.into(),
    }
    .into_response()
}

/// `GET /recordings/{rid}/{file}?expires=…&sig=…`: the file itself, for whoever holds a valid
/// link (ranges supported). Expired, altered or borrowed links get 403.
#[utoipa::path(get, path = "/recordings/{rid}/{file}", tag = "recordings",
    params(("rid" = String, Path), ("file" = String, Path), LinkParams), security(()),
    responses(
        (status = 200, description = "The file as an attachment: audio/ogg, video/webm or video/mp4"),
        (status = 206, description = "The requested range of it"),
        (status = 400, description = "expires or sig missing", body = ErrorBody),
        (status = 403, description = "link_expired, invalid_link (altered, or made for another file)", body = ErrorBody),
        (status = 404, description = "The recording or file was deleted", body = ErrorBody)))]
pub async fn download(
    State(app): State<AppState>,
    Path((rid, file)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<LinkParams>,
    req: Request,
) -> Response {
    let rec = &app.recordings;
    match links::verify(
        &rec.link_key,
        &rid,
        &file,
        q.expires,
        &q.sig,
        rec.now().timestamp(),
    ) {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return link_refused(
                "link_expired",
                "This download link has expired. Ask for a new one on the recording's page.",
            );
        }
        Err(LinkError::BadSignature) => {
            return link_refused("invalid_link", "This download link is not valid.");
        }
    }
    // A valid signature was made by this server for this file; it may since have been deleted.
    let gone =
        || ApiError::NotFound("The recording or file no longer exists.".into()).into_response();
    let Ok(Some(r)) = db::get(&rec.pool, &rid).await else {
        return gone();
    };
    let Ok(Some(f)) = db::file(&rec.pool, &rid, &file).await else {
        return gone();
    };
    let path = std::path::Path::new(&r.dir).join(&f.name);
    if f.name.contains('/') || f.name.contains("..") || !path.is_file() {
        return gone();
    }
    let headers = req.headers().clone();
    let mime = HeaderValue::from_static(mime_of(&f.name));
    let mut res = match ServeFile::new(&path).try_call(req).await {
        Ok(res) => res.map(Body::new),
        Err(e) => return ApiError::Internal(e.into()).into_response(),
    };
    // A player fetches a file in many ranges: one entry per download (the whole file, or a
    // player's opening `bytes=0-`), not one per range.
    let from_start = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == "bytes=0-");
    if res.status().is_success() && from_start {
        // Whoever holds a link may download; the audit log says when and from where.
        record(
            &app,
            &headers,
            Actor {
                kind: "signed_link",
                id: None,
            },
            r.account_id.as_deref(),
            "recording.download",
            Target::new("recording", &r.id),
        )
        .await;
    }
    let disposition = format!("attachment; filename=\"{}-{}\"", r.meeting_id, f.name);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    res.headers_mut().insert(CONTENT_TYPE, mime);
    // A link outlives nothing: no shared cache may keep the file past its expiry.
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    res.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}
