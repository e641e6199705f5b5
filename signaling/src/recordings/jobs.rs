//! The two periodic jobs of recordings: the quota watch, which stops a running recording (with a
//! notice to everyone) once the account's storage is used up, and retention, which deletes
//! recordings whose tariff's retention has passed — files and metadata, in the audit log.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::control::{StopReason, quota_error, stop, storage_used};
use super::db;
use crate::domain::MeetingId;
use crate::privacy::{Actor, Target, record};
use crate::startup::AppState;

/// The actor of what the server does by itself (retention).
pub fn system() -> Actor {
    Actor {
        kind: "system",
        id: None,
    }
}

/// Every `every`, stops running recordings whose account has used up its quota.
pub async fn watch_quota(app: AppState, every: Duration, stop_all: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop_all.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        check_quota(&app).await;
    }
}

async fn check_quota(app: &AppState) {
    for (meeting, active) in app.recordings.all_active() {
        let (Some(account), Some(quota)) = (&active.account, active.quota) else {
            continue;
        };
        if active.starting {
            continue;
        }
        let used = match storage_used(app, account).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(%meeting, error = %e, "cannot measure the recording storage");
                continue;
            }
        };
        if used < quota {
            continue;
        }
        let Ok(id) = MeetingId::parse(&meeting) else {
            continue;
        };
        let why = quota_error(app.recordings.megabyte, used, quota).message();
        tracing::info!(%meeting, recording = %active.id, used, quota, "storage quota used up");
        // Only this recording: a newer one started meanwhile is checked on the next round.
        if app
            .recordings
            .active(&meeting)
            .is_some_and(|a| a.id == active.id)
            && let Err(e) = stop(app, &id, StopReason::QuotaExceeded, None).await
        {
            tracing::warn!(%meeting, error = %e, "cannot stop the recording at its quota ({why})");
        }
    }
}

/// One scheduled run of [`delete_expired`], logging what it deleted.
pub async fn retention_once(app: AppState) -> anyhow::Result<()> {
    let n = delete_expired(&app).await?;
    if n > 0 {
        tracing::info!(deleted = n, "expired recordings deleted");
    }
    Ok(())
}

/// Deletes every recording expired by the recordings' "now"; returns how many.
pub async fn delete_expired(app: &AppState) -> anyhow::Result<usize> {
    let rec = &app.recordings;
    let mut n = 0;
    loop {
        let expired = db::expired(&rec.pool, rec.now()).await?;
        if expired.is_empty() {
            return Ok(n);
        }
        for r in expired {
            delete(app, &r, &HeaderMap::new(), system(), "recording.expire").await?;
            n += 1;
        }
    }
}

/// Deletes a recording's files, then its metadata, and audits it. The files go first: a
/// failure leaves the row (and the job tries again), never files nobody can find.
pub async fn delete(
    app: &AppState,
    r: &db::RecordingRow,
    headers: &HeaderMap,
    actor: Actor,
    action: &'static str,
) -> anyhow::Result<()> {
    let root = recording_root(app, r);
    if let Some(root) = root {
        let gone = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await?;
        gone?;
    } else {
        tracing::warn!(recording = %r.id, dir = %r.dir, "files not under the recordings directory; left in place");
    }
    db::delete(&app.recordings.pool, &r.id).await?;
    record(
        app,
        headers,
        actor,
        r.account_id.as_deref(),
        action,
        Target::new("recording", &r.id),
    )
    .await;
    Ok(())
}

/// The directory made for the recording (`…/<account>/<recording id>`), only when the stored
/// path really lies there: a row can never make the server delete anything else.
fn recording_root(app: &AppState, r: &db::RecordingRow) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(&r.dir);
    let root = dir.parent()?;
    let owner = r.account_id.as_deref().unwrap_or(super::UNLICENSED_DIR);
    let expected = app.recordings.base.join(owner).join(&r.id);
    (root == expected && super::is_id(&r.id)).then(|| root.to_path_buf())
}
