//! The after-meeting summary: built from the meeting's stored sessions (with their talk time)
//! and chat when the meeting ends, kept as JSON, readable by the host and the account's admins,
//! and emailed to the invited contacts (through the outbox) when the results rule allows it.
//!
//! The results rule (agreement 1.12): a licensed meeting sends results to its invited contacts
//! when its license includes "results to recipients" (copied at creation) unless the host said
//! `send_results: false`; an unlicensed meeting sends them only when the host explicitly asked
//! with `send_results: true` at creation.

pub mod db;
pub mod http;

use std::time::Duration;

use chrono::Utc;

use crate::crm::summary::{ChatLine, MeetingSummary, ParticipantSummary, Side};
use crate::domain::{Email, MeetingId};
use crate::outbox::email::{Purpose, email_message};
use crate::startup::AppState;
use crate::store::{DbPool, MeetingRow};
use crate::users::OutgoingEmail;

/// Copies the license's "results to recipients" (agreement 1.12) onto a new licensed meeting,
/// like the other tariff limits, so a later tariff change never alters a meeting. Asked of the
/// licensing service here rather than carried in `MeetingLicense`, which several creation paths
/// build. A license that can no longer be read counts as not allowing.
pub async fn copy_results_rule(
    app: &AppState,
    meeting: &str,
    license: Option<&crate::store::MeetingLicense>,
) -> Result<(), crate::error::ApiError> {
    let Some(license) = license else {
        return Ok(());
    };
    let allowed = match uuid::Uuid::parse_str(&license.account_id) {
        Ok(account) => app
            .licensing
            .may_host(account, &license.host_user_id)
            .await
            .is_ok_and(|e| e.results_to_recipients_allowed),
        Err(_) => false,
    };
    db::set_results_allowed(app.store.pool(), meeting, allowed).await?;
    Ok(())
}

/// Listens for meetings the hubs end (host action over the WebSocket).
pub async fn on_ended(mut ended: tokio::sync::mpsc::UnboundedReceiver<MeetingId>, app: AppState) {
    while let Some(id) = ended.recv().await {
        meeting_ended(&app, &id).await;
    }
}

/// Whether the results go to the invited contacts (see the module docs).
pub fn results_to_recipients(results_allowed: Option<bool>, send_results: Option<bool>) -> bool {
    match results_allowed {
        Some(licensed) => licensed && send_results != Some(false),
        None => send_results == Some(true),
    }
}

/// The side of a participant. Hosts (who join with the meeting's host credential: the rep and
/// the colleagues the rep gave it to) are the rep side; everyone joining by invitation is the
/// client side.
pub fn side_of(role: &str) -> Side {
    if role == "host" {
        Side::Rep
    } else {
        Side::Client
    }
}

/// The summary of `meeting` from what the store holds now; links start with `public_url`.
pub async fn build(
    pool: &DbPool,
    meeting: &MeetingRow,
    public_url: &str,
) -> sqlx::Result<MeetingSummary> {
    let sessions = db::talk_sessions(pool, &meeting.id).await?;
    let chat = chat_lines(pool, &meeting.id).await?;
    // The first join: `started_at` is written just after the first session, so it can be a
    // moment later than that participant's join time.
    let first_join = sessions.iter().map(|s| s.joined_at).min();
    let started_at = match (meeting.started_at, first_join) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(meeting.created_at),
    };
    let ended_at = meeting.ended_at.unwrap_or_else(Utc::now).max(started_at);
    Ok(MeetingSummary {
        title: meeting.title.clone(),
        started_at,
        ended_at,
        participants: sessions
            .into_iter()
            .map(|s| ParticipantSummary {
                side: side_of(&s.role),
                name: s.display_name,
                joined_at: s.joined_at,
                left_at: s.left_at,
                talk_time: Duration::from_millis(u64::try_from(s.talk_ms).unwrap_or(0)),
            })
            .collect(),
        chat,
        // The recording's page exists from its start: a summary made at the meeting's end links
        // it even while the files are still being processed.
        recording_url: crate::recordings::meeting_page_url(pool, public_url, &meeting.id).await?,
    })
}

