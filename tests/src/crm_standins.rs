//! Local stand-ins for the CRMs and for a customer's webhook receiver, started by the tests on
//! 127.0.0.1:0. They implement the endpoints Parley uses with the paths, auth headers and
//! bodies of the public amoCRM v4 and Bitrix24 REST documentation, check what they receive
//! (refusing it as the real API would), answer with realistic bodies, and record every request
//! (path, arrival time, auth) so tests assert on what the server saw.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A failure the next API request gets instead of its normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with a JSON error body; `Retry-After` when given.
    Status(u16, Option<u64>),
    /// Never answers (longer than any client timeout in the tests).
    Hang,
    /// 200 with an HTML page instead of JSON, as a misconfigured proxy does.
    Garbage,
    /// 200 with a body larger than Parley's 1 MiB limit.
    Huge,
    /// Bitrix24's rate-limit answer: 503 `{"error": "QUERY_LIMIT_EXCEEDED"}`.
    BitrixQueryLimit,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub at: Instant,
    pub authorization: Option<String>,
    pub status: u16,
}

async fn spawn_router(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stand-in");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn fault_response(f: &Fault) -> Option<Response> {
    Some(match f {
        Fault::Status(code, retry_after) => {
            let status = StatusCode::from_u16(*code).expect("status");
            let body = json!({"title": "Error", "status": code, "detail": "stand-in fault"});
            let mut r = (status, axum::Json(body)).into_response();
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, s.to_string().parse().expect("hv"));
            }
            r
        }
        Fault::Hang => return None,
        Fault::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        Fault::Huge => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"pad\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)),
        )
            .into_response(),
        Fault::BitrixQueryLimit => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
            ),
        )
            .into_response(),
    })
}

/// Answers a fault, or hangs for good (the client's timeout ends the request).
async fn apply_fault(f: Fault) -> Response {
    match fault_response(&f) {
        Some(r) => r,
        None => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// amoCRM

pub const AMO_CLIENT_ID: &str = "7c1a3f40-0000-4000-8000-00000000a11c";
pub const AMO_CLIENT_SECRET: &str = "amo-client-secret-stand-in";
pub const AMO_REDIRECT_URI: &str = "https://parley.example/oauth/amocrm";
/// The lead the stand-in knows, with two contacts.
pub const AMO_LEAD_ID: u64 = 24_681_357;

#[derive(Default)]
pub struct AmoState {
    /// The one access token currently accepted (none at first: every stored token is expired).
    pub valid_access: Option<String>,
    pub valid_refresh: String,
    pub generation: u32,
    pub requests: Vec<Recorded>,
    pub refreshes: u32,
    pub notes: Vec<(u64, Value)>,
    pub tasks: Vec<Value>,
    /// Faults for the next API (non-OAuth) requests, in order.
    pub faults: VecDeque<Fault>,
    /// The URL a lead's page shows in its widget iframe (Parley's signed deal-card launch), as
    /// an installed widget would; none: the page has no widget.
    pub card_launch: Option<String>,
}

#[derive(Clone)]
pub struct AmoStandIn {
    pub base_url: String,
    pub state: Arc<Mutex<AmoState>>,
}

impl AmoStandIn {
    /// `refresh_token` is the one refresh token the stand-in will accept.
    pub async fn start(refresh_token: &str) -> AmoStandIn {
        let state = Arc::new(Mutex::new(AmoState {
            valid_refresh: refresh_token.to_owned(),
            ..AmoState::default()
        }));
        let router = Router::new()
            .route("/oauth2/access_token", post(amo_token))
            .route("/api/v4/leads/{id}", get(amo_lead))
            .route("/api/v4/contacts/{id}", get(amo_contact))
            .route("/api/v4/leads/{id}/notes", post(amo_notes))
            .route("/api/v4/tasks", post(amo_tasks))
            .route("/leads/detail/{id}", get(amo_lead_page))
            .with_state(state.clone());
        AmoStandIn {
            base_url: spawn_router(router).await,
            state,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, AmoState> {
        self.state.lock().expect("stand-in state")
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The web page of the lead [`AMO_LEAD_ID`], with the widget iframe once `card_launch` is set.
    pub fn lead_page_url(&self) -> String {
        format!("{}/leads/detail/{AMO_LEAD_ID}", self.base_url)
    }
}

type AmoShared = Arc<Mutex<AmoState>>;

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"title": title, "type": "https://httpstatus.es/".to_owned() + status.as_str(),
               "status": status.as_u16(), "detail": detail})
        .to_string(),
    )
        .into_response()
}

fn hal(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

/// Common gate of every amoCRM API request: record it, apply a scripted fault, check the
/// bearer token. `Err` is the answer to give instead of the normal one.
async fn amo_gate(
    s: &AmoShared,
    method: &str,
    path: String,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (fault, status) = {
        let mut g = s.lock().expect("state");
        let fault = g.faults.pop_front();
        let authorized = matches!((&g.valid_access, &auth),
            (Some(valid), Some(a)) if *a == format!("Bearer {valid}"));
        let status = match &fault {
            Some(Fault::Status(c, _)) => *c,
            Some(Fault::Hang) => 0,
            Some(_) => 200,
            None if authorized => 200,
            None => 401,
        };
        g.requests.push(Recorded {
            method: method.into(),
            path,
            at: Instant::now(),
            authorization: auth.clone(),
            status,
        });
        (fault, status)
    };
    if let Some(f) = fault {
        return Err(apply_fault(f).await);
    }
    if status == 401 {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Access token is expired or invalid",
        ));
    }
    Ok(())
}

