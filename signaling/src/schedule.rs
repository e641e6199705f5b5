//! Scheduled jobs that exactly one node runs per period.
//!
//! Several nodes on one database each run the same job loops. Time is cut into runs
//! ("slots": milliseconds since the epoch divided by the job's period), numbered the same on
//! every node with a synchronised clock, and a node runs a slot only if its insert of
//! `(job, slot)` into `job_runs` is the one that lands: the primary key lets one insert per slot
//! through, on SQLite and PostgreSQL alike, with no lock held while the job runs. A node that
//! dies during its run loses that run; the next slot catches up, since every job here works
//! through what is due rather than what happened in one period.
//!
//! Nodes wake at the slot boundary, so they race for each slot within milliseconds of each
//! other; a node whose clock is behind by more than a period would find the slot taken and
//! simply run the next.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::DbPool;
use crate::store::time::now_text;

/// How many slots of a job's history are kept (older rows are only an audit trail).
const KEEP_SLOTS: i64 = 1000;

#[derive(Clone)]
pub struct Schedule {
    pool: DbPool,
    node: Arc<str>,
    metrics: Arc<Metrics>,
}

impl Schedule {
    pub fn new(pool: DbPool, node: &str, metrics: Arc<Metrics>) -> Schedule {
        Schedule {
            pool,
            node: node.into(),
            metrics,
        }
    }

    /// Claims run `slot` of `job` for this node: true when this node is the one to run it.
    pub async fn claim(&self, job: &str, slot: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO job_runs (job, slot, node, claimed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, slot) DO NOTHING",
        )
        .bind(job)
        .bind(slot)
        .bind(&*self.node)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn forget_before(&self, job: &str, slot: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM job_runs WHERE job = $1 AND slot < $2")
            .bind(job)
            .bind(slot)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs `run` once per `period` (the current period first) on whichever node claims the
    /// period, until `stop`. A failed run is logged; the next period runs again.
    pub async fn every<F, Fut>(
        self,
        job: &'static str,
        period: Duration,
        stop: CancellationToken,
        mut run: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let period_ms = i64::try_from(period.as_millis().max(1)).unwrap_or(i64::MAX);
        loop {
            let slot = epoch_ms() / period_ms;
            match self.claim(job, slot).await {
                Ok(true) => {
                    self.metrics.scheduled_run(job);
                    if let Err(e) = run().await {
                        tracing::warn!(job, error = %e, "scheduled job failed");
                    }
                    if slot % 100 == 0
                        && let Err(e) = self.forget_before(job, slot - KEEP_SLOTS).await
                    {
                        tracing::debug!(job, error = %e, "old job runs not pruned");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job, error = %e, "cannot claim the scheduled run"),
            }
            // Sleep to the next slot's start (not a fixed period), so every node wakes together.
            let next = (slot + 1).saturating_mul(period_ms);
            let wait = u64::try_from(next - epoch_ms()).unwrap_or(0);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
    }
}

fn epoch_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn schedule_on(dir: &tempfile::TempDir, node: &str) -> Schedule {
        let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
        let store = crate::store::Store::connect(&url).await.expect("store");
        Schedule::new(store.pool().clone(), node, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn one_node_claims_each_run() {
        let dir = tempfile::tempdir().expect("dir");
        let a = schedule_on(&dir, "a").await;
        let b = schedule_on(&dir, "b").await;
        assert!(a.claim("review", 7).await.expect("claim"));
        assert!(!b.claim("review", 7).await.expect("claim"));
        assert!(!a.claim("review", 7).await.expect("claim"));
        // Another slot, or another job in the same slot, is free again.
        assert!(b.claim("review", 8).await.expect("claim"));
        assert!(b.claim("retention", 7).await.expect("claim"));
    }
}
