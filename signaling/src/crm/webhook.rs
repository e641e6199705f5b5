//! Signed webhooks, both ways, and the generic CRM connector built on them.
//!
//! Every webhook is a `POST` of a JSON body with
//!
//! - `X-Parley-Timestamp: <unix seconds>`
//! - `X-Parley-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
//!
//! Signing the timestamp with the body lets the receiver refuse old copies: a captured request
//! can only be replayed within the tolerance window, and the [`WebhookVerifier`] remembers what
//! it accepted in that window. A receiver may see several `v1=` values separated by commas while
//! a secret is being rotated; any one that verifies is enough.
//!
//! The generic CRM connector speaks a small JSON contract documented on [`WebhookCrm`].

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::http::{self, Answer};
use super::{Contact, CreatedId, CrmConnector, CrmError, Deal, FollowUpTask, SecretString};

pub const TIMESTAMP_HEADER: &str = "x-parley-timestamp";
pub const SIGNATURE_HEADER: &str = "x-parley-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a timestamp may be from our clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Accepted (timestamp, signature) pairs remembered for replay detection.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &SecretString, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Parley-Signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Posts `body` signed with `secret`. `idempotency_key` lets the receiver drop a duplicate when
/// we retry after a timeout that hid a success.
pub(crate) async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &SecretString,
    body: Vec<u8>,
    idempotency_key: Option<&str>,
    timeout: Duration,
) -> Result<Answer, CrmError> {
    let ts = chrono::Utc::now().timestamp();
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sign(secret, ts, &body))
        .timeout(timeout);
    if let Some(k) = idempotency_key {
        req = req.header(IDEMPOTENCY_HEADER, k);
    }
    http::send(req.body(body), timeout).await
}

/// Why an inbound webhook was refused. The HTTP layer answers 401 for all but `Busy` (503), and
/// should not tell the caller which check failed beyond this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is too old")]
    Stale,
    #[error("the timestamp is in the future")]
    Future,
    #[error("the signature does not match")]
    BadSignature,
    #[error("this request was already received")]
    Replayed,
    #[error("too many webhooks in the replay window; try again shortly")]
    Busy,
}

/// Checks inbound signed webhooks. One per secret (per connected CRM); share it behind an `Arc`
/// so the replay memory is shared too.
pub struct WebhookVerifier {
    secret: SecretString,
    tolerance: Duration,
    capacity: usize,
    seen: Mutex<HashSet<(i64, Vec<u8>)>>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("tolerance", &self.tolerance)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    pub fn new(secret: SecretString) -> Self {
        Self::with_limits(secret, DEFAULT_TOLERANCE, DEFAULT_REPLAY_CAPACITY)
    }

    pub fn with_limits(secret: SecretString, tolerance: Duration, capacity: usize) -> Self {
        WebhookVerifier {
            secret,
            tolerance,
            capacity: capacity.max(1),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Verifies from request headers; `now` is unix seconds (a parameter so tests can move it).
    pub fn verify_headers(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let get = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(VerifyError::MissingHeader(name))
        };
        self.verify(get(TIMESTAMP_HEADER)?, get(SIGNATURE_HEADER)?, body, now)
    }

    pub fn verify(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let tol = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if ts < now.saturating_sub(tol) {
            return Err(VerifyError::Stale);
        }
        if ts > now.saturating_add(tol) {
            return Err(VerifyError::Future);
        }
        let expected = mac(&self.secret, ts, body);
        let matched = signature
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("v1="))
            .filter_map(|h| hex::decode(h).ok())
            // `verify_slice` compares in constant time: timing tells an attacker nothing about
            // how many leading bytes of a forged signature were right.
            .find(|sig| expected.clone().verify_slice(sig).is_ok())
            .ok_or(VerifyError::BadSignature)?;
        // Remember only what verified, so forged requests cannot fill the memory.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&(ts, matched.clone())) {
            return Err(VerifyError::Replayed);
        }
        if seen.len() >= self.capacity {
            // Entries outside the window can go: their timestamp alone now refuses them.
            let oldest_ok = now.saturating_sub(tol);
            seen.retain(|(t, _)| *t >= oldest_ok);
            if seen.len() >= self.capacity {
                // Forgetting a live entry would reopen a replay, so refuse instead; the
                // sender's retry will come after older entries age out.
                return Err(VerifyError::Busy);
            }
        }
        seen.insert((ts, matched));
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct WebhookCrmConfig {
    /// Where the CRM receives our calls.
    pub url: String,
    pub secret: SecretString,
    pub timeout: Duration,
}

/// A CRM we reach only by signed webhooks. Each call is a `POST` to one URL with a `type`:
///
/// - `{"type": "deal.read", "deal_id"}` → `{"deal": {"id", "title", "responsible_user_id"?,
///   "contacts": [{"id", "name", "emails": [..]}]}}`
/// - `{"type": "deal.note", "deal_id", "text"}` → `{"id"}`
/// - `{"type": "deal.task", "deal_id", "title", "description", "due" (RFC 3339),
///   "responsible_user_id"?}` → `{"id"}`
///
/// 404 means the deal is unknown; 429/5xx are retried; other 4xx are refusals.
pub struct WebhookCrm {
    cfg: WebhookCrmConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for WebhookCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCrm")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl WebhookCrm {
    pub fn new(cfg: WebhookCrmConfig, http: reqwest::Client) -> Self {
        WebhookCrm { cfg, http }
    }

