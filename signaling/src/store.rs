//! Persistence through sqlx. All SQL lives here so that adding PostgreSQL later (a second
//! migrations directory and an `AnyPool` or an enum of pools) touches one module.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{FromRow, Row};

use crate::domain::{MeetingId, ParticipantId, Role, random_token};

/// The connection pool. A type alias so that the rest of the code names one thing.
pub type DbPool = sqlx::SqlitePool;

#[derive(Clone)]
pub struct Store {
    pool: DbPool,
}

#[derive(Debug, Clone, FromRow)]
pub struct MeetingRow {
    pub seq: i64,
    pub id: String,
    pub title: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub host_key: String,
    pub invite_secret: String,
    /// The licensing account whose seat hosts the meeting (None: unlicensed meeting).
    pub account_id: Option<String>,
    pub host_user_id: Option<String>,
    /// The tariff's limits, copied at creation so later tariff changes never alter a meeting.
    pub max_participants: Option<i64>,
    pub max_meeting_minutes: Option<i64>,
    pub recording_allowed: Option<bool>,
    pub screen_share_allowed: Option<bool>,
    pub sdk_allowed: Option<bool>,
}

impl MeetingRow {
    /// An unlicensed meeting has no participant ceiling.
    pub fn participant_limit(&self) -> Option<usize> {
        self.max_participants
            .map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX))
    }

    pub fn screen_share_allowed(&self) -> bool {
        self.screen_share_allowed.unwrap_or(true)
    }
}

/// What a licensed meeting is allowed, from the host's entitlements.
#[derive(Debug, Clone)]
pub struct MeetingLicense {
    pub account_id: String,
    pub host_user_id: String,
    pub max_participants: u32,
    pub max_meeting_minutes: u32,
    pub recording_allowed: bool,
    pub screen_share_allowed: bool,
    pub sdk_allowed: bool,
}

