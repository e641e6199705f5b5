//! Privacy (agreement 12.5.7, 12.5.4): the audit log of actions on personal data and on
//! licenses — who, what, when, from where — readable by the account's admins, and erasure of a
//! person's data on request ([`erasure`]).

pub mod erasure;

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::routes::users::Manager;
use crate::startup::AppState;
use crate::users::Principal;

/// Set by [`client_ip`] on every request, after removing whatever the client sent under that
/// name: handlers that already take the `HeaderMap` learn the caller's address without another
/// extractor, and no client can choose what the audit log records.
pub const CLIENT_IP_HEADER: &str = "x-parley-client-ip";

/// Middleware: the caller's address — the peer's, or the first `X-Forwarded-For` entry when
/// the configuration says a trusted proxy sets it.
pub async fn client_ip(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(CLIENT_IP_HEADER);
    let forwarded = app
        .config
        .trusted_proxy
        .then(|| {
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = forwarded.or(peer)
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        req.headers_mut().insert(CLIENT_IP_HEADER, v);
    }
    next.run(req).await
}

/// Who did it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<String>,
}

impl Actor {
    pub fn operator() -> Actor {
        Actor {
            kind: "operator",
            id: None,
        }
    }
    pub fn account_key(account: impl ToString) -> Actor {
        Actor {
            kind: "api_key",
            id: Some(account.to_string()),
        }
    }
    pub fn user(id: &str) -> Actor {
        Actor {
            kind: "user",
            id: Some(id.to_owned()),
        }
    }
    /// The holder of a meeting's host credential (host key or host token).
    pub fn meeting_host(meeting: &str) -> Actor {
        Actor {
            kind: "meeting_host",
            id: Some(meeting.to_owned()),
        }
    }
    pub fn anonymous() -> Actor {
        Actor {
            kind: "anonymous",
            id: None,
        }
    }

    pub fn from_principal(p: &Principal) -> Actor {
        match p {
            Principal::Anonymous => Actor::anonymous(),
            Principal::Operator => Actor::operator(),
            Principal::AccountKey(a) => Actor::account_key(a),
            Principal::User(u) => Actor::user(&u.user.id),
        }
    }

    pub fn from_manager(m: &Manager, account: impl ToString) -> Actor {
        match m {
            Manager::Operator => Actor::operator(),
            Manager::AccountKey => Actor::account_key(account),
            Manager::Admin(u) => Actor::user(&u.user.id),
        }
    }

    /// The actor of a licensing call ([`crate::auth::Caller`]).
    pub fn from_caller(c: &crate::auth::Caller) -> Actor {
        match c {
            crate::auth::Caller::Anonymous => Actor::anonymous(),
            crate::auth::Caller::Operator => Actor::operator(),
            crate::auth::Caller::Account(a) => Actor::account_key(a),
            crate::auth::Caller::User { user_id, .. } => Actor::user(user_id),
        }
    }
}

/// What was acted on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: &'static str,
    pub id: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn new(kind: &'static str, id: &'a str) -> Target<'a> {
        Target { kind, id: Some(id) }
    }
}

/// Writes one entry. A failure is logged, not returned: the action itself already happened and
/// refusing its answer would only make the caller retry it.
pub async fn record(
    app: &AppState,
    headers: &HeaderMap,
    actor: Actor,
    account: Option<&str>,
    action: &'static str,
    target: Target<'_>,
) {
    let from = headers
        .get(CLIENT_IP_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let r = sqlx::query(
        "INSERT INTO audit_log (at, actor_kind, actor_id, account_id, action, target_kind, \
         target_id, from_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(crate::store::time::now_text())
    .bind(actor.kind)
    .bind(actor.id)
    .bind(account)
    .bind(action)
    .bind(target.kind)
    .bind(target.id)
    .bind(from)
    .execute(app.store.pool())
    .await;
    if let Err(e) = r {
        tracing::error!(action, error = %e, "cannot write the audit log");
    }
}

#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub at: DateTime<Utc>,
    /// `user`, `api_key`, `operator`, `meeting_host`, `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub account_id: Option<String>,
    /// E.g. `auth.sign_in`, `user.invite`, `seat.assign`, `summary.read`, `person.erase`.
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// The caller's IP address.
    pub from_ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this action (`seat.assign`), or a group of them when it ends with a dot (`seat.`).
    pub action: Option<String>,
    /// Only entries on or after this Moscow day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Only entries on or before this Moscow day, `YYYY-MM-DD`.
    pub to: Option<String>,
}

/// An action name or group as [`AuditParams::action`] takes it: lower-case words and dots.
fn action_filter(a: &str) -> Result<&str, ApiError> {
    let ok = (1..=64).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
    ok.then_some(a).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_query",
        message: "action must be an action such as seat.assign, or a group such as seat.".into(),
    })
}

fn day_filter(field: &str, v: &str) -> Result<chrono::NaiveDate, ApiError> {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .filter(|_| v.len() == 10)
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_date",
            message: format!("{field} must be a date YYYY-MM-DD."),
        })
}

/// The account's audit log, newest first, optionally of one action (or group) and a period of
/// Moscow days (account admin session, the account's API key or the operator; another
/// account's admin gets 404).
#[utoipa::path(get, path = "/api/v1/accounts/{account}/audit", tag = "privacy",
    params(("account" = String, Path), AuditParams), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let (_, account) = crate::routes::users::manager(&app, &headers, &account).await?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            message: "limit must be between 1 and 200.".into(),
        });
    }
    let before = match params.cursor.as_deref() {
        None => i64::MAX,
        Some(c) => c.parse::<i64>().map_err(|_| ApiError::BadRequest {
            code: "invalid_cursor",
            message: "cursor is not one this server returned.".into(),
        })?,
    };
    let action = params.action.as_deref().map(action_filter).transpose()?;
    let (exact, group) = match action {
        Some(a) if a.ends_with('.') => (None, Some(a)),
        other => (other, None),
    };
    // Timestamps are RFC 3339 text in UTC, all written by sqlx alike: text order is time order.
    let since = params
        .from
        .as_deref()
        .map(|v| day_filter("from", v))
        .transpose()?
        .map(crate::usage::day_start);
    let until = params
        .to
        .as_deref()
        .map(|v| day_filter("to", v))
        .transpose()?
        .and_then(|d| d.succ_opt())
        .map(crate::usage::day_start);
    let entries = sqlx::query_as::<_, AuditEntry>(
        "SELECT seq, at, actor_kind, actor_id, account_id, action, target_kind, target_id, \
         from_ip FROM audit_log WHERE account_id = $1 AND seq < $2 \
         AND ($4 IS NULL OR action = $4) \
         AND ($5 IS NULL OR substr(action, 1, length($5)) = $5) \
         AND ($6 IS NULL OR at >= $6) AND ($7 IS NULL OR at < $7) \
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(account.to_string())
    .bind(before)
    .bind(i64::from(limit))
    .bind(exact)
    .bind(group)
    .bind(crate::store::time::opt_text(since))
    .bind(crate::store::time::opt_text(until))
    .fetch_all(app.store.pool())
    .await?;
    let next_cursor = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
