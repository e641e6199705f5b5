//! The monthly inactive-seat review (licensing spec 6.2) over HTTP: the seats of an account
//! unused for 30 days or more, computed live on the licensing clock's Moscow date, and one call
//! to reclaim those the admin picked (or all of them). A reclaim happens only while the seat is
//! still inactive, so a user who hosted after the admin read the list keeps their seat and is
//! reported as skipped. The same managers as the account's users: its admins, its API key, the
//! operator.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::NaiveDate;
use parley_licensing::store::INACTIVE_DAYS;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{manager, unprocessable};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;
use crate::users::store::UserRow;

/// Users named in one reclaim: more than any account's seats in one review page.
const MAX_USER_IDS: usize = 1000;
/// Seat holder ids are the licensing store's user ids (1 to 200 characters).
const MAX_USER_ID: usize = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatReview {
    pub account_id: Uuid,
    /// The day (Moscow) the review is computed for.
    #[schema(value_type = String, format = Date)]
    pub as_of: NaiveDate,
    /// Seats unused this many days or more are listed.
    pub inactive_days: i64,
    /// Longest unused first.
    pub seats: Vec<InactiveSeat>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InactiveSeat {
    pub user_id: String,
    /// Null when the seat holder is not a Parley user of the account (a seat given through the
    /// licensing API to a CRM user id).
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// `account_admin` or `member`.
    pub role: Option<String>,
    /// The lot (license) the seat is on.
    pub license_id: Uuid,
    /// The last day the user hosted; null if never.
    #[schema(value_type = Option<String>, format = Date)]
    pub last_active_on: Option<NaiveDate>,
    #[schema(value_type = String, format = Date)]
    pub assigned_on: NaiveDate,
    /// Days since the last activity (or, never active, since the assignment).
    pub days_inactive: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReclaimInactive {
    /// The users whose seats to reclaim (from the review), at most 1000...
    #[serde(default)]
    pub user_ids: Option<Vec<String>>,
    /// ...or `true` for every seat inactive now.
    #[serde(default)]
    pub all: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReclaimReport {
    pub reclaimed: Vec<ReclaimedSeat>,
    pub skipped: Vec<SkippedSeat>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReclaimedSeat {
    pub user_id: String,
    pub license_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedSeat {
    pub user_id: String,
    /// `active` (used within the last 30 days, e.g. since the review was read) or `no_seat`.
    pub reason: String,
}

/// The account's seats unused for 30 days or more, with their holders.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/seat-review", tag = "users",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = SeatReview), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn report(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SeatReview>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    // The operator may name any account: it must exist.
    app.licensing.account(account_id).await?;
    let today = app.licensing.today();
    let seats = app.licensing.inactive_seats(account_id).await?;
    let users: HashMap<String, UserRow> = app
        .users
        .store
        .of_account(&account_id.to_string())
        .await?
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    let mut seats: Vec<InactiveSeat> = seats
        .into_iter()
        .map(|s| {
            let since = s.last_active_on.unwrap_or(s.assigned_on);
            let user = users.get(&s.user_id);
            InactiveSeat {
                display_name: user.map(|u| u.display_name.clone()),
                email: user.map(|u| u.email.clone()),
                role: user.map(|u| u.role().as_str().to_owned()),
                user_id: s.user_id,
                license_id: s.lot_id,
                last_active_on: s.last_active_on,
                assigned_on: s.assigned_on,
                days_inactive: (today - since).num_days(),
            }
        })
        .collect();
    seats.sort_by(|a, b| {
        b.days_inactive
            .cmp(&a.days_inactive)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    Ok(Json(SeatReview {
        account_id,
        as_of: today,
        inactive_days: INACTIVE_DAYS,
        seats,
    }))
}

/// The users a reclaim names, checked: a non-empty list of distinct ids, or every seat that is
/// inactive now.
async fn selection(
    app: &AppState,
    account_id: Uuid,
    body: ReclaimInactive,
) -> Result<Vec<String>, ApiError> {
    let bad = || {
        unprocessable(
            "invalid_selection",
            format!(
                "Give either `user_ids` (1 to {MAX_USER_IDS} user ids) or `\"all\": true`, not both."
            ),
        )
    };
    match (body.user_ids, body.all) {
        (Some(ids), None | Some(false)) => {
            if ids.is_empty() || ids.len() > MAX_USER_IDS {
                return Err(bad());
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if id.is_empty() || id.len() > MAX_USER_ID {
                    return Err(unprocessable(
                        "invalid_user_id",
                        format!("Each user id has 1 to {MAX_USER_ID} characters."),
                    ));
                }
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Ok(out)
        }
        (None, Some(true)) => Ok(app
            .licensing
            .inactive_seats(account_id)
            .await?
            .into_iter()
            .map(|s| s.user_id)
            .collect()),
        _ => Err(bad()),
    }
}

/// Reclaim the seats of the review: those named (or all), each only if it is still unused for
/// 30 days; the others are reported as skipped. Every reclaim goes to the audit log.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/seat-review/reclaim", tag = "users",
    params(("account" = String, Path)), request_body = ReclaimInactive, security(("bearer" = [])),
    responses((status = 200, body = ReclaimReport), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_selection, invalid_user_id", body = ErrorBody)))]
pub async fn reclaim(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ReclaimInactive>,
) -> Result<Json<ReclaimReport>, ApiError> {
    let (by, account_id) = manager(&app, &headers, &account).await?;
    app.licensing.account(account_id).await?;
    let users = selection(&app, account_id, body).await?;
    let mut report = ReclaimReport {
        reclaimed: Vec::new(),
        skipped: Vec::new(),
    };
    for user_id in users {
        match app
            .licensing
            .reclaim_inactive_seat(account_id, &user_id)
            .await?
        {
            Some(lot) => {
                tracing::info!(account = %account_id, user = %user_id, lot = %lot, "inactive seat reclaimed");
                crate::privacy::record(
                    &app,
                    &headers,
                    crate::privacy::Actor::from_manager(&by, account_id),
                    Some(&account_id.to_string()),
                    "seat.reclaim",
                    crate::privacy::Target::new("user", &user_id),
                )
                .await;
                report.reclaimed.push(ReclaimedSeat {
                    user_id,
                    license_id: lot,
                });
            }
            None => {
                let held = app
                    .licensing
                    .store()
                    .seat_of(account_id, &user_id)
                    .await?
                    .is_some();
                report.skipped.push(SkippedSeat {
                    user_id,
                    reason: if held { "active" } else { "no_seat" }.into(),
                });
            }
        }
    }
    Ok(Json(report))
}
