//! Users of an account and how they prove who they are: roles, email + password sign-in with
//! lockout, sessions (cookie or bearer), invitations and password resets by email.
//!
//! Secrets handled here never reach a log or a `Debug` string: passwords are hashed with
//! argon2id ([`password`]); session, invitation and reset tokens are 256-bit random values
//! stored only as SHA-256 (a fast hash suffices for values nobody can guess, as for API keys).

pub mod clock;
pub mod lockout;
pub mod mail;
pub mod model;
pub mod password;
pub mod session;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use clock::UsersClock;
pub use lockout::LockoutPolicy;
pub use mail::{EmailSender, EmailSenderHook, MailError, MemoryEmailSender, OutgoingEmail};
pub use model::{AccountRole, UserStatus, UserView};
pub use session::{Principal, SignedIn};

use crate::configuration::Config;
use crate::domain::random_token;
use crate::store::DbPool;
use clock::Now;
use password::Hasher;
use store::UserStore;

/// Invitations stay valid a week, reset links an hour.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const RESET_TTL: Duration = Duration::from_secs(3600);
/// Random part of session and one-time tokens: 43 alphanumerics, about 256 bits.
const TOKEN_LEN: usize = 43;

/// Everything the user flows need, built once at start.
pub struct Users {
    pub store: UserStore,
    pub hasher: Hasher,
    now: Now,
    pub mailer: Arc<dyn EmailSender>,
    pub lockout: LockoutPolicy,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// Serialises the read-modify-write of lockout counters (one SQLite file, one process), so
    /// concurrent wrong guesses are all counted. Never held across password hashing.
    pub(crate) throttle_lock: tokio::sync::Mutex<()>,
    pub public_url: String,
}

impl Users {
    pub fn new(config: &Config, pool: DbPool) -> anyhow::Result<Users> {
        let mailer: Arc<dyn EmailSender> = match (&config.email_sender, &config.smtp_url) {
            (Some(hook), _) => hook.0.clone(),
            (None, Some(url)) => Arc::new(mail::SmtpEmailSender::new(url, &config.smtp_from)?),
            (None, None) => Arc::new(mail::NoEmailSender),
        };
        Ok(Users {
            store: UserStore::new(pool),
            hasher: Hasher::default(),
            now: match &config.users_clock {
                Some(c) => Now::Test(c.clone()),
                None => Now::System,
            },
            mailer,
            lockout: config.lockout,
            session_idle: config.session_idle,
            session_max: config.session_max,
            throttle_lock: tokio::sync::Mutex::new(()),
            public_url: config.public_url.clone(),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now.now()
    }

    /// Cookies get `Secure` when the server is reached over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Hex SHA-256 of a token: what the database keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token with a recognisable prefix (`s_` session, `inv_`, `rst_`).
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", random_token(TOKEN_LEN))
}

/// Whether `token` has the shape `<prefix><43 alphanumerics>`; anything else is refused
/// before touching the database.
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token
        .strip_prefix(prefix)
        .is_some_and(|r| r.len() == TOKEN_LEN && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

pub(crate) fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