async fn chat_lines(pool: &DbPool, meeting: &str) -> sqlx::Result<Vec<ChatLine>> {
    let rows = sqlx::query_as::<_, (String, String, crate::store::time::DbTime)>(
        "SELECT display_name, text, sent_at FROM chat_messages WHERE meeting_id = $1 ORDER BY seq",
    )
    .bind(meeting)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(from, text, at)| ChatLine {
            at: at.0,
            from,
            text,
        })
        .collect())
}

/// Handles the end of a meeting: builds and stores its summary once, then emails it to the
/// invited contacts when the rule allows. Safe to call more than once and from several places
/// (the REST end and the hub's end both call it): only the first call does anything.
pub async fn meeting_ended(app: &AppState, id: &MeetingId) {
    if let Err(e) = finish(app, id).await {
        tracing::error!(meeting = %id, error = %e, "cannot make the meeting summary");
    }
}

async fn finish(app: &AppState, id: &MeetingId) -> anyhow::Result<()> {
    let pool = app.store.pool();
    let Some(meeting) = app.store.meeting(id).await? else {
        return Ok(());
    };
    if meeting.ended_at.is_none() {
        return Ok(());
    }
    let summary = build(pool, &meeting, &app.config.public_url).await?;
    // Who gets the results is settled before the summary is stored, so a reader of the summary
    // never sees it without its recipient count.
    let (allowed, asked) = db::results_rule(pool, id.as_str()).await?;
    let recipients: Vec<Email> = if results_to_recipients(allowed, asked) {
        // Stored addresses were validated on the way in; one that no longer parses is skipped.
        db::contacts(pool, id.as_str())
            .await?
            .iter()
            .filter_map(|c| Email::parse(&c.email).ok())
            .collect()
    } else {
        Vec::new()
    };
    let json = serde_json::to_string(&summary)?;
    if !db::insert_summary(pool, id.as_str(), &json, recipients.len()).await? {
        return Ok(());
    }
    tracing::info!(meeting = %id, "meeting summary stored");
    if let Err(e) = to_crm(app, &meeting, &summary).await {
        // The summary is stored; the CRM copy is retried by hand from the outbox if need be.
        tracing::error!(meeting = %id, error = %e, "cannot queue the summary for the CRM");
    }
    if recipients.is_empty() {
        return Ok(());
    }
    let subject = format!("Meeting summary: {}", summary.bare_title());
    let (text, html) = (summary.to_text(), summary.to_html());
    for to in recipients {
        // One message per meeting and recipient, however often the end is handled. A meeting
        // of no account queues its mail with no owner: no account's outbox lists it (the
        // operator's erasure still scrubs it).
        let key = format!("summary:{}:{}", id.as_str(), to.key());
        let email = OutgoingEmail {
            to,
            subject: subject.clone(),
            text: text.clone(),
            html: Some(html.clone()),
        };
        app.outbox
            .enqueue(email_message(
                Purpose::MeetingSummary,
                &email,
                meeting.account_id.as_deref(),
                Some(key),
            ))
            .await?;
    }
    tracing::info!(meeting = %id, "summary queued for the contacts");
    Ok(())
}