async fn amo_token(State(s): State<AmoShared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = s.lock().expect("state");
    g.requests.push(Recorded {
        method: "POST".into(),
        path: "/oauth2/access_token".into(),
        at: Instant::now(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status: 200,
    });
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", "body is not JSON");
    };
    let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
    if field("grant_type") != "refresh_token"
        || field("client_id") != AMO_CLIENT_ID
        || field("client_secret") != AMO_CLIENT_SECRET
        || field("redirect_uri") != AMO_REDIRECT_URI
    {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", "invalid client");
    }
    if field("refresh_token") != g.valid_refresh {
        // Refresh tokens are single-use in amoCRM.
        return problem(
            StatusCode::BAD_REQUEST,
            "Некорректный запрос",
            "Token has been revoked",
        );
    }
    g.generation += 1;
    g.refreshes += 1;
    let access = format!("access-{}", g.generation);
    let refresh = format!("refresh-{}", g.generation);
    g.valid_access = Some(access.clone());
    g.valid_refresh = refresh.clone();
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": 86400,
        "access_token": access,
        "refresh_token": refresh,
    }))
    .into_response()
}

async fn amo_lead(
    State(s): State<AmoShared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = amo_gate(&s, "GET", format!("/api/v4/leads/{id}"), &headers).await {
        return r;
    }
    if id != AMO_LEAD_ID.to_string() {
        // amoCRM answers an unknown id with 204 and no body.
        return StatusCode::NO_CONTENT.into_response();
    }
    let with_contacts = q
        .get("with")
        .is_some_and(|w| w.split(',').any(|x| x == "contacts"));
    let mut embedded = json!({"tags": []});
    if with_contacts {
        embedded["contacts"] = json!([
            {"id": 501, "is_main": false, "_links": {"self": {"href": "/api/v4/contacts/501"}}},
            {"id": 500, "is_main": true, "_links": {"self": {"href": "/api/v4/contacts/500"}}}
        ]);
    }
    hal(json!({
        "id": AMO_LEAD_ID, "name": "Поставка CRM-лицензий ACME", "price": 150000,
        "responsible_user_id": 8_123_001, "group_id": 0, "status_id": 142, "pipeline_id": 3_300_001,
        "created_at": 1_767_000_000, "updated_at": 1_767_100_000, "account_id": 29_000_111,
        "custom_fields_values": null,
        "_links": {"self": {"href": format!("/api/v4/leads/{AMO_LEAD_ID}")}},
        "_embedded": embedded
    }))
}

/// The lead's page in amoCRM's web UI (same origin as the API, as on `{subdomain}.amocrm.ru`):
/// the lead's name and, when a widget is installed, its iframe — where the deal card lives.
async fn amo_lead_page(State(s): State<AmoShared>, Path(id): Path<String>) -> Response {
    if id != AMO_LEAD_ID.to_string() {
        return (StatusCode::NOT_FOUND, "no such lead").into_response();
    }
    let launch = s.lock().expect("state").card_launch.clone();
    let widget = launch.map_or_else(String::new, |src| {
        let src = src.replace('&', "&amp;").replace('"', "&quot;");
        format!(
            "<iframe id=\"card\" title=\"Parley\" src=\"{src}\" width=\"480\" height=\"900\" \
             allow=\"clipboard-write\"></iframe>"
        )
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><title>Сделка {AMO_LEAD_ID} — amoCRM</title></head>\
             <body><h1>Поставка CRM-лицензий ACME</h1>{widget}</body></html>"
        ),
    )
        .into_response()
}

