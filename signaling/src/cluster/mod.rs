//! Several Parley nodes behind one address: a node registry and meeting placement in Redis
//! (`PARLEY_REDIS_URL`). Without Redis configured nothing here runs and Parley is the single
//! process it always was.
//!
//! # Redirect, not relay
//!
//! A participant who reaches a node that does not host their meeting is sent to the node that
//! does (a `redirect` message with that node's WebSocket URL, then a close with
//! [`REDIRECT_CLOSE`]), rather than having this node relay its signaling over Redis pub/sub.
//! Media has to terminate on the meeting's node anyway: its SFU holds the meeting's peer
//! connections and forwards between them, so the client must send its UDP media to that node's
//! announced address whatever path the signaling takes. Relaying would add a hop and a second
//! failure point to every signaling message and still leave the client talking to two nodes; a
//! redirect costs one extra connection at join time and then the client talks to one node only.
//! See docs/operations.md.
//!
//! # Keys (all under the configured prefix)
//! - `node:<id>`: the node's [`NodeInfo`], rewritten each heartbeat with a short TTL (alive =
//!   the key exists); `nodes`: the set of ids ever seen, pruned of dead ones on reading.
//! - `meeting:<id>:node`: the meeting's owner (see [`placement`]).

pub mod forward;
pub mod placement;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use tokio_util::sync::CancellationToken;

pub use registry::{FixedLoad, LoadProbe, NodeInfo, NodeLoad, ProcessProbe};

use crate::configuration::ClusterConfig;

/// Close code after a `redirect` (docs/protocol.md): the meeting is on another node.
pub const REDIRECT_CLOSE: u16 = 4010;
/// Close code after a `redirect` without URL: this node is draining, rejoin through the public
/// address.
pub const MOVE_CLOSE: u16 = 4011;

/// Where a joining participant's meeting lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Here,
    /// On another node: its WebSocket URL.
    There {
        node: String,
        ws_url: String,
    },
}

/// The meetings with a hub on this node (their claims are kept alive while they run).
pub type LiveMeetings = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    config: ClusterConfig,
    redis: ConnectionManager,
    draining: AtomicBool,
    /// Cancelled when the node drains: every joined socket tells its client to move.
    moving: CancellationToken,
    probe: Box<dyn LoadProbe>,
    live: LiveMeetings,
    claim: Script,
    owner: Script,
    refresh: Script,
    release: Script,
    /// For live-meeting REST calls forwarded to their node (see [`forward`]).
    http: reqwest::Client,
}

impl Cluster {
    /// Connects to Redis and announces this node (one heartbeat written), so that by the time
    /// the server answers, placement can already choose it.
    pub async fn connect(
        config: ClusterConfig,
        probe: Box<dyn LoadProbe>,
        live: LiveMeetings,
    ) -> anyhow::Result<Cluster> {
        let client = redis::Client::open(config.redis_url.expose())
            .context("invalid redis_url (PARLEY_REDIS_URL)")?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let redis = client
            .get_connection_manager_with_config(manager_config)
            .await
            .context("cannot connect to Redis")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client for forwarding")?;
        let cluster = Cluster(Arc::new(Inner {
            config,
            redis,
            draining: AtomicBool::new(false),
            moving: CancellationToken::new(),
            probe,
            live,
            claim: Script::new(placement::CLAIM),
            owner: Script::new(placement::OWNER),
            refresh: Script::new(placement::REFRESH),
            release: Script::new(placement::RELEASE),
            http,
        }));
        cluster
            .heartbeat()
            .await
            .context("cannot announce this node in Redis")?;
        Ok(cluster)
    }

