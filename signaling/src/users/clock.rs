//! The time the user rules read. Production reads the system clock; tests hold a
//! [`UsersClock`] and move it forward to expire sessions, lockouts and tokens without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A test hook: the system clock plus an offset that only moves forward by hand. Nothing in the
/// environment, the file or the flags can set it (like `LicensingClock`).
#[derive(Clone, Default)]
pub struct UsersClock(Arc<AtomicI64>);

impl UsersClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves "now" forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.0.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for UsersClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UsersClock(+{}ms)", self.0.load(Ordering::SeqCst))
    }
}

/// What the service asks for the time.
#[derive(Clone, Debug)]
pub(crate) enum Now {
    System,
    Test(UsersClock),
}

impl Now {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self {
            Now::System => Utc::now(),
            Now::Test(c) => c.now(),
        }
    }
}
