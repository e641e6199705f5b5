//! An in-memory network for the sans-IO core: native `rtc` client peer connections exchange
//! datagrams with [`Sfu`] through queues, under a simulated clock. No sockets, no threads, no
//! sleeping: a whole meeting (ICE, DTLS, SRTP, RTCP) runs deterministically inside one test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parley_sfu::engine::Sfu;
use parley_sfu::{
    ParticipantOptions, PeerRole, SfuEvent, SfuMetrics, TrackDescriptor, TrackSource,
};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

pub const SFU_ADDR: &str = "127.0.0.1:7000";
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// What a client received on its subscriber connection.
#[derive(Debug, Default, Clone)]
pub struct Inbound {
    pub packets: Vec<(u32, u16, u32, usize)>,
    pub rtcp: usize,
}

pub struct Client {
    pub id: String,
    pub publisher: RTCPeerConnection,
    pub subscriber: RTCPeerConnection,
    pub pub_addr: SocketAddr,
    pub sub_addr: SocketAddr,
    pub video: Option<(RTCRtpSenderId, u32)>,
    pub audio: Option<(RTCRtpSenderId, u32)>,
    /// RTP received on the subscriber connection, by rtc track id.
    pub received: HashMap<String, Inbound>,
    /// Track id → stream id (= publisher participant id).
    pub stream_of: HashMap<String, String>,
    pub connected: (bool, bool),
    /// RTCP the publisher connection received (PLIs relayed by the SFU).
    pub publisher_rtcp: Vec<Box<dyn rtc::rtcp::Packet>>,
    pub seq: u16,
    pub audio_seq: u16,
    pub h264: bool,
    /// Simulcast layers (q, h, f): sender SSRC and next sequence number of each.
    pub layers: Vec<(u32, u16)>,
    pub rtcp_datagrams: usize,
    pub rtcp_sent: usize,
    /// The publisher connection's "parley" data channel, and whether it is open.
    pub data_channel: Option<rtc::data_channel::RTCDataChannelId>,
    pub data_open: bool,
    /// Text messages received on the publisher connection's data channel.
    pub data_received: Vec<String>,
    /// Sender reports received on the subscriber connection.
    pub sender_reports: Vec<SenderReport>,
}

/// Decides, per datagram from the SFU to a client, whether the network loses it.
pub type LossFilter = Box<dyn FnMut(&[u8]) -> bool>;

pub struct Net {
    pub sfu: Sfu,
    pub now: Instant,
    pub clients: Vec<Client>,
    pub events: Vec<SfuEvent>,
    pub metrics: Arc<SfuMetrics>,
    sfu_addr: SocketAddr,
    /// Datagrams to drop on the way from the SFU to a client (simulated loss): predicate.
    pub drop_to_client: Option<LossFilter>,
    /// Wall-clock time spent inside the SFU's `handle_datagram`, `handle_timeout` and
    /// `poll_timeout` called from here: what the benchmarks count as the media plane's work.
    pub sfu_busy: Duration,
    /// How many times the SFU's timers were fired (`handle_timeout` calls).
    pub sfu_wakeups: u64,
    /// SRTP profiles the clients' subscriber connections offer (`None`: rtc's defaults).
    pub subscriber_srtp_profiles: Option<Vec<SrtpProtectionProfile>>,
}

fn client_pc(
    now: Instant,
    addr: SocketAddr,
    srtp_profiles: Option<&[SrtpProtectionProfile]>,
) -> RTCPeerConnection {
    let mut me = MediaEngine::default();
    me.register_default_codecs().expect("codecs");
    // As browsers do: microphone packets may carry their level (RFC 6464).
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )
    .expect("audio level extension");
    // Sender reports end inside rtc's chain; the tap hands them to the test as well.
    let registry = register_default_interceptors(Registry::new(), &mut me)
        .expect("interceptors")
        .with(
            rtc::interceptor::Slot::Custom(parley_sfu::engine::feedback_tap::SLOT),
            parley_sfu::engine::feedback_tap::FeedbackTap::delivering(|p| {
                p.as_any().is::<SenderReport>()
            }),
        );
    let mut settings = SettingEngineBuilder::new();
    if let Some(profiles) = srtp_profiles {
        settings = settings.with_srtp_protection_profiles(profiles.to_vec());
    }
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings.build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)
        .expect("client pc");
    let c = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("candidate");
    pc.add_local_candidate(RTCIceCandidate::from(&c).to_json().expect("json"))
        .expect("local candidate");
    pc
}

