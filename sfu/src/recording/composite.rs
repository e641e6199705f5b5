//! The composite video of a recording: every video track in a grid with the mixed audio, made
//! with ffmpeg after the meeting ends.
//!
//! The sidecars of a recording directory say which files there are and where each lies on the
//! recording's timeline. Every (participant, source) with video gets a tile; a participant who
//! never sent video gets a tile with their name while their audio runs. The grid is fixed for
//! the whole recording (sized for the number of tiles), and each file is placed on the timeline
//! so a tile shows only while its track ran: mid-meeting joins and leaves leave the background.
//!
//! Timing: ffmpeg runs with `-copyts`, so WebM block times, which count from the recording's
//! start, are used as they are; MP4 and Ogg files start at their first frame or packet and are
//! shifted by their sidecar's `start_offset_ms`. Video inputs keep their filter graph when their
//! picture size changes mid-file (a simulcast layer switch): `scale` adapts per frame.
//!
//! The ffmpeg command is an argument vector (no shell), every input is a `file:` URL (no other
//! protocol can be smuggled in through a name), and the output is written next to the tracks
//! under a temporary name and renamed when complete.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::writer::file_name;

/// What to make and with which ffmpeg.
#[derive(Debug, Clone)]
pub struct CompositeOptions {
    pub ffmpeg: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CompositeError {
    #[error("invalid composite options: {0}")]
    Options(&'static str),
    #[error("cannot read the recording in {dir}: {source}")]
    Read { dir: PathBuf, source: io::Error },
    #[error("the recording holds no media to compose")]
    Empty,
    #[error("cannot run {ffmpeg}: {source}")]
    Spawn { ffmpeg: PathBuf, source: io::Error },
    #[error("ffmpeg took longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("ffmpeg failed ({status}): {stderr_tail}")]
    Ffmpeg { status: String, stderr_tail: String },
}

/// The file the composite is written to, in the recording's directory.
pub const COMPOSITE_FILE: &str = "composite.webm";
/// The mixed-down audio of the whole recording (see [`super::mixer`]).
const MIXED_FILE: &str = "mixed.ogg";
/// Bytes of ffmpeg's stderr kept for the error.
const STDERR_TAIL: usize = 2_000;
/// Fonts for the name on a tile without video (Debian's fonts-dejavu-core, fonts-liberation);
/// without one the tile stays plain.
const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
const BACKGROUND: &str = "0x1e1e24";
const PLACEHOLDER: &str = "0x3a3f4b";
/// libvpx's VP8 in realtime mode picks its speed so that a frame takes at most (16 - N)/16 of the
/// frame interval for `cpu-used` N: with 8 the encoder needs at most half of one core in real
/// time, and two cores keep up with decoding and scaling too (a 20 s, 3-tile, 1280x720 composite
/// took 6–9 s here).
const VP8_CPU_USED: &str = "8";

/// Whether `ffmpeg` runs and has the encoders the composite needs (Debian's package has them).
pub fn ffmpeg_available(ffmpeg: &Path) -> bool {
    let Ok(out) = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-encoders"])
        .stdin(Stdio::null())
        .output()
    else {
        return false;
    };
    let list = String::from_utf8_lossy(&out.stdout);
    out.status.success() && list.contains(" libvpx ") && list.contains(" libopus ")
}

/// One track file as its sidecar describes it.
#[derive(Debug, Clone, serde::Deserialize)]
struct TrackFile {
    participant: String,
    source: String,
    codec: String,
    file: String,
    start_offset_ms: u64,
    #[serde(default)]
    duration_ms: u64,
}

impl TrackFile {
    fn is_video(&self) -> bool {
        matches!(self.codec.as_str(), "vp8" | "h264")
    }

    /// A file with media in it: a video file without a single frame has no picture size, and an
    /// unfinished one (its sidecar still says 0) may be cut anywhere.
    fn has_media(&self) -> bool {
        self.duration_ms > 0
    }

    fn end_ms(&self) -> u64 {
        self.start_offset_ms + self.duration_ms
    }
}

/// A tile of the grid: a participant's source, and what fills it.
#[derive(Debug)]
struct Tile {
    participant: String,
    videos: Vec<TrackFile>,
    /// For a participant without video: where their audio runs, shown as a name tile.
    spans: Vec<(u64, u64)>,
}

/// Makes `<dir>/composite.webm` and returns its path. Blocks until ffmpeg is done.
pub fn compose(dir: &Path, opts: &CompositeOptions) -> Result<PathBuf, CompositeError> {
    if !(16..=7680).contains(&opts.width) || !(16..=4320).contains(&opts.height) {
        return Err(CompositeError::Options("width or height out of range"));
    }
    if !(1..=60).contains(&opts.fps) {
        return Err(CompositeError::Options("fps out of range (1..=60)"));
    }
    let read_err = |source| CompositeError::Read {
        dir: dir.to_owned(),
        source,
    };
    let tracks = read_sidecars(dir).map_err(read_err)?;
    let mixed = dir.join(MIXED_FILE);
    let mixed_ms = if mixed.is_file() {
        Some(ogg_duration_ms(&mixed).map_err(read_err)?)
    } else {
        None
    };
    let total_ms = tracks
        .iter()
        .map(TrackFile::end_ms)
        .chain(mixed_ms)
        .max()
        .unwrap_or(0);
    if total_ms == 0 {
        return Err(CompositeError::Empty);
    }
    let plan = Plan {
        dir,
        opts,
        tiles: tiles(&tracks),
        audio: match mixed_ms {
            Some(_) => vec![(mixed, 0)],
            None => tracks
                .iter()
                .filter(|t| !t.is_video() && t.has_media())
                .map(|t| (dir.join(&t.file), t.start_offset_ms))
                .collect(),
        },
        total_ms,
        font: FONTS
            .iter()
            .map(Path::new)
            .find(|f| f.is_file())
            .filter(|_| has_filter(&opts.ffmpeg, "drawtext")),
    };
    let part = dir.join(format!("{COMPOSITE_FILE}.part"));
    let out = dir.join(COMPOSITE_FILE);
    let args = plan.args(&part);
    // Generous: a composite encodes several times faster than real time.
    let limit = Duration::from_millis(total_ms * 4).max(Duration::from_secs(120));
    let r = run(&opts.ffmpeg, &args, limit);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &out).map_err(read_err)?;
    Ok(out)
}

/// The sidecars of `dir` whose media file is there. Anything else (other JSON, a sidecar whose
/// file name is not one the writer makes) is left out.
fn read_sidecars(dir: &Path) -> io::Result<Vec<TrackFile>> {
    let mut tracks = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(track) = serde_json::from_slice::<TrackFile>(&bytes) else {
            continue;
        };
        let plain = track
            .file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !track.file.starts_with(['.', '-']);
        if plain && dir.join(&track.file).is_file() {
            tracks.push(track);
        }
    }
    tracks.sort_by(|a, b| {
        (&a.participant, &a.source, a.start_offset_ms, &a.file).cmp(&(
            &b.participant,
            &b.source,
            b.start_offset_ms,
            &b.file,
        ))
    });
    Ok(tracks)
}

