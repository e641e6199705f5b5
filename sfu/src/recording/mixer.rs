//! The mixed-down audio of a whole room: every participant's Opus decoded, summed at 48 kHz in
//! 20 ms frames, limited against clipping, re-encoded to Opus and written as Ogg Opus.
//!
//! Alignment: the mixed file's time zero is the recording's start. Each speaker's stream is
//! placed by its RTP timestamps (which carry the sender's exact spacing, free of network
//! jitter), anchored to the wall-clock arrival of its first packet; if a stream drifts more than
//! [`RESYNC`] from its arrival times (a sender's clock reset, a long pause with a timestamp
//! jump) it is re-anchored. Frames are mixed and encoded once they are [`JITTER`] behind the
//! newest arrival, so slightly late packets still land in place; a frame no one spoke in is
//! silence, so joins and leaves mid-meeting need no special case.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::time::{Duration, Instant};

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use super::ogg::OggOpusWriter;
use super::opus_toc;
use super::tap::TrackKey;
use super::track::{RtpIn, TsUnwrapper};

/// 20 ms at 48 kHz.
pub const FRAME: usize = 960;
/// How far behind the newest arrival frames are finalized.
pub const JITTER: Duration = Duration::from_millis(200);
/// A stream further than this from its arrival times is re-anchored.
pub const RESYNC: Duration = Duration::from_millis(1_000);
/// Up to this many samples of a speaker's lost audio are concealed by its decoder; longer gaps
/// are silence (concealment of a long gap only produces a fading buzz).
const MAX_PLC: i64 = 5 * FRAME as i64;

struct Speaker {
    decoder: Decoder,
    ts: TsUnwrapper,
    /// (unwrapped RTP timestamp, timeline sample) the stream is anchored at.
    anchor: Option<(i64, i64)>,
    /// Timeline sample where this speaker's next packet should start.
    next: Option<i64>,
}

pub struct Mixer<W: Write> {
    ogg: OggOpusWriter<W>,
    encoder: Encoder,
    origin: Instant,
    speakers: HashMap<TrackKey, Speaker>,
    /// Frames not yet encoded; `frames[0]` starts at sample `first * FRAME` of the timeline.
    frames: VecDeque<Vec<i32>>,
    first: i64,
    gain: f32,
    pcm: Vec<i16>,
    packet: Vec<u8>,
}

fn samples_since(origin: Instant, t: Instant) -> i64 {
    (t.saturating_duration_since(origin).as_micros() as i64) * 48 / 1000
}

