//! Recording of meetings, the server's side: who may start and stop it, the notice to everyone,
//! the files' metadata in the database, the composite video, the storage quota and retention of
//! the tariff, and short-lived signed download links.
//!
//! The media plane (`parley_sfu::recording`) writes the files: one per published track (Ogg
//! Opus, WebM VP8) with a JSON sidecar each, and `mixed.ogg` when built with `mixdown`. This
//! module decides and keeps account:
//!
//! - [`control`]: start and stop (from the WebSocket or the REST API), with the refusals a person
//!   can act on (no grant, no tariff feature, quota used up, already recording).
//! - [`events`]: the one consumer of the media plane's recording events: it tells the meeting's
//!   hub, and when the files are complete lists them ([`files`]), makes the composite video and
//!   marks the recording ready (a `recording.ready` webhook).
//! - [`jobs`]: the quota watch of running recordings and the retention job.
//! - [`links`] and [`http`]: who may see recordings, signed links and the downloads.
//!
//! A recording's life: `recording` → `processing` (stopped; files being finished, catalogued and
//! composited) → `ready`, or `failed` with the error (files kept). Its files live in
//! `<recordings_dir>/<account id or _unlicensed>/<recording id>/<meeting id>/`.

pub mod control;
pub mod db;
pub mod events;
pub mod files;
pub mod http;
pub mod jobs;
pub mod links;
pub mod media_info;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::configuration::Config;
use crate::store::DbPool;
use crate::users::clock::Now;
use crate::ws::Hubs;

pub use control::{RecordingError, Requester, StopReason};

/// Directory of recordings of meetings without an account.
pub const UNLICENSED_DIR: &str = "_unlicensed";

/// The recordings service: settings, and the recordings running or finishing per meeting.
pub struct Recordings {
    pub(crate) pool: DbPool,
    /// This node (see `Config::node_id`): recordings are written where the meeting's media is.
    pub(crate) node: String,
    pub(crate) base: PathBuf,
    pub(crate) ffmpeg: Option<PathBuf>,
    pub(crate) link_ttl: Duration,
    pub(crate) link_key: Vec<u8>,
    pub(crate) megabyte: u64,
    pub(crate) record_unlicensed: bool,
    pub(crate) public_url: String,
    pub(crate) hubs: Hubs,
    now: Now,
    rooms: Mutex<HashMap<String, Room>>,
    /// The event consumer and the processing after each recording, so shutdown can let them
    /// finish what the media plane hands over last.
    pub(crate) tasks: tokio_util::task::TaskTracker,
}

/// One meeting's recordings in memory: the one running (at most one) and those stopped whose
/// files the media plane is still closing, oldest first.
#[derive(Default)]
struct Room {
    active: Option<Active>,
    finishing: VecDeque<Finishing>,
}

/// A running recording.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub id: String,
    pub account: Option<String>,
    /// Where the files are: the media plane's per-room directory below `…/<recording id>`.
    pub dir: PathBuf,
    /// Bytes the account may store in all, when the tariff sets a quota.
    pub quota: Option<u64>,
    /// Reserved while the media plane is asked to start; not yet announced.
    pub starting: bool,
}

/// A stopped recording whose files are being closed.
#[derive(Debug, Clone)]
pub(crate) struct Finishing {
    pub id: String,
    pub meeting: String,
    pub account: Option<String>,
    pub dir: PathBuf,
    /// A write error the media plane reported: the recording ends `failed`.
    pub error: Option<String>,
}