/// One tile per participant's video source (a rejoin's second file shares the first's tile);
/// one name tile per participant who only sent audio.
fn tiles(tracks: &[TrackFile]) -> Vec<Tile> {
    let mut video: BTreeMap<(&str, &str), Vec<TrackFile>> = BTreeMap::new();
    let mut audio: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for t in tracks.iter().filter(|t| t.has_media()) {
        if t.is_video() {
            video
                .entry((&t.participant, &t.source))
                .or_default()
                .push(t.clone());
        } else {
            audio
                .entry(&t.participant)
                .or_default()
                .push((t.start_offset_ms, t.end_ms()));
        }
    }
    let mut tiles: Vec<Tile> = video
        .into_iter()
        .map(|((participant, _), videos)| Tile {
            participant: participant.to_owned(),
            videos,
            spans: Vec::new(),
        })
        .collect();
    for (participant, spans) in audio {
        if !tiles.iter().any(|t| t.participant == participant) {
            tiles.push(Tile {
                participant: participant.to_owned(),
                videos: Vec::new(),
                spans,
            });
        }
    }
    tiles.sort_by(|a, b| a.participant.cmp(&b.participant));
    tiles
}

/// Tile size and positions for `n` tiles: the column count that shows 16:9 video largest, tiles
/// no wider or taller than 16:9, the grid centred and its last row too.
fn grid(n: usize, width: u32, height: u32) -> (u32, u32, Vec<(u32, u32)>) {
    let n = n.max(1) as u32;
    let fit = |cols: u32| {
        let (w, h) = (width / cols, height / n.div_ceil(cols));
        (w.min(h * 16 / 9), h.min(w * 9 / 16))
    };
    let cols = (1..=n).max_by_key(|c| fit(*c).0).unwrap_or(1);
    let rows = n.div_ceil(cols);
    // Even sizes: 4:2:0 chroma halves them.
    let (tw, th) = fit(cols);
    let (tw, th) = (tw & !1, th & !1);
    let y0 = (height - rows * th) / 2;
    let positions = (0..n)
        .map(|i| {
            let (row, col) = (i / cols, i % cols);
            let in_row = (n - row * cols).min(cols);
            let x0 = (width - in_row * tw) / 2;
            (x0 + col * tw, y0 + row * th)
        })
        .collect();
    (tw, th, positions)
}

