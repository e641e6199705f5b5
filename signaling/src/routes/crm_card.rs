//! The CRM deal card over HTTP.
//!
//! - `GET /crm/card?account&deal&crm_user&exp&sig`: the signed launch (see [`crate::card`]).
//!   A valid one opens a one-hour card session and answers the widget page, framable only by
//!   the account's CRM origin (its CRM connection's `frame_origin`). Refusals are small HTML
//!   pages with a 4xx status and no session.
//! - `/api/v1/crm/card/…`: what the widget calls with its card session (`Bearer cs_…`, or the
//!   `parley_card` cookie). The session fixes account, user and deal, so these calls take no
//!   account or deal parameter: there is nothing to point at another account's data. A
//!   meeting's summary is read by meeting id, and only for a meeting of the session's deal.
//! - `/api/v1/accounts/{account}/crm/…`: the account's card secret and CRM-user links, managed
//!   like the account's users (admin session, the account's API key, the operator).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::bearer_token;
use crate::card::{
    CARD_COOKIE, CARD_SESSION_SECS, CARD_TOKEN_PREFIX, CardSession, CardStore,
    MAX_LAUNCH_AHEAD_SECS, canonical, normalise_origin, valid_external_id, verify,
};
use crate::domain::{MeetingId, MeetingTitle, constant_time_eq, random_token};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::privacy::{Actor, Target, record};
use crate::routes::meetings::{MeetingCreated, create_with_license, parse_scheduled_start};
use crate::routes::users::manager;
use crate::startup::AppState;
use crate::store::MeetingLicense;
use crate::summaries::http::SummaryView;
use crate::users::{UserStatus, hash_token, new_token, well_formed};

/// Path of the card API; the card cookie is scoped to it (a cookie scoped to `/crm` would never
/// reach the API, and a wider one would reach endpoints that have nothing to do with the card).
const CARD_API_PATH: &str = "/api/v1/crm/card";
/// Past meetings listed on the card.
const MAX_LISTED: i64 = 50;

pub fn page_routes() -> Router<AppState> {
    Router::new().route("/crm/card", get(launch))
}

pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/accounts/{account}/crm/card-secret",
            post(put_secret).get(secret_status),
        )
        .route(
            "/accounts/{account}/crm/users",
            post(link_user).get(list_links),
        )
        .route(
            "/accounts/{account}/crm/users/{crm_user}",
            delete(unlink_user),
        )
        .route("/crm/card/deal", get(deal))
        .route("/crm/card/meetings", get(meetings).post(create))
        .route("/crm/card/meetings/{id}/summary", get(summary))
}

fn store(app: &AppState) -> CardStore {
    CardStore::new(app.store.pool().clone(), app.integrations.cipher.clone())
}

// ---------------------------------------------------------------------------------------------
// Launch

/// A refused launch: an HTML page a person in the CRM can read, with the code for machines.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The frame ancestor allowed to show this page (the account's CRM, when known), so the
    /// rep sees the reason inside the CRM instead of a browser "refused to connect".
    origin: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            origin: None,
        }
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `base` (the app's strict CSP, widened to the cluster's nodes where the card connects) with
/// `frame-ancestors` set to the CRM's origin (never `*`: the origin passed
/// [`normalise_origin`] when it was stored), or kept at `'none'`.
fn card_csp(base: &str, origin: Option<&str>) -> String {
    match origin {
        Some(o) => base.replace("frame-ancestors 'none'", &format!("frame-ancestors {o}")),
        None => base.to_owned(),
    }
}

fn html_response(
    status: StatusCode,
    body: String,
    (csp, origin): (&str, Option<&str>),
    cookie: Option<String>,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&card_csp(csp, origin)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Parley deal card: cannot open</title>\
             <link rel=\"stylesheet\" href=\"/crm/card.css\"></head>\
             <body><main class=\"card\"><div class=\"error\" role=\"alert\" data-code=\"{code}\">\
             <h1>The Parley card cannot open</h1><p>{message}</p>\
             <p class=\"muted\">Code: <code id=\"error-code\">{code}</code></p></div></main>\
             </body></html>\n",
            code = self.code,
            message = escape(&self.message),
        );
        // A refusal page connects nowhere: the strict policy.
        let csp = crate::routes::web::CSP;
        html_response(self.status, body, (csp, self.origin.as_deref()), None)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        tracing::error!(error = %e, "deal card launch failed");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on the Parley server; try again in a moment.",
        )
    }
}

