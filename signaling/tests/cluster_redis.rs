//! The node registry and meeting placement against the real Redis (127.0.0.1:6379, or
//! `PARLEY_TEST_REDIS_URL`): several nodes in one process, each with its own connection, under a
//! key prefix of their own per test, deleted at the end. Skipped, with the reason printed, when
//! Redis cannot be reached.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_signaling::cluster::{Cluster, FixedLoad, LoadProbe, NodeLoad, Route};
use parley_signaling::configuration::{ClusterConfig, Secret};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_reachable() -> bool {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection()
        )
        .await,
        Ok(Ok(_))
    )
}

/// One node of a test cluster: its registry entry, its load, the meetings it hosts.
struct Node {
    cluster: Cluster,
    load: Arc<FixedLoad>,
    live: Arc<Mutex<Vec<String>>>,
    heartbeat: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Node {
    async fn start(prefix: &str, id: &str, load: NodeLoad) -> Node {
        let mut config = ClusterConfig::new(
            Secret::new(redis_url()),
            id.to_owned(),
            format!("http://{id}.test:8080"),
        );
        config.key_prefix = prefix.to_owned();
        config.heartbeat = Duration::from_millis(200);
        config.node_ttl = Duration::from_millis(1500);
        let fixed = Arc::new(FixedLoad(Mutex::new(load)));
        let live = Arc::new(Mutex::new(Vec::new()));
        let probe = SharedLoad(fixed.clone());
        let hosted = live.clone();
        let cluster = Cluster::connect(
            config,
            Box::new(probe),
            Arc::new(move || hosted.lock().expect("live").clone()),
        )
        .await
        .expect("node joins the registry");
        let stop = CancellationToken::new();
        let task = cluster.spawn_heartbeat(stop.clone());
        Node {
            cluster,
            load: fixed,
            live,
            heartbeat: Some((stop, task)),
        }
    }

    /// The process dies: no more heartbeats and no goodbye.
    fn crash(&mut self) {
        if let Some((_, task)) = self.heartbeat.take() {
            task.abort();
        }
    }

    fn host(&self, meeting: &str) {
        self.live.lock().expect("live").push(meeting.to_owned());
    }
}

/// Lets the test change a node's load while its heartbeat reads it.
struct SharedLoad(Arc<FixedLoad>);

impl LoadProbe for SharedLoad {
    fn sample(&self) -> NodeLoad {
        self.0.sample()
    }
}

fn load(cpu: f64, participants: u64) -> NodeLoad {
    NodeLoad {
        cpu,
        participants,
        bitrate_bps: 0,
    }
}

fn prefix() -> String {
    format!("parley-test-{}", uuid::Uuid::new_v4().simple())
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ids(c: &Cluster) -> Vec<String> {
    c.nodes()
        .await
        .expect("registry")
        .into_iter()
        .map(|n| n.id)
        .collect()
}

async fn cleanup(nodes: &[Node]) {
    if let Some(n) = nodes.first() {
        n.cluster.delete_namespace().await.expect("cleanup");
    }
}

macro_rules! require_redis {
    () => {
        if !redis_reachable().await {
            eprintln!("skipped: Redis not reachable at {}", redis_url());
            return;
        }
    };
}

#[tokio::test]
async fn heartbeats_are_visible_and_a_silent_node_is_dead() {
    require_redis!();
    let p = prefix();
    let a = Node::start(&p, "a", load(0.2, 10)).await;
    let b = Node::start(&p, "b", load(0.3, 20)).await;
    let mut c = Node::start(&p, "c", load(0.4, 30)).await;
    let seen = ids(&a.cluster).await;
    assert_eq!(
        seen,
        ["a", "b", "c"],
        "every node announces itself at start"
    );
    // The entries carry what each node reported.
    a.load.0.lock().expect("load").participants = 11;
    wait_for("a's new load in the registry", || async {
        let nodes = b.cluster.nodes().await.ok()?;
        let a = nodes.into_iter().find(|n| n.id == "a")?;
        (a.load.participants == 11 && a.url == "http://a.test:8080").then_some(())
    })
    .await;
    c.crash();
    wait_for("c seen dead", || async {
        let ids = ids(&a.cluster).await;
        (ids == ["a", "b"]).then_some(())
    })
    .await;
    cleanup(&[a, b, c]).await;
}

#[tokio::test]
async fn a_meeting_goes_to_the_least_loaded_node() {
    require_redis!();
    let p = prefix();
    let a = Node::start(&p, "a", load(0.9, 150)).await;
    let b = Node::start(&p, "b", load(0.1, 10)).await;
    let c = Node::start(&p, "c", load(0.5, 60)).await;
    // Joining through the busiest node.
    let route = a.cluster.route("m-1").await.expect("route");
    assert_eq!(
        route,
        Route::There {
            node: "b".into(),
            ws_url: "ws://b.test:8080/api/v1/ws".into()
        }
    );
    // Once placed, every node sends its participants to the same place.
    assert_eq!(c.cluster.place("m-1").await.expect("place").id, "b");
    assert_eq!(b.cluster.route("m-1").await.expect("route"), Route::Here);
    cleanup(&[a, b, c]).await;
}

#[tokio::test]
async fn concurrent_placements_of_one_meeting_agree_on_one_owner() {
    require_redis!();
    let p = prefix();
    // Equal loads: each node would keep the meeting itself, the hardest case for agreement.
    let nodes = [
        Node::start(&p, "a", load(0.0, 0)).await,
        Node::start(&p, "b", load(0.0, 0)).await,
        Node::start(&p, "c", load(0.0, 0)).await,
    ];
    let mut owners_seen = std::collections::BTreeSet::new();
    for round in 0..50 {
        let meeting = format!("race-{round}");
        let tasks: Vec<_> = nodes
            .iter()
            .map(|n| {
                let cluster = n.cluster.clone();
                let meeting = meeting.clone();
                tokio::spawn(async move { cluster.place(&meeting).await.expect("place").id })
            })
            .collect();
        let mut owners = Vec::new();
        for t in tasks {
            owners.push(t.await.expect("task"));
        }
        assert!(
            owners.iter().all(|o| *o == owners[0]),
            "round {round}: nodes disagree: {owners:?}"
        );
        owners_seen.insert(owners[0].clone());
    }
    eprintln!("owners over 50 rounds: {owners_seen:?}");
    cleanup(&nodes).await;
}

#[tokio::test]
async fn a_meeting_whose_node_stops_heartbeating_is_placed_again() {
    require_redis!();
    let p = prefix();
    let mut a = Node::start(&p, "a", load(0.0, 0)).await;
    let b = Node::start(&p, "b", load(0.5, 50)).await;
    let c = Node::start(&p, "c", load(0.6, 60)).await;
    assert_eq!(a.cluster.route("m").await.expect("route"), Route::Here);
    a.host("m");
    assert_eq!(b.cluster.place("m").await.expect("place").id, "a");
    a.crash();
    // While a's entry lives the claim stands; once it expires, the next join moves the meeting
    // to the lightest node left, and every node agrees.
    let owner = wait_for("the meeting placed again", || async {
        let owner = c.cluster.place("m").await.ok()?;
        (owner.id != "a").then_some(owner.id)
    })
    .await;
    assert_eq!(owner, "b");
    assert_eq!(b.cluster.route("m").await.expect("route"), Route::Here);
    cleanup(&[a, b, c]).await;
}

#[tokio::test]
async fn a_draining_node_takes_no_meetings_and_gives_up_its_own() {
    require_redis!();
    let p = prefix();
    let a = Node::start(&p, "a", load(0.0, 0)).await;
    let b = Node::start(&p, "b", load(0.4, 40)).await;
    assert_eq!(a.cluster.route("kept").await.expect("route"), Route::Here);
    a.host("kept");
    // Another node's meeting is not a's to give up: b gets one once a is the busier.
    a.load.0.lock().expect("load").cpu = 2.0;
    a.cluster.heartbeat().await.expect("heartbeat");
    assert_eq!(b.cluster.route("theirs").await.expect("route"), Route::Here);
    let moving = a.cluster.moving();
    assert!(!moving.is_cancelled());
    assert_eq!(a.cluster.drain().await.expect("drain"), 1);
    assert!(moving.is_cancelled(), "a's participants are told to move");
    let registry = b.cluster.nodes().await.expect("registry");
    assert!(registry.iter().any(|n| n.id == "a" && n.draining));
    // Its meeting goes elsewhere on the next join, even one arriving at a itself; so does a
    // new meeting, although a is the lightest node.
    assert_eq!(
        a.cluster.route("kept").await.expect("route"),
        Route::There {
            node: "b".into(),
            ws_url: "ws://b.test:8080/api/v1/ws".into()
        }
    );
    assert_eq!(a.cluster.place("new").await.expect("place").id, "b");
    assert_eq!(b.cluster.place("theirs").await.expect("place").id, "b");
    // The heartbeat keeps saying so (it does not take the meeting back).
    tokio::time::timeout(DEADLINE, a.cluster.heartbeat())
        .await
        .expect("in time")
        .expect("heartbeat");
    assert_eq!(b.cluster.place("kept").await.expect("place").id, "b");
    cleanup(&[a, b]).await;
}
