//! Helpers for the black-box tests: start the real server on random ports with a temporary
//! SQLite file, talk to it over HTTP and WebSocket, and wait for conditions with deadlines.

pub mod crm_standins;
pub mod fixtures;
pub mod media_client;
pub mod postgres;
pub mod redis;
pub mod yookassa;

use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parley_signaling::configuration::Secret;
use parley_signaling::{Config, RunningServer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The JWT secret configured for test servers, so tests can forge tokens on purpose.
pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The operator admin token of test servers.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// How long any single expectation may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub server: Option<RunningServer>,
    pub base: String,
    pub ws_url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    /// The PostgreSQL schema of a run with `PARLEY_TEST_SIGNALING_DB=postgres`; dropped last.
    _schema: Option<postgres::Schema>,
}

/// A configuration for tests: random ports on loopback, a fresh database, known secrets.
///
/// The database is a SQLite file in `dir`, or with `PARLEY_TEST_SIGNALING_DB=postgres` a
/// PostgreSQL schema of `dir`'s own (see [`postgres`]).
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        udp_addr: "127.0.0.1:0".parse().expect("addr"),
        announced_ips: vec!["127.0.0.1".parse().expect("ip")],
        database_url: format!("sqlite://{}", dir.path().join("parley.db").display()),
        // Named here, not left to the default beside the SQLite file: on PostgreSQL that default
        // is `recordings/` in the working directory, which filled the checkout with test media.
        recordings_dir: Some(dir.path().join("recordings")),
        jwt_secret: Some(Secret::new(JWT_SECRET)),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        ..Config::default()
    };
    if let Some(url) = postgres::suite_url() {
        postgres::on_postgres(&mut config, &url, &postgres::schema_of(dir.path()));
    }
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration adjusted by `tweak` (e.g. a short resume grace).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&dir);
        let schema = postgres::suite_url().map(|url| postgres::Schema {
            url,
            name: postgres::schema_of(dir.path()),
        });
        tweak(&mut config);
        let server = parley_signaling::spawn(config)
            .await
            .expect("the server (including the media plane) must start");
        let base = server.base_url();
        let ws_url = format!("ws://{}/api/v1/ws", server.http_addr());
        TestApp {
            server: Some(server),
            base,
            ws_url,
            http: reqwest::Client::new(),
            _dir: dir,
            _schema: schema,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// The running server's database pool (SQLite or PostgreSQL), for tests that set up or
    /// look at rows the API does not reach.
    pub fn pool(&self) -> parley_signaling::store::DbPool {
        self.server
            .as_ref()
            .expect("the server is running")
            .state()
            .store
            .pool()
            .clone()
    }

    /// The SQLite file of this app's database, for tests that look at what is stored.
    pub fn database_path(&self) -> std::path::PathBuf {
        self._dir.path().join("parley.db")
    }

    /// Stops the server if it runs and starts it again on the same database directory, with the
    /// test configuration adjusted by `tweak`; the start's error when the server refuses.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        self.shutdown().await;
        let mut config = test_config(&self._dir);
        tweak(&mut config);
        let server = parley_signaling::spawn(config).await?;
        self.base = server.base_url();
        self.ws_url = format!("ws://{}/api/v1/ws", server.http_addr());
        self.server = Some(server);
        Ok(())
    }

    /// POST /api/v1/meetings; returns the created meeting JSON.
    pub async fn create_meeting(&self, title: &str) -> Meeting {
        let r = self
            .http
            .post(self.url("/api/v1/meetings"))
            .json(&json!({ "title": title }))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 201, "create meeting");
        let v: Value = r.json().await.expect("json");
        Meeting {
            id: str_of(&v, "id"),
            host_key: str_of(&v, "host_key"),
            host_token: str_of(&v, "host_token"),
            invite: str_of(&v, "invite"),
            raw: v,
        }
    }

    /// Exchanges the invitation for a guest token.
    pub async fn guest_token(&self, m: &Meeting, name: &str) -> String {
        self.join_exchange(m, json!({"display_name": name, "invite": m.invite}))
            .await
    }

    /// Exchanges the host key for a host token.
    pub async fn host_token(&self, m: &Meeting, name: &str) -> String {
        self.join_exchange(m, json!({"display_name": name, "host_key": m.host_key}))
            .await
    }

    async fn join_exchange(&self, m: &Meeting, body: Value) -> String {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/meetings/{}/join", m.id)))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "join exchange");
        let v: Value = r.json().await.expect("json");
        str_of(&v, "token")
    }

    /// GET with a bearer credential; returns status and JSON body (Null if not JSON).
    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST/DELETE with optional JSON body and bearer; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn connect(&self) -> WsClient {
        WsClient::connect(&self.ws_url).await
    }

    /// Connects and joins with `token`; returns the client and its `joined` message.
    pub async fn join(&self, token: &str) -> (WsClient, Value) {
        let mut c = self.connect().await;
        c.send(json!({"type": "join", "token": token})).await;
        let joined = c.expect_type("joined").await;
        (c, joined)
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }

    /// The value of one metric series line (`name` including labels), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that panicked before shutdown: stop the server in the background so the
        // runtime ends cleanly; the temporary directory goes away with us.
        if let Some(s) = self.server.take()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            h.spawn(s.shutdown());
        }
    }
}