fn sql(e: sqlx::Error) -> Refusal {
    Refusal::from(ApiError::from(e))
}

fn card_cookie(app: &AppState, token: &str) -> String {
    // Third-party iframes only get cookies with SameSite=None, which browsers accept only with
    // Secure; over plain http the page's bearer token (in the page itself) does the job.
    let site = if app.users.secure_cookies() {
        "SameSite=None; Secure"
    } else {
        "SameSite=Lax"
    };
    format!(
        "{CARD_COOKIE}={token}; Path={CARD_API_PATH}; HttpOnly; Max-Age={CARD_SESSION_SECS}; {site}"
    )
}

/// The signed launch: verifies, opens a card session, answers the widget page.
pub async fn launch(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    // A query that does not even parse is just an incomplete link (no fields found).
    match launch_inner(&app, query.map(|q| q.0).unwrap_or_default()).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn launch_inner(app: &AppState, q: HashMap<String, String>) -> Result<Response, Refusal> {
    let bad = |what: &str| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_launch",
            format!(
                "The card link is incomplete or malformed ({what}). Open the deal in the CRM \
                 again."
            ),
        )
    };
    let field = |name: &'static str| q.get(name).map(String::as_str).ok_or_else(|| bad(name));
    let (account, deal, crm_user, exp, sig) = (
        field("account")?,
        field("deal")?,
        field("crm_user")?,
        field("exp")?,
        field("sig")?,
    );
    if !valid_external_id(deal) {
        return Err(bad("deal"));
    }
    if !valid_external_id(crm_user) {
        return Err(bad("crm_user"));
    }
    let exp_secs: i64 = exp
        .parse()
        .ok()
        .filter(|_| exp.len() <= 12)
        .ok_or_else(|| bad("exp"))?;
    let not_configured = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "card_not_configured",
            "This Parley account does not exist or has no deal card configured.",
        )
    };
    let account_id = Uuid::parse_str(account).map_err(|_| not_configured())?;
    let account = account_id.to_string();
    let cards = store(app);
    let settings = cards
        .settings(&account)
        .await
        .map_err(sql)?
        .ok_or_else(not_configured)?;
    // The one place the CRM's origin lives: the account's CRM connection.
    let origin = app
        .integrations
        .connections
        .frame_origin(&account)
        .await
        .map_err(sql)?;
    let refuse = |status, code, message: &str| Refusal {
        origin: origin.clone(),
        ..Refusal::new(status, code, message)
    };
    // The signature first: nothing else about the account is revealed to a forger.
    if !verify(
        &settings.secret,
        &canonical(&account, deal, crm_user, exp_secs),
        &sig.to_ascii_lowercase(),
    ) {
        tracing::warn!(account = %account, "deal card launch with a bad signature");
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "The card link's signature is not valid. Open the deal in the CRM again; if this \
             persists, the card secret in the CRM may be out of date.",
        ));
    }
    let now = app.users.now();
    if exp_secs <= now.timestamp() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "launch_expired",
            "The card link has expired. Reload the deal in the CRM to get a fresh one.",
        ));
    }
    if exp_secs > now.timestamp() + MAX_LAUNCH_AHEAD_SECS {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "launch_expiry_too_far",
            "The card link is valid for more than 24 hours, which Parley does not accept. The \
             CRM must sign links that expire sooner.",
        ));
    }
    if origin.is_none() {
        return Err(refuse(
            StatusCode::CONFLICT,
            "crm_not_connected",
            "This Parley account has no CRM connection with a web address, so the card cannot \
             be shown inside the CRM. Ask your Parley account admin to connect the CRM.",
        ));
    }
    let unmapped = || {
        refuse(
            StatusCode::FORBIDDEN,
            "crm_user_not_linked",
            &format!(
                "Your CRM user (id {crm_user}) is not linked to a Parley user of this account. \
                 Ask your Parley account admin to link it."
            ),
        )
    };
    let user_id = cards
        .linked_user(&account, crm_user)
        .await
        .map_err(sql)?
        .ok_or_else(unmapped)?;
    let user = app
        .users
        .store
        .by_id(&user_id)
        .await
        .map_err(sql)?
        .filter(|u| u.account_id == account)
        .ok_or_else(unmapped)?;
    if user.status() == UserStatus::Disabled {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "user_disabled",
            "Your Parley user is disabled. Ask your Parley account admin.",
        ));
    }

    let template = tokio::fs::read_to_string(app.config.web_root.join("crm").join("card.html"))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("card.html: {e}")))?;
    let token = new_token(CARD_TOKEN_PREFIX);
    let session = CardSession {
        account_id: account,
        user_id: user.id.clone(),
        crm_user_id: crm_user.to_owned(),
        deal_id: deal.to_owned(),
        expires_at: now + chrono::Duration::seconds(CARD_SESSION_SECS),
    };
    cards
        .insert_session(&hash_token(&token), &session, now)
        .await
        .map_err(sql)?;
    tracing::info!(account = %session.account_id, user = %user.id, "deal card opened");
    // The token is alphanumeric; escaped anyway since it lands in an attribute.
    let body = template.replace("__CARD_TOKEN__", &escape(&token));
    // The card joins meetings, which may live on another node of a cluster.
    let csp = crate::routes::web::csp(app.config.cluster.as_ref());
    Ok(html_response(
        StatusCode::OK,
        body,
        (&csp, origin.as_deref()),
        Some(card_cookie(app, &token)),
    ))
}

