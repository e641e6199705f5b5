//! The same simulated participants against Janus's VideoRoom plugin, through Janus's own API
//! over its WebSocket transport: create a session, attach `janus.plugin.videoroom`, create a
//! room, join as a publisher and publish with a JSEP offer, or join as a subscriber and answer
//! Janus's offer with `start`; keepalives while the session lives. The render size picks the
//! simulcast substream with `configure`, as Parley's `video_size` does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use super::peer::{Peer, layer_for, wait_connected};
use super::{Joined, Role};

const PLUGIN: &str = "janus.plugin.videoroom";
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
const KEEPALIVE: Duration = Duration::from_secs(25);
/// How long a subscriber waits for the feeds it asks for to be listed (see `join`).
const FEED_LISTED_WITHIN: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Janus session over one WebSocket.
pub struct Session {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    pub id: u64,
}

impl Session {
    /// Connects, creates the session and keeps it alive until `stop`.
    pub async fn open(ws_url: &str, stop: CancellationToken) -> anyhow::Result<Arc<Session>> {
        let mut req = ws_url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .context("janus websocket")?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let writer_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = writer_stop.cancelled() => { let _ = sink.close().await; return; }
                    m = out_rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { return },
                        None => return,
                    }
                }
            }
        });
        let p = pending.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = reader_stop.cancelled() => return,
                    m = stream.next() => m,
                };
                let Some(Ok(Message::Text(t))) = m else {
                    if matches!(m, Some(Ok(_))) {
                        continue;
                    }
                    return;
                };
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                // `ack` only says a message was queued; the answer comes later under the same
                // transaction.
                if v["janus"] == "ack" {
                    continue;
                }
                if let Some(tr) = v["transaction"].as_str() {
                    let waiter = p.lock().ok().and_then(|mut m| m.remove(tr));
                    if let Some(w) = waiter {
                        let _ = w.send(v);
                    }
                }
            }
        });
        let mut s = Session {
            out,
            pending,
            next: AtomicU64::new(1),
            id: 0,
        };
        let r = s.call(json!({"janus": "create"})).await?;
        s.id = r["data"]["id"].as_u64().context("session id")?;
        let s = Arc::new(s);
        let ka = s.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let _ = ka.send(json!({"janus": "keepalive", "session_id": ka.id}));
                    }
                }
            }
        });
        Ok(s)
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn send(&self, mut v: Value) -> anyhow::Result<()> {
        v["transaction"] = Value::String(self.transaction());
        self.out
            .send(Message::text(v.to_string()))
            .map_err(|_| anyhow!("janus socket closed"))
    }

    /// Sends a request and waits for its answer (the `success`, `event` or `error` carrying
    /// its transaction).
    async fn call(&self, mut v: Value) -> anyhow::Result<Value> {
        let tr = self.transaction();
        v["transaction"] = Value::String(tr.clone());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(tr.clone(), tx);
        }
        self.out
            .send(Message::text(v.to_string()))
            .map_err(|_| anyhow!("janus socket closed"))?;
        let r = tokio::time::timeout(REPLY_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow!("janus did not answer {v}"))?
            .map_err(|_| anyhow!("janus socket closed"))?;
        if r["janus"] == "error" {
            bail!("janus error: {}", r["error"]);
        }
        if let Some(err) = r["plugindata"]["data"]["error"].as_str() {
            bail!("videoroom error: {err}");
        }
        Ok(r)
    }

    pub async fn attach(&self) -> anyhow::Result<u64> {
        let r = self
            .call(json!({"janus": "attach", "plugin": PLUGIN, "session_id": self.id}))
            .await?;
        r["data"]["id"].as_u64().context("handle id")
    }

    /// A plugin message on `handle`, with an optional JSEP; the whole answer.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut v = json!({"janus": "message", "session_id": self.id, "handle_id": handle,
            "body": body});
        if let Some(j) = jsep {
            v["jsep"] = j;
        }
        self.call(v).await
    }

    /// Trickles our host candidate and the end of candidates.
    fn trickle(&self, handle: u64, peer: &Peer) -> anyhow::Result<()> {
        self.send(
            json!({"janus": "trickle", "session_id": self.id, "handle_id": handle,
            "candidate": {"candidate": peer.candidate_line(), "sdpMLineIndex": 0, "sdpMid": "0"}}),
        )?;
        self.send(
            json!({"janus": "trickle", "session_id": self.id, "handle_id": handle,
            "candidate": {"completed": true}}),
        )
    }
}