async fn amo_contact(
    State(s): State<AmoShared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = amo_gate(&s, "GET", format!("/api/v4/contacts/{id}"), &headers).await {
        return r;
    }
    let (name, first, last, emails) = match id.as_str() {
        "500" => (
            "Анна Смирнова",
            "Анна",
            "Смирнова",
            json!([{"value": "anna.home@example.ru", "enum_id": 2, "enum_code": "PRIV"},
                   {"value": "anna@acme.example", "enum_id": 1, "enum_code": "WORK"}]),
        ),
        "501" => (
            "Пётр Иванов",
            "Пётр",
            "Иванов",
            json!([{"value": "petr@acme.example", "enum_id": 1, "enum_code": "WORK"}]),
        ),
        _ => return StatusCode::NO_CONTENT.into_response(),
    };
    hal(json!({
        "id": id.parse::<u64>().unwrap_or_default(), "name": name, "first_name": first,
        "last_name": last, "responsible_user_id": 8_123_001,
        "custom_fields_values": [
            {"field_id": 1_001, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
             "values": [{"value": "+7 900 000-00-00", "enum_id": 3, "enum_code": "WORK"}]},
            {"field_id": 1_002, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext",
             "values": emails}
        ],
        "_links": {"self": {"href": format!("/api/v4/contacts/{id}")}}
    }))
}

async fn amo_notes(
    State(s): State<AmoShared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = amo_gate(&s, "POST", format!("/api/v4/leads/{id}/notes"), &headers).await {
        return r;
    }
    let Ok(lead) = id.parse::<u64>() else {
        return problem(StatusCode::NOT_FOUND, "Not Found", "no such lead");
    };
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "expected a JSON array",
        );
    };
    let valid = !items.is_empty()
        && items.iter().all(|n| {
            n["note_type"] == "common"
                && n["params"]["text"].as_str().is_some_and(|t| !t.is_empty())
        });
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"title": "Bad Request", "status": 400,
                "validation-errors": [{"request_id": "0", "errors": [{"code": "NotSupportedChoice", "path": "note_type"}]}]})),
        )
            .into_response();
    }
    let mut g = s.lock().expect("state");
    let mut created = Vec::new();
    for (i, n) in items.into_iter().enumerate() {
        g.notes.push((lead, n));
        let nid = 70_000 + g.notes.len() as u64;
        created.push(
            json!({"id": nid, "entity_id": lead, "request_id": i.to_string(),
            "_links": {"self": {"href": format!("/api/v4/leads/{lead}/notes/{nid}")}}}),
        );
    }
    hal(
        json!({"_links": {"self": {"href": format!("/api/v4/leads/{lead}/notes")}},
               "_embedded": {"notes": created}}),
    )
}

async fn amo_tasks(State(s): State<AmoShared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = amo_gate(&s, "POST", "/api/v4/tasks".into(), &headers).await {
        return r;
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "expected a JSON array",
        );
    };
    let valid = !items.is_empty()
        && items.iter().all(|t| {
            t["text"].as_str().is_some_and(|x| !x.is_empty())
                && t["complete_till"].as_i64().is_some()
                && t["entity_type"] == "leads"
                && t["entity_id"].as_u64().is_some()
        });
    if !valid {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", "invalid task");
    }
    let mut g = s.lock().expect("state");
    let mut created = Vec::new();
    for (i, t) in items.into_iter().enumerate() {
        g.tasks.push(t);
        let tid = 90_000 + g.tasks.len() as u64;
        created.push(json!({"id": tid, "request_id": i.to_string(),
            "_links": {"self": {"href": format!("/api/v4/tasks/{tid}")}}}));
    }
    hal(json!({"_links": {"self": {"href": "/api/v4/tasks"}}, "_embedded": {"tasks": created}}))
}

// ---------------------------------------------------------------------------------------------
// Bitrix24

pub const BITRIX_USER: &str = "1";
pub const BITRIX_CODE: &str = "k2v9x1w8q7e6r5t4";
pub const BITRIX_DEAL_ID: u64 = 4821;

