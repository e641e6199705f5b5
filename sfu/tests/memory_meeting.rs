//! What a participant of a full meeting costs the media plane in memory (issue 7: under 1 MB
//! each). Unlike the webinar (`memory.rs`), everyone here publishes a simulcast camera and a
//! microphone and receives the other fifteen, so a participant holds two connections and 30
//! down-tracks with their caches: the cost grows with the meeting (about 25 KiB per other
//! participant, measured with this test: 320 KiB each at 4 people, 621 at 16), and 16 is the
//! gallery size the load test's meeting scenario reaches. The test binary holds this one test so no other test's allocations are
//! counted.

mod counting;
mod harness;

use std::time::Duration;

use counting::live;
use harness::Net;

const PARTICIPANTS: usize = 16;
const BUDGET: isize = 1 << 20;

#[test]
fn a_participant_of_a_sixteen_person_meeting_costs_the_media_plane_under_a_megabyte() {
    let mut net = Net::new();
    let empty = live();
    let people: Vec<usize> = (0..PARTICIPANTS)
        .map(|i| net.join_simulcast(&format!("p{i}")))
        .collect();
    // 4 s of everyone's three layers and microphone (a keyframe per second).
    for tick in 0..400u32 {
        let key = tick.is_multiple_of(100);
        for &p in &people {
            for (layer, size) in [300, 700, 1100].into_iter().enumerate() {
                net.send_layer(p, layer, key, size);
            }
            if tick.is_multiple_of(2) {
                net.send(p, false, false, 80);
            }
        }
        net.advance(Duration::from_millis(10));
    }
    for &p in &people {
        let name = net.clients[p].id.clone();
        let others = people.iter().filter(|&&o| o != p);
        for &o in others {
            let from = net.clients[o].id.clone();
            assert!(
                net.received_from(p, &from, "video").len() > 100,
                "{name} receives {from}'s video"
            );
        }
    }

    // What remains once the native peers are gone is the media plane's.
    drop(std::mem::take(&mut net.clients));
    net.events = Vec::new();
    let sfu = live() - empty;
    let per_participant = sfu / PARTICIPANTS as isize;
    eprintln!(
        "memory: {PARTICIPANTS}-person meeting, media plane {} KiB = {} KiB per participant",
        sfu / 1024,
        per_participant / 1024
    );
    assert!(
        per_participant < BUDGET,
        "a participant costs {per_participant} bytes"
    );
}