/// Creates the VideoRoom room the run uses; returns its id.
pub async fn create_room(
    ws_url: &str,
    max_publishers: usize,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let s = Session::open(ws_url, stop).await?;
    let h = s.attach().await?;
    let room = u64::from(rand::random::<u32>() | 1);
    let r = s
        .message(
            h,
            json!({"request": "create", "room": room, "permanent": false,
                "publishers": max_publishers, "audiocodec": "opus", "videocodec": "vp8",
                // No bitrate cap and no periodic FIR: the publishers' own key frame interval
                // and PLIs, as in the Parley run.
                "bitrate": 0, "fir_freq": 0, "notify_joining": false}),
            None,
        )
        .await?;
    if r["plugindata"]["data"]["videoroom"] != "created" {
        bail!("room not created: {r}");
    }
    Ok(room)
}

/// Joins one participant: a publisher handle publishing what `role` says, and a subscriber
/// handle subscribing to `feeds`, asking for the substream its render size needs. Its sockets
/// bind to `local_ip`, the address Janus offers its candidate on (see [`super::server::Server::media_ip`]). Returns the
/// participant and, for a publisher, its feed id.
pub async fn join(
    ws_url: &str,
    local_ip: IpAddr,
    room: u64,
    name: &str,
    role: Role,
    feeds: &[u64],
    stop: CancellationToken,
) -> anyhow::Result<(Joined, Option<u64>)> {
    let started = Instant::now();
    let s = Session::open(ws_url, stop.clone()).await?;
    // The WebSocket opened while the session was created; the session's round trip is part of
    // joining here as `join` is for Parley.
    let ws_open = started;
    let mut feed = None;
    let mut publisher = None;
    if let Some(what) = role.publish {
        let h = s.attach().await?;
        let r = s
            .message(
                h,
                json!({"request": "join", "ptype": "publisher", "room": room, "display": name}),
                None,
            )
            .await?;
        feed = r["plugindata"]["data"]["id"].as_u64();
        let p = Peer::sending(what, role.srtp, local_ip, stop.clone()).await?;
        let (sdp, _) = p.create_offer()?;
        let r = s
            .message(
                h,
                json!({"request": "publish"}),
                Some(json!({"type": "offer", "sdp": sdp})),
            )
            .await?;
        let answer = r["jsep"]["sdp"]
            .as_str()
            .with_context(|| format!("no answer from janus: {r}"))?;
        p.apply_answer(answer.to_owned())?;
        s.trickle(h, &p)?;
        p.start_media();
        wait_connected(&p, Duration::from_secs(15)).await?;
        publisher = Some(p);
    }
    let mut subscriber = None;
    if role.subscribe && !feeds.is_empty() {
        let h = s.attach().await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let join = json!({"request": "join", "ptype": "subscriber", "room": room,
            "streams": streams});
        // Janus lists a feed only once its publisher's PeerConnection is up on Janus's side,
        // which can trail the publisher's own "connected" by a moment: until then a join
        // answers "No such feed". Ask again until it is listed (bounded).
        let listed_by = Instant::now() + FEED_LISTED_WITHIN;
        let r = loop {
            match s.message(h, join.clone(), None).await {
                Err(e) if e.to_string().contains("No such feed") && Instant::now() < listed_by => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => break r?,
            }
        };
        let offer = r["jsep"]["sdp"]
            .as_str()
            .with_context(|| format!("no offer from janus: {r}"))?;
        let p = Peer::receiving(role.srtp, local_ip, stop.clone()).await?;
        let answer = p.answer(offer.to_owned())?;
        s.message(
            h,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
        s.trickle(h, &p)?;
        if let Some((w, hgt)) = role.render {
            let layer = layer_for(w, hgt);
            let video: Vec<Value> = r["plugindata"]["data"]["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|st| st["type"] == "video")
                .filter_map(|st| st["mid"].as_str())
                .map(|mid| json!({"mid": mid, "substream": layer}))
                .collect();
            if !video.is_empty() {
                s.message(h, json!({"request": "configure", "streams": video}), None)
                    .await?;
            }
        }
        subscriber = Some(p);
    }
    Ok((
        Joined {
            id: format!("{}", s.id),
            ws_open,
            publisher,
            subscriber,
        },
        feed,
    ))
}
