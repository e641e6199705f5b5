//! The writer thread of one room's recording: owns its files, fed by the tap's queue.
//!
//! Files, per track: `<dir>/<participant>-<source>.ogg` (Opus) or `.webm` (VP8) with a sidecar
//! `<participant>-<source>.json` holding the wall-clock start, so tracks can be lined up; and
//! `<dir>/mixed.ogg`, all audio of the room mixed down. WebM block times already count from the
//! recording's start; Ogg files start at their first packet and the sidecar says when that was.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::mixer::Mixer;
use super::ogg::{OggOpusWriter, PRE_SKIP};
use super::tap::{MediaPacket, TapMessage, TrackKey};
use super::track::{OpusTrack, RtpIn, TrackStats, Vp8Track};
use super::webm::WebmWriter;
use crate::api::{RecordingEvent, RoomId};
use crate::engine::participant::Codec;

type Out = BufWriter<File>;

/// Ids become file names: anything but ASCII letters, digits, `-` and `_` turns into `_`, so a
/// participant id can never climb out of the directory or clash with the file-type suffixes.
pub fn file_name(id: &str) -> String {
    let s: String = id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

enum Recorder {
    Opus(OpusTrack<Out>),
    Vp8(Vp8Track<Out>),
    /// A codec without a file writer yet (H.264): packets are ignored.
    Skipped,
}

struct Track {
    recorder: Recorder,
    media: PathBuf,
    sidecar: PathBuf,
    participant: String,
    source: &'static str,
    codec: &'static str,
}

/// The sidecar: enough to place the file on the meeting's timeline.
#[derive(serde::Serialize)]
struct Sidecar<'a> {
    room: &'a str,
    participant: &'a str,
    source: &'a str,
    codec: &'a str,
    file: String,
    /// Wall-clock time of the file's time zero, in ms since the Unix epoch (for Ogg: of the
    /// first sample after the pre-skip; for WebM: the recording's start, as block times are
    /// relative to it).
    start_unix_ms: u64,
    /// The same instant as milliseconds since the recording started.
    start_offset_ms: u64,
    /// Ogg Opus decoders discard this many samples at 48 kHz at the start (RFC 7845 §4.2).
    pre_skip: Option<u16>,
    width: Option<u16>,
    height: Option<u16>,
    complete: bool,
    stats: TrackStats,
}

/// How often the writer thread drains its queue when it is empty.
const WRITER_POLL: std::time::Duration = std::time::Duration::from_millis(5);

pub struct Writer {
    room: RoomId,
    dir: PathBuf,
    origin: Instant,
    origin_wall: SystemTime,
    events: Sender<RecordingEvent>,
    tracks: HashMap<TrackKey, Track>,
    mixer: Option<Mixer<Out>>,
    /// The mixer could not start (e.g. built without `mixdown`): don't try again per track.
    mixer_unavailable: bool,
    files: Vec<PathBuf>,
    failed: bool,
    next_serial: u32,
}

impl Writer {
    pub fn new(room: &str, dir: PathBuf, origin: Instant, events: Sender<RecordingEvent>) -> Self {
        Self {
            room: room.to_owned(),
            dir,
            origin,
            // The engine never reads clocks; this thread pairs its start instant with wall time.
            origin_wall: SystemTime::now(),
            events,
            tracks: HashMap::new(),
            mixer: None,
            mixer_unavailable: false,
            files: Vec::new(),
            failed: false,
            next_serial: 1,
        }
    }

    pub fn run(mut self, rx: Receiver<TapMessage>) {
        let mut stop_at = None;
        loop {
            // Poll rather than block: a receiver blocked in `recv` makes every `try_send` on the
            // forwarding thread a futex wake-up, which costs more than forwarding the packet. The
            // queue holds seconds of media, so draining it every few milliseconds loses nothing.
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(WRITER_POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match msg {
                TapMessage::Open {
                    track,
                    participant,
                    codec,
                    arrival,
                } => {
                    let r = self.open(track, &participant, codec, arrival);
                    self.check(r);
                }
                TapMessage::Packet(p) => {
                    let r = self.packet(&p);
                    self.check(r);
                }
                TapMessage::Stop { at } => {
                    stop_at = Some(at);
                    break;
                }
            }
        }
        self.finish(stop_at);
    }

    fn check(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            tracing::warn!(room = %self.room, "recording write failed: {e}");
            if !self.failed {
                self.failed = true;
                let _ = self.events.send(RecordingEvent::Failed {
                    room: self.room.clone(),
                    error: e.to_string(),
                });
            }
        }
    }

    fn unique(&self, stem: &str, ext: &str) -> (PathBuf, PathBuf) {
        // A participant who leaves and comes back gets a new track: number it rather than
        // overwrite the first one's file.
        let mut n = 1;
        loop {
            let name = if n == 1 {
                stem.to_owned()
            } else {
                format!("{stem}-{n}")
            };
            let media = self.dir.join(format!("{name}.{ext}"));
            if !media.exists() {
                return (media, self.dir.join(format!("{name}.json")));
            }
            n += 1;
        }
    }

