//! The per-packet cost of the forwarding path, down-track by down-track:
//!
//! - `downtrack/rewrite`: VP8 descriptor parse, RTP munger decision, VP8 picture id munging,
//!   marshal into the send buffer with the rewrite applied, NACK cache insert, for a 1200-byte
//!   video packet;
//! - `downtrack/srtp_*`: the same plus SRTP protection with the `rtc` crate's SRTP context, for
//!   AES-128-GCM and AES-CM-128-HMAC-SHA1-80;
//! - `fanout/N`: one publisher packet forwarded to N subscribers (each its own down-track state
//!   and SRTP context), AES-128-GCM; criterion's throughput is in forwarded packets.
//!
//! Run with `cargo bench -p parley-sfu --bench forwarding`.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_sfu::forward::packet_cache::{
    CachedPacket, PacketCache, RetransmitLimits, VIDEO_CAPACITY,
};
use parley_sfu::forward::rtp_munger::{Decision, RtpIn, RtpMunger};
use parley_sfu::forward::vp8::{self, Vp8Munger};
use rtc::rtp::header::Header;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::hint::black_box;
use std::time::{Duration, Instant};

const PUBLISHER_SSRC: u32 = 0x1111_2222;
const PAYLOAD_LEN: usize = 1200;

/// A 1200-byte VP8 payload: X=1 I=1 (15-bit picture id) L=1 T=1, then frame bytes.
fn vp8_payload(picture_id: u16, tl0: u8) -> Bytes {
    let pid = picture_id | 0x8000;
    let mut v = vec![0x90, 0xE0, (pid >> 8) as u8, pid as u8, tl0, 0x40, 0x31];
    v.resize(PAYLOAD_LEN, 0xAB);
    Bytes::from(v)
}

/// The publisher's packet as the engine gets it after SRTP decryption.
struct InPacket {
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

/// One subscriber's down-track state, as the engine would hold it.
struct DownTrack {
    munger: RtpMunger,
    vp8: Vp8Munger,
    cache: PacketCache,
    /// Reused send buffer: marshalled header + payload with the VP8 rewrite applied.
    buf: Vec<u8>,
    srtp: Option<Context>,
}

impl DownTrack {
    fn new(out_ssrc: u32, profile: Option<ProtectionProfile>) -> Self {
        let mut munger = RtpMunger::new(out_ssrc, 90_000);
        munger.set_target(Some(PUBLISHER_SSRC));
        let srtp = profile.map(|p| {
            let provider = rtc::crypto::default_provider().expect("crypto provider");
            let key = vec![0x42; p.key_len()];
            let salt = vec![0x24; p.salt_len()];
            Context::new(&key, &salt, p, None, None, provider.crypto()).expect("srtp context")
        });
        DownTrack {
            munger,
            vp8: Vp8Munger::new(),
            cache: PacketCache::new(VIDEO_CAPACITY, RetransmitLimits::default()),
            buf: Vec::with_capacity(1500),
            srtp,
        }
    }

    /// The whole per-subscriber work for one packet; returns the protected length.
    fn forward(&mut self, p: &InPacket, desc: &vp8::Vp8Descriptor, now: Instant) -> usize {
        let decision = self.munger.process(
            &RtpIn {
                ssrc: PUBLISHER_SSRC,
                seq: p.seq,
                timestamp: p.timestamp,
                keyframe: desc.is_keyframe,
                padding_only: false,
            },
            now,
        );
        let Decision::Forward(out) = decision else {
            return 0;
        };
        let ids = self.vp8.munge(desc, out.switched);
        let header = Header {
            version: 2,
            marker: p.marker,
            payload_type: 96,
            sequence_number: out.seq,
            timestamp: out.timestamp,
            ssrc: out.ssrc,
            ..Default::default()
        };
        let hlen = header.marshal_size();
        self.buf.clear();
        self.buf.resize(hlen, 0);
        if header.marshal_to(&mut self.buf).is_err() {
            return 0;
        }
        self.buf.extend_from_slice(&p.payload);
        if let Some(payload) = self.buf.get_mut(hlen..) {
            let _ = vp8::apply(payload, desc, ids);
        }
        self.cache.insert(
            CachedPacket {
                ssrc: out.ssrc,
                seq: out.seq,
                timestamp: out.timestamp,
                marker: p.marker,
                payload_type: 96,
                payload: p.payload.clone(),
                vp8: Some(ids),
            },
            now,
        );
        match self.srtp.as_mut() {
            Some(ctx) => ctx
                .encrypt_rtp_with_header(&self.buf, &header)
                .map_or(0, |b| b.len()),
            None => self.buf.len(),
        }
    }
}

/// A publisher stream: one keyframe, then delta frames; 1 packet per 100 µs of media time.
struct Publisher {
    seq: u16,
    timestamp: u32,
    picture_id: u16,
    now: Instant,
    n: u64,
}

impl Publisher {
    fn new() -> Self {
        Publisher {
            seq: 65000,
            timestamp: u32::MAX - 100_000,
            picture_id: 32000,
            now: Instant::now(),
            n: 0,
        }
    }

