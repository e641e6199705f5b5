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
        net.run_until(Duration::from_secs(30), |n| n.clients[bob].connected.1),
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
