//! One simulated WebRTC peer connection: a sans-IO `rtc` peer connection on its own loopback UDP
//! socket, driven by one task. A *sending* peer publishes synthetic Opus (20 ms frames) and VP8
//! in up to three simulcast layers, answering PLI/FIR with key frames; a *receiving* peer counts
//! what arrives (loss, duplicates, jitter, one-way delay from the payload's stamp) and sends its
//! own NACKs and PLIs, so they can be counted.
//!
//! The signaling side (Parley's WebSocket or Janus's API) holds an `Arc<Peer>` and works on the
//! connection under its lock (SDP offers and answers), then pokes the driver so whatever the
//! connection wants to send goes out at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::{Bytes, BytesMut};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{
    NackResponderBuilder, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::payload;
use super::stats::{Counters, Feedback, Histogram, Stream, nack_pairs};

const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const RRID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// The clock both the publishers' stamps and the subscribers' arrival times are read from (one
/// process, so one clock: the difference is the one-way delay through the server).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamp_now() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// One simulcast layer as a camera encoder would produce it.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub rid: &'static str,
    pub bitrate_bps: u32,
    pub width: u16,
    pub height: u16,
}

/// The ladder of a 720p camera: quarter, half, full (Chrome's rids q, h, f).
pub const LAYERS: [LayerSpec; 3] = [
    LayerSpec {
        rid: "q",
        bitrate_bps: 150_000,
        width: 320,
        height: 180,
    },
    LayerSpec {
        rid: "h",
        bitrate_bps: 500_000,
        width: 640,
        height: 360,
    },
    LayerSpec {
        rid: "f",
        bitrate_bps: 1_500_000,
        width: 1280,
        height: 720,
    },
];

/// The simulcast layer a render size needs: the smallest that covers it in both dimensions.
pub fn layer_for(width: u32, height: u32) -> usize {
    LAYERS
        .iter()
        .position(|l| u32::from(l.width) >= width && u32::from(l.height) >= height)
        .unwrap_or(LAYERS.len() - 1)
}

pub const FPS: u32 = 30;
/// Periodic key frames on every layer (besides those asked for with PLI/FIR).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
/// A key frame is this many times the size of a delta frame.
const KEYFRAME_FACTOR: usize = 3;
/// Largest VP8 payload per packet (a browser's packetizer stays near 1200-byte datagrams).
const MAX_PAYLOAD: usize = 1100;
/// 20 ms of Opus at about 32 kbit/s.
const OPUS_BYTES: usize = 80;
const AUDIO_FRAME: Duration = Duration::from_millis(20);

/// What a sending peer publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub audio: bool,
    /// Number of simulcast video layers (0: no video, 1: `q` only ... 3: `q`, `h`, `f`).
    pub video_layers: usize,
}

struct Layer {
    spec: LayerSpec,
    ssrc: u32,
    seq: u16,
    picture_id: u16,
    keyframe_due: bool,
}

struct VideoOut {
    sender: RTCRtpSenderId,
    pt: u8,
    mid_ext: Option<u8>,
    rid_ext: Option<u8>,
    mid: Bytes,
    layers: Vec<Layer>,
}

struct AudioOut {
    sender: RTCRtpSenderId,
    pt: u8,
    mid_ext: Option<u8>,
    mid: Bytes,
    ssrc: u32,
    seq: u16,
}

/// What a sending peer did.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendCounters {
    pub packets: u64,
    pub bytes: u64,
    pub keyframes: u64,
    pub plis_received: u64,
    pub firs_received: u64,
    pub nacks_received: u64,
    pub send_errors: u64,
}

struct Sender {
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    started: Option<Instant>,
    next_audio: Instant,
    next_frame: Instant,
    next_keyframe: Instant,
    frames: u64,
    scratch: Vec<u8>,
    counters: SendCounters,
}

