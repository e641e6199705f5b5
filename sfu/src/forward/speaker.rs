//! Active and dominant speaker detection from RFC 6464 audio levels, and talk time.
//!
//! Per participant the levels of the last 1.5 s are kept in fifteen 100 ms buckets (fixed, no
//! allocation per packet). Two things are derived:
//!
//! - *speaking*: enough buckets (400 ms worth by default) in which most samples were voice-loud
//!   (at or above -40 dBov). Counting buckets rather than averaging levels is what tells steady
//!   background noise (never loud enough) from speech (loud, with pauses).
//! - *smoothed level*: the mean loudness over the window, missing buckets counting as silence
//!   (a muted or DTX sender sends nothing), used to compare speakers.
//!
//! The dominant speaker is the one the room should highlight. To keep the highlight from
//! flickering, it changes only when another speaking participant has been clearly louder (by a
//! margin, or the dominant one stopped speaking) for a whole second; the first speaker after
//! silence takes it at once, and after more than 2 s in which nobody speaks it is `None`.
//!
//! Talk time counts, per participant, the 100 ms buckets in which most samples were voice. (Not
//! the time "speaking" is true: that state lags speech by the smoothing window, which would add
//! about a second to every utterance in a talk-time summary.)

use super::audio_level::AudioLevel;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

const BUCKET_MS: u64 = 100;
const BUCKETS: usize = 15;

/// Tuning knobs, with defaults that suit Chrome/Firefox levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// A sample at or louder than this (-dBov, smaller is louder) counts as voice.
    pub voice_level_dbov: u8,
    /// Buckets (of 100 ms, within 1.5 s) with mostly voice samples needed to be "speaking".
    pub min_voice_buckets: usize,
    /// How much louder (in dB of smoothed level) a challenger must be.
    pub switch_margin_db: u8,
    /// How long a challenger must stay clearly louder.
    pub switch_after: Duration,
    /// After this long with nobody speaking, there is no dominant speaker.
    pub silence_after: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            voice_level_dbov: 40,
            min_voice_buckets: 4,
            switch_margin_db: 6,
            switch_after: Duration::from_secs(1),
            silence_after: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    id: u64,
    loudness_sum: u32,
    samples: u16,
    voice_samples: u16,
}

impl Bucket {
    /// Most samples in this bucket were loud enough to be voice.
    fn is_voice(&self) -> bool {
        u32::from(self.voice_samples) * 2 > u32::from(self.samples)
    }
}

#[derive(Debug, Clone, Default)]
struct Participant {
    buckets: [Bucket; BUCKETS],
    talk_time: Duration,
    /// Buckets before this id are already counted in `talk_time`.
    counted_upto: u64,
    speaking: bool,
    /// Smoothed loudness (127 - level) as of the last tick.
    loudness: u32,
}

/// What the room hears about: the dominant speaker changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DominantChange<K> {
    /// The new dominant speaker, `None` after silence.
    pub dominant: Option<K>,
}

/// The detector for one room, keyed by participant id. See the module documentation.
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    cfg: SpeakerConfig,
    epoch: Option<Instant>,
    participants: HashMap<K, Participant>,
    dominant: Option<K>,
    challenger: Option<(K, Instant)>,
    last_speech: Option<Instant>,
}

impl<K: Clone + Eq + Hash> SpeakerDetector<K> {
    /// A detector with this tuning.
    pub fn new(cfg: SpeakerConfig) -> Self {
        SpeakerDetector {
            cfg,
            epoch: None,
            participants: HashMap::new(),
            dominant: None,
            challenger: None,
            last_speech: None,
        }
    }

    fn bucket_id(&self, now: Instant) -> u64 {
        let since = self
            .epoch
            .map_or(Duration::ZERO, |e| now.saturating_duration_since(e));
        (since.as_millis() / u128::from(BUCKET_MS)) as u64
    }

    /// Records one audio level sample (one per audio packet carrying the extension).
    pub fn on_level(&mut self, who: &K, level: AudioLevel, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
        let id = self.bucket_id(now);
        // Look up first so the key is cloned only for a new participant.
        let p = match self.participants.get_mut(who) {
            Some(p) => p,
            None => self.participants.entry(who.clone()).or_default(),
        };
        let Some(b) = p.buckets.get_mut((id % BUCKETS as u64) as usize) else {
            return;
        };
        if b.id != id || b.samples == 0 {
            *b = Bucket {
                id,
                ..Bucket::default()
            };
        }
        let level = level.level.min(127);
        b.loudness_sum += u32::from(127 - level);
        b.samples = b.samples.saturating_add(1);
        if level <= self.cfg.voice_level_dbov {
            b.voice_samples = b.voice_samples.saturating_add(1);
        }
    }

