//! Files from the writers as ffprobe (Debian's ffmpeg) reads them: codec names and durations.
//! Skipped, saying so, when ffprobe is not installed; CI installs it, so there it is a real check.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::composite::{CompositeError, CompositeOptions, compose, ffmpeg_available};
use super::mp4::Mp4Writer;
use super::track::tests::packetize_h264;
use super::track::{H264Track, RtpIn};
use super::webm::WebmWriter;

#[cfg(feature = "mixdown")]
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

// Real Opus packets for this check come from libopus, so it needs `mixdown`.
#[cfg(feature = "mixdown")]
#[test]
fn ffprobe_reads_ogg_and_webm_with_expected_codecs_and_durations() {
    use super::ogg::OggOpusWriter;
    use super::track::OpusTrack;
    use super::webm::tests::vp8_frame;
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

/// Encodes `seconds` of a test pattern at 30 fps with an H.264 encoder of the installed ffmpeg
/// (constrained baseline, an IDR every 2 s, as a browser sends) and returns the Annex-B stream.
fn encode_h264(dir: &Path, seconds: u32) -> Vec<u8> {
    let out = dir.join("src.h264");
    for encoder in ["libx264", "libopenh264"] {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=320x240:rate=30:duration={seconds}"))
            .args(["-pix_fmt", "yuv420p", "-c:v", encoder, "-g", "60"]);
        if encoder == "libx264" {
            cmd.args(["-profile:v", "baseline", "-sc_threshold", "0", "-bf", "0"]);
        }
        let ok = cmd
            .args(["-f", "h264"])
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return std::fs::read(&out).expect("encoded stream");
        }
    }
    panic!("ffmpeg has neither libx264 nor libopenh264 (Debian's ffmpeg has libx264)");
}

