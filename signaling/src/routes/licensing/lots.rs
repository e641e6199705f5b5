//! Lots (seat licenses) and the seats assigned to users. Assignment is the account's own
//! business (its key or its admins) or the operator's; a lot of another account is "not found".

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::Lot;
use parley_licensing::store::SeatAssignment;
use serde::Deserialize;
use utoipa::ToSchema;

use super::schemas::{LotDoc, SeatDoc};
use super::{account_scope, bounded_text, path_id};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;

/// User ids come from the account's own directory (the CRM); bounded because they are stored
/// and appear in meeting records.
pub const MAX_USER_ID: usize = 128;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSeat {
    /// The user's id in the account's directory, 1 to 128 characters.
    pub user_id: String,
}

/// Lots with their status as of today.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/lots", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<LotDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<Lot>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(page.apply(app.licensing.lots(id).await?)?))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/lots/{lot}", tag = "licensing",
    params(("account" = String, Path), ("lot" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = LotDoc), (status = 401, body = ErrorBody),
        (status = 404, description = "No such lot on this account", body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path((account, lot)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Lot>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    let lot_id = path_id(&lot, "license")?;
    let mut lot = app.licensing.store().lot(id, lot_id).await?;
    lot.status = lot.status_on(app.licensing.today());
    Ok(Json(lot))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/seats", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<SeatDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_seats(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<SeatAssignment>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(page.apply(app.licensing.seats(id).await?)?))
}

/// Gives a user a seat of the lot (one seat per user per account).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/lots/{lot}/seats", tag = "licensing",
    params(("account" = String, Path), ("lot" = String, Path)), request_body = AssignSeat,
    security(("bearer" = [])),
    responses((status = 201, body = SeatDoc), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "no_free_seat, seat_already_assigned, license_not_active", body = ErrorBody)))]
pub async fn assign_seat(
    State(app): State<AppState>,
    Path((account, lot)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AssignSeat>,
) -> Result<(StatusCode, Json<SeatAssignment>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let lot_id = path_id(&lot, "license")?;
    let user = bounded_text("user_id", &body.user_id, MAX_USER_ID)?;
    let seat = app.licensing.assign_seat(id, lot_id, user).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "seat.assign",
        crate::privacy::Target::new("user", user),
    )
    .await;
    Ok((StatusCode::CREATED, Json(seat)))
}

/// Takes a user's seat back (e.g. after the monthly inactivity review).
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/seats/{user_id}", tag = "licensing",
    params(("account" = String, Path), ("user_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Reclaimed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reclaim_seat(
    State(app): State<AppState>,
    Path((account, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let user = bounded_text("user_id", &user_id, MAX_USER_ID)?;
    app.licensing.reclaim_seat(id, user).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "seat.reclaim",
        crate::privacy::Target::new("user", user),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