/// For a meeting started from a deal of an account with a connected CRM: the summary as a note on
/// the deal's timeline and a follow-up task, through the outbox (retried, idempotent by meeting).
async fn to_crm(
    app: &AppState,
    meeting: &MeetingRow,
    summary: &MeetingSummary,
) -> anyhow::Result<()> {
    let Some(account) = meeting.account_id.as_deref() else {
        return Ok(());
    };
    let deal: Option<String> = sqlx::query_scalar("SELECT deal_id FROM meetings WHERE id = $1")
        .bind(meeting.id.as_str())
        .fetch_optional(app.store.pool())
        .await?
        .flatten();
    let Some(deal) = deal else {
        return Ok(());
    };
    let Some(connection) = app.integrations.connections.for_account(account).await? else {
        return Ok(());
    };
    let key = meeting.id.as_str();
    app.outbox
        .enqueue(crate::outbox::crm::note_message(
            &connection.id,
            &deal,
            &summary.to_text(),
            &format!("{key}:note"),
        ))
        .await?;
    let task = crate::crm::FollowUpTask {
        title: format!("Follow up: {}", summary.bare_title()),
        description: format!(
            "After the meeting of {}: send the materials and agree the next step.",
            summary.started_at.format("%Y-%m-%d %H:%M UTC")
        ),
        // The next business morning is the CRM user's call; a day is a sensible default.
        due: summary.ended_at + chrono::Duration::days(1),
        responsible_user_id: None,
    };
    app.outbox
        .enqueue(crate::outbox::crm::task_message(
            &connection.id,
            &deal,
            &task,
            &format!("{key}:task"),
        ))
        .await?;
    tracing::info!(meeting = %meeting.id, "summary queued for the CRM deal");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_rule() {
        // Licensed: the license decides, the host may only opt out.
        assert!(results_to_recipients(Some(true), None));
        assert!(results_to_recipients(Some(true), Some(true)));
        assert!(!results_to_recipients(Some(true), Some(false)));
        assert!(!results_to_recipients(Some(false), Some(true)));
        // Unlicensed: only on explicit request.
        assert!(!results_to_recipients(None, None));
        assert!(!results_to_recipients(None, Some(false)));
        assert!(results_to_recipients(None, Some(true)));
    }

    #[test]
    fn hosts_are_the_rep_side() {
        assert_eq!(side_of("host"), Side::Rep);
        assert_eq!(side_of("guest"), Side::Client);
    }

    /// Increments add up per session; the ratio follows from the sums.
    #[tokio::test]
    async fn talk_time_bookkeeping_and_ratio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::Store::connect(&url).await.expect("store");
        let id = MeetingId::generate();
        let row = store
            .insert_meeting(&id, "Demo", None, None)
            .await
            .expect("meeting");
        let (rep, client) = (
            crate::domain::ParticipantId::generate(),
            crate::domain::ParticipantId::generate(),
        );
        for (pid, role, name) in [
            (&rep, crate::domain::Role::Host, "Ivan"),
            (&client, crate::domain::Role::Guest, "Anna"),
        ] {
            store
                .insert_session(crate::store::NewSession {
                    meeting: &id,
                    participant: pid,
                    identity: name,
                    display_name: name,
                    role,
                    joined_at: Utc::now(),
                })
                .await
                .expect("session");
        }
        let pool = store.pool();
        // Through the hub's handler of `SfuEvent::TalkTime`, as the media plane drives it.
        for _ in 0..3 {
            crate::ws::record_talk_time(&store, &id, rep.as_str(), 5000).await;
        }
        for _ in 0..9 {
            crate::ws::record_talk_time(&store, &id, client.as_str(), 5000).await;
        }
        // Zero increments and ids that are not participant ids are ignored.
        crate::ws::record_talk_time(&store, &id, client.as_str(), 0).await;
        crate::ws::record_talk_time(&store, &id, "not a participant", 5000).await;
        // Someone unknown: dropped, not an error.
        assert!(
            !db::add_talk_time(pool, id.as_str(), "nobody", 5000)
                .await
                .expect("add")
        );
        store.end_meeting(&id).await.expect("end");
        let row = store.meeting(&id).await.expect("load").unwrap_or(row);
        let s = build(pool, &row, "http://parley.test")
            .await
            .expect("build");
        assert_eq!(s.participants.len(), 2);
        assert_eq!(s.participants[0].talk_time, Duration::from_secs(15));
        assert_eq!(s.participants[1].talk_time, Duration::from_secs(45));
        let ratio = s.talk_ratio();
        assert_eq!(ratio.rep, Duration::from_secs(15));
        assert_eq!(ratio.client, Duration::from_secs(45));
        assert_eq!(ratio.rep_share(), Some(0.25));
        assert!(s.to_text().contains("rep 25% / client 75%"));
        assert!(s.participants.iter().all(|p| p.left_at.is_some()));
        store.close().await;
    }
}