struct Receiver {
    /// Track id → (receiver, video?) from the track's OnOpen.
    tracks: HashMap<String, (RTCRtpReceiverId, bool)>,
    streams: Vec<(u32, RTCRtpReceiverId, Stream)>,
    delay: Histogram,
    first_media: Option<Instant>,
}

enum Role {
    Send(Box<Sender>),
    Receive(Box<Receiver>),
}

pub struct Inner {
    pub pc: RTCPeerConnection,
    role: Role,
    pub connected: bool,
    pub failed: bool,
}

/// A peer connection and its driver's wake-up.
pub struct Peer {
    inner: Mutex<Inner>,
    notify: Notify,
    pub local: SocketAddr,
    socket: Arc<UdpSocket>,
}

/// A snapshot of a receiving peer.
#[derive(Clone, Default)]
pub struct ReceiveSnapshot {
    pub counters: Counters,
    pub delay: Histogram,
    pub first_media: Option<Instant>,
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The SRTP profile a simulated participant's connections offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Srtp {
    /// AES-128-CM with HMAC-SHA1-80 only: what Chromium negotiates with an SFU.
    #[default]
    AesCm,
    /// AES-128-GCM only.
    AesGcm,
}

impl Srtp {
    pub fn name(self) -> &'static str {
        match self {
            Srtp::AesCm => "AES-CM-128-HMAC-SHA1-80",
            Srtp::AesGcm => "AES-128-GCM",
        }
    }
}

fn build_pc(
    now: Instant,
    local: SocketAddr,
    sending: bool,
    srtp: Srtp,
) -> anyhow::Result<RTCPeerConnection> {
    let mut me = MediaEngine::default();
    me.register_default_codecs()?;
    me.register_feedback(feedback("nack", ""), RtpCodecKind::Video);
    me.register_feedback(feedback("nack", "pli"), RtpCodecKind::Video);
    me.register_feedback(feedback("ccm", "fir"), RtpCodecKind::Video);
    let ext = |uri: &str| RTCRtpHeaderExtensionCapability {
        uri: uri.to_owned(),
    };
    me.register_header_extension(ext(MID_URI), RtpCodecKind::Video, None)?;
    me.register_header_extension(ext(MID_URI), RtpCodecKind::Audio, None)?;
    if sending {
        me.register_header_extension(ext(RID_URI), RtpCodecKind::Video, None)?;
        me.register_header_extension(ext(RRID_URI), RtpCodecKind::Video, None)?;
    }
    // RTCP reports both ways; the sender keeps what it sent for the server's NACKs. The
    // receiver's NACKs and PLIs are our own (see `stats::Stream`) so they can be counted.
    let mut registry = Registry::new()
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build());
    if sending {
        registry = registry.with(Slot::NackResponder, NackResponderBuilder::new().build());
    }
    let profile = match srtp {
        Srtp::AesCm => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        Srtp::AesGcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    };
    let settings = SettingEngineBuilder::new()
        .with_srtp_protection_profiles(vec![profile])
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)?;
    let c = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&c).to_json()?)?;
    Ok(pc)
}

fn track(kind: RtpCodecKind, id: &str, codings: Vec<RTCRtpEncodingParameters>) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "loadtest".into(),
        format!("loadtest-{id}"),
        format!("loadtest-{id}"),
        kind,
        codings,
    )
}

