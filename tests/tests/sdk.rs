//! SDK embedding, black-box (docs/sdk.md): SDK keys per account with allowed origins, managed
//! like the account's users and only on tariffs with the SDK; join tokens minted by the
//! developer's backend with the account API key; the WebSocket's `Origin` rule and the embed
//! page's `frame-ancestors` for tokens bound to a key; revocation and tariff changes taking
//! effect at once; and, in headless Chromium, the example page on a second origin importing the
//! SDK from Parley and meeting a native webrtc-rs participant (media both ways, events), a
//! foreign origin refused with the documented error, and the iframe embed over postMessage.
//!
//! The browser test needs node, /usr/bin/chromium and tests/e2e/node_modules (scripts/test.sh
//! installs them); screenshots and the browser console go to artifacts/sdk/.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use parley_tests::fixtures::{Fixture, TARIFF};
use parley_tests::media_client::{self, MediaClient};
use parley_tests::{ADMIN_TOKEN, Closed, TestApp, WsClient, str_of};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The developer's local site (allowed) and production site (allowed).
const LOCAL_SITE: &str = "http://127.0.0.1:5123";
const SHOP: &str = "https://shop.example";
/// Parley's public URL in the API tests: the embed page's own origin.
const PARLEY: &str = "https://parley.example";

fn tariff_body(sdk: bool) -> Value {
    json!({"name": if sdk { "Business" } else { "Basic" }, "term_months": 12,
        "price_per_seat": "12000.00",
        "features": {"max_participants": 10, "max_meeting_minutes": 240,
            "recording": {"storage_quota_mb": 1024, "retention_days": 30},
            "sdk_embedding": sdk, "results_to_recipients": true, "screen_share": true}})
}