fn track(kind: RtpCodecKind, mime: &str, clock: u32, channels: u16, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "native".into(),
        format!("native-{kind}"),
        format!("native-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.into(),
                clock_rate: clock,
                channels,
                ..Default::default()
            },
            ..Default::default()
        }],
    )
}

impl Net {
    pub fn new() -> Self {
        let now = Instant::now();
        let metrics = Arc::new(SfuMetrics::default());
        let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("addr");
        Self {
            sfu: Sfu::new(vec![sfu_addr], metrics.clone()),
            now,
            clients: Vec::new(),
            events: Vec::new(),
            metrics,
            sfu_addr,
            drop_to_client: None,
            sfu_busy: Duration::ZERO,
            sfu_wakeups: 0,
            subscriber_srtp_profiles: None,
        }
    }

    /// Joins a participant that publishes VP8 + Opus, and runs the network until both of its
    /// connections are up.
    pub fn join(&mut self, id: &str, publish: bool) -> usize {
        self.join_with_video(id, publish, "video/VP8")
    }

    /// Like [`Net::join`], publishing video in the given codec (`video/VP8` or `video/H264`).
    pub fn join_with_video(&mut self, id: &str, publish: bool, video_mime: &str) -> usize {
        let n = self.clients.len() as u16;
        let pub_addr: SocketAddr = format!("127.0.0.1:{}", 20000 + n * 2).parse().expect("a");
        let sub_addr: SocketAddr = format!("127.0.0.1:{}", 20001 + n * 2).parse().expect("a");
        let options = ParticipantOptions {
            display_name: id.into(),
            can_publish: true,
            can_subscribe: true,
            can_screen_share: true,
        };
        self.sfu.join(self.now, "room", id, options).expect("join");
        let mut publisher = client_pc(self.now, pub_addr, None);
        let (mut video, mut audio) = (None, None);
        let mut tracks = Vec::new();
        if publish {
            let vs: u32 = rand::random();
            let as_: u32 = rand::random();
            let v = publisher
                .add_track(track(RtpCodecKind::Video, video_mime, 90000, 0, vs))
                .expect("video");
            let a = publisher
                .add_track(track(RtpCodecKind::Audio, "audio/opus", 48000, 2, as_))
                .expect("audio");
            video = Some((v, vs));
            audio = Some((a, as_));
        }
        let data_channel = publisher
            .create_data_channel("parley", None)
            .expect("data channel")
            .id();
        let offer = publisher.create_offer(None).expect("offer");
        publisher
            .set_local_description(self.now, offer)
            .expect("set local");
        let tids: Vec<_> = publisher.get_transceivers().collect();
        for tid in tids {
            let t = publisher.rtp_transceiver(tid).expect("transceiver");
            if let (Some(mid), Some(sender)) = (t.mid().clone(), t.sender()) {
                let source = if Some(sender) == video.map(|v| v.0) {
                    TrackSource::Camera
                } else {
                    TrackSource::Microphone
                };
                tracks.push(TrackDescriptor { mid, source });
            }
        }
        let sdp = publisher.local_description().expect("local").sdp;
        let answer = self
            .sfu
            .publish(self.now, "room", id, sdp, tracks)
            .expect("publish");
        publisher
            .set_remote_description(
                self.now,
                RTCSessionDescription::answer(answer).expect("sdp"),
            )
            .expect("set remote");
        self.clients.push(Client {
            id: id.into(),
            publisher,
            subscriber: client_pc(self.now, sub_addr, self.subscriber_srtp_profiles.as_deref()),
            pub_addr,
            sub_addr,
            video,
            audio,
            received: HashMap::new(),
            stream_of: HashMap::new(),
            connected: (false, false),
            publisher_rtcp: Vec::new(),
            seq: 1000,
            audio_seq: 5000,
            h264: video_mime.eq_ignore_ascii_case("video/H264"),
            layers: Vec::new(),
            rtcp_datagrams: 0,
            rtcp_sent: 0,
            data_channel: Some(data_channel),
            data_open: false,
            data_received: Vec::new(),
            sender_reports: Vec::new(),
        });
        let idx = self.clients.len() - 1;
        self.run_until(Duration::from_secs(10), |net| net.clients[idx].connected.0);
        idx
    }

