//! Who is calling the licensing API: the platform operator (`Authorization: Bearer
//! <PARLEY_ADMIN_TOKEN>`, or an operator session `Bearer op_…` opened with it), an account by one of its API keys (`Authorization: Bearer
//! <key_id>.<secret>`), or a signed-in user of an account (the `parley_session` cookie or
//! `Bearer s_…`, see [`crate::users::session`]).
//!
//! An account admin's session acts for its own account exactly where the account's key may;
//! a member's session is recognised (so it is told 403, not 401) but acts for nobody: a
//! member's own seat is in `GET /api/v1/me`.
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
use crate::users::Principal;

/// Prefix of key ids, so a credential's kind is recognisable in a support ticket.
const KEY_PREFIX: &str = "pk_";
const SECRET_LEN: usize = 43;
/// `last_used_at` is kept to this resolution: one write per key per period, not per request.
const LAST_USED_RESOLUTION_HOURS: i64 = 1;

/// What a bearer other than a user session proves: the credentials of servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCredential {
    /// No `Authorization` header.
    None,
    Operator,
    /// One of the account's API keys.
    AccountKey(Uuid),
}

/// The authenticated party of one licensing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Operator,
    /// The account's API key.
    Account(Uuid),
    /// A signed-in user of `account`: an admin acts for it like its key, a member does not.
    User {
        account: Uuid,
        user_id: String,
        admin: bool,
    },
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

impl ServiceCredential {
    /// Checks the bearer as the operator token or an account key. No `Authorization` header is
    /// `None`; a header that is neither the operator token nor a live account key is refused
    /// outright (401), so a typo never silently downgrades a request to anonymous. One indexed
    /// read (the key by its id), plus at most one write per key and hour.
    pub async fn from_headers(
        app: &AppState,
        headers: &HeaderMap,
    ) -> Result<ServiceCredential, ApiError> {
        let Some(bearer) = bearer_token(headers) else {
            return Ok(ServiceCredential::None);
        };
        if let Some(admin) = &app.config.admin_token
            && constant_time_eq(bearer, admin.expose())
        {
            return Ok(ServiceCredential::Operator);
        }
        // The console's operator session stands for the operator token (see
        // `operator_session`); an expired or revoked one is 401 like any bad credential.
        if bearer.starts_with(super::operator_session::PREFIX) {
            super::operator_session::authenticate(app, bearer).await?;
            return Ok(ServiceCredential::Operator);
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
        Ok(ServiceCredential::AccountKey(account))
    }
}

impl From<Principal> for Caller {
    fn from(p: Principal) -> Caller {
        match p {
            Principal::Anonymous => Caller::Anonymous,
            Principal::Operator => Caller::Operator,
            Principal::AccountKey(a) => Caller::Account(a),
            Principal::User(u) => Caller::User {
                admin: u.is_admin(),
                account: u.account_id,
                user_id: u.user.id,
            },
        }
    }
}

impl Caller {
    /// Identifies the caller: a user session (cookie or `Bearer s_…`; one indexed read), else
    /// the operator token or an account key ([`ServiceCredential`]). An invalid or expired
    /// credential is 401, never anonymous.
    pub async fn from_headers(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        Ok(Principal::from_headers(app, headers).await?.into())
    }

    /// Platform-operator calls: catalogue, accounts, bank transfers, retro discounts,
    /// suspension, termination. Anyone else who is identified (a key, a user) gets 403.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "This call needs the operator's token.".into(),
            )),
            Caller::Account(_) | Caller::User { .. } => Err(ApiError::Forbidden(
                "Only the platform operator may do this.".into(),
            )),
        }
    }

    /// Calls on one account's resources: the operator, that account's own key or one of its
    /// admins (session). Another account's key or user gets the same 404 as an account that
    /// does not exist, so nobody can probe which accounts exist; a member of the account gets
    /// 403 (their own seat is in `/api/v1/me`).
    pub fn require_account(&self, account_id: Uuid) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Account(a) if *a == account_id => Ok(()),
            Caller::User {
                account,
                admin: true,
                ..
            } if *account == account_id => Ok(()),
            Caller::User { account, .. } if *account == account_id => Err(ApiError::Forbidden(
                "Only an account admin may do this; your own seat is in /api/v1/me.".into(),
            )),
            Caller::Account(_) | Caller::User { .. } => {
                Err(parley_licensing::LicensingError::UnknownAccount.into())
            }
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "This call needs an account admin's session, the account's API key or the \
                 operator's token."
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<(), ApiError>) -> u16 {
        use axum::response::IntoResponse;
        r.map_or_else(|e| e.into_response().status().as_u16(), |()| 200)
    }

    #[test]
    fn an_admin_acts_for_its_account_like_its_key() {
        let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let user = |account, admin| Caller::User {
            account,
            user_id: "usr_1".into(),
            admin,
        };
        let cases = [
            (Caller::Anonymous, 401, 401),
            (Caller::Operator, 200, 200),
            (Caller::Account(ours), 200, 403),
            (Caller::Account(theirs), 404, 403),
            (user(ours, true), 200, 403),
            (user(ours, false), 403, 403),
            (user(theirs, true), 404, 403),
            (user(theirs, false), 404, 403),
        ];
        for (caller, account, operator) in cases {
            assert_eq!(status(caller.require_account(ours)), account, "{caller:?}");
            assert_eq!(status(caller.require_operator()), operator, "{caller:?}");
        }
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
