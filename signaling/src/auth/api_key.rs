//! Who is calling the licensing API, until users and sign-in arrive: the platform operator
//! (`Authorization: Bearer <PARLEY_ADMIN_TOKEN>`) or an account, by one of its API keys
//! (`Authorization: Bearer <key_id>.<secret>`).
//!
//! A key's secret is 43 alphanumerics from the OS-seeded CSPRNG (about 256 bits), shown once
//! and stored only as its SHA-256: a fast hash suffices because nobody can guess such a secret,
//! and it keeps authentication far below the quote endpoint's latency budget. The key id is a
//! public handle for the lookup; the secret is compared (as hashes) in constant time. Neither
//! is ever logged.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::bearer_token;
use crate::domain::{constant_time_eq, random_token};
use crate::error::ApiError;
use crate::startup::AppState;

/// Prefix of key ids, so a credential's kind is recognisable in a support ticket.
const KEY_PREFIX: &str = "pk_";
const SECRET_LEN: usize = 43;
/// `last_used_at` is kept to this resolution: one write per key per period, not per request.
const LAST_USED_RESOLUTION_HOURS: i64 = 1;

/// The authenticated party of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Operator,
    Account(Uuid),
}

/// A freshly issued key: the only moment the secret exists outside the client.
pub struct IssuedKey {
    pub key_id: String,
    pub secret: String,
}

impl IssuedKey {
    /// The bearer value: `<key_id>.<secret>`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.key_id, self.secret)
    }
}

fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates and stores a key for `account_id`.
pub async fn issue_key(app: &AppState, account_id: Uuid) -> Result<IssuedKey, ApiError> {
    let key = IssuedKey {
        key_id: format!("{KEY_PREFIX}{}", random_token(20)),
        secret: random_token(SECRET_LEN),
    };
    app.store
        .insert_api_key(
            &key.key_id,
            &account_id.to_string(),
            &hash_secret(&key.secret),
        )
        .await?;
    Ok(key)
}

fn invalid() -> ApiError {
    ApiError::Unauthorized("The credential is not valid.".into())
}

impl Caller {
    /// Identifies the caller. No `Authorization` header is anonymous; a header that is
    /// neither the operator token nor a live account key is refused outright (401), so a typo
    /// never silently downgrades a request to anonymous.
    pub async fn from_headers(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(bearer) = bearer_token(headers) else {
            return Ok(Caller::Anonymous);
        };
        if let Some(admin) = &app.config.admin_token
            && constant_time_eq(bearer, admin.expose())
        {
            return Ok(Caller::Operator);
        }
        let Some((key_id, secret)) = bearer.split_once('.') else {
            return Err(invalid());
        };
        if !key_id.starts_with(KEY_PREFIX)
            || key_id.len() > 64
            || secret.len() != SECRET_LEN
            || !key_id[KEY_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(invalid());
        }
        let presented = hash_secret(secret);
        let Some(row) = app.store.api_key(key_id).await? else {
            return Err(invalid());
        };
        if row.revoked_at.is_some() || !constant_time_eq(&presented, &row.secret_hash) {
            return Err(invalid());
        }
        let account = Uuid::parse_str(&row.account_id)
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored key has a bad account id")))?;
        let now = chrono::Utc::now();
        if row
            .last_used_at
            .is_none_or(|t| now - t >= chrono::TimeDelta::hours(LAST_USED_RESOLUTION_HOURS))
            && let Err(e) = app.store.touch_api_key(key_id, now).await
        {
            // Only a statistic: a failed write must not refuse a valid credential.
            tracing::warn!(error = %e, "could not record the key's last use");
        }
        Ok(Caller::Account(account))
    }

    /// Platform-operator calls: catalogue, accounts, bank transfers, suspension, termination.
    pub fn require_operator(self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "This call needs the operator's token.".into(),
            )),
            Caller::Account(_) => Err(ApiError::Forbidden(
                "Only the platform operator may do this.".into(),
            )),
        }
    }

    /// Calls on one account's resources: the operator, or that account's own key. Another
    /// account's key gets the same 404 as an account that does not exist, so a key can never
    /// probe which accounts exist.
    pub fn require_account(self, account_id: Uuid) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Account(a) if a == account_id => Ok(()),
            Caller::Account(_) => Err(parley_licensing::LicensingError::UnknownAccount.into()),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "This call needs an account API key or the operator's token.".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
