//! Promotions (operator only: codes are not for everyone's eyes).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::discount::{DiscountKind, Promotion};
use parley_licensing::{LicensingError, OrderType, TariffCode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schemas::PromotionDoc;
use super::{bounded_text, operator, opt_date};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionBody {
    pub name: String,
    /// A code the client must enter; absent applies automatically.
    #[serde(default)]
    pub code: Option<String>,
    /// See `PromotionDoc.discount`.
    #[schema(value_type = Object)]
    pub discount: Value,
    #[serde(default)]
    pub combinable: bool,
    #[serde(default)]
    pub priority: i32,
    /// `YYYY-MM-DD`, inclusive; absent is permanent on that side.
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    /// Tariff codes; empty applies to all.
    #[serde(default)]
    pub tariffs: Vec<String>,
    /// Order types; empty applies to all.
    #[serde(default)]
    pub order_types: Vec<String>,
    #[serde(default)]
    pub total_limit: Option<u32>,
    #[serde(default)]
    pub per_account_limit: Option<u32>,
}

/// Caps on list fields of one promotion (the body limit bounds bytes, this bounds work).
const MAX_LIST: usize = 100;

#[utoipa::path(get, path = "/api/v1/promotions", tag = "licensing", security(("bearer" = [])),
    responses((status = 200, body = Vec<PromotionDoc>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Promotion>>, ApiError> {
    operator(&app, &headers).await?;
    Ok(Json(app.licensing.promotions().await?))
}

#[utoipa::path(post, path = "/api/v1/promotions", tag = "licensing", request_body = PromotionBody,
    security(("bearer" = [])),
    responses((status = 201, body = PromotionDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PromotionBody>,
) -> Result<(StatusCode, Json<Promotion>), ApiError> {
    operator(&app, &headers).await?;
    let name = bounded_text("name", &body.name, 200)?.to_owned();
    if body.tariffs.len() > MAX_LIST || body.order_types.len() > MAX_LIST {
        return Err(LicensingError::InvalidRequest {
            field: "tariffs",
            reason: format!("at most {MAX_LIST} entries"),
        }
        .into());
    }
    let discount: DiscountKind =
        serde_json::from_value(body.discount).map_err(|e| LicensingError::InvalidRequest {
            field: "discount",
            reason: e.to_string(),
        })?;
    let promotion = Promotion {
        id: Uuid::new_v4(),
        name,
        code: body.code,
        discount,
        combinable: body.combinable,
        priority: body.priority,
        valid_from: opt_date(body.valid_from.as_deref())?,
        valid_until: opt_date(body.valid_until.as_deref())?,
        tariffs: body
            .tariffs
            .iter()
            .map(|t| TariffCode::parse(t))
            .collect::<Result<_, _>>()?,
        order_types: body
            .order_types
            .iter()
            .map(|t| t.parse::<OrderType>())
            .collect::<Result<_, _>>()?,
        total_limit: body.total_limit,
        per_account_limit: body.per_account_limit,
        active: true,
    };
    promotion.validate()?;
    app.licensing.create_promotion(&promotion).await?;
    Ok((StatusCode::CREATED, Json(promotion)))
}