impl Recordings {
    pub fn new(config: &Config, pool: DbPool, hubs: Hubs, link_key: Vec<u8>) -> Recordings {
        Recordings {
            pool,
            node: config.node_id().to_owned(),
            base: config.recordings_dir(),
            ffmpeg: config.ffmpeg_path(),
            link_ttl: config.recording_link_ttl,
            link_key,
            megabyte: config.storage_megabyte.max(1),
            record_unlicensed: config.record_unlicensed,
            public_url: config.public_url.clone(),
            hubs,
            now: match &config.recordings_clock {
                Some(c) => Now::Test(c.clone()),
                None => Now::System,
            },
            rooms: Mutex::new(HashMap::new()),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// At shutdown, after the media plane has stopped (and closed every recording's files):
    /// waits, at most `patience`, for the last recordings to be catalogued. What is cut short
    /// is marked failed at the next start, files kept.
    pub async fn drain(&self, patience: Duration) {
        self.tasks.close();
        if tokio::time::timeout(patience, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some recordings were not processed before shutdown");
        }
    }

    /// The recordings' "now" (moved by tests for retention and link expiry).
    pub fn now(&self) -> DateTime<Utc> {
        self.now.now()
    }

    /// The stable page of a recording: `{public url}/recordings/{id}`.
    pub fn page_url(&self, id: &str) -> String {
        page_url(&self.public_url, id)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        // The map holds plain data and no code panics while holding it; a poisoned lock still
        // holds a usable map.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the meeting for a new recording; `false` when one is already running.
    pub(crate) fn reserve(&self, meeting: &str, active: Active) -> bool {
        let mut rooms = self.rooms();
        let room = rooms.entry(meeting.to_owned()).or_default();
        if room.active.is_some() {
            return false;
        }
        room.active = Some(active);
        true
    }

    /// Drops a reservation that did not become a recording.
    pub(crate) fn release(&self, meeting: &str, id: &str) {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get_mut(meeting) {
            if room.active.as_ref().is_some_and(|a| a.id == id) {
                room.active = None;
            }
            if room.active.is_none() && room.finishing.is_empty() {
                rooms.remove(meeting);
            }
        }
    }

    /// Marks a reservation as running; `false` when it was stopped in the meantime.
    pub(crate) fn activate(&self, meeting: &str, id: &str) -> bool {
        let mut rooms = self.rooms();
        match rooms
            .get_mut(meeting)
            .and_then(|r| r.active.as_mut())
            .filter(|a| a.id == id)
        {
            Some(a) => {
                a.starting = false;
                true
            }
            None => false,
        }
    }

    /// The running recording of a meeting (also while starting).
    pub(crate) fn active(&self, meeting: &str) -> Option<Active> {
        self.rooms().get(meeting).and_then(|r| r.active.clone())
    }

    /// Every running recording, for the quota watch.
    pub(crate) fn all_active(&self) -> Vec<(String, Active)> {
        self.rooms()
            .iter()
            .filter_map(|(m, r)| r.active.clone().map(|a| (m.clone(), a)))
            .collect()
    }

    /// The directories being written or closed for `account` (not yet counted in the database).
    pub(crate) fn live_dirs(&self, account: &str) -> Vec<PathBuf> {
        let rooms = self.rooms();
        let mut dirs = Vec::new();
        for room in rooms.values() {
            if let Some(a) = room
                .active
                .as_ref()
                .filter(|a| a.account.as_deref() == Some(account))
            {
                dirs.push(a.dir.clone());
            }
            for f in room
                .finishing
                .iter()
                .filter(|f| f.account.as_deref() == Some(account))
            {
                dirs.push(f.dir.clone());
            }
        }
        dirs
    }

    /// Moves the running recording of `meeting` (if `id` matches, or any when `id` is None) to
    /// the finishing queue and returns it.
    pub(crate) fn take_active(
        &self,
        meeting: &str,
        id: Option<&str>,
        error: Option<String>,
    ) -> Option<Active> {
        let mut rooms = self.rooms();
        let room = rooms.get_mut(meeting)?;
        if id.is_some_and(|id| room.active.as_ref().is_some_and(|a| a.id != id)) {
            return None;
        }
        let active = room.active.take()?;
        room.finishing.push_back(Finishing {
            id: active.id.clone(),
            meeting: meeting.to_owned(),
            account: active.account.clone(),
            dir: active.dir.clone(),
            error,
        });
        Some(active)
    }

    /// Notes a write error on the recording it most likely concerns: the running one, else the
    /// oldest still finishing. Returns whether it was the running one.
    pub(crate) fn note_failure(&self, meeting: &str, error: &str) -> bool {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(meeting) else {
            return false;
        };
        if room.active.is_some() {
            return true;
        }
        if let Some(f) = room.finishing.front_mut() {
            f.error.get_or_insert_with(|| error.to_owned());
        }
        false
    }

    /// The finished recording the media plane's `Finished` is about: the one whose directory
    /// holds the files, else the oldest finishing.
    pub(crate) fn take_finished(&self, meeting: &str, files: &[PathBuf]) -> Option<Finishing> {
        let mut rooms = self.rooms();
        let room = rooms.get_mut(meeting)?;
        let at = files
            .first()
            .and_then(|f| room.finishing.iter().position(|r| f.starts_with(&r.dir)))
            .unwrap_or(0);
        let found = room.finishing.remove(at);
        if room.active.is_none() && room.finishing.is_empty() {
            rooms.remove(meeting);
        }
        found
    }
}

/// `{public url}/recordings/{id}`.
pub fn page_url(public_url: &str, id: &str) -> String {
    format!("{public_url}/recordings/{id}")
}

/// A new recording id: `rec_` and 20 letters and digits (also a directory name).
pub fn new_id() -> String {
    format!("rec_{}", crate::domain::random_token(20))
}

/// Whether `s` has the shape of a recording id (checked before touching the database).
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("rec_")
        .is_some_and(|r| r.len() == 20 && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The page of a meeting's first recording, for its summary and the deal card (the row exists
/// from the recording's start, so a summary made at the meeting's end already has it).
pub async fn meeting_page_url(
    pool: &DbPool,
    public_url: &str,
    meeting: &str,
) -> sqlx::Result<Option<String>> {
    Ok(db::first_of_meeting(pool, meeting)
        .await?
        .map(|id| page_url(public_url, &id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_shape() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        for bad in ["rec_", "rec_../../etc/passwd00000", "x", "rec_abc", ""] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
