//! The sans-IO core driven through an in-memory network of native peers under a simulated clock.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::Net;
use parley_sfu::{SfuEvent, SfuMetrics, TrackSource};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

fn plis(net: &Net, client: usize) -> usize {
    net.clients[client]
        .publisher_rtcp
        .iter()
        .filter(|p| p.as_any().downcast_ref::<PictureLossIndication>().is_some())
        .count()
}

/// Alice and Bob join; once Bob's subscriber connection is up, Alice sends `frames` rounds of a
/// video packet (a keyframe every 50) and an audio packet, 10 ms apart.
fn alice_streams_to_bob(net: &mut Net, frames: usize) -> (usize, usize) {
    let alice = net.join("alice", true);
    let bob = net.join("bob", true);
    // Bob's subscriber connection is offered once alice's first packets announce her tracks.
    net.send(alice, true, true, 1000);
    net.send(alice, false, false, 80);
    assert!(net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob)));
    for i in 0..frames {
        net.send(alice, true, i % 50 == 0, 1000);
        net.send(alice, false, false, 80);
        net.advance(Duration::from_millis(10));
    }
    (alice, bob)
}

#[test]
fn media_reaches_the_other_participant_as_one_continuous_stream() {
    let mut net = Net::new();
    let (alice, bob) = alice_streams_to_bob(&mut net, 200);
    let video = net.received_from(bob, "alice", "video");
    let audio = net.received_from(bob, "alice", "audio");
    assert!(video.len() > 150, "bob got {} video packets", video.len());
    assert!(audio.len() > 150, "bob got {} audio packets", audio.len());
    let ssrcs: BTreeSet<u32> = video.iter().map(|p| p.0).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC towards the subscriber");
    for w in video.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "sequence numbers are continuous: {:?}",
            video.iter().take(12).map(|p| p.1).collect::<Vec<_>>()
        );
    }
    // Alice does not receive her own media.
    assert!(net.received_from(alice, "alice", "video").is_empty());
    // Everyone got an event announcing alice's tracks.
    assert!(net.events.iter().any(|e| matches!(e, SfuEvent::TracksChanged { participant, tracks, .. } if participant == "alice" && tracks.len() == 2)));
}

#[test]
fn a_new_subscriber_gets_a_keyframe_requested_and_plis_are_rate_limited() {
    let mut net = Net::new();
    let alice = net.join("alice", true);
    for _ in 0..20 {
        net.send(alice, true, false, 500);
        net.advance(Duration::from_millis(10));
    }
    let m = net.metrics.clone();
    let before = SfuMetrics::get(&m.plis_sent);
    let bob = net.join("bob", false);
    net.send(alice, true, false, 500);
    assert!(net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob)));
    // The new subscriber has no keyframe yet: the SFU asks alice for one.
    assert!(net.run_until(Duration::from_secs(2), |n| SfuMetrics::get(
        &n.metrics.plis_sent
    ) > before));
    net.send(alice, true, true, 500);
    // Let the request interval pass, then a burst of PLIs from bob within 100 ms is relayed once.
    net.run_until(Duration::from_secs(1), |_| false);
    let received_before = SfuMetrics::get(&m.plis_received);
    let sent_before = SfuMetrics::get(&m.plis_sent);
    for _ in 0..10 {
        net.send(alice, true, false, 500);
        net.sfu_request_pli_from(bob);
        net.advance(Duration::from_millis(10));
    }
    let relayed = SfuMetrics::get(&m.plis_sent) - sent_before;
    assert!(
        SfuMetrics::get(&m.plis_received) - received_before >= 10,
        "the SFU saw bob's PLIs"
    );
    assert_eq!(
        relayed, 1,
        "a burst of 10 PLIs within 100 ms is relayed once"
    );
    let _ = plis(&net, alice);
}

