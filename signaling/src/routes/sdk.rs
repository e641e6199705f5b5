//! SDK embedding over HTTP (see [`crate::sdk`] and docs/sdk.md):
//!
//! - `/api/v1/accounts/{account}/sdk-keys`: the account's SDK keys with their allowed origins,
//!   managed like the account's users (admin session, the account's API key, the operator;
//!   another account's are 404, a member gets 403). Creating one needs a tariff with the SDK.
//! - `POST /api/v1/meetings/{id}/tokens`: the developer's backend mints a participant's join
//!   token for one of its account's meetings, optionally bound to an SDK key.
//! - `GET /embed/{meeting}?token=…`: the iframe page running the SDK full-frame, framable only
//!   by the token's SDK key's origins.
//! - `/sdk/…` and `/app/…`: the SDK's ES modules (and the meeting app's modules it imports),
//!   readable cross-origin so a page on the developer's site can `import` them.

use std::collections::HashMap;
use std::path::Path as FsPath;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{DisplayName, MeetingId, Role, random_token};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::crm_card::escape;
use crate::routes::meetings::{MeetingInfo, grants_for, load};
use crate::routes::users::manager;
use crate::sdk::{
    AllowedOrigins, KEY_PREFIX, MAX_KEYS, MAX_NAME_CHARS, Refusal, SdkKey, SdkKeyStore,
};
use crate::startup::AppState;

/// Longest `identity` a backend may give its participant.
const MAX_IDENTITY: usize = 64;

pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/accounts/{account}/sdk-keys",
            post(create_key).get(list_keys),
        )
        .route("/accounts/{account}/sdk-keys/{key}", delete(revoke_key))
        .route("/meetings/{id}/tokens", post(mint_token))
}

/// The embed page and the SDK's modules (see the module docs).
pub fn page_routes(web_root: &FsPath) -> Router<AppState> {
    // Public code, fetched without credentials: `*` lets any site import it (module scripts
    // are always fetched in CORS mode). `no-cache`: the SDK and the app modules it imports are
    // revalidated together, so a page never mixes two server versions.
    let modules = Router::new()
        .nest_service("/sdk", ServeDir::new(web_root.join("sdk")))
        .nest_service("/app", ServeDir::new(web_root.join("app")))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Like every file of the web root (see `routes::web`).
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::routes::web::CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
    Router::new()
        .route("/embed/{id}", get(embed))
        .merge(modules)
}

fn store(app: &AppState) -> SdkKeyStore {
    SdkKeyStore::new(app.store.pool().clone())
}

/// A refusal as the API's error: 403 with its code (`sdk_not_in_tariff`, `account_suspended`,
/// …), or 404 for a key that is not (or no longer) the account's.
fn api_error(r: Refusal, key_id: &str) -> ApiError {
    match r {
        Refusal::Internal(e) => ApiError::Internal(e),
        Refusal::KeyRevoked => ApiError::Status {
            status: StatusCode::NOT_FOUND,
            code: "sdk_key_not_found",
            message: format!("This account has no live SDK key {key_id:.40?}."),
        },
        other => ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: other.code(),
            message: other.message(),
        },
    }
}

/// [`manager`] with a member's 403 phrased for SDK work.
async fn sdk_manager(
    app: &AppState,
    headers: &HeaderMap,
    account: &str,
) -> Result<(crate::routes::users::Manager, Uuid), ApiError> {
    manager(app, headers, account).await.map_err(|e| match e {
        ApiError::Forbidden(_) => ApiError::Forbidden(
            "Only an account admin or the account's API key may manage SDK keys and mint tokens."
                .into(),
        ),
        other => other,
    })
}

// ---------------------------------------------------------------------------------------------
// SDK keys

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSdkKey {
    /// 1 to 100 characters, e.g. `Shop (production)`.
    pub name: String,
    /// 1 to 20 origins (`scheme://host[:port]`): https, or plain http on `localhost` /
    /// `127.0.0.1` for development. No paths, no wildcards.
    #[schema(example = json!(["https://shop.example", "http://127.0.0.1:5123"]))]
    pub allowed_origins: Vec<String>,
}

/// An SDK key: a public handle (not a secret) naming the origins that may embed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SdkKeyView {
    /// `sdk_…`: pass as `sdk_key_id` when minting tokens.
    pub id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&SdkKey> for SdkKeyView {
    fn from(k: &SdkKey) -> Self {
        SdkKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            allowed_origins: k.origins().as_slice().to_vec(),
            created_at: k.created_at,
        }
    }
}

