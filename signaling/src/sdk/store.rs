//! SDK keys in SQLite (`sdk_keys`; allowed origins as a JSON array).

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::AllowedOrigins;
use crate::store::DbPool;

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: String,
    account_id: String,
    name: String,
    allowed_origins: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct SdkKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    origins: AllowedOrigins,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SdkKey {
    pub fn origins(&self) -> &AllowedOrigins {
        &self.origins
    }
}

impl TryFrom<Row> for SdkKey {
    type Error = sqlx::Error;

    fn try_from(r: Row) -> Result<Self, Self::Error> {
        let origins: Vec<String> = serde_json::from_str(&r.allowed_origins)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(SdkKey {
            id: r.id,
            account_id: r.account_id,
            name: r.name,
            origins: AllowedOrigins::from_stored(origins),
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

const COLUMNS: &str = "id, account_id, name, allowed_origins, created_at, revoked_at";

pub struct SdkKeyStore {
    pool: DbPool,
}

impl SdkKeyStore {
    pub fn new(pool: DbPool) -> Self {
        SdkKeyStore { pool }
    }

    pub async fn insert(
        &self,
        id: &str,
        account: &str,
        name: &str,
        origins: &AllowedOrigins,
        now: DateTime<Utc>,
    ) -> sqlx::Result<SdkKey> {
        let json = serde_json::to_string(origins.as_slice())
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO sdk_keys (id, account_id, name, allowed_origins, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(account)
        .bind(name)
        .bind(&json)
        .bind(crate::store::time::text(now))
        .execute(&self.pool)
        .await?;
        Ok(SdkKey {
            id: id.to_owned(),
            account_id: account.to_owned(),
            name: name.to_owned(),
            origins: origins.clone(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// A key by id, revoked or not.
    pub async fn get(&self, id: &str) -> sqlx::Result<Option<SdkKey>> {
        sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM sdk_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(SdkKey::try_from)
            .transpose()
    }

    /// The account's live keys, oldest first.
    pub async fn list(&self, account: &str) -> sqlx::Result<Vec<SdkKey>> {
        sqlx::query_as::<_, Row>(&format!(
            "SELECT {COLUMNS} FROM sdk_keys WHERE account_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at, id"
        ))
        .bind(account)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(SdkKey::try_from)
        .collect()
    }

    pub async fn count_live(&self, account: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM sdk_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(account)
        .fetch_one(&self.pool)
        .await
    }

    /// Revokes a live key of the account; false when there is none by that id.
    pub async fn revoke(&self, account: &str, id: &str, now: DateTime<Utc>) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "UPDATE sdk_keys SET revoked_at = $1 \
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(id)
        .bind(account)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