    /// Sends one RTP packet from a client's camera or microphone.
    pub fn send(&mut self, client: usize, video: bool, keyframe: bool, size: usize) {
        let c = &mut self.clients[client];
        let Some((sender, ssrc)) = (if video { c.video } else { c.audio }) else {
            return;
        };
        let seq = if video {
            c.seq = c.seq.wrapping_add(1);
            c.seq
        } else {
            c.audio_seq = c.audio_seq.wrapping_add(1);
            c.audio_seq
        };
        let payload = if video && c.h264 {
            // A single NAL unit: IDR slice (type 5) for a keyframe, non-IDR slice (type 1) otherwise.
            let mut p = vec![if keyframe { 0x65u8 } else { 0x41 }];
            p.resize(size, 0x42);
            p
        } else if video {
            let mut p = vec![0x90u8, 0x80, (c.seq & 0x7f) as u8];
            p.push(if keyframe { 0x10 } else { 0x11 });
            p.extend_from_slice(&[0x02, 0x00, 0x9d, 0x01, 0x2a]);
            p.resize(size, 0x42);
            p
        } else {
            vec![0xF8; size]
        };
        let pt = c
            .publisher
            .rtp_sender(sender)
            .and_then(|mut s| {
                s.get_parameters()
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type)
            })
            .unwrap_or(96);
        let packet = Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: pt,
                sequence_number: seq,
                timestamp: seq as u32 * if video { 3000 } else { 960 },
                ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        if let Some(mut s) = c.publisher.rtp_sender(sender) {
            let _ = s.write_rtp(self.now, packet);
        }
        self.pump();
    }

    /// Sends one 20 ms microphone packet of `client` carrying its level (RFC 6464: -dBov, 0 is
    /// the loudest, 127 silence), as a browser does.
    pub fn send_audio_level(&mut self, client: usize, level: u8) {
        let c = &mut self.clients[client];
        let Some((sender, ssrc)) = c.audio else {
            return;
        };
        c.audio_seq = c.audio_seq.wrapping_add(1);
        let seq = c.audio_seq;
        let (pt, ext) = c
            .publisher
            .rtp_sender(sender)
            .map(|mut s| {
                let params = s.get_parameters();
                let pt = params
                    .rtp_parameters
                    .codecs
                    .first()
                    .map_or(111, |c| c.payload_type);
                let ext = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == AUDIO_LEVEL_URI)
                    .map(|e| e.id as u8);
                (pt, ext)
            })
            .unwrap_or((111, None));
        let mut header = Header {
            version: 2,
            marker: true,
            payload_type: pt,
            sequence_number: seq,
            timestamp: u32::from(seq).wrapping_mul(960),
            ssrc,
            ..Default::default()
        };
        let ext = ext.expect("the audio-level extension was negotiated");
        // The voice-activity bit set, as a sender's VAD would for speech.
        header
            .set_extension(ext, Bytes::from(vec![0x80 | level.min(127)]))
            .expect("extension");
        let packet = Packet {
            header,
            payload: Bytes::from(vec![0xF8u8; 80]),
        };
        if let Some(mut s) = c.publisher.rtp_sender(sender) {
            let _ = s.write_rtp(self.now, packet);
        }
        self.pump();
    }

    /// Moves every pending datagram and event until the network is quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.client_out(i);
            }
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                if let Some(drop) = self.drop_to_client.as_mut()
                    && drop(&t.data)
                {
                    continue;
                }
                let Some((i, sub)) = self.clients.iter().enumerate().find_map(|(i, c)| {
                    if c.pub_addr == t.to {
                        Some((i, false))
                    } else if c.sub_addr == t.to {
                        Some((i, true))
                    } else {
                        None
                    }
                }) else {
                    continue;
                };
                let c = &mut self.clients[i];
                if !sub && t.data.len() > 1 && (192..=223).contains(&t.data[1]) {
                    c.rtcp_datagrams += 1;
                }
                let pc = if sub {
                    &mut c.subscriber
                } else {
                    &mut c.publisher
                };
                let is_rtcp = t.data.len() > 1 && (192..=223).contains(&t.data[1]);
                let r = pc.handle_read(TaggedBytesMut {
                    now: self.now,
                    transport: TransportContext {
                        local_addr: t.to,
                        peer_addr: self.sfu_addr,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: t.data,
                });
                if let Err(e) = r
                    && is_rtcp
                {
                    eprintln!("client rtcp read error: {e}");
                }
            }
            while let Some(e) = self.sfu.poll_event() {
                moved = true;
                if let SfuEvent::SubscriberOffer {
                    participant, sdp, ..
                } = &e
                {
                    let idx = self.clients.iter().position(|c| &c.id == participant);
                    if let Some(i) = idx {
                        let c = &mut self.clients[i];
                        c.subscriber
                            .set_remote_description(
                                self.now,
                                RTCSessionDescription::offer(sdp.clone()).expect("sdp"),
                            )
                            .expect("offer applies");
                        let answer = c.subscriber.create_answer(None).expect("answer");
                        c.subscriber
                            .set_local_description(self.now, answer)
                            .expect("set");
                        let sdp = c.subscriber.local_description().expect("local").sdp;
                        let id = c.id.clone();
                        self.sfu
                            .subscriber_answer(self.now, "room", &id, sdp)
                            .expect("answer accepted");
                    }
                }
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn client_out(&mut self, i: usize) -> bool {
        let mut moved = false;
        let sfu_addr = self.sfu_addr;
        for sub in [false, true] {
            let c = &mut self.clients[i];
            let from = if sub { c.sub_addr } else { c.pub_addr };
            let pc = if sub {
                &mut c.subscriber
            } else {
                &mut c.publisher
            };
            let mut out = Vec::new();
            while let Some(t) = pc.poll_write() {
                out.push(t.message);
            }
            while let Some(ev) = pc.poll_event() {
                match ev {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Connected,
                    ) => {
                        if sub {
                            c.connected.1 = true;
                        } else {
                            c.connected.0 = true;
                        }
                    }
                    RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_))
                        if !sub =>
                    {
                        c.data_open = true;
                    }
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) if sub => {
                        if let Some(s) = init.stream_ids.first() {
                            c.stream_of.insert(init.track_id.clone(), s.clone());
                        }
                    }
                    _ => {}
                }
            }
            let pc = if sub {
                &mut c.subscriber
            } else {
                &mut c.publisher
            };
            while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(track, p) if sub => {
                        c.received.entry(track).or_default().packets.push((
                            p.header.ssrc,
                            p.header.sequence_number,
                            p.header.timestamp,
                            p.payload.len(),
                        ));
                    }
                    RTCMessage::RtcpPacket(_, pkts) if !sub => c.publisher_rtcp.extend(pkts),
                    RTCMessage::RtcpPacket(_, pkts) => c.sender_reports.extend(
                        pkts.iter()
                            .filter_map(|p| p.as_any().downcast_ref::<SenderReport>().cloned()),
                    ),
                    RTCMessage::DataChannelMessage(_, m) if !sub && m.is_string => {
                        c.data_received
                            .push(String::from_utf8_lossy(&m.data).into_owned());
                    }
                    _ => {}
                }
            }
            for data in out {
                moved = true;
                if sub && data.len() > 1 && (192..=223).contains(&data[1]) {
                    self.clients[i].rtcp_sent += 1;
                }
                let started = Instant::now();
                self.sfu.handle_datagram(self.now, sfu_addr, from, &data);
                // The driver asks for the next deadline after every wake-up.
                std::hint::black_box(self.sfu.poll_timeout());
                self.sfu_busy += started.elapsed();
            }
        }
        moved
    }

    /// Advances simulated time by `step`, firing every due timer.
    pub fn advance(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        for c in &mut self.clients {
            for pc in [&mut c.publisher, &mut c.subscriber] {
                if pc.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = pc.handle_timeout(now);
                }
            }
        }
        if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.sfu.handle_timeout(now);
        }
        self.pump();
    }

    /// Runs the network until `end` the way the driver runs the SFU: time jumps to the next
    /// deadline of the SFU or of a client, and the SFU is woken exactly when its own deadline is
    /// due. The SFU's share (timers, and the datagrams the clients send it) adds to `sfu_busy`.
    pub fn run_timers_until(&mut self, end: Instant) {
        // Rounds run at the same instant; a timer that stays due after firing must not stall
        // simulated time.
        let mut same_instant = 0;
        while self.now < end {
            let started = Instant::now();
            let sfu_next = self.sfu.poll_timeout();
            self.sfu_busy += started.elapsed();
            let clients_next = self
                .clients
                .iter_mut()
                .flat_map(|c| [c.publisher.poll_timeout(), c.subscriber.poll_timeout()])
                .flatten()
                .min();
            let next = [sfu_next, clients_next].into_iter().flatten().min();
            let mut now = match next {
                Some(t) if t <= end => t.max(self.now),
                _ => end,
            };
            if now == self.now {
                same_instant += 1;
                if same_instant > 3 {
                    now += Duration::from_millis(1);
                    same_instant = 0;
                }
            } else {
                same_instant = 0;
            }
            self.now = now;
            for c in &mut self.clients {
                for pc in [&mut c.publisher, &mut c.subscriber] {
                    if pc.poll_timeout().is_some_and(|t| t <= now) {
                        let _ = pc.handle_timeout(now);
                    }
                }
            }
            if sfu_next.is_some_and(|t| t <= now) {
                let started = Instant::now();
                self.sfu.handle_timeout(now);
                self.sfu_busy += started.elapsed();
                self.sfu_wakeups += 1;
            }
            self.pump();
        }
    }

    /// Both ends of `client`'s subscriber connection are up: the client's, which (as the DTLS
    /// server) finishes the handshake first, and the SFU's, which forwards only from then on. A
    /// test that starts sending when only the client's end is up loses what it sends in between.
    pub fn subscriber_up(&self, client: usize) -> bool {
        let c = &self.clients[client];
        c.connected.1
            && self.events.iter().any(|e| {
                matches!(e, SfuEvent::PeerState { participant, role: PeerRole::Subscriber,
                    connected: true, .. } if *participant == c.id)
            })
    }

    /// Runs the network in 5 ms steps until `done` or `limit` of simulated time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        self.pump();
        while self.now < end {
            if done(self) {
                return true;
            }
            self.advance(Duration::from_millis(5));
        }
        done(self)
    }

    /// RTP packets `client` received from `publisher`'s `kind` ("audio"/"video") track.
    pub fn received_from(
        &self,
        client: usize,
        publisher: &str,
        kind: &str,
    ) -> Vec<(u32, u16, u32, usize)> {
        let c = &self.clients[client];
        c.received
            .iter()
            .filter(|(track, _)| {
                c.stream_of.get(*track).map(String::as_str) == Some(publisher)
                    && track.ends_with(if kind == "video" {
                        ":camera"
                    } else {
                        ":microphone"
                    })
            })
            .flat_map(|(_, r)| r.packets.iter().copied())
            .collect()
    }
}