/// Create an SDK key (account admin, the account's API key or the operator). The account's
/// tariff must include SDK embedding.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/sdk-keys", tag = "sdk",
    operation_id = "create_sdk_key",
    params(("account" = String, Path)), request_body = CreateSdkKey, security(("bearer" = [])),
    responses((status = 201, body = SdkKeyView), (status = 401, body = ErrorBody),
        (status = 403, description = "sdk_not_in_tariff, account_suspended, account_terminated, or a member of the account", body = ErrorBody),
        (status = 404, description = "No such account (or another account's)", body = ErrorBody),
        (status = 409, description = "too_many_sdk_keys", body = ErrorBody),
        (status = 422, description = "invalid_name, invalid_origin", body = ErrorBody)))]
pub async fn create_key(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateSdkKey>,
) -> Result<(StatusCode, Json<SdkKeyView>), ApiError> {
    let (by, account) = sdk_manager(&app, &headers, &account).await?;
    crate::sdk::check_tariff(&app, account)
        .await
        .map_err(|r| api_error(r, ""))?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME_CHARS} characters."),
        ));
    }
    let origins = AllowedOrigins::parse(&req.allowed_origins)
        .map_err(|m| ApiError::invalid("invalid_origin", m))?;
    let keys = store(&app);
    let account_s = account.to_string();
    if keys.count_live(&account_s).await? >= MAX_KEYS {
        return Err(ApiError::Conflict {
            code: "too_many_sdk_keys",
            message: format!(
                "An account may hold {MAX_KEYS} SDK keys; revoke one it no longer uses."
            ),
        });
    }
    let id = format!("{KEY_PREFIX}{}", random_token(20));
    let key = keys
        .insert(&id, &account_s, name, &origins, Utc::now())
        .await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account),
        Some(&account_s),
        "sdk_key.create",
        crate::privacy::Target::new("sdk_key", &key.id),
    )
    .await;
    tracing::info!(account = %account, key = %key.id, "SDK key created");
    Ok((StatusCode::CREATED, Json(SdkKeyView::from(&key))))
}

/// The account's live SDK keys, oldest first unless `order=newest`, paged with `limit` and
/// `offset`.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/sdk-keys", tag = "sdk",
    operation_id = "list_sdk_keys",
    params(("account" = String, Path), crate::routes::licensing::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<SdkKeyView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    crate::error::ApiQuery(page): crate::error::ApiQuery<crate::routes::licensing::ListPage>,
) -> Result<Json<Vec<SdkKeyView>>, ApiError> {
    let (_, account) = sdk_manager(&app, &headers, &account).await?;
    let keys = page.apply(store(&app).list(&account.to_string()).await?)?;
    Ok(Json(keys.iter().map(SdkKeyView::from).collect()))
}