    /// Forgets a participant who left.
    pub fn remove(&mut self, who: &K) {
        self.participants.remove(who);
        if self.challenger.as_ref().is_some_and(|(c, _)| c == who) {
            self.challenger = None;
        }
    }

    /// Forgets a participant who left and returns their whole talk time, including the voice
    /// buckets no tick has counted yet: those up to `now`, the current one too (nothing more
    /// will be added to it), so the last words before leaving are not lost.
    pub fn remove_with_talk_time(&mut self, who: &K, now: Instant) -> Duration {
        let cur = self.bucket_id(now);
        let total = self.participants.get(who).map_or(Duration::ZERO, |p| {
            let voice = p
                .buckets
                .iter()
                .filter(|b| b.samples > 0 && b.id >= p.counted_upto && b.id <= cur && b.is_voice())
                .count();
            p.talk_time + Duration::from_millis(BUCKET_MS * voice as u64)
        });
        self.remove(who);
        total
    }

    /// Smoothed loudness (127 - level) and whether speaking, over the window ending at `now`.
    fn measure(p: &Participant, cur: u64, cfg: &SpeakerConfig) -> (u32, bool) {
        let mut loud_sum = 0u32;
        let mut voice_buckets = 0usize;
        for b in &p.buckets {
            if b.samples == 0 || b.id > cur || cur - b.id >= BUCKETS as u64 {
                continue;
            }
            loud_sum += b.loudness_sum / u32::from(b.samples);
            if b.is_voice() {
                voice_buckets += 1;
            }
        }
        (
            loud_sum / BUCKETS as u32,
            voice_buckets >= cfg.min_voice_buckets,
        )
    }

    /// Smoothed level of `who` in -dBov (127 = silent or unknown), as of the last tick.
    pub fn smoothed_level(&self, who: &K) -> u8 {
        self.participants
            .get(who)
            .map_or(127, |p| 127u32.saturating_sub(p.loudness) as u8)
    }

    /// Whether `who` was speaking at the last tick.
    pub fn is_speaking(&self, who: &K) -> bool {
        self.participants.get(who).is_some_and(|p| p.speaking)
    }

