//! The meetings live on this node, for the operator: who is in them now and whether they are
//! being recorded. "Live" is what the database says: a meeting not ended with at least one
//! participant session still open (sessions left open by a crash are closed at start).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::page_bounds;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::routes::licensing::operator;
use crate::startup::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// Meetings to skip, default 0.
    pub offset: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveMeetings {
    /// Most recently started first.
    pub items: Vec<LiveMeeting>,
    /// Live meetings in all.
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveMeeting {
    pub id: String,
    pub title: String,
    /// The licensing account hosting it; null for an unlicensed meeting.
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub host_user_id: Option<String>,
    /// Participants in it now (including those reconnecting).
    pub participants: u64,
    /// The tariff's ceiling; null when unlimited.
    pub max_participants: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    /// A recording is running.
    pub recording: bool,
}

#[derive(FromRow)]
struct LiveRow {
    id: String,
    title: String,
    account_id: Option<String>,
    host_user_id: Option<String>,
    max_participants: Option<i64>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    started_at: Option<DateTime<Utc>>,
    participants: i64,
    recording: i64,
}

/// Meetings with someone in them now (operator), most recently started first.
#[utoipa::path(get, path = "/api/v1/operator/meetings", tag = "operator", params(LiveParams),
    security(("bearer" = [])),
    responses((status = 200, body = LiveMeetings), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<LiveParams>,
) -> Result<Json<LiveMeetings>, ApiError> {
    operator(&app, &headers).await?;
    let (limit, offset) = page_bounds(params.limit, params.offset)?;
    let pool = app.store.pool();
    let internal = |e: sqlx::Error| ApiError::Internal(e.into());
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT s.meeting_id) FROM participant_sessions s \
         JOIN meetings m ON m.id = s.meeting_id WHERE s.left_at IS NULL AND m.ended_at IS NULL",
    )
    .fetch_one(pool)
    .await
    .map_err(internal)?;
    let rows: Vec<LiveRow> = sqlx::query_as(
        "SELECT m.id, m.title, m.account_id, m.host_user_id, m.max_participants, m.started_at, \
         COUNT(s.seq) AS participants, \
         CASE WHEN EXISTS (SELECT 1 FROM recordings r \
                           WHERE r.meeting_id = m.id AND r.status = 'recording') \
           THEN 1 ELSE 0 END AS recording \
         FROM meetings m JOIN participant_sessions s ON s.meeting_id = m.id AND s.left_at IS NULL \
         WHERE m.ended_at IS NULL GROUP BY m.seq \
         ORDER BY COALESCE(m.started_at, m.created_at) DESC, m.seq DESC LIMIT $1 OFFSET $2",
    )
    .bind(i64::from(limit))
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(internal)?;
    // One read per account on the page (at most `limit`), not per meeting.
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    for id in rows.iter().filter_map(|r| r.account_id.as_deref()) {
        if names.contains_key(id) {
            continue;
        }
        let name = match Uuid::parse_str(id) {
            Ok(uuid) => app.licensing.account(uuid).await.ok().map(|a| a.name),
            Err(_) => None,
        };
        names.insert(id.to_owned(), name);
    }
    Ok(Json(LiveMeetings {
        total: u64::try_from(total).unwrap_or_default(),
        items: rows
            .into_iter()
            .map(|r| LiveMeeting {
                account_name: r
                    .account_id
                    .as_ref()
                    .and_then(|a| names.get(a).cloned().flatten()),
                id: r.id,
                title: r.title,
                account_id: r.account_id,
                host_user_id: r.host_user_id,
                participants: u64::try_from(r.participants).unwrap_or_default(),
                max_participants: r.max_participants,
                started_at: r.started_at,
                recording: r.recording != 0,
            })
            .collect(),
    }))
}
