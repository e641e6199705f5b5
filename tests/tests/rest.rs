//! The REST API: meetings, join exchange, participants, host authorization, error format.

use parley_tests::{ADMIN_TOKEN, TestApp, str_of};
use reqwest::Method;
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(body["error"]["code"], want_code, "code; body {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body {body}"
    );
}

#[tokio::test]
async fn create_get_and_join_exchange() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Quarterly review").await;
    assert_eq!(m.raw["title"], "Quarterly review");
    let host_link = str_of(&m.raw, "host_link");
    let invite_link = str_of(&m.raw, "invite_link");
    assert!(
        host_link.ends_with(&format!("/m/{}?t={}", m.id, m.host_token)),
        "{host_link}"
    );
    assert!(
        invite_link.ends_with(&format!("/m/{}?invite={}", m.id, m.invite)),
        "{invite_link}"
    );

    // Public info needs the invitation.
    let (s, _) = app
        .get_json(&format!("/api/v1/meetings/{}", m.id), None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = app
        .get_json(
            &format!("/api/v1/meetings/{}?invite={}", m.id, m.invite),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["title"], "Quarterly review");
    assert!(
        v.get("host_key").is_none(),
        "public info must not leak secrets: {v}"
    );
    let (s, _) = app
        .get_json(&format!("/api/v1/meetings/{}?invite=wrong", m.id), None)
        .await;
    assert_eq!(s, 401);

    // Invitation → guest token; host key → host token; host link token → host token.
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            None,
            Some(json!({"display_name": "Guest Gail", "invite": m.invite})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["role"], "guest");
    assert_eq!(v["ws_path"], "/api/v1/ws");
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            None,
            Some(json!({"display_name": "Hal", "host_key": m.host_key})),
        )
        .await;
    assert_eq!((s, v["role"].clone()), (200, json!("host")));
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            Some(&m.host_token),
            Some(json!({"display_name": "Hal"})),
        )
        .await;
    assert_eq!((s, v["role"].clone()), (200, json!("host")));
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            None,
            Some(json!({"display_name": "Eve", "invite": "nope"})),
        )
        .await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            None,
            Some(json!({"display_name": "", "invite": m.invite})),
        )
        .await;
    assert_error(s, &v, 422, "invalid_display_name");
    app.shutdown().await;
}

