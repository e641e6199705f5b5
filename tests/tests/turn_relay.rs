//! A participant whose network lets it reach the SFU only through a TURN relay: Debian's coturn
//! runs on loopback with `use-auth-secret`, Parley is configured with the same secret and hands
//! out credentials in `joined`, and a native client restricted to relayed candidates uses them.
//! Its media reaches the other participant and theirs reaches it, and coturn's log shows the
//! allocation made with the participant's credential.
//!
//! Needs coturn's `turnserver` (scripts/test.sh installs it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parley_signaling::configuration::{Secret, TurnConfig};
use parley_tests::media_client::{MediaClient, Relay};
use parley_tests::{TestApp, WsClient, wait_for};
use serde_json::{Value, json};

const SECRET: &str = "loopback-turn-shared-secret";

struct Coturn {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start() -> Coturn {
        let bin = Path::new("/usr/bin/turnserver");
        assert!(
            bin.exists(),
            "coturn's turnserver is missing: install coturn (scripts/test.sh does)"
        );
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        // Relay ports from a range of this run's own, away from the listening port.
        let base = 20000 + (port % 20000);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("coturn.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(bin)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                &format!("--min-port={base}"),
                &format!("--max-port={}", base + 200),
                "--realm=parley.test",
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
                // The SFU is on loopback here; a real relay is told to reach only media nodes.
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--fingerprint",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start turnserver");
        Coturn {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Joins `token` over the WebSocket and publishes camera and microphone through `media` made
/// by `make` from the `joined` message; negotiation runs on in the background.
async fn enter<F, Fut>(app: &TestApp, token: String, make: F) -> (Value, Arc<MediaClient>)
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = MediaClient>,
{
    let mut ws = WsClient::connect(&app.ws_url).await;
    ws.send(json!({"type": "join", "token": token})).await;
    let joined = ws.expect_type("joined").await;
    let media = Arc::new(make(joined.clone()).await);
    let (sdp, tracks) = media.publisher_offer().await.expect("offer");
    let tracks: Vec<Value> = tracks
        .into_iter()
        .map(|(mid, source)| json!({"mid": mid, "source": source}))
        .collect();
    ws.send(json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks}))
        .await;
    let m = media.clone();
    tokio::spawn(async move {
        while let Ok(msg) = ws.next().await {
            match msg["type"].as_str() {
                Some("publish_answer") => {
                    let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                    m.publisher_answer(sdp).await.expect("publisher answer");
                    m.start_media().await.expect("media starts");
                }
                Some("subscribe_offer") => {
                    let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                    let answer = m.subscriber_offer(sdp).await.expect("subscriber offer");
                    ws.send(json!({"type": "subscribe_answer", "sdp": answer}))
                        .await;
                }
                _ => {}
            }
        }
    });
    (joined, media)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_reaches_the_meeting_only_through_the_turn_relay() {
    let coturn = Coturn::start();
    let url = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let turn = TurnConfig {
        urls: vec![url.clone()],
        secret: Secret::new(SECRET),
        ttl: Duration::from_secs(600),
    };
    let app = TestApp::spawn_with(move |c| c.turn = Some(turn)).await;
    let m = app.create_meeting("Behind a firewall").await;
    let alice_token = app.host_token(&m, "Alice").await;
    let bob_token = app.guest_token(&m, "Bob").await;

    // Alice can only use relayed candidates, with the credentials her `joined` carried.
    let (alice, alice_media) = enter(&app, alice_token, |joined| async move {
        let server = &joined["ice_servers"][0];
        let relay = Relay {
            urls: server["urls"]
                .as_array()
                .map(|u| {
                    u.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            username: server["username"].as_str().unwrap_or_default().to_owned(),
            credential: server["credential"].as_str().unwrap_or_default().to_owned(),
        };
        MediaClient::relayed(true, &relay)
            .await
            .expect("relayed client")
    })
    .await;
    let alice_id = alice["participant_id"].as_str().expect("id").to_owned();
    let server = &alice["ice_servers"][0];
    assert_eq!(server["urls"], json!([url]), "{alice}");
    let username = server["username"].as_str().expect("username");
    let (expiry, who) = username.split_once(':').expect("expiry:participant");
    assert_eq!(who, alice_id, "the credential names the participant");
    let expiry: i64 = expiry.parse().expect("unix expiry");
    let left = expiry - Utc::now().timestamp();
    assert!(
        (590..=600).contains(&left),
        "expires in {left} s, configured 600"
    );

    let (bob, bob_media) = enter(&app, bob_token, |_| async {
        MediaClient::new(true).await.expect("client")
    })
    .await;
    let bob_id = bob["participant_id"].as_str().expect("id").to_owned();

    // Media both ways: Alice's through the relay to Bob, Bob's through the relay to Alice.
    let deadline = tokio::time::Instant::now() + parley_tests::DEADLINE;
    loop {
        let (a, b) = (
            bob_media.received(&alice_id, "video").packets,
            alice_media.received(&bob_id, "video").packets,
        );
        if a > 30 && b > 30 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // Which way failed and how far each side got, for a failure seen once in CI.
            let metrics = app.metrics().await;
            let sfu: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("parley_sfu_") && !l.starts_with('#'))
                .collect();
            panic!(
                "no video both ways with Alice relayed: Bob got {a} packets from Alice, Alice {b} \
                 from Bob; connected peer connections: Alice {}, Bob {}; SFU: {sfu:?}",
                alice_media.connected_count(),
                bob_media.connected_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // coturn authenticated Alice's allocation with the username Parley made.
    wait_for("coturn's log of Alice's allocation", || {
        let found = coturn.log().contains(&alice_id);
        async move { found.then_some(()) }
    })
    .await;
}
