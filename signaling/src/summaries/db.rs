//! SQL of the summaries: talk time, the results rule, invited contacts, stored summaries.
//!
//! Kept beside the feature rather than in `store.rs` so that the shared store module only grows
//! where several features need the same query.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};

use crate::store::DbPool;
use crate::store::flag::OptDbFlag;

/// Most invited contacts a meeting may carry.
pub const MAX_CONTACTS: usize = 50;

#[derive(Debug, Clone, FromRow)]
pub struct ContactRow {
    pub name: String,
    pub email: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub added_at: DateTime<Utc>,
}

/// One participant session as the summary needs it.
#[derive(Debug, Clone, FromRow)]
pub struct TalkSessionRow {
    pub display_name: String,
    pub role: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub joined_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub left_at: Option<DateTime<Utc>>,
    pub talk_ms: i64,
}

/// Adds a talk-time increment to the open session of `participant`. Returns whether a session
/// took it (an increment for someone already gone is dropped).
pub async fn add_talk_time(
    pool: &DbPool,
    meeting: &str,
    participant: &str,
    ms: u64,
) -> sqlx::Result<bool> {
    // Clamped: one increment covers ~5 s; a wild value must not overflow the sum.
    let ms = i64::try_from(ms).unwrap_or(i64::MAX).min(3_600_000);
    let r = sqlx::query(
        "UPDATE participant_sessions SET talk_ms = talk_ms + $1 \
         WHERE meeting_id = $2 AND participant_id = $3",
    )
    .bind(ms)
    .bind(meeting)
    .bind(participant)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn talk_sessions(pool: &DbPool, meeting: &str) -> sqlx::Result<Vec<TalkSessionRow>> {
    sqlx::query_as::<_, TalkSessionRow>(
        "SELECT display_name, role, joined_at, left_at, talk_ms FROM participant_sessions \
         WHERE meeting_id = $1 ORDER BY seq",
    )
    .bind(meeting)
    .fetch_all(pool)
    .await
}

/// The license's "results to recipients" flag of a licensed meeting.
pub async fn set_results_allowed(pool: &DbPool, meeting: &str, allowed: bool) -> sqlx::Result<()> {
    sqlx::query("UPDATE meetings SET results_allowed = $1 WHERE id = $2")
        .bind(crate::store::flag::int(allowed))
        .bind(meeting)
        .execute(pool)
        .await?;
    Ok(())
}

/// The host's `send_results` at creation.
pub async fn set_send_results(pool: &DbPool, meeting: &str, send: bool) -> sqlx::Result<()> {
    sqlx::query("UPDATE meetings SET send_results = $1 WHERE id = $2")
        .bind(crate::store::flag::int(send))
        .bind(meeting)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn results_rule(
    pool: &DbPool,
    meeting: &str,
) -> sqlx::Result<(Option<bool>, Option<bool>)> {
    let row = sqlx::query("SELECT results_allowed, send_results FROM meetings WHERE id = $1")
        .bind(meeting)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r) => {
            let allowed: OptDbFlag = r.try_get("results_allowed")?;
            let send: OptDbFlag = r.try_get("send_results")?;
            Ok((allowed.0, send.0))
        }
        None => Ok((None, None)),
    }
}

/// Adds contacts (an address already invited keeps its first entry). Refuses, adding nothing,
/// when the meeting would exceed [`MAX_CONTACTS`]; returns how many were new, or `None` then.
pub async fn add_contacts(
    pool: &DbPool,
    meeting: &str,
    contacts: &[(String, String, String)],
) -> sqlx::Result<Option<usize>> {
    // Serialized: the count and the inserts under one lock, so two concurrent additions cannot
    // both pass the ceiling.
    let mut tx = crate::store::begin_serialized(pool).await?;
    let mut added = 0;
    for (name, email, key) in contacts {
        let r = sqlx::query(
            "INSERT INTO meeting_contacts (meeting_id, name, email, email_key, added_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(meeting)
        .bind(name)
        .bind(email)
        .bind(key)
        .bind(crate::store::time::now_text())
        .execute(&mut *tx)
        .await?;
        added += usize::try_from(r.rows_affected()).unwrap_or(0);
    }
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM meeting_contacts WHERE meeting_id = $1")
        .bind(meeting)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if usize::try_from(n).unwrap_or(usize::MAX) > MAX_CONTACTS {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(added))
}

pub async fn contacts(pool: &DbPool, meeting: &str) -> sqlx::Result<Vec<ContactRow>> {
    sqlx::query_as::<_, ContactRow>(
        "SELECT name, email, added_at FROM meeting_contacts WHERE meeting_id = $1 ORDER BY seq",
    )
    .bind(meeting)
    .fetch_all(pool)
    .await
}

/// Stores the first summary of a meeting; `false` when one exists already (the meeting's end
/// was handled before: nothing more to do, in particular no second email).
pub async fn insert_summary(
    pool: &DbPool,
    meeting: &str,
    json: &str,
    emailed_to: usize,
) -> sqlx::Result<bool> {
    let now = Utc::now();
    let r = sqlx::query(
        "INSERT INTO meeting_summaries (meeting_id, summary, emailed_to, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(meeting)
    .bind(json)
    .bind(i64::try_from(emailed_to).unwrap_or(i64::MAX))
    .bind(crate::store::time::text(now))
    .bind(crate::store::time::text(now))
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Rewrites a stored summary (erasure).
pub async fn replace_summary(pool: &DbPool, meeting: &str, json: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE meeting_summaries SET summary = $1, updated_at = $2 WHERE meeting_id = $3")
        .bind(json)
        .bind(crate::store::time::now_text())
        .bind(meeting)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn summary(pool: &DbPool, meeting: &str) -> sqlx::Result<Option<String>> {
    Ok(summary_with_recipients(pool, meeting)
        .await?
        .map(|(s, _)| s))
}

/// The stored summary and how many contacts it was emailed to.
pub async fn summary_with_recipients(
    pool: &DbPool,
    meeting: &str,
) -> sqlx::Result<Option<(String, i64)>> {
    sqlx::query_as("SELECT summary, emailed_to FROM meeting_summaries WHERE meeting_id = $1")
        .bind(meeting)
        .fetch_optional(pool)
        .await
}