/// Splits an Annex-B stream into access units of NAL units (ITU-T H.264 §7.4.1.2.3: after a
/// picture's slices, a new unit begins at a delimiter, SEI or parameter set, or at a slice whose
/// first_mb_in_slice is 0).
fn access_units(stream: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut end = i;
                while end > s && stream[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(&stream[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(&stream[s..]);
    }
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_slice = false;
    for nal in nals {
        let t = nal[0] & 0x1F;
        let slice = t == 1 || t == 5;
        let begins = match t {
            6..=9 => has_slice,
            1 | 5 => has_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0),
            _ => false,
        };
        if begins || units.is_empty() {
            units.push(Vec::new());
            has_slice = false;
        }
        has_slice |= slice;
        units.last_mut().expect("a unit").push(nal);
    }
    units
}

fn probe_h264(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("stream=codec_name,width,height,nb_read_frames:format=duration,format_name")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

#[test]
fn ffprobe_reads_the_h264_mp4_with_frames_size_and_duration_across_a_loss() {
    if !have_ffprobe() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = encode_h264(dir.path(), 6);
    let units = access_units(&stream);
    assert_eq!(units.len(), 180, "30 fps for 6 s");
    let path = dir.path().join("cam.mp4");
    let t0 = Instant::now();
    let mut track = H264Track::new(
        Mp4Writer::new(BufWriter::new(File::create(&path).unwrap())),
        t0,
    );
    // RTP as a browser would send it, starting 1 s into the recording, crossing the sequence
    // number and timestamp wrap, with padding-only probes (never recorded) between some frames;
    // one packet of frame 70 is lost, so frames 70..120 (up to the next IDR) cannot be decoded
    // and are left out.
    let (mut seq, mut ts) = (65_000u16, u32::MAX - 90_000);
    for (n, unit) in units.iter().enumerate() {
        if n % 7 == 3 {
            seq = seq.wrapping_add(4);
        }
        let packets = packetize_h264(unit, 1_000);
        let last = packets.len() - 1;
        for (i, payload) in packets.iter().enumerate() {
            let s = seq;
            seq = seq.wrapping_add(1);
            if n == 70 && i == 0 {
                continue;
            }
            track
                .on_packet(&RtpIn {
                    layer: 0,
                    seq: s,
                    ts,
                    marker: i == last,
                    payload,
                    arrival: t0 + Duration::from_millis(1_000 + n as u64 * 1_000 / 30),
                })
                .unwrap();
        }
        ts = ts.wrapping_add(3_000);
    }
    assert_eq!(track.sink().first_ms(), Some(1_000));
    let (out, stats) = track.close().unwrap();
    drop(out);
    assert_eq!(stats.frames, 130);
    let v = probe_h264(&path);
    let stream = &v["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(stream["nb_read_frames"].as_str(), Some("130"));
    assert!(v["format"]["format_name"].as_str().unwrap().contains("mp4"));
    let duration: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    // The gap keeps its place on the timeline: 6 s from the first frame to the end of the last.
    assert!((duration - 6.0).abs() < 0.6, "mp4 duration {duration}");
    // And every written frame decodes without a complaint from the decoder.
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(decode.status.success());
    assert_eq!(
        String::from_utf8_lossy(&decode.stderr),
        "",
        "decoder errors"
    );
}

/// VP8 frames of a test pattern encoded by ffmpeg's libvpx: (keyframe, frame) at 30 fps.
fn encode_vp8(dir: &Path, source: &str, size: &str, seconds: u32) -> Vec<(bool, Vec<u8>)> {
    let out = dir.join(format!("{source}-{size}.ivf"));
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{source}=size={size}:rate=30:duration={seconds}"))
        .args([
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-g",
            "60",
            "-b:v",
            "300k",
        ])
        .args(["-f", "ivf"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg encodes VP8");
    // IVF: a 32-byte file header, then per frame a 4-byte size, an 8-byte pts and the frame.
    let ivf = std::fs::read(&out).expect("ivf");
    let mut frames = Vec::new();
    let mut at = usize::from(u16::from_le_bytes([ivf[6], ivf[7]]));
    while at + 12 <= ivf.len() {
        let len = u32::from_le_bytes(ivf[at..at + 4].try_into().unwrap()) as usize;
        let frame = ivf[at + 12..at + 12 + len].to_vec();
        frames.push((frame[0] & 1 == 0, frame));
        at += 12 + len;
    }
    frames
}

/// An Ogg Opus file by ffmpeg from a lavfi audio source.
fn encode_opus(path: &Path, source: &str) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", source])
        .args(["-ac", "1", "-c:a", "libopus"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg encodes Opus");
}

fn sidecar(
    dir: &Path,
    participant: &str,
    source: &str,
    codec: &str,
    file: &str,
    start: u64,
    dur: u64,
) {
    let v = serde_json::json!({
        "room": "r", "participant": participant, "source": source, "codec": codec,
        "file": file, "start_unix_ms": 1_700_000_000_000u64 + start, "start_offset_ms": start,
        "duration_ms": dur, "pre_skip": null, "width": null, "height": null, "complete": true,
        "stats": {},
    });
    let name = file.rsplit_once('.').unwrap().0;
    std::fs::write(dir.join(format!("{name}.json")), v.to_string()).unwrap();
}

/// Writes VP8 frames with WebmWriter at 30 fps from `start_ms` on the recording's timeline.
fn write_webm(path: &Path, start_ms: u64, parts: &[Vec<(bool, Vec<u8>)>]) -> u64 {
    let mut w = WebmWriter::new(BufWriter::new(File::create(path).unwrap()));
    for (i, (key, frame)) in parts.iter().flatten().enumerate() {
        w.write_frame(start_ms + i as u64 * 1000 / 30, *key, frame)
            .unwrap();
    }
    let duration = w.duration_ms();
    drop(w.close().unwrap());
    duration
}

/// Mean luma of a `w`x`h` region at (`x`, `y`) of the video frame at `t` seconds.
fn luma(path: &Path, t: f64, (x, y, w, h): (u32, u32, u32, u32)) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-ss", &t.to_string(), "-i"])
        .arg(path)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("crop={w}:{h}:{x}:{y},format=gray"),
        ])
        .args(["-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "frame at {t}"
    );
    out.stdout.iter().map(|b| f64::from(*b)).sum::<f64>() / out.stdout.len() as f64
}

/// RMS (0..1) of the audio between `from` and `to` seconds, decoded to 16-bit mono PCM.
fn rms(path: &Path, from: f64, to: f64) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vn", "-ac", "1", "-ar", "8000", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    let samples: Vec<f64> = out
        .stdout
        .chunks_exact(2)
        .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    let span = &samples[(from * 8000.0) as usize..((to * 8000.0) as usize).min(samples.len())];
    (span.iter().map(|s| s * s).sum::<f64>() / span.len() as f64).sqrt()
}

fn probe_streams(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,codec_type,width,height:format=duration")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn composite_options() -> CompositeOptions {
    CompositeOptions {
        ffmpeg: "ffmpeg".into(),
        width: 640,
        height: 360,
        fps: 15,
    }
}

#[test]
fn composite_places_tiles_on_the_timeline_with_the_requested_size_and_length() {
    if !have_ffprobe() {
        return;
    }
    assert!(ffmpeg_available(Path::new("ffmpeg")));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // alice: camera for the whole 10 s, switching from 320x180 to 640x360 at 5 s (a simulcast
    // layer switch), and a silent microphone.
    let low = encode_vp8(dir, "testsrc2", "320x180", 5);
    let high = encode_vp8(dir, "testsrc2", "640x360", 5);
    let d = write_webm(&dir.join("alice-camera.webm"), 0, &[low, high]);
    sidecar(dir, "alice", "camera", "vp8", "alice-camera.webm", 0, d);
    encode_opus(
        &dir.join("alice-microphone.ogg"),
        "anullsrc=r=48000:cl=mono:d=10",
    );
    sidecar(
        dir,
        "alice",
        "microphone",
        "opus",
        "alice-microphone.ogg",
        0,
        10_000,
    );
    // bob joins at 4 s with a 4:3 camera and leaves at 8 s.
    let bob = encode_vp8(dir, "testsrc", "320x240", 4);
    let d = write_webm(&dir.join("bob-camera.webm"), 4_000, &[bob]);
    sidecar(dir, "bob", "camera", "vp8", "bob-camera.webm", 0, d);
    // carol never sends video and speaks from 2 s to 5 s.
    encode_opus(&dir.join("carol-microphone.ogg"), "sine=f=440:r=48000:d=3");
    sidecar(
        dir,
        "carol",
        "microphone",
        "opus",
        "carol-microphone.ogg",
        2_000,
        3_000,
    );
    // dave shares his screen in H.264 from 6 s to 9 s.
    let stream = encode_h264(dir, 3);
    let mut mp4 = Mp4Writer::new(BufWriter::new(
        File::create(dir.join("dave-screen.mp4")).unwrap(),
    ));
    for (i, unit) in access_units(&stream).iter().enumerate() {
        let mut au = Vec::new();
        for nal in unit {
            au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            au.extend_from_slice(nal);
        }
        let key = unit.iter().any(|n| n[0] & 0x1F == 5);
        mp4.write_frame(6_000 + i as u64 * 1000 / 30, key, &au)
            .unwrap();
    }
    let (first, d) = (mp4.first_ms().unwrap(), mp4.duration_ms());
    drop(mp4.close().unwrap());
    sidecar(dir, "dave", "screen", "h264", "dave-screen.mp4", first, d);

    let path = compose(dir, &composite_options()).expect("composite");
    assert_eq!(path, dir.join("composite.webm"));
    assert!(!dir.join("composite.webm.part").exists());
    let v = probe_streams(&path);
    let video = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap();
    assert_eq!(video["codec_name"], "vp8");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["codec_name"] == "opus")
    );
    let duration: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (duration - 10.0).abs() < 1.0,
        "composite duration {duration}"
    );

    // Four tiles of 320x180: alice, bob / carol, dave. Background luma is about 30.
    let tile = |i: u32| ((i % 2) * 320 + 20, (i / 2) * 180 + 20, 280, 140);
    let bg = luma(&path, 1.0, tile(1));
    assert!(bg < 40.0, "empty tile {bg}");
    let shown = |t: f64, i: u32| (luma(&path, t, tile(i)) - bg).abs() > 8.0;
    assert!(
        shown(2.0, 0) && shown(7.0, 0),
        "alice's tile, before and after her switch"
    );
    assert!(
        !shown(2.0, 1) && shown(6.0, 1) && !shown(9.5, 1),
        "bob joins at 4 s, leaves at 8 s"
    );
    assert!(
        !shown(1.0, 2) && shown(3.5, 2) && !shown(6.0, 2),
        "carol's name tile while she speaks"
    );
    assert!(!shown(5.0, 3) && shown(7.5, 3), "dave's screen from 6 s");
    // Without a mixed track the speakers' own tracks are mixed, each at its offset.
    let (before, during, after) = (
        rms(&path, 0.5, 1.8),
        rms(&path, 2.3, 4.7),
        rms(&path, 5.5, 9.5),
    );
    assert!(
        during > 0.05 && before < 0.01 && after < 0.01,
        "{before} {during} {after}"
    );
}

#[test]
fn composite_takes_the_mixed_track_and_its_length() {
    if !have_ffprobe() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cam = encode_vp8(dir, "testsrc2", "320x180", 2);
    let d = write_webm(&dir.join("alice-camera.webm"), 500, &[cam]);
    sidecar(dir, "alice", "camera", "vp8", "alice-camera.webm", 0, d);
    // The mixed track runs to the recording's stop, after the last frame.
    encode_opus(&dir.join("mixed.ogg"), "sine=f=300:r=48000:d=4");
    // Files that are not a track's sidecar are left alone.
    std::fs::write(dir.join("notes.json"), b"{\"file\": \"../etc/passwd\"}").unwrap();
    let path = compose(dir, &composite_options()).expect("composite");
    let v = probe_streams(&path);
    let duration: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (duration - 4.0).abs() < 0.4,
        "composite duration {duration}"
    );
    assert!(
        rms(&path, 0.5, 3.5) > 0.05,
        "the mixed audio (a sine of amplitude 1/8)"
    );
    let err = compose(&dir.join("missing"), &composite_options()).unwrap_err();
    assert!(matches!(err, CompositeError::Read { .. }), "{err}");
}
