//! The media plane end to end with native WebRTC peers: publishers' media reaches every other
//! participant through the SFU's single UDP port, and chat crosses the data channels.

use std::time::Duration;

use parley_sfu::{ParticipantOptions, SfuConfig, SfuEvent, TrackDescriptor, TrackSource};
use parley_tests::media_client::{MediaClient, wait_for};
use tokio::sync::mpsc::UnboundedReceiver;

fn options(name: &str) -> ParticipantOptions {
    ParticipantOptions {
        display_name: name.into(),
        can_publish: true,
        can_subscribe: true,
        can_screen_share: true,
    }
}

fn source(s: &str) -> TrackSource {
    match s {
        "microphone" => TrackSource::Microphone,
        _ => TrackSource::Camera,
    }
}

/// Waits up to `within` for the next media-plane event; answers subscriber offers on the way and
/// returns the event.
async fn next_event(
    sfu: &parley_sfu::SfuHandle,
    events: &mut UnboundedReceiver<SfuEvent>,
    clients: &[(&str, &MediaClient)],
    within: Duration,
) -> Option<SfuEvent> {
    let ev = tokio::time::timeout(within, events.recv()).await.ok()??;
    if let SfuEvent::SubscriberOffer {
        room,
        participant,
        sdp,
        ..
    } = &ev
        && let Some((_, c)) = clients.iter().find(|(id, _)| id == participant)
    {
        let answer = c.subscriber_offer(sdp.clone()).await.expect("answer");
        sfu.subscriber_answer(room, participant, answer)
            .await
            .expect("subscriber answer accepted");
    }
    Some(ev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_native_peers_exchange_audio_video_and_chat() {
    let (sfu, mut events) = parley_sfu::start(SfuConfig {
        udp_bind: "0.0.0.0:0".parse().unwrap(),
        announced_ips: vec!["127.0.0.1".parse().unwrap()],
    })
    .expect("media plane starts");
    let names = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for name in names {
        sfu.join("room1", name, options(name)).await.expect("join");
        let c = MediaClient::new(true).await.expect("client");
        let (offer, tracks) = c.publisher_offer().await.expect("offer");
        let tracks = tracks
            .into_iter()
            .map(|(mid, s)| TrackDescriptor {
                mid,
                source: source(s),
            })
            .collect();
        let answer = sfu
            .publish("room1", name, offer, tracks)
            .await
            .expect("publish");
        c.publisher_answer(answer).await.expect("answer applied");
        c.start_media().await.expect("media starts");
        clients.push(c);
    }
    let everyone_gets_everything = |clients: &[MediaClient]| {
        names.iter().enumerate().all(|(i, _)| {
            names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, other)| {
                    clients[i].received(other, "video").packets > 30
                        && clients[i].received(other, "audio").packets > 20
                })
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !everyone_gets_everything(&clients) && tokio::time::Instant::now() < deadline {
        let pairs: Vec<(&str, &MediaClient)> = names.iter().copied().zip(clients.iter()).collect();
        next_event(&sfu, &mut events, &pairs, Duration::from_millis(100)).await;
    }
    for (i, me) in names.iter().enumerate() {
        for other in names.iter().filter(|o| *o != me) {
            let v = clients[i].received(other, "video");
            let a = clients[i].received(other, "audio");
            assert!(
                v.packets > 30,
                "{me} got {} video packets from {other}",
                v.packets
            );
            assert!(
                a.packets > 20,
                "{me} got {} audio packets from {other}",
                a.packets
            );
            assert!(v.keyframes > 0, "{me} saw no keyframe from {other}");
            assert_eq!(v.ssrcs.len(), 1, "one continuous stream per track");
        }
    }
    let m = sfu.metrics();
    assert!(parley_sfu::SfuMetrics::get(&m.packets_out) > 0);

    // Chat over the data channel reaches the others, stamped with the sender.
    clients[0]
        .send_chat("hello from alice")
        .await
        .expect("chat sent");
    let got = wait_for(Duration::from_secs(10), || {
        clients[1..].iter().all(|c| {
            c.messages()
                .iter()
                .any(|m| m.contains("hello from alice") && m.contains("\"from\":\"alice\""))
        })
    })
    .await;
    assert!(got, "chat relayed: {:?}", clients[1].messages());

    // When bob leaves, alice is offered a subscriber description without his tracks.
    sfu.leave("room1", "bob");
    let pairs: Vec<(&str, &MediaClient)> = names.iter().copied().zip(clients.iter()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut bob_gone = false;
    while !bob_gone && tokio::time::Instant::now() < deadline {
        if let Some(SfuEvent::SubscriberOffer {
            participant,
            tracks,
            ..
        }) = next_event(&sfu, &mut events, &pairs, Duration::from_millis(200)).await
            && participant == "alice"
        {
            bob_gone = tracks.iter().all(|t| t.participant_id != "bob");
        }
    }
    assert!(
        bob_gone,
        "bob's tracks were removed from alice's subscription"
    );
    for c in clients {
        c.close().await;
    }
    sfu.shutdown().await;
}
