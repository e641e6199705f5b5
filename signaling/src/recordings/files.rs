//! What a recording directory holds, as the API lists it: each media file with its kind, the
//! participant it belongs to (from the sidecar the writer keeps beside each track file), its size,
//! its playing time and where it starts on the recording's timeline.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::media_info::{ogg_opus_duration_ms, webm_duration_ms};

/// The mixed-down audio of the whole meeting (written by the media plane with `mixdown`).
pub const MIXED: &str = "mixed.ogg";
/// The grid video with the mixed audio, made after the meeting by ffmpeg.
pub const COMPOSITE: &str = "composite.webm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TrackAudio,
    TrackVideo,
    MixedAudio,
    Composite,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TrackAudio => "track_audio",
            Kind::TrackVideo => "track_video",
            Kind::MixedAudio => "mixed_audio",
            Kind::Composite => "composite",
        }
    }
}

/// The Content-Type of a download, from the file's extension (the writer's own names).
pub fn mime_of(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("ogg") => "audio/ogg",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

/// One file of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub kind: Kind,
    pub participant_id: Option<String>,
    pub display_name: Option<String>,
    pub codec: String,
    pub bytes: u64,
    pub duration_ms: Option<u64>,
    pub start_offset_ms: u64,
}

/// The part of the writer's sidecar that is needed here.
#[derive(Debug, Deserialize)]
struct Sidecar {
    participant: String,
    #[serde(default)]
    codec: Option<String>,
    #[serde(default)]
    start_offset_ms: u64,
    /// Written when the file is complete (0 before); older sidecars lack it.
    #[serde(default)]
    duration_ms: u64,
}

/// Lists the media files of `dir` (Ogg, WebM, MP4; sidecars are read, not listed), names from
/// `names` (participant id → display name). A missing directory is an empty recording.
pub fn catalogue(dir: &Path, names: &HashMap<String, String>) -> std::io::Result<Vec<FileEntry>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let bytes = entry.metadata()?.len();
        let file = match (name.as_str(), ext) {
            (MIXED, _) => FileEntry {
                kind: Kind::MixedAudio,
                codec: "opus".into(),
                duration_ms: ogg_opus_duration_ms(&path).ok().flatten(),
                ..bare(&name, bytes)
            },
            (COMPOSITE, _) => FileEntry {
                kind: Kind::Composite,
                codec: "vp8+opus".into(),
                duration_ms: webm_duration_ms(&path).ok().flatten(),
                ..bare(&name, bytes)
            },
            (_, "ogg" | "webm" | "mp4") => track(&path, &name, ext, bytes, names),
            _ => continue,
        };
        files.push(file);
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn bare(name: &str, bytes: u64) -> FileEntry {
    FileEntry {
        name: name.to_owned(),
        kind: Kind::TrackAudio,
        participant_id: None,
        display_name: None,
        codec: String::new(),
        bytes,
        duration_ms: None,
        start_offset_ms: 0,
    }
}

/// A per-track file: what it is from its extension, whose and when from its sidecar.
fn track(
    path: &Path,
    name: &str,
    ext: &str,
    bytes: u64,
    names: &HashMap<String, String>,
) -> FileEntry {
    let audio = ext == "ogg";
    let sidecar: Option<Sidecar> = std::fs::read(path.with_extension("json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // The sidecar's duration runs from the file's time zero; the container's own is the
    // fallback (an older sidecar, or one the writer could not complete).
    let duration_ms = sidecar
        .as_ref()
        .map(|s| s.duration_ms)
        .filter(|d| *d > 0)
        .or_else(|| match ext {
            "ogg" => ogg_opus_duration_ms(path).ok().flatten(),
            "webm" => webm_duration_ms(path).ok().flatten(),
            _ => None,
        });
    let participant_id = sidecar.as_ref().map(|s| s.participant.clone());
    FileEntry {
        kind: if audio {
            Kind::TrackAudio
        } else {
            Kind::TrackVideo
        },
        display_name: participant_id.as_ref().and_then(|p| names.get(p).cloned()),
        codec: sidecar
            .as_ref()
            .and_then(|s| s.codec.clone())
            .unwrap_or_else(|| {
                match ext {
                    "ogg" => "opus",
                    "mp4" => "h264",
                    _ => "vp8",
                }
                .into()
            }),
        start_offset_ms: sidecar.as_ref().map_or(0, |s| s.start_offset_ms),
        participant_id,
        duration_ms,
        ..bare(name, bytes)
    }
}

/// Bytes under `dir`, all levels (the quota counts what a running recording has written).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total = total.saturating_add(dir_size(&entry.path())),
            Ok(t) if t.is_file() => {
                total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
            }
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_named_from_their_sidecars_and_the_rest_is_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        std::fs::write(d.join("p1-microphone.ogg"), b"OggS not really").expect("w");
        std::fs::write(
            d.join("p1-microphone.json"),
            br#"{"participant":"p1","source":"microphone","codec":"opus","start_offset_ms":1200}"#,
        )
        .expect("w");
        std::fs::write(d.join("p2-camera.webm"), b"\x1a\x45\xdf\xa3").expect("w");
        std::fs::write(d.join("mixed.ogg"), b"").expect("w");
        std::fs::write(d.join("notes.txt"), b"ignored").expect("w");
        let names = HashMap::from([("p1".to_owned(), "Anna".to_owned())]);
        let files = catalogue(d, &names).expect("catalogue");
        let got: Vec<(&str, Kind, Option<&str>, u64)> = files
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.kind,
                    f.display_name.as_deref(),
                    f.start_offset_ms,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("mixed.ogg", Kind::MixedAudio, None, 0),
                ("p1-microphone.ogg", Kind::TrackAudio, Some("Anna"), 1200),
                ("p2-camera.webm", Kind::TrackVideo, None, 0),
            ]
        );
        std::fs::create_dir(d.join("sub")).expect("dir");
        std::fs::write(d.join("sub").join("x.ogg"), b"12345").expect("w");
        let all: u64 = std::fs::read_dir(d)
            .expect("list")
            .flatten()
            .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()))
            .sum();
        assert_eq!(dir_size(d), all + 5, "counts nested directories too");
        assert!(
            catalogue(&d.join("missing"), &names)
                .expect("ok")
                .is_empty()
        );
    }
}
