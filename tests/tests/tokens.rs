//! Join tokens that must be refused, and the reasons given.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parley_tests::{JWT_SECRET, TestApp};
use serde_json::{Value, json};

fn claims(meeting: &str, exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": "guest-x", "meeting": meeting, "name": "Mallory", "role": "host",
        "grants": {"publish": true, "subscribe": true, "screen_share": true, "record": true, "admin": true},
        "exp": now + exp_offset, "iat": now, "jti": "j1"
    })
}

fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

async fn refused(app: &TestApp, join: Value) -> (u16, String) {
    let mut c = app.connect().await;
    c.send(join).await;
    let closed = c.expect_close().await;
    (closed.code, closed.reason)
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Tokens").await;
    let other = app.create_meeting("Other").await;

    // A correctly signed token is accepted (the control case).
    let good = sign(Algorithm::HS256, JWT_SECRET, &claims(&m.id, 60));
    let (_, j) = app.join(&good).await;
    assert_eq!(j["you"]["display_name"], "Mallory");

    let expired = sign(Algorithm::HS256, JWT_SECRET, &claims(&m.id, -5));
    let forged = sign(
        Algorithm::HS256,
        "not-the-server-secret",
        &claims(&m.id, 60),
    );
    let hs512 = sign(Algorithm::HS512, JWT_SECRET, &claims(&m.id, 60));
    let payload = URL_SAFE_NO_PAD.encode(claims(&m.id, 60).to_string());
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    // Signature stripped from a valid token.
    let stripped = good
        .rsplit_once('.')
        .map(|(h, _)| format!("{h}."))
        .expect("jwt");
    let unknown_meeting = sign(Algorithm::HS256, JWT_SECRET, &claims("zzzzzzzzzzzz", 60));

    let cases = [
        (
            json!({"type": "join", "token": expired}),
            "invalid token: expired",
        ),
        (
            json!({"type": "join", "token": forged}),
            "invalid token: bad signature",
        ),
        (
            json!({"type": "join", "token": hs512}),
            "invalid token: algorithm not allowed",
        ),
        (
            json!({"type": "join", "token": none}),
            "invalid token: algorithm not allowed",
        ),
        (
            json!({"type": "join", "token": stripped}),
            "invalid token: bad signature",
        ),
        (
            json!({"type": "join", "token": "not.a.jwt"}),
            "invalid token: malformed",
        ),
        (
            json!({"type": "join", "token": good, "meeting_id": other.id}),
            "invalid token: wrong meeting",
        ),
        (
            json!({"type": "join", "token": unknown_meeting}),
            "invalid token: unknown meeting",
        ),
    ];
    for (join, want) in cases {
        assert_eq!(
            refused(&app, join.clone()).await,
            (1008, want.to_owned()),
            "{join}"
        );
    }
    assert!(
        app.metric("parley_ws_protocol_errors_total{kind=\"invalid_token\"}")
            .await
            >= 7.0
    );

    // The REST API refuses the same tokens.
    let (s, v) = app
        .get_json(
            &format!("/api/v1/meetings/{}/participants", m.id),
            Some(&expired),
        )
        .await;
    assert_eq!(s, 401);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{v}"
    );
    let (s, _) = app
        .get_json(
            &format!("/api/v1/meetings/{}/participants", m.id),
            Some(&none),
        )
        .await;
    assert_eq!(s, 401);
    app.shutdown().await;
}

#[tokio::test]
async fn tokens_survive_a_restart_with_a_generated_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || {
        let mut c = parley_tests::test_config(&dir);
        c.jwt_secret = None;
        c
    };
    let server = parley_signaling::spawn(config()).await.expect("start");
    let base = server.base_url();
    let http = reqwest::Client::new();
    let v: Value = http
        .post(format!("{base}/api/v1/meetings"))
        .json(&json!({"title": "Persistent"}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    let token = v["host_token"].as_str().expect("token").to_owned();
    server.shutdown().await;

    let server = parley_signaling::spawn(config()).await.expect("restart");
    let r = http
        .get(format!(
            "{}/api/v1/meetings/{id}/participants",
            server.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "token from before the restart still valid");
    server.shutdown().await;
}
