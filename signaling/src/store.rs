//! Persistence through sqlx, on SQLite (the default: one embedded file) or PostgreSQL (several
//! nodes sharing one database).
//!
//! Like the licensing store, everything goes through `sqlx::Any`: each query is written once, with
//! `$N` placeholders, and runs on both databases, so the two cannot drift apart. The price is
//! Any's small type set, which the schema follows: instants are text ([`time`]), flags are
//! integers ([`flag`]). The two migration directories differ only in type names and share
//! versions, and with the licensing migrator the one `_sqlx_migrations` table.

pub mod flag;
pub mod time;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, ConnectOptions, Connection, Executor, FromRow, Row, Transaction};

use crate::domain::{MeetingId, ParticipantId, Role, random_token};

/// The connection pool. A type alias so that the rest of the code names one thing.
pub type DbPool = sqlx::AnyPool;

/// A transaction on [`DbPool`].
pub type DbTransaction = Transaction<'static, Any>;

// `ignore_missing`: the licensing tables may share this database and record their migrations in
// the same `_sqlx_migrations` table; their versions are not ours to complain about.
static SQLITE_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/sqlite")
};
static POSTGRES_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/postgres")
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    pub fn of_pool(pool: &DbPool) -> Backend {
        Backend::of_url(pool.connect_options().database_url.as_str()).unwrap_or(Backend::Sqlite)
    }
}

