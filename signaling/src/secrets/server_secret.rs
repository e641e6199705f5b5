//! The server's own signing keys kept in the database (`settings`): the join-token (JWT) key and
//! the recording-link key, generated on first start and stored sealed like every other secret,
//! so a copy of the database file alone cannot mint join tokens or download links.

use anyhow::Context;

use super::cipher::{Field, SecretsCipher, is_sealed};
use crate::domain::random_token;
use crate::store::DbPool;

/// The signing key stored under `name` (one of [`Field::rows`] of [`Field::ServerSecret`]),
/// created on first use. Insert-if-absent then `SELECT`, so two processes starting at once
/// agree on one key.
pub async fn server_secret(
    pool: &DbPool,
    cipher: &SecretsCipher,
    name: &str,
) -> anyhow::Result<String> {
    debug_assert!(
        Field::ServerSecret
            .rows()
            .is_some_and(|r| r.contains(&name))
    );
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(name)
        .bind(cipher.seal(Field::ServerSecret, name, &random_token(64)))
        .execute(pool)
        .await?;
    let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(name)
        .fetch_one(pool)
        .await?;
    if !is_sealed(&stored) {
        // Sealed at start by `seal_existing`; a plain value here was written since by an older
        // process sharing the file, and is still the key in use.
        return Ok(stored);
    }
    cipher
        .open(Field::ServerSecret, name, &stored)
        .with_context(|| format!("cannot open the stored {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::cipher::SecretsKey;
    use crate::store::Store;

    #[tokio::test]
    async fn created_once_stored_sealed_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("store");
        let cipher = SecretsCipher::new(&SecretsKey::generate());
        let a = server_secret(store.pool(), &cipher, "jwt_secret")
            .await
            .expect("first");
        let b = server_secret(store.pool(), &cipher, "jwt_secret")
            .await
            .expect("again");
        assert_eq!(a, b, "one key across starts");
        assert_eq!(a.len(), 64);
        let link = server_secret(store.pool(), &cipher, "recording_link_secret")
            .await
            .expect("link");
        assert_ne!(a, link, "each key is its own");
        let stored: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'jwt_secret'")
                .fetch_one(store.pool())
                .await
                .expect("row");
        assert!(
            stored.starts_with("v1:") && !stored.contains(&a),
            "{stored}"
        );
        let other = SecretsCipher::new(&SecretsKey::generate());
        assert!(
            server_secret(store.pool(), &other, "jwt_secret")
                .await
                .is_err(),
            "another key cannot read it"
        );
        store.close().await;
    }
}