// ---------------------------------------------------------------------------------------------
// The card session

fn card_cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CARD_COOKIE)
        .map(|(_, value)| value.trim())
}

/// The card session of a request: `Bearer cs_…` or the card cookie. Still linked to the same
/// user (unlinking ends it), the user not disabled, within its hour.
async fn card_session(app: &AppState, headers: &HeaderMap) -> Result<CardSession, ApiError> {
    let token = match bearer_token(headers) {
        Some(b) => Some(b),
        None => card_cookie_value(headers),
    };
    let unauthorized = |m: &str| ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code: "card_session_required",
        message: m.into(),
    };
    let Some(token) = token else {
        return Err(unauthorized(
            "This call needs a deal-card session: open the card from the CRM.",
        ));
    };
    let invalid =
        || unauthorized("The deal-card session is not valid or has expired; reload the card.");
    if !well_formed(token, CARD_TOKEN_PREFIX) {
        return Err(invalid());
    }
    let cards = store(app);
    let s = cards
        .session(&hash_token(token))
        .await?
        .ok_or_else(invalid)?;
    if app.users.now() >= s.expires_at {
        return Err(invalid());
    }
    let linked = cards.linked_user(&s.account_id, &s.crm_user_id).await?;
    if !linked.is_some_and(|u| constant_time_eq(&u, &s.user_id)) {
        return Err(invalid());
    }
    match app.users.store.by_id(&s.user_id).await? {
        Some(u) if u.status() != UserStatus::Disabled => Ok(s),
        _ => Err(invalid()),
    }
}

// ---------------------------------------------------------------------------------------------
// Card API

#[derive(Debug, Serialize, ToSchema)]
pub struct CardContact {
    pub name: String,
    pub emails: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardUser {
    pub id: String,
    pub display_name: String,
}

/// The deal the card was launched for.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardDeal {
    pub deal_id: String,
    /// From the CRM; `Deal <id>` when the CRM could not be read.
    pub title: String,
    pub contacts: Vec<CardContact>,
    /// `crm` (read now), `unavailable` (no CRM connection) or `error` (the CRM failed).
    pub source: String,
    /// Why the CRM could not be read, for `error`.
    pub crm_error: Option<String>,
    /// The Parley user the card acts as.
    pub user: CardUser,
    /// When the card session ends.
    pub session_expires_at: DateTime<Utc>,
}

/// The deal of this card, with its contacts read from the account's CRM.
#[utoipa::path(get, path = "/api/v1/crm/card/deal", tag = "crm card",
    security(("bearer" = [])),
    responses((status = 200, body = CardDeal),
        (status = 401, description = "No or expired card session", body = ErrorBody)))]
