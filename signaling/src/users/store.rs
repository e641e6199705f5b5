//! The users' SQL, on the server's own pool (the meeting store's SQLite file).

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};

use super::lockout::Throttle;
use super::model::{AccountRole, TokenPurpose, UserStatus};
use crate::store::DbPool;

#[derive(Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub email_key: String,
    pub display_name: String,
    pub role: String,
    pub status: String,
    pub password_hash: Option<String>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn role(&self) -> AccountRole {
        AccountRole::parse(&self.role).unwrap_or(AccountRole::Member)
    }
    pub fn status(&self) -> UserStatus {
        // An unreadable status is treated as the most restrictive one.
        UserStatus::parse(&self.status).unwrap_or(UserStatus::Disabled)
    }
}

// The password hash is not a secret in the cryptographic sense, but it has no business in logs.
impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub last_seen_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub expires_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub purpose: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub expires_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub used_at: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str = "id, account_id, email, email_key, display_name, role, status, \
                            password_hash, created_at, last_sign_in_at";
const SESSION_COLUMNS: &str =
    "id, token_hash, user_id, created_at, last_seen_at, expires_at, revoked_at, user_agent";

pub struct NewUser<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub email: &'a str,
    pub email_key: &'a str,
    pub display_name: &'a str,
    pub role: AccountRole,
    pub now: DateTime<Utc>,
}

#[derive(Clone)]
pub struct UserStore {
    pool: DbPool,
}

