//! A meeting's participants: history (its host and overseers, see
//! [`super::meeting_access`]), mute and remove (its host).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use parley_sfu::TrackSource;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meeting_access::identify;
use crate::domain::{ParticipantId, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;
use crate::ws::{HostCommand, HostError};

/// One stay of a participant in the meeting.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantRecord {
    pub participant_id: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    /// `left`, `removed`, `timeout`, `ended`, `shutdown`, `server_restart`, `node_lost` (its node
    /// died and the meeting moved to another).
    pub leave_reason: Option<String>,
    /// Still in the meeting (possibly reconnecting).
    pub present: bool,
}

/// A media source, as in the signaling protocol.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

impl From<Source> for TrackSource {
    fn from(s: Source) -> TrackSource {
        match s {
            Source::Camera => TrackSource::Camera,
            Source::Microphone => TrackSource::Microphone,
            Source::Screen => TrackSource::Screen,
            Source::ScreenAudio => TrackSource::ScreenAudio,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteParticipant {
    pub source: Source,
}

/// Current and past participants, in joining order: the meeting's host (host credential or
/// the hosting user's session), its account's admins and API key, the operator.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/participants", tag = "participants",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<ParticipantRecord>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<ParticipantRecord>>, ApiError> {
    let (id, _, caller) = identify(&app, &headers, &id, None).await?;
    caller.require_overseer()?;
    let rows = app.store.sessions(&id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| ParticipantRecord {
                present: r.left_at.is_none(),
                participant_id: r.participant_id,
                display_name: r.display_name,
                role: Role::parse(&r.role).unwrap_or(Role::Guest),
                joined_at: r.joined_at,
                left_at: r.left_at,
                leave_reason: r.leave_reason,
            })
            .collect(),
    ))
}

fn participant(pid: &str) -> Result<ParticipantId, ApiError> {
    ParticipantId::parse(pid)
        .map_err(|_| ApiError::NotFound("No such participant in the meeting.".into()))
}

fn host_error(e: HostError) -> ApiError {
    ApiError::NotFound(match e {
        HostError::NoSuchParticipant => "No such participant in the meeting.".into(),
        HostError::NotActive => "Nobody is in the meeting.".into(),
    })
}

/// Mutes a participant's source: they get `mute_request`, the SFU stops forwarding it. The
/// meeting's host only (host credential or the hosting user's session).
#[utoipa::path(post, path = "/api/v1/meetings/{id}/participants/{pid}/mute", tag = "participants",
    params(("id" = String, Path), ("pid" = String, Path)), request_body = MuteParticipant,
    security(("bearer" = [])),
    responses((status = 204, description = "Muted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn mute(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MuteParticipant>,
) -> Result<StatusCode, ApiError> {
    let (id, _, caller) = identify(&app, &headers, &id, None).await?;
    caller.require_host()?;
    let target = participant(&pid)?;
    app.hubs
        .host(
            &id,
            HostCommand::Mute {
                target,
                source: req.source.into(),
            },
        )
        .await
        .map_err(host_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a participant: their socket closes with 4000, others see `participant_left`. The
/// meeting's host only (host credential or the hosting user's session).
#[utoipa::path(delete, path = "/api/v1/meetings/{id}/participants/{pid}", tag = "participants",
    params(("id" = String, Path), ("pid" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (id, _, caller) = identify(&app, &headers, &id, None).await?;
    caller.require_host()?;
    let target = participant(&pid)?;
    app.hubs
        .host(&id, HostCommand::Remove { target })
        .await
        .map_err(host_error)?;
    Ok(StatusCode::NO_CONTENT)
}