pub async fn deal(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<CardDeal>, ApiError> {
    let s = card_session(&app, &headers).await?;
    let account = Uuid::parse_str(&s.account_id)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored card session account")))?;
    let user = app.users.store.by_id(&s.user_id).await?;
    let fallback = format!("Deal {}", s.deal_id);
    let (title, contacts, source, crm_error) =
        match crate::card::read_deal(app.card_deals.as_ref(), account, &s.deal_id).await {
            Ok(Some(d)) => (
                d.title,
                d.contacts
                    .into_iter()
                    .map(|c| CardContact {
                        name: c.name,
                        emails: c.emails,
                    })
                    .collect(),
                "crm",
                None,
            ),
            Ok(None) => (fallback, Vec::new(), "unavailable", None),
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "deal card: CRM read failed");
                (fallback, Vec::new(), "error", Some(e.to_string()))
            }
        };
    Ok(Json(CardDeal {
        deal_id: s.deal_id,
        title,
        contacts,
        source: source.into(),
        crm_error,
        user: CardUser {
            id: s.user_id,
            display_name: user.map(|u| u.display_name).unwrap_or_default(),
        },
        session_expires_at: s.expires_at,
    }))
}

/// A meeting created for the deal.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardMeeting {
    pub id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// From start to end, when both are known.
    pub duration_seconds: Option<i64>,
    /// The guest link, while the meeting has not ended.
    pub invite_link: Option<String>,
    /// The meeting's summary, when one is stored: read it with the card session
    /// (`GET /api/v1/crm/card/meetings/{id}/summary`).
    pub summary_url: Option<String>,
    /// The page of the meeting's recording, when it was recorded.
    pub recording_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardMeetings {
    /// Newest first, at most 50.
    pub meetings: Vec<CardMeeting>,
}

/// The deal's meetings (created from its card), newest first.
#[utoipa::path(get, path = "/api/v1/crm/card/meetings", tag = "crm card",
    security(("bearer" = [])),
    responses((status = 200, body = CardMeetings),
        (status = 401, description = "No or expired card session", body = ErrorBody)))]
pub async fn meetings(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<CardMeetings>, ApiError> {
    let s = card_session(&app, &headers).await?;
    let cards = store(&app);
    let rows = cards
        .deal_meetings(&s.account_id, &s.deal_id, MAX_LISTED)
        .await?;
    let base = &app.config.public_url;
    let mut meetings = Vec::with_capacity(rows.len());
    for r in rows {
        let summary_url = cards
            .has_summary(&r.id)
            .await
            .then(|| format!("{base}{CARD_API_PATH}/meetings/{}/summary", r.id));
        meetings.push(CardMeeting {
            duration_seconds: match (r.started_at, r.ended_at) {
                (Some(a), Some(b)) => Some((b - a).num_seconds().max(0)),
                _ => None,
            },
            invite_link: r
                .ended_at
                .is_none()
                .then(|| format!("{base}/m/{}?invite={}", r.id, r.invite_secret)),
            summary_url,
            recording_url: crate::recordings::meeting_page_url(app.store.pool(), base, &r.id)
                .await?,
            id: r.id,
            title: r.title,
            scheduled_start: r.scheduled_start,
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
        });
    }
    Ok(Json(CardMeetings { meetings }))
}

/// The summary of one of the deal's meetings, for the card to show. The card session is the
/// credential, and it reaches only meetings made for its own deal of its own account: any other
/// meeting is 404, as if it did not exist.
#[utoipa::path(get, path = "/api/v1/crm/card/meetings/{id}/summary", tag = "crm card",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = SummaryView),
        (status = 401, description = "No or expired card session", body = ErrorBody),
        (status = 404, description = "Not a meeting of this deal, or no summary yet (`no_summary`)", body = ErrorBody)))]
