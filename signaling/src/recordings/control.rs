//! Starting and stopping a meeting's recording, from a participant's WebSocket or the REST API.
//!
//! Who may: a join token with the `record` grant (hosts get it when their tariff includes
//! recording) or the meeting's host key. What may: a licensed meeting whose tariff includes
//! recording — asked of the licensing service again at start, since the tariff may have changed
//! since the meeting was made — with room left in the account's storage quota. Meetings without
//! a license record only where the operator allows it (`PARLEY_RECORD_UNLICENSED`).

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use parley_licensing::LicensingError;
use parley_sfu::SfuError;

use super::{Active, UNLICENSED_DIR, db, files};
use crate::domain::MeetingId;
use crate::error::ApiError;
use crate::privacy::{Actor, Target, record};
use crate::startup::AppState;
use crate::store::MeetingRow;
use crate::ws::{RecordingNotice, RecordingState};

/// Why a recording stopped, as everyone is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone with the grant stopped it, or everyone left.
    Stopped,
    QuotaExceeded,
    MeetingEnded,
    /// The files could not be written.
    Failed,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Stopped => "stopped",
            StopReason::QuotaExceeded => "quota_exceeded",
            StopReason::MeetingEnded => "meeting_ended",
            StopReason::Failed => "failed",
        }
    }
}

/// Who asks to start or stop.
#[derive(Debug, Clone)]
pub struct Requester {
    /// Shown to everyone as `started_by`.
    pub name: String,
    /// The token's `record` grant (the host key has it).
    pub record_grant: bool,
    /// A host: told about the tariff rather than about a missing grant.
    pub host: bool,
    pub actor: Actor,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("Your join token does not allow recording this meeting.")]
    NotPermitted,
    #[error("Your tariff does not include recording.")]
    NotInTariff,
    #[error("This meeting runs without a license; recording needs a tariff that includes it.")]
    Unlicensed,
    #[error(
        "The account's recording storage is used up: {used} of {quota} MB. Delete old recordings \
         or move to a tariff with more storage."
    )]
    QuotaExceeded { used: String, quota: u64 },
    #[error("The meeting is already being recorded.")]
    AlreadyRecording,
    #[error("The meeting is not being recorded.")]
    NotRecording,
    #[error("The meeting has ended.")]
    MeetingEnded,
    #[error("Nobody is in the meeting: recording starts once someone has joined.")]
    NotActive,
    #[error(transparent)]
    Licensing(LicensingError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for RecordingError {
    fn from(e: sqlx::Error) -> Self {
        RecordingError::Internal(e.into())
    }
}

impl RecordingError {
    /// The code of the REST error and of the WebSocket `error` message.
    pub fn code(&self) -> &'static str {
        match self {
            RecordingError::NotPermitted => "recording_not_permitted",
            RecordingError::NotInTariff | RecordingError::Unlicensed => "recording_not_in_tariff",
            RecordingError::QuotaExceeded { .. } => "storage_quota_exceeded",
            RecordingError::AlreadyRecording => "already_recording",
            RecordingError::NotRecording => "not_recording",
            RecordingError::MeetingEnded => "meeting_ended",
            RecordingError::NotActive => "meeting_not_active",
            RecordingError::Licensing(e) => e.code(),
            RecordingError::Internal(_) => "internal",
        }
    }

    /// The WebSocket `error` code: the REST code, except `forbidden` for a missing grant (as
    /// for the other actions a token does not allow).
    pub fn ws_code(&self) -> &'static str {
        match self {
            RecordingError::NotPermitted => "forbidden",
            other => other.code(),
        }
    }

    /// The message for a person (internal details stay in the log).
    pub fn message(&self) -> String {
        match self {
            RecordingError::Internal(_) => "Something went wrong on the server.".into(),
            RecordingError::Licensing(e) => e.message(),
            other => other.to_string(),
        }
    }
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> ApiError {
        let status = match &e {
            RecordingError::NotPermitted
            | RecordingError::NotInTariff
            | RecordingError::Unlicensed
            | RecordingError::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
            RecordingError::AlreadyRecording
            | RecordingError::NotRecording
            | RecordingError::NotActive => StatusCode::CONFLICT,
            RecordingError::MeetingEnded => StatusCode::GONE,
            RecordingError::Licensing(_) | RecordingError::Internal(_) => {
                return match e {
                    RecordingError::Licensing(l) => crate::routes::meetings::refusal(l, "The host"),
                    RecordingError::Internal(i) => ApiError::Internal(i),
                    _ => ApiError::Internal(anyhow::anyhow!("unreachable recording error")),
                };
            }
        };
        ApiError::Status {
            status,
            code: e.code(),
            message: e.message(),
        }
    }
}