fn coding(rid: &str, mime: &str, clock_rate: u32, channels: u16) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            rid: rid.into(),
            ssrc: Some(rand::random()),
            ..Default::default()
        },
        codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate,
            channels,
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Peer {
    /// A peer that publishes `what` (its offer is made with [`Peer::create_offer`]).
    pub async fn sending(
        what: Publish,
        srtp: Srtp,
        bind: IpAddr,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Peer>> {
        let socket = UdpSocket::bind((bind, 0)).await?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut pc = build_pc(now, local, true, srtp)?;
        let mut video = None;
        let mut audio = None;
        if what.video_layers > 0 {
            let n = what.video_layers.min(LAYERS.len());
            let codings: Vec<_> = LAYERS[..n]
                .iter()
                .map(|l| coding(if n > 1 { l.rid } else { "" }, "video/VP8", 90000, 0))
                .collect();
            let ssrcs: Vec<u32> = codings
                .iter()
                .filter_map(|c| c.rtp_coding_parameters.ssrc)
                .collect();
            let sender = pc.add_track(track(RtpCodecKind::Video, "camera", codings))?;
            video = Some(VideoOut {
                sender,
                pt: 96,
                mid_ext: None,
                rid_ext: None,
                mid: Bytes::new(),
                layers: LAYERS[..n]
                    .iter()
                    .zip(ssrcs)
                    .map(|(spec, ssrc)| Layer {
                        spec: *spec,
                        ssrc,
                        seq: rand::random(),
                        picture_id: rand::random::<u16>() & 0x7fff,
                        keyframe_due: true,
                    })
                    .collect(),
            });
        }
        if what.audio {
            let c = coding("", "audio/opus", 48000, 2);
            let ssrc = c.rtp_coding_parameters.ssrc.unwrap_or_default();
            let sender = pc.add_track(track(RtpCodecKind::Audio, "microphone", vec![c]))?;
            audio = Some(AudioOut {
                sender,
                pt: 111,
                mid_ext: None,
                mid: Bytes::new(),
                ssrc,
                seq: rand::random(),
            });
        }
        let sender = Sender {
            video,
            audio,
            started: None,
            next_audio: now,
            next_frame: now,
            next_keyframe: now,
            frames: 0,
            scratch: Vec::with_capacity(1500),
            counters: SendCounters::default(),
        };
        Ok(Self::spawn(
            pc,
            Role::Send(Box::new(sender)),
            socket,
            local,
            stop,
        ))
    }

    /// A peer that receives (it answers the server's offer with [`Peer::answer`]).
    pub async fn receiving(
        srtp: Srtp,
        bind: IpAddr,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Peer>> {
        let socket = UdpSocket::bind((bind, 0)).await?;
        let local = socket.local_addr()?;
        let pc = build_pc(Instant::now(), local, false, srtp)?;
        let receiver = Receiver {
            tracks: HashMap::new(),
            streams: Vec::new(),
            delay: Histogram::default(),
            first_media: None,
        };
        Ok(Self::spawn(
            pc,
            Role::Receive(Box::new(receiver)),
            socket,
            local,
            stop,
        ))
    }

    fn spawn(
        pc: RTCPeerConnection,
        role: Role,
        socket: UdpSocket,
        local: SocketAddr,
        stop: CancellationToken,
    ) -> Arc<Peer> {
        let peer = Arc::new(Peer {
            inner: Mutex::new(Inner {
                pc,
                role,
                connected: false,
                failed: false,
            }),
            notify: Notify::new(),
            local,
            socket: Arc::new(socket),
        });
        tokio::spawn(drive(peer.clone(), stop));
        peer
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Our offer (sending peers) and, per transceiver, its mid and whether it is video.
    pub fn create_offer(&self) -> anyhow::Result<(String, Vec<(String, bool)>)> {
        let mut g = self.lock();
        let offer = g.pc.create_offer(None)?;
        g.pc.set_local_description(Instant::now(), offer)?;
        let sdp =
            g.pc.local_description()
                .context("no local description")?
                .sdp;
        let mut mids = Vec::new();
        let tids: Vec<_> = g.pc.get_transceivers().collect();
        for tid in tids {
            let Some(t) = g.pc.rtp_transceiver(tid) else {
                continue;
            };
            if let (Some(mid), Some(s)) = (t.mid().clone(), t.sender()) {
                let video = matches!(&g.role, Role::Send(snd) if snd.video.as_ref().is_some_and(|v| v.sender == s));
                mids.push((mid, video));
            }
        }
        drop(g);
        self.notify.notify_one();
        Ok((sdp, mids))
    }

    /// Applies the server's answer to our offer, and learns the negotiated payload types and
    /// header extension ids the media must carry.
    pub fn apply_answer(&self, sdp: String) -> anyhow::Result<()> {
        let mut g = self.lock();
        let now = Instant::now();
        g.pc.set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
        let Inner { pc, role, .. } = &mut *g;
        if let Role::Send(s) = role {
            if let Some(v) = s.video.as_mut() {
                learn(
                    pc,
                    v.sender,
                    &mut v.pt,
                    &mut v.mid_ext,
                    Some(&mut v.rid_ext),
                    &mut v.mid,
                );
            }
            if let Some(a) = s.audio.as_mut() {
                learn(pc, a.sender, &mut a.pt, &mut a.mid_ext, None, &mut a.mid);
            }
        }
        drop(g);
        self.notify.notify_one();
        Ok(())
    }

    /// Applies the server's offer and returns our answer.
    pub fn answer(&self, sdp: String) -> anyhow::Result<String> {
        let mut g = self.lock();
        let now = Instant::now();
        g.pc.set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
        let answer = g.pc.create_answer(None)?;
        g.pc.set_local_description(now, answer)?;
        let sdp =
            g.pc.local_description()
                .context("no local description")?
                .sdp;
        drop(g);
        self.notify.notify_one();
        Ok(sdp)
    }

    /// Our host candidate, as a trickled `candidate` line (for servers that want it trickled).
    pub fn candidate_line(&self) -> String {
        format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            self.local.ip(),
            self.local.port()
        )
    }

    /// Starts the media (sending peers; from now on, at the encoder's pace).
    pub fn start_media(&self) {
        let mut g = self.lock();
        if let Role::Send(s) = &mut g.role
            && s.started.is_none()
        {
            // Spread the publishers' frame phases as independent cameras would be.
            let now = Instant::now() + Duration::from_micros(rand::random::<u64>() % 33_000);
            s.started = Some(now);
            s.next_audio = now;
            s.next_frame = now;
            s.next_keyframe = now + KEYFRAME_INTERVAL;
        }
        drop(g);
        self.notify.notify_one();
    }

    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    pub fn has_failed(&self) -> bool {
        self.lock().failed
    }

    pub fn send_counters(&self) -> SendCounters {
        match &self.lock().role {
            Role::Send(s) => s.counters,
            Role::Receive(_) => SendCounters::default(),
        }
    }

    pub fn receive_snapshot(&self) -> ReceiveSnapshot {
        match &self.lock().role {
            Role::Receive(r) => {
                let mut counters = Counters::default();
                for (_, _, s) in &r.streams {
                    counters.add(&s.snapshot());
                }
                ReceiveSnapshot {
                    counters,
                    delay: r.delay.clone(),
                    first_media: r.first_media,
                }
            }
            Role::Send(_) => ReceiveSnapshot::default(),
        }
    }

    pub fn first_media(&self) -> Option<Instant> {
        match &self.lock().role {
            Role::Receive(r) => r.first_media,
            Role::Send(_) => None,
        }
    }

    pub fn close(&self) {
        let _ = self.lock().pc.close();
        self.notify.notify_one();
    }
}

/// Payload type and extension ids the negotiation gave one sender.
fn learn(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    pt: &mut u8,
    mid_ext: &mut Option<u8>,
    rid_ext: Option<&mut Option<u8>>,
    mid: &mut Bytes,
) {
    if let Some(mut s) = pc.rtp_sender(sender) {
        let params = s.get_parameters();
        if let Some(c) = params.rtp_parameters.codecs.first() {
            *pt = c.payload_type;
        }
        let id = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .map(|e| e.id as u8)
        };
        *mid_ext = id(MID_URI);
        if let Some(r) = rid_ext {
            *r = id(RID_URI);
        }
    }
    let tids: Vec<_> = pc.get_transceivers().collect();
    for tid in tids {
        if let Some(t) = pc.rtp_transceiver(tid)
            && t.sender() == Some(sender)
            && let Some(m) = t.mid().clone()
        {
            *mid = Bytes::from(m);
        }
    }
}

const RECV_BATCH: usize = 64;

/// The driver: socket reads, the connection's timers, media pacing, and the pokes from the
/// signaling side, until `stop`.
async fn drive(peer: Arc<Peer>, stop: CancellationToken) {
    let mut buf = vec![0u8; 2048];
    let mut out: Vec<(BytesMut, SocketAddr)> = Vec::with_capacity(64);
    loop {
        let deadline = {
            let mut g = peer.lock();
            next_deadline(&mut g)
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            _ = stop.cancelled() => break,
            r = peer.socket.recv_from(&mut buf) => {
                let now = Instant::now();
                let mut g = peer.lock();
                if let Ok((n, from)) = r {
                    read(&mut g, peer.local, from, &buf[..n], now);
                }
                for _ in 0..RECV_BATCH {
                    match peer.socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => read(&mut g, peer.local, from, &buf[..n], now),
                        Err(_) => break,
                    }
                }
                process(&mut g, now, &mut out);
            }
            _ = peer.notify.notified() => {
                let now = Instant::now();
                let mut g = peer.lock();
                process(&mut g, now, &mut out);
            }
            _ = sleep => {
                let now = Instant::now();
                let mut g = peer.lock();
                if g.pc.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = g.pc.handle_timeout(now);
                }
                pace(&mut g, now);
                process(&mut g, now, &mut out);
            }
        }
        for (data, to) in out.drain(..) {
            if peer.socket.try_send_to(&data, to).is_err() {
                let mut g = peer.lock();
                if let Role::Send(s) = &mut g.role {
                    s.counters.send_errors += 1;
                }
            }
        }
    }
    let _ = peer.lock().pc.close();
}

