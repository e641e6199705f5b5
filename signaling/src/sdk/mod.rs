//! SDK embedding (agreement 1.14, 1.20, 3.6): developers put meetings into their own sites with
//! the JS SDK (`/sdk/v1/parley.js`) or the iframe embed page (`/embed/{meeting}`).
//!
//! An account creates **SDK keys**, each naming the web origins allowed to embed. A key is a
//! public handle, not a secret: the developer's backend, holding the account API key, mints
//! join tokens that carry the key's id (the `sdk` claim). Such a token is then honoured only
//! where the key allows:
//! - the WebSocket admits it only with an `Origin` header that is one of the key's origins (or
//!   Parley's own, for the embed page), checked at `join`;
//! - the embed page answers with `Content-Security-Policy: frame-ancestors` listing exactly the
//!   key's origins, so only those sites may frame it.
//!
//! Every use looks the key up afresh (no cache), so a revoked key stops working at once, and
//! asks licensing whether the account's tariff still includes the SDK.

pub mod store;

use parley_licensing::LicensingError;
use uuid::Uuid;

use crate::startup::AppState;
pub use store::{SdkKey, SdkKeyStore};

/// Prefix of SDK key ids, recognisable in a support ticket and never confused with `pk_` keys.
pub const KEY_PREFIX: &str = "sdk_";
/// Origins one key may list: enough for production, staging and local development sites.
pub const MAX_ORIGINS: usize = 20;
/// Keys an account may hold at once.
pub const MAX_KEYS: i64 = 50;
pub const MAX_NAME_CHARS: usize = 100;

/// A key's allowed origins: 1 to [`MAX_ORIGINS`] distinct `scheme://host[:port]` values, https
/// (plain http only on loopback, for local development), no paths and no wildcards, so each is
/// safe to put in a `frame-ancestors` directive as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub fn parse(input: &[String]) -> Result<AllowedOrigins, String> {
        if input.is_empty() || input.len() > MAX_ORIGINS {
            return Err(format!(
                "allowed_origins must list 1 to {MAX_ORIGINS} origins."
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(input.len());
        for raw in input {
            let o = crate::card::normalise_origin(raw).ok_or_else(|| {
                format!(
                    "{:.80?} is not an allowed origin: give scheme://host[:port] such as \
                     https://shop.example (https; plain http only on localhost or 127.0.0.1; \
                     no path and no wildcard).",
                    raw
                )
            })?;
            if !out.contains(&o) {
                out.push(o);
            }
        }
        Ok(AllowedOrigins(out))
    }

    /// Values already stored (validated when written).
    pub fn from_stored(origins: Vec<String>) -> AllowedOrigins {
        AllowedOrigins(origins)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// Whether a browser's `Origin` header names one of these origins.
    pub fn admits(&self, origin_header: &str) -> bool {
        origin_of(origin_header).is_some_and(|o| self.0.contains(&o))
    }
}

/// The ASCII serialisation of a URL's origin (`scheme://host[:port]`, default port omitted);
/// `None` for opaque origins such as the `null` a sandboxed frame sends.
pub fn origin_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url.trim()).ok()?;
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

/// Why an SDK token, key or embed page was refused. Each has a stable code, the same in HTTP
/// errors, WebSocket `error` messages and the SDK's `error` event.
#[derive(Debug)]
pub enum Refusal {
    /// The key does not exist, belongs to another account, or was revoked.
    KeyRevoked,
    /// The browser's `Origin` is not among the key's allowed origins (or there is none).
    OriginNotAllowed,
    /// The account's tariff has no SDK, or no active license, or the account is suspended.
    Licensing(LicensingError),
    Internal(anyhow::Error),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::KeyRevoked => "sdk_key_revoked",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::Licensing(e) => licensing_code(e),
            Refusal::Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::KeyRevoked => {
                "The SDK key of this token was revoked or does not exist.".to_owned()
            }
            Refusal::OriginNotAllowed => "This site's origin is not among the SDK key's allowed \
                                          origins."
                .to_owned(),
            Refusal::Licensing(e) => licensing_message(e),
            Refusal::Internal(_) => "Something went wrong on the server.".to_owned(),
        }
    }

    /// The WebSocket close frame for this refusal (docs/protocol.md, "Close codes").
    pub fn close(&self) -> (u16, String) {
        match self {
            Refusal::KeyRevoked => (1008, "invalid token: sdk key revoked".to_owned()),
            Refusal::OriginNotAllowed => (1008, "origin not allowed".to_owned()),
            Refusal::Licensing(_) => (4006, format!("{}: {}", self.code(), self.message())),
            Refusal::Internal(_) => (1011, "internal error".to_owned()),
        }
    }
}