#[test]
fn lost_packets_are_retransmitted_from_the_cache() {
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let bob = net.join("bob", false);
    net.send(alice, true, true, 1000);
    assert!(net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob)));
    // The subscriber's first keyframe (alice answers the SFU's PLI).
    net.send(alice, true, true, 1000);
    net.advance(Duration::from_millis(10));
    // Drop every 7th SRTP datagram the SFU sends while media flows.
    let mut n = 0u32;
    net.drop_to_client = Some(Box::new(move |d: &[u8]| {
        if d.len() > 900 && (128..192).contains(&d[0]) {
            n += 1;
            n.is_multiple_of(7)
        } else {
            false
        }
    }));
    for _ in 0..100 {
        net.send(alice, true, false, 1000);
        net.advance(Duration::from_millis(10));
    }
    net.drop_to_client = None;
    net.run_until(Duration::from_secs(2), |_| false);
    let got: BTreeSet<u16> = net
        .received_from(bob, "alice", "video")
        .iter()
        .map(|p| p.1)
        .collect();
    assert!(
        !got.is_empty(),
        "{} received: {:?} streams: {:?} out: {} dropped {}",
        net.sfu.debug_state(),
        net.clients[bob].received.keys().collect::<Vec<_>>(),
        net.clients[bob].stream_of,
        SfuMetrics::get(&net.metrics.packets_out),
        SfuMetrics::get(&net.metrics.packets_dropped)
    );
    let (lo, hi) = (*got.first().unwrap(), *got.last().unwrap());
    let missing = (lo..=hi).filter(|s| !got.contains(s)).count();
    assert!(
        SfuMetrics::get(&net.metrics.nacks_received) > 0,
        "bob sent NACKs; rtcp datagrams from bob: {}, missing {missing}",
        net.clients[bob].rtcp_sent
    );
    assert!(
        SfuMetrics::get(&net.metrics.retransmissions) > 0,
        "the SFU retransmitted"
    );
    assert_eq!(missing, 0, "every lost packet was repaired");
}

#[test]
fn datagrams_from_unknown_sources_are_counted_and_ignored() {
    let mut net = Net::new();
    let before = SfuMetrics::get(&net.metrics.unknown_source_datagrams);
    let stranger = "10.9.9.9:5000".parse().unwrap();
    let sfu = harness::SFU_ADDR.parse().unwrap();
    let now = net.now;
    net.sfu.handle_datagram(
        now,
        sfu,
        stranger,
        &[0x80, 96, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 9, 9],
    );
    net.sfu
        .handle_datagram(now, sfu, stranger, &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12]);
    net.sfu.handle_datagram(now, sfu, stranger, &[]);
    assert_eq!(
        SfuMetrics::get(&net.metrics.unknown_source_datagrams) - before,
        3
    );
    assert!(net.sfu.poll_transmit().is_none());
}

#[test]
fn h264_is_forwarded_when_both_sides_offer_it() {
    let mut net = Net::new();
    let alice = net.join_with_video("alice", true, "video/H264");
    let bob = net.join("bob", false);
    net.send(alice, true, true, 1000);
    assert!(net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob)));
    for i in 0..60u32 {
        net.send(alice, true, i.is_multiple_of(30), 1000);
        net.advance(Duration::from_millis(10));
    }
    let video = net.received_from(bob, "alice", "video");
    assert!(video.len() > 50, "bob got {} H.264 packets", video.len());
    let offer = net
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::SubscriberOffer {
                participant, sdp, ..
            } if participant == "bob" => Some(sdp.clone()),
            _ => None,
        })
        .expect("bob was offered alice's tracks");
    assert!(
        offer.contains("H264/90000"),
        "the subscriber offer carries H.264"
    );
}

#[test]
fn simulcast_layers_follow_render_size_and_switch_seamlessly() {
    let mut net = Net::new();
    let alice = net.join_simulcast("alice");
    let bob = net.join("bob", false);
    // Keyframes on every layer every 300 ms, 10 ms apart per layer (q 300 B, h 700 B, f 1100 B).
    let mut tick = 0u32;
    let mut run = |net: &mut Net, ms: u32| {
        for _ in 0..ms / 10 {
            let key = tick.is_multiple_of(30);
            net.send_layer(alice, 0, key, 300);
            net.send_layer(alice, 1, key, 700);
            net.send_layer(alice, 2, key, 1100);
            net.advance(Duration::from_millis(10));
            tick += 1;
        }
    };
    run(&mut net, 200);
    let connected = net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob));
    assert!(connected, "{}", net.sfu.debug_state());
    run(&mut net, 1500);
    let sizes = |net: &Net| -> Vec<usize> {
        net.received_from(bob, "alice", "video")
            .iter()
            .map(|p| p.3)
            .collect()
    };
    // Unknown bandwidth: start on the lowest layer.
    assert!(
        sizes(&net).iter().all(|s| *s == 300),
        "starts on q: {:?}",
        sizes(&net)
    );
    // A 640x360 tile justifies h; after the up-switch delay the subscriber climbs to it.
    net.sfu
        .video_size("room", "bob", "alice", TrackSource::Camera, 640, 360);
    run(&mut net, 5000);
    assert_eq!(sizes(&net).last(), Some(&700), "climbed to h");
    // A thumbnail needs only q: down at the next keyframe.
    net.sfu
        .video_size("room", "bob", "alice", TrackSource::Camera, 160, 90);
    run(&mut net, 1000);
    assert_eq!(sizes(&net).last(), Some(&300), "back to q");
    // Across both switches the subscriber saw one SSRC and continuous sequence numbers.
    let video = net.received_from(bob, "alice", "video");
    let ssrcs: BTreeSet<u32> = video.iter().map(|p| p.0).collect();
    assert_eq!(ssrcs.len(), 1);
    for w in video.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "continuous across layer switches"
        );
        assert!(
            w[1].2.wrapping_sub(w[0].2) < 90_000,
            "timestamps move forward smoothly"
        );
    }
    assert!(SfuMetrics::get(&net.metrics.layer_switches) >= 2);
}

