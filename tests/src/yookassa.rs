//! A local stand-in for the YooKassa API v3, started by the tests on 127.0.0.1:0. It speaks the
//! two calls Parley makes with the documented paths, headers and bodies — `POST /v3/payments`
//! (HTTP Basic `shopId:secretKey`, `Idempotence-Key` required, the same key giving back the same
//! payment) and `GET /v3/payments/{id}` — refusing what the real API refuses with its error
//! body (`{"type": "error", "code", "description", "parameter"}`). Tests play the payer and the
//! acquirer: mark a payment succeeded or canceled, and send the notification to Parley.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

pub const SHOP_ID: &str = "506751";
pub const SECRET_KEY: &str = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0";

#[derive(Default)]
pub struct YooKassaState {
    /// Payments by id, as the API shows them.
    pub payments: HashMap<String, Value>,
    /// `Idempotence-Key` -> payment id.
    pub keys: HashMap<String, String>,
    /// Every API request: method, path and whether its credentials were right.
    pub requests: Vec<(String, String, bool)>,
}

#[derive(Clone)]
pub struct YooKassaStandIn {
    pub base_url: String,
    pub state: Arc<Mutex<YooKassaState>>,
    http: reqwest::Client,
}

type Shared = Arc<Mutex<YooKassaState>>;

fn api_error(
    status: StatusCode,
    code: &str,
    description: &str,
    parameter: Option<&str>,
) -> Response {
    let mut body = json!({"type": "error", "id": uuid::Uuid::new_v4().to_string(),
        "code": code, "description": description});
    if let Some(p) = parameter {
        body["parameter"] = json!(p);
    }
    (status, axum::Json(body)).into_response()
}

/// HTTP Basic with the shop's id and secret key, as the API requires.
fn authorized(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v.strip_prefix("Basic ") else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|creds| creds == format!("{SHOP_ID}:{SECRET_KEY}"))
}

fn gate(s: &Shared, method: &str, path: String, headers: &HeaderMap) -> Option<Response> {
    let ok = authorized(headers);
    s.lock()
        .expect("state")
        .requests
        .push((method.into(), path, ok));
    (!ok).then(|| {
        api_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Authentication by given credentials failed",
            None,
        )
    })
}

/// `"1234.50"`: digits, a point, exactly two decimals (the API's amount format).
fn is_amount(v: &str) -> bool {
    let Some((int, frac)) = v.split_once('.') else {
        return false;
    };
    !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.len() == 2
        && frac.chars().all(|c| c.is_ascii_digit())
}

async fn create(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = gate(&s, "POST", "/v3/payments".into(), &headers) {
        return r;
    }
    let Some(key) = headers
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotence key is missing or longer than 64 characters",
            Some("Idempotence-Key"),
        );
    };
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Malformed JSON",
            None,
        );
    };
    let bad = |param: &str, why: &str| {
        api_error(StatusCode::BAD_REQUEST, "invalid_request", why, Some(param))
    };
    let value = req["amount"]["value"].as_str().unwrap_or_default();
    if !is_amount(value) || value.parse::<f64>().map_or(true, |v| v <= 0.0) {
        return bad("amount.value", "Invalid amount value");
    }
    if req["amount"]["currency"] != "RUB" {
        return bad("amount.currency", "Invalid currency");
    }
    if !req["capture"].is_boolean() {
        return bad("capture", "capture must be a boolean");
    }
    let return_url = req["confirmation"]["return_url"]
        .as_str()
        .unwrap_or_default();
    if req["confirmation"]["type"] != "redirect" || !return_url.starts_with("http") {
        return bad("confirmation", "A redirect confirmation needs a return_url");
    }
    if req["description"]
        .as_str()
        .is_some_and(|d| d.chars().count() > 128)
    {
        return bad("description", "Description is longer than 128 characters");
    }
    if req["metadata"]
        .as_object()
        .is_some_and(|m| m.len() > 16 || m.keys().any(|k| k.len() > 32))
    {
        return bad("metadata", "Too many or too long metadata keys");
    }
    let mut st = s.lock().expect("state");
    // The same key gives back the first payment (the API keeps keys for 24 hours).
    if let Some(id) = st.keys.get(key) {
        return (StatusCode::OK, axum::Json(st.payments[id].clone())).into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let payment = json!({
        "id": id,
        "status": "pending",
        "paid": false,
        "amount": req["amount"],
        "confirmation": {"type": "redirect",
            "confirmation_url": format!("https://yoomoney.ru/checkout/payments/v2/contract?orderId={id}"),
            "return_url": return_url},
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "description": req["description"],
        "metadata": req.get("metadata").cloned().unwrap_or(json!({})),
        "recipient": {"account_id": SHOP_ID, "gateway_id": "2323500"},
        "refundable": false,
        "test": true,
    });
    st.keys.insert(key.to_owned(), id.clone());
    st.payments.insert(id, payment.clone());
    (StatusCode::OK, axum::Json(payment)).into_response()
}

