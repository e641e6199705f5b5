//! `GET /me`: the signed-in user, their account, their seat and whether they may host now.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use parley_licensing::LicensingError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::users::{Principal, UserView};

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountBrief {
    pub id: Uuid,
    pub name: String,
    /// `active`, `suspended` or `terminated`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: UserView,
    pub account: AccountBrief,
    /// The lot whose seat the user holds.
    pub seat_lot_id: Option<Uuid>,
    /// Whether the user may host a meeting now (seat on an active lot of a usable account).
    pub may_host: bool,
    /// Why not, when `may_host` is false: `no_seat`, `account_suspended`, `account_terminated`.
    pub may_host_refusal: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody),
        (status = 403, description = "Not a user session", body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    let me = Principal::from_headers(&app, &headers)
        .await?
        .require_user()?;
    let account = app.licensing.account(me.account_id).await?;
    let seat = app
        .licensing
        .store()
        .seat_of(me.account_id, &me.user.id)
        .await?;
    let refusal = match app.licensing.may_host(me.account_id, &me.user.id).await {
        Ok(_) => None,
        Err(LicensingError::NoSeat { .. } | LicensingError::NoActiveLicense) => {
            Some("no_seat".to_owned())
        }
        Err(LicensingError::AccountSuspended { .. }) => Some("account_suspended".to_owned()),
        Err(LicensingError::AccountTerminated) => Some("account_terminated".to_owned()),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Me {
        user: UserView::from(&me.user),
        account: AccountBrief {
            id: account.id,
            name: account.name,
            status: account.status.as_str().to_owned(),
        },
        seat_lot_id: seat,
        may_host: refusal.is_none(),
        may_host_refusal: refusal,
    }))
}
