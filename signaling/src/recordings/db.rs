//! The `recordings` and `recording_files` tables.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::store::DbPool;

/// One recording as stored.
#[derive(Debug, Clone, FromRow)]
pub struct RecordingRow {
    pub id: String,
    pub meeting_id: String,
    pub account_id: Option<String>,
    pub started_by: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub started_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub stopped_at: Option<DateTime<Utc>>,
    pub status: String,
    pub stop_reason: Option<String>,
    pub bytes: i64,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub expires_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub dir: String,
    /// The meeting's host user (who may see the recording besides the account's admins).
    pub host_user_id: Option<String>,
    pub meeting_title: String,
}

/// One file of a recording.
#[derive(Debug, Clone, FromRow)]
pub struct FileRow {
    pub name: String,
    pub kind: String,
    pub participant_id: Option<String>,
    pub display_name: Option<String>,
    pub codec: String,
    pub bytes: i64,
    pub duration_ms: Option<i64>,
    pub start_offset_ms: i64,
}

pub struct NewRecording<'a> {
    pub id: &'a str,
    pub meeting_id: &'a str,
    pub account_id: Option<&'a str>,
    pub started_by: &'a str,
    pub started_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub dir: &'a str,
    /// The node recording it.
    pub node: &'a str,
}

const COLUMNS: &str = "r.id, r.meeting_id, r.account_id, r.started_by, r.started_at, \
                       r.stopped_at, r.status, r.stop_reason, r.bytes, r.expires_at, r.error, \
                       r.dir, m.host_user_id, m.title AS meeting_title";

pub async fn insert(pool: &DbPool, r: NewRecording<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO recordings (id, meeting_id, account_id, started_by, started_at, status, \
         expires_at, dir, node) VALUES ($1, $2, $3, $4, $5, 'recording', $6, $7, $8)",
    )
    .bind(r.id)
    .bind(r.meeting_id)
    .bind(r.account_id)
    .bind(r.started_by)
    .bind(crate::store::time::text(r.started_at))
    .bind(crate::store::time::opt_text(r.expires_at))
    .bind(r.dir)
    .bind(r.node)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &DbPool, id: &str) -> sqlx::Result<Option<RecordingRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE r.id = $1"
    );
    sqlx::query_as::<_, RecordingRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A meeting's recordings, oldest first.
pub async fn of_meeting(pool: &DbPool, meeting: &str) -> sqlx::Result<Vec<RecordingRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id \
         WHERE r.meeting_id = $1 ORDER BY r.started_at, r.id"
    );
    sqlx::query_as::<_, RecordingRow>(&sql)
        .bind(meeting)
        .fetch_all(pool)
        .await
}

/// An account's recordings, newest first (at most `limit`).
pub async fn of_account(
    pool: &DbPool,
    account: &str,
    limit: u32,
    offset: u32,
) -> sqlx::Result<Vec<RecordingRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id \
         WHERE r.account_id = $1 ORDER BY r.started_at DESC, r.id LIMIT $2 OFFSET $3"
    );
    sqlx::query_as::<_, RecordingRow>(&sql)
        .bind(account)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(pool)
        .await
}

/// How many recordings the account has (for paging through [`of_account`]).
pub async fn count_of_account(pool: &DbPool, account: &str) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recordings WHERE account_id = $1")
        .bind(account)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The id of a meeting's first recording.
pub async fn first_of_meeting(pool: &DbPool, meeting: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT id FROM recordings WHERE meeting_id = $1 ORDER BY started_at, id LIMIT 1",
    )
    .bind(meeting)
    .fetch_optional(pool)
    .await
}

