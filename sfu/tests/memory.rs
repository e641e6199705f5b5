//! What a connected participant costs the media plane in memory (issue 7: under 1 MB each).
//!
//! A counting global allocator tracks the bytes this process holds. A webinar of one simulcast
//! host and 99 viewers runs in the in-memory network with media flowing (so NACK caches hold
//! packets); then the native client peers are dropped and what is still allocated is the
//! `Sfu`'s: its 200 peer connections, down-tracks, caches and maps. The test binary holds this one
//! test so no other test's allocations are counted.

mod counting;
mod harness;

use std::time::Duration;

use counting::live;
use harness::Net;
use parley_sfu::TrackSource;

const PARTICIPANTS: usize = 100;
const BUDGET: isize = 1 << 20;

#[test]
fn a_connected_participant_costs_the_media_plane_under_a_megabyte() {
    let mut net = Net::new();
    let empty = live();
    let host = net.join_simulcast("host");
    let viewers: Vec<usize> = (1..PARTICIPANTS)
        .map(|i| net.join(&format!("viewer{i}"), false))
        .collect();
    // 4 s of simulcast video and audio from the host (a keyframe per second). A third of the
    // viewers on each layer, as in the webinar benchmark, once the down-tracks exist.
    for tick in 0..400u32 {
        if tick == 20 {
            for (i, v) in viewers.iter().enumerate() {
                let (w, h) = [(160, 90), (640, 360), (1280, 720)][i % 3];
                let id = net.clients[*v].id.clone();
                net.sfu
                    .video_size("room", &id, "host", TrackSource::Camera, w, h);
            }
        }
        let key = tick.is_multiple_of(100);
        for (layer, size) in [300, 700, 1100].into_iter().enumerate() {
            net.send_layer(host, layer, key, size);
        }
        if tick.is_multiple_of(2) {
            net.send(host, false, false, 80);
        }
        net.advance(Duration::from_millis(10));
    }
    let connected = viewers
        .iter()
        .filter(|v| net.clients[**v].connected.1)
        .count();
    assert_eq!(connected, PARTICIPANTS - 1, "{}", net.sfu.debug_state());
    let received = viewers
        .iter()
        .filter(|v| net.received_from(**v, "host", "video").len() > 100)
        .count();
    assert_eq!(
        received,
        PARTICIPANTS - 1,
        "every viewer is receiving video"
    );
    let with_clients = live() - empty;

    // What remains once the native peers are gone is the media plane's.
    drop(std::mem::take(&mut net.clients));
    net.events = Vec::new();
    let sfu = live() - empty;
    let per_participant = sfu / PARTICIPANTS as isize;
    eprintln!(
        "memory: {PARTICIPANTS} participants; process {} KiB with the native peers, media plane {} KiB = {} KiB per participant",
        with_clients / 1024,
        sfu / 1024,
        per_participant / 1024
    );
    assert!(
        per_participant < BUDGET,
        "a participant costs {per_participant} bytes"
    );

    // Everyone leaving gives the memory back (nothing per participant outlives it).
    let now = net.now;
    net.sfu.close_room(now, "room");
    while net.sfu.poll_transmit().is_some() {}
    while net.sfu.poll_event().is_some() {}
    let after = live() - empty;
    eprintln!("memory: after everyone left {} KiB", after / 1024);
    assert!(
        after < sfu / 10,
        "{after} bytes still held after everyone left (was {sfu})"
    );
}
