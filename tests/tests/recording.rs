//! Recording of meetings, black-box: native WebRTC participants publish real media through the
//! SFU while a host starts and stops the recording over the WebSocket or the REST API; everyone
//! (late joiners too) is told; the files appear in the API with their metadata and download
//! through signed links for who may see them; the tariff's feature, storage quota and retention
//! are enforced; a `recording.ready` webhook goes out and the summary links the recording.
//!
//! Time moves by the server's recordings clock (a test hook), never by sleeping; everything else
//! waits for its condition with a deadline.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender, UsersClock};
use parley_tests::crm_standins::WebhookReceiver;
use parley_tests::media_client::MediaClient;
use parley_tests::{ADMIN_TOKEN, Meeting, TestApp, WsClient, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const PASSWORD: &str = "correct horse battery";
const DAY: Duration = Duration::from_secs(24 * 3600);

struct World {
    app: TestApp,
    mail: MemoryEmailSender,
    /// The recordings' clock (retention, link expiry).
    clock: UsersClock,
}

struct Account {
    id: String,
    key: String,
    lot: String,
}

struct User {
    id: String,
    token: String,
}

impl World {
    /// A server with three tariffs: `rec-12` (recording, 1024 MB, 30 days), `tiny-12`
    /// (recording with a 30 MB quota, where a test "MB" is 1000 bytes) and `basic-12` (no
    /// recording). No composite: the synthetic video is not decodable by ffmpeg.
    async fn spawn() -> World {
        Self::spawn_with(|_| {}).await
    }

    async fn spawn_with(
        tweak: impl FnOnce(&mut parley_signaling::Config) + Send + 'static,
    ) -> World {
        let mail = MemoryEmailSender::new();
        let clock = UsersClock::new();
        let (m, c) = (mail.clone(), clock.clone());
        let app = TestApp::spawn_with(move |cfg| {
            cfg.licensing_clock = Some(LicensingClock::new(
                NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
            ));
            cfg.email_sender = Some(EmailSenderHook(Arc::new(m)));
            cfg.recordings_clock = Some(c);
            cfg.recording_quota_check = Duration::from_millis(100);
            cfg.recording_retention_check = Duration::from_millis(100);
            cfg.storage_megabyte = 1000;
            cfg.ffmpeg = Some(PathBuf::new());
            cfg.outbox_base_delay = Duration::from_millis(10);
            cfg.outbox_max_delay = Duration::from_millis(50);
            tweak(cfg);
        })
        .await;
        let w = World { app, mail, clock };
        for (code, recording) in [
            (
                "rec-12",
                json!({"storage_quota_mb": 1_000_000, "retention_days": 30}),
            ),
            (
                "tiny-12",
                json!({"storage_quota_mb": 30, "retention_days": 30}),
            ),
            ("basic-12", Value::Null),
        ] {
            let (s, v) = w
                .req(
                    Method::PUT,
                    &format!("/api/v1/tariffs/{code}"),
                    Some(ADMIN_TOKEN),
                    Some(json!({
                        "name": code, "term_months": 12, "price_per_seat": "12000.00",
                        "features": {"max_participants": 10, "max_meeting_minutes": 240,
                            "recording": recording, "sdk_embedding": false,
                            "results_to_recipients": false, "screen_share": true}
                    })),
                )
                .await;
            assert_eq!(s, 200, "tariff {code}: {v}");
        }
        w
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.app.call(method, path, bearer, body).await
    }

    /// Links the server hands out start with its configured public URL; tests reach it at its
    /// random port.
    fn public_url(&self) -> String {
        self.app
            .server
            .as_ref()
            .expect("running")
            .state()
            .config
            .public_url
            .clone()
    }

    fn recordings_dir(&self) -> PathBuf {
        self.app
            .server
            .as_ref()
            .expect("running")
            .state()
            .config
            .recordings_dir()
    }

    /// An account on `tariff` with a paid lot of 3 seats, `rep-1` holding one.
    async fn account(&self, crm_id: &str, tariff: &str) -> Account {
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": format!("ООО Запись {crm_id}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                    "crm_external_id": crm_id, "address": "Москва"
                })),
            )
            .await;
        assert_eq!(s, 201, "account: {v}");
        let (id, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
        let r = self
            .app
            .http
            .post(self.app.url(&format!("/api/v1/accounts/{id}/orders")))
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("order-{crm_id}"))
            .json(&json!({"type": "initial", "tariff": tariff, "seats": 3}))
            .send()
            .await
            .expect("order");
        assert_eq!(r.status(), 201);
        let order: Value = r.json().await.expect("json");
        let inv = &order["invoice"];
        let r = self
            .app
            .http
            .post(self.app.url(&format!(
                "/api/v1/accounts/{id}/invoices/{}/payments",
                str_of(inv, "id")
            )))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", format!("pay-{crm_id}"))
            .json(&json!({"method": "bank_transfer", "amount": inv["amount"]}))
            .send()
            .await
            .expect("payment");
        assert_eq!(r.status(), 201);
        let p: Value = r.json().await.expect("json");
        let acc = Account {
            id,
            key,
            lot: str_of(&p, "lot_id"),
        };
        self.seat(&acc, "rep-1").await;
        acc
    }

    async fn seat(&self, acc: &Account, user: &str) {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/lots/{}/seats", acc.id, acc.lot),
                Some(&acc.key),
                Some(json!({"user_id": user})),
            )
            .await;
        assert!(s == 201 || s == 200, "seat: {s} {v}");
    }

    /// Invites `email` with `role` by the account's key and accepts: a signed-in user.
    async fn user(&self, acc: &Account, email: &str, role: &str) -> User {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "invite {email}: {v}");
        let id = str_of(&v["user"], "id");
        let mail = self.mail.clone();
        let token = wait_for("the invitation mail", || {
            let mail = mail.clone();
            async move {
                mail.sent_to(email)
                    .last()
                    .and_then(|m| token_in(&m.text, "inv_"))
            }
        })
        .await;
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 200, "accept: {v}");
        User {
            id,
            token: str_of(&v, "token"),
        }
    }

    /// A meeting of the account hosted on `rep-1`'s seat.
    async fn meeting(&self, acc: &Account) -> Meeting {
        self.meeting_by(&acc.key, json!({"title": "Demo", "host_user_id": "rep-1"}))
            .await
    }

    async fn meeting_by(&self, bearer: &str, body: Value) -> Meeting {
        let (s, m) = self
            .req(Method::POST, "/api/v1/meetings", Some(bearer), Some(body))
            .await;
        assert_eq!(s, 201, "meeting: {m}");
        Meeting {
            id: str_of(&m, "id"),
            host_key: str_of(&m, "host_key"),
            host_token: str_of(&m, "host_token"),
            invite: str_of(&m, "invite"),
            raw: m,
        }
    }

    async fn recording(&self, rid: &str, bearer: &str) -> (u16, Value) {
        self.req(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(bearer),
            None,
        )
        .await
    }

    /// Waits until the recording is `ready` and returns it.
    async fn ready(&self, rid: &str, bearer: &str) -> Value {
        let v = self.finished(rid, bearer).await;
        assert_eq!(v["status"], "ready", "{v}");
        v
    }

    /// Waits until the recording is `ready` or `failed` and returns it.
    async fn finished(&self, rid: &str, bearer: &str) -> Value {
        wait_for("the recording to be processed", || async {
            let (s, v) = self.recording(rid, bearer).await;
            assert_eq!(s, 200, "{v}");
            (v["status"] == "ready" || v["status"] == "failed").then_some(v)
        })
        .await
    }

    /// Waits until the account's recordings take more than `bytes` (media is flowing into them).
    async fn stored_over(&self, acc: &Account, bytes: u64) {
        wait_for("recorded media", || async {
            let (s, v) = self
                .req(
                    Method::GET,
                    &format!("/api/v1/accounts/{}/recordings", acc.id),
                    Some(&acc.key),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            (v["storage"]["used_bytes"].as_u64().unwrap_or(0) > bytes).then_some(())
        })
        .await;
    }
}

