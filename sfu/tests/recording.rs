//! Recording through the whole core: real DTLS-SRTP publishers in the in-memory network, the
//! tap on the forwarding path, the writer thread, files on disk.

mod harness;

use std::time::Duration;

use harness::Net;
use parley_sfu::{RecordingEvent, SfuMetrics};

#[test]
fn a_recorded_room_produces_files_and_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let bob = net.join("bob", false);
    net.send(alice, true, true, 1200);
    assert!(
        net.run_until(Duration::from_secs(30), |n| n.subscriber_up(bob)),
        "bob connects: {}",
        net.sfu.debug_state()
    );
    assert!(!net.sfu.is_recording("room"));
    net.sfu
        .start_recording(net.now, "room", dir.path())
        .expect("start");
    assert!(
        net.sfu
            .start_recording(net.now, "room", dir.path())
            .is_err(),
        "already recording"
    );
    assert!(
        net.sfu
            .start_recording(net.now, "nope", dir.path())
            .is_err(),
        "no such room"
    );
    for i in 0..100 {
        net.send(alice, false, false, 60);
        if i % 2 == 0 {
            net.send(alice, true, i % 50 == 0, 900);
        }
        net.advance(Duration::from_millis(20));
    }
    assert!(net.sfu.stop_recording(net.now, "room"));
    assert!(
        !net.sfu.stop_recording(net.now, "room"),
        "stopping twice is a no-op"
    );
    net.sfu.join_recordings();
    let events: Vec<RecordingEvent> =
        std::iter::from_fn(|| net.sfu.poll_recording_event()).collect();
    assert!(matches!(&events[0], RecordingEvent::Started { room, .. } if room == "room"));
    assert!(matches!(&events[1], RecordingEvent::Stopped { room } if room == "room"));
    let Some(RecordingEvent::Finished { files, .. }) = events.last() else {
        panic!("finished expected: {events:?}");
    };
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected = vec!["alice-camera.webm", "alice-microphone.ogg"];
    // The mixed-down track needs libopus (the `mixdown` feature).
    if cfg!(feature = "mixdown") {
        expected.push("mixed.ogg");
    }
    assert_eq!(names, expected);
    let room_dir = dir.path().join("room");
    for f in files {
        assert!(f.starts_with(&room_dir));
        assert!(
            std::fs::metadata(f).unwrap().len() > 100,
            "{f:?} has content"
        );
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(room_dir.join("alice-microphone.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["codec"], "opus");
    assert_eq!(sidecar["complete"], true);
    assert!(sidecar["start_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(sidecar["stats"]["packets"].as_u64().unwrap() >= 90);
}

/// A video file starts at a keyframe: without a request at the start, the first seconds of a
/// camera that sends keyframes rarely would be missing from the recording.
#[test]
fn starting_a_recording_asks_each_video_publisher_for_a_keyframe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Net::new();
    let alice = net.join("alice", true);
    net.send(alice, true, true, 1200);
    assert!(
        net.run_until(Duration::from_secs(30), |n| n.clients[alice].connected.0),
        "alice's publisher connects: {}",
        net.sfu.debug_state()
    );
    // Alone in the room and past any earlier request's interval: nobody asks for keyframes.
    for _ in 0..100 {
        net.send(alice, true, false, 900);
        net.advance(Duration::from_millis(20));
    }
    let before = SfuMetrics::get(&net.metrics.plis_sent);
    net.sfu
        .start_recording(net.now, "room", dir.path())
        .expect("start");
    assert!(
        net.run_until(Duration::from_secs(2), |n| SfuMetrics::get(
            &n.metrics.plis_sent
        ) > before),
        "a PLI goes to alice when the recording starts: {}",
        net.sfu.debug_state()
    );
    assert!(net.sfu.stop_recording(net.now, "room"));
    net.sfu.join_recordings();
}

fn sidecar_duration_ms(dir: &std::path::Path, stem: &str) -> u64 {
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).unwrap()).unwrap();
    assert_eq!(sidecar["complete"], true, "{stem}: {sidecar}");
    sidecar["duration_ms"].as_u64().unwrap()
}

/// A camera file lasts as long as its track was in the recording: to its owner's leaving, or
/// to the stop when the camera paused before it (the last picture stays, as it did live).
#[test]
fn a_video_file_ends_when_its_track_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Net::new();
    let alice = net.join("alice", true);
    let bob = net.join("bob", true);
    net.send(alice, true, true, 1200);
    net.send(bob, true, true, 1200);
    assert!(
        net.run_until(Duration::from_secs(30), |n| n.clients[alice].connected.0
            && n.clients[bob].connected.0),
        "both publishers connect: {}",
        net.sfu.debug_state()
    );
    net.sfu
        .start_recording(net.now, "room", dir.path())
        .expect("start");
    // 90 frames at the 33.3 ms the harness's RTP timestamps advance by: 3 s of recording. Bob
    // leaves at 1.5 s; Alice's camera stops sending at 2 s and the recording stops at 3 s.
    let frame = Duration::from_micros(33_333);
    for i in 0..90 {
        if i < 60 {
            net.send(alice, true, i % 30 == 0, 900);
        }
        if i < 45 {
            net.send(bob, true, i % 30 == 0, 900);
        }
        if i == 45 {
            net.sfu.leave(net.now, "room", "bob");
        }
        net.advance(frame);
    }
    assert!(net.sfu.stop_recording(net.now, "room"));
    net.sfu.join_recordings();
    let room_dir = dir.path().join("room");
    let bob_ms = sidecar_duration_ms(&room_dir, "bob-camera");
    let alice_ms = sidecar_duration_ms(&room_dir, "alice-camera");
    assert!(
        (1400..=1600).contains(&bob_ms),
        "bob's camera: {bob_ms} ms, left at 1500"
    );
    assert!(
        (2900..=3100).contains(&alice_ms),
        "alice's camera: {alice_ms} ms, recording stopped at 3000"
    );
}