#[derive(Default)]
pub struct BitrixState {
    pub requests: Vec<Recorded>,
    /// (method, params) of every authorised call.
    pub calls: Vec<(String, Value)>,
    pub comments: Vec<Value>,
    pub tasks: Vec<Value>,
    pub faults: VecDeque<Fault>,
}

#[derive(Clone)]
pub struct BitrixStandIn {
    /// The portal's origin; the webhook URL is [`BitrixStandIn::webhook_url`].
    pub origin: String,
    pub state: Arc<Mutex<BitrixState>>,
}

impl BitrixStandIn {
    pub async fn start() -> BitrixStandIn {
        let state = Arc::new(Mutex::new(BitrixState::default()));
        let router = Router::new()
            .route("/rest/{user}/{code}/{method}", post(bitrix_method))
            .with_state(state.clone());
        BitrixStandIn {
            origin: spawn_router(router).await,
            state,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/rest/{BITRIX_USER}/{BITRIX_CODE}/", self.origin)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, BitrixState> {
        self.state.lock().expect("stand-in state")
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }
}

fn bitrix_ok(result: Value) -> Response {
    axum::Json(json!({
        "result": result,
        "time": {"start": 1_767_000_000.1, "finish": 1_767_000_000.2, "duration": 0.1,
                 "processing": 0.05, "date_start": "2026-03-02T10:00:00+03:00",
                 "date_finish": "2026-03-02T10:00:00+03:00"}
    }))
    .into_response()
}

fn bitrix_err(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn bitrix_method(
    State(s): State<Arc<Mutex<BitrixState>>>,
    Path((user, code, method)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let method = method.trim_end_matches(".json").to_owned();
    let fault = {
        let mut g = s.lock().expect("state");
        let f = g.faults.pop_front();
        g.requests.push(Recorded {
            method: "POST".into(),
            path: format!("/rest/{user}/{code}/{method}"),
            at: Instant::now(),
            authorization: None,
            status: 0,
        });
        f
    };
    if let Some(f) = fault {
        return apply_fault(f).await;
    }
    if user != BITRIX_USER || code != BITRIX_CODE {
        return bitrix_err(
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
            "Invalid request credentials",
        );
    }
    let Ok(params) = serde_json::from_slice::<Value>(&body) else {
        return bitrix_err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "Invalid JSON");
    };
    s.lock()
        .expect("state")
        .calls
        .push((method.clone(), params.clone()));
    let id_param = |v: &Value| -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    };
    match method.as_str() {
        "crm.deal.get" => match id_param(&params["id"]) {
            Some(BITRIX_DEAL_ID) => bitrix_ok(json!({
                "ID": BITRIX_DEAL_ID.to_string(), "TITLE": "Внедрение видеосвязи для отдела продаж",
                "TYPE_ID": "SALE", "STAGE_ID": "NEW", "CURRENCY_ID": "RUB", "OPPORTUNITY": "240000.00",
                "CONTACT_ID": "31", "ASSIGNED_BY_ID": "7", "CREATED_BY_ID": "1",
                "DATE_CREATE": "2026-02-20T10:00:00+03:00"
            })),
            Some(_) => bitrix_err(StatusCode::BAD_REQUEST, "", "Not found"),
            None => bitrix_err(StatusCode::BAD_REQUEST, "", "ID is not defined or invalid."),
        },
        "crm.deal.contact.items.get" => match id_param(&params["id"]) {
            Some(BITRIX_DEAL_ID) => bitrix_ok(json!([
                {"CONTACT_ID": 32, "SORT": 20, "ROLE_ID": 0, "IS_PRIMARY": "N"},
                {"CONTACT_ID": 31, "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "Y"}
            ])),
            _ => bitrix_err(StatusCode::BAD_REQUEST, "", "Not found"),
        },
        "crm.contact.get" => match id_param(&params["id"]) {
            Some(31) => bitrix_ok(json!({
                "ID": "31", "NAME": "Мария", "SECOND_NAME": "", "LAST_NAME": "Кузнецова",
                "HAS_EMAIL": "Y",
                "EMAIL": [{"ID": "101", "VALUE_TYPE": "HOME", "VALUE": "maria@home.example", "TYPE_ID": "EMAIL"},
                          {"ID": "102", "VALUE_TYPE": "WORK", "VALUE": "m.kuznetsova@client.example", "TYPE_ID": "EMAIL"}]
            })),
            Some(32) => bitrix_ok(json!({
                "ID": "32", "NAME": "Олег", "LAST_NAME": "Петров", "HAS_EMAIL": "N"
            })),
            _ => bitrix_err(StatusCode::BAD_REQUEST, "", "Not found"),
        },
        "crm.timeline.comment.add" => {
            let f = &params["fields"];
            let ok = f["ENTITY_TYPE"] == "deal"
                && id_param(&f["ENTITY_ID"]).is_some()
                && f["COMMENT"].as_str().is_some_and(|c| !c.is_empty());
            if !ok {
                return bitrix_err(
                    StatusCode::BAD_REQUEST,
                    "ERROR_CORE",
                    "Required fields: ENTITY_ID, ENTITY_TYPE, COMMENT",
                );
            }
            if id_param(&f["ENTITY_ID"]) != Some(BITRIX_DEAL_ID) {
                return bitrix_err(StatusCode::BAD_REQUEST, "ERROR_NOT_FOUND", "Not found");
            }
            let mut g = s.lock().expect("state");
            g.comments.push(f.clone());
            bitrix_ok(json!(500 + g.comments.len()))
        }
        "tasks.task.add" => {
            let f = &params["fields"];
            let ok = f["TITLE"].as_str().is_some_and(|t| !t.is_empty())
                && id_param(&f["RESPONSIBLE_ID"]).is_some()
                && f["UF_CRM_TASK"].as_array().is_some_and(|a| {
                    a.iter()
                        .all(|x| x.as_str().is_some_and(|x| x.starts_with("D_")))
                });
            if !ok {
                return bitrix_err(
                    StatusCode::BAD_REQUEST,
                    "ERROR_CORE",
                    "Не указан ответственный или название задачи",
                );
            }
            let mut g = s.lock().expect("state");
            g.tasks.push(f.clone());
            let id = (700 + g.tasks.len()).to_string();
            bitrix_ok(
                json!({"task": {"id": id, "title": f["TITLE"], "responsibleId": f["RESPONSIBLE_ID"],
                                      "ufCrmTask": f["UF_CRM_TASK"], "deadline": f["DEADLINE"]}}),
            )
        }
        _ => bitrix_err(
            StatusCode::NOT_FOUND,
            "ERROR_METHOD_NOT_FOUND",
            "Method not found!",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// A customer's webhook receiver

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub at: Instant,
    pub idempotency_key: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// Whether the signature verified, computed here independently of Parley's code.
    pub signature_ok: bool,
    pub body: Value,
    /// The body as it arrived (what the signature covers).
    pub raw_body: Bytes,
}

#[derive(Default)]
pub struct ReceiverState {
    pub received: Vec<ReceivedWebhook>,
    pub faults: VecDeque<Fault>,
    /// Replaces the secret given to `start`: for endpoints whose secret the server generates
    /// (known only after the receiver's URL was registered).
    pub secret: Option<String>,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    pub state: Arc<Mutex<ReceiverState>>,
}

impl WebhookReceiver {
    pub async fn start(secret: &str) -> WebhookReceiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let secret = secret.to_owned();
        let st = state.clone();
        let router = Router::new().route(
            "/hooks/parley",
            post(move |headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                let secret = secret.clone();
                async move { receive(st, &secret, headers, body).await }
            }),
        );
        WebhookReceiver {
            url: format!("{}/hooks/parley", spawn_router(router).await),
            state,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, ReceiverState> {
        self.state.lock().expect("receiver state")
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }
}

/// `v1=` + hex HMAC-SHA256(secret, "{timestamp}.{body}"), the documented scheme.
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

async fn receive(
    st: Arc<Mutex<ReceiverState>>,
    secret: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let timestamp = h("x-parley-timestamp");
    let signature = h("x-parley-signature");
    let secret = st
        .lock()
        .expect("state")
        .secret
        .clone()
        .unwrap_or_else(|| secret.to_owned());
    let signature_ok = match (&timestamp, &signature) {
        (Some(t), Some(s)) => *s == expected_signature(&secret, t, &body),
        _ => false,
    };
    let fault = {
        let mut g = st.lock().expect("state");
        let f = g.faults.pop_front();
        g.received.push(ReceivedWebhook {
            at: Instant::now(),
            idempotency_key: h("idempotency-key"),
            timestamp,
            signature,
            signature_ok,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            raw_body: body.clone(),
        });
        f
    };
    if let Some(f) = fault {
        return apply_fault(f).await;
    }
    if !signature_ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}
