//! The writer thread of one room's recording: owns its files, fed by the tap's queue.
//!
//! Files, per track: `<dir>/<participant>-<source>.ogg` (Opus), `.webm` (VP8) or `.mp4` (H.264)
//! with a sidecar `<participant>-<source>.json` holding the wall-clock start, so tracks can be
//! lined up; and `<dir>/mixed.ogg`, all audio of the room mixed down. WebM block times already
//! count from the recording's start; Ogg and MP4 files start at their first packet or frame and
//! the sidecar says when that was. A track's file closes when the track ends (its participant
//! leaves or stops sending it) or the recording stops; a video file shows its last frame until
//! then.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::mixer::Mixer;
use super::mp4::Mp4Writer;
use super::ogg::{OggOpusWriter, PRE_SKIP};
use super::reorder::Reorder;
use super::tap::{KeyframeWant, MediaPacket, TapMessage, TrackKey};
use super::track::{H264Track, OpusTrack, RtpIn, TrackStats, Vp8Track};
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
    H264(H264Track<Out>),
    /// A track whose file is closed: packets are ignored.
    Skipped,
}

struct Track {
    recorder: Recorder,
    /// Video only: packets of each simulcast layer put back in sequence order.
    reorder: Vec<Reorder>,
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
    /// Length of the file's timeline from its time zero (for WebM, from the recording's start
    /// to the end of the last frame), so `start_offset_ms + duration_ms` is where the track ends
    /// on the recording's timeline. 0 until the file is complete.
    duration_ms: u64,
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
    /// Keyframe requests to the engine (see [`super::track::VideoTrack::keyframe_wanted`]).
    wants: Sender<KeyframeWant>,
}

impl Writer {
    pub fn new(
        room: &str,
        dir: PathBuf,
        origin: Instant,
        events: Sender<RecordingEvent>,
        wants: Sender<KeyframeWant>,
    ) -> Self {
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
            wants,
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
                TapMessage::Close { track, at } => {
                    if let Some(t) = self.tracks.remove(&track) {
                        self.finish_track(t, Some(at));
                    }
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
            Codec::H264 => ("mp4", "h264"),
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
            Codec::H264 => {
                let mp4 = Mp4Writer::new(BufWriter::new(File::create(&media)?));
                Recorder::H264(H264Track::new(mp4, self.origin))
            }
        };
        let _ = arrival;
        let track = Track {
            recorder,
            reorder: Vec::new(),
            media,
            sidecar,
            participant: participant.to_owned(),
            source: key.1.as_str(),
            codec: codec_name,
        };
        write_sidecar(&self.room, &track, self.origin, self.origin_wall, false)?;
        self.tracks.insert(key, track);
        Ok(())
    }

    fn packet(&mut self, p: &MediaPacket) -> io::Result<()> {
        let Some(track) = self.tracks.get_mut(&p.track) else {
            return Ok(());
        };
        match &mut track.recorder {
            Recorder::Opus(t) => {
                let rtp = rtp_of(p);
                if let Some(m) = &mut self.mixer {
                    m.on_packet(p.track, &rtp)?;
                }
                t.on_packet(&rtp)
            }
            Recorder::Vp8(_) | Recorder::H264(_) => {
                let layer = usize::from(p.layer);
                if track.reorder.len() <= layer {
                    track.reorder.resize_with(layer + 1, Reorder::default);
                }
                track.reorder[layer].push(p.clone());
                while let Some(q) = track.reorder[layer].pop() {
                    video_packet(&mut track.recorder, &q, &self.wants)?;
                }
                Ok(())
            }
            Recorder::Skipped => Ok(()),
        }
    }

