//! The recording tap: the only recording code on the forwarding path.
//!
//! [`RecordingTap::on_rtp`] copies a packet's few header fields and a reference-counted handle
//! to its payload (no byte copy, no allocation) into a bounded queue with `try_send`. A writer
//! thread ([`super::writer`]) owns the files. When the queue is full the packet is dropped and
//! counted and the recording turns "degraded": the disk falling behind costs the recording some
//! media, never the meeting its forwarding.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::packet::Packet;

use crate::api::{RecordingEvent, RoomId, TrackSource};
use crate::engine::FastMap;
use crate::engine::participant::{Codec, PKey};

/// Queue length: about two seconds of a busy room (25 tracks × 50 packets/s) at 64 bytes each.
pub const DEFAULT_CAPACITY: usize = 4096;
/// While drops continue, a fresh `Degraded` event at most this often.
const DEGRADED_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A track of the room, identified inside the recording by its participant key and source.
pub type TrackKey = (PKey, TrackSource);

/// The writer asks for a keyframe on this layer of a video track: its file cannot go on (or
/// begin, or move to another layer) without one. The writer rate-limits these itself.
pub type KeyframeWant = (TrackKey, u8);

/// One queued packet: what the writer needs of it and no more.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    pub track: TrackKey,
    pub layer: u8,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub arrival: Instant,
    pub payload: Bytes,
}

/// What travels from the tap to the writer thread.
#[derive(Debug)]
pub enum TapMessage {
    /// A track seen for the first time (allocates its names once per track, not per packet).
    Open {
        track: TrackKey,
        participant: String,
        codec: Codec,
        arrival: Instant,
    },
    Packet(MediaPacket),
    /// The track ended at `at` (its participant left or stopped sending it, e.g. a screen share
    /// stopped): the writer closes its file there. A later track of the same key is a new file.
    Close {
        track: TrackKey,
        at: Instant,
    },
    /// Recording ends at `at`; the writer finalizes every file. (If even this does not fit the
    /// queue, the writer finalizes when the queue is disconnected.)
    Stop {
        at: Instant,
    },
}

/// What one call to the tap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapOutcome {
    Queued,
    /// Dropped because the queue was full; `report` asks the engine to emit `Degraded`.
    Dropped {
        report: bool,
    },
}

/// The engine's handle on one room's recording.
pub struct RecordingTap {
    room: RoomId,
    dir: PathBuf,
    tx: SyncSender<TapMessage>,
    known: FastMap<TrackKey, ()>,
    dropped: u64,
    last_report: Option<Instant>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Keyframe requests from the writer, read by the engine's periodic tick.
    wants: Receiver<KeyframeWant>,
    wants_tx: Sender<KeyframeWant>,
}

impl RecordingTap {
    /// A tap whose queue is read by the caller: the writer thread's constructor and tests.
    pub fn with_queue(room: &str, dir: PathBuf, capacity: usize) -> (Self, Receiver<TapMessage>) {
        let (tx, rx) = sync_channel(capacity);
        let (wants_tx, wants) = channel();
        let tap = Self {
            room: room.to_owned(),
            dir,
            tx,
            known: FastMap::default(),
            dropped: 0,
            last_report: None,
            writer: None,
            wants,
            wants_tx,
        };
        (tap, rx)
    }

    /// Starts recording `room` into `<base>/<room>/`, with a writer thread of its own.
    pub fn start(
        room: &str,
        base: PathBuf,
        now: Instant,
        capacity: usize,
        events: Sender<RecordingEvent>,
    ) -> std::io::Result<Self> {
        let dir = base.join(super::writer::file_name(room));
        std::fs::create_dir_all(&dir)?;
        let (mut tap, rx) = Self::with_queue(room, dir.clone(), capacity);
        let writer = super::writer::Writer::new(room, dir, now, events, tap.wants_tx.clone());
        tap.writer = Some(
            std::thread::Builder::new()
                .name(format!("rec-{}", super::writer::file_name(room)))
                .spawn(move || writer.run(rx))?,
        );
        Ok(tap)
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// Keyframes the writer is waiting for (drained; never blocks).
    pub fn keyframe_wants(&self) -> impl Iterator<Item = KeyframeWant> + '_ {
        self.wants.try_iter()
    }

