//! amoCRM REST API v4 (`https://{subdomain}.amocrm.ru/api/v4/…`) with OAuth 2 tokens.
//!
//! - read a deal: `GET /api/v4/leads/{id}?with=contacts`, then `GET /api/v4/contacts/{id}` for
//!   each linked contact (emails are the values of the custom field with `field_code` `EMAIL`);
//! - note: `POST /api/v4/leads/{id}/notes` with `[{"note_type": "common", "params": {"text"}}]`;
//! - task: `POST /api/v4/tasks` with `[{"text", "complete_till", "entity_id", "entity_type":
//!   "leads", "task_type_id"}]`.
//!
//! Access tokens live about a day; refresh tokens are single-use (each refresh returns a new
//! pair and invalidates the old refresh token), so a refreshed pair must be persisted at once
//! through the [`TokenStore`] and two refreshes must never race.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{self, Answer};
use super::{Contact, CreatedId, CrmConnector, CrmError, Deal, FollowUpTask, SecretString};

/// Contacts read per deal; a deal with more is unusual and the widget shows a handful anyway.
const MAX_CONTACTS: usize = 50;
/// Refresh ahead of the announced expiry so a token does not die between check and use.
const EXPIRY_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug, Clone)]
pub struct AmoCrmConfig {
    /// `https://{subdomain}.amocrm.ru`; tests point it at a local stand-in.
    pub base_url: String,
    /// The integration's id and secret, and the redirect URI registered with it (amoCRM
    /// checks it on refresh too).
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    /// Key of this connection's tokens in the [`TokenStore`] (e.g. the account's connection id).
    pub connection_id: String,
    /// Per-request deadline, including reading the body.
    pub timeout: Duration,
    /// amoCRM's task type for follow-ups: 1 is "Follow-up" (call), 2 "Meeting".
    pub task_type_id: u32,
}

impl AmoCrmConfig {
    pub fn base_url_for(subdomain: &str) -> String {
        format!("https://{subdomain}.amocrm.ru")
    }
}

/// An OAuth token pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmoTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// When the access token expires, when known; `None` means "use it until a 401".
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a connection's tokens are kept. The lead backs this by the database (encrypted at rest
/// is a later step); [`InMemoryTokenStore`] serves tests and a single process.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self, connection_id: &str) -> Result<Option<AmoTokens>, CrmError>;
    async fn save(&self, connection_id: &str, tokens: &AmoTokens) -> Result<(), CrmError>;
}

#[derive(Debug, Default)]
pub struct InMemoryTokenStore {
    tokens: Mutex<HashMap<String, AmoTokens>>,
}

impl InMemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(connection_id: &str, tokens: AmoTokens) -> Self {
        let s = Self::default();
        s.lock().insert(connection_id.to_owned(), tokens);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AmoTokens>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts),
        // so a poisoned lock is still good data.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, connection_id: &str) -> Option<AmoTokens> {
        self.lock().get(connection_id).cloned()
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn load(&self, connection_id: &str) -> Result<Option<AmoTokens>, CrmError> {
        Ok(self.get(connection_id))
    }
    async fn save(&self, connection_id: &str, tokens: &AmoTokens) -> Result<(), CrmError> {
        self.lock().insert(connection_id.to_owned(), tokens.clone());
        Ok(())
    }
}

pub struct AmoCrm {
    cfg: AmoCrmConfig,
    http: reqwest::Client,
    tokens: Arc<dyn TokenStore>,
    /// Serialises refreshes: amoCRM refresh tokens are single-use, so a second concurrent
    /// refresh with the same token would fail and could lock the connection out.
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AmoCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoCrm").field("cfg", &self.cfg).finish()
    }
}

impl AmoCrm {
    /// `http` may be shared with other connectors; the per-request timeout comes from `cfg`.
    pub fn new(cfg: AmoCrmConfig, http: reqwest::Client, tokens: Arc<dyn TokenStore>) -> Self {
        AmoCrm {
            cfg,
            http,
            tokens,
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path)
    }

