//! WebSocket signaling without media: presence, chat, host actions, lock, resume.

use std::time::Duration;

use parley_tests::{TestApp, WsClient, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

/// Sends a ping and returns the types of everything received before the pong: a barrier that
/// proves what the server did (not) send up to now, without sleeping.
async fn types_until_pong(c: &mut WsClient) -> Vec<String> {
    c.send(json!({"type": "ping"})).await;
    let mut seen = Vec::new();
    loop {
        let v = c.next().await.expect("open socket");
        let ty = v["type"].as_str().unwrap_or_default().to_owned();
        if ty == "pong" {
            return seen;
        }
        seen.push(ty);
    }
}

#[tokio::test]
async fn join_presence_and_leave() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Presence").await;
    let host_token = app.host_token(&m, "Hana").await;
    let (mut host, joined) = app.join(&host_token).await;
    let host_id = str_of(&joined, "participant_id");
    assert_eq!(joined["meeting"]["id"], m.id.as_str());
    assert_eq!(joined["meeting"]["title"], "Presence");
    assert_eq!(joined["you"]["role"], "host");
    assert_eq!(joined["you"]["display_name"], "Hana");
    assert_eq!(joined["participants"], json!([]));
    assert!(
        joined["resume_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 16)
    );

    let guest_token = app.guest_token(&m, "Gus").await;
    let (mut guest, gj) = app.join(&guest_token).await;
    let guest_id = str_of(&gj, "participant_id");
    assert_ne!(guest_id, host_id);
    assert_eq!(gj["participants"][0]["id"], host_id.as_str());
    let pj = host.expect_type("participant_joined").await;
    assert_eq!(pj["participant"]["id"], guest_id.as_str());
    assert_eq!(pj["participant"]["display_name"], "Gus");
    assert_eq!(pj["participant"]["role"], "guest");

    // Join again on the same socket is an error, not a second participant.
    guest
        .send(json!({"type": "join", "token": guest_token}))
        .await;
    assert_eq!(guest.expect_type("error").await["code"], "already_joined");

    guest.send(json!({"type": "leave"})).await;
    let closed = guest.expect_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (1000, "left"));
    let left = host.expect_type("participant_left").await;
    assert_eq!(left["participant_id"], guest_id.as_str());
    assert_eq!(left["reason"], "left");

    let (s, parts) = app
        .get_json(
            &format!("/api/v1/meetings/{}/participants", m.id),
            Some(&m.host_key),
        )
        .await;
    assert_eq!(s, 200);
    let parts = parts.as_array().expect("array").clone();
    assert_eq!(parts.len(), 2, "{parts:?}");
    let g = parts
        .iter()
        .find(|p| p["participant_id"] == guest_id.as_str())
        .expect("guest row");
    assert_eq!(g["leave_reason"], "left");
    assert!(g["left_at"].is_string() && g["present"] == false);
    let h = parts
        .iter()
        .find(|p| p["participant_id"] == host_id.as_str())
        .expect("host row");
    assert!(h["left_at"].is_null() && h["present"] == true);
    let (_, info) = app
        .get_json(&format!("/api/v1/meetings/{}", m.id), Some(&m.invite))
        .await;
    assert!(info["started_at"].is_string(), "{info}");
    app.shutdown().await;
}

#[tokio::test]
async fn chat_fallback_is_relayed_and_stored() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Chat").await;
    let (mut a, _) = app.join(&app.host_token(&m, "Ann").await).await;
    let (mut b, bj) = app.join(&app.guest_token(&m, "Bob").await).await;
    let b_id = str_of(&bj, "participant_id");
    a.expect_type("participant_joined").await;

    b.send(json!({"type": "chat", "text": "hello там"})).await;
    let msg = a.expect_type("chat").await;
    assert_eq!(msg["from"], b_id.as_str());
    assert_eq!(msg["display_name"], "Bob");
    assert_eq!(msg["text"], "hello там");
    assert!(msg["at"].as_str().is_some_and(|t| t.contains('T')));
    // The sender does not get its own message back.
    assert!(!types_until_pong(&mut b).await.contains(&"chat".to_owned()));

    b.send(json!({"type": "chat", "text": "x".repeat(2001)}))
        .await;
    assert_eq!(b.expect_type("error").await["code"], "invalid_chat");

    let (s, chat) = app
        .get_json(
            &format!("/api/v1/meetings/{}/chat", m.id),
            Some(&m.host_key),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(chat.as_array().map(Vec::len), Some(1), "{chat}");
    assert_eq!(chat[0]["text"], "hello там");
    assert_eq!(chat[0]["via"], "websocket");
    app.shutdown().await;
}