impl<W: Write> Mixer<W> {
    pub fn new(out: W, origin: Instant) -> Result<Self, opus::Error> {
        let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(48_000))?;
        Ok(Self {
            ogg: OggOpusWriter::new(out, 0x6d69_7864, vec!["PARLEY_TRACK=mixed".into()]),
            encoder,
            origin,
            speakers: HashMap::new(),
            frames: VecDeque::new(),
            first: 0,
            gain: 1.0,
            pcm: vec![0; 5_760],
            packet: vec![0; 1_500],
        })
    }

    /// Mixes one Opus packet of one speaker; finalizes frames that are old enough.
    pub fn on_packet(&mut self, track: TrackKey, p: &RtpIn) -> io::Result<()> {
        let arrival = samples_since(self.origin, p.arrival);
        let Some(n) = opus_toc::packet_samples(p.payload) else {
            return Ok(());
        };
        let speaker = match self.speakers.entry(track) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Speaker {
                decoder: Decoder::new(48_000, Channels::Mono).map_err(io::Error::other)?,
                ts: TsUnwrapper::default(),
                anchor: None,
                next: None,
            }),
        };
        let rtp = speaker.ts.unwrap(p.ts);
        let resync = samples_since(self.origin, self.origin + RESYNC);
        let pos = match speaker.anchor {
            Some((a_rtp, a_pos)) if (a_pos + rtp - a_rtp - arrival).abs() <= resync => {
                a_pos + rtp - a_rtp
            }
            _ => {
                speaker.anchor = Some((rtp, arrival));
                speaker.next = None;
                arrival
            }
        };
        let floor = self.first * FRAME as i64;
        if pos < floor || speaker.next.is_some_and(|next| pos < next) {
            // Too late for frames already encoded, or a duplicate.
            return Ok(());
        }
        if let Some(next) = speaker.next {
            let gap = pos - next;
            if gap > 0 && gap <= MAX_PLC {
                let pcm = &mut self.pcm[..gap as usize];
                if let Ok(got) = speaker.decoder.decode(&[], pcm, false) {
                    add(&mut self.frames, self.first, next, &self.pcm[..got]);
                }
            }
        }
        // A packet the decoder rejects is skipped; its span stays silent.
        let got = speaker
            .decoder
            .decode(p.payload, &mut self.pcm, false)
            .unwrap_or(0);
        add(&mut self.frames, self.first, pos, &self.pcm[..got]);
        speaker.next = Some(pos + i64::from(n));
        let horizon = arrival - samples_since(self.origin, self.origin + JITTER);
        self.emit_until(horizon)
    }

    /// Encodes every frame that ends at or before `horizon` (timeline samples), silence where
    /// nothing was mixed.
    fn emit_until(&mut self, horizon: i64) -> io::Result<()> {
        while (self.first + 1) * FRAME as i64 <= horizon {
            let frame = self.frames.pop_front().unwrap_or_else(|| vec![0; FRAME]);
            self.first += 1;
            self.encode(&frame)?;
        }
        Ok(())
    }

    fn encode(&mut self, frame: &[i32]) -> io::Result<()> {
        // Limiter: the gain drops at once to keep the loudest sample in range and recovers
        // over about half a second, which avoids both clipping and audible pumping per frame.
        let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as f32;
        let target = if peak > 32_767.0 {
            32_767.0 / peak
        } else {
            1.0
        };
        self.gain = if target < self.gain {
            target
        } else {
            (self.gain + 0.04).min(target)
        };
        let gain = self.gain;
        let pcm = &mut self.pcm[..FRAME];
        for (o, s) in pcm.iter_mut().zip(frame) {
            *o = (*s as f32 * gain).round().clamp(-32_768.0, 32_767.0) as i16;
        }
        let len = self
            .encoder
            .encode(pcm, &mut self.packet)
            .map_err(io::Error::other)?;
        self.ogg.write_packet(&self.packet[..len])
    }

    /// Encodes what is left (up to `stop`, when known, so the file spans the whole recording)
    /// and closes the file.
    pub fn close(mut self, stop: Option<Instant>) -> io::Result<W> {
        let buffered = (self.first + self.frames.len() as i64) * FRAME as i64;
        let until = stop.map_or(buffered, |s| buffered.max(samples_since(self.origin, s)));
        self.emit_until(until)?;
        self.ogg.close()
    }
}