async fn read(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, "GET", format!("/v3/payments/{id}"), &headers) {
        return r;
    }
    match s.lock().expect("state").payments.get(&id) {
        Some(p) => (StatusCode::OK, axum::Json(p.clone())).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Payment doesn't exist or access denied",
            None,
        ),
    }
}

impl YooKassaStandIn {
    pub async fn start() -> YooKassaStandIn {
        let state: Shared = Arc::default();
        let router = Router::new()
            .route("/v3/payments", post(create))
            .route("/v3/payments/{id}", get(read))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        YooKassaStandIn {
            base_url: format!("http://{addr}"),
            state,
            http: reqwest::Client::new(),
        }
    }

    /// Parley's settings for this stand-in.
    pub fn config(&self) -> parley_signaling::configuration::YooKassaConfig {
        parley_signaling::configuration::YooKassaConfig {
            shop_id: SHOP_ID.into(),
            secret_key: parley_signaling::configuration::Secret::new(SECRET_KEY),
            api_url: self.base_url.clone(),
        }
    }

    pub fn payment(&self, id: &str) -> Value {
        self.state.lock().expect("state").payments[id].clone()
    }

    pub fn payments_created(&self) -> usize {
        self.state.lock().expect("state").payments.len()
    }

    pub fn requests(&self) -> Vec<(String, String, bool)> {
        self.state.lock().expect("state").requests.clone()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().expect("state");
        f(st.payments
            .get_mut(id)
            .expect("a payment the stand-in created"));
    }

    /// The payer confirmed: the money is taken (`capture: true` skips `waiting_for_capture`).
    pub fn succeed(&self, id: &str) {
        self.update(id, |p| {
            let amount = p["amount"].clone();
            p["status"] = json!("succeeded");
            p["paid"] = json!(true);
            p["refundable"] = json!(true);
            p["captured_at"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            p["income_amount"] = amount;
            p["payment_method"] = json!({"type": "bank_card", "id": id, "saved": false,
                "title": "Bank card *4477", "card": {"first6": "555555", "last4": "4477",
                "expiry_year": "2030", "expiry_month": "02", "card_type": "MasterCard"}});
            if let Some(o) = p.as_object_mut() {
                o.remove("confirmation");
            }
        });
    }

    /// The payer did not confirm in time.
    pub fn cancel(&self, id: &str) {
        self.update(id, |p| {
            p["status"] = json!("canceled");
            p["cancellation_details"] =
                json!({"party": "yoo_money", "reason": "expired_on_confirmation"});
        });
    }

    /// Changes the amount the API reports (a record that no longer matches what was asked).
    pub fn set_amount(&self, id: &str, value: &str) {
        self.update(id, |p| p["amount"]["value"] = json!(value));
    }

    /// Sends the notification of the payment's current state to Parley, as YooKassa does; the
    /// answer's status.
    pub async fn notify(&self, parley_base: &str, id: &str) -> u16 {
        let object = self.payment(id);
        let event = format!("payment.{}", object["status"].as_str().unwrap_or("pending"));
        self.send_notification(parley_base, &event, object).await
    }

    /// Sends any notification body (a forged one, for instance); the answer's status.
    pub async fn send_notification(&self, parley_base: &str, event: &str, object: Value) -> u16 {
        self.http
            .post(format!(
                "{parley_base}/api/v1/payments/yookassa/notifications"
            ))
            .json(&json!({"type": "notification", "event": event, "object": object}))
            .send()
            .await
            .expect("notification")
            .status()
            .as_u16()
    }
}
