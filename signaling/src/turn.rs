//! TURN relay credentials for clients behind networks that block the SFU's UDP port.
//!
//! Parley hands out coturn's time-limited credentials (the "TURN REST API" scheme, coturn's
//! `use-auth-secret`): username `<unix expiry>:<who>`, password base64(HMAC-SHA1(secret,
//! username)). coturn recomputes the HMAC with the same shared secret and refuses the username
//! after its expiry, so nothing is stored on either side and a leaked credential dies with it.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

use crate::configuration::TurnConfig;

/// One entry of `RTCConfiguration.iceServers`, as the `joined` message carries it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Credentials for `who` (a participant id: coturn logs it, so an operator can tell whose
/// relay an allocation is) valid until `now` + the configured lifetime.
pub fn ice_server(turn: &TurnConfig, who: &str, now: DateTime<Utc>) -> IceServer {
    let ttl = i64::try_from(turn.ttl.as_secs()).unwrap_or(i64::MAX);
    let username = format!("{}:{who}", now.timestamp().saturating_add(ttl));
    IceServer {
        urls: turn.urls.clone(),
        credential: credential(turn.secret.expose(), &username),
        username,
    }
}

fn credential(secret: &str, username: &str) -> String {
    // HMAC takes a key of any length, so this `Err` does not happen; an empty password (which
    // coturn refuses) would be the visible result if it did.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::configuration::Secret;

    fn turn() -> TurnConfig {
        TurnConfig {
            urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            secret: Secret::new("north"),
            ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_username_carries_the_expiry_and_the_password_its_hmac() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .single()
            .expect("instant");
        let s = ice_server(&turn(), "p-1", now);
        assert_eq!(s.username, format!("{}:p-1", now.timestamp() + 3600));
        assert_eq!(s.urls, turn().urls);
        // coturn's check, done independently: HMAC-SHA1 keyed by the shared secret, base64.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"north").expect("key");
        mac.update(s.username.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(s.credential, expected);
        // A known answer (RFC 2202 test case 2's key and data, base64 of its digest), so the
        // check above is not merely this code compared with itself.
        assert_eq!(
            credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn another_participant_or_secret_gets_another_password() {
        let now = Utc::now();
        let a = ice_server(&turn(), "p-1", now);
        let b = ice_server(&turn(), "p-2", now);
        assert_ne!(a.credential, b.credential);
        let mut other = turn();
        other.secret = Secret::new("south");
        assert_ne!(ice_server(&other, "p-1", now).credential, a.credential);
    }
}