fn token_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(&format!("#token={prefix}"))? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == prefix.len() + 43).then_some(token)
}

fn assert_code(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(body["error"]["code"], want_code, "code; body {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body {body}"
    );
}

/// One participant on a real WebSocket, optionally publishing media from a native WebRTC client;
/// everything its socket receives is kept.
struct Participant {
    id: String,
    joined: Value,
    seen: Arc<Mutex<Vec<Value>>>,
    tx: mpsc::UnboundedSender<Value>,
    media: Option<Arc<MediaClient>>,
    task: tokio::task::JoinHandle<()>,
}

impl Participant {
    async fn enter(app: &TestApp, token: &str, publish: bool) -> Participant {
        let mut ws = WsClient::connect(&app.ws_url).await;
        ws.send(json!({"type": "join", "token": token})).await;
        let joined = ws.expect_type("joined").await;
        let id = str_of(&joined, "participant_id");
        let media = if publish {
            let media = Arc::new(MediaClient::new(true).await.expect("media client"));
            let (sdp, tracks) = media.publisher_offer().await.expect("offer");
            let tracks: Vec<Value> = tracks
                .into_iter()
                .map(|(mid, source)| json!({"mid": mid, "source": source}))
                .collect();
            ws.send(json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks}))
                .await;
            Some(media)
        } else {
            None
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let (m, s) = (media.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = rx.recv() => match out {
                        Some(v) => ws.send(v).await,
                        None => return,
                    },
                    msg = ws.next() => {
                        let msg = match msg {
                            Ok(m) => m,
                            Err(closed) => {
                                let close = json!({"type": "_closed", "code": closed.code});
                                if let Ok(mut s) = s.lock() {
                                    s.push(close);
                                }
                                return;
                            }
                        };
                        match (msg["type"].as_str(), &m) {
                            (Some("publish_answer"), Some(m)) => {
                                let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                                m.publisher_answer(sdp).await.expect("publisher answer applies");
                                m.start_media().await.expect("media starts");
                            }
                            (Some("subscribe_offer"), Some(m)) => {
                                let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                                let answer = m.subscriber_offer(sdp).await.expect("offer applies");
                                ws.send(json!({"type": "subscribe_answer", "sdp": answer})).await;
                            }
                            _ => {}
                        }
                        if let Ok(mut s) = s.lock() {
                            s.push(msg);
                        }
                    }
                }
            }
        });
        Participant {
            id,
            joined,
            seen,
            tx,
            media,
            task,
        }
    }

    fn send(&self, v: Value) {
        self.tx.send(v).expect("participant task running");
    }

    /// Waits for a message of type `ty` matching `pred` (already received or arriving).
    async fn expect(&self, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let seen = self.seen.clone();
        wait_for(&format!("a {ty} message"), || {
            let found = seen
                .lock()
                .ok()
                .and_then(|s| s.iter().find(|m| m["type"] == ty && pred(m)).cloned());
            async move { found }
        })
        .await
    }

    fn index_of(&self, ty: &str, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.iter().position(|m| m["type"] == ty && pred(m)))
    }

    async fn close(self) {
        if let Some(m) = &self.media {
            m.close().await;
        }
        self.task.abort();
    }
}