#[tokio::test]
async fn list_is_paginated_and_needs_admin_token() {
    let mut app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_meeting(&format!("m{i}")).await;
    }
    let (s, _) = app.get_json("/api/v1/meetings", None).await;
    assert_eq!(s, 401);
    let (s, _) = app.get_json("/api/v1/meetings", Some("wrong")).await;
    assert_eq!(s, 403);
    let (s, page1) = app
        .get_json("/api/v1/meetings?limit=2", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(s, 200, "{page1}");
    let titles = |v: &Value| -> Vec<String> {
        v["meetings"]
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(titles(&page1), ["m4", "m3"]);
    let cursor = str_of(&page1, "next_cursor");
    let (_, page2) = app
        .get_json(
            &format!("/api/v1/meetings?limit=2&cursor={cursor}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(titles(&page2), ["m2", "m1"]);
    let cursor = str_of(&page2, "next_cursor");
    let (_, page3) = app
        .get_json(
            &format!("/api/v1/meetings?limit=2&cursor={cursor}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(titles(&page3), ["m0"]);
    assert!(page3["next_cursor"].is_null());
    let (s, v) = app
        .get_json("/api/v1/meetings?limit=0", Some(ADMIN_TOKEN))
        .await;
    assert_error(s, &v, 400, "invalid_query");
    let (s, v) = app
        .get_json("/api/v1/meetings?cursor=abc", Some(ADMIN_TOKEN))
        .await;
    assert_error(s, &v, 400, "invalid_cursor");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_the_error_shape() {
    let mut app = TestApp::spawn().await;
    let post_raw = |body: String| {
        app.http
            .post(app.url("/api/v1/meetings"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post_raw("{\"title\": ".into()).await.expect("request");
    let s = r.status().as_u16();
    assert_error(s, &r.json().await.expect("json"), 400, "malformed_json");

    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = post_raw(big).await.expect("request");
    let s = r.status().as_u16();
    assert_error(s, &r.json().await.expect("json"), 413, "payload_too_large");

    let r = post_raw(json!({"title": "x", "colour": "red"}).to_string())
        .await
        .expect("request");
    let s = r.status().as_u16();
    assert_error(s, &r.json().await.expect("json"), 422, "invalid_body");

    let r = app
        .http
        .post(app.url("/api/v1/meetings"))
        .body("title=x")
        .send()
        .await
        .expect("request");
    let s = r.status().as_u16();
    assert_error(
        s,
        &r.json().await.expect("json"),
        415,
        "unsupported_media_type",
    );

    for (body, code) in [
        (json!({"title": ""}), "invalid_title"),
        (json!({"title": "t".repeat(201)}), "invalid_title"),
        (
            json!({"title": "ok", "scheduled_start": "tomorrow"}),
            "invalid_scheduled_start",
        ),
        (
            json!({"title": "ok", "scheduled_start": "2030-02-30T10:00:00Z"}),
            "invalid_scheduled_start",
        ),
    ] {
        let (s, v) = app
            .call(Method::POST, "/api/v1/meetings", None, Some(body))
            .await;
        assert_error(s, &v, 422, code);
    }
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/meetings",
            None,
            Some(json!({"title": "Later", "scheduled_start": "2030-01-31T12:00:00+03:00"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["scheduled_start"], "2030-01-31T09:00:00Z");

    let (s, v) = app
        .get_json("/api/v1/meetings/abcdefghijkl?invite=x", None)
        .await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = app
        .get_json("/api/v1/meetings/..%2F..%2Fetc?invite=x", None)
        .await;
    assert_error(s, &v, 404, "not_found");
    // Without any credential, whether a meeting exists is not told: 401, as for a real one.
    let (s, v) = app.get_json("/api/v1/meetings/..%2F..%2Fetc", None).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = app.get_json("/api/v1/nothing-here", None).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = app
        .call(Method::DELETE, "/api/v1/meetings", None, None)
        .await;
    assert_error(s, &v, 405, "method_not_allowed");
    app.shutdown().await;
}

#[tokio::test]
async fn managing_needs_a_host_credential() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Authz").await;
    let guest = app.guest_token(&m, "Gail").await;
    let other = app.create_meeting("Other").await;
    let parts = format!("/api/v1/meetings/{}/participants", m.id);
    let end = format!("/api/v1/meetings/{}/end", m.id);

    let (s, v) = app.get_json(&parts, None).await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let (s, v) = app.get_json(&parts, Some(&guest)).await;
    assert_eq!((s, v["error"]["code"].clone()), (403, json!("forbidden")));
    let (s, _) = app.get_json(&parts, Some(&m.invite)).await;
    assert_eq!(s, 403);
    // Another meeting's host key or host token is worthless here.
    let (s, _) = app.get_json(&parts, Some(&other.host_key)).await;
    assert_eq!(s, 401);
    let (s, v) = app.get_json(&parts, Some(&other.host_token)).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong meeting"),
        "{v}"
    );

    // A guest can never end the meeting.
    let (s, _) = app.call(Method::POST, &end, Some(&guest), None).await;
    assert_eq!(s, 403);
    let (s, _) = app.call(Method::POST, &end, None, None).await;
    assert_eq!(s, 401);
    let (s, v) = app.get_json(&parts, Some(&m.host_key)).await;
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = app.get_json(&parts, Some(&m.host_token)).await;
    assert_eq!((s, v), (200, json!([])));

    // Mute/remove of someone not in the meeting: 404 for the host, 403 for a guest.
    let mute = format!("/api/v1/meetings/{}/participants/pAAAAAAAAAAA/mute", m.id);
    let (s, _) = app
        .call(
            Method::POST,
            &mute,
            Some(&guest),
            Some(json!({"source": "microphone"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = app
        .call(
            Method::POST,
            &mute,
            Some(&m.host_key),
            Some(json!({"source": "microphone"})),
        )
        .await;
    assert_eq!((s, v["error"]["code"].clone()), (404, json!("not_found")));
    let (s, v) = app
        .call(
            Method::POST,
            &mute,
            Some(&m.host_key),
            Some(json!({"source": "nose"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (422, json!("invalid_body"))
    );
    let rm = format!("/api/v1/meetings/{}/participants/pAAAAAAAAAAA", m.id);
    let (s, _) = app.call(Method::DELETE, &rm, Some(&guest), None).await;
    assert_eq!(s, 403);

    let (s, _) = app.call(Method::POST, &end, Some(&m.host_key), None).await;
    assert_eq!(s, 204);
    let (s, v) = app
        .get_json(
            &format!("/api/v1/meetings/{}?invite={}", m.id, m.invite),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["ended_at"].is_string(), "{v}");
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", m.id),
            None,
            Some(json!({"display_name": "Late", "invite": m.invite})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (410, json!("meeting_ended"))
    );
    app.shutdown().await;
}