pub async fn summary(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SummaryView>, ApiError> {
    let s = card_session(&app, &headers).await?;
    let not_found = || crate::routes::meetings::no_such_meeting(&id);
    let meeting = MeetingId::parse(&id).map_err(|_| not_found())?;
    if !store(&app)
        .is_deal_meeting(&s.account_id, &s.deal_id, meeting.as_str())
        .await?
    {
        return Err(not_found());
    }
    let view = crate::summaries::http::stored_view(&app, meeting.as_str()).await?;
    record(
        &app,
        &headers,
        Actor::user(&s.user_id),
        Some(&s.account_id),
        "summary.read",
        Target::new("meeting", meeting.as_str()),
    )
    .await;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardCreateMeeting {
    /// 1 to 200 characters; default: the deal's title in the CRM, or `Deal <id>` when the CRM
    /// has none (not connected, unreadable).
    #[serde(default)]
    pub title: Option<String>,
    /// RFC 3339; absent: start now.
    #[serde(default)]
    pub scheduled_start: Option<String>,
}

/// The default title of a meeting started from the card: the deal's title in the CRM as a valid
/// meeting title (control characters and runs of spaces made one space, at most 200
/// characters); `Deal <id>` when the CRM gave none. The summary's note and email put their own
/// "Meeting:" label in front, so none is added here.
fn deal_meeting_title(crm_title: Option<&str>, deal_id: &str) -> String {
    let words: Vec<&str> = crm_title
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return format!("Deal {deal_id}");
    }
    words
        .join(" ")
        .chars()
        .take(MeetingTitle::MAX_CHARS)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Start now or schedule a meeting for the deal, hosted by the card's user on their seat.
#[utoipa::path(post, path = "/api/v1/crm/card/meetings", tag = "crm card",
    request_body = CardCreateMeeting, security(("bearer" = [])),
    responses((status = 201, body = MeetingCreated),
        (status = 401, description = "No or expired card session", body = ErrorBody),
        (status = 403, description = "no_seat, account_suspended, account_terminated", body = ErrorBody),
        (status = 422, description = "Invalid title or date", body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CardCreateMeeting>,
) -> Result<(StatusCode, Json<MeetingCreated>), ApiError> {
    let s = card_session(&app, &headers).await?;
    let account = Uuid::parse_str(&s.account_id)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored card session account")))?;
    let title = match req.title {
        Some(t) => t,
        None => {
            let crm = crate::card::read_deal(app.card_deals.as_ref(), account, &s.deal_id).await;
            let crm_title = match &crm {
                Ok(d) => d.as_ref().map(|d| d.title.as_str()),
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "deal card: CRM read failed");
                    None
                }
            };
            deal_meeting_title(crm_title, &s.deal_id)
        }
    };
    let title = MeetingTitle::parse(&title).map_err(|e| ApiError::invalid("invalid_title", e.0))?;
    let scheduled_start = parse_scheduled_start(req.scheduled_start.as_deref())?;
    let user = app.users.store.by_id(&s.user_id).await?;
    let who = user.map(|u| u.email).unwrap_or_else(|| s.user_id.clone());
    // The same enforcement as any meeting: the mapped user must hold a seat on an active lot.
    let e = app
        .licensing
        .may_host(account, &s.user_id)
        .await
        .map_err(|e| crate::routes::meetings::refusal(e, &who))?;
    let license = MeetingLicense {
        account_id: s.account_id.clone(),
        host_user_id: s.user_id.clone(),
        max_participants: e.max_participants,
        max_meeting_minutes: e.max_meeting_minutes,
        recording_allowed: e.recording_allowed,
        screen_share_allowed: e.screen_share_allowed,
        sdk_allowed: e.sdk_allowed,
    };
    let created = create_with_license(&app, &title, scheduled_start, Some(&license)).await?;
    store(&app)
        .set_meeting_deal(&created.id, &s.deal_id)
        .await?;
    tracing::info!(account = %s.account_id, meeting = %created.id, "meeting created from the deal card");
    Ok((StatusCode::CREATED, Json(created)))
}

// ---------------------------------------------------------------------------------------------
// Account administration

/// The body may be empty (`{}`): the card is framed by the CRM connection's `frame_origin`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCardSecret {
    /// Deprecated (removed in the next version): set `frame_origin` on the CRM connection
    /// instead (`PUT /api/v1/accounts/{account}/crm`). When given it is written to the
    /// connection's `frame_origin`, so the account must have a CRM connection.
    #[serde(default)]
    #[schema(deprecated)]
    pub crm_origin: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardSecret {
    /// The HMAC-SHA256 key for launch URLs. Shown only here; creating again replaces it.
    pub secret: String,
    /// Deprecated: the CRM connection's `frame_origin`, which frames the card (read it from
    /// `GET /api/v1/accounts/{account}/crm`).
    #[schema(deprecated)]
    pub crm_origin: String,
    /// The canonical text to sign, as a template.
    pub signed_text: String,
}

/// Create or rotate the account's deal-card secret. The card is framed only by the CRM
/// connection's `frame_origin`, so the account's CRM must be connected first.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/crm/card-secret", tag = "crm card",
    params(("account" = String, Path)), request_body = PutCardSecret, security(("bearer" = [])),
    responses((status = 201, body = CardSecret), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "crm_not_connected: connect the CRM first", body = ErrorBody),
        (status = 422, description = "invalid_origin, frame_origin_required (the connection has no web origin)", body = ErrorBody)))]