/// A recording's files. A participant's name comes from the meeting's session when it is still
/// there, so an erased person's name is not kept here after erasure.
pub async fn files(pool: &DbPool, id: &str) -> sqlx::Result<Vec<FileRow>> {
    sqlx::query_as::<_, FileRow>(
        "SELECT f.name, f.kind, f.participant_id, \
         COALESCE((SELECT s.display_name FROM participant_sessions s \
                   WHERE s.meeting_id = r.meeting_id AND s.participant_id = f.participant_id \
                   ORDER BY s.seq LIMIT 1), f.display_name) AS display_name, \
         f.codec, f.bytes, f.duration_ms, f.start_offset_ms \
         FROM recording_files f JOIN recordings r ON r.id = f.recording_id \
         WHERE f.recording_id = $1 \
         ORDER BY CASE f.kind WHEN 'composite' THEN 0 WHEN 'mixed_audio' THEN 1 ELSE 2 END, f.name",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

pub async fn file(pool: &DbPool, id: &str, name: &str) -> sqlx::Result<Option<FileRow>> {
    Ok(files(pool, id).await?.into_iter().find(|f| f.name == name))
}

/// Bytes the account's recordings hold on disk as far as the database knows (files of running
/// recordings are counted by the caller from the disk).
pub async fn stored_bytes(pool: &DbPool, account: &str) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM recordings WHERE account_id = $1",
    )
    .bind(account)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The recording stopped: its files are being finished.
pub async fn mark_stopped(
    pool: &DbPool,
    id: &str,
    at: DateTime<Utc>,
    reason: &str,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE recordings SET status = 'processing', stopped_at = $1, stop_reason = $2, \
         error = COALESCE(error, $3) WHERE id = $4 AND status = 'recording'",
    )
    .bind(crate::store::time::text(at))
    .bind(reason)
    .bind(error)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores the files found for a recording (replacing any listed before) and its total size.
pub async fn set_files(
    pool: &DbPool,
    id: &str,
    files: &[super::files::FileEntry],
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM recording_files WHERE recording_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let mut total: u64 = 0;
    for f in files {
        total = total.saturating_add(f.bytes);
        sqlx::query(
            "INSERT INTO recording_files (recording_id, name, kind, participant_id, display_name, \
             codec, bytes, duration_ms, start_offset_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(&f.name)
        .bind(f.kind.as_str())
        .bind(&f.participant_id)
        .bind(&f.display_name)
        .bind(&f.codec)
        .bind(i64::try_from(f.bytes).unwrap_or(i64::MAX))
        .bind(f.duration_ms.and_then(|d| i64::try_from(d).ok()))
        .bind(i64::try_from(f.start_offset_ms).unwrap_or(0))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE recordings SET bytes = $1 WHERE id = $2")
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(total)
}

/// Final status: `ready`, or `failed` with the error.
pub async fn finish(pool: &DbPool, id: &str, error: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE recordings SET status = $1, error = COALESCE($2, error), \
         stopped_at = COALESCE(stopped_at, $3) WHERE id = $4",
    )
    .bind(if error.is_some() { "failed" } else { "ready" })
    .bind(error)
    .bind(crate::store::time::now_text())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Recordings this node's previous process left unfinished (it stopped while they ran or were
/// processed). Other nodes' recordings on a shared database are theirs.
pub async fn unfinished(pool: &DbPool, node: &str) -> sqlx::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT id, meeting_id, dir FROM recordings \
         WHERE status IN ('recording', 'processing') AND node = $1",
    )
    .bind(node)
    .fetch_all(pool)
    .await
}

/// Marks failed the recordings of `meeting` that another node was making when it lost the
/// meeting (it died, so its files cannot be finished): called by the meeting's new node.
pub async fn fail_lost(pool: &DbPool, meeting: &str, node: &str) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "UPDATE recordings SET status = 'failed', stop_reason = 'failed', \
         error = 'the node recording the meeting was lost', \
         stopped_at = COALESCE(stopped_at, $1) \
         WHERE meeting_id = $2 AND status IN ('recording', 'processing') AND node <> $3",
    )
    .bind(crate::store::time::now_text())
    .bind(meeting)
    .bind(node)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Recordings whose retention ended by `now` (never one still running or being processed).
pub async fn expired(pool: &DbPool, now: DateTime<Utc>) -> sqlx::Result<Vec<RecordingRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id \
         WHERE r.expires_at IS NOT NULL AND r.expires_at <= $1 \
         AND r.status IN ('ready', 'failed') ORDER BY r.expires_at LIMIT 100"
    );
    sqlx::query_as::<_, RecordingRow>(&sql)
        .bind(crate::store::time::text(now))
        .fetch_all(pool)
        .await
}

/// Deletes a recording's metadata (its files' rows go with it).
pub async fn delete(pool: &DbPool, id: &str) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM recordings WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The names participants went by in a meeting, by participant id (for the files' labels).
pub async fn participant_names(
    pool: &DbPool,
    meeting: &str,
) -> sqlx::Result<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT participant_id, display_name FROM participant_sessions WHERE meeting_id = $1",
    )
    .bind(meeting)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}
