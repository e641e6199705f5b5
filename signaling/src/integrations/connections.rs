//! An account's CRM connection in the database, and the connectors built from it.
//!
//! The stored row has the connection's kind, its non-secret settings (JSON), its secret
//! settings (JSON) and amoCRM's OAuth tokens in their own columns (rewritten on every refresh) —
//! those three sealed with the server's [`SecretsCipher`] for this row —, the CRM's web origin
//! (the deal card's only frame ancestor), and the outcome of the last CRM call (the status an
//! admin sees).

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
use crate::secrets::{Field, SecretsCipher};
use crate::store::DbPool;
use crate::store::time::{self, OptDbTime};

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
    /// Normalised (see [`crate::card::normalise_origin`]); `None`: derived from the settings.
    pub frame_origin: Option<String>,
}

/// The CRM's web origin when the admin gave none: amoCRM's web UI is served from the account's
/// API host (`https://{subdomain}.amocrm.ru`), Bitrix24's from the portal. A generic CRM's UI
/// may live anywhere, so it has none until one is given.
pub fn derived_frame_origin(kind: Kind, settings: &PublicSettings) -> Option<String> {
    let url = match kind {
        Kind::Amocrm => settings.base_url.as_deref(),
        Kind::Bitrix24 => settings.portal.as_deref(),
        Kind::Webhook => None,
    }?;
    let origin = reqwest::Url::parse(url)
        .ok()?
        .origin()
        .ascii_serialization();
    crate::card::normalise_origin(&origin)
}

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: String,
    account_id: String,
    kind: String,
    settings: String,
    secrets: String,
    frame_origin: Option<String>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    last_error_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
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
    /// The CRM's web origin: as given, else derived (see [`derived_frame_origin`]).
    pub frame_origin: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Connection {
    /// The stored row, its secrets opened with `cipher`. A value the key cannot open is a
    /// decode error naming the column and row, never the value.
    fn decode(r: Row, cipher: &SecretsCipher) -> sqlx::Result<Connection> {
        let bad = |what: &str| sqlx::Error::Decode(format!("crm_connections.{what}").into());
        let kind = Kind::parse(&r.kind).ok_or_else(|| bad("kind"))?;
        let settings: PublicSettings =
            serde_json::from_str(&r.settings).map_err(|_| bad("settings"))?;
        let secrets = cipher
            .open(Field::CrmSecrets, &r.id, &r.secrets)
            .map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Connection {
            secrets: serde_json::from_str(&secrets).map_err(|_| bad("secrets"))?,
            frame_origin: r
                .frame_origin
                .or_else(|| derived_frame_origin(kind, &settings)),
            kind,
            settings,
            id: r.id,
            account_id: r.account_id,
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
    cipher: SecretsCipher,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Connections {
    pub fn new(
        pool: DbPool,
        http: reqwest::Client,
        timeout: Duration,
        cipher: SecretsCipher,
    ) -> Self {
        Connections {
            pool,
            http,
            timeout,
            connectors: Mutex::new(HashMap::new()),
            verifiers: Mutex::new(HashMap::new()),
            cipher,
        }
    }

    /// The live connection of an account.
    pub async fn for_account(&self, account_id: &str) -> sqlx::Result<Option<Connection>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM crm_connections WHERE account_id = $1 AND deleted_at IS NULL"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Connection::decode(r, &self.cipher))
            .transpose()
    }

    /// A live connection by its id.
    pub async fn by_id(&self, id: &str) -> sqlx::Result<Option<Connection>> {
        let sql =
            format!("SELECT {COLUMNS} FROM crm_connections WHERE id = $1 AND deleted_at IS NULL");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Connection::decode(r, &self.cipher))
            .transpose()
    }

    /// The CRM's web origin for the deal card's `frame-ancestors`, when the account has one.
    pub async fn frame_origin(&self, account_id: &str) -> sqlx::Result<Option<String>> {
        // Normalised again on the way out: it goes into a CSP header, and rows from before the
        // stricter check may hold an origin it would refuse.
        Ok(self
            .for_account(account_id)
            .await?
            .and_then(|c| c.frame_origin)
            .and_then(|o| crate::card::normalise_origin(&o)))
    }

    /// Sets the live connection's web origin (normalised by the caller); false when the account
    /// has no connection. `updated_at` stays: the origin is not part of the connector, whose
    /// cached instance (and amoCRM refresh lock) remains valid.
    pub async fn set_frame_origin(&self, account_id: &str, origin: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "UPDATE crm_connections SET frame_origin = $1 WHERE account_id = $2 \
             AND deleted_at IS NULL",
        )
        .bind(origin)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
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
        let expires = c.tokens.as_ref().and_then(|t| t.expires_at);
        let frame_origin = c
            .frame_origin
            .clone()
            .or_else(|| derived_frame_origin(c.kind, &c.settings));
        // Read, then insert or update: serialized, so that two saves of one account's connection
        // (or a background write on SQLite meanwhile) cannot both take the insert path or fail
        // upgrading a read to a write.
        let mut tx = crate::store::begin_serialized(&self.pool).await?;
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM crm_connections WHERE account_id = $1 AND deleted_at IS NULL",
        )
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        // Sealed for the row they go to: the id is part of each value's associated data.
        let id = existing
            .as_ref()
            .map(|(id,)| id.clone())
            .unwrap_or_else(|| format!("crm_{}", crate::domain::random_token(20)));
        let secrets = self.cipher.seal(Field::CrmSecrets, &id, &secrets);
        let access = c.tokens.as_ref().map(|t| {
            self.cipher
                .seal(Field::CrmAccessToken, &id, t.access_token.expose())
        });
        let refresh = c.tokens.as_ref().map(|t| {
            self.cipher
                .seal(Field::CrmRefreshToken, &id, t.refresh_token.expose())
        });
        match existing {
            Some(_) => {
                sqlx::query(
                    "UPDATE crm_connections SET kind = $1, settings = $2, secrets = $3, \
                     amo_access_token = $4, amo_refresh_token = $5, amo_expires_at = $6, \
                     frame_origin = $7, last_error = NULL, last_error_at = NULL, \
                     last_success_at = NULL, updated_at = $8 WHERE id = $9",
                )
                .bind(c.kind.as_str())
                .bind(settings)
                .bind(secrets)
                .bind(access)
                .bind(refresh)
                .bind(time::opt_text(expires))
                .bind(&frame_origin)
                .bind(time::text(t))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO crm_connections (id, account_id, kind, settings, secrets, \
                     amo_access_token, amo_refresh_token, amo_expires_at, frame_origin, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&id)
                .bind(account_id)
                .bind(c.kind.as_str())
                .bind(settings)
                .bind(secrets)
                .bind(access)
                .bind(refresh)
                .bind(time::opt_text(expires))
                .bind(&frame_origin)
                .bind(time::text(t))
                .bind(time::text(t))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.by_id(&id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Removes the account's connection; false when there was none.
    pub async fn delete(&self, account_id: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "UPDATE crm_connections SET deleted_at = $1 WHERE account_id = $2 AND deleted_at IS NULL",
        )
        .bind(crate::store::time::text(now()))
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record(&self, id: &str, result: Result<(), &CrmError>) {
        let q = match result {
            Ok(()) => sqlx::query("UPDATE crm_connections SET last_success_at = $1 WHERE id = $2")
                .bind(crate::store::time::text(now()))
                .bind(id),
            Err(e) => {
                let text: String = e.to_string().chars().take(MAX_ERROR_TEXT).collect();
                sqlx::query(
                    "UPDATE crm_connections SET last_error = $1, last_error_at = $2 WHERE id = $3",
                )
                .bind(text)
                .bind(crate::store::time::text(now()))
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
                Arc::new(DbTokenStore::new(self.pool.clone(), self.cipher.clone())),
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

/// amoCRM tokens in `crm_connections`, sealed for their row. `save` returns only after the
/// UPDATE is committed: the old refresh token is already spent at amoCRM, so a new pair lost
/// here would lock the connection out until someone authorises it again.
#[derive(Clone)]
pub struct DbTokenStore {
    pool: DbPool,
    cipher: SecretsCipher,
}

impl DbTokenStore {
    pub fn new(pool: DbPool, cipher: SecretsCipher) -> Self {
        DbTokenStore { pool, cipher }
    }
}

#[async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self, connection_id: &str) -> Result<Option<AmoTokens>, CrmError> {
        let row: Option<(Option<String>, Option<String>, OptDbTime)> = sqlx::query_as(
            "SELECT amo_access_token, amo_refresh_token, amo_expires_at FROM crm_connections \
                 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| CrmError::TokenStore(e.to_string()))?;
        let open = |field, value: &str| {
            self.cipher
                .open(field, connection_id, value)
                .map(SecretString::new)
                .map_err(|e| CrmError::TokenStore(e.to_string()))
        };
        Ok(match row {
            Some((Some(access), Some(refresh), OptDbTime(expires_at))) => Some(AmoTokens {
                access_token: open(Field::CrmAccessToken, &access)?,
                refresh_token: open(Field::CrmRefreshToken, &refresh)?,
                expires_at,
            }),
            _ => None,
        })
    }

    async fn save(&self, connection_id: &str, tokens: &AmoTokens) -> Result<(), CrmError> {
        // `updated_at` stays: the cached connector (and its refresh lock) remains valid.
        let r = sqlx::query(
            "UPDATE crm_connections SET amo_access_token = $1, amo_refresh_token = $2, \
             amo_expires_at = $3 WHERE id = $4",
        )
        .bind(self.cipher.seal(
            Field::CrmAccessToken,
            connection_id,
            tokens.access_token.expose(),
        ))
        .bind(self.cipher.seal(
            Field::CrmRefreshToken,
            connection_id,
            tokens.refresh_token.expose(),
        ))
        .bind(crate::store::time::opt_text(tokens.expires_at))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_origin_is_derived_from_the_crms_address() {
        let amo = |base: &str| PublicSettings {
            base_url: Some(base.into()),
            ..PublicSettings::default()
        };
        assert_eq!(
            derived_frame_origin(Kind::Amocrm, &amo("https://romashka.amocrm.ru")).as_deref(),
            Some("https://romashka.amocrm.ru")
        );
        assert_eq!(
            derived_frame_origin(Kind::Amocrm, &amo("https://Romashka.amocrm.com/api/v4"))
                .as_deref(),
            Some("https://romashka.amocrm.com")
        );
        // Never a CSP source the card's own checks would refuse.
        assert_eq!(
            derived_frame_origin(Kind::Amocrm, &amo("http://crm.example")),
            None
        );
        let portal = PublicSettings {
            portal: Some("https://acme.bitrix24.ru".into()),
            ..PublicSettings::default()
        };
        assert_eq!(
            derived_frame_origin(Kind::Bitrix24, &portal).as_deref(),
            Some("https://acme.bitrix24.ru")
        );
        let webhook = PublicSettings {
            url: Some("https://crm.example/parley".into()),
            ..PublicSettings::default()
        };
        assert_eq!(derived_frame_origin(Kind::Webhook, &webhook), None);
    }

    /// The migration that made the connection the one place of the CRM origin, run on the
    /// schema the earlier migration files build.
    #[tokio::test]
    async fn the_cards_origin_moves_to_a_connection_that_has_none() {
        const MIGRATION: &str = "20260506120000_crm_frame_origin.sql";
        let dir = tempfile::tempdir().expect("dir");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("m.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .expect("migrations")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert!(files.iter().any(|f| f == MIGRATION));
        let run = |name: String| {
            let pool = pool.clone();
            let text = std::fs::read_to_string(folder.join(&name)).expect("read");
            async move {
                sqlx::raw_sql(&text)
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        };
        for f in files.iter().filter(|f| f.as_str() < MIGRATION) {
            run(f.clone()).await;
        }
        for (id, account, origin, deleted) in [
            ("crm_a", "acc-a", None, None),
            ("crm_b", "acc-b", Some("https://b-own.example"), None),
            ("crm_c", "acc-c", None, Some("2026-02-01T00:00:00Z")),
            ("crm_d", "acc-d", None, None),
        ] {
            sqlx::query(
                "INSERT INTO crm_connections (id, account_id, kind, settings, secrets, \
                 frame_origin, created_at, updated_at, deleted_at) \
                 VALUES ($1, $2, 'webhook', '{}', '{}', $3, '2026-01-01T00:00:00Z', \
                 '2026-01-01T00:00:00Z', $4)",
            )
            .bind(id)
            .bind(account)
            .bind(origin)
            .bind(deleted)
            .execute(&pool)
            .await
            .expect("connection");
        }
        for account in ["acc-a", "acc-b", "acc-c"] {
            sqlx::query(
                "INSERT INTO crm_card_settings (account_id, secret, crm_origin, created_at) \
                 VALUES ($1, 'k', $2, '2026-01-01T00:00:00Z')",
            )
            .bind(account)
            .bind(format!("https://{account}-card.example"))
            .execute(&pool)
            .await
            .expect("card");
        }
        run(MIGRATION.to_owned()).await;

        let origins: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, frame_origin FROM crm_connections ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("select");
        let expect = |o: Option<&str>| o.map(str::to_owned);
        assert_eq!(
            origins,
            vec![
                ("crm_a".into(), expect(Some("https://acc-a-card.example"))),
                ("crm_b".into(), expect(Some("https://b-own.example"))),
                ("crm_c".into(), None),
                ("crm_d".into(), None),
            ],
            "copied only where the live connection had none"
        );
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('crm_card_settings')")
                .fetch_all(&pool)
                .await
                .expect("columns");
        assert!(!columns.iter().any(|c| c == "crm_origin"), "{columns:?}");
        assert!(columns.iter().any(|c| c == "secret"));
        pool.close().await;
    }
}
