//! The one consumer of the media plane's recording events. It routes each to the meeting's hub
//! (what everyone sees) and to the database (what is kept), and after `Finished` lists the files,
//! makes the composite video and marks the recording ready.
//!
//! Events of one room arrive in order (`Stopped` before that recording's `Finished`), and the
//! bookkeeping that depends on the order is done before the next event is read; the slow part
//! after `Finished` (reading files, ffmpeg) runs in its own task.

use std::path::{Path, PathBuf};

use parley_sfu::RecordingEvent;
use parley_sfu::recording::composite::{CompositeError, CompositeOptions, compose};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::control::{StopReason, stop, stopped};
use super::files::{FileEntry, Kind, catalogue};
use super::{Finishing, db};
use crate::domain::MeetingId;
use crate::outbox::webhooks::EventType;
use crate::startup::AppState;
use crate::ws::RecordingNotice;

/// The composite's frame: a 1280×720 grid at 15 frames per second.
const COMPOSITE_WIDTH: u32 = 1280;
const COMPOSITE_HEIGHT: u32 = 720;
const COMPOSITE_FPS: u32 = 15;

/// Runs until the media plane's event stream ends.
pub async fn run(mut events: UnboundedReceiver<RecordingEvent>, app: AppState) {
    while let Some(event) = events.recv().await {
        handle(&app, event).await;
    }
}

async fn handle(app: &AppState, event: RecordingEvent) {
    match event {
        RecordingEvent::Started { room, dir } => {
            tracing::debug!(meeting = %room, dir = %dir.display(), "media plane recording");
        }
        RecordingEvent::Stopped { room } => on_stopped(app, &room).await,
        RecordingEvent::Degraded { room, dropped } => {
            tracing::warn!(meeting = %room, dropped, "recording degraded: the disk cannot keep up");
            if let Ok(id) = MeetingId::parse(&room) {
                app.recordings
                    .hubs
                    .recording(&id, RecordingNotice::Degraded { dropped });
            }
        }
        RecordingEvent::Failed { room, error } => {
            tracing::error!(meeting = %room, error = %error, "recording failed");
            if app.recordings.note_failure(&room, &error)
                && let Ok(id) = MeetingId::parse(&room)
            {
                // The meeting goes on; its recording stops, and everyone is told why.
                if let Err(e) = stop(app, &id, StopReason::Failed, Some(error)).await {
                    tracing::warn!(meeting = %room, error = %e, "cannot stop the failed recording");
                }
            }
        }
        RecordingEvent::Finished { room, files } => {
            let Some(done) = app.recordings.take_finished(&room, &files) else {
                tracing::warn!(meeting = %room, "a recording finished that this server did not start");
                return;
            };
            let a = app.clone();
            app.recordings
                .tasks
                .spawn(async move { process(&a, done).await });
        }
    }
}

/// The media plane stopped a recording: either because it was asked (already accounted for) or
/// because the room closed (everyone left, or the meeting ended).
async fn on_stopped(app: &AppState, room: &str) {
    let Some(active) = app.recordings.take_active(room, None, None) else {
        return;
    };
    let Ok(id) = MeetingId::parse(room) else {
        return;
    };
    let ended = matches!(app.store.meeting(&id).await, Ok(Some(m)) if m.ended_at.is_some());
    let reason = if ended {
        StopReason::MeetingEnded
    } else {
        StopReason::Stopped
    };
    stopped(app, &id, &active, reason, None).await;
}

/// After the files are complete: list them, make the composite, and mark the recording `ready`
/// (or `failed`, keeping the files).
pub(crate) async fn process(app: &AppState, done: Finishing) {
    let rec = &app.recordings;
    let error = match catalogue_and_compose(app, &done).await {
        Ok(()) => done.error.clone(),
        Err(e) => Some(done.error.clone().unwrap_or_else(|| format!("{e:#}"))),
    };
    if let Err(e) = db::finish(&rec.pool, &done.id, error.as_deref()).await {
        tracing::error!(recording = %done.id, error = %e, "cannot store the recording's state");
        return;
    }
    match &error {
        Some(e) => tracing::warn!(recording = %done.id, error = %e, "recording failed"),
        None => {
            tracing::info!(recording = %done.id, "recording ready");
            ready_webhook(app, &done).await;
        }
    }
}