    pub fn id(&self) -> &str {
        &self.0.config.node_id
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Cancelled once the node drains (see [`Cluster::drain`]).
    pub fn moving(&self) -> CancellationToken {
        self.0.moving.clone()
    }

    fn node_key_prefix(&self) -> String {
        format!("{}:node:", self.0.config.key_prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.0.config.key_prefix)
    }

    fn claim_key(&self, meeting: &str) -> String {
        format!("{}:meeting:{meeting}:node", self.0.config.key_prefix)
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Writes this node's entry and keeps the claims of its running meetings alive.
    pub async fn heartbeat(&self) -> RedisResult<()> {
        let c = &self.0.config;
        let info = NodeInfo {
            id: c.node_id.clone(),
            url: c.node_url.clone(),
            load: self.0.probe.sample(),
            draining: self.is_draining(),
            heartbeat_ms: chrono::Utc::now().timestamp_millis(),
        };
        let json = serde_json::to_string(&info).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "cannot encode node info",
                e.to_string(),
            ))
        })?;
        let mut con = self.0.redis.clone();
        redis::pipe()
            .cmd("SET")
            .arg(format!("{}{}", self.node_key_prefix(), c.node_id))
            .arg(json)
            .arg("PX")
            .arg(Self::ms(c.node_ttl))
            .ignore()
            .cmd("SADD")
            .arg(self.nodes_key())
            .arg(&c.node_id)
            .ignore()
            .query_async::<()>(&mut con)
            .await?;
        if !self.is_draining() {
            let live = (self.0.live)();
            if !live.is_empty() {
                let mut call = self.0.refresh.prepare_invoke();
                for m in &live {
                    call.key(self.claim_key(m));
                }
                call.arg(&c.node_id).arg(Self::ms(c.claim_ttl));
                call.invoke_async::<u64>(&mut con).await?;
            }
        }
        Ok(())
    }

    /// Heartbeats until `stop`; then removes this node's entry (a clean exit is seen at once,
    /// a crash after the TTL).
    pub fn spawn_heartbeat(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cluster.0.config.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match cluster.heartbeat().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("Redis heartbeats are back");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "cannot heartbeat to Redis; other nodes will see this one as dead");
                    }
                    Err(_) => {}
                }
            }
            if let Err(e) = cluster.deregister().await {
                tracing::warn!(error = %e, "cannot remove this node from Redis");
            }
        })
    }

    /// Removes this node's entry now.
    pub async fn deregister(&self) -> RedisResult<()> {
        let mut con = self.0.redis.clone();
        redis::pipe()
            .cmd("DEL")
            .arg(format!("{}{}", self.node_key_prefix(), self.id()))
            .ignore()
            .cmd("SREM")
            .arg(self.nodes_key())
            .arg(self.id())
            .ignore()
            .query_async::<()>(&mut con)
            .await
    }

    /// The nodes alive now (their keys have not expired), dead ids pruned from the set.
    pub async fn nodes(&self) -> RedisResult<Vec<NodeInfo>> {
        let mut con = self.0.redis.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.nodes_key())
            .query_async(&mut con)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.node_key_prefix();
        let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}{id}")).collect();
        let infos: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        let mut alive = Vec::new();
        let mut dead = Vec::new();
        for (id, info) in ids.into_iter().zip(infos) {
            match info.and_then(|s| serde_json::from_str::<NodeInfo>(&s).ok()) {
                Some(n) => alive.push(n),
                None => dead.push(id),
            }
        }
        if !dead.is_empty() {
            // A node that comes back re-adds itself on its next heartbeat.
            let _ = redis::cmd("SREM")
                .arg(self.nodes_key())
                .arg(&dead)
                .query_async::<()>(&mut con)
                .await;
        }
        alive.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(alive)
    }

    /// The meeting's owner when it has a live, non-draining one.
    pub async fn owner(&self, meeting: &str) -> RedisResult<Option<NodeInfo>> {
        let mut con = self.0.redis.clone();
        let found: Option<(String, String)> = self
            .0
            .owner
            .key(self.claim_key(meeting))
            .arg(self.node_key_prefix())
            .invoke_async(&mut con)
            .await?;
        Ok(found.and_then(|(_, info)| serde_json::from_str(&info).ok()))
    }

    /// The meeting's owner, placing the meeting first when it has none (never placed, owner
    /// dead or draining): on the node [`placement::choose`] picks from the registry now, claimed
    /// atomically so that concurrent placements from several nodes agree.
    pub async fn place(&self, meeting: &str) -> RedisResult<NodeInfo> {
        let mut con = self.0.redis.clone();
        for _ in 0..3 {
            if let Some(owner) = self.owner(meeting).await? {
                return Ok(owner);
            }
            let nodes = self.nodes().await?;
            let candidate = placement::choose(self.id(), &nodes)
                .map(|n| n.id.clone())
                .unwrap_or_else(|| self.id().to_owned());
            let claimed: Option<(String, String)> = self
                .0
                .claim
                .key(self.claim_key(meeting))
                .arg(self.node_key_prefix())
                .arg(&candidate)
                .arg(Self::ms(self.0.config.claim_ttl))
                .invoke_async(&mut con)
                .await?;
            if let Some(owner) = claimed.and_then(|(_, info)| serde_json::from_str(&info).ok()) {
                return Ok(owner);
            }
            // The candidate died between the snapshot and the claim: look again. Our own key
            // may be the missing one (Redis lost it), so write it before retrying.
            self.heartbeat().await?;
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "no node could take the meeting",
        )))
    }

    /// Where a participant of `meeting` joining through this node goes.
    pub async fn route(&self, meeting: &str) -> RedisResult<Route> {
        let owner = self.place(meeting).await?;
        if owner.id == self.id() {
            Ok(Route::Here)
        } else {
            Ok(Route::There {
                ws_url: owner.ws_url(),
                node: owner.id,
            })
        }
    }

    /// Takes this node out of placement: marks it draining (written at once), releases the
    /// claims of its meetings so that their next join places them elsewhere, and tells every
    /// joined socket to move. Returns how many claims were released. Draining twice is
    /// harmless.
    pub async fn drain(&self) -> RedisResult<u64> {
        self.0.draining.store(true, Ordering::Relaxed);
        self.heartbeat().await?;
        let live = (self.0.live)();
        let mut released = 0;
        if !live.is_empty() {
            let mut call = self.0.release.prepare_invoke();
            for m in &live {
                call.key(self.claim_key(m));
            }
            call.arg(self.id());
            let mut con = self.0.redis.clone();
            released = call.invoke_async::<u64>(&mut con).await?;
        }
        tracing::info!(
            released,
            "node draining: meetings released, participants told to move"
        );
        self.0.moving.cancel();
        Ok(released)
    }

    /// Deletes every key under this cluster's prefix (tests clean up their namespace).
    pub async fn delete_namespace(&self) -> RedisResult<()> {
        let mut con = self.0.redis.clone();
        let pattern = format!("{}:*", self.0.config.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut con)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut con)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
