//! Several nodes on the machine's PostgreSQL and Redis, as an installation that outgrew one
//! machine runs them.
//!
//! - Three `parley` processes (the real binary, own ports, one PostgreSQL schema, one Redis
//!   prefix): native WebRTC participants entering through different nodes meet on the meeting's
//!   node and exchange media; that node is killed (SIGKILL, no goodbye) and the participants,
//!   reconnecting by themselves as the SDK does, get media again from a surviving node within
//!   10 seconds; the recording the dead node was making is reported failed. Then the new node
//!   is stopped with SIGTERM: it drains, both move to the last node with media again, and the
//!   drained process exits.
//! - Three in-process nodes: concurrent joins spread over all of them never put more people in a
//!   meeting than its license allows.
//! - Two in-process nodes racing for the scheduled jobs: each period runs on one node only.
//!
//! Needs `PARLEY_TEST_POSTGRES_URL` and Redis (`PARLEY_TEST_REDIS_URL`, default
//! 127.0.0.1:6379); `.ci/run` has both. Without them each test says so and does nothing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use parley_signaling::configuration::{ClusterConfig, Secret};
use parley_tests::fixtures::{Fixture, MeetingFixture};
use parley_tests::media_client::MediaClient;
use parley_tests::postgres::{self, Schema, on_postgres};
use parley_tests::{ADMIN_TOKEN, JWT_SECRET, TestApp, WsClient, metric_value, str_of};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long participants of a lost node may go without media (the target).
const MEDIA_BACK_WITHIN: Duration = Duration::from_secs(10);

/// The PostgreSQL URL when both services are there; else why the test does nothing.
async fn services(test: &str) -> Option<String> {
    let Some(url) = postgres::url() else {
        eprintln!("{test}: skipped, PARLEY_TEST_POSTGRES_URL is not set");
        return None;
    };
    if !parley_tests::redis::reachable().await {
        eprintln!(
            "{test}: skipped, Redis not reachable at {}",
            parley_tests::redis::url()
        );
        return None;
    }
    Some(url)
}

fn cluster(prefix: &str, id: &str) -> ClusterConfig {
    // An empty node URL: an in-process node announces the address it bound.
    let mut c = ClusterConfig::new(
        Secret::new(parley_tests::redis::url()),
        id.to_owned(),
        String::new(),
    );
    c.key_prefix = prefix.to_owned();
    c
}

// ---------------------------------------------------------------------------------------------
// Nodes as processes