#[tokio::test]
async fn host_mute_remove_and_end() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Host controls").await;
    let (mut host, _) = app.join(&app.host_token(&m, "Hal").await).await;
    let (mut g1, j1) = app.join(&app.guest_token(&m, "G1").await).await;
    let g1_id = str_of(&j1, "participant_id");
    let (mut g2, j2) = app.join(&app.guest_token(&m, "G2").await).await;
    let g2_id = str_of(&j2, "participant_id");
    host.expect_where("participant_joined", |v| {
        v["participant"]["id"] == g2_id.as_str()
    })
    .await;

    // A guest may not use host actions.
    g1.send(json!({"type": "host", "action": "end"})).await;
    assert_eq!(g1.expect_type("error").await["code"], "forbidden");
    g1.send(json!({"type": "host", "action": "remove", "participant_id": g2_id}))
        .await;
    assert_eq!(g1.expect_type("error").await["code"], "forbidden");

    // Host mutes G1 over the socket, then G2 over REST.
    host.send(
        json!({"type": "host", "action": "mute", "participant_id": g1_id, "source": "microphone"}),
    )
    .await;
    assert_eq!(g1.expect_type("mute_request").await["source"], "microphone");
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/participants/{g2_id}/mute", m.id),
            Some(&m.host_key),
            Some(json!({"source": "camera"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(g2.expect_type("mute_request").await["source"], "camera");
    host.send(json!({"type": "host", "action": "mute", "participant_id": "pNOBODYHERE1", "source": "camera"})).await;
    assert_eq!(host.expect_type("error").await["code"], "not_found");

    // Remove G1 over the socket.
    host.send(json!({"type": "host", "action": "remove", "participant_id": g1_id}))
        .await;
    let c = g1.expect_close().await;
    assert_eq!((c.code, c.reason.as_str()), (4000, "removed by host"));
    let left = host
        .expect_where("participant_left", |v| {
            v["participant_id"] == g1_id.as_str()
        })
        .await;
    assert_eq!(left["reason"], "removed");
    let left = g2
        .expect_where("participant_left", |v| {
            v["participant_id"] == g1_id.as_str()
        })
        .await;
    assert_eq!(left["reason"], "removed");

    // End over REST: everyone is closed with 4001.
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/end", m.id),
            Some(&m.host_token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    for c in [&mut host, &mut g2] {
        let closed = c.expect_close().await;
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (4001, "meeting ended")
        );
    }
    let (_, info) = app
        .get_json(&format!("/api/v1/meetings/{}", m.id), Some(&m.invite))
        .await;
    assert!(info["ended_at"].is_string(), "{info}");
    let (_, parts) = app
        .get_json(
            &format!("/api/v1/meetings/{}/participants", m.id),
            Some(&m.host_key),
        )
        .await;
    let reasons: Vec<&str> = parts
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["leave_reason"].as_str().unwrap_or("open"))
        .collect();
    assert_eq!(reasons, ["ended", "removed", "ended"]);

    // A token issued before the end cannot get back in.
    let mut late = app.connect().await;
    late.send(json!({"type": "join", "token": m.host_token}))
        .await;
    assert_eq!(late.expect_close().await.code, 4001);
    app.shutdown().await;
}

#[tokio::test]
async fn host_ends_over_the_socket() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("End by socket").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let (mut guest, _) = app.join(&app.guest_token(&m, "G").await).await;
    host.send(json!({"type": "host", "action": "end"})).await;
    assert_eq!(guest.expect_close().await.code, 4001);
    assert_eq!(host.expect_close().await.code, 4001);
    let (_, info) = app
        .get_json(&format!("/api/v1/meetings/{}", m.id), Some(&m.invite))
        .await;
    assert!(info["ended_at"].is_string(), "{info}");
    app.shutdown().await;
}

#[tokio::test]
async fn locked_meeting_refuses_new_guests() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Lock").await;
    let (mut host, _) = app.join(&m.host_token).await;
    host.send(json!({"type": "host", "action": "lock"})).await;
    assert_eq!(host.expect_type("meeting_locked").await["locked"], true);

    let guest_token = app.guest_token(&m, "Late").await;
    let mut g = app.connect().await;
    g.send(json!({"type": "join", "token": guest_token})).await;
    let c = g.expect_close().await;
    assert_eq!((c.code, c.reason.as_str()), (4003, "meeting is locked"));
    let (_, info) = app
        .get_json(&format!("/api/v1/meetings/{}", m.id), Some(&m.invite))
        .await;
    assert_eq!(info["locked"], true);

    // A second host still gets in; after unlock guests do too.
    let (_, j) = app.join(&app.host_token(&m, "Cohost").await).await;
    assert_eq!(j["meeting"]["locked"], true);
    host.send(json!({"type": "host", "action": "unlock"})).await;
    assert_eq!(host.expect_type("meeting_locked").await["locked"], false);
    let (_, j) = app.join(&guest_token).await;
    assert_eq!(j["you"]["display_name"], "Late");
    app.shutdown().await;
}

