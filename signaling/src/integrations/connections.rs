//! An account's CRM connection in the database, and the connectors built from it.
//!
//! The stored row has the connection's kind, its non-secret settings (JSON), its secret
//! settings (JSON, stored as given until encryption at rest arrives), amoCRM's OAuth tokens in
//! their own columns (rewritten on every refresh), the CRM's web origin for the deal card, and
//! the outcome of the last CRM call (the status an admin sees).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;

use crate::crm::amocrm::{AmoCrm, AmoCrmConfig, AmoTokens, TokenStore};
use crate::crm::bitrix24::{Bitrix24, Bitrix24Config};
use crate::crm::webhook::{WebhookCrm, WebhookCrmConfig, WebhookVerifier};
use crate::crm::{CreatedId, CrmConnector, CrmError, Deal, FollowUpTask, SecretString};
use crate::outbox::crm::ConnectorResolver;
use crate::store::DbPool;

/// amoCRM's task type for follow-ups ("Follow-up").
const AMO_FOLLOW_UP_TASK: u32 = 1;
/// Longest error text kept for the admin (CRM error bodies can be long).
const MAX_ERROR_TEXT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Amocrm,
    Bitrix24,
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Amocrm => "amocrm",
            Kind::Bitrix24 => "bitrix24",
            Kind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "amocrm" => Some(Kind::Amocrm),
            "bitrix24" => Some(Kind::Bitrix24),
            "webhook" => Some(Kind::Webhook),
            _ => None,
        }
    }
}

/// Non-secret settings, by kind (stored as JSON, shown by the API).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicSettings {
    /// amoCRM: the API base URL (`https://{subdomain}.amocrm.ru`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// Bitrix24: the user tasks are assigned to when the deal names nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_responsible_id: Option<String>,
    /// Bitrix24: the portal's origin (the webhook URL itself is a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// Generic webhook: where we call the CRM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Secret settings, by kind. `Debug` masks them (they are [`SecretString`]s).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretString>,
}

/// A connection to store (validated by the route).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub kind: Kind,
    pub settings: PublicSettings,
    pub secrets: SecretSettings,
    pub tokens: Option<AmoTokens>,
    pub frame_origin: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: String,
    account_id: String,
    kind: String,
    settings: String,
    secrets: String,
    frame_origin: Option<String>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, account_id, kind, settings, secrets, frame_origin, last_success_at, \
                       last_error, last_error_at, created_at, updated_at";