/// `sdk_not_in_tariff` for a tariff (or the lack of an active one) that does not include the
/// SDK; the account's own state (suspended, terminated) keeps its code.
fn licensing_code(e: &LicensingError) -> &'static str {
    match e {
        LicensingError::FeatureNotIncluded { .. } | LicensingError::NoActiveLicense => {
            "sdk_not_in_tariff"
        }
        other => other.code(),
    }
}

fn licensing_message(e: &LicensingError) -> String {
    match e {
        LicensingError::FeatureNotIncluded { .. } => {
            "The account's tariff does not include SDK embedding.".to_owned()
        }
        LicensingError::NoActiveLicense => {
            "The account has no active license with SDK embedding.".to_owned()
        }
        other => other.message(),
    }
}

/// Whether the account's tariff allows the SDK today.
pub async fn check_tariff(app: &AppState, account: Uuid) -> Result<(), Refusal> {
    match app.licensing.may_embed(account).await {
        Ok(()) => Ok(()),
        Err(LicensingError::Storage(e)) => Err(Refusal::Internal(anyhow::anyhow!(e))),
        Err(e) => Err(Refusal::Licensing(e)),
    }
}

/// The live key `key_id` of `account` with the account still entitled to the SDK.
pub async fn usable_key(app: &AppState, key_id: &str, account: Uuid) -> Result<SdkKey, Refusal> {
    let key = SdkKeyStore::new(app.store.pool().clone())
        .get(key_id)
        .await
        .map_err(|e| Refusal::Internal(e.into()))?
        .filter(|k| k.revoked_at.is_none() && k.account_id == account.to_string())
        .ok_or(Refusal::KeyRevoked)?;
    check_tariff(app, account).await?;
    Ok(key)
}

/// Parley's own origin (from `public_url`): the embed page connects from there.
pub fn own_origin(app: &AppState) -> Option<String> {
    origin_of(&app.config.public_url)
}

/// The WebSocket's check of a token with an `sdk` claim: the key is live and belongs to the
/// meeting's account, the tariff includes the SDK, and the socket's `Origin` is allowed.
pub async fn admit(
    app: &AppState,
    key_id: &str,
    meeting_account: Option<&str>,
    origin: Option<&str>,
) -> Result<(), Refusal> {
    let account = meeting_account
        .and_then(|a| Uuid::parse_str(a).ok())
        .ok_or(Refusal::KeyRevoked)?;
    let key = usable_key(app, key_id, account).await?;
    let Some(origin) = origin else {
        return Err(Refusal::OriginNotAllowed);
    };
    let own = own_origin(app);
    if key.origins().admits(origin) || own.is_some_and(|o| origin_of(origin) == Some(o)) {
        Ok(())
    } else {
        tracing::info!(key = %key.id, origin = %truncated(origin), "SDK join from an origin the key does not allow");
        Err(Refusal::OriginNotAllowed)
    }
}

/// At most 100 characters of a client-supplied value for the log.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<AllowedOrigins, String> {
        AllowedOrigins::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_scheme_host_port_only() {
        let o = parse(&[
            "https://shop.example",
            "http://127.0.0.1:5123",
            "HTTPS://Shop.Example:443/",
        ])
        .expect("valid");
        assert_eq!(
            o.as_slice(),
            ["https://shop.example", "http://127.0.0.1:5123"]
        );
        for bad in [
            "https://shop.example/path",
            "https://*.example.com",
            "*",
            "http://shop.example",
            "ftp://shop.example",
            "https://user:pw@shop.example",
            "https://shop.example?x=1",
            "shop.example",
            "null",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad} must be refused");
        }
        assert!(parse(&[]).is_err());
        let many: Vec<String> = (0..=MAX_ORIGINS)
            .map(|i| format!("https://s{i}.example"))
            .collect();
        assert!(AllowedOrigins::parse(&many).is_err());
    }

    #[test]
    fn origin_headers_match_exactly() {
        let o = parse(&["https://shop.example", "http://127.0.0.1:5123"]).expect("valid");
        assert!(o.admits("https://shop.example"));
        assert!(o.admits("https://shop.example:443"));
        assert!(o.admits("http://127.0.0.1:5123"));
        assert!(!o.admits("http://127.0.0.1:5124"));
        assert!(!o.admits("http://localhost:5123"));
        assert!(!o.admits("https://evil.shop.example"));
        assert!(!o.admits("https://shop.example.evil"));
        assert!(!o.admits("null"));
        assert!(!o.admits(""));
    }

    #[test]
    fn refusals_close_as_documented() {
        assert_eq!(
            Refusal::OriginNotAllowed.close(),
            (1008, "origin not allowed".to_owned())
        );
        let r = Refusal::Licensing(LicensingError::FeatureNotIncluded {
            feature: "SDK embedding",
        });
        assert_eq!(r.code(), "sdk_not_in_tariff");
        assert_eq!(r.close().0, 4006);
        assert!(r.close().1.starts_with("sdk_not_in_tariff: "));
    }
}
