//! Passwords: argon2id with a random per-user salt, in the PHC string format (the parameters
//! travel with the hash, so they can be raised later and old hashes still verify).
//!
//! m = 19 MiB, t = 2, p = 1 is OWASP's baseline for argon2id and takes tens of milliseconds on
//! one core of a small server. Hashing runs on the blocking pool, and at most
//! [`MAX_CONCURRENT_HASHES`] at a time so a burst of sign-ins cannot claim gigabytes of memory.

use std::fmt;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Invalid;

/// Memory cost in KiB (19 MiB), iterations and lanes.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Two cores: more parallel hashes only queue inside the blocking pool while holding memory.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// A password as received. Never printed: `Debug` shows a mask.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    /// Bounds the work an attacker can make us hash per request.
    pub const MAX_CHARS: usize = 128;

    /// A new password (invitation, reset): length rules apply.
    pub fn new_password(s: &str) -> Result<Self, Invalid> {
        let n = s.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(Invalid(format!(
                "password must be {} to {} characters",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid(
                "password must not contain control characters".into(),
            ));
        }
        Ok(Password(s.to_owned()))
    }

    /// A password presented at sign-in: only the upper bound (older rules may have allowed
    /// shorter ones, and a wrong password is simply wrong).
    pub fn presented(s: &str) -> Self {
        let cut: String = s.chars().take(Self::MAX_CHARS + 1).collect();
        Password(cut)
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(********)")
    }
}

fn argon2() -> Argon2<'static> {
    // The constants are valid argon2 parameters; `Params::new` only fails outside its bounds.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Limits concurrent hashing (see the module docs).
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
        }
    }
}

/// A hash of a random password, verified against when the email is unknown or the user has no
/// password yet, so those answers take as long as a real check (no user enumeration by timing).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(crate::domain::random_token(32).as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

impl Hasher {
    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.expose(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is none, so both
    /// paths cost the same. Returns false for a missing hash whatever the password.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some();
            let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
            let parsed =
                PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            // argon2's verifier compares the tags in constant time.
            let ok = argon2().verify_password(password.expose(), &parsed).is_ok();
            Ok(real && ok)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules_and_masked_debug() {
        assert!(Password::new_password("short").is_err());
        assert!(Password::new_password(&"x".repeat(129)).is_err());
        let p = Password::new_password("correct horse battery").expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[tokio::test]
    async fn hashes_verify_and_salts_differ() {
        let h = Hasher::default();
        let pw = || Password::new_password("correct horse battery").expect("valid");
        let a = h.hash(pw()).await.expect("hash");
        let b = h.hash(pw()).await.expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "per-user salt");
        assert!(h.verify(pw(), Some(a.clone())).await.expect("verify"));
        assert!(
            !h.verify(Password::presented("wrong password"), Some(a))
                .await
                .expect("verify")
        );
        assert!(!h.verify(pw(), None).await.expect("verify"));
    }
}