fn next_deadline(g: &mut Inner) -> Instant {
    let now = Instant::now();
    let mut d = g.pc.poll_timeout().unwrap_or(now + Duration::from_secs(1));
    match &g.role {
        Role::Send(s) if s.started.is_some() && g.connected => {
            d = d.min(s.next_audio.min(s.next_frame));
        }
        Role::Receive(r) if r.streams.iter().any(|(_, _, s)| s.has_open_gaps()) => {
            d = d.min(now + Duration::from_millis(20));
        }
        _ => {}
    }
    d.max(now)
}

fn read(g: &mut Inner, local: SocketAddr, from: SocketAddr, data: &[u8], now: Instant) {
    let _ = g.pc.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(data),
    });
}

/// Drains what the connection produced: events, received media and RTCP, outgoing datagrams.
fn process(g: &mut Inner, now: Instant, out: &mut Vec<(BytesMut, SocketAddr)>) {
    let Inner {
        pc,
        role,
        connected,
        failed,
    } = g;
    while let Some(ev) = pc.poll_event() {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => match s {
                RTCPeerConnectionState::Connected => *connected = true,
                RTCPeerConnectionState::Failed => *failed = true,
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                if let Role::Receive(r) = role {
                    let video = pc
                        .rtp_receiver(init.receiver_id)
                        .is_some_and(|rx| rx.track().kind() == RtpCodecKind::Video);
                    r.tracks.insert(init.track_id, (init.receiver_id, video));
                }
            }
            _ => {}
        }
    }
    let mut feedback: Vec<(RTCRtpReceiverId, u32, Feedback)> = Vec::new();
    while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
        match (message, &mut *role) {
            (RTCMessage::RtpPacket(track, p), Role::Receive(r)) => {
                let idx = match r
                    .streams
                    .iter()
                    .position(|(ssrc, _, _)| *ssrc == p.header.ssrc)
                {
                    Some(i) => i,
                    None => {
                        let Some(&(rx, video)) = r.tracks.get(&track) else {
                            continue;
                        };
                        r.streams
                            .push((p.header.ssrc, rx, Stream::new(video, p.header.ssrc)));
                        r.streams.len() - 1
                    }
                };
                let (_, rx, s) = &mut r.streams[idx];
                let (stamp, key) = if s.video {
                    let info = payload::read_vp8(&p.payload);
                    (info.stamp_us, info.keyframe)
                } else {
                    (payload::read_opus(&p.payload), false)
                };
                let arrival = now.duration_since(epoch()).as_micros() as i64;
                let transit = stamp.map(|t| arrival - t as i64);
                if let Some(t) = transit {
                    r.delay.record(t.max(0) as u64);
                }
                r.first_media.get_or_insert(now);
                let fb = s.on_packet(now, p.header.sequence_number, p.payload.len(), key, transit);
                if !fb.nack.is_empty() {
                    feedback.push((*rx, s.media_ssrc, fb));
                }
            }
            (RTCMessage::RtcpPacket(_, packets), Role::Send(s)) => {
                for p in packets {
                    let any = p.as_any();
                    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                        s.counters.plis_received += 1;
                        keyframe_for(s, Some(pli.media_ssrc));
                    } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                        s.counters.firs_received += 1;
                        if fir.fir.is_empty() {
                            keyframe_for(s, None);
                        }
                        for e in &fir.fir {
                            keyframe_for(s, Some(e.ssrc));
                        }
                    } else if any.downcast_ref::<TransportLayerNack>().is_some() {
                        // Answered by the NACK responder interceptor; counted here.
                        s.counters.nacks_received += 1;
                    }
                }
            }
            _ => {}
        }
    }
    if let Role::Receive(r) = role
        && r.streams.iter().any(|(_, _, s)| s.has_open_gaps())
    {
        for (_, rx, s) in &mut r.streams {
            let fb = s.on_timer(now);
            if !fb.nack.is_empty() || fb.pli {
                feedback.push((*rx, s.media_ssrc, fb));
            }
        }
    }
    for (rx, media_ssrc, fb) in feedback {
        let mut packets: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        if !fb.nack.is_empty() {
            packets.push(Box::new(TransportLayerNack {
                sender_ssrc: 0,
                media_ssrc,
                nacks: nack_pairs(&fb.nack)
                    .into_iter()
                    .map(|(packet_id, lost_packets)| NackPair {
                        packet_id,
                        lost_packets,
                    })
                    .collect(),
            }));
        }
        if fb.pli {
            packets.push(Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            }));
        }
        if let Some(mut r) = pc.rtp_receiver(rx) {
            let _ = r.write_rtcp(now, packets);
        }
    }
    while let Some(t) = pc.poll_write() {
        out.push((t.message, t.transport.peer_addr));
    }
}