/// A started recording, as the starter is told.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
}

/// What the tariff allows a new recording.
struct Limits {
    /// Bytes the account may store in all.
    quota: Option<u64>,
    expires_at: Option<DateTime<Utc>>,
}

/// Starts recording `meeting` for `who`; everyone in the meeting is told.
pub async fn start(
    app: &AppState,
    meeting: &MeetingRow,
    who: Requester,
    headers: &HeaderMap,
) -> Result<Started, RecordingError> {
    let rec = &app.recordings;
    let tariff_allows = match meeting.account_id {
        None => rec.record_unlicensed,
        Some(_) => meeting.recording_allowed.unwrap_or(false),
    };
    let no_feature = || match meeting.account_id {
        None => RecordingError::Unlicensed,
        Some(_) => RecordingError::NotInTariff,
    };
    if !who.record_grant {
        // A host's grant is narrowed by the tariff: say what really stands in the way.
        return Err(if who.host && !tariff_allows {
            no_feature()
        } else {
            RecordingError::NotPermitted
        });
    }
    if !tariff_allows {
        return Err(no_feature());
    }
    if meeting.ended_at.is_some() {
        return Err(RecordingError::MeetingEnded);
    }
    let id = MeetingId::parse(&meeting.id).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let started_at = rec.now();
    let limits = limits(app, meeting, started_at).await?;
    if let (Some(account), Some(quota)) = (&meeting.account_id, limits.quota) {
        let used = storage_used(app, account).await?;
        if used >= quota {
            return Err(quota_error(rec.megabyte, used, quota));
        }
    }

    let rid = super::new_id();
    let base = rec
        .base
        .join(meeting.account_id.as_deref().unwrap_or(UNLICENSED_DIR))
        .join(&rid);
    // The media plane writes into its per-room directory below the one it is given.
    let dir = base.join(parley_sfu::recording::writer::file_name(id.as_str()));
    let active = Active {
        id: rid.clone(),
        account: meeting.account_id.clone(),
        dir: dir.clone(),
        quota: limits.quota,
        starting: true,
    };
    if !rec.reserve(id.as_str(), active) {
        return Err(RecordingError::AlreadyRecording);
    }
    let inserted = db::insert(
        &rec.pool,
        db::NewRecording {
            id: &rid,
            meeting_id: id.as_str(),
            account_id: meeting.account_id.as_deref(),
            started_by: &who.name,
            started_at,
            expires_at: limits.expires_at,
            dir: &dir.to_string_lossy(),
            node: &rec.node,
        },
    )
    .await;
    if let Err(e) = inserted {
        rec.release(id.as_str(), &rid);
        return Err(e.into());
    }
    if let Err(e) = app.sfu.start_recording(id.as_str(), &base).await {
        rec.release(id.as_str(), &rid);
        if let Err(e) = db::delete(&rec.pool, &rid).await {
            tracing::warn!(recording = %rid, error = %e, "cannot remove a recording that did not start");
        }
        let _ = std::fs::remove_dir_all(&base);
        return Err(match e {
            SfuError::NoSuchRoom => RecordingError::NotActive,
            other => RecordingError::Internal(anyhow::anyhow!("media plane: {other}")),
        });
    }
    if rec.activate(id.as_str(), &rid) {
        rec.hubs.recording(
            &id,
            RecordingNotice::Started(RecordingState {
                active: true,
                recording_id: rid.clone(),
                started_at,
                started_by: who.name.clone(),
            }),
        );
    }
    tracing::info!(meeting = %id, recording = %rid, "recording started");
    record(
        app,
        headers,
        who.actor,
        meeting.account_id.as_deref(),
        "recording.start",
        Target::new("recording", &rid),
    )
    .await;
    Ok(Started {
        id: rid,
        started_at,
        started_by: who.name,
    })
}

