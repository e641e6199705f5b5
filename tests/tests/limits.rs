//! Misbehaving clients are closed or answered with errors, alone, and counted.

use std::time::Duration;

use futures::SinkExt;
use parley_tests::{TestApp, WsClient};
use serde_json::json;

#[tokio::test]
async fn malformed_and_unknown_messages_get_errors_then_a_close() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Limits").await;
    let (mut c, _) = app.join(&m.host_token).await;

    c.send_text("{not json".into()).await;
    assert_eq!(c.expect_type("error").await["code"], "malformed_json");
    c.send(json!({"type": "dance"})).await;
    assert_eq!(c.expect_type("error").await["code"], "unknown_type");
    // A good message resets the count.
    c.send(json!({"type": "ping"})).await;
    c.expect_type("pong").await;
    c.send(json!({"type": "mute", "source": "nose", "muted": true}))
        .await;
    assert_eq!(c.expect_type("error").await["code"], "invalid_message");
    c.send(json!({"type": "publish_offer"})).await;
    assert_eq!(c.expect_type("error").await["code"], "invalid_message");
    c.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await
    .expect("send");
    let closed = c.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "protocol error")
    );

    let metrics = app.metrics().await;
    for kind in [
        "malformed_json",
        "unknown_type",
        "invalid_message",
        "binary_frame",
    ] {
        let series = format!("parley_ws_protocol_errors_total{{kind=\"{kind}\"}}");
        assert!(
            parley_tests::metric_value(&metrics, &series) >= 1.0,
            "{series}\n{metrics}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_sdp_is_an_error_not_a_crash() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("SDP").await;
    let (mut c, _) = app.join(&m.host_token).await;
    c.send(json!({"type": "publish_offer", "sdp": "v=0 garbage", "tracks": []}))
        .await;
    let e = c.expect_type("error").await;
    assert!(e["code"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    c.send(json!({"type": "ice_candidate", "target": "publisher",
        "candidate": {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}}))
        .await;
    c.send(json!({"type": "ping"})).await;
    c.expect_type("pong").await;
    app.shutdown().await;
}

#[tokio::test]
async fn oversize_frame_closes_1009_and_others_go_on() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Big").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let (mut big, _) = app.join(&app.guest_token(&m, "Big").await).await;
    host.expect_type("participant_joined").await;
    big.send(json!({"type": "chat", "text": "x".repeat(70 * 1024)}))
        .await;
    let closed = big.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1009, "message too big")
    );
    host.send(json!({"type": "ping"})).await;
    host.expect_type("pong").await;
    assert!(
        app.metric("parley_ws_protocol_errors_total{kind=\"too_big\"}")
            .await
            >= 1.0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn flood_closes_1008() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Flood").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let (mut f, _) = app.join(&app.guest_token(&m, "Flooder").await).await;
    host.expect_type("participant_joined").await;
    for _ in 0..300 {
        if !f.try_send_text(json!({"type": "ping"}).to_string()).await {
            break;
        }
    }
    let closed = f.expect_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (1008, "flood"));
    // The flooder keeps its seat like any dropped connection; the host is unaffected.
    host.send(json!({"type": "ping"})).await;
    host.expect_type("pong").await;
    assert!(
        app.metric("parley_ws_protocol_errors_total{kind=\"flood\"}")
            .await
            >= 1.0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn join_must_come_first_and_in_time() {
    let mut app = TestApp::spawn_with(|c| c.join_timeout = Duration::from_millis(300)).await;
    let mut c = app.connect().await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.expect_type("error").await["code"], "not_joined");
    let closed = c.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "join timeout")
    );
    app.shutdown().await;
}

/// The license's participant limit counts the meeting's sessions that another node still
/// holds in the database (a meeting split by a partition from Redis), not only the people on
/// this node: neither half can pass the limit alone. When those sessions end, the place is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_held_by_another_node_count_against_the_limit() {
    use parley_tests::fixtures::Fixture;
    use parley_tests::str_of;
    use reqwest::Method;

    let f = Fixture::spawn().await;
    let m = f
        .must(
            201,
            Method::POST,
            "/api/v1/meetings",
            Some(&f.a.member.token),
            Some(json!({"title": "Split"})),
        )
        .await;
    let (id, invite) = (str_of(&m, "id"), str_of(&m, "invite"));
    let mut tokens = Vec::new();
    for name in ["Here", "Late"] {
        let v = f
            .must(
                200,
                Method::POST,
                &format!("/api/v1/meetings/{id}/join"),
                None,
                Some(json!({"display_name": name, "invite": invite})),
            )
            .await;
        tokens.push(str_of(&v, "token"));
    }
    let (_here, _) = f.app.join(&tokens[0]).await;

    // Nine more are in on another node (the tariff allows 10).
    let pool = f.app.pool();
    let now = parley_signaling::store::time::now_text();
    for i in 0..9 {
        sqlx::query(
            "INSERT INTO participant_sessions (meeting_id, participant_id, identity, \
             display_name, role, joined_at, node) VALUES ($1, $2, $3, $4, 'guest', $5, 'node-b')",
        )
        .bind(&id)
        .bind(format!("p_elsewhere{i}"))
        .bind(format!("guest-elsewhere-{i}"))
        .bind(format!("Elsewhere {i}"))
        .bind(&now)
        .execute(&pool)
        .await
        .expect("a session on node-b");
    }
    let mut late = WsClient::connect(&f.app.ws_url).await;
    late.send(json!({"type": "join", "token": tokens[1]})).await;
    let closed = late.expect_close().await;
    assert_eq!(closed.code, 4005, "{closed:?}");

    // Those nine leave: the late one gets in.
    sqlx::query("UPDATE participant_sessions SET left_at = $1 WHERE node = 'node-b'")
        .bind(parley_signaling::store::time::now_text())
        .execute(&pool)
        .await
        .expect("they leave");
    let (_late, joined) = f.app.join(&tokens[1]).await;
    assert_eq!(joined["type"], "joined");
}