    fn next(&mut self) -> (InPacket, vp8::Vp8Descriptor, Instant) {
        // 10 packets per frame.
        let first_of_frame = self.n.is_multiple_of(10);
        if first_of_frame && self.n > 0 {
            self.picture_id = self.picture_id.wrapping_add(1) & 0x7FFF;
            self.timestamp = self.timestamp.wrapping_add(3000);
        }
        let mut payload = vp8_payload(self.picture_id, (self.picture_id & 0xFF) as u8);
        if self.n == 0 {
            // Keyframe: P bit 0 in the VP8 header.
            let mut v = payload.to_vec();
            if let Some(b) = v.get_mut(6) {
                *b = 0x10;
            }
            payload = Bytes::from(v);
        }
        let desc = vp8::parse(&payload).expect("valid descriptor");
        let p = InPacket {
            seq: self.seq,
            timestamp: self.timestamp,
            marker: self.n % 10 == 9,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        self.n += 1;
        self.now += Duration::from_micros(100);
        (p, desc, self.now)
    }
}

/// Pre-built packets so the benchmark measures forwarding, not packet generation: the same
/// payload `Bytes` are reused (the publisher's buffer is shared in the real path too).
fn packets(n: usize) -> Vec<(InPacket, vp8::Vp8Descriptor, Instant)> {
    let mut p = Publisher::new();
    (0..n).map(|_| p.next()).collect()
}

fn downtrack(c: &mut Criterion) {
    let pkts = packets(4096);
    let mut g = c.benchmark_group("downtrack");
    g.throughput(Throughput::Elements(1));
    let profiles: [(&str, Option<ProtectionProfile>); 3] = [
        ("rewrite", None),
        ("srtp_aes128gcm", Some(ProtectionProfile::AeadAes128Gcm)),
        (
            "srtp_aes128cm_sha1_80",
            Some(ProtectionProfile::Aes128CmHmacSha1_80),
        ),
    ];
    for (name, profile) in profiles {
        g.bench_function(name, |b| {
            let mut dt = DownTrack::new(0xABCD, profile);
            // The first packet (the keyframe) starts the stream; then the sequence of deltas
            // repeats with ever-increasing numbers, as a long-running stream would.
            let mut i = 0usize;
            let mut lap = 0u16;
            b.iter(|| {
                let (p, desc, now) = &pkts[1 + i % (pkts.len() - 1)];
                if i > 0 && i.is_multiple_of(pkts.len() - 1) {
                    lap = lap.wrapping_add(1);
                }
                let shifted = InPacket {
                    seq: p.seq.wrapping_add(lap.wrapping_mul(4095)),
                    timestamp: p.timestamp,
                    marker: p.marker,
                    payload: p.payload.clone(),
                };
                if i == 0 {
                    let (k, kd, kn) = &pkts[0];
                    dt.forward(k, kd, *kn);
                }
                i += 1;
                black_box(dt.forward(&shifted, desc, *now))
            });
        });
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let pkts = packets(4096);
    let mut g = c.benchmark_group("fanout");
    for n in [10usize, 50, 200] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut subs: Vec<DownTrack> = (0..n)
                .map(|k| DownTrack::new(0x1000 + k as u32, Some(ProtectionProfile::AeadAes128Gcm)))
                .collect();
            let (k, kd, kn) = &pkts[0];
            for s in subs.iter_mut() {
                s.forward(k, kd, *kn);
            }
            let mut i = 0usize;
            let mut lap = 0u16;
            b.iter(|| {
                let (p, desc, now) = &pkts[1 + i % (pkts.len() - 1)];
                if i > 0 && i.is_multiple_of(pkts.len() - 1) {
                    lap = lap.wrapping_add(1);
                }
                i += 1;
                let shifted = InPacket {
                    seq: p.seq.wrapping_add(lap.wrapping_mul(4095)),
                    timestamp: p.timestamp,
                    marker: p.marker,
                    payload: p.payload.clone(),
                };
                let mut total = 0;
                for s in subs.iter_mut() {
                    total += s.forward(&shifted, desc, *now);
                }
                black_box(total)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, downtrack, fanout);
criterion_main!(benches);