pub struct Meeting {
    pub id: String,
    pub host_key: String,
    pub host_token: String,
    pub invite: String,
    pub raw: Value,
}

pub fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_owned()
}

/// What a socket ended with.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        WsClient { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: String) {
        self.ws.send(Message::text(s)).await.expect("ws send");
    }

    /// Sends without panicking (the server may already have closed the socket).
    pub async fn try_send_text(&mut self, s: String) -> bool {
        self.ws.send(Message::text(s)).await.is_ok()
    }

    /// The next JSON message, or the close that ended the socket.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        let r = tokio::time::timeout(DEADLINE, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Ok(serde_json::from_str::<Value>(&t).expect("server sent JSON"));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // Flush our close reply so the server's closing handshake completes
                        // at once instead of waiting for its timeout.
                        let _ = self.ws.close(None).await;
                        return Err(frame.map_or(
                            Closed {
                                code: 1005,
                                reason: String::new(),
                            },
                            |f| Closed {
                                code: u16::from(f.code),
                                reason: f.reason.to_string(),
                            },
                        ));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        return Err(Closed {
                            code: 1006,
                            reason: e.to_string(),
                        });
                    }
                    None => {
                        return Err(Closed {
                            code: 1006,
                            reason: "stream ended".into(),
                        });
                    }
                }
            }
        })
        .await;
        r.expect("no message within the deadline")
    }

    /// Skips messages until one of type `ty` arrives; panics on close or deadline.
    pub async fn expect_type(&mut self, ty: &str) -> Value {
        self.expect_where(ty, |_| true).await
    }

    /// Skips messages until one of type `ty` satisfying `pred` arrives.
    pub async fn expect_where(&mut self, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no {ty} in time");
            match self.next().await {
                Ok(v) if v["type"] == ty && pred(&v) => return v,
                Ok(_) => continue,
                Err(c) => panic!("socket closed while waiting for {ty}: {c:?}"),
            }
        }
    }

    /// Reads until the socket closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> Closed {
        loop {
            if let Err(c) = self.next().await {
                return c;
            }
        }
    }

    /// Collects every message type received until the socket closes (for "never saw X" checks).
    pub async fn types_until_close(&mut self) -> (Vec<String>, Closed) {
        let mut types = Vec::new();
        loop {
            match self.next().await {
                Ok(v) => types.push(v["type"].as_str().unwrap_or_default().to_owned()),
                Err(c) => return (types, c),
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
pub mod smtp;
