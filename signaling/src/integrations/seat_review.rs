//! The monthly inactive-seat review (licensing spec 6.2) sent to the account: the licensing
//! module records one `inactive_seats_review` event per account and month that has seats unused
//! for 30 days or more ([`emit_inactive_review`](parley_licensing::service::Service::emit_inactive_review),
//! idempotent); this job moves each due one into the outbox as a `seats.review` customer
//! webhook and an email to each of the account's active admins with a link to the review page,
//! then marks the event delivered. The outbox then owns retries.
//!
//! The idempotency keys come from the licensing event's id, so a crash between enqueueing and
//! marking enqueues the same messages again, which the outbox collapses; a second run in the
//! same month finds nothing new to emit.

use parley_licensing::store::{INACTIVE_DAYS, OutboxEvent};
use serde_json::{Value, json};

use crate::domain::Email;
use crate::outbox::email::{Purpose, email_message};
use crate::outbox::webhooks::EventType;
use crate::startup::AppState;
use crate::users::{AccountRole, OutgoingEmail, UserStatus};

/// The licensing event kind this job consumes.
pub const KIND: &str = "inactive_seats_review";
/// Where the admin console shows the review.
pub const REVIEW_PAGE: &str = "/admin/#/seat-review";

/// Emits this month's reviews and moves the due ones; returns how many reviews were moved.
pub async fn run_once(app: &AppState) -> anyhow::Result<usize> {
    let licensing = &app.licensing;
    licensing
        .emit_inactive_review()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let due = licensing
        .due_events()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut moved = 0;
    for e in due.into_iter().filter(|e| e.kind == KIND) {
        send(app, &e).await?;
        licensing
            .store()
            .mark_delivered(e.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        moved += 1;
    }
    Ok(moved)
}

/// One scheduled run of [`run_once`], logging what it queued.
pub async fn run_logged(app: AppState) -> anyhow::Result<()> {
    let n = run_once(&app).await?;
    if n > 0 {
        tracing::info!(reviews = n, "inactive-seat reviews queued");
    }
    Ok(())
}

/// One review: the webhook to the account's subscribed endpoints, an email to each admin.
async fn send(app: &AppState, e: &OutboxEvent) -> anyhow::Result<()> {
    let account = e.account_id.to_string();
    let review_url = format!("{}{REVIEW_PAGE}", app.users.public_url);
    let month = e.payload["month"].as_str().unwrap_or_default().to_owned();
    let seats: Vec<Value> = e.payload["users"].as_array().cloned().unwrap_or_default();
    app.integrations
        .events
        .emit(
            &account,
            EventType::SeatsReview,
            &format!("seats.review:{}", e.id),
            json!({
                "month": month,
                "inactive_days": INACTIVE_DAYS,
                "review_url": review_url,
                "seats": seats,
            }),
        )
        .await?;

    let users = app.users.store.of_account(&account).await?;
    let name_of = |id: &str| {
        users
            .iter()
            .find(|u| u.id == id)
            .map_or_else(|| id.to_owned(), |u| u.display_name.clone())
    };
    let lines: Vec<String> = seats
        .iter()
        .map(|s| {
            let who = name_of(s["user_id"].as_str().unwrap_or_default());
            match s["last_active_on"].as_str() {
                Some(day) => format!("  - {who}: last hosted on {day}"),
                None => format!("  - {who}: has not hosted since the seat was assigned"),
            }
        })
        .collect();
    let admins = users
        .iter()
        .filter(|u| u.role() == AccountRole::AccountAdmin && u.status() == UserStatus::Active);
    for admin in admins {
        let Ok(to) = Email::parse(&admin.email) else {
            continue;
        };
        let email = OutgoingEmail {
            to,
            subject: format!("Parley seats to review: {} unused for 30 days", seats.len()),
            text: format!(
                "Hello {},\n\nThe monthly seat review ({month}): these seats of your Parley \
                 account have not been used for {INACTIVE_DAYS} days or more.\n\n{}\n\nReview \
                 them and reclaim the seats nobody needs, so they can go to someone who \
                 will use them:\n\n{review_url}\n",
                admin.display_name,
                lines.join("\n"),
            ),
            html: None,
        };
        app.outbox
            .enqueue(email_message(
                Purpose::SeatReview,
                &email,
                Some(&account),
                Some(format!("seats.review:{}:{}", e.id, admin.id)),
            ))
            .await?;
    }
    Ok(())
}
