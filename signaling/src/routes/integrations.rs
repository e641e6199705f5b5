//! CRM connection, customer webhooks and the outbox over HTTP, and the inbound endpoint a
//! generic CRM calls to start a meeting for a deal.
//!
//! The account endpoints take an account admin's session, the account's API key or the
//! operator's token (see [`crate::routes::users::manager`]): another account's admin or key gets
//! 404, a member 403, nobody 401. Secrets are accepted but never returned (masked), except the
//! webhook endpoint secret we generate, shown once at creation.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::crm::SecretString;
use crate::crm::amocrm::{AmoCrmConfig, AmoTokens};
use crate::crm::webhook::VerifyError;
use crate::domain::{Email, MeetingTitle};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::integrations::connections::{
    Connection, Kind, NewConnection, PublicSettings, SecretSettings, masked_secrets,
};
use crate::integrations::{allowed_url, endpoints};
use crate::outbox::webhooks::EventType;
use crate::outbox::{OutboxError, Status};
use crate::routes::meetings::{MeetingCreated, create_with_license};
use crate::routes::users::manager;
use crate::startup::AppState;
use crate::store::MeetingLicense;

/// Endpoints per account: plenty for real integrations, few enough to bound fan-out per event.
const MAX_ENDPOINTS: usize = 20;
/// Messages listed per request (the default page).
const MAX_LISTED: u32 = 100;
/// Contacts accepted per inbound meeting request.
const MAX_CONTACTS: usize = 50;
const MAX_TEXT: usize = 2048;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/accounts/{account}/crm",
            put(put_crm).get(get_crm).delete(delete_crm),
        )
        .route(
            "/accounts/{account}/webhooks",
            post(create_webhook).get(list_webhooks),
        )
        .route(
            "/accounts/{account}/webhooks/{endpoint}",
            delete(delete_webhook),
        )
        .route("/accounts/{account}/outbox", get(list_outbox))
        .route(
            "/accounts/{account}/outbox/{message}/retry",
            post(retry_outbox),
        )
        .route("/crm/webhook/{account}/meetings", post(inbound_meeting))
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(code, message)
}

fn text(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.trim().is_empty() || s.len() > MAX_TEXT => Err(invalid(
            "invalid_settings",
            format!("{field} must be 1 to {MAX_TEXT} characters."),
        )),
        other => Ok(other.map(|s| s.trim().to_owned())),
    }
}

fn url_setting(field: &str, v: &str) -> Result<String, ApiError> {
    if v.len() > MAX_TEXT {
        return Err(invalid("invalid_url", format!("{field} is too long.")));
    }
    allowed_url(v)
        .map(|u| u.to_string().trim_end_matches('/').to_owned())
        .map_err(|e| invalid("invalid_url", format!("{field} {e}.")))
}

