// Temporary probe (sfu-perf helper); deleted after the analysis.
mod harness;
use harness::Net;
use parley_sfu::TrackSource;
use std::time::Duration;

#[test]
fn probe() {
    let n: usize = std::env::var("PROBE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut net = Net::new();
    let host = net.join_simulcast("host");
    let viewers: Vec<usize> = (1..n)
        .map(|i| net.join(&format!("viewer{i}"), false))
        .collect();
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
    drop(std::mem::take(&mut net.clients));
    net.events = Vec::new();
    // dhat's t-gmax is the peak; make "now" the point of interest by holding here
    eprintln!("probe done");
    std::hint::black_box(&net);
    // Leak the net so dhat's at-exit data shows what the SFU holds (t-end).
    std::mem::forget(net);
}
