//! Adapter between the room and the dominant-speaker detector in `forward::speaker`.

use std::time::Instant;

use crate::engine::participant::PKey;

/// Placeholder until wired to `forward::speaker`.
pub struct SpeakerDetector;

impl SpeakerDetector {
    pub fn new() -> Self {
        Self
    }
    pub fn observe(&mut self, _key: PKey, _ext_payload: &[u8], _now: Instant) {}
    pub fn tick(&mut self, _now: Instant) -> Option<PKey> {
        None
    }
    pub fn remove(&mut self, _key: PKey) {}
    pub fn take_talk_time(&mut self) -> Vec<(PKey, u64)> {
        Vec::new()
    }
}