    async fn current_tokens(&self) -> Result<AmoTokens, CrmError> {
        let tokens = self
            .tokens
            .load(&self.cfg.connection_id)
            .await?
            .ok_or_else(|| {
                CrmError::Unauthorized("no OAuth tokens are stored for this connection".into())
            })?;
        match tokens.expires_at {
            Some(at) if at - EXPIRY_MARGIN <= Utc::now() => self.refresh(&tokens).await,
            _ => Ok(tokens),
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        access: &SecretString,
    ) -> Result<Answer, CrmError> {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(access.expose())
            .timeout(self.cfg.timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        http::send(req, self.cfg.timeout).await
    }

    /// One API call; on a 401 the access token is refreshed once and the call repeated (an
    /// access token can be revoked or expire early; a second 401 is the caller's error).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CrmError> {
        let tokens = self.current_tokens().await?;
        let answer = self
            .send_once(&method, path, body, &tokens.access_token)
            .await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        tracing::info!(connection = %self.cfg.connection_id, "amoCRM refused the access token; refreshing");
        let fresh = self.refresh(&tokens).await?;
        self.send_once(&method, path, body, &fresh.access_token)
            .await
    }

    /// Exchanges the refresh token for a new pair and stores it. `stale` is the pair that
    /// failed: if another task refreshed meanwhile, its pair is used instead of refreshing again.
    async fn refresh(&self, stale: &AmoTokens) -> Result<AmoTokens, CrmError> {
        let _guard = self.refresh_lock.lock().await;
        if let Some(current) = self.tokens.load(&self.cfg.connection_id).await?
            && current.access_token != stale.access_token
        {
            return Ok(current);
        }
        let body = json!({
            "client_id": self.cfg.client_id,
            "client_secret": self.cfg.client_secret.expose(),
            "grant_type": "refresh_token",
            "refresh_token": stale.refresh_token.expose(),
            "redirect_uri": self.cfg.redirect_uri,
        });
        let req = self
            .http
            .post(self.url("/oauth2/access_token"))
            .json(&body)
            .timeout(self.cfg.timeout);
        let answer = http::send(req, self.cfg.timeout).await?;
        if !answer.status.is_success() {
            let detail = problem_detail(&answer);
            return Err(match answer.status {
                // amoCRM answers 400/401 for a revoked, used or expired refresh token: only a
                // person re-authorising the integration can fix that.
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    CrmError::Unauthorized(format!("token refresh refused: {detail}"))
                }
                _ => http::status_error(&answer, detail),
            });
        }
        let t: TokenAnswer = answer.json("amoCRM token refresh")?;
        if t.access_token.is_empty() || t.refresh_token.is_empty() {
            return Err(CrmError::Malformed(
                "amoCRM token refresh: empty access or refresh token".into(),
            ));
        }
        let fresh = AmoTokens {
            access_token: SecretString::new(t.access_token),
            refresh_token: SecretString::new(t.refresh_token),
            expires_at: t
                .expires_in
                .map(|s| Utc::now() + chrono::TimeDelta::seconds(s)),
        };
        // Persist before use: the old refresh token is already dead, so losing this pair would
        // lose the connection.
        self.tokens.save(&self.cfg.connection_id, &fresh).await?;
        Ok(fresh)
    }

    async fn read_contact(&self, id: u64) -> Result<Option<Contact>, CrmError> {
        let answer = self
            .call(Method::GET, &format!("/api/v4/contacts/{id}"), None)
            .await?;
        match answer.status {
            // A contact deleted since it was linked: the deal is still readable.
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => {
                return Err(http::status_error(&answer, problem_detail(&answer)));
            }
            _ => {}
        }
        let c: AmoContact = answer.json(&format!("amoCRM contact {id}"))?;
        let name = c.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            [c.first_name, c.last_name]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        });
        Ok(Some(Contact {
            id: c.id.to_string(),
            name,
            emails: emails_of(c.custom_fields_values.as_deref().unwrap_or_default()),
        }))
    }
}

/// amoCRM ids are integers; anything else cannot name a lead (and must not reach a URL path).
fn lead_id(deal_id: &str) -> Result<u64, CrmError> {
    deal_id
        .parse::<u64>()
        .map_err(|_| CrmError::UnknownDeal(deal_id.to_owned()))
}

