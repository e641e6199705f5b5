//! Native WebRTC participants (webrtc-rs) hold a meeting through the running server: HTTP to get
//! their tokens, the signaling WebSocket to negotiate, and the SFU's UDP port for media.

use std::sync::{Arc, Mutex};

use parley_tests::media_client::MediaClient;
use parley_tests::{TestApp, WsClient, wait_for};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One participant: its media client, what its socket received, and a way to make it leave.
struct Participant {
    id: String,
    media: Arc<MediaClient>,
    seen: Arc<Mutex<Vec<Value>>>,
    leave: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn enter(app: &TestApp, token: String) -> Participant {
    let mut ws = WsClient::connect(&app.ws_url).await;
    ws.send(json!({"type": "join", "token": token})).await;
    let joined = ws.expect_type("joined").await;
    let id = joined["participant_id"]
        .as_str()
        .expect("participant id")
        .to_owned();
    let media = Arc::new(MediaClient::new(true).await.expect("media client"));
    let (sdp, tracks) = media.publisher_offer().await.expect("offer");
    let tracks: Vec<Value> = tracks
        .into_iter()
        .map(|(mid, source)| json!({"mid": mid, "source": source}))
        .collect();
    ws.send(json!({"type": "publish_offer", "sdp": sdp, "tracks": tracks}))
        .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (leave_tx, mut leave_rx) = oneshot::channel();
    let (m, s) = (media.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut leave_rx => {
                    ws.send(json!({"type": "leave"})).await;
                    let _ = ws.expect_close().await;
                    return;
                }
                msg = ws.next() => {
                    let Ok(msg) = msg else { return };
                    match msg["type"].as_str() {
                        Some("publish_answer") => {
                            let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                            m.publisher_answer(sdp).await.expect("publisher answer applies");
                            m.start_media().await.expect("media starts");
                        }
                        Some("subscribe_offer") => {
                            let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
                            let answer = m.subscriber_offer(sdp).await.expect("subscriber offer applies");
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
        media,
        seen,
        leave: Some(leave_tx),
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_native_participants_meet_through_the_server() {
    let app = TestApp::spawn().await;
    let meeting = app.create_meeting("Native demo").await;
    let host = app.host_token(&meeting, "Host").await;
    let g1 = app.guest_token(&meeting, "Guest One").await;
    let g2 = app.guest_token(&meeting, "Guest Two").await;
    let mut people = vec![
        enter(&app, host).await,
        enter(&app, g1).await,
        enter(&app, g2).await,
    ];

    // Everyone receives the other two's video and audio.
    let ids: Vec<String> = people.iter().map(|p| p.id.clone()).collect();
    for (i, me) in people.iter().enumerate() {
        for (j, other) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            let media = me.media.clone();
            let other = other.clone();
            wait_for("media from every other participant", || {
                let media = media.clone();
                let other = other.clone();
                async move {
                    let v = media.received(&other, "video");
                    let a = media.received(&other, "audio");
                    (v.packets > 30 && a.packets > 20 && v.keyframes > 0).then_some(())
                }
            })
            .await;
        }
    }
    // Media counters in /metrics moved.
    assert!(app.metric("parley_sfu_packets_out_total").await > 0.0);

    // Chat over the data channel reaches the others.
    people[0]
        .media
        .send_chat("agenda: pricing")
        .await
        .expect("chat");
    for p in &people[1..] {
        let media = p.media.clone();
        wait_for("chat over the data channel", || {
            let media = media.clone();
            async move {
                media
                    .messages()
                    .iter()
                    .any(|m| m.contains("agenda: pricing"))
                    .then_some(())
            }
        })
        .await;
    }

    // The third leaves: the others are told, and its tracks leave their subscriptions.
    let leaver = people.pop().expect("three people");
    if let Some(tx) = leaver.leave {
        let _ = tx.send(());
    }
    let _ = leaver.task.await;
    leaver.media.close().await;
    for p in &people {
        let seen = p.seen.clone();
        let gone = leaver.id.clone();
        wait_for(
            "participant_left and a subscriber offer without the leaver",
            || {
                let seen = seen.clone();
                let gone = gone.clone();
                async move {
                    let s = seen.lock().ok()?;
                    let left = s.iter().any(|m| {
                        m["type"] == "participant_left" && m["participant_id"] == gone.as_str()
                    });
                    let reoffered = s
                        .iter()
                        .rev()
                        .find(|m| m["type"] == "subscribe_offer")
                        .is_some_and(|m| {
                            m["tracks"].as_array().is_some_and(|t| {
                                t.iter().all(|t| t["participant_id"] != gone.as_str())
                            })
                        });
                    (left && reoffered).then_some(())
                }
            },
        )
        .await;
    }
    for p in people {
        p.media.close().await;
        p.task.abort();
    }
    drop(app);
}

/// Waits until `watcher`'s socket was told that `speaker` is the active speaker.
async fn heard_speaking(watcher: &Participant, speaker: &str) {
    let seen = watcher.seen.clone();
    wait_for("the active speaker", || {
        let seen = seen.clone();
        async move {
            let s = seen.lock().ok()?;
            s.iter()
                .any(|m| m["type"] == "active_speaker" && m["participant_id"] == speaker)
                .then_some(())
        }
    })
    .await;
}

/// Waits until `p`'s microphone has sent `frames` more 20 ms frames.
async fn speak_for_frames(p: &Participant, frames: u64) {
    let until = p.media.audio_frames_sent() + frames;
    let media = p.media.clone();
    wait_for("the microphone frames", || {
        let media = media.clone();
        async move { (media.audio_frames_sent() >= until).then_some(()) }
    })
    .await;
}

/// The media plane reports talk time every 5 s; what someone said after the last report reaches
/// the summary anyway: when they leave, and when the meeting ends with them in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_right_before_leaving_and_before_the_end_is_in_the_summary() {
    let app = TestApp::spawn().await;
    let meeting = app.create_meeting("Talk time").await;
    let host_token = app.host_token(&meeting, "Rep").await;
    let guest_token = app.guest_token(&meeting, "Client").await;
    let host = enter(&app, host_token).await;
    let mut guest = enter(&app, guest_token).await;

    // The client speaks (voice-loud levels) until the rep's client highlights her, then about
    // 2 s more, and leaves at once.
    let started = std::time::Instant::now();
    guest.media.set_audio_level(Some(30));
    heard_speaking(&host, &guest.id).await;
    speak_for_frames(&guest, 100).await;
    if let Some(tx) = guest.leave.take() {
        let _ = tx.send(());
    }
    let _ = guest.task.await;
    let guest_spoke = started.elapsed();
    guest.media.close().await;

    // The rep speaks, and the meeting is ended while he still does.
    let started = std::time::Instant::now();
    host.media.set_audio_level(Some(30));
    heard_speaking(&host, &host.id).await;
    speak_for_frames(&host, 75).await;
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/meetings/{}/end", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let host_spoke = started.elapsed();

    let (s, summary) = app
        .get_json(
            &format!("/api/v1/meetings/{}/summary", meeting.id),
            Some(&meeting.host_key),
        )
        .await;
    assert_eq!(s, 200, "{summary}");
    let talked = |name: &str| {
        summary["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["talk_time_secs"].as_u64())
            .unwrap_or_else(|| panic!("{name} in {summary}"))
    };
    // At least the 2 s (1.5 s) spoken after being heard; at most the time spent speaking.
    let (client, rep) = (talked("Client"), talked("Rep"));
    assert!(
        (2..=guest_spoke.as_secs() + 1).contains(&client),
        "the client spoke {guest_spoke:?}, the summary says {client} s: {summary}"
    );
    assert!(
        (1..=host_spoke.as_secs() + 1).contains(&rep),
        "the rep spoke {host_spoke:?}, the summary says {rep} s: {summary}"
    );
    host.media.close().await;
    host.task.abort();
    drop(app);
}