#[tokio::test]
async fn resume_keeps_the_seat_without_duplicates() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Resume").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let guest_token = app.guest_token(&m, "Rita").await;
    let (guest, gj) = app.join(&guest_token).await;
    let pid = str_of(&gj, "participant_id");
    let resume_token = str_of(&gj, "resume_token");
    host.expect_type("participant_joined").await;

    // The network drops: no close frame, the socket just goes away.
    drop(guest);
    let mut again = app.connect().await;
    again
        .send(
            json!({"type": "join", "token": guest_token, "meeting_id": m.id,
            "resume": {"participant_id": pid, "resume_token": resume_token}}),
        )
        .await;
    let rj = again.expect_type("joined").await;
    assert_eq!(rj["participant_id"], pid.as_str());
    assert_eq!(rj["participants"].as_array().map(Vec::len), Some(1));
    let upd = host.expect_type("participant_updated").await;
    assert_eq!(upd["participant"]["id"], pid.as_str());
    let seen = types_until_pong(&mut host).await;
    assert!(
        !seen
            .iter()
            .any(|t| t == "participant_left" || t == "participant_joined"),
        "host saw {seen:?}"
    );

    // Resuming while the old socket is still open replaces it (4002).
    let token2 = str_of(&rj, "resume_token");
    let mut third = app.connect().await;
    third
        .send(json!({"type": "join", "token": guest_token,
            "resume": {"participant_id": pid, "resume_token": token2}}))
        .await;
    assert_eq!(
        third.expect_type("joined").await["participant_id"],
        pid.as_str()
    );
    let c = again.expect_close().await;
    assert_eq!(
        (c.code, c.reason.as_str()),
        (4002, "replaced by a newer connection")
    );

    // A wrong resume token does not hijack the seat: it is a fresh participant.
    let mut thief = app.connect().await;
    thief
        .send(json!({"type": "join", "token": guest_token,
            "resume": {"participant_id": pid, "resume_token": "guess"}}))
        .await;
    let tj = thief.expect_type("joined").await;
    assert_ne!(tj["participant_id"], pid.as_str());
    assert!(
        types_until_pong(&mut third)
            .await
            .iter()
            .all(|t| t != "error")
    );

    let (_, parts) = app
        .get_json(
            &format!("/api/v1/meetings/{}/participants", m.id),
            Some(&m.host_key),
        )
        .await;
    let rita: Vec<&Value> = parts
        .as_array()
        .expect("array")
        .iter()
        .filter(|p| p["participant_id"] == pid.as_str())
        .collect();
    assert_eq!(
        rita.len(),
        1,
        "one session row for the resumed participant: {parts}"
    );
    assert!(rita[0]["left_at"].is_null());
    app.shutdown().await;
}

#[tokio::test]
async fn seat_is_released_after_the_grace_period() {
    let mut app = TestApp::spawn_with(|c| c.resume_grace = Duration::from_millis(300)).await;
    let m = app.create_meeting("Grace").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let guest_token = app.guest_token(&m, "Gone").await;
    let (guest, gj) = app.join(&guest_token).await;
    let pid = str_of(&gj, "participant_id");
    let resume_token = str_of(&gj, "resume_token");
    host.expect_type("participant_joined").await;
    drop(guest);

    let left = host.expect_type("participant_left").await;
    assert_eq!(left["participant_id"], pid.as_str());
    assert_eq!(left["reason"], "timeout");
    let row = wait_for("timeout recorded", || async {
        let (_, parts) = app
            .get_json(
                &format!("/api/v1/meetings/{}/participants", m.id),
                Some(&m.host_key),
            )
            .await;
        parts
            .as_array()?
            .iter()
            .find(|p| p["participant_id"] == pid.as_str() && p["left_at"].is_string())
            .cloned()
    })
    .await;
    assert_eq!(row["leave_reason"], "timeout");

    // Too late to resume: the client gets a new participant id.
    let mut again = app.connect().await;
    again
        .send(json!({"type": "join", "token": guest_token,
            "resume": {"participant_id": pid, "resume_token": resume_token}}))
        .await;
    let j = again.expect_type("joined").await;
    assert_ne!(j["participant_id"], pid.as_str());
    app.shutdown().await;
}