/// The `parley` binary next to this test's own executable (target/<profile>/parley), which
/// `cargo test --workspace` builds with the signaling package's tests.
fn parley_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("parley{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or build parley-signaling)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct NodeProcess {
    id: String,
    base: String,
    ws: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(id: &str, schema: &Schema, prefix: &str) -> NodeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
        let child = Command::new(parley_bin())
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", &schema.url)
            .env("PARLEY_DATABASE_SCHEMA", &schema.name)
            .env("PARLEY_SECRETS_KEY", postgres::SECRETS_KEY)
            .env("PARLEY_JWT_SECRET", JWT_SECRET)
            .env("PARLEY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PARLEY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("PARLEY_UDP_ADDR", "127.0.0.1:0")
            .env("PARLEY_ANNOUNCED_IPS", "127.0.0.1")
            .env("PARLEY_RECORDINGS_DIR", dir.path().join("recordings"))
            .env("PARLEY_RECORD_UNLICENSED", "true")
            .env("PARLEY_REDIS_URL", parley_tests::redis::url())
            .env("PARLEY_REDIS_PREFIX", prefix)
            .env("PARLEY_NODE_ID", id)
            .env("PARLEY_NODE_URL", &base)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start parley");
        let node = NodeProcess {
            id: id.to_owned(),
            ws: format!("ws://127.0.0.1:{port}/api/v1/ws"),
            base,
            child,
            _dir: dir,
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready within 30 s; its log: {}",
                self.id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self._dir.path().join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Kills the process the way a crashed machine stops: no drain, no goodbye to Redis.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a service manager stops a node: it drains first.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "SIGTERM to node {}", self.id);
    }

    /// Whether the process has exited, and how.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// A participant that reconnects by itself

/// What a self-reconnecting participant shows the test.
#[derive(Default)]
struct Seen {
    /// The WebSocket URL of the node it is joined on now (None between connections).
    node: Option<String>,
    /// Media of the current connection (a new one after every rejoin).
    media: Option<Arc<MediaClient>>,
    joins: u32,
    /// When the current connection's `joined` arrived.
    joined_at: Option<Instant>,
    /// The close of the connection before the current one.
    last_close: Option<(u16, String)>,
}

/// A native participant behaving as the SDK does: it enters through one node, follows
/// redirects to the meeting's node, publishes camera and microphone, and when the socket drops
/// it comes back through the next entry address (as a load balancer in front of the nodes
/// would send it) with backoff, then negotiates media afresh.
struct Participant {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Participant {
    fn start(token: String, entries: Vec<String>, first: usize) -> Participant {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut entry = first;
            let mut delay = Duration::from_millis(250);
            let mut resume: Option<(String, String)> = None;
            // Entry addresses that refused a connection: a load balancer stops sending people
            // to a backend that fails its connects, so the client does not go back there.
            let mut down = vec![false; entries.len()];
            loop {
                if down[entry % entries.len()] && !down.iter().all(|d| *d) {
                    entry += 1;
                    continue;
                }
                let url = entries[entry % entries.len()].clone();
                if tokio::net::TcpStream::connect(authority(&url))
                    .await
                    .is_err()
                {
                    down[entry % entries.len()] = true;
                }
                match join_following(&url, &token, resume.as_ref()).await {
                    Some((ws, joined, at)) => {
                        delay = Duration::from_millis(250);
                        resume = Some((
                            str_of(&joined, "participant_id"),
                            str_of(&joined, "resume_token"),
                        ));
                        let close = session(ws, at, &s).await;
                        if let Ok(mut seen) = s.lock() {
                            seen.node = None;
                            seen.last_close = Some(close);
                        }
                    }
                    None => {
                        entry += 1;
                        // Reconnect backoff, as the SDK's (not a test wait).
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
        Participant { seen, task }
    }

    fn node(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|s| s.node.clone())
    }

    fn joins(&self) -> u32 {
        self.seen.lock().map_or(0, |s| s.joins)
    }

    fn joined_at(&self) -> Option<Instant> {
        self.seen.lock().ok().and_then(|s| s.joined_at)
    }

    fn video_packets(&self) -> u64 {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.media.clone())
            .map_or(0, |m| m.packets_of("video"))
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `host:port` of a ws:// URL.
fn authority(url: &str) -> String {
    let rest = url.trim_start_matches("ws://");
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Opens a socket at `url` and joins, following up to 3 redirects; the socket, `joined`, and
/// the URL it was joined at. None when no node took the join.
async fn join_following(
    url: &str,
    token: &str,
    resume: Option<&(String, String)>,
) -> Option<(WsClient, Value, String)> {
    let mut url = url.to_owned();
    for _ in 0..4 {
        let Ok(Ok((ws, _))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        else {
            return None;
        };
        let mut ws = WsClient { ws };
        let mut join = json!({"type": "join", "token": token});
        if let Some((pid, rt)) = resume {
            join["resume"] = json!({"participant_id": pid, "resume_token": rt});
        }
        if !ws.try_send_text(join.to_string()).await {
            return None;
        }
        let mut next = None;
        loop {
            match ws.next().await {
                Ok(m) if m["type"] == "joined" => return Some((ws, m, url)),
                Ok(m) if m["type"] == "redirect" => next = m["url"].as_str().map(str::to_owned),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        url = next?;
    }
    None
}

/// One connection's life: media negotiated on it until the socket closes; the close.
async fn session(mut ws: WsClient, at: String, seen: &Mutex<Seen>) -> (u16, String) {
    let media = Arc::new(MediaClient::new(true).await.expect("media client"));
    let previous = seen.lock().ok().and_then(|mut s| {
        s.node = Some(at);
        s.joins += 1;
        s.joined_at = Some(Instant::now());
        s.media.replace(media.clone())
    });
    if let Some(old) = previous {
        old.close().await;
    }
    let (sdp, tracks) = media.publisher_offer().await.expect("offer");
    let tracks: Vec<Value> = tracks
        .into_iter()
        .map(|(mid, source)| json!({"mid": mid, "source": source}))
        .collect();
    let offer = json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks});
    if !ws.try_send_text(offer.to_string()).await {
        return (1006, "send failed".into());
    }
    loop {
        let msg = match next_quietly(&mut ws).await {
            Ok(m) => m,
            Err(close) => return close,
        };
        match msg["type"].as_str() {
            Some("publish_answer") => {
                let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                media.publisher_answer(sdp).await.expect("publisher answer");
                media.start_media().await.expect("media starts");
            }
            Some("subscribe_offer") => {
                let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                let answer = media.subscriber_offer(sdp).await.expect("subscriber offer");
                let reply = json!({"type": "subscribe_answer", "sdp": answer});
                if !ws.try_send_text(reply.to_string()).await {
                    return (1006, "send failed".into());
                }
            }
            _ => {}
        }
    }
}

/// The next message, waiting as long as it takes (a quiet meeting sends nothing for long
/// stretches); the close when the socket ends.
async fn next_quietly(ws: &mut WsClient) -> Result<Value, (u16, String)> {
    use futures::StreamExt;
    loop {
        match ws.ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| (1007, e.to_string()));
            }
            Some(Ok(Message::Close(f))) => {
                return Err(f.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                }));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err((1006, e.to_string())),
            None => return Err((1006, "stream ended".into())),
        }
    }
}

/// Both have joined again since `joins_before`, together on a node other than `left`, and each
/// receives the other's video there.
fn moved_with_media(
    host: &Participant,
    guest: &Participant,
    left: &str,
    joins_before: (u32, u32),
) -> bool {
    let (h, g) = (host.node(), guest.node());
    h.is_some()
        && h.as_deref() != Some(left)
        && h == g
        && host.joins() > joins_before.0
        && guest.joins() > joins_before.1
        && host.video_packets() > 10
        && guest.video_packets() > 10
}

/// Polls `check` until it holds, or fails the test after `within`, saying `what`.
async fn within(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_losing_its_node_and_draining_the_next() {
    let test = "a_meeting_survives_losing_its_node_and_draining_the_next";
    let Some(url) = services(test).await else {
        return;
    };
    let schema = Schema::fresh(&url);
    let prefix = parley_tests::redis::fresh_prefix();
    let mut nodes = Vec::new();
    for id in ["node-1", "node-2", "node-3"] {
        nodes.push(NodeProcess::start(id, &schema, &prefix).await);
    }
    let entries: Vec<String> = nodes.iter().map(|n| n.ws.clone()).collect();
    let http = reqwest::Client::new();

    // The meeting is made on node 1; host and guest get their tokens from node 2.
    let created: Value = http
        .post(format!("{}/api/v1/meetings", nodes[0].base))
        .json(&json!({"title": "Survives a node"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let meeting = str_of(&created, "id");
    let token = |body: Value| {
        let (http, url) = (
            http.clone(),
            format!("{}/api/v1/meetings/{meeting}/join", nodes[1].base),
        );
        async move {
            let v: Value = http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("join exchange")
                .json()
                .await
                .expect("json");
            str_of(&v, "token")
        }
    };
    let host_token = token(json!({"display_name": "Host", "host_key": created["host_key"]})).await;
    let guest_token = token(json!({"display_name": "Guest", "invite": created["invite"]})).await;

    // Host enters through node 1, guest through node 3: both end up on the meeting's node.
    let host = Participant::start(host_token, entries.clone(), 0);
    let guest = Participant::start(guest_token, entries.clone(), 2);
    within(
        Duration::from_secs(20),
        "both joined and receiving video",
        || {
            host.node().is_some()
                && host.node() == guest.node()
                && host.video_packets() > 30
                && guest.video_packets() > 30
        },
    )
    .await;
    let owner = host.node().expect("host's node");
    // They entered through different nodes, so at least one of them was sent across.
    let dead = entries
        .iter()
        .position(|e| *e == owner)
        .expect("the owner is one of the nodes");

    // The host records; the request goes to node 2 and is carried out on the meeting's node.
    let host_key = created["host_key"].as_str().unwrap_or_default().to_owned();
    let recording = format!("{}/api/v1/meetings/{meeting}/recording", nodes[1].base);
    let r = http
        .post(&recording)
        .bearer_auth(&host_key)
        .send()
        .await
        .expect("start recording");
    assert_eq!(r.status(), 201, "recording starts");
    let started: Value = r.json().await.expect("json");
    let lost_recording = str_of(&started, "recording_id");

    // The meeting's node dies. Both come back on one surviving node and see each other's video.
    let joins_before = (host.joins(), guest.joins());
    let killed = Instant::now();
    nodes[dead].kill();
    let took = within(
        MEDIA_BACK_WITHIN,
        "media again on a surviving node after the meeting's node died",
        || moved_with_media(&host, &guest, &owner, joins_before),
    )
    .await;
    let rejoined = |p: &Participant| p.joined_at().map(|t| t.duration_since(killed));
    eprintln!(
        "media back {took:?} after the meeting's node ({}) was killed (rejoined after {:?} and \
         {:?}); now on {:?}",
        nodes[dead].id,
        rejoined(&host),
        rejoined(&guest),
        host.node()
    );

    // Every surviving node reports the same attendance: the two present now, and their two
    // sessions on the lost node closed as lost rather than left open.
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != dead) {
        let r = http
            .get(format!("{}/api/v1/meetings/{meeting}/participants", n.base))
            .bearer_auth(&host_key)
            .send()
            .await
            .expect("participants");
        assert_eq!(r.status(), 200, "node {i}");
        let v: Value = r.json().await.expect("json");
        let rows = v.as_array().cloned().unwrap_or_default();
        let present = rows.iter().filter(|p| p["present"] == true).count();
        let lost = rows
            .iter()
            .filter(|p| p["leave_reason"] == "node_lost")
            .count();
        assert_eq!((present, lost), (2, 2), "node {i}: {v}");
    }
    // The recording the lost node was making is reported failed, not "recording" forever, and
    // the host can record again on the new node.
    let survivor = &nodes[(dead + 1) % nodes.len()];
    let v: Value = http
        .get(format!(
            "{}/api/v1/meetings/{meeting}/recordings",
            survivor.base
        ))
        // An unlicensed meeting's recordings belong to no account: the operator lists them.
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("recordings")
        .json()
        .await
        .expect("json");
    let lost = v["recordings"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == lost_recording.as_str()))
        .unwrap_or_else(|| panic!("the lost recording is listed: {v}"));
    assert_eq!(lost["status"], "failed", "{lost}");
    assert!(
        lost["error"].as_str().unwrap_or_default().contains("lost"),
        "{lost}"
    );
    let r = http
        .post(format!(
            "{}/api/v1/meetings/{meeting}/recording",
            survivor.base
        ))
        .bearer_auth(&host_key)
        .send()
        .await
        .expect("start recording again");
    assert_eq!(r.status(), 201, "recording starts again on the new node");

    // The new node is stopped the orderly way (SIGTERM): it drains, both move to the last
    // node with media again, and the drained process exits on its own.
    let second = entries
        .iter()
        .position(|e| Some(e.clone()) == host.node())
        .expect("the new node is one of the nodes");
    let joins_before = (host.joins(), guest.joins());
    nodes[second].terminate();
    let took = within(
        MEDIA_BACK_WITHIN,
        "media again on the last node after the meeting's node drained",
        || moved_with_media(&host, &guest, &entries[second], joins_before),
    )
    .await;
    eprintln!("media back {took:?} after the meeting's second node was drained (SIGTERM)");
    let status = {
        let node = &mut nodes[second];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = node.exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "the drained node did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(status.success(), "the drained node exits cleanly: {status}");
    drop((host, guest));
}

// ---------------------------------------------------------------------------------------------
// In-process nodes

/// Another node on `schema` in the cluster `prefix`.
async fn node_on(schema: &Schema, prefix: &str, id: &str) -> TestApp {
    let (url, name, c) = (schema.url.clone(), schema.name.clone(), cluster(prefix, id));
    TestApp::spawn_with(move |cfg| {
        on_postgres(cfg, &url, &name);
        cfg.cluster = Some(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participant_limit_holds_across_nodes_under_concurrent_joins() {
    let test = "the_participant_limit_holds_across_nodes_under_concurrent_joins";
    let Some(url) = services(test).await else {
        return;
    };
    let schema = Schema::fresh(&url);
    let prefix = parley_tests::redis::fresh_prefix();
    let (u, n, c) = (
        schema.url.clone(),
        schema.name.clone(),
        cluster(&prefix, "node-a"),
    );
    let f = Fixture::spawn_with(move |cfg| {
        on_postgres(cfg, &u, &n);
        cfg.cluster = Some(c);
    })
    .await;
    let b = node_on(&schema, &prefix, "node-b").await;
    let c = node_on(&schema, &prefix, "node-c").await;
    let entries = [f.app.ws_url.clone(), b.ws_url.clone(), c.ws_url.clone()];

    // A meeting of account A, whose tariff allows 10 participants.
    let (s, v) = f
        .call(
            Method::POST,
            "/api/v1/meetings",
            Some(&f.a.member.token),
            Some(json!({"title": "Full house"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let meeting = MeetingFixture {
        id: str_of(&v, "id"),
        host_key: str_of(&v, "host_key"),
        host_token: str_of(&v, "host_token"),
        invite: str_of(&v, "invite"),
        guest_token: String::new(),
    };
    let mut tokens = Vec::new();
    for i in 0..14 {
        let (s, v) = f
            .call(
                Method::POST,
                &format!("/api/v1/meetings/{}/join", meeting.id),
                None,
                Some(json!({"display_name": format!("Guest {i}"), "invite": meeting.invite})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        tokens.push(str_of(&v, "token"));
    }

    // Fourteen join at once, spread over the three nodes.
    let attempts = tokens.iter().enumerate().map(|(i, token)| {
        let url = entries[i % entries.len()].clone();
        async move {
            let mut url = url;
            for _ in 0..4 {
                let mut ws = WsClient::connect(&url).await;
                ws.send(json!({"type": "join", "token": token})).await;
                let mut next = None;
                loop {
                    match ws.next().await {
                        Ok(m) if m["type"] == "joined" => return Ok(ws),
                        Ok(m) if m["type"] == "redirect" => {
                            next = m["url"].as_str().map(str::to_owned);
                        }
                        Ok(_) => {}
                        Err(closed) if next.is_some() && closed.code == 4010 => break,
                        Err(closed) => return Err(closed),
                    }
                }
                url = next.expect("redirect url");
            }
            panic!("more than 3 redirects");
        }
    });
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused: Vec<u16> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(|c| c.code))
        .collect();
    assert_eq!(joined, 10, "refusals: {refused:?}");
    assert_eq!(
        refused,
        vec![4005; 4],
        "the rest are told the meeting is full"
    );
    drop(outcomes);
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scheduled_run_happens_on_one_node() {
    let test = "each_scheduled_run_happens_on_one_node";
    let Some(url) = services(test).await else {
        return;
    };
    let schema = Schema::fresh(&url);
    let prefix = parley_tests::redis::fresh_prefix();
    let period = Duration::from_millis(200);
    let start = Instant::now();
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b"] {
        let (u, n, c) = (
            schema.url.clone(),
            schema.name.clone(),
            cluster(&prefix, id),
        );
        nodes.push(
            TestApp::spawn_with(move |cfg| {
                on_postgres(cfg, &u, &n);
                cfg.cluster = Some(c);
                cfg.license_events_interval = period;
            })
            .await,
        );
    }
    let series = "parley_scheduled_runs_total{job=\"seat_review\"}";
    let mut runs = [0.0; 2];
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs.iter().sum::<f64>() < 15.0 {
        assert!(
            Instant::now() < deadline,
            "the job stopped running: {runs:?}"
        );
        tokio::time::sleep(period).await;
        for (i, n) in nodes.iter().enumerate() {
            runs[i] = metric_value(&n.metrics().await, series);
        }
    }
    // Both nodes tick every period; had each run its own, the total would be about twice the
    // periods that passed.
    let periods = start.elapsed().as_millis() / period.as_millis() + 1;
    let total = runs.iter().sum::<f64>();
    assert!(
        total <= periods as f64,
        "{total} runs in {periods} periods: some period ran on both nodes ({runs:?})"
    );
    // And each node ran exactly the periods it claimed.
    let pool = sqlx::PgPool::connect(&schema.url).await.expect("postgres");
    for (i, id) in ["node-a", "node-b"].iter().enumerate() {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {}.job_runs WHERE job = 'seat_review' AND node = $1",
            schema.name
        ))
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("count");
        let now = metric_value(&nodes[i].metrics().await, series);
        assert!(
            (n as f64 - now).abs() <= 1.0,
            "{id}: {n} claimed, {now} ran"
        );
    }
    pool.close().await;
}