    fn open(
        &mut self,
        key: TrackKey,
        participant: &str,
        codec: Codec,
        arrival: Instant,
    ) -> io::Result<()> {
        let stem = format!("{}-{}", file_name(participant), key.1.as_str());
        let (ext, codec_name) = match codec {
            Codec::Opus => ("ogg", "opus"),
            Codec::Vp8 => ("webm", "vp8"),
            Codec::H264 => ("h264", "h264"),
        };
        let (media, sidecar) = self.unique(&stem, ext);
        let recorder = match codec {
            Codec::Opus => {
                let serial = self.next_serial;
                self.next_serial += 1;
                let comments = vec![
                    format!("PARLEY_ROOM={}", self.room),
                    format!("PARLEY_PARTICIPANT={participant}"),
                ];
                let ogg =
                    OggOpusWriter::new(BufWriter::new(File::create(&media)?), serial, comments);
                if self.mixer.is_none() && !self.mixer_unavailable {
                    let path = self.dir.join("mixed.ogg");
                    match Mixer::new(BufWriter::new(File::create(&path)?), self.origin) {
                        Ok(m) => self.mixer = Some(m),
                        Err(e) => {
                            // The per-track files still record; only the mix is missing.
                            tracing::warn!(room = %self.room, "no mixed audio: {e}");
                            self.mixer_unavailable = true;
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Recorder::Opus(OpusTrack::new(ogg))
            }
            Codec::Vp8 => {
                let webm = WebmWriter::new(BufWriter::new(File::create(&media)?));
                Recorder::Vp8(Vp8Track::new(webm, self.origin))
            }
            Codec::H264 => Recorder::Skipped,
        };
        let _ = arrival;
        let track = Track {
            recorder,
            media,
            sidecar,
            participant: participant.to_owned(),
            source: key.1.as_str(),
            codec: codec_name,
        };
        if !matches!(track.recorder, Recorder::Skipped) {
            write_sidecar(&self.room, &track, self.origin, self.origin_wall, false)?;
        }
        self.tracks.insert(key, track);
        Ok(())
    }

    fn packet(&mut self, p: &MediaPacket) -> io::Result<()> {
        let Some(track) = self.tracks.get_mut(&p.track) else {
            return Ok(());
        };
        let rtp = RtpIn {
            layer: p.layer,
            seq: p.seq,
            ts: p.ts,
            marker: p.marker,
            payload: &p.payload,
            arrival: p.arrival,
        };
        match &mut track.recorder {
            Recorder::Opus(t) => {
                if let Some(m) = &mut self.mixer {
                    m.on_packet(p.track, &rtp)?;
                }
                t.on_packet(&rtp)
            }
            Recorder::Vp8(t) => t.on_packet(&rtp),
            Recorder::Skipped => Ok(()),
        }
    }

    fn finish(mut self, stop_at: Option<Instant>) {
        let tracks: Vec<Track> = self.tracks.drain().map(|(_, t)| t).collect();
        for mut track in tracks {
            let recorder = std::mem::replace(&mut track.recorder, Recorder::Skipped);
            let r = match recorder {
                Recorder::Opus(t) => {
                    let first = t.first_arrival;
                    t.close().and_then(|(out, stats, _)| {
                        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                        let mut track = track;
                        track.recorder = Recorder::Skipped;
                        finish_sidecar(
                            &self.room,
                            &track,
                            first,
                            self.origin,
                            self.origin_wall,
                            stats,
                            None,
                        )?;
                        Ok(track.media)
                    })
                }
                Recorder::Vp8(t) => {
                    let size = t.size();
                    t.close().and_then(|(out, stats)| {
                        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                        finish_sidecar(
                            &self.room,
                            &track,
                            Some(self.origin),
                            self.origin,
                            self.origin_wall,
                            stats,
                            size,
                        )?;
                        Ok(track.media)
                    })
                }
                Recorder::Skipped => continue,
            };
            match r {
                Ok(path) => self.files.push(path),
                Err(e) => self.check(Err(e)),
            }
        }
        if let Some(m) = self.mixer.take() {
            let r = m
                .close(stop_at)
                .and_then(|out| out.into_inner().map_err(|e| e.into_error())?.sync_all());
            match r {
                Ok(()) => self.files.push(self.dir.join("mixed.ogg")),
                Err(e) => self.check(Err(e)),
            }
        }
        self.files.sort();
        let _ = self.events.send(RecordingEvent::Finished {
            room: self.room.clone(),
            files: std::mem::take(&mut self.files),
        });
    }
}

fn write_sidecar(
    room: &str,
    track: &Track,
    origin: Instant,
    origin_wall: SystemTime,
    complete: bool,
) -> io::Result<()> {
    // Until the track closes the file's own start is unknown; the recording's start stands in.
    let _ = origin;
    let sidecar = Sidecar {
        room,
        participant: &track.participant,
        source: track.source,
        codec: track.codec,
        file: file_of(&track.media),
        start_unix_ms: unix_ms(origin_wall),
        start_offset_ms: 0,
        pre_skip: None,
        width: None,
        height: None,
        complete,
        stats: TrackStats::default(),
    };
    std::fs::write(&track.sidecar, serde_json::to_vec_pretty(&sidecar)?)
}

#[allow(clippy::too_many_arguments)]
fn finish_sidecar(
    room: &str,
    track: &Track,
    first: Option<Instant>,
    origin: Instant,
    origin_wall: SystemTime,
    stats: TrackStats,
    size: Option<(u16, u16)>,
) -> io::Result<()> {
    let offset = first.map_or(0, |f| {
        f.saturating_duration_since(origin).as_millis() as u64
    });
    let is_ogg = track.codec == "opus";
    let sidecar = Sidecar {
        room,
        participant: &track.participant,
        source: track.source,
        codec: track.codec,
        file: file_of(&track.media),
        start_unix_ms: unix_ms(origin_wall) + offset,
        start_offset_ms: offset,
        pre_skip: is_ogg.then_some(PRE_SKIP),
        width: size.map(|s| s.0),
        height: size.map(|s| s.1),
        complete: true,
        stats,
    };
    std::fs::write(&track.sidecar, serde_json::to_vec_pretty(&sidecar)?)
}

fn file_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