pub async fn put_secret(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PutCardSecret>,
) -> Result<(StatusCode, Json<CardSecret>), ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    // The operator passes `manager` for any id; the account must exist.
    app.licensing.account(account_id).await?;
    let account = account_id.to_string();
    let connections = &app.integrations.connections;
    let not_connected = || ApiError::Conflict {
        code: "crm_not_connected",
        message: "Connect the account's CRM first (PUT /api/v1/accounts/{account}/crm): the \
                  card is shown only inside the CRM whose web origin the connection holds."
            .into(),
    };
    // Deprecated input, kept for one version: the origin belongs to the CRM connection.
    if let Some(given) = req.crm_origin {
        let origin = normalise_origin(&given).ok_or_else(|| {
            ApiError::invalid(
                "invalid_origin",
                "crm_origin must be an origin such as https://crm.example.com (https; no path, \
                 no wildcard).",
            )
        })?;
        if !connections.set_frame_origin(&account, &origin).await? {
            return Err(not_connected());
        }
        tracing::info!(account = %account, origin = %origin, "CRM frame origin set through the deprecated crm_origin");
    }
    let connection = connections
        .for_account(&account)
        .await?
        .ok_or_else(not_connected)?;
    let origin = connection
        .frame_origin
        .as_deref()
        .and_then(normalise_origin)
        .ok_or_else(|| {
            ApiError::invalid(
                "frame_origin_required",
                "The CRM connection has no web origin for the card's frame: set frame_origin \
                 on it (PUT /api/v1/accounts/{account}/crm), e.g. https://crm.example.com.",
            )
        })?;
    let secret = random_token(48);
    store(&app)
        .put_settings(&account, &secret, app.users.now())
        .await?;
    tracing::info!(account = %account, origin = %origin, "deal card secret set");
    Ok((
        StatusCode::CREATED,
        Json(CardSecret {
            secret,
            crm_origin: origin,
            signed_text: "account=<account>&deal=<deal>&crm_user=<crm_user>&exp=<unix seconds>"
                .into(),
        }),
    ))
}