/// A stored account API key: only the hash of its secret.
#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub key_id: String,
    pub account_id: String,
    pub secret_hash: String,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What an account may see of its keys: never the secret nor its hash.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct ApiKeyInfo {
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    /// To the hour (see [`Store::touch_api_key`]); `None` if never used.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The result of a revocation.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// Revoked now.
    Revoked(ApiKeyInfo),
    /// Was revoked before; the first revocation's time stands.
    AlreadyRevoked(ApiKeyInfo),
    /// No such key for this account.
    NotFound,
    /// Refused: it is the account's last active key and the rule keeps one.
    LastActiveKey,
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub participant_id: String,
    pub identity: String,
    pub display_name: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub leave_reason: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ChatRow {
    pub participant_id: String,
    pub display_name: String,
    pub text: String,
    pub via: String,
    pub sent_at: DateTime<Utc>,
}

pub struct NewSession<'a> {
    pub meeting: &'a MeetingId,
    pub participant: &'a ParticipantId,
    pub identity: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

const MEETING_COLUMNS: &str = "seq, id, title, scheduled_start, created_at, started_at, ended_at, \
                               locked, host_key, invite_secret, account_id, host_user_id, \
                               max_participants, max_meeting_minutes, recording_allowed, \
                               screen_share_allowed, sdk_allowed";

impl Store {
    /// Opens (creating if missing) the database and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets REST reads proceed while a room hub writes.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        // The licensing tables may share this file and record their migrations in the same
        // `_sqlx_migrations` table; their versions are not ours to complain about.
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Sessions left open by a previous process (crash, kill -9) are closed at start.
    pub async fn close_dangling_sessions(&self) -> sqlx::Result<u64> {
        let r = sqlx::query(
            "UPDATE participant_sessions SET left_at = ?, leave_reason = 'server_restart' \
             WHERE left_at IS NULL",
        )
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn insert_meeting(
        &self,
        id: &MeetingId,
        title: &str,
        scheduled_start: Option<DateTime<Utc>>,
        license: Option<&MeetingLicense>,
    ) -> sqlx::Result<MeetingRow> {
        let sql = format!(
            "INSERT INTO meetings (id, title, scheduled_start, created_at, host_key, invite_secret, \
             account_id, host_user_id, max_participants, max_meeting_minutes, recording_allowed, \
             screen_share_allowed, sdk_allowed) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {MEETING_COLUMNS}"
        );
        sqlx::query_as::<_, MeetingRow>(&sql)
            .bind(id.as_str())
            .bind(title)
            .bind(scheduled_start)
            .bind(Utc::now())
            .bind(random_token(32))
            .bind(random_token(32))
            .bind(license.map(|l| l.account_id.clone()))
            .bind(license.map(|l| l.host_user_id.clone()))
            .bind(license.map(|l| i64::from(l.max_participants)))
            .bind(license.map(|l| i64::from(l.max_meeting_minutes)))
            .bind(license.map(|l| l.recording_allowed))
            .bind(license.map(|l| l.screen_share_allowed))
            .bind(license.map(|l| l.sdk_allowed))
            .fetch_one(&self.pool)
            .await
    }

    pub async fn meeting(&self, id: &MeetingId) -> sqlx::Result<Option<MeetingRow>> {
        let sql = format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE id = ?");
        sqlx::query_as::<_, MeetingRow>(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
    }

    /// Newest first; `before` is the `seq` of the last meeting of the previous page.
    pub async fn list_meetings(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> sqlx::Result<Vec<MeetingRow>> {
        let sql = format!(
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE seq < ? ORDER BY seq DESC LIMIT ?"
        );
        sqlx::query_as::<_, MeetingRow>(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
    }

    pub async fn mark_started(&self, id: &MeetingId) -> sqlx::Result<()> {
        sqlx::query("UPDATE meetings SET started_at = ? WHERE id = ? AND started_at IS NULL")
            .bind(Utc::now())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends the meeting (idempotent) and closes its open sessions with reason `ended`.
    pub async fn end_meeting(&self, id: &MeetingId) -> sqlx::Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE meetings SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE participant_sessions SET left_at = ?, leave_reason = 'ended' \
             WHERE meeting_id = ? AND left_at IS NULL",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn set_locked(&self, id: &MeetingId, locked: bool) -> sqlx::Result<()> {
        sqlx::query("UPDATE meetings SET locked = ? WHERE id = ?")
            .bind(locked)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_session(&self, s: NewSession<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO participant_sessions \
             (meeting_id, participant_id, identity, display_name, role, joined_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(s.meeting.as_str())
        .bind(s.participant.as_str())
        .bind(s.identity)
        .bind(s.display_name)
        .bind(s.role.as_str())
        .bind(s.joined_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn close_session(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        reason: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE participant_sessions SET left_at = ?, leave_reason = ? \
             WHERE meeting_id = ? AND participant_id = ? AND left_at IS NULL",
        )
        .bind(Utc::now())
        .bind(reason)
        .bind(meeting.as_str())
        .bind(participant.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn sessions(&self, meeting: &MeetingId) -> sqlx::Result<Vec<SessionRow>> {
        sqlx::query_as::<_, SessionRow>(
            "SELECT participant_id, identity, display_name, role, joined_at, left_at, leave_reason \
             FROM participant_sessions WHERE meeting_id = ? ORDER BY seq",
        )
        .bind(meeting.as_str())
        .fetch_all(&self.pool)
        .await
    }

    pub async fn insert_chat(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        display_name: &str,
        text: &str,
        via: &str,
        sent_at: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO chat_messages (meeting_id, participant_id, display_name, text, via, sent_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(meeting.as_str())
        .bind(participant.as_str())
        .bind(display_name)
        .bind(text)
        .bind(via)
        .bind(sent_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn chat(&self, meeting: &MeetingId) -> sqlx::Result<Vec<ChatRow>> {
        sqlx::query_as::<_, ChatRow>(
            "SELECT participant_id, display_name, text, via, sent_at FROM chat_messages \
             WHERE meeting_id = ? ORDER BY seq",
        )
        .bind(meeting.as_str())
        .fetch_all(&self.pool)
        .await
    }

    /// Participants currently in the meeting (sessions not yet closed).
    pub async fn open_sessions(&self, meeting: &MeetingId) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM participant_sessions WHERE meeting_id = ? AND left_at IS NULL",
        )
        .bind(meeting.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")
    }

    pub async fn insert_api_key(
        &self,
        key_id: &str,
        account_id: &str,
        secret_hash: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO account_api_keys (key_id, account_id, secret_hash, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(key_id)
        .bind(account_id)
        .bind(secret_hash)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn api_key(&self, key_id: &str) -> sqlx::Result<Option<ApiKeyRow>> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT key_id, account_id, secret_hash, last_used_at, revoked_at \
             FROM account_api_keys WHERE key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Records that the key was used at `now`. Callers do it only when the stored time is an
    /// hour old or more, so a busy key costs one write an hour, not one per request.
    pub async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> sqlx::Result<()> {
        sqlx::query("UPDATE account_api_keys SET last_used_at = ? WHERE key_id = ?")
            .bind(now)
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account's keys, oldest first, revoked ones included.
    pub async fn api_keys(&self, account_id: &str) -> sqlx::Result<Vec<ApiKeyInfo>> {
        sqlx::query_as::<_, ApiKeyInfo>(
            "SELECT key_id, created_at, last_used_at, revoked_at FROM account_api_keys \
             WHERE account_id = ? ORDER BY created_at, key_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Revokes `key_id` of `account_id`. With `keep_one_active`, the account's last active key
    /// is refused, so two keys revoking each other at once cannot lock the account out: the
    /// count and the update run in one `BEGIN IMMEDIATE` transaction, which holds SQLite's
    /// write lock from its first statement.
    pub async fn revoke_api_key(
        &self,
        account_id: &str,
        key_id: &str,
        keep_one_active: bool,
    ) -> sqlx::Result<Revocation> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let select = "SELECT key_id, created_at, last_used_at, revoked_at FROM account_api_keys \
                      WHERE key_id = ? AND account_id = ?";
        let Some(key) = sqlx::query_as::<_, ApiKeyInfo>(select)
            .bind(key_id)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Revocation::NotFound);
        };
        if key.revoked_at.is_some() {
            return Ok(Revocation::AlreadyRevoked(key));
        }
        if keep_one_active {
            let active: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM account_api_keys \
                 WHERE account_id = ? AND revoked_at IS NULL",
            )
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if active <= 1 {
                return Ok(Revocation::LastActiveKey);
            }
        }
        let now = Utc::now();
        sqlx::query("UPDATE account_api_keys SET revoked_at = ? WHERE key_id = ?")
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Revocation::Revoked(ApiKeyInfo {
            revoked_at: Some(now),
            ..key
        }))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