    /// Packets left out so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queues one forwarded publisher packet. Never blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn on_rtp(
        &mut self,
        key: PKey,
        participant: &str,
        source: TrackSource,
        codec: Codec,
        layer: usize,
        packet: &Packet,
        now: Instant,
    ) -> TapOutcome {
        let track = (key, source);
        if !self.known.contains_key(&track) {
            let open = TapMessage::Open {
                track,
                participant: participant.to_owned(),
                codec,
                arrival: now,
            };
            match self.tx.try_send(open) {
                // Only marked known once the writer will hear of it; until then every packet
                // retries the Open (the packets themselves would be ignored without it).
                Ok(()) => {
                    self.known.insert(track, ());
                }
                Err(_) => return self.drop_one(now),
            }
        }
        let msg = TapMessage::Packet(MediaPacket {
            track,
            layer: layer.min(u8::MAX.into()) as u8,
            seq: packet.header.sequence_number,
            ts: packet.header.timestamp,
            marker: packet.header.marker,
            arrival: now,
            payload: packet.payload.clone(),
        });
        match self.tx.try_send(msg) {
            Ok(()) => TapOutcome::Queued,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.drop_one(now),
        }
    }

    fn drop_one(&mut self, now: Instant) -> TapOutcome {
        self.dropped += 1;
        let report = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= DEGRADED_REPORT_INTERVAL);
        if report {
            self.last_report = Some(now);
        }
        TapOutcome::Dropped { report }
    }

    /// The track ended (unpublished, or its participant left): its file closes at `now`. When
    /// even this does not fit the queue, the file closes with the recording instead, its last
    /// frame held to the stop — a longer still picture, nothing lost.
    pub fn close_track(&mut self, key: PKey, source: TrackSource, now: Instant) {
        let track = (key, source);
        if self.known.remove(&track).is_some() {
            let _ = self.tx.try_send(TapMessage::Close { track, at: now });
        }
    }

    /// Ends the recording: the writer drains what is queued, closes every file and reports
    /// `Finished`. Does not wait for it (the engine thread must not block on a disk).
    pub fn stop(self, now: Instant) -> Option<std::thread::JoinHandle<()>> {
        let _ = self.tx.try_send(TapMessage::Stop { at: now });
        // The writer polls its queue on a timer; wake it so the files close now.
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
        // Dropping `tx` disconnects the queue, which also ends the writer if Stop did not fit.
        self.writer
    }

    pub fn room(&self) -> &str {
        &self.room
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;

    fn packet(seq: u16) -> Packet {
        Packet {
            header: Header {
                sequence_number: seq,
                timestamp: u32::from(seq) * 960,
                ..Default::default()
            },
            payload: Bytes::from_static(&[0xf8, 1, 2, 3]),
        }
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_degraded_without_blocking() {
        let (mut tap, rx) = RecordingTap::with_queue("r", PathBuf::from("/nonexistent"), 4);
        let t0 = Instant::now();
        let mut outcomes = Vec::new();
        for seq in 0..10 {
            outcomes.push(tap.on_rtp(
                7,
                "alice",
                TrackSource::Microphone,
                Codec::Opus,
                0,
                &packet(seq),
                t0 + Duration::from_millis(u64::from(seq)),
            ));
        }
        // Open + 3 packets fill the queue of 4; the rest are dropped, the first drop reported.
        assert_eq!(&outcomes[..3], &[TapOutcome::Queued; 3]);
        assert_eq!(outcomes[3], TapOutcome::Dropped { report: true });
        assert!(
            outcomes[4..]
                .iter()
                .all(|o| *o == TapOutcome::Dropped { report: false })
        );
        assert_eq!(tap.dropped(), 7);
        // Reported again only after the interval.
        let later = t0 + DEGRADED_REPORT_INTERVAL + Duration::from_millis(5);
        let o = tap.on_rtp(
            7,
            "alice",
            TrackSource::Microphone,
            Codec::Opus,
            0,
            &packet(99),
            later,
        );
        assert_eq!(o, TapOutcome::Dropped { report: true });
        // The queue holds exactly what was accepted, the payload shared, not copied.
        let got: Vec<TapMessage> = rx.try_iter().collect();
        assert_eq!(got.len(), 4);
        assert!(matches!(got[0], TapMessage::Open { .. }));
        let TapMessage::Packet(p) = &got[1] else {
            panic!("packet expected");
        };
        assert_eq!(p.seq, 0);
        assert_eq!(p.payload.as_ptr(), packet(0).payload.as_ptr());
        // Draining makes room again.
        let o = tap.on_rtp(
            7,
            "alice",
            TrackSource::Microphone,
            Codec::Opus,
            0,
            &packet(100),
            later,
        );
        assert_eq!(o, TapOutcome::Queued);
    }

    #[test]
    fn an_open_that_did_not_fit_is_retried() {
        let (mut tap, rx) = RecordingTap::with_queue("r", PathBuf::from("/nonexistent"), 1);
        let t0 = Instant::now();
        let cam = TrackSource::Camera;
        // The Open fits, the packet does not.
        let o = tap.on_rtp(1, "a", cam, Codec::Vp8, 0, &packet(0), t0);
        assert!(matches!(o, TapOutcome::Dropped { .. }));
        // A second track's Open does not fit either, so it is not marked known...
        let o = tap.on_rtp(2, "b", cam, Codec::Vp8, 0, &packet(0), t0);
        assert!(matches!(o, TapOutcome::Dropped { .. }));
        assert!(matches!(
            rx.try_recv(),
            Ok(TapMessage::Open { track: (1, _), .. })
        ));
        // ...and its next packet sends the Open first.
        let _ = tap.on_rtp(2, "b", cam, Codec::Vp8, 0, &packet(1), t0);
        assert!(matches!(
            rx.try_recv(),
            Ok(TapMessage::Open { track: (2, _), .. })
        ));
    }
}
