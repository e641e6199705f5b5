//! Two `parley` servers sharing the real Redis (127.0.0.1:6379, or `PARLEY_TEST_REDIS_URL`)
//! under a key prefix of their own: a join reaching the wrong node is redirected to the
//! meeting's node, a host action on the wrong node is carried out on the right one, and a
//! drained node sends its participants away. Each node keeps its own SQLite file here (the
//! shared PostgreSQL store is another piece of work), so what is exercised is the routing:
//! every meeting is created and held on node A. Skipped, with the reason printed, when Redis
//! cannot be reached.

use parley_signaling::configuration::{ClusterConfig, Secret};
use parley_tests::{ADMIN_TOKEN, TestApp, WsClient, str_of};
use reqwest::Method;
use serde_json::json;

async fn node(prefix: &str, id: &str) -> TestApp {
    let prefix = prefix.to_owned();
    let id = id.to_owned();
    TestApp::spawn_with(move |c| {
        // An empty node URL: the node announces the address it bound (port 0 here).
        let mut cluster =
            ClusterConfig::new(Secret::new(parley_tests::redis::url()), id, String::new());
        cluster.key_prefix = prefix;
        c.cluster = Some(cluster);
    })
    .await
}

#[tokio::test]
async fn a_join_on_the_wrong_node_is_sent_to_the_meetings_node() {
    if !parley_tests::redis::reachable().await {
        eprintln!(
            "skipped: Redis not reachable at {}",
            parley_tests::redis::url()
        );
        return;
    }
    let prefix = parley_tests::redis::fresh_prefix();
    let mut a = node(&prefix, "node-a").await;
    let mut b = node(&prefix, "node-b").await;
    let cluster = a
        .server
        .as_ref()
        .and_then(|s| s.state().cluster.clone())
        .expect("node A is clustered");

    // B is drained first so that the meeting can only be placed on A, whose database holds it.
    let (s, v) = b
        .call(
            Method::POST,
            "/api/v1/operator/drain",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["node_id"].as_str(), v["draining"].as_bool()),
        (Some("node-b"), Some(true))
    );

    let m = a.create_meeting("Across nodes").await;
    let (mut host, _) = a.join(&m.host_token).await;

    // The guest arrives at B: redirected to A's WebSocket, then closed with 4010.
    let guest_token = a.guest_token(&m, "Guest").await;
    let mut at_b = b.connect().await;
    at_b.send(json!({"type": "join", "token": guest_token}))
        .await;
    let redirect = at_b.next().await.expect("a redirect before the close");
    assert_eq!(redirect["type"], "redirect", "{redirect}");
    assert_eq!(redirect["url"].as_str(), Some(a.ws_url.as_str()));
    let closed = at_b.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4010, "meeting is on another node")
    );

    // Following it, the guest meets the host.
    let mut guest = WsClient::connect(&a.ws_url).await;
    guest
        .send(json!({"type": "join", "token": guest_token}))
        .await;
    let joined = guest.expect_type("joined").await;
    let guest_id = str_of(&joined, "participant_id");
    let others = joined["participants"].as_array().expect("participants");
    assert_eq!(others.len(), 1, "{joined}");
    host.expect_type("participant_joined").await;

    // The host mutes the guest through B's REST API: carried out on A, the guest is told.
    let (s, v) = b
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/participants/{guest_id}/mute", m.id),
            Some(&m.host_token),
            Some(json!({"source": "microphone"})),
        )
        .await;
    assert!(s < 300, "mute through node B: {s} {v}");
    let asked = guest.expect_type("mute_request").await;
    assert_eq!(asked["source"], "microphone");

    // A is drained: both participants are told to rejoin through the public address.
    let (s, v) = a
        .call(
            Method::POST,
            "/api/v1/operator/drain",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meetings_released"], 1, "{v}");
    for client in [&mut host, &mut guest] {
        let moved = client.expect_type("redirect").await;
        assert!(moved.get("url").is_none(), "{moved}");
        let closed = client.expect_close().await;
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (4011, "node draining, rejoin")
        );
    }

    a.shutdown().await;
    b.shutdown().await;
    cluster.delete_namespace().await.expect("cleanup");
}

#[tokio::test]
async fn a_single_node_has_nothing_to_drain_to() {
    let app = TestApp::spawn().await;
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/operator/drain",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_clustered"))
    );
}

/// The pages that join meetings from inside another site (the SDK's embed page) let their
/// WebSocket follow a redirect to another node: their CSP's `connect-src` names the nodes, as
/// the meeting app's does; a single node keeps `connect-src 'self'`.
#[tokio::test]
async fn the_embed_page_may_connect_to_the_other_nodes() {
    if !parley_tests::redis::reachable().await {
        eprintln!(
            "skipped: Redis not reachable at {}",
            parley_tests::redis::url()
        );
        return;
    }
    let prefix = parley_tests::redis::fresh_prefix();
    let clustered = node(&prefix, "node-a").await;
    let single = TestApp::spawn().await;
    let csp_of = |app: &TestApp, path: &str| {
        let (http, url) = (app.http.clone(), app.url(path));
        async move {
            let r = http.get(url).send().await.expect("page");
            r.headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };
    for path in ["/embed/abcdefghijkl?token=x", "/m/abcdefghijkl"] {
        let csp = csp_of(&clustered, path).await;
        // Nodes addressed by IP (here 127.0.0.1) have no common domain: any ws(s) origin.
        assert!(
            csp.contains("connect-src 'self' ws: wss:;"),
            "{path}: {csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        let csp = csp_of(&single, path).await;
        assert!(csp.contains("connect-src 'self';"), "{path}: {csp}");
    }
}