/// `scheme://host[:port]` only, https (plain http on loopback), no wildcard: it becomes the
/// deal card's CSP `frame-ancestors` source, so it must never widen that.
fn origin(v: &str) -> Result<String, ApiError> {
    crate::card::normalise_origin(v).ok_or_else(|| {
        invalid(
            "invalid_origin",
            "frame_origin must be an origin such as https://example.amocrm.ru (https; no path, \
             no wildcard).",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// CRM connection

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCrm {
    /// `amocrm`, `bitrix24` or `webhook`.
    pub kind: String,
    /// By kind. amoCRM: `subdomain` or `base_url`, `client_id`, `client_secret`,
    /// `redirect_uri`, `access_token`, `refresh_token`, `expires_at`?. Bitrix24: `webhook_url`,
    /// `default_responsible_id`?. Webhook: `url`, `secret` (16+ characters).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// The CRM's web origin (`https://host`), the deal card's only frame ancestor. Absent:
    /// amoCRM's account address (`https://{subdomain}.amocrm.ru`), Bitrix24's portal; a
    /// generic webhook CRM has none until given (its card cannot be framed without one).
    #[serde(default)]
    pub frame_origin: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmoInput {
    #[serde(default)]
    subdomain: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: String,
    access_token: SecretString,
    refresh_token: SecretString,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BitrixInput {
    webhook_url: SecretString,
    #[serde(default)]
    default_responsible_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookInput {
    url: String,
    secret: SecretString,
}

fn settings_of<T: serde::de::DeserializeOwned>(v: Value, kind: &str) -> Result<T, ApiError> {
    // The serde message names fields, never values: safe to echo even for secrets.
    serde_json::from_value(v).map_err(|e| {
        invalid(
            "invalid_settings",
            format!(
                "settings for {kind}: {}",
                e.to_string().chars().take(200).collect::<String>()
            ),
        )
    })
}

fn secret(field: &str, s: &SecretString, min: usize) -> Result<(), ApiError> {
    let n = s.expose().chars().count();
    if n < min || n > MAX_TEXT || s.expose().chars().any(char::is_control) {
        return Err(invalid(
            "invalid_settings",
            format!("{field} must be {min} to {MAX_TEXT} printable characters."),
        ));
    }
    Ok(())
}

fn parse_connection(body: PutCrm) -> Result<NewConnection, ApiError> {
    let kind = Kind::parse(&body.kind)
        .ok_or_else(|| invalid("invalid_kind", "kind must be amocrm, bitrix24 or webhook."))?;
    let frame_origin = body.frame_origin.as_deref().map(origin).transpose()?;
    let mut settings = PublicSettings::default();
    let mut secrets = SecretSettings::default();
    let mut tokens = None;
    match kind {
        Kind::Amocrm => {
            let a: AmoInput = settings_of(body.settings, "amocrm")?;
            let base = match (a.subdomain, a.base_url) {
                (Some(s), None) => {
                    let ok = !s.is_empty()
                        && s.len() <= 63
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !ok {
                        return Err(invalid("invalid_settings", "subdomain is not valid."));
                    }
                    AmoCrmConfig::base_url_for(&s.to_ascii_lowercase())
                }
                (None, Some(u)) => url_setting("base_url", &u)?,
                _ => {
                    return Err(invalid(
                        "invalid_settings",
                        "give either subdomain or base_url.",
                    ));
                }
            };
            settings.base_url = Some(base);
            settings.client_id = text("client_id", Some(a.client_id))?;
            settings.redirect_uri = Some(url_setting("redirect_uri", &a.redirect_uri)?);
            secret("client_secret", &a.client_secret, 1)?;
            secret("access_token", &a.access_token, 1)?;
            secret("refresh_token", &a.refresh_token, 1)?;
            secrets.client_secret = Some(a.client_secret);
            tokens = Some(AmoTokens {
                access_token: a.access_token,
                refresh_token: a.refresh_token,
                expires_at: a.expires_at,
            });
        }
        Kind::Bitrix24 => {
            let b: BitrixInput = settings_of(body.settings, "bitrix24")?;
            let u = allowed_url(b.webhook_url.expose())
                .map_err(|e| invalid("invalid_url", format!("webhook_url {e}.")))?;
            if !u.path().starts_with("/rest/") {
                return Err(invalid(
                    "invalid_url",
                    "webhook_url must be a Bitrix24 incoming webhook: https://portal/rest/{user}/{code}/",
                ));
            }
            settings.portal = Some(u.origin().ascii_serialization());
            settings.default_responsible_id =
                text("default_responsible_id", b.default_responsible_id)?;
            secrets.webhook_url = Some(b.webhook_url);
        }
        Kind::Webhook => {
            let w: WebhookInput = settings_of(body.settings, "webhook")?;
            settings.url = Some(url_setting("url", &w.url)?);
            secret("secret", &w.secret, 16)?;
            secrets.webhook_secret = Some(w.secret);
        }
    }
    Ok(NewConnection {
        kind,
        settings,
        secrets,
        tokens,
        frame_origin,
    })
}

/// The connection as the API shows it: no secret, only which are set.
#[derive(Serialize, ToSchema)]
pub struct CrmView {
    /// Names outbox messages of this connection (`destination`).
    pub connection_id: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Which secrets are stored, masked.
    #[schema(value_type = Object)]
    pub secrets: Value,
    /// The CRM's web origin that frames the deal card: as given, else derived (see `PutCrm`).
    pub frame_origin: Option<String>,
    /// `connected` or `error` (the last CRM call failed).
    pub status: String,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Connection> for CrmView {
    fn from(c: Connection) -> Self {
        CrmView {
            status: c.status().into(),
            connection_id: c.id,
            kind: c.kind.as_str().into(),
            settings: serde_json::to_value(&c.settings).unwrap_or(Value::Null),
            secrets: masked_secrets(&c.secrets),
            frame_origin: c.frame_origin,
            last_error: c.last_error,
            last_error_at: c.last_error_at,
            last_success_at: c.last_success_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn no_connection() -> ApiError {
    ApiError::NotFound("This account has no CRM connection.".into())
}

/// Connect the account's CRM (replaces any previous connection).
#[utoipa::path(put, path = "/api/v1/accounts/{account}/crm", tag = "integrations",
    params(("account" = String, Path)), request_body = PutCrm, security(("bearer" = [])),
    responses((status = 200, body = CrmView), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_kind, invalid_settings, invalid_url, invalid_origin", body = ErrorBody)))]
pub async fn put_crm(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutCrm>,
) -> Result<Json<CrmView>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    // The operator may name any account: it must exist.
    app.licensing.account(account_id).await?;
    let new = parse_connection(body)?;
    let kind = new.kind;
    let c = app
        .integrations
        .connections
        .put(&account_id.to_string(), new)
        .await?;
    tracing::info!(account = %account_id, kind = kind.as_str(), connection = %c.id, "CRM connected");
    Ok(Json(c.into()))
}

/// The account's CRM connection: kind, settings without secrets, status and last error.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/crm", tag = "integrations",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CrmView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_crm(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CrmView>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    let c = app
        .integrations
        .connections
        .for_account(&account_id.to_string())
        .await?
        .ok_or_else(no_connection)?;
    Ok(Json(c.into()))
}

/// Disconnect the account's CRM. Messages waiting for it fail (visible in the outbox).
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/crm", tag = "integrations",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_crm(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    if !app
        .integrations
        .connections
        .delete(&account_id.to_string())
        .await?
    {
        return Err(no_connection());
    }
    tracing::info!(account = %account_id, "CRM disconnected");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Customer webhooks

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (plain http only on loopback).
    pub url: String,
    /// Event types, e.g. `["meeting.ended", "participant.joined"]`.
    #[schema(value_type = Vec<String>)]
    pub events: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&endpoints::Endpoint> for WebhookView {
    fn from(e: &endpoints::Endpoint) -> Self {
        WebhookView {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.iter().map(|t| t.as_str().to_owned()).collect(),
            created_at: e.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub endpoint: WebhookView,
    /// HMAC-SHA256 key of `X-Parley-Signature`. Shown only here.
    pub secret: String,
}

/// Register a customer webhook endpoint. Deliveries are signed like the generic CRM webhook.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/webhooks", tag = "integrations",
    params(("account" = String, Path)), request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, body = WebhookCreated), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "too_many_endpoints", body = ErrorBody),
        (status = 422, description = "invalid_url, invalid_events", body = ErrorBody)))]
pub async fn create_webhook(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    app.licensing.account(account_id).await?;
    let url = url_setting("url", &body.url)?;
    let bad_events = || {
        let names: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        invalid(
            "invalid_events",
            format!("events must be a non-empty list of: {}.", names.join(", ")),
        )
    };
    let mut events: Vec<EventType> = Vec::new();
    for v in body.events {
        let e: EventType = serde_json::from_value(v).map_err(|_| bad_events())?;
        if !events.contains(&e) {
            events.push(e);
        }
    }
    if events.is_empty() {
        return Err(bad_events());
    }
    let pool = app.store.pool();
    let account = account_id.to_string();
    if endpoints::list(pool, &account).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict {
            code: "too_many_endpoints",
            message: format!("An account may register at most {MAX_ENDPOINTS} endpoints."),
        });
    }
    let (e, secret) =
        endpoints::insert(pool, &app.integrations.cipher, &account, &url, &events).await?;
    tracing::info!(account = %account_id, endpoint = %e.id, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            endpoint: (&e).into(),
            secret: secret.expose().to_owned(),
        }),
    ))
}

/// The account's webhook endpoints, oldest first unless `order=newest`, paged with `limit` and
/// `offset`.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/webhooks", tag = "integrations",
    params(("account" = String, Path), crate::routes::licensing::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<WebhookView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_webhooks(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<crate::routes::licensing::ListPage>,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    let list = page.apply(endpoints::list(app.store.pool(), &account_id.to_string()).await?)?;
    Ok(Json(list.iter().map(WebhookView::from).collect()))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{account}/webhooks/{endpoint}", tag = "integrations",
    params(("account" = String, Path), ("endpoint" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(app): State<AppState>,
    Path((account, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    if !endpoints::delete(app.store.pool(), &account_id.to_string(), &endpoint).await? {
        return Err(ApiError::NotFound("No such webhook endpoint.".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Outbox

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    /// `pending`, `delivered`, `failed` (default) or `all`.
    pub status: Option<String>,
    /// 1 to 100, default 100.
    pub limit: Option<u32>,
    /// Messages to skip (newest first), default 0: the next page is `offset + limit`.
    pub offset: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: String,
    pub http_status: Option<u16>,
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxMessageView {
    pub id: String,
    /// `customer_webhook`, `crm_note`, `crm_task` or `email`.
    pub kind: String,
    /// The webhook endpoint or CRM connection id; `mail_relay` for an email.
    pub destination: String,
    /// Who receives it, masked: a webhook endpoint's `scheme://host[:port]` (its path may hold
    /// a token, so it shows as `/…`), the CRM's kind and address, an email's masked address.
    pub recipient: Option<String>,
    pub status: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// What is sent. For an email only `purpose` (`invitation`, `password_reset`,
    /// `meeting_summary`, `seat_review`), `to` (masked) and `subject`: never the body.
    #[schema(value_type = Object)]
    pub payload: Value,
    pub attempt_log: Vec<AttemptView>,
}

/// Ids of the account's messages: those it owns (its emails) and those addressed to its webhook
/// endpoints or CRM connections (deleted ones included, which is why those rows are only
/// soft-deleted).
async fn account_message_ids(
    app: &AppState,
    account: &str,
    status: Option<Status>,
    id: Option<&str>,
    (limit, offset): (u32, u32),
) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM outbox_messages WHERE \
         (account_id = $1 \
          OR destination IN (SELECT id FROM webhook_endpoints WHERE account_id = $1) \
          OR destination IN (SELECT id FROM crm_connections WHERE account_id = $1)) \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id = $3) \
         ORDER BY seq DESC LIMIT $4 OFFSET $5",
    )
    .bind(account)
    .bind(status.map(Status::as_str))
    .bind(id)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(app.store.pool())
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

fn outbox_error(e: OutboxError) -> ApiError {
    match e {
        OutboxError::NotFound(_) => ApiError::NotFound("No such outbox message.".into()),
        OutboxError::NotRetryable { status, .. } => ApiError::Conflict {
            code: "not_retryable",
            message: format!(
                "The message is {}; only failed messages can be retried.",
                status.as_str()
            ),
        },
        OutboxError::Storage(s) => ApiError::Internal(anyhow::anyhow!("outbox: {s}")),
    }
}

/// `scheme://host[:port]`, with `/…` when the URL had more (a path or query may hold a token).
fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let origin = u.origin().ascii_serialization();
            let more = (u.path() != "/" && !u.path().is_empty()) || u.query().is_some();
            if more {
                format!("{origin}/…")
            } else {
                origin
            }
        }
        Err(_) => "[hidden]".into(),
    }
}

/// The masked recipient of a message (see [`OutboxMessageView::recipient`]); deleted endpoints
/// and connections included, since their failed messages stay listed.
async fn recipient(
    app: &AppState,
    kind: &str,
    destination: &str,
    payload: &Value,
) -> sqlx::Result<Option<String>> {
    if kind == crate::outbox::email::EMAIL {
        return Ok(payload.get("to").and_then(Value::as_str).map(str::to_owned));
    }
    let pool = app.store.pool();
    if let Some((url,)) =
        sqlx::query_as::<_, (String,)>("SELECT url FROM webhook_endpoints WHERE id = $1")
            .bind(destination)
            .fetch_optional(pool)
            .await?
    {
        return Ok(Some(masked_url(&url)));
    }
    let crm: Option<(String, String)> =
        sqlx::query_as("SELECT kind, settings FROM crm_connections WHERE id = $1")
            .bind(destination)
            .fetch_optional(pool)
            .await?;
    Ok(crm.map(|(kind, settings)| {
        let settings: Value = serde_json::from_str(&settings).unwrap_or(Value::Null);
        let address = ["base_url", "portal", "url"]
            .iter()
            .find_map(|k| settings.get(*k).and_then(Value::as_str))
            .map(masked_url);
        match address {
            Some(a) => format!("{kind} {a}"),
            None => kind,
        }
    }))
}

async fn view(app: &AppState, id: &str) -> Result<Option<OutboxMessageView>, ApiError> {
    let Some(m) = app.outbox.get(id).await.map_err(outbox_error)? else {
        return Ok(None);
    };
    let log = app.outbox.attempts(id).await.map_err(outbox_error)?;
    // An email's body may hold a one-time link meant for its recipient alone.
    let payload = if m.kind == crate::outbox::email::EMAIL {
        crate::outbox::email::public_payload(&m.payload)
    } else {
        m.payload
    };
    let recipient = recipient(app, &m.kind, &m.destination, &payload).await?;
    Ok(Some(OutboxMessageView {
        id: m.id,
        kind: m.kind,
        destination: m.destination,
        recipient,
        status: m.status.as_str().into(),
        attempts: m.attempts,
        max_attempts: m.max_attempts,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error,
        created_at: m.created_at,
        delivered_at: m.delivered_at,
        payload,
        attempt_log: log
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                at: a.at,
                outcome: a.outcome.as_str().into(),
                http_status: a.http_status,
                detail: a.detail,
            })
            .collect(),
    }))
}

/// The account's outbox messages (newest first, 100 a page) with their delivery logs: its
/// webhooks, CRM writes and emails (invitations, its users' password resets, the summaries of
/// its meetings, seat reviews; summaries of meetings of no account belong to no outbox).
#[utoipa::path(get, path = "/api/v1/accounts/{account}/outbox", tag = "integrations",
    params(("account" = String, Path), OutboxParams), security(("bearer" = [])),
    responses((status = 200, body = Vec<OutboxMessageView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_outbox(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<OutboxParams>,
) -> Result<Json<Vec<OutboxMessageView>>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    let status = match params.status.as_deref() {
        None => Some(Status::Failed),
        Some("all") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "status must be pending, delivered, failed or all.".into(),
        })?),
    };
    let limit = params.limit.unwrap_or(MAX_LISTED);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!("limit must be between 1 and {MAX_LISTED}."),
        });
    }
    let page = (limit, params.offset.unwrap_or(0));
    let ids = account_message_ids(&app, &account_id.to_string(), status, None, page).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = view(&app, &id).await? {
            out.push(v);
        }
    }
    Ok(Json(out))
}