fn recording_active(m: &Value) -> bool {
    m["active"] == true
}

fn stopped_because(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |m: &Value| m["active"] == false && m["reason"] == reason
}

/// The files of `participant` in a recording: (audio, video).
fn files_of<'a>(rec: &'a Value, participant: &str) -> (Option<&'a Value>, Option<&'a Value>) {
    let files = rec["files"].as_array().expect("files");
    let of = |kind: &str| {
        files
            .iter()
            .find(|f| f["kind"] == kind && f["participant_id"] == participant)
    };
    (of("track_audio"), of("track_video"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_sees_the_recording_and_its_files_are_listed_after_it_stops() {
    let w = World::spawn().await;
    let acc = w.account("R-1", "rec-12").await;
    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let rep = Participant::enter(&w.app, &host, true).await;
    let client = Participant::enter(&w.app, &guest, true).await;
    assert_eq!(rep.joined["meeting"]["recording"], Value::Null);

    rep.send(json!({"type": "recording", "action": "start"}));
    let mut started = Vec::new();
    for p in [&rep, &client] {
        started.push(p.expect("recording", recording_active).await);
    }
    let rid = str_of(&started[0], "recording_id");
    for m in &started {
        assert_eq!(m["recording_id"], rid.as_str(), "{m}");
        assert_eq!(m["started_by"], "Rep", "{m}");
        assert!(m["started_at"].as_str().is_some(), "{m}");
    }
    // Someone arriving now sees it in `joined`, before anything else.
    let late_token = w.app.guest_token(&meeting, "Late").await;
    let late = Participant::enter(&w.app, &late_token, false).await;
    let shown = &late.joined["meeting"]["recording"];
    assert_eq!(shown["active"], true, "{shown}");
    assert_eq!(shown["recording_id"], rid.as_str());
    assert!(shown["started_at"].as_str().is_some());

    // Media flows into the files; then the host stops.
    w.stored_over(&acc, 100_000).await;
    rep.send(json!({"type": "recording", "action": "stop"}));
    for p in [&rep, &client, &late] {
        p.expect("recording", stopped_because("stopped")).await;
    }

    let rec = w.ready(&rid, &acc.key).await;
    assert_eq!(rec["meeting_id"], meeting.id.as_str());
    assert_eq!(rec["account_id"], acc.id.as_str());
    assert_eq!(rec["started_by"], "Rep");
    assert_eq!(rec["stop_reason"], "stopped");
    assert_eq!(
        rec["page_url"],
        format!("{}/recordings/{rid}", w.public_url()).as_str()
    );
    let started_at: DateTime<Utc> = rec["started_at"]
        .as_str()
        .expect("start")
        .parse()
        .expect("date");
    let expires_at: DateTime<Utc> = rec["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("date");
    assert_eq!(
        expires_at - started_at,
        chrono::Duration::days(30),
        "the tariff's retention"
    );
    for (p, name) in [(&rep, "Rep"), (&client, "Client")] {
        let (audio, video) = files_of(&rec, &p.id);
        let audio = audio.unwrap_or_else(|| panic!("{name}'s audio in {rec}"));
        let video = video.unwrap_or_else(|| panic!("{name}'s video in {rec}"));
        assert!(
            audio["name"].as_str().is_some_and(|n| n.ends_with(".ogg")),
            "{audio}"
        );
        assert_eq!(audio["codec"], "opus");
        assert!(
            video["name"].as_str().is_some_and(|n| n.ends_with(".webm")),
            "{video}"
        );
        assert_eq!(video["codec"], "vp8");
        for f in [audio, video] {
            assert_eq!(f["display_name"], name, "{f}");
            assert!(f["bytes"].as_i64().is_some_and(|b| b > 1000), "{f}");
            assert!(f["duration_ms"].as_i64().is_some_and(|d| d > 0), "{f}");
        }
    }
    let total: i64 = rec["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["bytes"].as_i64())
        .sum();
    assert_eq!(rec["bytes"], total);

    // The files are what they claim: Ogg and WebM (EBML), as downloaded through a link.
    let (s, links) = w
        .req(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/links"),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{links}");
    let (audio, video) = files_of(&rec, &rep.id);
    for (f, magic) in [
        (audio.expect("audio"), b"OggS".to_vec()),
        (video.expect("video"), vec![0x1A, 0x45, 0xDF, 0xA3]),
    ] {
        let link = links["files"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["name"] == f["name"])
            .expect("a link per file");
        let body = w
            .app
            .http
            .get(w.app.url(&str_of(link, "path")))
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.len() as i64, f["bytes"].as_i64().expect("bytes"));
        assert!(
            body.starts_with(&magic),
            "{} starts with its magic",
            f["name"]
        );
    }

    // The meeting's list has it too.
    let (s, list) = w
        .req(
            Method::GET,
            &format!("/api/v1/meetings/{}/recordings", meeting.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["recordings"][0]["id"], rid.as_str());
    for p in [rep, client, late] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_refused_without_the_grant_or_the_tariff_feature() {
    let w = World::spawn().await;
    let acc = w.account("R-2", "rec-12").await;
    let meeting = w.meeting(&acc).await;
    let path = format!("/api/v1/meetings/{}/recording", meeting.id);

    // Nobody in the meeting yet: nothing to record.
    let (s, v) = w
        .req(Method::POST, &path, Some(&meeting.host_key), None)
        .await;
    assert_code(s, &v, 409, "meeting_not_active");

    let host = w.app.host_token(&meeting, "Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let rep = Participant::enter(&w.app, &host, false).await;
    let client = Participant::enter(&w.app, &guest, false).await;

    // A guest's token has no record grant.
    client.send(json!({"type": "recording", "action": "start"}));
    let e = client.expect("error", |_| true).await;
    assert_eq!(e["code"], "forbidden", "{e}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("recording")),
        "{e}"
    );
    let (s, v) = w.req(Method::POST, &path, Some(&guest), None).await;
    assert_code(s, &v, 403, "recording_not_permitted");
    let (s, v) = w
        .req(Method::POST, &path, Some("not-a-credential"), None)
        .await;
    assert_eq!(s, 401, "{v}");

    // The host key may; twice is a conflict, over REST and over the socket.
    let (s, v) = w
        .req(Method::POST, &path, Some(&meeting.host_key), None)
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "recording");
    let rid = str_of(&v, "recording_id");
    rep.expect("recording", |m| {
        m["active"] == true && m["recording_id"] == rid.as_str()
    })
    .await;
    let (s, v) = w.req(Method::POST, &path, Some(&host), None).await;
    assert_code(s, &v, 409, "already_recording");
    rep.send(json!({"type": "recording", "action": "start"}));
    let e = rep.expect("error", |_| true).await;
    assert_eq!(e["code"], "already_recording", "{e}");

    // Stopping needs the grant too; then there is nothing left to stop.
    let (s, v) = w.req(Method::DELETE, &path, Some(&guest), None).await;
    assert_code(s, &v, 403, "recording_not_permitted");
    let (s, v) = w.req(Method::DELETE, &path, Some(&host), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["recording_id"], rid.as_str());
    assert_eq!(v["status"], "processing");
    client.expect("recording", stopped_because("stopped")).await;
    let (s, v) = w
        .req(Method::DELETE, &path, Some(&meeting.host_key), None)
        .await;
    assert_code(s, &v, 409, "not_recording");

    // A tariff without recording: the host is told so, in those words.
    let basic = w.account("R-2b", "basic-12").await;
    let plain = w.meeting(&basic).await;
    let plain_host = w.app.host_token(&plain, "Rep").await;
    let p = Participant::enter(&w.app, &plain_host, false).await;
    p.send(json!({"type": "recording", "action": "start"}));
    let e = p.expect("error", |_| true).await;
    assert_eq!(e["code"], "recording_not_in_tariff", "{e}");
    assert_eq!(e["message"], "Your tariff does not include recording.");
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{}/recording", plain.id),
            Some(&plain.host_key),
            None,
        )
        .await;
    assert_code(s, &v, 403, "recording_not_in_tariff");
    assert_eq!(
        v["error"]["message"],
        "Your tariff does not include recording."
    );

    // A meeting without a license has no tariff that includes it.
    let open = w.app.create_meeting("Open").await;
    let open_host = w.app.host_token(&open, "Host").await;
    let o = Participant::enter(&w.app, &open_host, false).await;
    o.send(json!({"type": "recording", "action": "start"}));
    let e = o.expect("error", |_| true).await;
    assert_eq!(e["code"], "recording_not_in_tariff", "{e}");
    // Nobody was ever told about a recording there.
    assert!(o.index_of("recording", |_| true).is_none());
    for p in [rep, client, p, o] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_storage_quota_stops_the_recording_and_refuses_the_next() {
    let w = World::spawn().await;
    // 30 "MB" of 1000 bytes: a few seconds of two people's media.
    let acc = w.account("R-3", "tiny-12").await;
    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let rep = Participant::enter(&w.app, &host, true).await;
    let client = Participant::enter(&w.app, &guest, true).await;

    rep.send(json!({"type": "recording", "action": "start"}));
    let started = client.expect("recording", recording_active).await;
    let rid = str_of(&started, "recording_id");
    for p in [&rep, &client] {
        p.expect("recording", stopped_because("quota_exceeded"))
            .await;
    }
    let rec = w.ready(&rid, &acc.key).await;
    assert_eq!(rec["stop_reason"], "quota_exceeded");
    assert!(rec["bytes"].as_i64().is_some_and(|b| b >= 30_000), "{rec}");

    // Full: the next start is refused, saying how full.
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{}/recording", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    assert_code(s, &v, 403, "storage_quota_exceeded");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("of 30 MB"), "{message}");
    rep.send(json!({"type": "recording", "action": "start"}));
    let e = rep.expect("error", |_| true).await;
    assert_eq!(e["code"], "storage_quota_exceeded", "{e}");
    for p in [rep, client] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_expired_recordings() {
    let w = World::spawn().await;
    let acc = w.account("R-4", "rec-12").await;
    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Rep").await;
    let rep = Participant::enter(&w.app, &host, true).await;
    let path = format!("/api/v1/meetings/{}/recording", meeting.id);

    let mut ids = Vec::new();
    for advance in [Duration::ZERO, 10 * DAY] {
        w.clock.advance(advance);
        let (s, v) = w
            .req(Method::POST, &path, Some(&meeting.host_key), None)
            .await;
        assert_eq!(s, 201, "{v}");
        let rid = str_of(&v, "recording_id");
        let before = ids.len() as u64;
        w.stored_over(&acc, 20_000 * (before + 1)).await;
        let (s, v) = w
            .req(Method::DELETE, &path, Some(&meeting.host_key), None)
            .await;
        assert_eq!(s, 200, "{v}");
        w.ready(&rid, &acc.key).await;
        ids.push(rid);
    }
    let dir = |rid: &str| w.recordings_dir().join(&acc.id).join(rid);
    for rid in &ids {
        assert!(dir(rid).is_dir(), "{rid}'s files are on disk");
    }

    // 31 days after the first: only the first has outlived its 30 days.
    w.clock.advance(21 * DAY);
    wait_for("the expired recording to go", || async {
        let (s, _) = w.recording(&ids[0], &acc.key).await;
        (s == 404).then_some(())
    })
    .await;
    assert!(!dir(&ids[0]).exists(), "its files are gone");
    let (s, kept) = w.recording(&ids[1], &acc.key).await;
    assert_eq!(s, 200, "{kept}");
    assert_eq!(kept["status"], "ready");
    assert!(dir(&ids[1]).is_dir(), "the other's files are kept");
    let (s, list) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/recordings", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let listed: Vec<&str> = list["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(listed, vec![ids[1].as_str()]);
    let (s, audit) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/audit", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    let expired: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "recording.expire")
        .collect();
    assert_eq!(expired.len(), 1, "{audit}");
    assert_eq!(expired[0]["target_id"], ids[0].as_str());
    rep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_work_for_who_may_see_the_recording_and_nobody_else() {
    let w = World::spawn().await;
    let a = w.account("R-5", "rec-12").await;
    let admin = w.user(&a, "admin@r5.example", "account_admin").await;
    let rep = w.user(&a, "rep@r5.example", "member").await;
    let other = w.user(&a, "other@r5.example", "member").await;
    w.seat(&a, &rep.id).await;
    let b = w.account("R-5b", "rec-12").await;
    let stranger = w.user(&b, "admin@r5b.example", "account_admin").await;

    // The rep hosts on their own seat, signed in.
    let meeting = w
        .meeting_by(&rep.token, json!({"title": "Rep's demo"}))
        .await;
    let p = Participant::enter(&w.app, &meeting.host_token, true).await;
    let path = format!("/api/v1/meetings/{}/recording", meeting.id);
    let (s, v) = w
        .req(Method::POST, &path, Some(&meeting.host_key), None)
        .await;
    assert_eq!(s, 201, "{v}");
    let rid = str_of(&v, "recording_id");
    w.stored_over(&a, 50_000).await;
    let (s, v) = w
        .req(Method::DELETE, &path, Some(&meeting.host_key), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let rec = w.ready(&rid, &a.key).await;

    // Who sees it.
    for (who, bearer, want) in [
        ("the host", rep.token.as_str(), 200),
        ("an admin", admin.token.as_str(), 200),
        ("the account key", a.key.as_str(), 200),
        ("the operator", ADMIN_TOKEN, 200),
        ("another member", other.token.as_str(), 403),
        ("another account's admin", stranger.token.as_str(), 404),
        ("another account's key", b.key.as_str(), 404),
    ] {
        let (s, v) = w.recording(&rid, bearer).await;
        assert_eq!(s, want, "{who}: {v}");
    }
    let (s, _) = w
        .req(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);

    // Links: only for who may see it.
    let links_path = format!("/api/v1/recordings/{rid}/links");
    let (s, v) = w
        .req(Method::POST, &links_path, Some(&stranger.token), None)
        .await;
    assert_code(s, &v, 404, "not_found");
    let (s, v) = w
        .req(Method::POST, &links_path, Some(&other.token), None)
        .await;
    assert_code(s, &v, 403, "forbidden");
    let (s, links) = w
        .req(Method::POST, &links_path, Some(&admin.token), None)
        .await;
    assert_eq!(s, 200, "{links}");
    let (audio, video) = files_of(&rec, &p.id);
    let (audio, video) = (audio.expect("audio"), video.expect("video"));
    let link_of = |f: &Value| {
        links["files"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["name"] == f["name"])
            .map(|l| {
                let (url, path) = (str_of(l, "url"), str_of(l, "path"));
                assert_eq!(url, format!("{}{path}", w.public_url()));
                w.app.url(&path)
            })
            .expect("a link")
    };
    let audio_url = link_of(audio);

    // The link downloads the file as an attachment, ranges included.
    let r = w.app.http.get(&audio_url).send().await.expect("download");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/ogg");
    let disposition = r.headers()["content-disposition"].to_str().expect("ascii");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let body = r.bytes().await.expect("body");
    assert_eq!(body.len() as i64, audio["bytes"].as_i64().expect("bytes"));
    let r = w
        .app
        .http
        .get(&audio_url)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.expect("body")[..], b"OggS");

    // Altered, borrowed for another file, or expired: refused with a JSON error.
    let (base, query) = audio_url.split_once('?').expect("query");
    let mut forged_sig = audio_url.clone();
    let last = forged_sig.pop().expect("sig");
    forged_sig.push(if last == '0' { '1' } else { '0' });
    let video_name = str_of(video, "name");
    let other_file = format!(
        "{}/{video_name}?{query}",
        base.rsplit_once('/').expect("path").0
    );
    let later = query.replace("expires=", "expires=9");
    for (what, url) in [
        ("a changed signature", forged_sig),
        ("another file", other_file),
        ("a later expiry", format!("{base}?{later}")),
    ] {
        let r = w.app.http.get(&url).send().await.expect("request");
        assert_eq!(r.status(), 403, "{what}");
        let v: Value = r.json().await.expect("json error");
        assert_eq!(v["error"]["code"], "invalid_link", "{what}: {v}");
    }
    w.clock.advance(Duration::from_secs(16 * 60));
    let r = w.app.http.get(&audio_url).send().await.expect("request");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json error");
    assert_eq!(v["error"]["code"], "link_expired", "{v}");

    // Deleting is for the account's admins.
    let del = format!("/api/v1/recordings/{rid}");
    let (s, v) = w.req(Method::DELETE, &del, Some(&rep.token), None).await;
    assert_code(s, &v, 403, "forbidden");
    let (s, v) = w
        .req(Method::DELETE, &del, Some(&stranger.token), None)
        .await;
    assert_code(s, &v, 404, "not_found");
    let (s, _) = w.req(Method::DELETE, &del, Some(&admin.token), None).await;
    assert_eq!(s, 204);
    let (s, _) = w.recording(&rid, &a.key).await;
    assert_eq!(s, 404);
    assert!(!w.recordings_dir().join(&a.id).join(&rid).exists());

    // Each step is in the account's audit log.
    let (s, audit) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/audit?limit=200", a.id),
            Some(&a.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["target_id"] == rid.as_str())
        .filter_map(|e| e["action"].as_str())
        .collect();
    for want in [
        "recording.start",
        "recording.stop",
        "recording.link",
        "recording.download",
        "recording.delete",
    ] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    // The ranged fetch did not count as another download.
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "recording.download")
            .count(),
        1,
        "{actions:?}"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_links_the_recording_and_recording_ready_reaches_the_webhook() {
    let w = World::spawn().await;
    let acc = w.account("R-6", "rec-12").await;
    let receiver = WebhookReceiver::start("unknown-until-registered").await;
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/webhooks", acc.id),
            Some(&acc.key),
            Some(json!({"url": receiver.url, "events": ["recording.ready"]})),
        )
        .await;
    assert_eq!(s, 201, "webhook: {v}");
    receiver.lock().secret = Some(str_of(&v, "secret"));

    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let rep = Participant::enter(&w.app, &host, true).await;
    let client = Participant::enter(&w.app, &guest, true).await;
    rep.send(json!({"type": "recording", "action": "start"}));
    let started = client.expect("recording", recording_active).await;
    let rid = str_of(&started, "recording_id");
    w.stored_over(&acc, 50_000).await;

    // The meeting ends while recording: everyone is told before their socket closes.
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/meetings/{}/end", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    for p in [&rep, &client] {
        p.expect("_closed", |m| m["code"] == 4001).await;
        let told = p.index_of("recording", stopped_because("meeting_ended"));
        let closed = p.index_of("_closed", |_| true);
        assert!(told.is_some() && told < closed, "told before the close");
    }

    // The summary, made at the end, already links the recording's page.
    let page = format!("{}/recordings/{rid}", w.public_url());
    let summary = wait_for("the summary", || async {
        let (s, v) = w
            .req(
                Method::GET,
                &format!("/api/v1/meetings/{}/summary", meeting.id),
                Some(&meeting.host_key),
                None,
            )
            .await;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(summary["recording_url"], page.as_str(), "{summary}");
    let r = w
        .app
        .http
        .get(w.app.url(&format!("/recordings/{rid}")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );

    let rec = w.ready(&rid, &acc.key).await;
    assert_eq!(rec["stop_reason"], "meeting_ended");
    let hook = wait_for("recording.ready at the receiver", || async {
        receiver
            .lock()
            .received
            .iter()
            .find(|r| r.body["type"] == "recording.ready")
            .cloned()
    })
    .await;
    assert!(hook.signature_ok, "signed: {:?}", hook.body);
    let data = &hook.body["data"];
    assert_eq!(hook.body["account_id"], acc.id.as_str());
    assert_eq!(data["recording_id"], rid.as_str());
    assert_eq!(data["meeting_id"], meeting.id.as_str());
    assert_eq!(data["url"], page.as_str());
    let files = data["files"].as_array().expect("files");
    assert_eq!(files.len(), rec["files"].as_array().expect("files").len());
    for f in files {
        assert!(
            f["name"].as_str().is_some() && f["kind"].as_str().is_some(),
            "{f}"
        );
        assert!(f["bytes"].as_i64().is_some_and(|b| b > 0), "{f}");
    }
    for p in [rep, client] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_that_cannot_be_made_fails_the_recording_but_keeps_its_files() {
    // An "ffmpeg" that refuses every job, as a broken installation would.
    let bin = tempfile::tempdir().expect("dir");
    let ffmpeg = bin.path().join("ffmpeg");
    std::fs::write(
        &ffmpeg,
        "#!/bin/sh\necho 'Unrecognized option' >&2\nexit 1\n",
    )
    .expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ffmpeg, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = ffmpeg.clone();
    let w = World::spawn_with(move |cfg| cfg.ffmpeg = Some(path)).await;
    let acc = w.account("R-7", "rec-12").await;
    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Rep").await;
    let rep = Participant::enter(&w.app, &host, true).await;
    let path = format!("/api/v1/meetings/{}/recording", meeting.id);
    let (s, v) = w
        .req(Method::POST, &path, Some(&meeting.host_key), None)
        .await;
    assert_eq!(s, 201, "{v}");
    let rid = str_of(&v, "recording_id");
    w.stored_over(&acc, 30_000).await;
    let (s, v) = w
        .req(Method::DELETE, &path, Some(&meeting.host_key), None)
        .await;
    assert_eq!(s, 200, "{v}");

    let rec = w.finished(&rid, &acc.key).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("composite video:"), "{error}");
    let (audio, video) = files_of(&rec, &rep.id);
    assert!(
        audio.is_some() && video.is_some(),
        "the track files are kept: {rec}"
    );
    assert!(
        rec["files"]
            .as_array()
            .expect("files")
            .iter()
            .all(|f| f["kind"] != "composite"),
        "{rec}"
    );
    // Kept and still downloadable.
    let (s, links) = w
        .req(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/links"),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{links}");
    rep.close().await;
}

/// Erasing a person (agreement 12.5) takes their name out of the recordings they started and of
/// their own tracks' files, in the API and in the stored rows, and leaves the media and everyone
/// else's names alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_takes_the_person_s_name_out_of_the_recordings() {
    let w = World::spawn().await;
    let acc = w.account("R-9", "rec-12").await;
    // Anna is a rep of the account: her name there is her address's local part, "anna.rep".
    w.user(&acc, "anna.rep@r9.example", "member").await;
    let meeting = w.meeting(&acc).await;
    let host = w.app.host_token(&meeting, "Anna.Rep").await;
    let guest = w.app.guest_token(&meeting, "Client").await;
    let anna = Participant::enter(&w.app, &host, true).await;
    let client = Participant::enter(&w.app, &guest, true).await;
    anna.send(json!({"type": "recording", "action": "start"}));
    let rid = str_of(
        &anna.expect("recording", recording_active).await,
        "recording_id",
    );
    w.stored_over(&acc, 100_000).await;
    anna.send(json!({"type": "recording", "action": "stop"}));
    anna.expect("recording", stopped_because("stopped")).await;
    let rec = w.ready(&rid, &acc.key).await;
    assert_eq!(rec["started_by"], "Anna.Rep");
    let (audio, video) = files_of(&rec, &anna.id);
    for f in [audio, video] {
        assert_eq!(f.expect("her track")["display_name"], "Anna.Rep", "{rec}");
    }
    let (anna_id, client_id) = (anna.id.clone(), client.id.clone());
    anna.close().await;
    client.close().await;

    let (s, report) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/erasure", acc.id),
            Some(ADMIN_TOKEN),
            Some(json!({"email": "anna.rep@r9.example"})),
        )
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["recordings"], 1, "{report}");
    assert_eq!(
        report["recording_files"], 2,
        "her audio and video: {report}"
    );

    let (s, after) = w.recording(&rid, &acc.key).await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["started_by"], "erased user");
    assert!(
        !after.to_string().to_lowercase().contains("anna"),
        "{after}"
    );
    let (audio, video) = files_of(&after, &anna_id);
    for f in [audio, video] {
        assert_eq!(f.expect("her track is kept")["display_name"], "erased user");
    }
    let (audio, video) = files_of(&after, &client_id);
    for f in [audio, video] {
        assert_eq!(f.expect("the client's track")["display_name"], "Client");
    }
    assert_eq!(after["bytes"], rec["bytes"], "the media stays");
    // The stored rows too: the API reads a file's name through the meeting's session while it
    // exists, the row is what is left once it does not.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT started_by FROM recordings UNION ALL \
         SELECT display_name FROM recording_files WHERE display_name IS NOT NULL",
    )
    .fetch_all(&w.app.pool())
    .await
    .expect("stored names");
    assert!(stored.iter().any(|n| n == "Client"), "{stored:?}");
    assert!(
        !stored.iter().any(|n| n.to_lowercase().contains("anna")),
        "{stored:?}"
    );
}
