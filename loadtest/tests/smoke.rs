//! Smoke test of the media load generator: a tiny webinar (one publisher, three subscribers)
//! for a few seconds against Parley started in this process, and against Janus when it is
//! installed. Asserts only that media flowed to every subscriber and that the written report
//! reads back — no timing or throughput figures (those are for docs/PERFORMANCE.md).

use std::time::Duration;

use parley_loadtest::media::report::Report;
use parley_loadtest::media::{self, Options, ParleyTarget, Scenario, System, server};

fn smoke_options(system: System, out: &std::path::Path) -> Options {
    let mut o = Options::new(Scenario::Webinar, vec![3]);
    o.systems = vec![system];
    o.parley = ParleyTarget::InProcess;
    o.settle = Duration::from_secs(2);
    o.window = Duration::from_secs(3);
    o.out_dir = Some(out.to_owned());
    o
}

fn check(report: &Report, out: &std::path::Path, system: &str) {
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let w = report
        .windows
        .iter()
        .find(|w| w.system == system)
        .unwrap_or_else(|| panic!("no {system} window in {report:?}"));
    assert_eq!(w.participants, 4, "{w:?}");
    assert_eq!(w.received_packets.len(), 3, "three subscribers: {w:?}");
    assert!(
        w.received_packets.iter().all(|&p| p > 0),
        "every subscriber received media: {:?}",
        w.received_packets
    );
    // The publisher's send stamps came back out of the forwarded payloads.
    assert!(w.delay_p50_ms.is_some(), "{w:?}");
    let text = std::fs::read_to_string(out.join("webinar-3.json")).expect("report written");
    let parsed: Report = serde_json::from_str(&text).expect("the report parses");
    assert_eq!(parsed.windows.len(), report.windows.len());
    let md = std::fs::read_to_string(out.join("webinar-3.md")).expect("markdown written");
    assert!(md.contains(&format!("| {system} | 3 | 4 |")), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_webinar_gets_media_through_parley() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = media::run(&smoke_options(System::Parley, out.path()))
        .await
        .expect("the run completes");
    check(&report, out.path(), "Parley");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_webinar_gets_media_through_janus() {
    if server::janus_available().is_none() {
        eprintln!("skipped: the janus binary is not installed (Debian: apt-get install janus)");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let report = media::run(&smoke_options(System::Janus, out.path()))
        .await
        .expect("the run completes");
    check(&report, out.path(), "Janus");
}