/// Put a failed message back with a fresh budget of attempts.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/outbox/{message}/retry", tag = "integrations",
    params(("account" = String, Path), ("message" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OutboxMessageView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not_retryable: the message is not failed", body = ErrorBody)))]
pub async fn retry_outbox(
    State(app): State<AppState>,
    Path((account, message)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<OutboxMessageView>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    // Another account's message is "not found", like one that does not exist.
    if account_message_ids(&app, &account_id.to_string(), None, Some(&message), (1, 0))
        .await?
        .is_empty()
    {
        return Err(outbox_error(OutboxError::NotFound(message)));
    }
    app.outbox.retry(&message).await.map_err(outbox_error)?;
    tracing::info!(account = %account_id, message = %message, "outbox message retried by hand");
    view(&app, &message)
        .await?
        .map(Json)
        .ok_or_else(|| outbox_error(OutboxError::NotFound(message)))
}

// ---------------------------------------------------------------------------------------------
// Inbound: a generic CRM starts a meeting for a deal

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundMeeting {
    pub deal_id: String,
    /// Default "Meeting: deal {deal_id}".
    #[serde(default)]
    pub title: Option<String>,
    /// The Parley user whose seat hosts the meeting (required: meetings run on a seat).
    #[serde(default)]
    pub host_user_id: Option<String>,
    /// The deal's contacts to invite (they receive the summary when the tariff allows).
    #[serde(default)]
    pub contacts: Vec<InboundContact>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundContact {
    pub name: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct InboundMeetingCreated {
    pub deal_id: String,
    #[serde(flatten)]
    pub meeting: MeetingCreated,
}

fn refused() -> ApiError {
    // One answer for every refusal: the caller learns nothing about which check failed.
    ApiError::Unauthorized("The webhook signature is not valid.".into())
}

/// Called by a generic CRM (signed with the account's webhook secret:
/// `X-Parley-Timestamp`, `X-Parley-Signature: v1=<hex HMAC-SHA256(secret, "{ts}.{body}")>`)
/// to create a meeting for a deal.
#[utoipa::path(post, path = "/api/v1/crm/webhook/{account}/meetings", tag = "integrations",
    params(("account" = String, Path)), request_body = InboundMeeting,
    responses((status = 201, body = InboundMeetingCreated),
        (status = 401, description = "Missing, bad, stale or replayed signature", body = ErrorBody),
        (status = 403, description = "no_seat, account_suspended, account_terminated", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Too many webhooks in the replay window", body = ErrorBody)))]
pub async fn inbound_meeting(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<InboundMeetingCreated>), ApiError> {
    let account_id = Uuid::parse_str(&account).map_err(|_| refused())?;
    let verifier = app
        .integrations
        .connections
        .verifier(&account_id.to_string())
        .await?
        .ok_or_else(refused)?;
    match verifier.verify_headers(&headers, &body, Utc::now().timestamp()) {
        Ok(()) => {}
        Err(VerifyError::Busy) => {
            return Err(ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "busy",
                message: VerifyError::Busy.to_string(),
            });
        }
        Err(e) => {
            tracing::info!(account = %account_id, reason = %e, "inbound CRM webhook refused");
            return Err(refused());
        }
    }
    let req: InboundMeeting = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        message: e.to_string().chars().take(200).collect::<String>(),
    })?;
    if req.deal_id.trim().is_empty() || req.deal_id.len() > 64 {
        return Err(invalid(
            "invalid_deal_id",
            "deal_id must be 1 to 64 characters.",
        ));
    }
    let title = req
        .title
        .clone()
        .unwrap_or_else(|| format!("Meeting: deal {}", req.deal_id));
    let title = MeetingTitle::parse(&title).map_err(|e| invalid("invalid_title", e.0))?;
    if req.contacts.len() > MAX_CONTACTS {
        return Err(invalid(
            "invalid_contacts",
            format!("At most {MAX_CONTACTS} contacts."),
        ));
    }
    let mut contacts = Vec::with_capacity(req.contacts.len());
    for c in &req.contacts {
        let email = Email::parse(&c.email)
            .map_err(|e| invalid("invalid_email", format!("The {}.", e.0)))?;
        let name = c.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid(
                "invalid_contacts",
                "contact names are 1 to 200 characters.",
            ));
        }
        contacts.push((
            name.to_owned(),
            email.as_str().to_owned(),
            email.key().to_owned(),
        ));
    }
    let Some(host) = req.host_user_id.as_deref() else {
        return Err(invalid(
            "host_user_id_required",
            "host_user_id is required: the user whose seat hosts the meeting.",
        ));
    };
    let host = crate::routes::licensing::bounded_text(
        "host_user_id",
        host,
        crate::routes::licensing::lots::MAX_USER_ID,
    )?;
    // The same enforcement as every meeting: a seat on an active lot of a usable account.
    let e = app
        .licensing
        .may_host(account_id, host)
        .await
        .map_err(|e| crate::routes::meetings::refusal(e, host))?;
    let license = MeetingLicense {
        account_id: account_id.to_string(),
        host_user_id: host.to_owned(),
        max_participants: e.max_participants,
        max_meeting_minutes: e.max_meeting_minutes,
        recording_allowed: e.recording_allowed,
        screen_share_allowed: e.screen_share_allowed,
        sdk_allowed: e.sdk_allowed,
    };
    let created = create_with_license(&app, &title, None, Some(&license)).await?;
    sqlx::query("UPDATE meetings SET deal_id = $1 WHERE id = $2")
        .bind(&req.deal_id)
        .bind(&created.id)
        .execute(app.store.pool())
        .await?;
    if !contacts.is_empty() {
        crate::summaries::db::add_contacts(app.store.pool(), &created.id, &contacts).await?;
    }
    tracing::info!(account = %account_id, meeting = %created.id, "meeting created by the CRM webhook");
    Ok((
        StatusCode::CREATED,
        Json(InboundMeetingCreated {
            deal_id: req.deal_id,
            meeting: created,
        }),
    ))
}