pub fn _unused(_: BytesMut) {}

impl Net {
    /// Sends `text` on `client`'s data channel (once it is open) and delivers it.
    pub fn send_data(&mut self, client: usize, text: &str) -> bool {
        let now = self.now;
        let c = &mut self.clients[client];
        let sent = c
            .data_channel
            .and_then(|id| c.publisher.data_channel(id))
            .is_some_and(|mut dc| dc.send_text(now, text).is_ok());
        self.pump();
        sent
    }

    /// Makes `client`'s subscriber connection send a PLI for every video track it receives.
    pub fn sfu_request_pli_from(&mut self, client: usize) {
        let c = &mut self.clients[client];
        let rids: Vec<_> = c.subscriber.get_receivers().collect();
        for rid in rids {
            if let Some(mut r) = c.subscriber.rtp_receiver(rid) {
                let ssrcs: Vec<u32> = r.track().ssrcs().collect();
                let video = r.track().kind() == RtpCodecKind::Video;
                if video && let Some(ssrc) = ssrcs.first() {
                    let _ = r.write_rtcp(
                        self.now,
                        vec![Box::new(rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc: *ssrc,
                        })],
                    );
                }
            }
        }
        self.pump();
    }
}

impl Net {
    /// `count` SRTP datagrams of video from `client`'s publisher, not delivered anywhere.
    pub fn publisher_datagrams(
        &mut self,
        client: usize,
        count: usize,
        size: usize,
    ) -> Vec<BytesMut> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let c = &mut self.clients[client];
            let Some((sender, ssrc)) = c.video else {
                break;
            };
            c.seq = c.seq.wrapping_add(1);
            let mut payload = vec![0x90u8, 0x80, (c.seq & 0x7f) as u8, 0x11];
            payload.resize(size, 0x42);
            let pt = c
                .publisher
                .rtp_sender(sender)
                .and_then(|mut s| {
                    s.get_parameters()
                        .rtp_parameters
                        .codecs
                        .first()
                        .map(|c| c.payload_type)
                })
                .unwrap_or(96);
            let packet = Packet {
                header: Header {
                    version: 2,
                    marker: true,
                    payload_type: pt,
                    sequence_number: c.seq,
                    timestamp: c.seq as u32 * 3000,
                    ssrc,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            };
            if let Some(mut s) = c.publisher.rtp_sender(sender) {
                let _ = s.write_rtp(self.now, packet);
            }
            while let Some(t) = c.publisher.poll_write() {
                if t.message.len() > size {
                    out.push(t.message);
                }
            }
        }
        out
    }

    /// The SFU address and the client address a publisher's datagrams travel between.
    pub fn publisher_route(&self, client: usize) -> (SocketAddr, SocketAddr) {
        (self.sfu_addr, self.clients[client].pub_addr)
    }
}

