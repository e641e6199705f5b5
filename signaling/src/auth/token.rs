//! Join tokens: HS256 JWTs signed by this server. Verification pins the algorithm and reports a
//! short reason that ends up in the WebSocket close frame (`invalid token: <reason>`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{MeetingId, Role, random_token};

/// What the bearer may do in the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grants {
    pub publish: bool,
    pub subscribe: bool,
    pub screen_share: bool,
    pub record: bool,
    pub admin: bool,
}

impl Grants {
    pub fn for_role(role: Role) -> Grants {
        let host = role == Role::Host;
        Grants {
            publish: true,
            subscribe: true,
            screen_share: true,
            record: host,
            admin: host,
        }
    }
}

/// The JWT payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Stable identity of the person (not the per-connection participant id).
    pub sub: String,
    pub meeting: String,
    pub name: String,
    pub role: Role,
    pub grants: Grants,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// The SDK key a developer's backend minted this token for: the WebSocket then admits it
    /// only from that key's allowed origins (docs/protocol.md, "SDK tokens").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
}

/// Why a token was refused; `Display` is the short reason sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("expired")]
    Expired,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("wrong meeting")]
    WrongMeeting,
    #[error("malformed")]
    Malformed,
}

/// Issues and verifies join tokens with one server secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `name` in `meeting` with the grants of `role`, valid for the configured TTL
    /// (counted from `valid_until_at_least` when that is later: a host link for a meeting scheduled next week
    /// must still work then).
    pub fn issue(
        &self,
        meeting: &MeetingId,
        identity: &str,
        name: &str,
        role: Role,
        valid_until_at_least: Option<chrono::DateTime<Utc>>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_with_grants(
            meeting,
            identity,
            name,
            role,
            Grants::for_role(role),
            valid_until_at_least,
        )
    }

    /// As [`Tokens::issue`] with explicit grants (a licensed meeting narrows them to its
    /// tariff, e.g. no screen sharing).
    pub fn issue_with_grants(
        &self,
        meeting: &MeetingId,
        identity: &str,
        name: &str,
        role: Role,
        grants: Grants,
        valid_until_at_least: Option<chrono::DateTime<Utc>>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&self.claims(meeting, identity, name, role, grants, valid_until_at_least))
    }

    /// The claims [`Tokens::issue_with_grants`] signs, for callers that add to them (the SDK
    /// key of a token minted for embedding).
    pub fn claims(
        &self,
        meeting: &MeetingId,
        identity: &str,
        name: &str,
        role: Role,
        grants: Grants,
        valid_until_at_least: Option<chrono::DateTime<Utc>>,
    ) -> Claims {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let mut exp = now.saturating_add(ttl);
        if let Some(t) = valid_until_at_least {
            exp = exp.max(t.timestamp().saturating_add(ttl));
        }
        Claims {
            sub: identity.to_owned(),
            meeting: meeting.to_string(),
            name: name.to_owned(),
            role,
            grants,
            exp,
            iat: now,
            jti: random_token(16),
            sdk: None,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Verifies signature, algorithm (HS256 only), expiry and, when given, the meeting.
    pub fn verify(&self, token: &str, meeting: Option<&MeetingId>) -> Result<Claims, TokenError> {
        // The header is checked by hand first: jsonwebtoken reports `alg: none` (which it cannot
        // even represent) as a generic JSON error, and we want to say exactly why it was refused.
        let header_b64 = token.split('.').next().unwrap_or_default();
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
                _ => TokenError::Malformed,
            },
        )?;
        if let Some(m) = meeting
            && data.claims.meeting != m.as_str()
        {
            return Err(TokenError::WrongMeeting);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn issued_tokens_verify() {
        let m = MeetingId::generate();
        let t = tokens()
            .issue(&m, "u1", "Ann", Role::Host, None)
            .expect("sign");
        let c = tokens().verify(&t, Some(&m)).expect("valid");
        assert_eq!(
            (c.name.as_str(), c.role, c.grants.admin),
            ("Ann", Role::Host, true)
        );
        assert_eq!(
            tokens().verify(&t, Some(&MeetingId::generate())),
            Err(TokenError::WrongMeeting)
        );
    }

    #[test]
    fn refusals() {
        let m = MeetingId::generate();
        let t = tokens()
            .issue(&m, "u1", "Ann", Role::Guest, None)
            .expect("sign");
        let other = Tokens::new(b"another secret", Duration::from_secs(60));
        assert_eq!(other.verify(&t, None), Err(TokenError::BadSignature));
        let mut parts = t.split('.');
        let (_, payload) = (parts.next(), parts.next().expect("payload"));
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(
            tokens().verify(&none, None),
            Err(TokenError::AlgorithmNotAllowed)
        );
        assert_eq!(tokens().verify("garbage", None), Err(TokenError::Malformed));
        let mut c = tokens().verify(&t, None).expect("valid");
        c.exp = Utc::now().timestamp() - 10;
        let expired = tokens().sign(&c).expect("sign");
        assert_eq!(tokens().verify(&expired, None), Err(TokenError::Expired));
    }
}
