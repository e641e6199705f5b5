//! Simulated participants of a Parley meeting, over the real signaling: a join token from the
//! invite link (`POST /api/v1/meetings/{id}/join`), the WebSocket protocol of docs/protocol.md,
//! and the SFU's UDP port for media.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::peer::{Peer, wait_connected};
use super::{Joined, Role};

/// Parley listens on loopback (its default announced address), so the peers bind there too.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A meeting on the server under test, and how to reach it.
#[derive(Clone)]
pub struct Meeting {
    pub base: String,
    pub ws_url: String,
    pub id: String,
    pub invite: String,
    pub http: reqwest::Client,
}

impl Meeting {
    /// Creates a meeting (the open landing page's call: no credentials needed by default).
    pub async fn create(base: &str, http: reqwest::Client) -> anyhow::Result<Meeting> {
        let r = http
            .post(format!("{base}/api/v1/meetings"))
            .json(&json!({"title": "Load test"}))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("creating the meeting: {status} {v}");
        }
        let s = |k: &str| v[k].as_str().map(str::to_owned).context(k.to_owned());
        let url = reqwest::Url::parse(base)?;
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Meeting {
            base: base.to_owned(),
            ws_url: format!("ws://{host}:{port}/api/v1/ws"),
            id: s("id")?,
            invite: s("invite")?,
            http,
        })
    }

    async fn token(&self, name: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/api/v1/meetings/{}/join", self.base, self.id))
            .json(&json!({"display_name": name, "invite": self.invite}))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("join exchange: {status} {v}");
        }
        v["token"].as_str().map(str::to_owned).context("token")
    }
}

/// Joins one participant: it publishes what `role` says and subscribes to everything, asking
/// for the layer its render size needs. Returns once its socket is joined and, for a publisher,
/// its publisher connection is up.
pub async fn join(
    meeting: &Meeting,
    name: &str,
    role: Role,
    stop: CancellationToken,
) -> anyhow::Result<Joined> {
    let token = meeting.token(name).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(&meeting.ws_url)
        .await
        .context("websocket")?;
    let ws_open = Instant::now();
    ws.send(Message::text(
        json!({"type": "join", "token": token}).to_string(),
    ))
    .await?;
    let joined = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no joined in time")?;
        let Some(Ok(Message::Text(t))) = msg else {
            bail!("socket ended before joined: {msg:?}");
        };
        let v: Value = serde_json::from_str(&t)?;
        if v["type"] == "joined" {
            break v;
        }
        if v["type"] == "error" {
            bail!("join refused: {v}");
        }
    };
    let id = joined["participant_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let subscriber = if role.subscribe {
        Some(Peer::receiving(role.srtp, LOOPBACK, stop.clone()).await?)
    } else {
        None
    };
    let publisher = match role.publish {
        Some(what) => {
            let p = Peer::sending(what, role.srtp, LOOPBACK, stop.clone()).await?;
            let (sdp, mids) = p.create_offer()?;
            let tracks: Vec<Value> = mids
                .into_iter()
                .map(|(mid, video)| {
                    json!({"mid": mid, "source": if video { "camera" } else { "microphone" }})
                })
                .collect();
            ws.send(Message::text(
                json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks}).to_string(),
            ))
            .await?;
            Some(p)
        }
        None => None,
    };
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(1);
    let (pubc, subc, render) = (publisher.clone(), subscriber.clone(), role.render);
    let task_stop = stop.clone();
    tokio::spawn(async move {
        let mut sized: HashSet<String> = HashSet::new();
        let mut ready = Some(ready_tx);
        loop {
            let msg = tokio::select! {
                _ = task_stop.cancelled() => {
                    let _ = ws.send(Message::text(json!({"type": "leave"}).to_string())).await;
                    let _ = ws.close(None).await;
                    return;
                }
                m = ws.next() => m,
            };
            let Some(Ok(msg)) = msg else { return };
            let Message::Text(t) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&t) else {
                continue;
            };
            let sdp = v["sdp"].as_str().unwrap_or_default().to_owned();
            match v["type"].as_str() {
                Some("publish_answer") => {
                    if let Some(p) = &pubc {
                        let r = p.apply_answer(sdp);
                        if r.is_ok() {
                            p.start_media();
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(r).await;
                        }
                    }
                }
                Some("subscribe_offer") => {
                    let Some(s) = &subc else { continue };
                    let answer = match s.answer(sdp) {
                        Ok(a) => a,
                        Err(e) => {
                            eprintln!("subscriber offer rejected: {e:#}");
                            continue;
                        }
                    };
                    let _ = ws
                        .send(Message::text(
                            json!({"type": "subscribe_answer", "sdp": answer}).to_string(),
                        ))
                        .await;
                    // The render size of every new remote video (a grid tile, a stage).
                    let Some((w, h)) = render else { continue };
                    for t in v["tracks"].as_array().into_iter().flatten() {
                        if t["kind"] != "video" {
                            continue;
                        }
                        let (Some(p), Some(src)) =
                            (t["participant_id"].as_str(), t["source"].as_str())
                        else {
                            continue;
                        };
                        if sized.insert(format!("{p}/{src}")) {
                            let _ = ws
                                .send(Message::text(
                                    json!({"type": "video_size", "participant_id": p,
                                        "source": src, "width": w, "height": h})
                                    .to_string(),
                                ))
                                .await;
                        }
                    }
                }
                Some("error") => eprintln!("participant: server error {v}"),
                _ => {}
            }
        }
    });
    if let Some(p) = &publisher {
        tokio::time::timeout(Duration::from_secs(15), ready_rx.recv())
            .await
            .context("no publish_answer in time")?
            .context("socket ended")??;
        wait_connected(p, Duration::from_secs(15)).await?;
    }
    Ok(Joined {
        id,
        ws_open,
        publisher,
        subscriber,
    })
}
