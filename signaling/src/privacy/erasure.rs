//! Erasure of a person's data on request (agreement 12.5): the person, named by email, is
//! anonymised in the account's users, in the invited contacts, participant sessions and chat of
//! the account's meetings, in who started their recordings and whose tracks the recording files
//! are, in their stored summaries, and in the account's email messages in the outbox. Financial records (orders, invoices,
//! payments, documents: the licensing tables) are kept untouched, as the law on accounting
//! requires. The audit entry names the person only by a salted hash of the address.

use std::collections::{BTreeSet, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Actor, Target, record};
use crate::domain::{Email, random_token};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::users::Manager;
use crate::startup::AppState;
use crate::store::DbPool;

/// What an erased person's name becomes everywhere.
pub const ERASED_NAME: &str = "erased user";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The person's email address.
    pub email: String,
}

/// How many records were anonymised.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ErasureReport {
    pub users: u64,
    pub contacts: u64,
    pub participant_sessions: u64,
    pub chat_messages: u64,
    pub summaries: u64,
    /// Email messages in the outbox (pending, failed or delivered) whose recipient was the
    /// person: address and body removed, the undelivered ones failed.
    pub outbox_emails: u64,
    /// Recordings the person started, and recording files of the person's own tracks (the
    /// media stays: a recording is the account's record of the meeting, like its chat).
    pub recordings: u64,
    pub recording_files: u64,
}