/// A stored connection as the server uses it. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub account_id: String,
    pub kind: Kind,
    pub settings: PublicSettings,
    pub secrets: SecretSettings,
    pub frame_origin: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Connection {
    type Error = sqlx::Error;
    fn try_from(r: Row) -> Result<Self, Self::Error> {
        let bad = |what: &str| sqlx::Error::Decode(format!("crm_connections.{what}").into());
        Ok(Connection {
            kind: Kind::parse(&r.kind).ok_or_else(|| bad("kind"))?,
            settings: serde_json::from_str(&r.settings).map_err(|_| bad("settings"))?,
            secrets: serde_json::from_str(&r.secrets).map_err(|_| bad("secrets"))?,
            id: r.id,
            account_id: r.account_id,
            frame_origin: r.frame_origin,
            last_success_at: r.last_success_at,
            last_error: r.last_error,
            last_error_at: r.last_error_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl Connection {
    /// `connected` after a successful call or before any, `error` when the last call failed.
    pub fn status(&self) -> &'static str {
        match (&self.last_error_at, &self.last_success_at) {
            (Some(e), Some(s)) if s > e => "connected",
            (Some(_), _) => "error",
            _ => "connected",
        }
    }
}

/// A built connector and the `updated_at` of the connection it was built from.
type CachedConnector = (DateTime<Utc>, Arc<dyn CrmConnector>);

/// The stored connections, the connectors built from them and the inbound verifiers.
pub struct Connections {
    pool: DbPool,
    http: reqwest::Client,
    timeout: Duration,
    /// Connectors by connection id, with the `updated_at` they were built from: an amoCRM
    /// connector must be shared so its refresh lock serialises refreshes (refresh tokens are
    /// single-use); a changed connection builds a new one.
    connectors: Mutex<HashMap<String, CachedConnector>>,
    /// Inbound verifiers by account, with the secret they check: one per secret so the replay
    /// memory is shared by every request signed with it.
    verifiers: Mutex<HashMap<String, (SecretString, Arc<WebhookVerifier>)>>,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Connections {
    pub fn new(pool: DbPool, http: reqwest::Client, timeout: Duration) -> Self {
        Connections {
            pool,
            http,
            timeout,
            connectors: Mutex::new(HashMap::new()),
            verifiers: Mutex::new(HashMap::new()),
        }
    }

    /// The live connection of an account.
    pub async fn for_account(&self, account_id: &str) -> sqlx::Result<Option<Connection>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM crm_connections WHERE account_id = ? AND deleted_at IS NULL"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .map(Connection::try_from)
            .transpose()
    }

    /// A live connection by its id.
    pub async fn by_id(&self, id: &str) -> sqlx::Result<Option<Connection>> {
        let sql =
            format!("SELECT {COLUMNS} FROM crm_connections WHERE id = ? AND deleted_at IS NULL");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Connection::try_from)
            .transpose()
    }

    /// The CRM's web origin for the deal card's `frame-ancestors`, when the account has one.
    pub async fn frame_origin(&self, account_id: &str) -> sqlx::Result<Option<String>> {
        Ok(self
            .for_account(account_id)
            .await?
            .and_then(|c| c.frame_origin))
    }

    /// Sets the account's connection. An existing one keeps its id (messages waiting for it
    /// go out with the new settings); its cached connector is rebuilt since `updated_at`
    /// changes. A deleted connection is never revived: a new id starts fresh.
    pub async fn put(&self, account_id: &str, c: NewConnection) -> sqlx::Result<Connection> {
        let t = now();
        let settings =
            serde_json::to_string(&c.settings).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let secrets =
            serde_json::to_string(&c.secrets).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let access = c
            .tokens
            .as_ref()
            .map(|t| t.access_token.expose().to_owned());
        let refresh = c
            .tokens
            .as_ref()
            .map(|t| t.refresh_token.expose().to_owned());
        let expires = c.tokens.as_ref().and_then(|t| t.expires_at);
        let mut tx = self.pool.begin().await?;
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM crm_connections WHERE account_id = ? AND deleted_at IS NULL",
        )
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some((id,)) => {
                sqlx::query(
                    "UPDATE crm_connections SET kind = ?, settings = ?, secrets = ?, \
                     amo_access_token = ?, amo_refresh_token = ?, amo_expires_at = ?, \
                     frame_origin = ?, last_error = NULL, last_error_at = NULL, \
                     last_success_at = NULL, updated_at = ? WHERE id = ?",
                )
                .bind(c.kind.as_str())
                .bind(settings)
                .bind(secrets)
                .bind(access)
                .bind(refresh)
                .bind(expires)
                .bind(c.frame_origin)
                .bind(t)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let id = format!("crm_{}", crate::domain::random_token(20));
                sqlx::query(
                    "INSERT INTO crm_connections (id, account_id, kind, settings, secrets, \
                     amo_access_token, amo_refresh_token, amo_expires_at, frame_origin, \
                     created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(account_id)
                .bind(c.kind.as_str())
                .bind(settings)
                .bind(secrets)
                .bind(access)
                .bind(refresh)
                .bind(expires)
                .bind(c.frame_origin)
                .bind(t)
                .bind(t)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        tx.commit().await?;
        self.by_id(&id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Removes the account's connection; false when there was none.
    pub async fn delete(&self, account_id: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "UPDATE crm_connections SET deleted_at = ? WHERE account_id = ? AND deleted_at IS NULL",
        )
        .bind(now())
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record(&self, id: &str, result: Result<(), &CrmError>) {
        let q = match result {
            Ok(()) => sqlx::query("UPDATE crm_connections SET last_success_at = ? WHERE id = ?")
                .bind(now())
                .bind(id),
            Err(e) => {
                let text: String = e.to_string().chars().take(MAX_ERROR_TEXT).collect();
                sqlx::query(
                    "UPDATE crm_connections SET last_error = ?, last_error_at = ? WHERE id = ?",
                )
                .bind(text)
                .bind(now())
                .bind(id)
            }
        };
        if let Err(e) = q.execute(&self.pool).await {
            // Only the status shown to the admin: the call itself is settled elsewhere.
            tracing::warn!(connection = %id, error = %e, "could not record the CRM call's outcome");
        }
    }

    /// The inbound verifier for an account's generic webhook secret, shared per secret.
    pub async fn verifier(&self, account_id: &str) -> sqlx::Result<Option<Arc<WebhookVerifier>>> {
        let Some(c) = self.for_account(account_id).await? else {
            return Ok(None);
        };
        let (Kind::Webhook, Some(secret)) = (c.kind, c.secrets.webhook_secret) else {
            return Ok(None);
        };
        let mut map = self.verifiers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, v)) = map.get(account_id)
            && crate::domain::constant_time_eq(s.expose(), secret.expose())
        {
            return Ok(Some(v.clone()));
        }
        let v = Arc::new(WebhookVerifier::new(secret.clone()));
        map.insert(account_id.to_owned(), (secret, v.clone()));
        Ok(Some(v))
    }

    fn build(self: &Arc<Self>, c: &Connection) -> Result<Arc<dyn CrmConnector>, String> {
        let missing = |what: &str| format!("the connection has no {what}");
        let inner: Arc<dyn CrmConnector> = match c.kind {
            Kind::Amocrm => Arc::new(AmoCrm::new(
                AmoCrmConfig {
                    base_url: c
                        .settings
                        .base_url
                        .clone()
                        .ok_or_else(|| missing("base URL"))?,
                    client_id: c
                        .settings
                        .client_id
                        .clone()
                        .ok_or_else(|| missing("client id"))?,
                    client_secret: c
                        .secrets
                        .client_secret
                        .clone()
                        .ok_or_else(|| missing("client secret"))?,
                    redirect_uri: c
                        .settings
                        .redirect_uri
                        .clone()
                        .ok_or_else(|| missing("redirect URI"))?,
                    connection_id: c.id.clone(),
                    timeout: self.timeout,
                    task_type_id: AMO_FOLLOW_UP_TASK,
                },
                self.http.clone(),
                Arc::new(DbTokenStore::new(self.pool.clone())),
            )),
            Kind::Bitrix24 => Arc::new(
                Bitrix24::new(
                    Bitrix24Config {
                        webhook_url: c
                            .secrets
                            .webhook_url
                            .clone()
                            .ok_or_else(|| missing("webhook URL"))?,
                        timeout: self.timeout,
                        default_responsible_id: c.settings.default_responsible_id.clone(),
                    },
                    self.http.clone(),
                )
                .map_err(|e| e.to_string())?,
            ),
            Kind::Webhook => Arc::new(WebhookCrm::new(
                WebhookCrmConfig {
                    url: c.settings.url.clone().ok_or_else(|| missing("URL"))?,
                    secret: c
                        .secrets
                        .webhook_secret
                        .clone()
                        .ok_or_else(|| missing("secret"))?,
                    timeout: self.timeout,
                },
                self.http.clone(),
            )),
        };
        Ok(Arc::new(Recording {
            inner,
            id: c.id.clone(),
            owner: Arc::downgrade(self),
        }))
    }
}

#[async_trait]
impl ConnectorResolver for Arc<Connections> {
    async fn connector(
        &self,
        connection_id: &str,
    ) -> Result<Option<Arc<dyn CrmConnector>>, String> {
        let Some(c) = self.by_id(connection_id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        {
            let map = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, conn)) = map.get(connection_id)
                && *at == c.updated_at
            {
                return Ok(Some(conn.clone()));
            }
        }
        let built = self.build(&c)?;
        self.connectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection_id.to_owned(), (c.updated_at, built.clone()));
        Ok(Some(built))
    }
}

/// A connector that records each call's outcome on its connection (the status the admin sees).
struct Recording {
    inner: Arc<dyn CrmConnector>,
    id: String,
    /// Weak: the cache in `Connections` holds this connector.
    owner: std::sync::Weak<Connections>,
}

impl Recording {
    async fn note<T>(&self, r: Result<T, CrmError>) -> Result<T, CrmError> {
        if let Some(owner) = self.owner.upgrade() {
            // An unknown deal says nothing about the connection's health.
            if !matches!(r, Err(CrmError::UnknownDeal(_))) {
                owner.record(&self.id, r.as_ref().map(|_| ())).await;
            }
        }
        r
    }
}

#[async_trait]
impl CrmConnector for Recording {
    fn system(&self) -> &'static str {
        self.inner.system()
    }
    async fn read_deal(&self, deal_id: &str) -> Result<Deal, CrmError> {
        let r = self.inner.read_deal(deal_id).await;
        self.note(r).await
    }
    async fn add_note(&self, deal_id: &str, text: &str) -> Result<CreatedId, CrmError> {
        let r = self.inner.add_note(deal_id, text).await;
        self.note(r).await
    }
    async fn create_task(&self, deal_id: &str, task: &FollowUpTask) -> Result<CreatedId, CrmError> {
        let r = self.inner.create_task(deal_id, task).await;
        self.note(r).await
    }
}