/// Whether the account has a card secret, and since when. The secret itself is shown only when
/// it is made.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardSecretStatus {
    pub configured: bool,
    /// When it was set or last rotated.
    pub set_at: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/crm/card-secret", tag = "crm card",
    params(("account" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CardSecretStatus), (status = 401, body = ErrorBody),
        (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn secret_status(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CardSecretStatus>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    app.licensing.account(account_id).await?;
    let set_at = store(&app).secret_set_at(&account_id.to_string()).await?;
    Ok(Json(CardSecretStatus {
        configured: set_at.is_some(),
        set_at,
    }))
}

/// Most CRM-user links one page lists.
const MAX_LINKS_LISTED: u32 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LinkPage {
    /// 1 to 100, default 100.
    pub limit: Option<u32>,
    /// Links to skip (ordered by CRM user id), default 0.
    pub offset: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrmUserLinkView {
    pub crm_user_id: String,
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrmUserLinks {
    pub links: Vec<CrmUserLinkView>,
    /// All the account's links, for paging.
    pub total: u64,
}

/// The account's CRM users and the Parley users they are linked to, by CRM user id.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/crm/users", tag = "crm card",
    params(("account" = String, Path), LinkPage), security(("bearer" = [])),
    responses((status = 200, body = CrmUserLinks), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_links(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    crate::error::ApiQuery(page): crate::error::ApiQuery<LinkPage>,
) -> Result<Json<CrmUserLinks>, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    let limit = page.limit.unwrap_or(MAX_LINKS_LISTED);
    if !(1..=MAX_LINKS_LISTED).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!("limit must be between 1 and {MAX_LINKS_LISTED}."),
        });
    }
    let (rows, total) = store(&app)
        .links(&account_id.to_string(), limit, page.offset.unwrap_or(0))
        .await?;
    Ok(Json(CrmUserLinks {
        links: rows
            .into_iter()
            .map(|r| CrmUserLinkView {
                crm_user_id: r.crm_user_id,
                user_id: r.user_id,
                email: r.email,
                display_name: r.display_name,
                created_at: r.created_at,
            })
            .collect(),
        total,
    }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmUserLink {
    /// The user's id in the CRM: `[A-Za-z0-9_.:-]{1,64}`.
    pub crm_user_id: String,
    /// A Parley user of the account.
    pub user_id: String,
}

/// Link a CRM user to a Parley user of the account (replaces an earlier link of that CRM user).
#[utoipa::path(post, path = "/api/v1/accounts/{account}/crm/users", tag = "crm card",
    params(("account" = String, Path)), request_body = CrmUserLink, security(("bearer" = [])),
    responses((status = 201, body = CrmUserLink), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn link_user(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CrmUserLink>,
) -> Result<(StatusCode, Json<CrmUserLink>), ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    if !valid_external_id(&req.crm_user_id) {
        return Err(ApiError::invalid(
            "invalid_crm_user_id",
            "crm_user_id must be 1 to 64 characters of letters, digits, _ . : -",
        ));
    }
    let account = account_id.to_string();
    let user_id = Uuid::parse_str(&req.user_id)
        .map_err(|_| crate::routes::users::not_found_user())?
        .to_string();
    match app.users.store.by_id(&user_id).await? {
        Some(u) if u.account_id == account => {}
        _ => return Err(crate::routes::users::not_found_user()),
    }
    store(&app)
        .link_user(&account, &req.crm_user_id, &user_id, app.users.now())
        .await?;
    tracing::info!(account = %account, user = %user_id, "CRM user linked");
    Ok((
        StatusCode::CREATED,
        Json(CrmUserLink {
            crm_user_id: req.crm_user_id,
            user_id,
        }),
    ))
}

/// Remove a CRM user's link; their open card sessions end with it.
#[utoipa::path(delete, path = "/api/v1/accounts/{account}/crm/users/{crm_user}", tag = "crm card",
    params(("account" = String, Path), ("crm_user" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Unlinked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlink_user(
    State(app): State<AppState>,
    Path((account, crm_user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (_, account_id) = manager(&app, &headers, &account).await?;
    if !store(&app)
        .unlink_user(&account_id.to_string(), &crm_user)
        .await?
    {
        return Err(ApiError::NotFound("No such CRM user link.".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_title_is_the_deals_own() {
        let cases = [
            (
                Some("Поставка CRM-лицензий ACME"),
                "Поставка CRM-лицензий ACME",
            ),
            (Some("  Renewal\n2026\t(ACME) "), "Renewal 2026 (ACME)"),
            (Some(""), "Deal 42"),
            (Some(" \r\n"), "Deal 42"),
            (None, "Deal 42"),
        ];
        for (crm, title) in cases {
            assert_eq!(deal_meeting_title(crm, "42"), title, "{crm:?}");
        }
        // A long CRM title is cut to what a meeting title may hold (characters, not bytes).
        let long = "Сделка ".repeat(50);
        let t = deal_meeting_title(Some(&long), "42");
        assert!(t.chars().count() <= MeetingTitle::MAX_CHARS);
        assert!(MeetingTitle::parse(&t).is_ok(), "{t}");
    }
}