/// Erase a person's data in the account (account admin session or the operator). Invoices and
/// payments are kept.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/erasure", tag = "privacy",
    params(("account" = String, Path)), request_body = ErasureRequest, security(("bearer" = [])),
    responses((status = 200, body = ErasureReport), (status = 401, body = ErrorBody),
        (status = 403, description = "A member, or an API key", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn erase(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ErasureRequest>,
) -> Result<Json<ErasureReport>, ApiError> {
    let (manager, account) = crate::routes::users::manager(&app, &headers, &account).await?;
    if matches!(manager, Manager::AccountKey) {
        // Erasure is a person's decision on a person's request, not a server-to-server call.
        return Err(ApiError::Forbidden(
            "Erasure needs an account admin's session or the operator.".into(),
        ));
    }
    let email = Email::parse(&req.email)
        .map_err(|_| ApiError::invalid("invalid_email", "email is not a valid address."))?;
    let account_id = account.to_string();
    let pool = app.store.pool();
    // Messages of no account (the summary of an unlicensed meeting) are nobody's to erase but
    // the operator's.
    let unowned = matches!(manager, Manager::Operator);
    let (report, meetings) = anonymise(pool, &account_id, email.key(), unowned).await?;
    let mut report = report;
    for meeting in meetings {
        report.summaries += u64::from(rebuild_summary(&app, &meeting).await?);
    }
    let hash = person_hash(pool, email.key()).await?;
    record(
        &app,
        &headers,
        Actor::from_manager(&manager, account),
        Some(&account_id),
        "person.erase",
        Target::new("person", &hash),
    )
    .await;
    tracing::info!(
        users = report.users,
        contacts = report.contacts,
        "person erased"
    );
    Ok(Json(report))
}

/// The salted SHA-256 of an address: the audit log can show that the same person was erased
/// twice without holding the address. The salt is per installation, made on first use.
async fn person_hash(pool: &DbPool, key: &str) -> sqlx::Result<String> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ('erasure_salt', $1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(random_token(32))
    .execute(pool)
    .await?;
    let salt: String = sqlx::query("SELECT value FROM settings WHERE key = 'erasure_salt'")
        .fetch_one(pool)
        .await?
        .try_get("value")?;
    Ok(hex::encode(Sha256::digest(format!("{salt}:{key}"))))
}

/// One transaction over the meeting store; returns the counts and the meetings touched.
async fn anonymise(
    pool: &DbPool,
    account: &str,
    key: &str,
    unowned: bool,
) -> sqlx::Result<(ErasureReport, BTreeSet<String>)> {
    let mut report = ErasureReport::default();
    let mut touched = BTreeSet::new();
    let now = Utc::now();
    let mut tx = crate::store::begin_serialized(pool).await?;

    // Names the person went by, to find them in sessions and chat (which hold names only).
    let mut names: HashSet<String> = HashSet::new();
    let users: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, display_name FROM users WHERE account_id = $1 AND email_key = $2",
    )
    .bind(account)
    .bind(key)
    .fetch_all(&mut *tx)
    .await?;
    for (id, name) in &users {
        names.insert(name.to_lowercase());
        let placeholder = format!("erased-{id}@erased.invalid");
        sqlx::query(
            "UPDATE users SET display_name = $1, email = $2, email_key = $3, password_hash = NULL, \
             status = 'disabled' WHERE id = $4",
        )
        .bind(ERASED_NAME)
        .bind(&placeholder)
        .bind(&placeholder)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE user_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(crate::store::time::text(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE user_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
            .bind(crate::store::time::text(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        report.users += 1;
    }

    let contacts: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT c.seq, c.name, c.meeting_id FROM meeting_contacts c \
         JOIN meetings m ON m.id = c.meeting_id WHERE m.account_id = $1 AND c.email_key = $2",
    )
    .bind(account)
    .bind(key)
    .fetch_all(&mut *tx)
    .await?;
    for (seq, name, meeting) in contacts {
        names.insert(name.to_lowercase());
        touched.insert(meeting);
        // The unique (meeting, email_key) needs a distinct placeholder per row.
        sqlx::query(
            "UPDATE meeting_contacts SET name = $1, email = 'erased@erased.invalid', \
             email_key = $2 WHERE seq = $3",
        )
        .bind(ERASED_NAME)
        .bind(format!("erased-{seq}"))
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        report.contacts += 1;
    }
    names.remove("");

    // Names are compared in Rust: SQLite's lower() folds ASCII only, and names are often not.
    let sessions: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT s.seq, s.display_name, s.meeting_id FROM participant_sessions s \
         JOIN meetings m ON m.id = s.meeting_id WHERE m.account_id = $1",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    for (seq, name, meeting) in sessions {
        if names.contains(&name.to_lowercase()) {
            sqlx::query("UPDATE participant_sessions SET display_name = $1 WHERE seq = $2")
                .bind(ERASED_NAME)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            touched.insert(meeting);
            report.participant_sessions += 1;
        }
    }
    let chat: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT c.seq, c.display_name, c.text, c.meeting_id FROM chat_messages c \
         JOIN meetings m ON m.id = c.meeting_id WHERE m.account_id = $1",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    for (seq, name, text, meeting) in chat {
        let by_person = names.contains(&name.to_lowercase());
        let scrubbed = scrub(&text, key);
        if by_person || scrubbed != text {
            let new_name = if by_person {
                ERASED_NAME
            } else {
                name.as_str()
            };
            sqlx::query("UPDATE chat_messages SET display_name = $1, text = $2 WHERE seq = $3")
                .bind(new_name)
                .bind(&scrubbed)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            touched.insert(meeting);
            report.chat_messages += 1;
        }
    }
    let (recordings, recording_files) = anonymise_recordings(&mut tx, account, &names).await?;
    report.recordings = recordings;
    report.recording_files = recording_files;
    report.outbox_emails = scrub_outbox(&mut tx, account, key, unowned).await?;
    tx.commit().await?;
    Ok((report, touched))
}

/// The person's names out of the account's recordings: who started one (`started_by`), and
/// whose track a file is (`display_name`, kept for when the meeting's sessions are gone). Names
/// are matched as for sessions and chat.
async fn anonymise_recordings(
    tx: &mut sqlx::AnyConnection,
    account: &str,
    names: &HashSet<String>,
) -> sqlx::Result<(u64, u64)> {
    let started: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.id, r.started_by FROM recordings r \
         JOIN meetings m ON m.id = r.meeting_id WHERE m.account_id = $1",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    let mut recordings = 0;
    for (id, by) in started {
        if names.contains(&by.to_lowercase()) {
            sqlx::query("UPDATE recordings SET started_by = $1 WHERE id = $2")
                .bind(ERASED_NAME)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            recordings += 1;
        }
    }
    let files: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT f.recording_id, f.name, f.display_name FROM recording_files f \
         JOIN recordings r ON r.id = f.recording_id JOIN meetings m ON m.id = r.meeting_id \
         WHERE m.account_id = $1 AND f.display_name IS NOT NULL",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    let mut renamed = 0;
    for (recording, file, name) in files {
        if names.contains(&name.to_lowercase()) {
            sqlx::query(
                "UPDATE recording_files SET display_name = $1 \
                 WHERE recording_id = $2 AND name = $3",
            )
            .bind(ERASED_NAME)
            .bind(&recording)
            .bind(&file)
            .execute(&mut *tx)
            .await?;
            renamed += 1;
        }
    }
    Ok((recordings, renamed))
}

/// The person's address out of the account's email messages (and, for the operator, those of
/// no account). Matched in Rust: the address is inside the JSON payload.
async fn scrub_outbox(
    tx: &mut sqlx::AnyConnection,
    account: &str,
    key: &str,
    unowned: bool,
) -> sqlx::Result<u64> {
    use crate::outbox::email::{EMAIL, erased_payload, recipient_key};
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, payload FROM outbox_messages WHERE kind = $1 \
         AND (account_id = $2 OR ($3 AND account_id IS NULL))",
    )
    .bind(EMAIL)
    .bind(account)
    .bind(unowned)
    .fetch_all(&mut *tx)
    .await?;
    let mut n = 0;
    for (id, payload) in rows {
        let Ok(payload) = serde_json::from_str::<serde_json::Value>(&payload) else {
            continue;
        };
        if recipient_key(&payload).as_deref() != Some(key) {
            continue;
        }
        // An undelivered message can no longer go out: it fails, visibly, and drops its lease
        // (a worker mid-send then cannot settle it as anything else).
        sqlx::query(
            "UPDATE outbox_messages SET payload = $1, \
             status = CASE status WHEN 'delivered' THEN 'delivered' ELSE 'failed' END, \
             last_error = CASE status WHEN 'delivered' THEN last_error \
                          ELSE 'the recipient was erased' END, \
             lease_token = NULL, lease_until = NULL WHERE id = $2",
        )
        .bind(erased_payload(&payload).to_string())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

/// `text` with every occurrence of the address (any case) replaced.
fn scrub(text: &str, key: &str) -> String {
    if key.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_lowercase();
    // Lower-casing may change byte lengths outside ASCII; then fall back to exact matches.
    if lower.len() != text.len() {
        return text.replace(key, "[erased]");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (i, _) in lower.match_indices(key) {
        if i < rest {
            continue;
        }
        out.push_str(&text[rest..i]);
        out.push_str("[erased]");
        rest = i + key.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// Rewrites the stored summary of `meeting` (if it has one) from the anonymised records.
async fn rebuild_summary(app: &AppState, meeting: &str) -> Result<bool, ApiError> {
    let pool = app.store.pool();
    if crate::summaries::db::summary(pool, meeting)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let Ok(id) = crate::domain::MeetingId::parse(meeting) else {
        return Ok(false);
    };
    let Some(row) = app.store.meeting(&id).await? else {
        return Ok(false);
    };
    let summary = crate::summaries::build(pool, &row, &app.config.public_url).await?;
    let json = serde_json::to_string(&summary).map_err(|e| ApiError::Internal(e.into()))?;
    crate::summaries::db::replace_summary(pool, meeting, &json).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn scrubs_the_address_in_any_case() {
        assert_eq!(
            scrub(
                "mail Anna@Example.com or anna@example.com!",
                "anna@example.com"
            ),
            "mail [erased] or [erased]!"
        );
        assert_eq!(scrub("nothing here", "anna@example.com"), "nothing here");
    }
}