/// Adds `pcm` into the frame buffer at timeline sample `pos`, growing it as needed.
fn add(frames: &mut VecDeque<Vec<i32>>, first: i64, pos: i64, pcm: &[i16]) {
    let start = pos - first * FRAME as i64;
    if start < 0 {
        return;
    }
    let end = start as usize + pcm.len();
    while frames.len() * FRAME < end {
        frames.push_back(vec![0; FRAME]);
    }
    for (i, s) in pcm.iter().enumerate() {
        let at = start as usize + i;
        frames[at / FRAME][at % FRAME] += i32::from(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TrackSource;
    use crate::recording::ogg::tests::read_pages;

    /// Goertzel power of `freq` in `pcm` at 48 kHz, normalized by length.
    fn power(pcm: &[i16], freq: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * freq / 48_000.0;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0f32, 0f32);
        for x in pcm {
            let s = f32::from(*x) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) / (pcm.len() as f32).powi(2)
    }

    /// 20 ms Opus packets of a sine at `freq` lasting `secs`.
    fn sine_packets(freq: f32, secs: f32, amplitude: f32) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(48_000, Channels::Mono, Application::Audio).unwrap();
        let total = (secs * 48_000.0) as usize;
        (0..total / FRAME)
            .map(|f| {
                let pcm: Vec<i16> = (0..FRAME)
                    .map(|i| {
                        let t = (f * FRAME + i) as f32 / 48_000.0;
                        (amplitude * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
                    })
                    .collect();
                enc.encode_vec(&pcm, 1500).unwrap()
            })
            .collect()
    }

    fn decode_ogg(bytes: &[u8]) -> Vec<i16> {
        let pages = read_pages(bytes);
        let mut dec = Decoder::new(48_000, Channels::Mono).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0i16; 5_760];
        for p in pages.iter().skip(2).flat_map(|p| &p.packets) {
            let n = dec.decode(p, &mut buf, false).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out.drain(..usize::from(crate::recording::ogg::PRE_SKIP));
        out
    }

    #[test]
    fn two_speakers_are_each_heard_in_their_own_time_span() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(Vec::new(), t0).unwrap();
        let alice = (1, TrackSource::Microphone);
        let bob = (2, TrackSource::Microphone);
        // Alice speaks 0.0–2.0 s at 440 Hz; Bob joins at 1.5 s and speaks until 3.5 s at
        // 1000 Hz, near full scale so the overlap would clip without the limiter.
        let a = sine_packets(440.0, 2.0, 20_000.0);
        let b = sine_packets(1000.0, 2.0, 20_000.0);
        let mut events: Vec<(u64, TrackKey, u32, usize, bool)> = Vec::new();
        for i in 0..a.len() {
            events.push((i as u64 * 20, alice, 5_000 + i as u32 * 960, i, true));
        }
        for i in 0..b.len() {
            events.push((
                1_500 + i as u64 * 20,
                bob,
                u32::MAX - 100_000 + i as u32 * 960,
                i,
                false,
            ));
        }
        events.sort_by_key(|e| e.0);
        for (ms, track, ts, i, is_a) in events {
            // Alice loses every 25th packet: concealed, no break in time.
            if is_a && i % 25 == 24 {
                continue;
            }
            let payload = if is_a { &a[i] } else { &b[i] };
            let arrival = t0 + Duration::from_millis(ms + (i as u64 * 7) % 13); // jitter
            mixer
                .on_packet(
                    track,
                    &RtpIn {
                        layer: 0,
                        seq: i as u16,
                        ts,
                        marker: false,
                        payload,
                        arrival,
                    },
                )
                .unwrap();
        }
        let out = mixer.close(Some(t0 + Duration::from_secs(4))).unwrap();
        let pcm = decode_ogg(&out);
        // The file spans the whole recording.
        assert!(
            (pcm.len() as i64 - 4 * 48_000).abs() <= FRAME as i64,
            "{}",
            pcm.len()
        );
        let span = |from: f32, to: f32| &pcm[(from * 48_000.0) as usize..(to * 48_000.0) as usize];
        let (a_only, both, b_only, silence) = (
            span(0.2, 1.4),
            span(1.6, 1.9),
            span(2.2, 3.4),
            span(3.6, 3.95),
        );
        assert!(power(a_only, 440.0) > 100.0 * power(a_only, 1000.0).max(1.0));
        assert!(power(b_only, 1000.0) > 100.0 * power(b_only, 440.0).max(1.0));
        assert!(power(both, 440.0) > 1000.0 && power(both, 1000.0) > 1000.0);
        let rms = |s: &[i16]| {
            (s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        assert!(
            rms(silence) < 100.0,
            "silence after both left: {}",
            rms(silence)
        );
        assert!(rms(a_only) > 5_000.0);
        // The limiter kept the overlap from hard clipping (few samples at full scale).
        let clipped = both.iter().filter(|s| s.unsigned_abs() >= 32_767).count();
        assert!(clipped < both.len() / 100, "clipped {clipped}");
    }
}
