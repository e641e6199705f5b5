//! Secrets at rest: the CRM credentials and signing keys the server must be able to use again
//! (amoCRM client secret and OAuth tokens, the Bitrix24 webhook URL, the generic CRM webhook
//! secret, customer webhook endpoint secrets, deal-card launch secrets, and the server's own
//! join-token and recording-link keys) are stored encrypted.
//!
//! - [`cipher`]: the `v1:` format, AES-256-GCM with a random nonce per value and associated
//!   data binding each value to its table, column and row.
//! - [`key`]: the key, from `PARLEY_SECRETS_KEY` or a key file generated beside the database.
//! - [`seal_existing`]: at start, plain-text values from before are sealed in place and sealed
//!   ones are checked against the key, so a wrong key stops the start with a clear message.
//! - [`server_secret`]: the server's signing keys in `settings`, created sealed on first use.
//!
//! Values that are only ever compared (API keys, session and invitation tokens) are hashed
//! elsewhere, not encrypted: nothing here needs them back.

pub mod cipher;
pub mod key;
pub mod seal_existing;
pub mod server_secret;

use anyhow::Context;

pub use cipher::{Field, OpenError, SecretsCipher, SecretsKey};
pub use key::KeySource;
pub use server_secret::server_secret;

use crate::store::DbPool;

/// The cipher for this server's database: loads (or creates) the key, seals what was stored in
/// plain text and proves the key opens what was stored sealed.
pub async fn open(
    configured_key: Option<&str>,
    database_url: &str,
    pool: &DbPool,
) -> anyhow::Result<SecretsCipher> {
    let (key, source) = key::load(configured_key, database_url)?;
    let cipher = SecretsCipher::new(&key);
    let done = seal_existing::seal_existing(pool, &cipher)
        .await
        .with_context(|| format!("cannot check the stored secrets against {source}"))?;
    if done.sealed > 0 {
        tracing::info!(
            sealed = done.sealed,
            "encrypted secrets stored in plain text by an earlier version"
        );
    }
    tracing::info!(key = %source, verified = done.verified, "secrets at rest: key loaded");
    Ok(cipher)
}