impl Net {
    /// Joins a participant publishing VP8 in three simulcast layers (rids q, h, f).
    pub fn join_simulcast(&mut self, id: &str) -> usize {
        let idx = self.join(id, true);
        // Replace the single-layer camera with a simulcast one: renegotiate the publisher.
        let c = &mut self.clients[idx];
        let mut codings = Vec::new();
        let mut layers = Vec::new();
        for rid in ["q", "h", "f"] {
            let ssrc: u32 = rand::random();
            layers.push((ssrc, 100u16));
            codings.push(RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.into(),
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90000,
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let sender = c
            .publisher
            .add_track(MediaStreamTrack::new(
                "native".into(),
                "native-simulcast".into(),
                "native-simulcast".into(),
                RtpCodecKind::Video,
                codings,
            ))
            .expect("simulcast track");
        c.video = Some((sender, layers[0].0));
        c.layers = layers;
        let offer = c.publisher.create_offer(None).expect("offer");
        c.publisher
            .set_local_description(self.now, offer)
            .expect("set local");
        let mut tracks = Vec::new();
        let tids: Vec<_> = c.publisher.get_transceivers().collect();
        for tid in tids {
            let t = c.publisher.rtp_transceiver(tid).expect("transceiver");
            if let (Some(mid), Some(snd)) = (t.mid().clone(), t.sender()) {
                let source = if snd == sender {
                    TrackSource::Camera
                } else if c.audio.map(|a| a.0) == Some(snd) {
                    TrackSource::Microphone
                } else {
                    // The first, single-layer camera: declared as a screen so it is a separate
                    // source that stays silent.
                    TrackSource::Screen
                };
                tracks.push(TrackDescriptor { mid, source });
            }
        }
        let sdp = c.publisher.local_description().expect("local").sdp;
        let answer = self
            .sfu
            .publish(self.now, "room", id, sdp, tracks)
            .expect("publish");
        let c = &mut self.clients[idx];
        c.publisher
            .set_remote_description(
                self.now,
                RTCSessionDescription::answer(answer).expect("sdp"),
            )
            .expect("set remote");
        self.pump();
        idx
    }

    /// Sends one VP8 packet on simulcast `layer` (0 = q, 1 = h, 2 = f) of `client`'s camera;
    /// keyframes carry the layer's resolution (320x180, 640x360, 1280x720).
    pub fn send_layer(&mut self, client: usize, layer: usize, keyframe: bool, size: usize) {
        self.write_layer(client, layer, keyframe, size);
        self.pump();
    }

    /// `count` SRTP datagrams of VP8 delta frames from `client`'s simulcast camera, cycling
    /// through its layers (q, h, f) with payloads of `sizes[layer]` bytes; not delivered
    /// anywhere. For benchmarks: made before the timed part.
    pub fn layer_datagrams(
        &mut self,
        client: usize,
        count: usize,
        sizes: [usize; 3],
    ) -> Vec<BytesMut> {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let layer = i % 3;
            self.write_layer(client, layer, false, sizes[layer]);
            while let Some(t) = self.clients[client].publisher.poll_write() {
                if t.message.len() > sizes[layer] {
                    out.push(t.message);
                }
            }
        }
        out
    }

    /// Hands one simulcast packet to `client`'s publisher connection (see `send_layer`).
    fn write_layer(&mut self, client: usize, layer: usize, keyframe: bool, size: usize) {
        let c = &mut self.clients[client];
        let Some((sender, _)) = c.video else {
            return;
        };
        let (ssrc, seq) = c.layers[layer];
        c.layers[layer].1 = seq.wrapping_add(1);
        let (w, h): (u16, u16) = [(320, 180), (640, 360), (1280, 720)][layer];
        let mut payload = vec![0x90u8, 0x80, (seq & 0x7f) as u8];
        if keyframe {
            payload.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            payload.extend_from_slice(&w.to_le_bytes());
            payload.extend_from_slice(&h.to_le_bytes());
        } else {
            payload.extend_from_slice(&[0x11, 0x02, 0x00]);
        }
        payload.resize(size, 0x40 + layer as u8);
        let (pt, ext_ids) = c
            .publisher
            .rtp_sender(sender)
            .map(|mut s| {
                let params = s.get_parameters();
                let pt = params
                    .rtp_parameters
                    .codecs
                    .first()
                    .map_or(96, |c| c.payload_type);
                let id = |uri: &str| {
                    params
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .find(|e| e.uri == uri)
                        .map(|e| e.id as u8)
                };
                (
                    pt,
                    (
                        id("urn:ietf:params:rtp-hdrext:sdes:mid"),
                        id("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
                    ),
                )
            })
            .unwrap_or((96, (None, None)));
        let mid = c
            .publisher
            .get_transceivers()
            .collect::<Vec<_>>()
            .into_iter()
            .find_map(|t| {
                let t = c.publisher.rtp_transceiver(t)?;
                (t.sender() == Some(sender))
                    .then(|| t.mid().clone())
                    .flatten()
            })
            .unwrap_or_default();
        let mut header = Header {
            version: 2,
            marker: true,
            payload_type: pt,
            sequence_number: seq,
            timestamp: u32::from(seq).wrapping_mul(3000),
            ssrc,
            ..Default::default()
        };
        // Browsers tag simulcast packets with the mid and rid header extensions; so do we.
        if let (Some(mid_id), Some(rid_id)) = ext_ids {
            let _ = header.set_extension(mid_id, Bytes::from(mid));
            let _ = header.set_extension(rid_id, Bytes::from(["q", "h", "f"][layer]));
        }
        let packet = Packet {
            header,
            payload: Bytes::from(payload),
        };
        if let Some(mut s) = c.publisher.rtp_sender(sender) {
            let _ = s.write_rtp(self.now, packet);
        }
    }
}
