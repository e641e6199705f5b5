//! Accounts: created by the operator (with a first API key), tied to a CRM account, readable by
//! the operator and by the account itself (its key, its admins).
//!
//! API keys are listed without their secrets and revoked at once (every request looks the key
//! up, so a revoked key gets 401 on its next call). The rule: the operator may revoke any key;
//! an account's key or admin may revoke any key of its account, itself included, except the
//! account's last active key, so an account can never lock itself out (it issues a new key
//! first, or asks the operator, who may revoke a leaked last key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use parley_licensing::store::AccountPage;
use parley_licensing::{Account, AccountKind, LotStatus, NewAccount};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schemas::{AccountCreatedDoc, AccountDoc, AccountPageDoc, ApiKeyDoc, ApiKeyInfoDoc};
use super::{account_scope, amount, bounded_text};
use crate::auth::{Caller, IssuedKey, issue_key};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;
use crate::store::{ApiKeyInfo, Revocation};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 1 to 300 characters.
    pub name: String,
    /// `individual`, `sole_proprietor` or `legal_entity`.
    pub kind: String,
    /// 10 digits for a legal entity, 12 for a sole proprietor or individual; check digits verified.
    #[serde(default)]
    pub inn: Option<String>,
    /// Corporate clients must be residents of the Russian Federation.
    #[serde(default)]
    pub resident: bool,
    /// The CRM this account lives in, e.g. `sbercrm`, and its id there.
    pub crm_system: String,
    pub crm_external_id: String,
    /// Postpay agreed with the provider (5.3.4.1).
    #[serde(default)]
    pub postpay_allowed: bool,
    /// This account's card payment ceiling; default the platform's.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub card_limit: Option<Value>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApiKeyView {
    pub key_id: String,
    pub secret: String,
    pub bearer: String,
}

