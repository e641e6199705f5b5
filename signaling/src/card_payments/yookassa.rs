//! The two calls of the YooKassa API v3 Parley makes: create a payment (`POST /v3/payments`,
//! HTTP Basic `shopId:secretKey`, an `Idempotence-Key`) and read one back
//! (`GET /v3/payments/{id}`). Notifications are not signed, so a payment's state is only ever
//! taken from [`YooKassa::payment`].

use std::collections::HashMap;
use std::time::Duration;

use parley_licensing::Money;
use serde::Deserialize;
use serde_json::json;

use crate::configuration::YooKassaConfig;
use crate::crm::http::send;

/// Largest `Idempotence-Key` YooKassa accepts.
pub const MAX_IDEMPOTENCE_KEY: usize = 64;
/// Largest payment description YooKassa accepts.
const MAX_DESCRIPTION: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum YooKassaError {
    /// Timeout, connection failure, oversized or malformed answer.
    #[error("the payment provider cannot be reached: {0}")]
    Transport(String),
    /// The API refused the request (its `code` and `description`).
    #[error("the payment provider refused the request ({status} {code}): {description}")]
    Refused {
        status: u16,
        code: String,
        description: String,
    },
}

/// A payment as the API describes it (the fields Parley reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderPayment {
    pub id: String,
    /// `pending`, `waiting_for_capture`, `succeeded` or `canceled`.
    pub status: String,
    #[serde(default)]
    pub paid: bool,
    pub amount: ProviderAmount,
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    #[serde(default)]
    pub metadata: HashMap<String, serde_json::Value>,
    /// When the money was taken (RFC 3339), for succeeded payments.
    #[serde(default)]
    pub captured_at: Option<String>,
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderAmount {
    pub value: String,
    pub currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Confirmation {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub confirmation_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CancellationDetails {
    #[serde(default)]
    pub party: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl ProviderPayment {
    /// The metadata value `key` as a string.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }
}

/// What Parley asks the acquirer to charge.
pub struct NewPayment<'a> {
    pub amount: Money,
    pub return_url: &'a str,
    pub description: &'a str,
    pub account: &'a str,
    pub invoice: &'a str,
}

#[derive(Clone)]
pub struct YooKassa {
    http: reqwest::Client,
    timeout: Duration,
    api_url: String,
    shop_id: String,
    /// Travels only in the Authorization header; never in a log or an error.
    secret_key: crate::configuration::Secret,
}

impl std::fmt::Debug for YooKassa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YooKassa")
            .field("api_url", &self.api_url)
            .field("shop_id", &self.shop_id)
            .field("secret_key", &self.secret_key)
            .finish()
    }
}

impl YooKassa {
    pub fn new(config: &YooKassaConfig, http: reqwest::Client, timeout: Duration) -> YooKassa {
        YooKassa {
            http,
            timeout,
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            shop_id: config.shop_id.clone(),
            secret_key: config.secret_key.clone(),
        }
    }

    /// `POST /v3/payments`: a one-stage card payment (`capture: true`) the payer confirms on
    /// YooKassa's page. The same `idempotence_key` returns the same payment for 24 hours.
    pub async fn create(
        &self,
        idempotence_key: &str,
        p: &NewPayment<'_>,
    ) -> Result<ProviderPayment, YooKassaError> {
        let description: String = p.description.chars().take(MAX_DESCRIPTION).collect();
        let body = json!({
            "amount": {"value": p.amount.to_string(), "currency": "RUB"},
            "capture": true,
            "confirmation": {"type": "redirect", "return_url": p.return_url},
            "description": description,
            "metadata": {"account": p.account, "invoice": p.invoice},
        });
        let req = self
            .http
            .post(format!("{}/v3/payments", self.api_url))
            .basic_auth(&self.shop_id, Some(self.secret_key.expose()))
            .header("Idempotence-Key", idempotence_key)
            .json(&body);
        self.call(req).await
    }

    /// `GET /v3/payments/{id}`: the payment as the acquirer knows it now.
    pub async fn payment(&self, id: &str) -> Result<ProviderPayment, YooKassaError> {
        // YooKassa's ids are UUID-like; anything else never reaches the URL.
        if id.is_empty()
            || id.len() > 64
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(YooKassaError::Refused {
                status: 400,
                code: "invalid_request".into(),
                description: "malformed payment id".into(),
            });
        }
        let req = self
            .http
            .get(format!("{}/v3/payments/{id}", self.api_url))
            .basic_auth(&self.shop_id, Some(self.secret_key.expose()));
        self.call(req).await
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<ProviderPayment, YooKassaError> {
        let answer = send(req, self.timeout).await.map_err(|e| {
            use crate::crm::CrmError;
            // The shared sender words its errors for CRMs; say it for the acquirer.
            YooKassaError::Transport(match e {
                CrmError::Timeout(t) => format!("no answer within {t:?}"),
                CrmError::Connection(c) => c,
                CrmError::TooLarge { limit } => format!("an answer over {limit} bytes"),
                other => other.to_string(),
            })
        })?;
        if !answer.status.is_success() {
            // The API's error body: {"type": "error", "code", "description", "parameter"}.
            #[derive(Deserialize, Default)]
            struct ApiErr {
                #[serde(default)]
                code: String,
                #[serde(default)]
                description: String,
            }
            let e: ApiErr = serde_json::from_slice(&answer.body).unwrap_or_default();
            return Err(YooKassaError::Refused {
                status: answer.status.as_u16(),
                code: e.code.chars().take(100).collect(),
                description: e.description.chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| YooKassaError::Transport(format!("unexpected answer: {e}")))
    }
}
