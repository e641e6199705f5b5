//! The room's view of who is speaking: feeds RFC 6464 levels to the dominant-speaker detector and
//! reports talk time in increments for meeting summaries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::engine::participant::PKey;
use crate::forward::audio_level;
use crate::forward::speaker::{SpeakerConfig, SpeakerDetector};

/// Talk time is reported in increments at most this often (a summary needs seconds, not ticks).
const TALK_TIME_REPORT: Duration = Duration::from_secs(5);

pub struct RoomSpeakers {
    detector: SpeakerDetector<PKey>,
    reported: HashMap<PKey, Duration>,
    last_report: Option<Instant>,
}

impl Default for RoomSpeakers {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomSpeakers {
    pub fn new() -> Self {
        Self {
            detector: SpeakerDetector::new(SpeakerConfig::default()),
            reported: HashMap::new(),
            last_report: None,
        }
    }

    /// One audio-level header extension payload from `key`'s microphone.
    pub fn observe(&mut self, key: PKey, ext_payload: &[u8], now: Instant) {
        if let Some(level) = audio_level::parse(ext_payload) {
            self.detector.on_level(&key, level, now);
        }
    }

    /// Re-evaluates; returns the new dominant speaker when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<Option<PKey>> {
        self.detector.tick(now).map(|c| c.dominant)
    }

    /// Forgets a participant who left; returns their whole talk time in the room, including
    /// what was never reported in an increment (the last seconds before leaving).
    pub fn remove(&mut self, key: PKey, now: Instant) -> Duration {
        self.reported.remove(&key);
        self.detector.remove_with_talk_time(&key, now)
    }

    /// Talk time gained since the last report, per participant, when a report is due.
    pub fn take_talk_time(&mut self, now: Instant, force: bool) -> Vec<(PKey, u64)> {
        if !force
            && self
                .last_report
                .is_some_and(|t| now.saturating_duration_since(t) < TALK_TIME_REPORT)
        {
            return Vec::new();
        }
        self.last_report = Some(now);
        let mut out = Vec::new();
        for (k, total) in self.detector.speaking_times() {
            let before = self.reported.get(k).copied().unwrap_or_default();
            if total > before {
                out.push((*k, (total - before).as_millis() as u64));
                self.reported.insert(*k, total);
            }
        }
        out
    }
}