impl From<IssuedKey> for ApiKeyView {
    fn from(k: IssuedKey) -> Self {
        ApiKeyView {
            bearer: k.bearer(),
            key_id: k.key_id,
            secret: k.secret,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AccountCreated {
    pub account: Account,
    pub api_key: ApiKeyView,
}

/// Limits of the CRM link's parts (they appear in paths and documents).
const MAX_CRM_PART: usize = 128;

/// Creates an account (operator) and its first API key; the secret is shown only here.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "licensing", request_body = CreateAccount,
    security(("bearer" = [])),
    responses((status = 201, body = AccountCreatedDoc), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "account_exists for this CRM id", body = ErrorBody),
        (status = 422, description = "invalid_inn, not_resident, invalid_request", body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateAccount>,
) -> Result<(StatusCode, Json<AccountCreated>), ApiError> {
    Caller::from_headers(&app, &headers)
        .await?
        .require_operator()?;
    bounded_text("crm_system", &body.crm_system, MAX_CRM_PART)?;
    bounded_text("crm_external_id", &body.crm_external_id, MAX_CRM_PART)?;
    let address = body
        .address
        .as_deref()
        .map(|a| bounded_text("address", a, 500))
        .transpose()?;
    let mut new = NewAccount::parse(
        &body.name,
        AccountKind::parse(&body.kind)?,
        body.inn.as_deref(),
        body.resident,
        &body.crm_system,
        &body.crm_external_id,
        body.postpay_allowed,
        address,
    )?;
    new.card_limit = body
        .card_limit
        .as_ref()
        .map(|v| amount("card_limit", v))
        .transpose()?;
    let account = app.licensing.create_account(&new).await?;
    let key = issue_key(&app, account.id).await?;
    tracing::info!(account = %account.id, key_id = %key.key_id, "account created");
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            account,
            api_key: key.into(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListAccounts {
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// Accounts to skip, default 0.
    pub offset: Option<u64>,
    /// Only accounts whose name, INN, CRM system or CRM id contains this (any case), or whose id
    /// it is; at most 100 characters.
    pub q: Option<String>,
}

/// The accounts, newest first, a page at a time, with what each holds today (operator).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "licensing", params(ListAccounts),
    security(("bearer" = [])),
    responses((status = 200, body = AccountPageDoc), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "invalid_request: the search is too long", body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ListAccounts>,
) -> Result<Json<AccountPage>, ApiError> {
    Caller::from_headers(&app, &headers)
        .await?
        .require_operator()?;
    let (limit, offset) = crate::routes::operator::page_bounds(params.limit, params.offset)?;
    Ok(Json(
        app.licensing
            .accounts_page(params.q.as_deref(), limit, offset)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}", tag = "licensing",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AccountDoc), (status = 401, body = ErrorBody),
        (status = 404, description = "No such account, or not yours", body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Account>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(app.licensing.account(id).await?))
}

/// Another API key for the account (its key, one of its admins, or the operator).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/api-keys", tag = "licensing",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = ApiKeyDoc), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<ApiKeyView>), ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    app.licensing.account(id).await?;
    let key = issue_key(&app, id).await?;
    tracing::info!(account = %id, key_id = %key.key_id, "API key issued");
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "api_key.issue",
        crate::privacy::Target::new("api_key", &key.key_id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// The account's API keys, revoked ones included (oldest first unless `order=newest`, paged
/// with `limit` and `offset`); secrets are never shown again.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/api-keys", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKeyInfoDoc>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    app.licensing.account(id).await?;
    Ok(Json(
        page.apply(app.store.api_keys(&id.to_string()).await?)?,
    ))
}

/// Largest key id accepted in a path (issued ids are far shorter).
const MAX_KEY_ID: usize = 64;

/// Revokes an API key at once. The operator may revoke any key; an account's key or admin any
/// key of the account except the last active one (`last_active_key`): issue another key first.
/// Revoking a key already revoked answers as the first time did.
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/api-keys/{key_id}", tag = "licensing",
    params(("account" = String, Path), ("key_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Revoked (now or before)", body = ApiKeyInfoDoc),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such key of this account", body = ErrorBody),
        (status = 422, description = "last_active_key: an account keeps one active key", body = ErrorBody)))]
pub async fn revoke_key(
    State(app): State<AppState>,
    Path((account, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<ApiKeyInfo>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    if key_id.len() > MAX_KEY_ID {
        return Err(ApiError::NotFound(
            "No such API key for this account.".into(),
        ));
    }
    let keep_one_active = caller != Caller::Operator;
    match app
        .store
        .revoke_api_key(&id.to_string(), &key_id, keep_one_active)
        .await?
    {
        Revocation::Revoked(k) => {
            tracing::info!(account = %id, key_id = %k.key_id, by_operator = !keep_one_active, "API key revoked");
            crate::privacy::record(
                &app,
                &headers,
                crate::privacy::Actor::from_caller(&caller),
                Some(&id.to_string()),
                "api_key.revoke",
                crate::privacy::Target::new("api_key", &k.key_id),
            )
            .await;
            Ok(Json(k))
        }
        Revocation::AlreadyRevoked(k) => Ok(Json(k)),
        Revocation::NotFound => Err(ApiError::NotFound(
            "No such API key for this account.".into(),
        )),
        Revocation::LastActiveKey => Err(ApiError::invalid(
            "last_active_key",
            "This is the account's last active API key; issue another key before revoking it.",
        )),
    }
}

/// Finds the account of a CRM id; a foreign account is "not found" to an account key.
async fn lookup_crm(
    app: &AppState,
    headers: &HeaderMap,
    system: &str,
    external_id: &str,
) -> Result<Account, ApiError> {
    let caller = Caller::from_headers(app, headers).await?;
    if caller == Caller::Anonymous {
        caller.require_account(Uuid::nil())?;
    }
    bounded_text("crm_system", system, MAX_CRM_PART)?;
    bounded_text("crm_external_id", external_id, MAX_CRM_PART)?;
    let account = app.licensing.account_by_crm(system, external_id).await?;
    caller.require_account(account.id)?;
    Ok(account)
}

#[utoipa::path(get, path = "/api/v1/accounts/by-crm/{system}/{external_id}", tag = "licensing",
    params(("system" = String, Path), ("external_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AccountDoc), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn by_crm(
    State(app): State<AppState>,
    Path((system, external_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Account>, ApiError> {
    let account = lookup_crm(&app, &headers, &system, &external_id).await?;
    Ok(Json(app.licensing.account(account.id).await?))
}

/// The license status of a CRM account, for a deal card or the CRM connector.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseStatus {
    pub account_id: Uuid,
    /// `active`, `suspended` or `terminated`.
    pub account_status: String,
    /// The ground of a suspension.
    pub suspension_reason: Option<String>,
    /// An active lot is valid today and the account is usable.
    pub licensed: bool,
    /// Seats on lots valid today.
    pub seats: u32,
    pub seats_assigned: u32,
    /// The latest end (exclusive) of the lots valid today.
    #[schema(value_type = Option<String>)]
    pub valid_until: Option<NaiveDate>,
    /// Lots valid today.
    pub lots: Vec<LicenseLot>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseLot {
    pub id: Uuid,
    pub tariff: String,
    pub seats: u32,
    pub seats_assigned: u32,
    #[schema(value_type = String)]
    pub starts_on: NaiveDate,
    #[schema(value_type = String)]
    pub ends_on: NaiveDate,
}

#[utoipa::path(get, path = "/api/v1/accounts/by-crm/{system}/{external_id}/license", tag = "licensing",
    params(("system" = String, Path), ("external_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = LicenseStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn license_status(
    State(app): State<AppState>,
    Path((system, external_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<LicenseStatus>, ApiError> {
    let account = lookup_crm(&app, &headers, &system, &external_id).await?;
    let account = app.licensing.account(account.id).await?;
    let today = app.licensing.today();
    let seats = app.licensing.seats(account.id).await?;
    let lots: Vec<LicenseLot> = app
        .licensing
        .lots(account.id)
        .await?
        .into_iter()
        .filter(|l| l.status == LotStatus::Active && l.is_valid_on(today))
        .map(|l| LicenseLot {
            id: l.id,
            tariff: l.tariff.to_string(),
            seats: l.seats.get(),
            seats_assigned: u32::try_from(seats.iter().filter(|s| s.lot_id == l.id).count())
                .unwrap_or(u32::MAX),
            starts_on: l.starts_on,
            ends_on: l.ends_on,
        })
        .collect();
    let usable = account.status.check_usable().is_ok();
    let reason = match &account.status {
        parley_licensing::AccountStatus::Suspended { reason } => Some(reason.clone()),
        _ => None,
    };
    Ok(Json(LicenseStatus {
        account_id: account.id,
        account_status: account.status.as_str().to_owned(),
        suspension_reason: reason,
        licensed: usable && !lots.is_empty(),
        seats: lots.iter().map(|l| l.seats).sum(),
        seats_assigned: lots.iter().map(|l| l.seats_assigned).sum(),
        valid_until: lots.iter().map(|l| l.ends_on).max(),
        lots,
    }))
}
