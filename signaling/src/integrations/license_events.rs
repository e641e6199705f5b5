//! The licensing module's reminder events (`outbox_events` of `parley_licensing`, kind
//! `lot_ending`: 90, 30, 14, 7 and 1 days before a license ends) delivered as `license.expiring`
//! customer webhooks. A small periodic task moves the due ones into the outbox and marks them
//! delivered there; the customer webhook outbox then owns retries.

use parley_licensing::service::Service as Licensing;
use serde_json::json;

use super::Events;
use crate::outbox::webhooks::EventType;

/// Moves due `lot_ending` events; returns how many were moved. Other kinds (the monthly seat
/// review) are left for their own consumer.
pub async fn move_due(licensing: &Licensing, events: &Events) -> anyhow::Result<usize> {
    let due = licensing
        .due_events()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut moved = 0;
    for e in due.into_iter().filter(|e| e.kind == "lot_ending") {
        // The licensing event's id is stable, so a crash between enqueue and mark_delivered
        // enqueues the same messages again, which the outbox's idempotency keys collapse.
        let mut data = e.payload.clone();
        if let serde_json::Value::Object(m) = &mut data {
            m.insert("due_on".into(), json!(e.due_on));
        }
        events
            .emit(
                &e.account_id.to_string(),
                EventType::LicenseExpiring,
                &format!("license.expiring:{}", e.id),
                data,
            )
            .await?;
        licensing
            .store()
            .mark_delivered(e.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        moved += 1;
    }
    Ok(moved)
}

/// One scheduled run of [`move_due`], logging what it queued.
pub async fn run_once(licensing: Licensing, events: Events) -> anyhow::Result<()> {
    let n = move_due(&licensing, &events).await?;
    if n > 0 {
        tracing::info!(moved = n, "license reminders queued as webhooks");
    }
    Ok(())
}