struct Plan<'a> {
    dir: &'a Path,
    opts: &'a CompositeOptions,
    tiles: Vec<Tile>,
    /// Audio inputs and their offsets on the timeline (ms).
    audio: Vec<(PathBuf, u64)>,
    total_ms: u64,
    font: Option<&'a Path>,
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn url(path: &Path) -> String {
    format!("file:{}", path.display())
}

impl Plan<'_> {
    fn args(&self, out: &Path) -> Vec<String> {
        let (w, h, fps) = (self.opts.width, self.opts.height, self.opts.fps);
        let total = secs(self.total_ms);
        let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-v", "error", "-y", "-copyts"]
            .map(String::from)
            .to_vec();
        let (tw, th, positions) = grid(self.tiles.len(), w, h);
        let mut graph = String::new();
        let _ = write!(
            graph,
            "color=c={BACKGROUND}:s={w}x{h}:r={fps}:d={total}[bg0]"
        );
        let mut input = 0usize;
        let mut layer = 0usize;
        for (tile, (x, y)) in self.tiles.iter().zip(positions) {
            let mut overlays = Vec::new();
            for v in &tile.videos {
                args.extend(["-reinit_filter".into(), "0".into(), "-i".into()]);
                args.push(url(&self.dir.join(&v.file)));
                // WebM times already count from the recording's start; MP4 starts at zero.
                let shift = if v.codec == "vp8" {
                    "PTS".to_owned()
                } else {
                    format!("PTS-STARTPTS+{}/TB", secs(v.start_offset_ms))
                };
                overlays.push(format!(
                    "[{input}:v]setpts={shift},scale={tw}:{th}:force_original_aspect_ratio=decrease,\
                     pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1"
                ));
                input += 1;
            }
            for (start, end) in &tile.spans {
                let mut src = format!(
                    "color=c={PLACEHOLDER}:s={tw}x{th}:r={fps}:d={}",
                    secs(end - start)
                );
                if let Some(font) = self.font {
                    let _ = write!(
                        src,
                        ",drawtext=fontfile={}:text={}:fontcolor=white:fontsize={}:\
                         x=(w-text_w)/2:y=(h-text_h)/2",
                        font.display(),
                        file_name(&tile.participant),
                        (th / 8).max(10)
                    );
                }
                let _ = write!(src, ",setpts=PTS+{}/TB", secs(*start));
                overlays.push(src);
            }
            for chain in overlays {
                let _ = write!(
                    graph,
                    ";{chain}[t{layer}];[bg{layer}][t{layer}]overlay=x={x}:y={y}:eof_action=pass[bg{}]",
                    layer + 1
                );
                layer += 1;
            }
        }
        let _ = write!(graph, ";[bg{layer}]format=yuv420p[vout]");
        // Audio: the mixed track, or the speakers' own tracks mixed here; padded or cut to the
        // recording's length.
        let mut mixes = String::new();
        for (path, offset) in &self.audio {
            args.extend(["-i".into(), url(path)]);
            let _ = write!(
                graph,
                ";[{input}:a]asetpts=PTS-STARTPTS,adelay=delays={offset}:all=1[a{input}]"
            );
            let _ = write!(mixes, "[a{input}]");
            input += 1;
        }
        match self.audio.len() {
            0 => {
                let _ = write!(graph, ";anullsrc=r=48000:cl=mono[amix]");
            }
            n => {
                let _ = write!(
                    graph,
                    ";{mixes}amix=inputs={n}:duration=longest:dropout_transition=0:normalize=0[amix]"
                );
            }
        }
        let _ = write!(graph, ";[amix]apad,atrim=end={total}[aout]");
        args.extend(["-filter_complex".into(), graph]);
        let bitrate = u64::from(w) * u64::from(h) * u64::from(fps) / 16;
        for a in [
            "-map",
            "[vout]",
            "-map",
            "[aout]",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            VP8_CPU_USED,
            "-b:v",
        ] {
            args.push(a.into());
        }
        args.push(bitrate.to_string());
        args.extend(["-g".into(), (fps * 4).to_string()]);
        for a in ["-c:a", "libopus", "-b:a", "64k", "-t"] {
            args.push(a.into());
        }
        args.push(total);
        args.extend(["-f".into(), "webm".into(), url(out)]);
        args
    }
}

/// Whether this ffmpeg has the filter `name` (drawtext needs libfreetype).
fn has_filter(ffmpeg: &Path, name: &str) -> bool {
    Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-filters"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == name)
        })
}