    async fn call(&self, body: Value, deal_id: &str, what: &str) -> Result<Value, CrmError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| CrmError::Config(format!("cannot encode the request: {e}")))?;
        let answer = post_signed(
            &self.http,
            &self.cfg.url,
            &self.cfg.secret,
            bytes,
            None,
            self.cfg.timeout,
        )
        .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(CrmError::UnknownDeal(deal_id.to_owned()));
        }
        if !answer.status.is_success() {
            return Err(http::status_error(
                &answer,
                format!("{what}: {}", http::snippet(&answer.body)),
            ));
        }
        answer.json(what)
    }

    fn created(v: &Value, what: &str) -> Result<CreatedId, CrmError> {
        match v.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Ok(CreatedId(s.clone())),
            Some(Value::Number(n)) => Ok(CreatedId(n.to_string())),
            _ => Err(CrmError::Malformed(format!(
                "{what}: no \"id\" in the answer"
            ))),
        }
    }
}

#[derive(Deserialize)]
struct DealAnswer {
    deal: WireDeal,
}

#[derive(Deserialize)]
struct WireDeal {
    id: String,
    title: String,
    responsible_user_id: Option<String>,
    #[serde(default)]
    contacts: Vec<WireContact>,
}

#[derive(Deserialize)]
struct WireContact {
    id: String,
    name: String,
    #[serde(default)]
    emails: Vec<String>,
}

