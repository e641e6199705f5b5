//! Sign-in lockout. The agreement (appendix 1, item 1.6) foresees accounts blocked after
//! repeated wrong credentials but gives no numbers, so ours are the platform's: 5 failures
//! within 15 minutes lock sign-in for 15 minutes. A pure rule over a small per-email state, so
//! the table tests below pin it down; the store only persists the state.
//!
//! The state is keyed by the email as typed (case-folded), whether or not a user has it: an
//! unknown address locks exactly like a known one, so lockout reveals nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lock_for: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lock_for: Duration::from_secs(15 * 60),
        }
    }
}

/// Failures counted in the current window, and the lock if one is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub failures: u32,
    pub window_start: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Throttle {
    /// The end of a running lock, if any.
    pub fn locked(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    /// The state after one more failure at `now` (attempts during a lock are refused before
    /// they are checked, so they never reach here and never extend the lock).
    pub fn after_failure(self, policy: &LockoutPolicy, now: DateTime<Utc>) -> Throttle {
        let in_window = self
            .window_start
            .is_some_and(|start| now < start + dur(policy.window));
        let (failures, window_start) = if in_window {
            (self.failures.saturating_add(1), self.window_start)
        } else {
            (1, Some(now))
        };
        if failures >= policy.max_failures {
            Throttle {
                failures: 0,
                window_start: None,
                locked_until: Some(now + dur(policy.lock_for)),
            }
        } else {
            Throttle {
                failures,
                window_start,
                locked_until: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time")
            + chrono::Duration::minutes(min)
    }

    #[test]
    fn five_failures_in_the_window_lock_for_fifteen_minutes() {
        let p = LockoutPolicy::default();
        let mut s = Throttle::default();
        for (i, min) in [0, 1, 2, 3].into_iter().enumerate() {
            s = s.after_failure(&p, t(min));
            assert_eq!(s.failures, u32::try_from(i + 1).expect("small"));
            assert_eq!(s.locked(t(min)), None);
        }
        s = s.after_failure(&p, t(14));
        assert_eq!(s.locked(t(14)), Some(t(29)));
        assert_eq!(s.locked(t(28)), Some(t(29)));
        assert_eq!(s.locked(t(29)), None, "the lock ends on time");
        // After the lock the count starts afresh.
        s = s.after_failure(&p, t(30));
        assert_eq!((s.failures, s.locked(t(30))), (1, None));
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let p = LockoutPolicy::default();
        let mut s = Throttle::default();
        for min in [0, 1, 2, 3] {
            s = s.after_failure(&p, t(min));
        }
        // The fifth failure comes 15 minutes after the first: a new window.
        s = s.after_failure(&p, t(15));
        assert_eq!((s.failures, s.locked(t(15))), (1, None));
    }
}