/// Starts a transaction that reads and then writes on what it read, serialized with every other
/// such transaction: on SQLite `BEGIN IMMEDIATE` takes the write lock up front (no snapshot can
/// go stale, no upgrade can fail); on PostgreSQL a transaction-scoped advisory lock does the
/// same among the nodes sharing the database. Plain writers are not held up on PostgreSQL, so
/// these transactions also guard their writes with conditions where a race would matter.
pub async fn begin_serialized(pool: &DbPool) -> sqlx::Result<DbTransaction> {
    match Backend::of_pool(pool) {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            // An arbitrary constant of ours: one lock for all serialized transactions.
            sqlx::query("SELECT pg_advisory_xact_lock(7305114427)")
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: DbPool,
    backend: Backend,
    /// This node's id in a cluster (`local` on its own): written on the sessions it holds.
    node: Arc<str>,
}

#[derive(Debug, Clone, FromRow)]
pub struct MeetingRow {
    pub seq: i64,
    pub id: String,
    pub title: String,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub scheduled_start: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub started_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub ended_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::flag::DbFlag")]
    pub locked: bool,
    pub host_key: String,
    pub invite_secret: String,
    /// The licensing account whose seat hosts the meeting (None: unlicensed meeting).
    pub account_id: Option<String>,
    pub host_user_id: Option<String>,
    /// The tariff's limits, copied at creation so later tariff changes never alter a meeting.
    pub max_participants: Option<i64>,
    pub max_meeting_minutes: Option<i64>,
    #[sqlx(try_from = "crate::store::flag::OptDbFlag")]
    pub recording_allowed: Option<bool>,
    #[sqlx(try_from = "crate::store::flag::OptDbFlag")]
    pub screen_share_allowed: Option<bool>,
    #[sqlx(try_from = "crate::store::flag::OptDbFlag")]
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
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What an account may see of its keys: never the secret nor its hash.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct ApiKeyInfo {
    pub key_id: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
    /// To the hour (see [`Store::touch_api_key`]); `None` if never used.
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
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
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub joined_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub left_at: Option<DateTime<Utc>>,
    pub leave_reason: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ChatRow {
    pub participant_id: String,
    pub display_name: String,
    pub text: String,
    pub via: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
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
    /// Opens the database and applies migrations: `sqlite://path` (the file is created if
    /// missing) or `postgres://...`.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        Self::connect_in_schema(url, None).await
    }

    /// Like [`Store::connect`], with every PostgreSQL connection's `search_path` set to
    /// `schema` (created if missing): lets tests and separate installations share one database.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let Some(backend) = Backend::of_url(url) else {
            anyhow::bail!("unsupported database url scheme (sqlite:// or postgres://)");
        };
        let schema = schema.map(str::to_string);
        if let Some(s) = &schema
            && !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            anyhow::bail!("bad schema name {s:?}");
        }
        match (backend, &schema) {
            (Backend::Sqlite, _) => {
                // Any cannot ask for the file to be created, so one direct connection does,
                // and switches it to WAL (a property of the file, kept across connections).
                let conn = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .connect()
                    .await?;
                conn.close().await?;
            }
            (Backend::Postgres, Some(s)) => {
                let setup = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?;
                setup
                    .execute(format!("CREATE SCHEMA IF NOT EXISTS {s}").as_str())
                    .await?;
                setup.close().await;
            }
            (Backend::Postgres, None) => {}
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // WAL lets REST reads proceed while a room hub writes.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Backend::Postgres => {
                            if let Some(s) = schema {
                                conn.execute(format!("SET search_path TO {s}").as_str())
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            node: "local".into(),
        })
    }

    /// The node this store writes as (see [`Store::for_node`]).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The same store for node `id` of a cluster.
    pub fn for_node(mut self, id: &str) -> Store {
        self.node = id.into();
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Sessions left open by a previous process (crash, kill -9) are closed at start.
    /// Closes the sessions this node left open when it last stopped (other nodes' sessions on
    /// a shared database are theirs).
    pub async fn close_dangling_sessions(&self) -> sqlx::Result<u64> {
        let r = sqlx::query(
            "UPDATE participant_sessions SET left_at = $1, leave_reason = 'server_restart' \
             WHERE left_at IS NULL AND node = $2",
        )
        .bind(crate::store::time::now_text())
        .bind(&*self.node)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Closes the open sessions of `meeting` held by other nodes: called by the node the
    /// meeting has just been placed on, when those nodes have lost it (died or drained).
    pub async fn close_sessions_elsewhere(&self, meeting: &MeetingId) -> sqlx::Result<u64> {
        let r = sqlx::query(
            "UPDATE participant_sessions SET left_at = $1, leave_reason = 'node_lost' \
             WHERE meeting_id = $2 AND left_at IS NULL AND node <> $3",
        )
        .bind(crate::store::time::now_text())
        .bind(meeting.as_str())
        .bind(&*self.node)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {MEETING_COLUMNS}"
        );
        sqlx::query_as::<_, MeetingRow>(&sql)
            .bind(id.as_str())
            .bind(title)
            .bind(crate::store::time::opt_text(scheduled_start))
            .bind(crate::store::time::now_text())
            .bind(random_token(32))
            .bind(random_token(32))
            .bind(license.map(|l| l.account_id.clone()))
            .bind(license.map(|l| l.host_user_id.clone()))
            .bind(license.map(|l| i64::from(l.max_participants)))
            .bind(license.map(|l| i64::from(l.max_meeting_minutes)))
            .bind(license.map(|l| flag::int(l.recording_allowed)))
            .bind(license.map(|l| flag::int(l.screen_share_allowed)))
            .bind(license.map(|l| flag::int(l.sdk_allowed)))
            .fetch_one(&self.pool)
            .await
    }

    pub async fn meeting(&self, id: &MeetingId) -> sqlx::Result<Option<MeetingRow>> {
        let sql = format!("SELECT {MEETING_COLUMNS} FROM meetings WHERE id = $1");
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
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
        );
        sqlx::query_as::<_, MeetingRow>(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
    }

    pub async fn mark_started(&self, id: &MeetingId) -> sqlx::Result<()> {
        sqlx::query("UPDATE meetings SET started_at = $1 WHERE id = $2 AND started_at IS NULL")
            .bind(crate::store::time::now_text())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends the meeting (idempotent) and closes its open sessions with reason `ended`.
    pub async fn end_meeting(&self, id: &MeetingId) -> sqlx::Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE meetings SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(crate::store::time::text(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE participant_sessions SET left_at = $1, leave_reason = 'ended' \
             WHERE meeting_id = $2 AND left_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn set_locked(&self, id: &MeetingId, locked: bool) -> sqlx::Result<()> {
        sqlx::query("UPDATE meetings SET locked = $1 WHERE id = $2")
            .bind(flag::int(locked))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_session(&self, s: NewSession<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO participant_sessions \
             (meeting_id, participant_id, identity, display_name, role, joined_at, node) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.meeting.as_str())
        .bind(s.participant.as_str())
        .bind(s.identity)
        .bind(s.display_name)
        .bind(s.role.as_str())
        .bind(crate::store::time::text(s.joined_at))
        .bind(&*self.node)
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
            "UPDATE participant_sessions SET left_at = $1, leave_reason = $2 \
             WHERE meeting_id = $3 AND participant_id = $4 AND left_at IS NULL",
        )
        .bind(crate::store::time::now_text())
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
             FROM participant_sessions WHERE meeting_id = $1 ORDER BY seq",
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
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(meeting.as_str())
        .bind(participant.as_str())
        .bind(display_name)
        .bind(text)
        .bind(via)
        .bind(crate::store::time::text(sent_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn chat(&self, meeting: &MeetingId) -> sqlx::Result<Vec<ChatRow>> {
        sqlx::query_as::<_, ChatRow>(
            "SELECT participant_id, display_name, text, via, sent_at FROM chat_messages \
             WHERE meeting_id = $1 ORDER BY seq",
        )
        .bind(meeting.as_str())
        .fetch_all(&self.pool)
        .await
    }

    /// Participants currently in the meeting (sessions not yet closed).
    pub async fn open_sessions(&self, meeting: &MeetingId) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM participant_sessions WHERE meeting_id = $1 AND left_at IS NULL",
        )
        .bind(meeting.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")
    }

    /// Open sessions of `meeting` held by other nodes: none normally (the node a meeting moves
    /// to closes them), some while a partition splits the meeting between two nodes.
    pub async fn open_sessions_elsewhere(&self, meeting: &MeetingId) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM participant_sessions \
             WHERE meeting_id = $1 AND left_at IS NULL AND node <> $2",
        )
        .bind(meeting.as_str())
        .bind(&*self.node)
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
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(account_id)
        .bind(secret_hash)
        .bind(crate::store::time::now_text())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn api_key(&self, key_id: &str) -> sqlx::Result<Option<ApiKeyRow>> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT key_id, account_id, secret_hash, last_used_at, revoked_at \
             FROM account_api_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Records that the key was used at `now`. Callers do it only when the stored time is an
    /// hour old or more, so a busy key costs one write an hour, not one per request.
    pub async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> sqlx::Result<()> {
        sqlx::query("UPDATE account_api_keys SET last_used_at = $1 WHERE key_id = $2")
            .bind(crate::store::time::text(now))
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account's keys, oldest first, revoked ones included.
    pub async fn api_keys(&self, account_id: &str) -> sqlx::Result<Vec<ApiKeyInfo>> {
        sqlx::query_as::<_, ApiKeyInfo>(
            "SELECT key_id, created_at, last_used_at, revoked_at FROM account_api_keys \
             WHERE account_id = $1 ORDER BY created_at, key_id",
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
        let mut tx = begin_serialized(&self.pool).await?;
        let select = "SELECT key_id, created_at, last_used_at, revoked_at FROM account_api_keys \
                      WHERE key_id = $1 AND account_id = $2";
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
                 WHERE account_id = $1 AND revoked_at IS NULL",
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
        sqlx::query("UPDATE account_api_keys SET revoked_at = $1 WHERE key_id = $2")
            .bind(crate::store::time::text(now))
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