    fn finish(mut self, stop_at: Option<Instant>) {
        let tracks: Vec<Track> = self.tracks.drain().map(|(_, t)| t).collect();
        for track in tracks {
            self.finish_track(track, stop_at);
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
    /// Closes one track's file. `end`: when the track ended (it left, or the recording stopped);
    /// a video file's last frame is shown until then, so a camera that froze or paused before
    /// the end still lasts as long as it was in the recording, as a player would show it live.
    fn finish_track(&mut self, mut track: Track, end: Option<Instant>) {
        let end_ms = end.map(|e| e.saturating_duration_since(self.origin).as_millis() as u64);
        // What the reorder buffers still hold goes in before the files close.
        for reorder in &mut track.reorder {
            reorder.flush();
            while let Some(q) = reorder.pop() {
                let r = video_packet(&mut track.recorder, &q, &self.wants);
                self.check(r);
            }
        }
        let recorder = std::mem::replace(&mut track.recorder, Recorder::Skipped);
        let r = match recorder {
            Recorder::Opus(t) => {
                let first = t.first_arrival;
                t.close().and_then(|(out, stats, granule)| {
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    let timing = Timing {
                        first,
                        duration_ms: granule.saturating_sub(u64::from(PRE_SKIP)) / 48,
                        size: None,
                    };
                    self.finish_sidecar(&track, timing, stats)?;
                    Ok(track.media)
                })
            }
            Recorder::Vp8(mut t) => {
                if let Some(ms) = end_ms {
                    t.sink_mut().hold_until(ms);
                }
                let timing = Timing {
                    first: Some(self.origin),
                    duration_ms: t.sink().duration_ms(),
                    size: t.size(),
                };
                t.close().and_then(|(out, stats)| {
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    self.finish_sidecar(&track, timing, stats)?;
                    Ok(track.media)
                })
            }
            Recorder::H264(mut t) => {
                if let Some(ms) = end_ms {
                    t.sink_mut().hold_until(ms);
                }
                let first = t.sink().first_ms().map(Duration::from_millis);
                let timing = Timing {
                    first: Some(self.origin + first.unwrap_or_default()),
                    duration_ms: t.sink().duration_ms(),
                    size: t.size(),
                };
                t.close().and_then(|(out, stats)| {
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    self.finish_sidecar(&track, timing, stats)?;
                    Ok(track.media)
                })
            }
            Recorder::Skipped => return,
        };
        match r {
            Ok(path) => self.files.push(path),
            Err(e) => self.check(Err(e)),
        }
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
        duration_ms: 0,
        pre_skip: None,
        width: None,
        height: None,
        complete,
        stats: TrackStats::default(),
    };
    std::fs::write(&track.sidecar, serde_json::to_vec_pretty(&sidecar)?)
}

/// Where a closed file lies on the recording's timeline, and its picture size.
struct Timing {
    /// The instant of the file's time zero.
    first: Option<Instant>,
    duration_ms: u64,
    size: Option<(u16, u16)>,
}

impl Writer {
    fn finish_sidecar(&self, track: &Track, timing: Timing, stats: TrackStats) -> io::Result<()> {
        let offset = timing.first.map_or(0, |f| {
            f.saturating_duration_since(self.origin).as_millis() as u64
        });
        let is_ogg = track.codec == "opus";
        let sidecar = Sidecar {
            room: &self.room,
            participant: &track.participant,
            source: track.source,
            codec: track.codec,
            file: file_of(&track.media),
            start_unix_ms: unix_ms(self.origin_wall) + offset,
            start_offset_ms: offset,
            duration_ms: timing.duration_ms,
            pre_skip: is_ogg.then_some(PRE_SKIP),
            width: timing.size.map(|s| s.0),
            height: timing.size.map(|s| s.1),
            complete: true,
            stats,
        };
        std::fs::write(&track.sidecar, serde_json::to_vec_pretty(&sidecar)?)
    }
}

fn rtp_of(p: &MediaPacket) -> RtpIn<'_> {
    RtpIn {
        layer: p.layer,
        seq: p.seq,
        ts: p.ts,
        marker: p.marker,
        payload: &p.payload,
        arrival: p.arrival,
    }
}

/// One packet, in sequence order, to a video recorder; its keyframe request, if it has one, to
/// the engine.
fn video_packet(
    recorder: &mut Recorder,
    p: &MediaPacket,
    wants: &Sender<KeyframeWant>,
) -> io::Result<()> {
    let rtp = rtp_of(p);
    let wanted = match recorder {
        Recorder::Vp8(t) => {
            t.on_packet(&rtp)?;
            t.keyframe_wanted(p.arrival)
        }
        Recorder::H264(t) => {
            t.on_packet(&rtp)?;
            t.keyframe_wanted(p.arrival)
        }
        Recorder::Opus(_) | Recorder::Skipped => None,
    };
    if let Some(layer) = wanted {
        let _ = wants.send((p.track, layer));
    }
    Ok(())
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
