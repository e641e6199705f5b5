//! Files from the writers as ffprobe (Debian's ffmpeg) reads them: codec names and durations.
//! Skipped, saying so, when ffprobe is not installed; CI installs it, so there it is a real check.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::ogg::OggOpusWriter;
use super::track::{OpusTrack, RtpIn};
use super::webm::WebmWriter;
use super::webm::tests::vp8_frame;

fn ffprobe(path: &Path) -> Option<(String, f64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let codec = v["streams"][0]["codec_name"]
        .as_str()
        .expect("codec")
        .to_owned();
    let duration: f64 = v["format"]["duration"]
        .as_str()
        .expect("duration")
        .parse()
        .expect("f64");
    Some((codec, duration))
}

fn have_ffprobe() -> bool {
    let ok = Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIP: ffprobe not installed (apt-get install -y ffmpeg); container checks not run"
        );
    }
    ok
}

#[test]
fn ffprobe_reads_ogg_and_webm_with_expected_codecs_and_durations() {
    if !have_ffprobe() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // 5 s of Opus with a lost stretch in the middle: concealment keeps the duration.
    let ogg_path = dir.path().join("a.ogg");
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut track = OpusTrack::new(OggOpusWriter::new(
        BufWriter::new(File::create(&ogg_path).unwrap()),
        1,
        vec![],
    ));
    let t0 = Instant::now();
    let pcm: Vec<i16> = (0..960)
        .map(|i| ((i as f32 * 0.1).sin() * 8000.0) as i16)
        .collect();
    for i in 0..250u32 {
        if (100..120).contains(&i) {
            continue;
        }
        let payload = enc.encode_vec(&pcm, 1500).unwrap();
        track
            .on_packet(&RtpIn {
                layer: 0,
                seq: i as u16,
                ts: i * 960,
                marker: false,
                payload: &payload,
                arrival: t0 + Duration::from_millis(u64::from(i) * 20),
            })
            .unwrap();
    }
    let (out, _, _) = track.close().unwrap();
    drop(out);
    let (codec, duration) = ffprobe(&ogg_path).expect("ffprobe ogg");
    assert_eq!(codec, "opus");
    assert!((duration - 5.0).abs() < 0.5, "ogg duration {duration}");

    // 5 s of VP8 at 30 fps with a keyframe every 2 s.
    let webm_path = dir.path().join("v.webm");
    let mut w = WebmWriter::new(BufWriter::new(File::create(&webm_path).unwrap()));
    for i in 0..150u64 {
        let key = i % 60 == 0;
        w.write_frame(i * 1000 / 30, key, &vp8_frame(key, 640, 360, 400))
            .unwrap();
    }
    drop(w.close().unwrap());
    let (codec, duration) = ffprobe(&webm_path).expect("ffprobe webm");
    assert_eq!(codec, "vp8");
    assert!((duration - 5.0).abs() < 0.5, "webm duration {duration}");
}
