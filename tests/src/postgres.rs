//! Test servers on PostgreSQL: each gets a schema of its own in the one test database
//! (`PARLEY_TEST_POSTGRES_URL`), dropped when the test is done.
//!
//! Tests opt in with [`on_postgres`]; `PARLEY_TEST_SIGNALING_DB=postgres` moves every
//! [`crate::TestApp`] of a run there, to run whole existing suites against PostgreSQL.

use std::path::Path;

use parley_signaling::Config;
use parley_signaling::configuration::Secret;

/// `PARLEY_SECRETS_KEY` of PostgreSQL test servers (nodes sharing a database share no key
/// file, so the key must be configured): 32 bytes in base64.
pub const SECRETS_KEY: &str = "cGFybGV5LXRlc3Qtc2VjcmV0cy1rZXktMzItYnl0ZXM=";

/// The test PostgreSQL server, when one is configured.
pub fn url() -> Option<String> {
    std::env::var("PARLEY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The PostgreSQL URL when the whole run is to use PostgreSQL.
pub fn suite_url() -> Option<String> {
    let wanted = std::env::var("PARLEY_TEST_SIGNALING_DB").is_ok_and(|v| v == "postgres");
    if !wanted {
        return None;
    }
    Some(url().expect("PARLEY_TEST_SIGNALING_DB=postgres needs PARLEY_TEST_POSTGRES_URL"))
}

/// Points `config` at `schema` of the PostgreSQL server `url` (created by the server if
/// missing), the licensing tables included.
pub fn on_postgres(config: &mut Config, url: &str, schema: &str) {
    config.database_url = url.to_owned();
    config.database_schema = Some(schema.to_owned());
    config.secrets_key = Some(Secret::new(SECRETS_KEY));
}

/// The schema of a test directory: made up once, then the same for every restart in it.
pub(crate) fn schema_of(dir: &Path) -> String {
    let file = dir.join("postgres-schema");
    if let Ok(s) = std::fs::read_to_string(&file) {
        return s;
    }
    let s = fresh_name();
    std::fs::write(&file, &s).expect("write the schema name");
    s
}

pub fn fresh_name() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// A schema that is dropped (with everything in it) when this goes away.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn fresh(url: &str) -> Schema {
        Schema {
            url: url.to_owned(),
            name: fresh_name(),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a runtime of its own
        // on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                // A server dropped without shutdown may hold a transaction open on the blocked
                // test runtime: give up on the schema rather than wait forever.
                conn.execute("SET lock_timeout = '5s'").await?;
                conn.execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                    .await?;
                conn.close().await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("could not drop the test schema {}: {e}", self.name);
        }
    }
}