#[async_trait]
impl CrmConnector for WebhookCrm {
    fn system(&self) -> &'static str {
        "webhook"
    }

    async fn read_deal(&self, deal_id: &str) -> Result<Deal, CrmError> {
        let v = self
            .call(
                json!({"type": "deal.read", "deal_id": deal_id}),
                deal_id,
                "deal.read",
            )
            .await?;
        let d: DealAnswer = serde_json::from_value(v)
            .map_err(|e| CrmError::Malformed(format!("deal.read: {e}")))?;
        Ok(Deal {
            id: d.deal.id,
            title: d.deal.title,
            responsible_user_id: d.deal.responsible_user_id,
            contacts: d
                .deal
                .contacts
                .into_iter()
                .map(|c| Contact {
                    id: c.id,
                    name: c.name,
                    emails: c.emails,
                })
                .collect(),
        })
    }

    async fn add_note(&self, deal_id: &str, text: &str) -> Result<CreatedId, CrmError> {
        let v = self
            .call(
                json!({"type": "deal.note", "deal_id": deal_id, "text": text}),
                deal_id,
                "deal.note",
            )
            .await?;
        Self::created(&v, "deal.note")
    }

    async fn create_task(&self, deal_id: &str, task: &FollowUpTask) -> Result<CreatedId, CrmError> {
        let v = self
            .call(
                json!({
                    "type": "deal.task",
                    "deal_id": deal_id,
                    "title": task.title,
                    "description": task.description,
                    "due": task.due.to_rfc3339(),
                    "responsible_user_id": task.responsible_user_id,
                }),
                deal_id,
                "deal.task",
            )
            .await?;
        Self::created(&v, "deal.task")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_000_000;

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(SecretString::new("whsec_test"))
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Independent computation of the documented formula.
        let mut m = HmacSha256::new_from_slice(b"whsec_test").expect("key");
        m.update(format!("{NOW}.{{\"a\":1}}").as_bytes());
        let want = format!("v1={}", hex::encode(m.finalize().into_bytes()));
        assert_eq!(
            sign(&SecretString::new("whsec_test"), NOW, b"{\"a\":1}"),
            want
        );
    }

    #[test]
    fn good_signature_passes_once() {
        let v = verifier();
        let body = br#"{"deal_id":"42"}"#;
        let sig = sign(&SecretString::new("whsec_test"), NOW, body);
        assert_eq!(v.verify(&NOW.to_string(), &sig, body, NOW + 10), Ok(()));
        assert_eq!(
            v.verify(&NOW.to_string(), &sig, body, NOW + 11),
            Err(VerifyError::Replayed)
        );
    }

    #[test]
    fn bad_stale_future_and_malformed_are_refused() {
        let v = verifier();
        let s = SecretString::new("whsec_test");
        let body = b"{}";
        let other = sign(&SecretString::new("another"), NOW, body);
        assert_eq!(
            v.verify(&NOW.to_string(), &other, body, NOW),
            Err(VerifyError::BadSignature)
        );
        // Right secret, body changed in transit.
        let sig = sign(&s, NOW, body);
        assert_eq!(
            v.verify(&NOW.to_string(), &sig, b"{\"x\":1}", NOW),
            Err(VerifyError::BadSignature)
        );
        let old = NOW - 301;
        assert_eq!(
            v.verify(&old.to_string(), &sign(&s, old, body), body, NOW),
            Err(VerifyError::Stale)
        );
        let future = NOW + 301;
        assert_eq!(
            v.verify(&future.to_string(), &sign(&s, future, body), body, NOW),
            Err(VerifyError::Future)
        );
        // At the edges of the window it still passes.
        let edge = NOW - 300;
        assert_eq!(
            v.verify(&edge.to_string(), &sign(&s, edge, body), body, NOW),
            Ok(())
        );
        assert_eq!(
            v.verify("yesterday", &sig, body, NOW),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            v.verify(&NOW.to_string(), "v1=zz", body, NOW),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v.verify(&NOW.to_string(), "sha256=abc", body, NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn rotation_accepts_any_listed_signature() {
        let v = verifier();
        let body = b"{}";
        let header = format!(
            "v1={},{}",
            "00".repeat(32),
            sign(&SecretString::new("whsec_test"), NOW, body)
        );
        assert_eq!(v.verify(&NOW.to_string(), &header, body, NOW), Ok(()));
    }

    #[test]
    fn replay_memory_is_bounded_and_forgets_only_expired_entries() {
        let s = SecretString::new("whsec_test");
        let v = WebhookVerifier::with_limits(s.clone(), Duration::from_secs(300), 2);
        let ok = |body: &[u8], ts: i64, now: i64| {
            v.verify(&ts.to_string(), &sign(&s, ts, body), body, now)
        };
        assert_eq!(ok(b"1", NOW, NOW), Ok(()));
        assert_eq!(ok(b"2", NOW, NOW), Ok(()));
        // Full of live entries: refuse rather than forget one.
        assert_eq!(ok(b"3", NOW, NOW), Err(VerifyError::Busy));
        // Later, the first two are outside the window and make room.
        assert_eq!(ok(b"3", NOW + 400, NOW + 400), Ok(()));
        // And a replay of an old one is still refused, by its timestamp.
        assert_eq!(ok(b"1", NOW, NOW + 400), Err(VerifyError::Stale));
    }

    #[test]
    fn headers_are_read_case_insensitively() {
        let v = verifier();
        let body = b"{}";
        let mut h = HeaderMap::new();
        h.insert("X-Parley-Timestamp", NOW.to_string().parse().expect("hv"));
        assert_eq!(
            v.verify_headers(&h, body, NOW),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        h.insert(
            "X-Parley-Signature",
            sign(&SecretString::new("whsec_test"), NOW, body)
                .parse()
                .expect("hv"),
        );
        assert_eq!(v.verify_headers(&h, body, NOW), Ok(()));
    }
}