    /// Everyone speaking at the last tick with their smoothed level, loudest first (for an
    /// "active speakers" event; allocates, once per tick, not per packet).
    pub fn active_speakers(&self) -> Vec<(K, u8)> {
        let mut v: Vec<(K, u8)> = self
            .participants
            .iter()
            .filter(|(_, p)| p.speaking)
            .map(|(k, p)| (k.clone(), 127u32.saturating_sub(p.loudness) as u8))
            .collect();
        v.sort_by_key(|(_, l)| *l);
        v
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<&K> {
        self.dominant.as_ref()
    }

    /// Total time `who` has been speaking.
    pub fn speaking_time(&self, who: &K) -> Duration {
        self.participants
            .get(who)
            .map_or(Duration::ZERO, |p| p.talk_time)
    }

    /// Talk time of every participant.
    pub fn speaking_times(&self) -> impl Iterator<Item = (&K, Duration)> {
        self.participants.iter().map(|(k, p)| (k, p.talk_time))
    }

    /// Re-evaluates levels, talk time and the dominant speaker. Call periodically (every
    /// 100–300 ms). Returns the change of dominant speaker, if any.
    pub fn tick(&mut self, now: Instant) -> Option<DominantChange<K>> {
        let cur = self.bucket_id(now);
        let cfg = self.cfg;
        let mut loudest: Option<(&K, u32)> = None;
        for (k, p) in self.participants.iter_mut() {
            let (loudness, speaking) = Self::measure(p, cur, &cfg);
            p.loudness = loudness;
            p.speaking = speaking;
            // Completed voice buckets not counted yet (the ring holds 1.5 s, ticks are closer).
            let from = p.counted_upto;
            let voice = p
                .buckets
                .iter()
                .filter(|b| b.samples > 0 && b.id >= from && b.id < cur && b.is_voice())
                .count();
            p.talk_time += Duration::from_millis(BUCKET_MS * voice as u64);
            p.counted_upto = p.counted_upto.max(cur);
            if speaking && loudest.is_none_or(|(_, l)| loudness > l) {
                loudest = Some((k, loudness));
            }
        }
        let loudest = loudest.map(|(k, l)| (k.clone(), l));
        if loudest.is_some() {
            self.last_speech = Some(now);
        }

        // The dominant speaker left the room.
        // The dominant speaker left the room: someone speaking takes over at once.
        if let Some(d) = &self.dominant
            && !self.participants.contains_key(d)
        {
            self.challenger = None;
            self.dominant = loudest.map(|(k, _)| k);
            return Some(DominantChange {
                dominant: self.dominant.clone(),
            });
        }

        let Some(d) = self.dominant.clone() else {
            // Nobody dominant: the first to speak takes it at once.
            return loudest.map(|(k, _)| {
                self.dominant = Some(k.clone());
                self.challenger = None;
                DominantChange { dominant: Some(k) }
            });
        };

        let silent_for = self
            .last_speech
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        if silent_for > cfg.silence_after {
            self.dominant = None;
            self.challenger = None;
            return Some(DominantChange { dominant: None });
        }

        let (d_loud, d_speaking) = self
            .participants
            .get(&d)
            .map_or((0, false), |p| (p.loudness, p.speaking));
        let candidate = loudest.filter(|(k, l)| {
            *k != d && (!d_speaking || *l >= d_loud + u32::from(cfg.switch_margin_db))
        });
        match (candidate, &self.challenger) {
            (None, _) => {
                self.challenger = None;
                None
            }
            (Some((k, _)), Some((c, since))) if *c == k => {
                if now.saturating_duration_since(*since) >= cfg.switch_after {
                    self.dominant = Some(k.clone());
                    self.challenger = None;
                    Some(DominantChange { dominant: Some(k) })
                } else {
                    None
                }
            }
            (Some((k, _)), _) => {
                self.challenger = Some((k, now));
                None
            }
        }
    }
}

impl<K: Clone + Eq + Hash> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self::new(SpeakerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic room: each participant's level per 100 ms slot (None = no packets),
    /// packets every 20 ms, ticks every 100 ms. Returns the dominant speaker after each tick.
    fn run(
        det: &mut SpeakerDetector<&'static str>,
        t0: Instant,
        start_ms: u64,
        script: &[(&'static str, &[Option<u8>])],
    ) -> Vec<Option<&'static str>> {
        let slots = script.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
        let mut out = Vec::new();
        for slot in 0..slots {
            for sub in 0..5u64 {
                let now = t0 + Duration::from_millis(start_ms + slot as u64 * 100 + sub * 20);
                for (who, levels) in script {
                    if let Some(Some(level)) = levels.get(slot) {
                        det.on_level(
                            who,
                            AudioLevel {
                                voice: true,
                                level: *level,
                            },
                            now,
                        );
                    }
                }
            }
            let now = t0 + Duration::from_millis(start_ms + slot as u64 * 100 + 99);
            det.tick(now);
            out.push(det.dominant().copied());
        }
        out
    }

    fn repeat(level: Option<u8>, n: usize) -> Vec<Option<u8>> {
        vec![level; n]
    }

    #[test]
    fn first_speaker_takes_over_after_onset() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let a = repeat(Some(30), 10);
        let b = repeat(Some(110), 10);
        let dom = run(&mut d, t0, 0, &[("a", &a), ("b", &b)]);
        // Speaking needs 4 voice buckets: dominant from the 4th tick on.
        assert_eq!(&dom[..3], &[None, None, None]);
        assert!(dom[3..].iter().all(|x| *x == Some("a")), "{dom:?}");
        assert!(d.is_speaking(&"a"));
        assert!(!d.is_speaking(&"b"));
        // Ten of fifteen buckets heard so far: loudness 97 * 10 / 15 = 64, level 127 - 64.
        assert_eq!(d.smoothed_level(&"a"), 63);
    }

    #[test]
    fn steady_noise_is_not_speech() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let noise = repeat(Some(55), 30);
        let dom = run(&mut d, t0, 0, &[("fan", &noise)]);
        assert!(dom.iter().all(Option::is_none));
        assert_eq!(d.speaking_time(&"fan"), Duration::ZERO);
        assert_eq!(d.smoothed_level(&"fan"), 55);
    }