/// Talk time reported in `TalkTime` increments for `who` so far.
fn talk_reported(net: &Net, who: &str) -> u64 {
    net.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::TalkTime {
                participant,
                speaking_ms,
                ..
            } if participant == who => Some(*speaking_ms),
            _ => None,
        })
        .sum()
}

#[test]
fn talk_before_leaving_is_handed_over_not_lost() {
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let bob = net.join("bob", true);
    // Alice speaks for 2 s while bob is silent, then bob speaks for 1 s (20 ms packets).
    for _ in 0..100 {
        net.send_audio_level(alice, 30);
        net.send_audio_level(bob, 127);
        net.advance(Duration::from_millis(20));
    }
    for _ in 0..50 {
        net.send_audio_level(bob, 35);
        net.advance(Duration::from_millis(20));
    }
    // Increments come every 5 s: none has covered alice's speech yet.
    let reported = talk_reported(&net, "alice");
    assert!(reported < 1000, "reported {reported} ms so far");

    let talk = net
        .sfu
        .leave(net.now, "room", "alice")
        .expect("alice was in the room");
    assert_eq!(talk.participant, "alice");
    assert!(
        (1900..=2100).contains(&talk.speaking_ms),
        "alice talked 2 s, the total says {} ms",
        talk.speaking_ms
    );
    assert!(talk.speaking_ms >= reported);
    // Nothing more is reported for her: the total was the last word.
    net.advance(Duration::from_secs(6));
    assert_eq!(talk_reported(&net, "alice"), reported);
    assert_eq!(
        net.sfu.leave(net.now, "room", "alice"),
        None,
        "gone already"
    );

    // Closing the room hands over everyone's total the same way.
    let totals = net.sfu.close_room(net.now, "room");
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(totals[0].participant, "bob");
    assert!(
        (900..=1100).contains(&totals[0].speaking_ms),
        "bob talked 1 s: {totals:?}"
    );
    assert!(totals[0].speaking_ms >= talk_reported(&net, "bob"));
}

#[test]
fn chat_up_to_the_size_limit_is_relayed_to_the_others_with_the_sender() {
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let bob = net.join("bob", false);
    let chat = serde_json::json!({"type": "chat", "text": "x".repeat(4000)}).to_string();
    // The data channels open once SCTP is up on the publisher connections.
    let open = net.run_until(Duration::from_secs(10), |n| {
        n.clients[alice].data_open && n.clients[bob].data_open
    });
    assert!(open, "both data channels opened");
    assert!(net.send_data(alice, &chat), "alice sent");
    let delivered = net.run_until(Duration::from_secs(5), |n| {
        !n.clients[bob].data_received.is_empty()
    });
    assert!(
        delivered,
        "bob received the chat message; the SFU saw it: {}",
        net.events
            .iter()
            .any(|e| matches!(e, SfuEvent::Data { participant, .. } if participant == "alice"))
    );
    let got: serde_json::Value =
        serde_json::from_str(&net.clients[bob].data_received[0]).expect("JSON");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["text"].as_str().map(str::len), Some(4000));
    assert!(
        net.clients[alice].data_received.is_empty(),
        "the sender does not get its own message back"
    );
}

