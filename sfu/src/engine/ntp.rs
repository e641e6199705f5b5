//! The NTP wall clock sender reports carry (RFC 3550 §4), read off the engine's `Instant`s.
//!
//! The engine is driven by the instants it is given (a simulated clock in tests), so the wall
//! clock is taken once and advanced by them: reports are consistent with the RTP times derived
//! from the same instants, which is what a receiver lines audio and video up with.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

pub struct NtpClock {
    base: Instant,
    /// Nanoseconds since 1900 at `base`.
    base_ntp_nanos: u128,
}

impl NtpClock {
    pub fn new(base: Instant, wall: SystemTime) -> Self {
        let unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            base,
            base_ntp_nanos: unix.as_nanos() + u128::from(NTP_UNIX_OFFSET) * 1_000_000_000,
        }
    }

    /// `now` as a 64-bit NTP timestamp: seconds in the high word, the fraction in the low one.
    pub fn ntp(&self, now: Instant) -> u64 {
        let nanos = self.base_ntp_nanos + now.saturating_duration_since(self.base).as_nanos();
        let secs = (nanos / 1_000_000_000) as u64;
        let frac = ((nanos % 1_000_000_000) << 32) / 1_000_000_000;
        (secs << 32) | frac as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_unix_epoch_is_ntp_second_2208988800_and_time_advances_with_the_instants() {
        let base = Instant::now();
        let clock = NtpClock::new(base, UNIX_EPOCH);
        assert_eq!(clock.ntp(base), NTP_UNIX_OFFSET << 32);
        let later = clock.ntp(base + Duration::from_millis(1500));
        assert_eq!(later >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(later & 0xffff_ffff, 1 << 31);
    }
}
