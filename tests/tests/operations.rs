//! Health, readiness, metrics, graceful shutdown, the OpenAPI document and the web files.

use parley_tests::{TestApp, metric_value, wait_for};
use serde_json::json;

#[tokio::test]
async fn health_ready_and_metrics() {
    let mut app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);

    let m = app.create_meeting("Metrics").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let (mut guest, _) = app.join(&app.guest_token(&m, "G").await).await;
    host.expect_type("participant_joined").await;
    guest.send_text("nonsense".into()).await;
    guest.expect_type("error").await;

    let text = app.metrics().await;
    assert_eq!(metric_value(&text, "parley_meetings_active"), 1.0, "{text}");
    assert_eq!(metric_value(&text, "parley_participants"), 2.0);
    assert_eq!(metric_value(&text, "parley_ws_connections"), 2.0);
    assert!(metric_value(&text, "parley_meetings_created_total") >= 1.0);
    assert!(metric_value(&text, "parley_ws_messages_in_total") >= 3.0);
    assert!(metric_value(&text, "parley_ws_messages_out_total") >= 3.0);
    assert!(
        metric_value(
            &text,
            "parley_ws_protocol_errors_total{kind=\"malformed_json\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric_value(&text, "parley_join_latency_seconds_count"),
        2.0
    );
    assert_eq!(metric_value(&text, "parley_sfu_participants"), 2.0);
    for series in [
        "parley_sfu_tracks",
        "parley_sfu_packets_in_total",
        "parley_sfu_bytes_out_total",
        "parley_sfu_nacks_received_total",
        "parley_sfu_plis_sent_total",
        "parley_sfu_packets_dropped_total",
        "parley_sfu_unknown_source_datagrams_total",
        "parley_join_media_latency_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "{series} missing"
        );
    }

    guest.send(json!({"type": "leave"})).await;
    guest.expect_close().await;
    host.send(json!({"type": "leave"})).await;
    host.expect_close().await;
    wait_for("meeting inactive", || async {
        (app.metric("parley_meetings_active").await == 0.0).then_some(())
    })
    .await;
    assert_eq!(app.metric("parley_participants").await, 0.0);
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_clients_and_records_sessions() {
    let mut app = TestApp::spawn().await;
    let m = app.create_meeting("Shutdown").await;
    let (mut host, _) = app.join(&m.host_token).await;
    let server = app.server.take().expect("server");
    let addr = server.http_addr();
    let (closed, ()) = tokio::join!(host.expect_close(), server.shutdown());
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server shutting down")
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn openapi_document_is_committed_and_served() {
    let mut app = TestApp::spawn().await;
    let generated = parley_signaling::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    if std::env::var_os("PARLEY_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale; regenerate with `cargo run -- --dump-openapi docs/openapi.json` \
         or PARLEY_UPDATE_OPENAPI=1 cargo test -p parley-tests --test operations"
    );
    let (s, served) = app.get_json("/api/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(served["paths"]["/api/v1/meetings"]["post"].is_object());
    assert!(served["paths"]["/api/v1/meetings/{id}/participants/{pid}/mute"]["post"].is_object());
    app.shutdown().await;
}

#[tokio::test]
async fn web_app_is_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "<h1>landing</h1>").expect("write");
    std::fs::write(dir.path().join("meeting.html"), "<h1>meeting</h1>").expect("write");
    for page in ["sign-in", "forgot-password", "reset-password", "invitation"] {
        std::fs::write(
            dir.path().join(format!("{page}.html")),
            format!("<h1>{page}</h1>"),
        )
        .expect("write");
    }
    std::fs::create_dir(dir.path().join("app")).expect("mkdir");
    std::fs::write(dir.path().join("app/main.js"), "export {};").expect("write");
    let root = dir.path().to_owned();
    let mut app = TestApp::spawn_with(move |c| c.web_root = root).await;

    let r = app.http.get(app.url("/")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.text().await.expect("text"), "<h1>landing</h1>");

    let r = app
        .http
        .get(app.url("/m/abcdefghijkl?invite=x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.text().await.expect("text"), "<h1>meeting</h1>");

    // The account pages at the clean URLs the server mails (`/invitation#token=…`,
    // `/reset-password#token=…`) and links to, with the same headers as the other pages.
    for page in ["sign-in", "forgot-password", "reset-password", "invitation"] {
        let r = app
            .http
            .get(app.url(&format!("/{page}?next=/x")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{page}");
        assert_eq!(
            r.headers()["content-security-policy"],
            csp.as_str(),
            "{page}"
        );
        assert_eq!(r.headers()["cache-control"], "no-store", "{page}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{page}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{page}");
        assert_eq!(r.text().await.expect("text"), format!("<h1>{page}</h1>"));
    }

    for path in ["/app/main.js", "/static/app/main.js"] {
        let r = app.http.get(app.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .contains("javascript")
        );
        assert!(r.headers().contains_key("content-security-policy"));
    }
    let r = app
        .http
        .get(app.url("/../Cargo.toml"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    app.shutdown().await;
}