/// Revoke an SDK key. It stops working at once: tokens minted for it are refused at the
/// WebSocket and the embed page, and it is no longer listed.
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/sdk-keys/{key}", tag = "sdk",
    operation_id = "revoke_sdk_key",
    params(("account" = String, Path), ("key" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such live key in this account", body = ErrorBody)))]
pub async fn revoke_key(
    State(app): State<AppState>,
    Path((account, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (by, account) = sdk_manager(&app, &headers, &account).await?;
    let account_s = account.to_string();
    if key.len() > 64 || !store(&app).revoke(&account_s, &key, Utc::now()).await? {
        return Err(api_error(Refusal::KeyRevoked, &key));
    }
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_manager(&by, account),
        Some(&account_s),
        "sdk_key.revoke",
        crate::privacy::Target::new("sdk_key", &key),
    )
    .await;
    tracing::info!(account = %account, key = %key, "SDK key revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Tokens for the developer's backend

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// 1 to 64 characters: the name the others see.
    pub display_name: String,
    /// `guest` (default) or `host` (host controls, recording).
    #[serde(default)]
    pub role: Option<Role>,
    /// An SDK key of the meeting's account: the token then works only from the key's allowed
    /// origins (SDK and embed page). Without it, an ordinary join token.
    #[serde(default)]
    pub sdk_key_id: Option<String>,
    /// The person's stable id in your system (1 to 64 of `A-Z a-z 0-9 . _ @ -`): a reconnect
    /// with a fresh token for the same identity resumes the same seat. Random when absent.
    #[serde(default)]
    pub identity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MintedToken {
    /// The join token (JWT): `Parley.join({token})`, or `token` in the WebSocket `join`.
    pub token: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    /// Path of the signaling WebSocket.
    pub ws_path: String,
    /// The SDK key the token is bound to, if any.
    pub sdk_key_id: Option<String>,
    /// With an SDK key: the iframe embed URL (`{base}/embed/{meeting}?token=…`).
    pub embed_url: Option<String>,
    pub meeting: MeetingInfo,
}

fn valid_identity(s: &str) -> bool {
    (1..=MAX_IDENTITY).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Mint a participant's join token for a meeting of the caller's account (the account's API
/// key, an account admin or the operator). With `sdk_key_id` the token is for the SDK or the
/// embed page and works only from that key's allowed origins.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/tokens", tag = "sdk",
    params(("id" = String, Path)), request_body = MintToken, security(("bearer" = [])),
    responses((status = 200, body = MintedToken), (status = 401, body = ErrorBody),
        (status = 403, description = "sdk_not_in_tariff, account_suspended, account_terminated, or a member of the account", body = ErrorBody),
        (status = 404, description = "No such meeting in the caller's account, or sdk_key_not_found", body = ErrorBody),
        (status = 410, description = "meeting_ended", body = ErrorBody),
        (status = 422, description = "invalid_display_name, invalid_identity", body = ErrorBody)))]
pub async fn mint_token(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MintToken>,
) -> Result<Json<MintedToken>, ApiError> {
    let (meeting, row) = load(&app, &id).await?;
    // Unlicensed meetings belong to no account: nobody mints SDK tokens for them.
    let not_found = || ApiError::NotFound(format!("No meeting with id {id:.40?}."));
    let account = row.account_id.clone().ok_or_else(not_found)?;
    // Another account's meeting answers like one that does not exist (not "unknown account",
    // which would tell the caller that the meeting id is real).
    let (_, account) = sdk_manager(&app, &headers, &account)
        .await
        .map_err(|e| match e {
            ApiError::Licensing(parley_licensing::LicensingError::UnknownAccount) => not_found(),
            other => other,
        })?;
    let name = DisplayName::parse(&req.display_name)
        .map_err(|e| ApiError::invalid("invalid_display_name", e.0))?;
    let role = req.role.unwrap_or(Role::Guest);
    let identity = match req.identity.as_deref() {
        Some(i) if valid_identity(i) => format!("ext-{i}"),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_identity",
                format!(
                    "identity must be 1 to {MAX_IDENTITY} of A-Z, a-z, 0-9, '.', '_', '@', '-'."
                ),
            ));
        }
        None => format!("ext-{}", random_token(16)),
    };
    if row.ended_at.is_some() {
        return Err(ApiError::Status {
            status: StatusCode::GONE,
            code: "meeting_ended",
            message: "The meeting has ended.".into(),
        });
    }
    app.licensing
        .may_join(account)
        .await
        .map_err(|e| crate::routes::meetings::refusal(e, ""))?;
    let sdk_key = match req.sdk_key_id.as_deref() {
        None => None,
        Some(k) => {
            let key = crate::sdk::usable_key(&app, k, account)
                .await
                .map_err(|r| api_error(r, k))?;
            if row.sdk_allowed == Some(false) {
                return Err(ApiError::Status {
                    status: StatusCode::FORBIDDEN,
                    code: "sdk_not_in_tariff",
                    message: "This meeting's host holds a seat on a tariff without SDK \
                              embedding."
                        .into(),
                });
            }
            Some(key.id)
        }
    };
    let mut claims = app.tokens.claims(
        &meeting,
        &identity,
        name.as_str(),
        role,
        grants_for(role, &row),
        row.scheduled_start,
    );
    claims.sdk = sdk_key.clone();
    let token = app
        .tokens
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let embed_url = sdk_key
        .as_ref()
        .map(|_| format!("{}/embed/{meeting}?token={token}", app.config.public_url));
    Ok(Json(MintedToken {
        role,
        expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        ws_path: "/api/v1/ws".into(),
        sdk_key_id: sdk_key,
        embed_url,
        meeting: MeetingInfo::from(&row),
        token,
    }))
}

// ---------------------------------------------------------------------------------------------
// The embed page

/// What the embed page template gets: the frame ancestors (also the postMessage targets) and,
/// for a refusal, its code and message (the page shows it and posts an `error` event).
struct EmbedPage {
    status: StatusCode,
    origins: Vec<String>,
    error: Option<(&'static str, String)>,
}

impl EmbedPage {
    fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        EmbedPage {
            status,
            origins: Vec::new(),
            error: Some((code, message.into())),
        }
    }

    fn with_origins(mut self, origins: &[String]) -> Self {
        self.origins = origins.to_vec();
        self
    }

    async fn render(self, app: &AppState) -> Response {
        let path = app
            .config
            .web_root
            .join("sdk")
            .join("v1")
            .join("embed.html");
        let template = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                return ApiError::Internal(anyhow::anyhow!("{}: {e}", path.display()))
                    .into_response();
            }
        };
        let (code, message) = self.error.clone().unwrap_or(("", String::new()));
        let body = template
            .replace(
                "__PARLEY_ALLOWED_ORIGINS__",
                &escape(&self.origins.join(" ")),
            )
            .replace("__PARLEY_ERROR_CODE__", &escape(code))
            .replace("__PARLEY_ERROR_MESSAGE__", &escape(&message))
            .replace(
                "__PARLEY_ERROR_HIDDEN__",
                if code.is_empty() { "hidden" } else { "" },
            );
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let base = crate::routes::web::csp(app.config.cluster.as_ref());
        if let Ok(v) = HeaderValue::from_str(&embed_csp(&base, &self.origins)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The token is in this page's URL: never send it anywhere as a Referer.
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// The app's strict CSP with `frame-ancestors` listing exactly the key's origins (each passed
/// [`AllowedOrigins::parse`]), or `'none'` when no key is known.
/// `base` (the app's CSP, widened to the cluster's nodes: the embedded meeting follows its
/// redirect) with the key's origins as frame ancestors.
fn embed_csp(base: &str, origins: &[String]) -> String {
    if origins.is_empty() {
        base.to_owned()
    } else {
        base.replace(
            "frame-ancestors 'none'",
            &format!("frame-ancestors {}", origins.join(" ")),
        )
    }
}

/// `GET /embed/{meeting}?token=<SDK token>`: the meeting full-frame, for an iframe on one of
/// the token's SDK key's origins. Refusals are HTML pages with a 4xx status, framable by the
/// key's origins when the key is known (the developer then sees why inside the frame).
pub async fn embed(
    State(app): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let q = query.map(|q| q.0).unwrap_or_default();
    embed_page(&app, &id, q.get("token").map(String::as_str))
        .await
        .render(&app)
        .await
}

async fn embed_page(app: &AppState, id: &str, token: Option<&str>) -> EmbedPage {
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 4096) else {
        return EmbedPage::refused(
            StatusCode::BAD_REQUEST,
            "token_required",
            "The embed URL has no token: mint one on your backend with an SDK key.",
        );
    };
    let Ok(meeting) = MeetingId::parse(id) else {
        return EmbedPage::refused(StatusCode::NOT_FOUND, "not_found", "No such meeting.");
    };
    let claims = match app.tokens.verify(token, Some(&meeting)) {
        Ok(c) => c,
        Err(e) => {
            return EmbedPage::refused(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                format!("The token is not valid ({e})."),
            );
        }
    };
    let Some(key_id) = claims.sdk.as_deref() else {
        return EmbedPage::refused(
            StatusCode::FORBIDDEN,
            "sdk_key_required",
            "This token was not minted for an SDK key: mint it with sdk_key_id to embed.",
        );
    };
    let row = match app.store.meeting(&meeting).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return EmbedPage::refused(StatusCode::NOT_FOUND, "not_found", "No such meeting.");
        }
        Err(e) => {
            tracing::error!(error = %e, "embed page: cannot load the meeting");
            return EmbedPage::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on the server.",
            );
        }
    };
    // The key's origins frame even a refusal that comes after we know them.
    let key = match store(app).get(key_id).await {
        Ok(k) => k.filter(|k| Some(k.account_id.as_str()) == row.account_id.as_deref()),
        Err(e) => {
            tracing::error!(error = %e, "embed page: cannot load the SDK key");
            return EmbedPage::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on the server.",
            );
        }
    };
    let Some(key) = key.filter(|k| k.revoked_at.is_none()) else {
        let r = Refusal::KeyRevoked;
        return EmbedPage::refused(StatusCode::FORBIDDEN, r.code(), r.message());
    };
    let origins = key.origins().as_slice();
    let account = Uuid::parse_str(&key.account_id).unwrap_or_default();
    if let Err(r) = crate::sdk::check_tariff(app, account).await {
        let status = if matches!(r, Refusal::Internal(_)) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::FORBIDDEN
        };
        return EmbedPage::refused(status, r.code(), r.message()).with_origins(origins);
    }
    if row.ended_at.is_some() {
        return EmbedPage::refused(StatusCode::GONE, "meeting_ended", "The meeting has ended.")
            .with_origins(origins);
    }
    EmbedPage {
        status: StatusCode::OK,
        origins: origins.to_vec(),
        error: None,
    }
}