/// Whether an error is the unique index on `email_key`.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl UserStore {
    pub fn new(pool: DbPool) -> Self {
        UserStore { pool }
    }

    pub async fn insert_invited(&self, u: NewUser<'_>) -> sqlx::Result<UserRow> {
        let sql = format!(
            "INSERT INTO users (id, account_id, email, email_key, display_name, role, status, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, 'invited', $7) RETURNING {USER_COLUMNS}"
        );
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(u.id)
            .bind(u.account_id)
            .bind(u.email)
            .bind(u.email_key)
            .bind(u.display_name)
            .bind(u.role.as_str())
            .bind(crate::store::time::text(u.now))
            .fetch_one(&self.pool)
            .await
    }

    pub async fn by_id(&self, id: &str) -> sqlx::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn by_email_key(&self, key: &str) -> sqlx::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_key = $1");
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn of_account(&self, account_id: &str) -> sqlx::Result<Vec<UserRow>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 ORDER BY created_at, id"
        );
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn update(
        &self,
        id: &str,
        display_name: &str,
        role: AccountRole,
        status: UserStatus,
    ) -> sqlx::Result<UserRow> {
        let sql = format!(
            "UPDATE users SET display_name = $1, role = $2, status = $3 WHERE id = $4 \
             RETURNING {USER_COLUMNS}"
        );
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(display_name)
            .bind(role.as_str())
            .bind(status.as_str())
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }

    /// Sets the password; `activate` also turns an invited user active (invitation accepted).
    pub async fn set_password(&self, id: &str, hash: &str, activate: bool) -> sqlx::Result<()> {
        let sql = if activate {
            "UPDATE users SET password_hash = $1, status = 'active' WHERE id = $2 AND status = 'invited'"
        } else {
            "UPDATE users SET password_hash = $1 WHERE id = $2"
        };
        sqlx::query(sql)
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn touch_sign_in(&self, id: &str, now: DateTime<Utc>) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
            .bind(crate::store::time::text(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // sessions

    pub async fn insert_session(&self, s: &SessionRow) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO user_sessions (id, token_hash, user_id, created_at, last_seen_at, \
             expires_at, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.user_id)
        .bind(crate::store::time::text(s.created_at))
        .bind(crate::store::time::text(s.last_seen_at))
        .bind(crate::store::time::text(s.expires_at))
        .bind(&s.user_agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session and its user in one indexed read (the unique `token_hash`, then the user's
    /// primary key): what authenticating every session request costs.
    pub async fn session_with_user(
        &self,
        hash: &str,
    ) -> sqlx::Result<Option<(SessionRow, UserRow)>> {
        let row = sqlx::query(
            "SELECT s.id AS s_id, s.token_hash, s.user_id, s.created_at AS s_created_at, \
             s.last_seen_at, s.expires_at, s.revoked_at, s.user_agent, \
             u.account_id, u.email, u.email_key, u.display_name, u.role, u.status, \
             u.password_hash, u.created_at AS u_created_at, u.last_sign_in_at \
             FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let session = SessionRow {
            id: r.try_get("s_id")?,
            token_hash: r.try_get("token_hash")?,
            user_id: r.try_get("user_id")?,
            created_at: r
                .try_get::<crate::store::time::DbTime, _>("s_created_at")?
                .into(),
            last_seen_at: r
                .try_get::<crate::store::time::DbTime, _>("last_seen_at")?
                .into(),
            expires_at: r
                .try_get::<crate::store::time::DbTime, _>("expires_at")?
                .into(),
            revoked_at: r
                .try_get::<crate::store::time::OptDbTime, _>("revoked_at")?
                .into(),
            user_agent: r.try_get("user_agent")?,
        };
        let user = UserRow {
            id: session.user_id.clone(),
            account_id: r.try_get("account_id")?,
            email: r.try_get("email")?,
            email_key: r.try_get("email_key")?,
            display_name: r.try_get("display_name")?,
            role: r.try_get("role")?,
            status: r.try_get("status")?,
            password_hash: r.try_get("password_hash")?,
            created_at: r
                .try_get::<crate::store::time::DbTime, _>("u_created_at")?
                .into(),
            last_sign_in_at: r
                .try_get::<crate::store::time::OptDbTime, _>("last_sign_in_at")?
                .into(),
        };
        Ok(Some((session, user)))
    }

    pub async fn touch_session(&self, id: &str, now: DateTime<Utc>) -> sqlx::Result<()> {
        sqlx::query("UPDATE user_sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(crate::store::time::text(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sessions not revoked, newest first (expired ones are filtered by the caller, who knows
    /// the idle timeout).
    pub async fn sessions_of(&self, user_id: &str) -> sqlx::Result<Vec<SessionRow>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM user_sessions WHERE user_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id"
        );
        sqlx::query_as::<_, SessionRow>(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    /// Revokes one session of `user_id`; false when there is no such live session.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "UPDATE user_sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
             AND revoked_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn revoke_all_sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<u64> {
        let r = sqlx::query(
            "UPDATE user_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    // one-time tokens

    /// Stores a token and voids the user's earlier unused ones of the same purpose, so only the
    /// latest invitation or reset link works.
    pub async fn replace_token(
        &self,
        user_id: &str,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE user_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(purpose.as_str())
        .bind(crate::store::time::text(now))
        .bind(crate::store::time::text(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn token(&self, hash: &str) -> sqlx::Result<Option<TokenRow>> {
        sqlx::query_as::<_, TokenRow>(
            "SELECT token_hash, user_id, purpose, expires_at, used_at FROM user_tokens \
             WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// Marks a token used; false if it already was (two concurrent redemptions: one wins).
    pub async fn use_token(&self, hash: &str, now: DateTime<Utc>) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "UPDATE user_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // lockout

    pub async fn throttle(&self, email_key: &str) -> sqlx::Result<Throttle> {
        let row = sqlx::query(
            "SELECT failures, window_start, locked_until FROM sign_in_throttle WHERE email_key = $1",
        )
        .bind(email_key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Throttle::default());
        };
        let failures: i64 = row.try_get("failures")?;
        Ok(Throttle {
            failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
            window_start: row
                .try_get::<crate::store::time::OptDbTime, _>("window_start")?
                .into(),
            locked_until: row
                .try_get::<crate::store::time::OptDbTime, _>("locked_until")?
                .into(),
        })
    }

    pub async fn put_throttle(&self, email_key: &str, t: &Throttle) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO sign_in_throttle (email_key, failures, window_start, locked_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT(email_key) DO UPDATE SET failures = excluded.failures, \
             window_start = excluded.window_start, locked_until = excluded.locked_until",
        )
        .bind(email_key)
        .bind(i64::from(t.failures))
        .bind(crate::store::time::opt_text(t.window_start))
        .bind(crate::store::time::opt_text(t.locked_until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn clear_throttle(&self, email_key: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM sign_in_throttle WHERE email_key = $1")
            .bind(email_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