async fn catalogue_and_compose(app: &AppState, done: &Finishing) -> anyhow::Result<()> {
    let rec = &app.recordings;
    let names = db::participant_names(&rec.pool, &done.meeting).await?;
    let dir = done.dir.clone();
    let n = names.clone();
    let files = tokio::task::spawn_blocking(move || catalogue(&dir, &n)).await??;
    db::set_files(&rec.pool, &done.id, &files).await?;
    if done.error.is_some() {
        return Ok(());
    }
    let Some(ffmpeg) = rec.ffmpeg.clone() else {
        return Ok(());
    };
    // Nothing was recorded (nobody published): there is nothing to compose.
    if !files
        .iter()
        .any(|f| f.kind != Kind::Composite && f.duration_ms.unwrap_or(0) > 0)
    {
        return Ok(());
    }
    let dir = done.dir.clone();
    let made = tokio::task::spawn_blocking(move || composite(&dir, ffmpeg)).await?;
    // What ffmpeg made is listed with the rest (a failed run leaves nothing behind).
    let dir = done.dir.clone();
    let files = tokio::task::spawn_blocking(move || catalogue(&dir, &names)).await??;
    db::set_files(&rec.pool, &done.id, &files).await?;
    made
}

/// The grid video with the mixed audio, `<dir>/composite.webm`. A recording whose files hold no
/// media has none, and that is no failure.
fn composite(dir: &Path, ffmpeg: PathBuf) -> anyhow::Result<()> {
    let options = CompositeOptions {
        ffmpeg,
        width: COMPOSITE_WIDTH,
        height: COMPOSITE_HEIGHT,
        fps: COMPOSITE_FPS,
    };
    match compose(dir, &options) {
        Ok(path) => {
            tracing::info!(file = %path.display(), "composite video made");
            Ok(())
        }
        Err(CompositeError::Empty) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("composite video: {e}")),
    }
}

/// `recording.ready` to the account's subscribed endpoints.
async fn ready_webhook(app: &AppState, done: &Finishing) {
    let Some(account) = &done.account else {
        return;
    };
    let files = match db::files(&app.recordings.pool, &done.id).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(recording = %done.id, error = %e, "cannot list files for the webhook");
            return;
        }
    };
    let data = json!({
        "recording_id": done.id,
        "meeting_id": done.meeting,
        "url": app.recordings.page_url(&done.id),
        "files": files.iter().map(|f| json!({
            "name": f.name,
            "kind": f.kind,
            "bytes": f.bytes,
            "duration_ms": f.duration_ms,
        })).collect::<Vec<_>>(),
    });
    if let Err(e) = app
        .integrations
        .events
        .emit(
            account,
            EventType::RecordingReady,
            &format!("recording.ready:{}", done.id),
            data,
        )
        .await
    {
        tracing::warn!(recording = %done.id, error = %e, "cannot enqueue recording.ready");
    }
}

/// At start: recordings a previous process left running or unprocessed are listed as they are
/// on disk and marked failed (their files are kept and count against the quota until deleted).
pub async fn recover(app: &AppState) {
    let rec = &app.recordings;
    let rows = match db::unfinished(&rec.pool, &rec.node).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot look for unfinished recordings");
            return;
        }
    };
    for (id, meeting, dir) in rows {
        let names = db::participant_names(&rec.pool, &meeting)
            .await
            .unwrap_or_default();
        let path = PathBuf::from(&dir);
        let files: Vec<FileEntry> = tokio::task::spawn_blocking(move || catalogue(&path, &names))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let r = async {
            db::set_files(&rec.pool, &id, &files).await?;
            db::finish(
                &rec.pool,
                &id,
                Some("the server stopped before the recording was finished"),
            )
            .await
        }
        .await;
        match r {
            Ok(()) => {
                tracing::warn!(recording = %id, "recording left unfinished by a previous run")
            }
            Err(e) => {
                tracing::error!(recording = %id, error = %e, "cannot close an unfinished recording")
            }
        }
    }
}