/// An account on a tariff of its own, with a paid lot: `(account id, API key bearer, lot id)`.
async fn sell(f: &Fixture, tariff: &str, sdk: bool) -> (String, String, String) {
    f.must(
        200,
        Method::PUT,
        &format!("/api/v1/tariffs/{tariff}"),
        Some(ADMIN_TOKEN),
        Some(tariff_body(sdk)),
    )
    .await;
    let v = f
        .must(
            201,
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(
                json!({"name": format!("ООО {tariff}"), "kind": "legal_entity",
                "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                "crm_external_id": format!("sdk-{tariff}"), "address": "Москва"}),
            ),
        )
        .await;
    let (account, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
    let placed = f
        .must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{account}/orders"),
            Some(&key),
            Some(json!({"type": "initial", "tariff": tariff, "seats": 2})),
        )
        .await;
    let paid = f
        .must(
            201,
            Method::POST,
            &format!(
                "/api/v1/accounts/{account}/invoices/{}/payments",
                str_of(&placed["invoice"], "id")
            ),
            Some(ADMIN_TOKEN),
            Some(json!({"method": "bank_transfer", "amount": placed["invoice"]["amount"]})),
        )
        .await;
    (account, key, str_of(&paid, "lot_id"))
}

/// A WebSocket to the server with (or without) a browser's `Origin` header.
async fn socket_from(app: &TestApp, origin: Option<&str>) -> WsClient {
    let mut req = app
        .ws_url
        .as_str()
        .into_client_request()
        .expect("ws request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin header"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connect");
    WsClient { ws }
}

/// Joins with `token` from `origin`: the open socket and `joined`, or the `error` message the
/// server sent before closing (Null if none) and the close.
async fn join_from(
    app: &TestApp,
    origin: Option<&str>,
    token: &str,
) -> Result<(WsClient, Value), (Value, Closed)> {
    let mut c = socket_from(app, origin).await;
    c.send(json!({"type": "join", "token": token})).await;
    let mut error = Value::Null;
    loop {
        match c.next().await {
            Ok(v) if v["type"] == "joined" => return Ok((c, v)),
            Ok(v) if v["type"] == "error" => error = v,
            Ok(_) => {}
            Err(closed) => return Err((error, closed)),
        }
    }
}

async fn joins(app: &TestApp, origin: Option<&str>, token: &str) -> Value {
    match join_from(app, origin, token).await {
        Ok((mut c, joined)) => {
            c.send(json!({"type": "leave"})).await;
            let _ = c.expect_close().await;
            joined
        }
        Err(e) => panic!("join from {origin:?} refused: {e:?}"),
    }
}

async fn refused(app: &TestApp, origin: Option<&str>, token: &str) -> (Value, Closed) {
    match join_from(app, origin, token).await {
        Ok((_, joined)) => panic!("join from {origin:?} admitted: {joined}"),
        Err(e) => e,
    }
}

/// The JWT's payload.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

/// GET a page: status, the CSP's `frame-ancestors` sources, the body.
async fn page(app: &TestApp, path: &str) -> (u16, String, String) {
    let r = app.http.get(app.url(path)).send().await.expect("request");
    let status = r.status().as_u16();
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let ancestors = csp
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("frame-ancestors "))
        .unwrap_or_default()
        .to_owned();
    (status, ancestors, r.text().await.unwrap_or_default())
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_keys_are_the_accounts_own_and_need_a_tariff_with_the_sdk() {
    let f = Fixture::spawn().await;
    let keys = format!("/api/v1/accounts/{}/sdk-keys", f.a.id);
    let body = json!({"name": "Shop", "allowed_origins": [SHOP, LOCAL_SITE]});

    // The account's API key, its admin and the operator create keys; origins are normalised.
    let k = f
        .must(201, Method::POST, &keys, Some(&f.a.key), Some(body.clone()))
        .await;
    let key_id = str_of(&k, "id");
    assert!(key_id.starts_with("sdk_"), "{k}");
    assert_eq!(k["name"], "Shop");
    assert_eq!(k["allowed_origins"], json!([SHOP, LOCAL_SITE]));
    assert!(k["created_at"].is_string(), "{k}");
    let by_admin = f
        .must(
            201,
            Method::POST,
            &keys,
            Some(&f.a.admin.token),
            Some(json!({"name": "Staging",
                "allowed_origins": ["HTTPS://Shop.Example:443/", "https://shop.example"]})),
        )
        .await;
    assert_eq!(by_admin["allowed_origins"], json!([SHOP]));
    f.must(
        201,
        Method::POST,
        &keys,
        Some(ADMIN_TOKEN),
        Some(body.clone()),
    )
    .await;

    // Nobody else: a member 403, another account's admin or key 404, nobody 401.
    let (s, v) = f
        .call(
            Method::POST,
            &keys,
            Some(&f.a.member.token),
            Some(body.clone()),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    for other in [&f.b.admin.token, &f.b.key] {
        let (s, v) = f
            .call(Method::POST, &keys, Some(other), Some(body.clone()))
            .await;
        assert_eq!(s, 404, "{v}");
        let (s, _) = f.call(Method::GET, &keys, Some(other), None).await;
        assert_eq!(s, 404);
    }
    let (s, _) = f.call(Method::POST, &keys, None, Some(body.clone())).await;
    assert_eq!(s, 401);

    // Origins: scheme://host[:port] only, https except on loopback, no wildcards.
    for bad in [
        json!(["https://shop.example/checkout"]),
        json!(["https://*.example.com"]),
        json!(["*"]),
        json!(["http://shop.example"]),
        json!(["ftp://shop.example"]),
        json!(["shop.example"]),
        json!([]),
    ] {
        let (s, v) = f
            .call(
                Method::POST,
                &keys,
                Some(&f.a.key),
                Some(json!({"name": "Bad", "allowed_origins": bad})),
            )
            .await;
        assert_eq!((s, code(&v)), (422, "invalid_origin"), "{bad}: {v}");
    }
    let (s, v) = f
        .call(
            Method::POST,
            &keys,
            Some(&f.a.key),
            Some(json!({"name": " ", "allowed_origins": [SHOP]})),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_name"), "{v}");

    // Listing: the account's live keys; revoking: only by the account, once.
    let list = f.must(200, Method::GET, &keys, Some(&f.a.key), None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    let b_list = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/sdk-keys", f.b.id),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(b_list, json!([]));
    let one = format!("{keys}/{key_id}");
    let (s, _) = f.call(Method::DELETE, &one, Some(&f.b.key), None).await;
    assert_eq!(s, 404, "another account cannot revoke it");
    let (s, _) = f
        .call(Method::DELETE, &one, Some(&f.a.member.token), None)
        .await;
    assert_eq!(s, 403);
    f.must(204, Method::DELETE, &one, Some(&f.a.admin.token), None)
        .await;
    let (s, v) = f.call(Method::DELETE, &one, Some(&f.a.key), None).await;
    assert_eq!((s, code(&v)), (404, "sdk_key_not_found"), "{v}");
    let list = f.must(200, Method::GET, &keys, Some(&f.a.key), None).await;
    assert!(
        list.as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|k| k["id"] != key_id.as_str())),
        "{list}"
    );
    let audit = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/audit", f.a.id),
            Some(&f.a.key),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"sdk_key.create") && actions.contains(&"sdk_key.revoke"),
        "{actions:?}"
    );

    // A tariff without the SDK: no keys, with a clear reason.
    let (basic, basic_key, _) = sell(&f, "basic-12", false).await;
    let (s, v) = f
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{basic}/sdk-keys"),
            Some(&basic_key),
            Some(body),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "sdk_not_in_tariff"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SDK")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tokens_work_only_from_the_keys_origins_while_key_and_tariff_allow() {
    let f = Fixture::spawn_with(|cfg| cfg.public_url = PARLEY.into()).await;
    let keys = format!("/api/v1/accounts/{}/sdk-keys", f.a.id);
    let key = f
        .must(
            201,
            Method::POST,
            &keys,
            Some(&f.a.key),
            Some(json!({"name": "Shop", "allowed_origins": [LOCAL_SITE, SHOP]})),
        )
        .await;
    let key_id = str_of(&key, "id");
    let b_key = f
        .must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/sdk-keys", f.b.id),
            Some(&f.b.key),
            Some(json!({"name": "B", "allowed_origins": [SHOP]})),
        )
        .await;
    let meeting = &f.a.meeting.id;
    let mint = format!("/api/v1/meetings/{meeting}/tokens");

    // The developer's backend mints with the account API key.
    let t = f
        .must(
            200,
            Method::POST,
            &mint,
            Some(&f.a.key),
            Some(json!({"display_name": "Customer", "sdk_key_id": key_id,
                "identity": "customer-42"})),
        )
        .await;
    let token = str_of(&t, "token");
    assert_eq!(t["role"], "guest");
    assert_eq!(t["sdk_key_id"], key_id.as_str());
    assert_eq!(t["ws_path"], "/api/v1/ws");
    assert_eq!(t["meeting"]["id"], meeting.as_str());
    assert_eq!(
        t["embed_url"],
        format!("{PARLEY}/embed/{meeting}?token={token}")
    );
    let c = claims(&token);
    assert_eq!(
        (c["sdk"].as_str(), c["sub"].as_str(), c["name"].as_str()),
        (
            Some(key_id.as_str()),
            Some("ext-customer-42"),
            Some("Customer")
        )
    );
    let host = f
        .must(
            200,
            Method::POST,
            &mint,
            Some(&f.a.admin.token),
            Some(json!({"display_name": "Expert", "role": "host"})),
        )
        .await;
    assert_eq!(host["role"], "host");
    assert!(host["embed_url"].is_null() && claims(&str_of(&host, "token"))["sdk"].is_null());

    // Who may mint, and with which key.
    let guest = json!({"display_name": "X", "sdk_key_id": key_id});
    let (s, _) = f.call(Method::POST, &mint, None, Some(guest.clone())).await;
    assert_eq!(s, 401);
    let (s, _) = f
        .call(
            Method::POST,
            &mint,
            Some(&f.a.member.token),
            Some(guest.clone()),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = f
        .call(Method::POST, &mint, Some(&f.b.key), Some(guest.clone()))
        .await;
    assert_eq!(s, 404, "another account's meeting is not there");
    let (s, v) = f
        .call(
            Method::POST,
            &mint,
            Some(&f.a.key),
            Some(json!({"display_name": "X", "sdk_key_id": str_of(&b_key, "id")})),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "sdk_key_not_found"), "{v}");
    let (s, v) = f
        .call(
            Method::POST,
            &mint,
            Some(&f.a.key),
            Some(json!({"display_name": "X", "identity": "has spaces"})),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_identity"), "{v}");

    // The WebSocket: the key's origins and Parley's own (the embed page) only.
    let app = &f.app;
    let joined = joins(app, Some(LOCAL_SITE), &token).await;
    assert_eq!(joined["you"]["display_name"], "Customer");
    joins(app, Some(SHOP), &token).await;
    joins(app, Some(PARLEY), &token).await;
    let host_joined = joins(app, None, &str_of(&host, "token")).await;
    assert_eq!(
        host_joined["you"]["role"], "host",
        "a plain token needs no Origin"
    );
    for origin in [
        Some("http://127.0.0.1:5124"),
        Some("https://evil.example"),
        None,
    ] {
        let (error, closed) = refused(app, origin, &token).await;
        assert_eq!(error["code"], "origin_not_allowed", "{origin:?}: {error}");
        assert_eq!(
            closed,
            Closed {
                code: 1008,
                reason: "origin not allowed".into()
            }
        );
    }

    // The embed page: framable by exactly the key's origins.
    let (s, ancestors, body) = page(app, &format!("/embed/{meeting}?token={token}")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ancestors, format!("{LOCAL_SITE} {SHOP}"));
    assert!(
        body.contains(&format!(
            "name=\"parley-allowed-origins\" content=\"{LOCAL_SITE} {SHOP}\""
        )),
        "{body}"
    );
    let (s, ancestors, body) = page(
        app,
        &format!("/embed/{meeting}?token={}", str_of(&host, "token")),
    )
    .await;
    assert_eq!((s, ancestors.as_str()), (403, "'none'"));
    assert!(body.contains("sdk_key_required"), "{body}");
    let (s, ancestors, _) = page(app, &format!("/embed/{meeting}?token=garbage")).await;
    assert_eq!((s, ancestors.as_str()), (401, "'none'"));
    let (s, _, _) = page(app, &format!("/embed/{meeting}")).await;
    assert_eq!(s, 400);

    // The SDK's modules can be imported by any site.
    for module in ["/sdk/v1/parley.js", "/sdk/v1/view.js", "/app/signaling.js"] {
        let r = app
            .http
            .get(app.url(module))
            .header("origin", LOCAL_SITE)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{module}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{module}");
        assert!(
            h["content-type"]
                .to_str()
                .is_ok_and(|t| t.contains("javascript")),
            "{module}: {:?}",
            h["content-type"]
        );
    }

    // Someone is in the meeting through the SDK when the key is revoked.
    let (mut live, _) = match join_from(app, Some(LOCAL_SITE), &token).await {
        Ok(joined) => joined,
        Err(e) => panic!("SDK join refused: {e:?}"),
    };

    // Revoked: refused at once, everywhere.
    f.must(
        204,
        Method::DELETE,
        &format!("{keys}/{key_id}"),
        Some(&f.a.key),
        None,
    )
    .await;
    let (error, closed) = refused(app, Some(LOCAL_SITE), &token).await;
    assert_eq!(error["code"], "sdk_key_revoked", "{error}");
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "invalid token: sdk key revoked")
    );
    // ...and the one already in is put out (within the hub's 5 s check), told why.
    let mut error = Value::Null;
    let closed = loop {
        match live.next().await {
            Ok(v) if v["type"] == "error" => error = v,
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert_eq!(error["code"], "sdk_key_revoked", "{error}");
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "invalid token: sdk key revoked")
    );
    let (s, ancestors, body) = page(app, &format!("/embed/{meeting}?token={token}")).await;
    assert_eq!((s, ancestors.as_str()), (403, "'none'"));
    assert!(body.contains("sdk_key_revoked"), "{body}");
    let (s, v) = f
        .call(Method::POST, &mint, Some(&f.a.key), Some(guest))
        .await;
    assert_eq!((s, code(&v)), (404, "sdk_key_not_found"), "{v}");

    // The operator takes the SDK out of the account's tariff: tokens stop working at once.
    let key2 = f
        .must(
            201,
            Method::POST,
            &keys,
            Some(&f.a.key),
            Some(json!({"name": "Shop 2", "allowed_origins": [LOCAL_SITE]})),
        )
        .await;
    let key2 = str_of(&key2, "id");
    let t2 = f
        .must(
            200,
            Method::POST,
            &mint,
            Some(&f.a.key),
            Some(json!({"display_name": "Customer", "sdk_key_id": key2})),
        )
        .await;
    let token2 = str_of(&t2, "token");
    joins(app, Some(LOCAL_SITE), &token2).await;
    f.must(
        200,
        Method::PUT,
        &format!("/api/v1/tariffs/{TARIFF}"),
        Some(ADMIN_TOKEN),
        Some(tariff_body(false)),
    )
    .await;
    let (error, closed) = refused(app, Some(LOCAL_SITE), &token2).await;
    assert_eq!(error["code"], "sdk_not_in_tariff", "{error}");
    assert_eq!(closed.code, 4006);
    assert!(
        closed.reason.starts_with("sdk_not_in_tariff: "),
        "{closed:?}"
    );
    let (s, ancestors, body) = page(app, &format!("/embed/{meeting}?token={token2}")).await;
    assert_eq!(
        (s, ancestors.as_str()),
        (403, LOCAL_SITE),
        "the developer sees the reason inside the frame"
    );
    assert!(body.contains("sdk_not_in_tariff"), "{body}");
    let (s, v) = f
        .call(
            Method::POST,
            &mint,
            Some(&f.a.key),
            Some(json!({"display_name": "X", "sdk_key_id": key2})),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "sdk_not_in_tariff"), "{v}");
    let (s, v) = f
        .call(
            Method::POST,
            &keys,
            Some(&f.a.key),
            Some(json!({"name": "More", "allowed_origins": [SHOP]})),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "sdk_not_in_tariff"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// In the browser

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The browser tools, or a failure that says how to get them (never a silent pass).
fn require_browser_tools(root: &Path) {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = root.join("tests/e2e/node_modules/playwright-core").exists();
    assert!(
        node && Path::new(&chromium).exists() && playwright,
        "the SDK browser test needs node, {chromium} and tests/e2e/node_modules \
         (playwright-core): run scripts/test.sh, which installs them"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The native participant: publishes synthetic VP8 and Opus, answers subscriber offers, counts
/// what it receives. Returns its id and media client; the socket task runs until aborted.
async fn native_participant(
    app: &TestApp,
    token: &str,
) -> (String, Arc<MediaClient>, tokio::task::JoinHandle<()>) {
    let (mut ws, joined) = app.join(token).await;
    let id = str_of(&joined, "participant_id");
    let media = Arc::new(MediaClient::new(true).await.expect("media client"));
    let (sdp, tracks) = media.publisher_offer().await.expect("offer");
    let tracks: Vec<Value> = tracks
        .into_iter()
        .map(|(mid, source)| json!({"mid": mid, "source": source}))
        .collect();
    ws.send(json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks}))
        .await;
    let m = media.clone();
    let task = tokio::spawn(async move {
        while let Ok(msg) = ws.next().await {
            let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
            match msg["type"].as_str() {
                Some("publish_answer") => {
                    m.publisher_answer(sdp).await.expect("publisher answer");
                    m.start_media().await.expect("media starts");
                }
                Some("subscribe_offer") => {
                    let answer = m.subscriber_offer(sdp).await.expect("subscriber offer");
                    ws.send(json!({"type": "subscribe_answer", "sdp": answer}))
                        .await;
                }
                _ => {}
            }
        }
    });
    (id, media, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_on_an_allowed_origin_meets_a_native_participant() {
    let root = root();
    require_browser_tools(&root);
    // Parley on http://localhost:<port>; the developer's site on http://127.0.0.1:<other ports>:
    // different origins, as in production.
    let port = free_port();
    let parley = format!("http://localhost:{port}");
    let public = parley.clone();
    let f = Fixture::spawn_with(move |cfg| {
        cfg.http_addr = ([127, 0, 0, 1], port).into();
        cfg.public_url = public;
    })
    .await;
    let app = &f.app;
    let (allowed_port, foreign_port) = (free_port(), free_port());
    let key = f
        .must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/sdk-keys", f.a.id),
            Some(&f.a.key),
            Some(json!({"name": "Local shop",
                "allowed_origins": [format!("http://127.0.0.1:{allowed_port}")]})),
        )
        .await;
    let key_id = str_of(&key, "id");

    // The developer's backend: a meeting hosted on a seat, tokens for the page and the expert.
    let lot = &f.a.lot;
    f.must(
        201,
        Method::POST,
        &format!("/api/v1/accounts/{}/lots/{lot}/seats", f.a.id),
        Some(&f.a.key),
        Some(json!({"user_id": "expert-1"})),
    )
    .await;
    let m = f
        .must(
            201,
            Method::POST,
            "/api/v1/meetings",
            Some(&f.a.key),
            Some(json!({"title": "Consultation", "host_user_id": "expert-1"})),
        )
        .await;
    let meeting = str_of(&m, "id");
    let mint = format!("/api/v1/meetings/{meeting}/tokens");
    let mut tokens = Vec::new();
    for body in [
        json!({"display_name": "Customer", "sdk_key_id": key_id}),
        json!({"display_name": "Elsewhere", "sdk_key_id": key_id}),
        json!({"display_name": "Framed", "sdk_key_id": key_id}),
        json!({"display_name": "Expert", "role": "host"}),
    ] {
        tokens.push(
            f.must(200, Method::POST, &mint, Some(&f.a.key), Some(body))
                .await,
        );
    }
    let [page_token, foreign_token, embed_token, expert_token] = &tokens[..] else {
        unreachable!("four tokens minted")
    };

    let artifacts = root.join("artifacts").join("sdk");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let args = json!({"parley": parley, "meetingId": meeting, "allowedPort": allowed_port,
        "foreignPort": foreign_port, "token": str_of(page_token, "token"),
        "foreignToken": str_of(foreign_token, "token"),
        "embedUrl": str_of(embed_token, "embed_url")});
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/e2e/drivers/sdk.mjs"))
        .arg(args.to_string())
        .current_dir(&root)
        .env("PARLEY_ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();

    let steps = async {
        let mut native = None;
        while let Some(line) = lines.next_line().await.expect("driver output") {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Ok(mut s) = seen.lock() {
                s.push(v.clone());
            }
            match v["step"].as_str() {
                Some("joined") => {
                    // The page is in; the expert arrives after it, so it sees participant_joined.
                    native = Some(native_participant(app, &str_of(expert_token, "token")).await);
                }
                Some("media") => {
                    let page_pid = seen
                        .lock()
                        .ok()
                        .and_then(|s| s.first().map(|j| str_of(j, "participantId")))
                        .expect("joined step first");
                    let (_, media, _) = native.as_ref().expect("native participant");
                    let flows = media_client::wait_for(Duration::from_secs(30), || {
                        let v = media.received(&page_pid, "video");
                        let a = media.received(&page_pid, "audio");
                        v.packets > 30 && a.packets > 20 && v.keyframes > 0
                    })
                    .await;
                    assert!(
                        flows,
                        "the native participant receives the page's media: video {:?}, audio {:?}",
                        media.received(&page_pid, "video"),
                        media.received(&page_pid, "audio")
                    );
                    // The host records a while: the page is told when it starts and stops.
                    let recording = format!("/api/v1/meetings/{meeting}/recording");
                    let host_key = str_of(&m, "host_key");
                    f.must(201, Method::POST, &recording, Some(&host_key), None)
                        .await;
                    let (s, v) = f
                        .call(Method::DELETE, &recording, Some(&host_key), None)
                        .await;
                    assert!((200..300).contains(&s), "stop recording: {s} {v}");
                    stdin.write_all(b"next\n").await.expect("driver stdin");
                    stdin.flush().await.expect("driver stdin");
                }
                _ if v.get("ok").is_some() => break,
                _ => {}
            }
        }
        native
    };
    let native = tokio::time::timeout(Duration::from_secs(300), steps)
        .await
        .expect("the browser driver did not finish in time");
    let status = child.wait().await.expect("driver exit");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let step = |name: &str| {
        seen.iter()
            .find(|v| v["step"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let last = seen.last().cloned().unwrap_or(Value::Null);
    assert!(
        status.success() && last["ok"] == true,
        "the browser half failed ({status}): {}\n(steps: {seen:?}; screenshots and console in {})",
        last["error"],
        artifacts.display()
    );
    if let Some((_, media, task)) = native {
        media.close().await;
        task.abort();
    }

    // The page joined, saw the native participant arrive and received its media, growing.
    let native_pid = step("media")["nativeId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!native_pid.is_empty(), "{seen:?}");
    let media = step("media");
    assert_eq!(
        media["participantJoined"]["participant"]["displayName"],
        "Expert"
    );
    for kind in ["video", "audio"] {
        let (first, later) = (
            media[kind]["first"].as_u64().unwrap_or(0),
            media[kind]["later"].as_u64().unwrap_or(0),
        );
        assert!(first > 0 && later > first, "{kind}: {media}");
    }
    assert!(
        media["tiles"].as_u64().unwrap_or(0) >= 2,
        "own and remote tiles: {media}"
    );

    let recording = step("recording");
    assert!(
        recording["started"]["recordingId"].is_string(),
        "recording_started: {recording}"
    );
    assert_eq!(recording["stopped"]["reason"], "stopped", "{recording}");

    // A site not in the key's list: refused with the documented error.
    let foreign = step("foreign");
    assert_eq!(foreign["error"]["code"], "origin_not_allowed", "{foreign}");
    assert_eq!(foreign["error"]["closeCode"], 1008);
    assert_eq!(foreign["error"]["closeReason"], "origin not allowed");
    assert_eq!(foreign["disconnected"]["code"], 1008);
    assert!(
        foreign["events"]
            .as_array()
            .is_some_and(|e| !e.contains(&json!("joined"))),
        "{foreign}"
    );
    assert!(
        foreign["status"]
            .as_str()
            .is_some_and(|s| s.contains("origin_not_allowed")),
        "the page shows it: {foreign}"
    );

    // The iframe embed: events over postMessage, commands answered.
    let embed = step("embed");
    assert!(
        embed["joined"]["participantId"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{embed}"
    );
    assert!(embed["framesDecoded"].as_u64().unwrap_or(0) > 0, "{embed}");
    assert_eq!(embed["mute"], "ok", "{embed}");
    assert_eq!(embed["seenMuted"], true, "{embed}");
    drop(f);
}