fn keyframe_for(s: &mut Sender, ssrc: Option<u32>) {
    if let Some(v) = s.video.as_mut() {
        for l in &mut v.layers {
            if ssrc.is_none_or(|x| x == l.ssrc) {
                l.keyframe_due = true;
            }
        }
    }
}

/// Sends every audio and video frame that is due.
fn pace(g: &mut Inner, now: Instant) {
    let Inner {
        pc,
        role,
        connected,
        ..
    } = g;
    let Role::Send(s) = role else { return };
    if s.started.is_none() || !*connected {
        return;
    }
    let started = s.started.unwrap_or(now);
    let Sender {
        video,
        audio,
        next_audio,
        next_frame,
        next_keyframe,
        frames,
        scratch,
        counters,
        ..
    } = &mut **s;
    // A stalled generator does not burst to catch up: frames it could not send are skipped,
    // as a real encoder would skip them.
    if now.duration_since(*next_audio) > Duration::from_millis(200) {
        *next_audio = now;
    }
    while let Some(a) = audio.as_mut()
        && *next_audio <= now
    {
        let ts = (next_audio.duration_since(started).as_micros() as u64 * 48 / 1000) as u32;
        payload::opus_packet(scratch, stamp_now(), OPUS_BYTES);
        a.seq = a.seq.wrapping_add(1);
        let mut header = Header {
            version: 2,
            marker: false,
            payload_type: a.pt,
            sequence_number: a.seq,
            timestamp: ts,
            ssrc: a.ssrc,
            ..Default::default()
        };
        if let Some(id) = a.mid_ext {
            let _ = header.set_extension(id, a.mid.clone());
        }
        write(pc, a.sender, header, scratch, counters, now);
        *next_audio += AUDIO_FRAME;
    }
    let frame = Duration::from_secs(1) / FPS;
    if now.duration_since(*next_frame) > Duration::from_millis(200) {
        *next_frame = now;
    }
    while let Some(v) = video.as_mut()
        && *next_frame <= now
    {
        let periodic = *next_frame >= *next_keyframe;
        if periodic {
            *next_keyframe += KEYFRAME_INTERVAL;
        }
        let ts = (next_frame.duration_since(started).as_micros() as u64 * 90 / 1000) as u32;
        let stamp = stamp_now();
        let simulcast = v.layers.len() > 1;
        let (pt, mid_ext, rid_ext, sender) = (v.pt, v.mid_ext, v.rid_ext, v.sender);
        let mid = v.mid.clone();
        for l in &mut v.layers {
            let key = periodic || l.keyframe_due;
            l.keyframe_due = false;
            let mut bytes = (l.spec.bitrate_bps / 8 / FPS) as usize;
            if key {
                bytes *= KEYFRAME_FACTOR;
                counters.keyframes += 1;
            }
            l.picture_id = (l.picture_id + 1) & 0x7fff;
            let n = bytes.div_ceil(MAX_PAYLOAD).max(1);
            let per = bytes / n;
            for i in 0..n {
                payload::vp8_packet(
                    scratch,
                    l.picture_id,
                    i == 0,
                    key,
                    (l.spec.width, l.spec.height),
                    stamp,
                    per,
                    0x40 + i as u8,
                );
                l.seq = l.seq.wrapping_add(1);
                let mut header = Header {
                    version: 2,
                    marker: i + 1 == n,
                    payload_type: pt,
                    sequence_number: l.seq,
                    timestamp: ts,
                    ssrc: l.ssrc,
                    ..Default::default()
                };
                // Browsers tag simulcast packets with mid and rid; so do we.
                if let Some(id) = mid_ext {
                    let _ = header.set_extension(id, mid.clone());
                }
                if simulcast && let Some(id) = rid_ext {
                    let _ = header.set_extension(id, Bytes::from_static(l.spec.rid.as_bytes()));
                }
                write(pc, sender, header, scratch, counters, now);
            }
        }
        *frames += 1;
        *next_frame += frame;
    }
}

fn write(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    header: Header,
    payload: &[u8],
    counters: &mut SendCounters,
    now: Instant,
) {
    let packet = Packet {
        header,
        payload: Bytes::copy_from_slice(payload),
    };
    if let Some(mut s) = pc.rtp_sender(sender) {
        match s.write_rtp(now, packet) {
            Ok(()) => {
                counters.packets += 1;
                counters.bytes += payload.len() as u64;
            }
            Err(_) => counters.send_errors += 1,
        }
    }
}

/// Waits until `peer` is connected (ICE + DTLS), failed, or `limit` passed.
pub async fn wait_connected(peer: &Peer, limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    loop {
        if peer.is_connected() {
            return Ok(());
        }
        if peer.has_failed() {
            return Err(anyhow!("peer connection failed"));
        }
        if Instant::now() >= until {
            return Err(anyhow!("peer connection not up within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
