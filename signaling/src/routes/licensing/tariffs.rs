//! The tariff catalogue: public to read (the portal shows prices), the operator's to change.
//! Archiving stops new purchases only; sold lots keep their terms (4.3).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parley_licensing::{Features, LicensingError, Recording, Tariff, TariffCode, VatMode};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::schemas::TariffDoc;
use super::{amount, bounded_text, operator};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingBody {
    pub storage_quota_mb: u64,
    pub retention_days: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesBody {
    pub max_participants: u32,
    pub max_meeting_minutes: u32,
    #[serde(default)]
    pub recording: Option<RecordingBody>,
    #[serde(default)]
    pub sdk_embedding: bool,
    #[serde(default)]
    pub results_to_recipients: bool,
    #[serde(default)]
    pub screen_share: bool,
}

/// A tariff as the operator defines it; the code is in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TariffBody {
    /// 1 to 200 characters.
    pub name: String,
    /// 1 to 120.
    pub term_months: u32,
    /// Price of one seat for the term, e.g. `"12000.00"`.
    #[schema(value_type = String)]
    pub price_per_seat: Value,
    /// `exempt` (default, licences are VAT-exempt) or `rate20`.
    #[serde(default)]
    pub vat: Option<String>,
    pub features: FeaturesBody,
    #[serde(default)]
    pub trial: bool,
}

/// Sanity ceilings: a typo must not create a meeting for four billion people.
const MAX_PARTICIPANTS: u32 = 10_000;
const MAX_MINUTES: u32 = 7 * 24 * 60;

fn tariff_code(code: &str) -> Result<TariffCode, ApiError> {
    Ok(TariffCode::parse(code)?)
}

/// The catalogue, archived tariffs included (flagged).
#[utoipa::path(get, path = "/api/v1/tariffs", tag = "licensing",
    responses((status = 200, body = Vec<TariffDoc>)))]
pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<Tariff>>, ApiError> {
    Ok(Json(app.licensing.tariffs().await?))
}

#[utoipa::path(get, path = "/api/v1/tariffs/{code}", tag = "licensing",
    params(("code" = String, Path)),
    responses((status = 200, body = TariffDoc), (status = 422, description = "unknown_tariff", body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<Tariff>, ApiError> {
    let code = tariff_code(&code)?;
    app.licensing
        .tariffs()
        .await?
        .into_iter()
        .find(|t| t.code == code)
        .map(Json)
        .ok_or_else(|| {
            LicensingError::UnknownTariff {
                code: code.to_string(),
            }
            .into()
        })
}

/// Creates or replaces a tariff (operator). Replacing changes name and features and keeps the
/// archived flag; price and term are fixed once created (a changed offer is a new code).
#[utoipa::path(put, path = "/api/v1/tariffs/{code}", tag = "licensing",
    params(("code" = String, Path, description = "lowercase letters, digits, - and _")),
    request_body = TariffBody, security(("bearer" = [])),
    responses((status = 200, body = TariffDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(app): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TariffBody>,
) -> Result<Json<Tariff>, ApiError> {
    operator(&app, &headers).await?;
    let code = tariff_code(&code)?;
    let name = bounded_text("name", &body.name, 200)?.to_owned();
    let f = &body.features;
    if f.max_participants == 0 || f.max_participants > MAX_PARTICIPANTS {
        return Err(LicensingError::InvalidRequest {
            field: "max_participants",
            reason: format!("must be between 1 and {MAX_PARTICIPANTS}"),
        }
        .into());
    }
    if f.max_meeting_minutes == 0 || f.max_meeting_minutes > MAX_MINUTES {
        return Err(LicensingError::InvalidRequest {
            field: "max_meeting_minutes",
            reason: format!("must be between 1 and {MAX_MINUTES}"),
        }
        .into());
    }
    let archived = app
        .licensing
        .tariffs()
        .await?
        .iter()
        .any(|t| t.code == code && t.archived);
    let tariff = Tariff {
        code,
        name,
        term_months: body.term_months,
        price_per_seat: amount("price_per_seat", &body.price_per_seat)?,
        vat: body
            .vat
            .as_deref()
            .map(VatMode::parse)
            .transpose()?
            .unwrap_or_default(),
        features: Features {
            max_participants: f.max_participants,
            max_meeting_minutes: f.max_meeting_minutes,
            recording: f.recording.as_ref().map(|r| Recording {
                storage_quota_mb: r.storage_quota_mb,
                retention_days: r.retention_days,
            }),
            sdk_embedding: f.sdk_embedding,
            results_to_recipients: f.results_to_recipients,
            screen_share: f.screen_share,
        },
        trial: body.trial,
        archived,
    };
    tariff.validate()?;
    app.licensing.upsert_tariff(&tariff).await?;
    // Read back: a replaced tariff keeps its price and term once sold (the store's rule), so
    // the answer shows what is in force, not what was asked.
    get(State(app), Path(tariff.code.to_string())).await
}

/// Archives a tariff (operator): no new purchases; sold lots are untouched.
#[utoipa::path(post, path = "/api/v1/tariffs/{code}/archive", tag = "licensing",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Archived"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn archive(
    State(app): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    operator(&app, &headers).await?;
    app.licensing
        .archive_tariff(tariff_code(&code)?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
