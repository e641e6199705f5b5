//! The Redis of the cluster tests: `PARLEY_TEST_REDIS_URL`, default the machine's own at
//! 127.0.0.1:6379. Each test works under a key prefix of its own.

use std::time::Duration;

pub fn url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether a TCP connection to the Redis of [`url`] opens within 2 s.
pub async fn reachable() -> bool {
    let addr = url()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// A key prefix no other test run uses.
pub fn fresh_prefix() -> String {
    format!("parley-test-{}", uuid::Uuid::new_v4().simple())
}
