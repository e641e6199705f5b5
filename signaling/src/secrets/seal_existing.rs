//! The start-up pass over every secret column: values stored before encryption at rest (plain
//! text) are sealed in place, values already sealed are opened once to prove the key is the
//! right one. Running it again changes nothing, so it runs on every start.

use super::cipher::{Field, SecretsCipher, is_sealed};
use crate::store::{Backend, DbPool};

/// What the pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Plain-text values encrypted now.
    pub sealed: usize,
    /// Values that were already encrypted (and opened with the key).
    pub verified: usize,
}

/// Seals every plain-text secret and checks every sealed one. A value the key cannot open is an
/// error naming the column and row (never the value): the server must not start with a key
/// that would fail every CRM call and, worse, seal new values under a second key.
///
/// The plain text must not survive in the file either: the pass runs with `secure_delete` (an
/// overwritten value's old bytes are zeroed, not left in free space) and, when it sealed
/// anything, checkpoints the write-ahead log into the database file and truncates it.
///
/// On PostgreSQL there is no such switch: an overwritten value's old row version stays in the
/// table's pages until `VACUUM` reclaims it.
pub async fn seal_existing(pool: &DbPool, cipher: &SecretsCipher) -> anyhow::Result<Sealed> {
    let mut conn = pool.acquire().await?;
    if Backend::of_pool(pool) == Backend::Postgres {
        return seal_on(&mut conn, cipher).await;
    }
    sqlx::query("PRAGMA secure_delete = ON")
        .execute(&mut *conn)
        .await?;
    let result = seal_on(&mut conn, cipher).await;
    // The connection goes back to the pool: back to the default for everyone else.
    sqlx::query("PRAGMA secure_delete = OFF")
        .execute(&mut *conn)
        .await?;
    let out = result?;
    if out.sealed > 0 {
        // Busy readers can keep frames in the log; nothing reads this early in the start.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
    }
    Ok(out)
}

async fn seal_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    cipher: &SecretsCipher,
) -> anyhow::Result<Sealed> {
    use sqlx::Connection;
    let mut out = Sealed::default();
    let mut tx = conn.begin().await?;
    for field in Field::ALL {
        let (table, column, key) = (field.table(), field.column(), field.row_key());
        // Names from `Field`'s fixed strings, never from input.
        let only = field.rows().map_or(String::new(), |rows| {
            let list: Vec<String> = rows.iter().map(|r| format!("'{r}'")).collect();
            format!(" AND {key} IN ({})", list.join(", "))
        });
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL{only}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for (row, value) in rows {
            if is_sealed(&value) {
                cipher.open(field, &row, &value)?;
                out.verified += 1;
                continue;
            }
            sqlx::query(&format!(
                "UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3"
            ))
            .bind(cipher.seal(field, &row, &value))
            .bind(&row)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
            out.sealed += 1;
        }
    }
    tx.commit().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::cipher::SecretsKey;
    use crate::store::Store;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("store");
        (dir, store)
    }

    async fn column(pool: &DbPool, sql: &str) -> Option<String> {
        sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await
            .expect("select")
    }

    #[tokio::test]
    async fn plain_values_are_sealed_once_and_a_wrong_key_is_refused() {
        let (_dir, store) = store().await;
        let pool = store.pool();
        sqlx::query(
            "INSERT INTO crm_connections (id, account_id, kind, settings, secrets, \
             amo_access_token, amo_refresh_token, created_at, updated_at) \
             VALUES ('crm_1', 'acc', 'amocrm', '{}', '{\"client_secret\":\"cs-plain\"}', \
             'access-plain', NULL, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        )
        .execute(pool)
        .await
        .expect("connection");
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, account_id, url, secret, events, created_at) \
             VALUES ('whe_1', 'acc', 'https://x.example', 'whsec_plain', '[]', \
             '2026-01-01T00:00:00Z')",
        )
        .execute(pool)
        .await
        .expect("endpoint");
        sqlx::query(
            "INSERT INTO crm_card_settings (account_id, secret, created_at) \
             VALUES ('acc', 'card-plain', '2026-01-01T00:00:00Z')",
        )
        .execute(pool)
        .await
        .expect("card");

        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('jwt_secret', 'jwt-plain'), \
             ('some_option', 'not a secret')",
        )
        .execute(pool)
        .await
        .expect("settings");

        let cipher = SecretsCipher::new(&SecretsKey::generate());
        let first = seal_existing(pool, &cipher).await.expect("seal");
        assert_eq!(
            first,
            Sealed {
                sealed: 5,
                verified: 0
            }
        );
        let secrets = column(pool, "SELECT secrets FROM crm_connections")
            .await
            .expect("set");
        let access = column(pool, "SELECT amo_access_token FROM crm_connections")
            .await
            .expect("set");
        let endpoint = column(pool, "SELECT secret FROM webhook_endpoints")
            .await
            .expect("set");
        let card = column(pool, "SELECT secret FROM crm_card_settings")
            .await
            .expect("set");
        assert_eq!(
            cipher.open(Field::CrmSecrets, "crm_1", &secrets).as_deref(),
            Ok("{\"client_secret\":\"cs-plain\"}")
        );
        assert_eq!(
            cipher
                .open(Field::CrmAccessToken, "crm_1", &access)
                .as_deref(),
            Ok("access-plain")
        );
        assert_eq!(
            cipher
                .open(Field::WebhookEndpointSecret, "whe_1", &endpoint)
                .as_deref(),
            Ok("whsec_plain")
        );
        assert_eq!(
            cipher.open(Field::CardSecret, "acc", &card).as_deref(),
            Ok("card-plain")
        );
        let jwt = column(pool, "SELECT value FROM settings WHERE key = 'jwt_secret'")
            .await
            .expect("set");
        assert_eq!(
            cipher
                .open(Field::ServerSecret, "jwt_secret", &jwt)
                .as_deref(),
            Ok("jwt-plain")
        );
        assert_eq!(
            column(pool, "SELECT value FROM settings WHERE key = 'some_option'").await,
            Some("not a secret".into()),
            "only the listed settings are secrets"
        );
        assert_eq!(
            column(pool, "SELECT amo_refresh_token FROM crm_connections").await,
            None,
            "NULL stays NULL"
        );

        // Idempotent: nothing is sealed twice.
        let again = seal_existing(pool, &cipher).await.expect("again");
        assert_eq!(
            again,
            Sealed {
                sealed: 0,
                verified: 5
            }
        );
        assert_eq!(
            column(pool, "SELECT secrets FROM crm_connections").await,
            Some(secrets)
        );

        let other = SecretsCipher::new(&SecretsKey::generate());
        let e = seal_existing(pool, &other).await.expect_err("wrong key");
        let text = format!("{e:#}");
        assert!(text.contains("cannot be decrypted"), "{text}");
        assert!(
            !text.contains("cs-plain") && !text.contains("access-plain"),
            "{text}"
        );
        store.close().await;
    }
}