    #[test]
    fn hysteresis_needs_a_second_of_clearly_louder() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        // a speaks alone for 2 s.
        let dom = run(&mut d, t0, 0, &[("a", &repeat(Some(35), 20))]);
        assert_eq!(dom.last(), Some(&Some("a")));
        // b speaks only slightly louder (within the margin): a stays.
        let dom = run(
            &mut d,
            t0,
            2000,
            &[("a", &repeat(Some(35), 30)), ("b", &repeat(Some(32), 30))],
        );
        assert!(dom.iter().all(|x| *x == Some("a")), "{dom:?}");
        // b much louder for 0.7 s, then silent: its smoothed level is a margin louder for
        // less than a second, so no switch.
        let mut b = repeat(Some(10), 7);
        b.extend(repeat(Some(127), 20));
        let dom = run(&mut d, t0, 5000, &[("a", &repeat(Some(35), 27)), ("b", &b)]);
        assert!(dom.iter().all(|x| *x == Some("a")), "{dom:?}");
        // b much louder for long: switches after the smoothed level has been a margin louder
        // for a second, not before.
        let dom = run(
            &mut d,
            t0,
            7700,
            &[("a", &repeat(Some(35), 40)), ("b", &repeat(Some(10), 40))],
        );
        let first_b = dom.iter().position(|x| *x == Some("b")).unwrap();
        // From silence b needs 13 buckets to be a margin louder in the 1.5 s mean, then 1 s.
        assert!(
            (20..=25).contains(&first_b),
            "switched after {first_b} ticks: {dom:?}"
        );
        assert!(dom[first_b..].iter().all(|x| *x == Some("b")));
    }

    #[test]
    fn silence_yields_none_after_two_seconds() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut a = repeat(Some(30), 10);
        a.extend(repeat(Some(127), 50));
        let dom = run(&mut d, t0, 0, &[("a", &a)]);
        // Speaking is detected while at least 4 of the last 15 buckets are voice (through tick
        // 20), then more than 2 s of silence are needed.
        let last_a = dom.iter().rposition(|x| *x == Some("a")).unwrap();
        assert_eq!(last_a, 40, "{dom:?}");
        assert!(dom[last_a + 1..].iter().all(Option::is_none));
        // Muted (no packets at all) behaves the same.
        let mut d = SpeakerDetector::default();
        let mut a = repeat(Some(30), 10);
        a.extend(repeat(None, 50));
        let dom = run(&mut d, t0, 0, &[("a", &a), ("b", &repeat(Some(127), 60))]);
        assert_eq!(dom.last(), Some(&None));
    }

    #[test]
    fn dominant_who_stops_is_replaced_after_a_second() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut a = repeat(Some(30), 20);
        a.extend(repeat(Some(127), 40));
        let mut b = repeat(Some(127), 20);
        b.extend(repeat(Some(40), 40));
        let dom = run(&mut d, t0, 0, &[("a", &a), ("b", &b)]);
        assert_eq!(dom[19], Some("a"));
        assert_eq!(dom.last(), Some(&Some("b")));
    }

    #[test]
    fn talk_time_accumulates_while_speaking() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut a = repeat(Some(30), 30);
        a.extend(repeat(Some(127), 30));
        run(&mut d, t0, 0, &[("a", &a), ("b", &repeat(Some(127), 60))]);
        // Exactly the 3 s of voice buckets.
        assert_eq!(d.speaking_time(&"a"), Duration::from_secs(3));
        assert_eq!(d.speaking_time(&"b"), Duration::ZERO);
        assert_eq!(d.speaking_times().count(), 2);
    }

    #[test]
    fn leaving_counts_the_talk_no_tick_has_counted_yet() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        // 2 s of voice with the usual ticks, then 250 ms more with no tick (the participant
        // leaves between ticks, in the middle of a bucket).
        run(&mut d, t0, 0, &[("a", &repeat(Some(30), 20))]);
        assert_eq!(d.speaking_time(&"a"), Duration::from_millis(1900));
        for ms in (2000..2250).step_by(20) {
            let level = AudioLevel {
                voice: true,
                level: 30,
            };
            d.on_level(&"a", level, t0 + Duration::from_millis(ms));
        }
        let total = d.remove_with_talk_time(&"a", t0 + Duration::from_millis(2250));
        // Bucket 19 (counted at no tick yet), 20 and 21 complete, 22 partly: 2.3 s.
        assert_eq!(total, Duration::from_millis(2300));
        assert_eq!(d.speaking_time(&"a"), Duration::ZERO, "forgotten");
        // Someone never heard has no talk time.
        assert_eq!(
            d.remove_with_talk_time(&"nobody", t0 + Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn leaving_dominant_is_replaced_or_cleared() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        run(
            &mut d,
            t0,
            0,
            &[("a", &repeat(Some(30), 10)), ("b", &repeat(Some(35), 10))],
        );
        assert_eq!(d.dominant(), Some(&"a"));
        d.remove(&"a");
        let c = d.tick(t0 + Duration::from_millis(1000));
        assert_eq!(
            c,
            Some(DominantChange {
                dominant: Some("b")
            })
        );
        d.remove(&"b");
        let c = d.tick(t0 + Duration::from_millis(1100));
        assert_eq!(c, Some(DominantChange { dominant: None }));
        assert!(d.active_speakers().is_empty());
    }

    #[test]
    fn active_speakers_loudest_first() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        run(
            &mut d,
            t0,
            0,
            &[
                ("a", &repeat(Some(35), 15)),
                ("b", &repeat(Some(20), 15)),
                ("c", &repeat(Some(127), 15)),
            ],
        );
        let v = d.active_speakers();
        assert_eq!(v, vec![("b", 20), ("a", 35)]);
    }
}