/// Joining waits for no timer of ours: once ICE connects, the SFU (the DTLS client of every
/// connection) sends its first handshake flight at once rather than at the connection's next
/// ICE tick, 200 ms later — which was most of a join on loopback — and the first keyframe after
/// the subscriber connection is up reaches the subscriber, even though the room's periodic
/// layer selection has not run yet. Simulated time, so the figures are exact rather than
/// measurements.
#[test]
fn a_joiner_sees_the_first_keyframe_without_waiting_for_a_timer() {
    let mut net = Net::new();
    let started = net.now;
    let alice = net.join("alice", true);
    let publisher_up = net.now - started;
    assert!(
        publisher_up < Duration::from_millis(100),
        "alice's publisher connection took {publisher_up:?} of simulated time"
    );
    let bob = net.join("bob", false);
    net.send(alice, true, true, 1000);
    let offered = net.now;
    assert!(net.run_until(Duration::from_secs(10), |n| n.subscriber_up(bob)));
    let subscriber_up = net.now - offered;
    assert!(
        subscriber_up < Duration::from_millis(100),
        "bob's subscriber connection took {subscriber_up:?} of simulated time"
    );
    net.send(alice, true, true, 1000);
    assert_eq!(
        net.received_from(bob, "alice", "video").len(),
        1,
        "bob got the keyframe alice sent once his connection was up"
    );
}

/// The SFU writes the subscribers' sender reports itself (forwarded packets bypass rtc's
/// sender-report interceptor): the receiving side must see reports for each stream it gets,
/// counting the packets the SFU sent it, as a browser uses them for audio/video sync and stats.
/// With either profile the SFU offers (AES-GCM, and AES-CM, which Chromium picks) the media
/// leaves through the SFU's own SRTP; with that turned off, through rtc's, and the subscriber
/// gets the same.
#[test]
fn subscribers_get_media_and_sender_reports_with_either_srtp_profile_and_path() {
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile as P;
    for own_srtp in [true, false] {
        sender_reports_case(None, own_srtp);
        sender_reports_case(Some(vec![P::Srtp_Aead_Aes_128_Gcm]), own_srtp);
        sender_reports_case(Some(vec![P::Srtp_Aes128_Cm_Hmac_Sha1_80]), own_srtp);
    }
}

fn sender_reports_case(
    profiles: Option<Vec<rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile>>,
    own_srtp: bool,
) {
    let mut net = Net::new();
    net.sfu.set_own_srtp(own_srtp);
    net.subscriber_srtp_profiles = profiles.clone();
    let (_, bob) = alice_streams_to_bob(&mut net, 300);
    let video = net.received_from(bob, "alice", "video").len() as u64;
    let audio = net.received_from(bob, "alice", "audio").len() as u64;
    assert!(
        video > 250 && audio > 250,
        "{profiles:?}: bob got {video} video and {audio} audio packets"
    );
    assert_eq!(
        net.sfu.forwards_with_own_srtp("room", "bob"),
        Some(own_srtp),
        "{profiles:?}"
    );
    let own = parley_sfu::SfuMetrics::get(&net.metrics.own_srtp_connections);
    let rtc = parley_sfu::SfuMetrics::get(&net.metrics.rtc_srtp_connections);
    assert_eq!(
        (own > 0, rtc > 0),
        (own_srtp, !own_srtp),
        "{own} own, {rtc} rtc"
    );
    let c = &net.clients[bob];
    let mut ssrcs: Vec<u32> = c
        .received
        .values()
        .flat_map(|r| r.packets.first().map(|p| p.0))
        .collect();
    ssrcs.sort_unstable();
    assert_eq!(ssrcs.len(), 2, "{profiles:?}: two streams");
    for ssrc in ssrcs {
        let reports: Vec<_> = c.sender_reports.iter().filter(|r| r.ssrc == ssrc).collect();
        // 3 s of media at one report a second.
        assert!(
            reports.len() >= 2,
            "{profiles:?}: {} sender reports for SSRC {ssrc} (all: {:?})",
            reports.len(),
            c.sender_reports
        );
        let last = reports.last().expect("a report");
        // The last report came at most one interval before the end: it counts at least what
        // was sent up to then, and never more than arrived in all (nothing is lost here).
        assert!(
            last.packet_count >= 150 && u64::from(last.packet_count) <= video.max(audio),
            "{profiles:?}: a report counted {} packets (bob got {video} video, {audio} audio)",
            last.packet_count
        );
        // Consecutive reports advance the wall clock and the RTP clock together.
        let (a, b) = (reports[reports.len() - 2], last);
        assert!(
            b.ntp_time > a.ntp_time && b.rtp_time != a.rtp_time,
            "{a:?} → {b:?}"
        );
    }
}