/// amoCRM tokens in `crm_connections`. `save` returns only after the UPDATE is committed: the
/// old refresh token is already spent at amoCRM, so a new pair lost here would lock the
/// connection out until someone authorises it again.
#[derive(Clone)]
pub struct DbTokenStore {
    pool: DbPool,
}

impl DbTokenStore {
    pub fn new(pool: DbPool) -> Self {
        DbTokenStore { pool }
    }
}

#[async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self, connection_id: &str) -> Result<Option<AmoTokens>, CrmError> {
        let row: Option<(Option<String>, Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT amo_access_token, amo_refresh_token, amo_expires_at FROM crm_connections \
                 WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| CrmError::TokenStore(e.to_string()))?;
        Ok(match row {
            Some((Some(access), Some(refresh), expires_at)) => Some(AmoTokens {
                access_token: SecretString::new(access),
                refresh_token: SecretString::new(refresh),
                expires_at,
            }),
            _ => None,
        })
    }

    async fn save(&self, connection_id: &str, tokens: &AmoTokens) -> Result<(), CrmError> {
        // `updated_at` stays: the cached connector (and its refresh lock) remains valid.
        let r = sqlx::query(
            "UPDATE crm_connections SET amo_access_token = ?, amo_refresh_token = ?, \
             amo_expires_at = ? WHERE id = ?",
        )
        .bind(tokens.access_token.expose())
        .bind(tokens.refresh_token.expose())
        .bind(tokens.expires_at)
        .bind(connection_id)
        .execute(&self.pool)
        .await
        .map_err(|e| CrmError::TokenStore(e.to_string()))?;
        if r.rows_affected() == 0 {
            return Err(CrmError::TokenStore(
                "the connection no longer exists".into(),
            ));
        }
        Ok(())
    }
}

/// The non-secret view of settings as JSON, plus which secrets are set (masked).
pub fn masked_secrets(s: &SecretSettings) -> Value {
    let mask = |v: &Option<SecretString>| v.as_ref().map(|_| "********");
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("client_secret", mask(&s.client_secret)),
        ("webhook_url", mask(&s.webhook_url)),
        ("webhook_secret", mask(&s.webhook_secret)),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.into()));
        }
    }
    Value::Object(m)
}

/// The deal card's [`DealSource`](crate::card::DealSource): the account's live connection.
pub struct AccountConnectors(pub Arc<Connections>);

#[async_trait]
impl crate::card::DealSource for AccountConnectors {
    async fn connector(&self, account: uuid::Uuid) -> Option<Arc<dyn CrmConnector>> {
        let c = match self.0.for_account(&account.to_string()).await {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%account, error = %e, "cannot load the CRM connection");
                return None;
            }
        };
        match self.0.connector(&c.id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%account, error = %e, "cannot build the CRM connector");
                None
            }
        }
    }
}