/// Runs ffmpeg to completion, keeping the tail of its stderr for the error.
fn run(ffmpeg: &Path, args: &[String], limit: Duration) -> Result<(), CompositeError> {
    let mut child = Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CompositeError::Spawn {
            ffmpeg: ffmpeg.to_owned(),
            source,
        })?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(Ok(n @ 1..)) = stderr.as_mut().map(|s| s.read(&mut buf)) {
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 4 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CompositeError::Timeout(limit));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => {
                return Err(CompositeError::Spawn {
                    ffmpeg: ffmpeg.to_owned(),
                    source,
                });
            }
        }
    };
    let tail = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let tail = String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..]);
    Err(CompositeError::Ffmpeg {
        status: status.to_string(),
        stderr_tail: tail.trim().to_owned(),
    })
}

/// Playing time of an Ogg Opus file: the last page's granule position less the pre-skip
/// (RFC 7845 §4), at 48 kHz. Reads only the first page and the last 64 KiB.
fn ogg_duration_ms(path: &Path) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an Ogg Opus file");
    let mut f = File::open(path)?;
    let mut head = [0u8; 64];
    let n = f.read(&mut head)?;
    let head = &head[..n];
    // First page: 27-byte header, lacing values, then OpusHead with the pre-skip at byte 10.
    let segments = usize::from(*head.get(26).ok_or_else(bad)?);
    let body = head.get(27 + segments..).ok_or_else(bad)?;
    if body.get(..8) != Some(b"OpusHead") {
        return Err(bad());
    }
    let pre_skip = u16::from_le_bytes([*body.get(10).ok_or_else(bad)?, body[11]]);
    let len = f.seek(SeekFrom::End(0))?;
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let granule = tail
        .windows(4)
        .enumerate()
        .rev()
        .filter(|(_, w)| *w == b"OggS")
        .find_map(|(i, _)| {
            let page = tail.get(i..i + 27)?;
            let granule = i64::from_le_bytes(page[6..14].try_into().ok()?);
            (page[4] == 0 && granule >= 0).then_some(granule as u64)
        })
        .ok_or_else(bad)?;
    Ok(granule.saturating_sub(u64::from(pre_skip)) / 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_as_square_as_fits_with_the_last_row_centred() {
        assert_eq!(grid(1, 1280, 720), (1280, 720, vec![(0, 0)]));
        assert_eq!(grid(2, 1280, 720), (640, 360, vec![(0, 180), (640, 180)]));
        assert_eq!(
            grid(3, 1280, 720),
            (640, 360, vec![(0, 0), (640, 0), (320, 360)])
        );
        let (tw, th, pos) = grid(5, 1280, 720);
        assert_eq!((tw, th), (426, 238));
        assert_eq!(pos[3..], [(214, 360), (640, 360)]);
        // Every tile inside the canvas, none overlapping.
        for n in 1..=25 {
            let (tw, th, pos) = grid(n, 1280, 720);
            assert_eq!(pos.len(), n);
            for (i, a) in pos.iter().enumerate() {
                assert!(a.0 + tw <= 1280 && a.1 + th <= 720, "{n} tiles");
                for b in &pos[i + 1..] {
                    assert!(
                        a.0 + tw <= b.0 || b.0 + tw <= a.0 || a.1 + th <= b.1 || b.1 + th <= a.1
                    );
                }
            }
        }
    }

    fn track(participant: &str, source: &str, codec: &str, start: u64, dur: u64) -> TrackFile {
        TrackFile {
            participant: participant.into(),
            source: source.into(),
            codec: codec.into(),
            file: format!("{participant}-{source}.x"),
            start_offset_ms: start,
            duration_ms: dur,
        }
    }

    #[test]
    fn a_tile_per_video_source_and_a_name_tile_per_audio_only_participant() {
        let tracks = [
            track("alice", "camera", "vp8", 0, 9_000),
            track("alice", "microphone", "opus", 0, 9_000),
            track("alice", "screen", "h264", 3_000, 2_000),
            track("bob", "camera", "vp8", 0, 4_000),
            track("bob", "camera", "vp8", 0, 9_000), // after a rejoin
            track("carol", "microphone", "opus", 1_000, 2_000),
            track("carol", "microphone", "opus", 5_000, 1_000),
            track("dave", "microphone", "opus", 1_000, 0), // never spoke: no tile
            track("erin", "camera", "vp8", 0, 0),          // no frame: no tile
        ];
        let tiles = tiles(&tracks);
        let summary: Vec<_> = tiles
            .iter()
            .map(|t| (t.participant.as_str(), t.videos.len(), &t.spans[..]))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("alice", 1, &[][..]),
                ("alice", 1, &[][..]),
                ("bob", 2, &[][..]),
                ("carol", 0, &[(1_000, 3_000), (5_000, 6_000)][..]),
            ]
        );
    }
}