#[async_trait]
impl CrmConnector for AmoCrm {
    fn system(&self) -> &'static str {
        "amocrm"
    }

    async fn read_deal(&self, deal_id: &str) -> Result<Deal, CrmError> {
        let id = lead_id(deal_id)?;
        let answer = self
            .call(
                Method::GET,
                &format!("/api/v4/leads/{id}?with=contacts"),
                None,
            )
            .await?;
        match answer.status {
            // amoCRM answers 204 No Content for an id it does not have.
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => {
                return Err(CrmError::UnknownDeal(deal_id.to_owned()));
            }
            s if !s.is_success() => {
                return Err(http::status_error(&answer, problem_detail(&answer)));
            }
            _ => {}
        }
        let lead: AmoLead = answer.json(&format!("amoCRM lead {id}"))?;
        let mut links = lead.embedded.map(|e| e.contacts).unwrap_or_default();
        // The main contact first: it is the one the rep talks to.
        links.sort_by_key(|c| !c.is_main.unwrap_or(false));
        let mut contacts = Vec::new();
        for link in links.into_iter().take(MAX_CONTACTS) {
            if let Some(c) = self.read_contact(link.id).await? {
                contacts.push(c);
            }
        }
        Ok(Deal {
            id: lead.id.to_string(),
            title: lead.name.unwrap_or_default(),
            responsible_user_id: lead.responsible_user_id.map(|u| u.to_string()),
            contacts,
        })
    }

    async fn add_note(&self, deal_id: &str, text: &str) -> Result<CreatedId, CrmError> {
        let id = lead_id(deal_id)?;
        let body = json!([{ "note_type": "common", "params": { "text": text } }]);
        let answer = self
            .call(
                Method::POST,
                &format!("/api/v4/leads/{id}/notes"),
                Some(&body),
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(CrmError::UnknownDeal(deal_id.to_owned()));
        }
        if !answer.status.is_success() {
            return Err(http::status_error(&answer, problem_detail(&answer)));
        }
        let created: Created<NotesEmbedded> = answer.json("amoCRM note")?;
        created
            .embedded
            .notes
            .first()
            .map(|n| CreatedId(n.id.to_string()))
            .ok_or_else(|| CrmError::Malformed("amoCRM note: no note in the answer".into()))
    }

    async fn create_task(&self, deal_id: &str, task: &FollowUpTask) -> Result<CreatedId, CrmError> {
        let id = lead_id(deal_id)?;
        let mut item = json!({
            "text": task.full_text(),
            "complete_till": task.due.timestamp(),
            "entity_id": id,
            "entity_type": "leads",
            "task_type_id": self.cfg.task_type_id,
        });
        if let Some(user) = &task.responsible_user_id {
            let user: u64 = user.parse().map_err(|_| {
                CrmError::Config(format!("amoCRM user ids are numbers, not {user:?}"))
            })?;
            item["responsible_user_id"] = json!(user);
        }
        let answer = self
            .call(Method::POST, "/api/v4/tasks", Some(&json!([item])))
            .await?;
        if !answer.status.is_success() {
            return Err(http::status_error(&answer, problem_detail(&answer)));
        }
        let created: Created<TasksEmbedded> = answer.json("amoCRM task")?;
        created
            .embedded
            .tasks
            .first()
            .map(|t| CreatedId(t.id.to_string()))
            .ok_or_else(|| CrmError::Malformed("amoCRM task: no task in the answer".into()))
    }
}

/// amoCRM errors are `application/problem+json` (`title`, `detail`, `validation-errors`).
fn problem_detail(answer: &Answer) -> String {
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(v) => {
            let pick = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            match (pick("title"), pick("detail").or_else(|| pick("hint"))) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (Some(t), None) => t,
                (None, Some(d)) => d,
                (None, None) => http::snippet(&answer.body),
            }
        }
        Err(_) => http::snippet(&answer.body),
    }
}

fn emails_of(fields: &[AmoField]) -> Vec<String> {
    let mut out: Vec<(bool, String)> = fields
        .iter()
        .filter(|f| f.field_code.as_deref() == Some("EMAIL"))
        .flat_map(|f| f.values.iter())
        .filter_map(|v| {
            let email = v.value.as_str()?.trim();
            (!email.is_empty()).then(|| (v.enum_code.as_deref() == Some("WORK"), email.to_owned()))
        })
        .collect();
    // Stable: work addresses first, otherwise the CRM's order.
    out.sort_by_key(|(work, _)| !*work);
    out.into_iter().map(|(_, e)| e).collect()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct AmoLead {
    id: u64,
    name: Option<String>,
    responsible_user_id: Option<u64>,
    #[serde(rename = "_embedded")]
    embedded: Option<LeadEmbedded>,
}

#[derive(Deserialize)]
struct LeadEmbedded {
    #[serde(default)]
    contacts: Vec<ContactLink>,
}

#[derive(Deserialize)]
struct ContactLink {
    id: u64,
    is_main: Option<bool>,
}

#[derive(Deserialize)]
struct AmoContact {
    id: u64,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    custom_fields_values: Option<Vec<AmoField>>,
}

#[derive(Deserialize)]
struct AmoField {
    field_code: Option<String>,
    #[serde(default)]
    values: Vec<AmoFieldValue>,
}

#[derive(Deserialize)]
struct AmoFieldValue {
    value: Value,
    enum_code: Option<String>,
}

#[derive(Deserialize)]
struct Created<T> {
    #[serde(rename = "_embedded")]
    embedded: T,
}

#[derive(Deserialize)]
struct NotesEmbedded {
    notes: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct TasksEmbedded {
    tasks: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_come_from_the_email_field_work_first() {
        let fields: Vec<AmoField> = serde_json::from_value(json!([
            {"field_id": 1, "field_name": "Телефон", "field_code": "PHONE",
             "values": [{"value": "+7 900 000-00-00", "enum_code": "WORK"}]},
            {"field_id": 2, "field_name": "Email", "field_code": "EMAIL",
             "values": [{"value": "home@example.ru", "enum_code": "PRIV"},
                        {"value": "anna@client.ru", "enum_code": "WORK"}]}
        ]))
        .expect("fields");
        assert_eq!(emails_of(&fields), ["anna@client.ru", "home@example.ru"]);
    }

    #[test]
    fn lead_ids_are_numbers() {
        assert_eq!(lead_id("42").ok(), Some(42));
        assert!(matches!(lead_id("../users"), Err(CrmError::UnknownDeal(_))));
    }
}