/// What the tariff of a licensed meeting's host allows today.
async fn limits(
    app: &AppState,
    meeting: &MeetingRow,
    now: DateTime<Utc>,
) -> Result<Limits, RecordingError> {
    let (Some(account), Some(host)) = (&meeting.account_id, &meeting.host_user_id) else {
        return Ok(Limits {
            quota: None,
            expires_at: None,
        });
    };
    let account = uuid::Uuid::parse_str(account)
        .map_err(|_| anyhow::anyhow!("meeting has a bad account id"))?;
    let e = match app.licensing.may_host(account, host).await {
        Ok(e) => e,
        Err(e @ LicensingError::Storage(_)) => {
            return Err(RecordingError::Internal(anyhow::anyhow!("{e}")));
        }
        Err(e) => return Err(RecordingError::Licensing(e)),
    };
    if !e.recording_allowed {
        return Err(RecordingError::NotInTariff);
    }
    Ok(Limits {
        quota: Some(e.storage_quota_mb.saturating_mul(app.recordings.megabyte)),
        expires_at: Some(now + chrono::Duration::days(i64::from(e.retention_days))),
    })
}

pub(crate) fn quota_error(megabyte: u64, used: u64, quota: u64) -> RecordingError {
    RecordingError::QuotaExceeded {
        used: format!("{:.1}", used as f64 / megabyte as f64),
        quota: quota / megabyte,
    }
}

/// Bytes an account's recordings take: the stored ones as the database counts them, plus what
/// the running and finishing ones have written so far.
pub async fn storage_used(app: &AppState, account: &str) -> Result<u64, RecordingError> {
    let stored = db::stored_bytes(&app.recordings.pool, account).await?;
    let dirs = app.recordings.live_dirs(account);
    let live = tokio::task::spawn_blocking(move || dirs.iter().map(|d| files::dir_size(d)).sum())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(stored.saturating_add(live))
}

/// The result of a stop.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub id: String,
    pub stopped_at: DateTime<Utc>,
}

/// Stops the running recording of `meeting` and tells everyone why. `NotRecording` when none
/// runs.
pub async fn stop(
    app: &AppState,
    meeting: &MeetingId,
    reason: StopReason,
    error: Option<String>,
) -> Result<Stopped, RecordingError> {
    let rec = &app.recordings;
    let Some(active) = rec.take_active(meeting.as_str(), None, error.clone()) else {
        return Err(RecordingError::NotRecording);
    };
    // `false` when the media plane had already stopped it (the room closed meanwhile).
    if let Err(e) = app.sfu.stop_recording(meeting.as_str()).await {
        tracing::warn!(%meeting, error = %e, "media plane did not stop the recording");
    }
    Ok(stopped(app, meeting, &active, reason, error.as_deref()).await)
}

/// The bookkeeping of a stop, whoever stopped it (also the media plane on its own, when the
/// room closed).
pub(crate) async fn stopped(
    app: &AppState,
    meeting: &MeetingId,
    active: &Active,
    reason: StopReason,
    error: Option<&str>,
) -> Stopped {
    let rec = &app.recordings;
    let at = rec.now();
    if let Err(e) = db::mark_stopped(&rec.pool, &active.id, at, reason.as_str(), error).await {
        tracing::error!(recording = %active.id, error = %e, "cannot store the recording's stop");
    }
    if !active.starting {
        rec.hubs.recording(
            meeting,
            RecordingNotice::Stopped {
                recording_id: active.id.clone(),
                reason: reason.as_str(),
            },
        );
    }
    tracing::info!(%meeting, recording = %active.id, reason = reason.as_str(), "recording stopped");
    Stopped {
        id: active.id.clone(),
        stopped_at: at,
    }
}

/// Audits a stop asked by someone (not the automatic ones).
pub async fn audit_stop(
    app: &AppState,
    headers: &HeaderMap,
    actor: Actor,
    account: Option<&str>,
    id: &str,
) {
    record(
        app,
        headers,
        actor,
        account,
        "recording.stop",
        Target::new("recording", id),
    )
    .await;
}
