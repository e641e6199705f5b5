//! A native WebRTC participant built on the async webrtc-rs stack, as a browser would behave
//! towards Parley: a publisher connection it offers (VP8 camera, Opus microphone, the `parley` data
//! channel) and a subscriber connection the server offers. It sends synthetic media with valid VP8
//! payload headers and counts what it receives, per (publisher, source).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler};

/// What a client received on one remote track.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub packets: u64,
    pub bytes: u64,
    pub keyframes: u64,
    /// Output sequence numbers must be continuous for one SSRC: gaps are counted here.
    pub seq_gaps: u64,
    pub last_seq: Option<u16>,
    pub ssrcs: Vec<u32>,
}

#[derive(Default)]
struct Shared {
    /// Keyed by the remote track's stream id (the publisher's participant id) and kind.
    received: HashMap<(String, String), Received>,
    messages: Vec<String>,
    connected: u32,
}

struct Handler {
    shared: Arc<Mutex<Shared>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(
        &self,
        state: rtc::peer_connection::state::RTCPeerConnectionState,
    ) {
        if state == rtc::peer_connection::state::RTCPeerConnectionState::Connected
            && let Ok(mut s) = self.shared.lock()
        {
            s.connected += 1;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let stream = track.stream_id().await;
            let kind = track.kind().await.to_string();
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    let Ok(mut s) = shared.lock() else { return };
                    let r = s
                        .received
                        .entry((stream.clone(), kind.clone()))
                        .or_default();
                    r.packets += 1;
                    r.bytes += p.payload.len() as u64;
                    if !r.ssrcs.contains(&p.header.ssrc) {
                        r.ssrcs.push(p.header.ssrc);
                    }
                    if let Some(last) = r.last_seq {
                        let d = p.header.sequence_number.wrapping_sub(last);
                        if d > 1 && d < 0x8000 {
                            r.seq_gaps += 1;
                        }
                    }
                    r.last_seq = Some(p.header.sequence_number);
                    if kind == "video" && parley_sfu::forward::vp8::is_keyframe(&p.payload) {
                        r.keyframes += 1;
                    }
                }
            }
        });
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        spawn_reader(dc, self.shared.clone());
    }
}

fn spawn_reader(dc: Arc<dyn DataChannel>, shared: Arc<Mutex<Shared>>) {
    tokio::spawn(async move {
        while let Some(evt) = dc.poll().await {
            if let DataChannelEvent::OnMessage(m) = evt
                && let Ok(text) = String::from_utf8(m.data.to_vec())
                && let Ok(mut s) = shared.lock()
            {
                s.messages.push(text);
            }
        }
    });
}

type Pc = Arc<dyn PeerConnection>;

/// A native participant.
pub struct MediaClient {
    publisher: Pc,
    subscriber: Pc,
    video: Option<Arc<TrackLocalStaticSample>>,
    audio: Option<Arc<TrackLocalStaticSample>>,
    chat: Option<Arc<dyn DataChannel>>,
    shared: Arc<Mutex<Shared>>,
    sending: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The RFC 6464 level the microphone's frames carry (-dBov), [`NO_LEVEL`] for none.
    audio_level: Arc<AtomicU8>,
    /// Microphone frames sent so far.
    audio_frames: Arc<AtomicU64>,
}

/// The microphone's frames carry no audio-level extension.
const NO_LEVEL: u8 = u8::MAX;

/// A TURN relay as the server's `joined` message hands it out.
#[derive(Debug, Clone, Default)]
pub struct Relay {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

async fn build_pc(shared: Arc<Mutex<Shared>>, relay: Option<&Relay>) -> anyhow::Result<Pc> {
    let mut me = MediaEngine::default();
    me.register_default_codecs()?;
    // As browsers do: the microphone may tell its level (see `MediaClient::set_audio_level`).
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?;
    let mut config = RTCConfigurationBuilder::new();
    if let Some(r) = relay {
        // Relayed candidates only, as a client whose network blocks the SFU's port ends up.
        config = config
            .with_ice_servers(vec![webrtc::peer_connection::RTCIceServer {
                urls: r.urls.clone(),
                username: r.username.clone(),
                credential: r.credential.clone(),
            }])
            .with_ice_transport_policy(webrtc::peer_connection::RTCIceTransportPolicy::Relay);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config.build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { shared }) as Arc<dyn PeerConnectionEventHandler>)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

fn local_track(
    kind: RtpCodecKind,
    mime: &str,
    clock_rate: u32,
    channels: u16,
) -> anyhow::Result<Arc<TrackLocalStaticSample>> {
    let track = MediaStreamTrack::new(
        "native".to_owned(),
        format!("native-{kind}"),
        format!("native-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random()),
                ..Default::default()
            },
            codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                ..Default::default()
            },
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        track,
    )?))
}

impl MediaClient {
    /// A client that publishes a VP8 camera and an Opus microphone when `publish` is true.
    pub async fn new(publish: bool) -> anyhow::Result<Self> {
        Self::build(publish, None).await
    }

    /// Like [`MediaClient::new`], reaching the SFU only through the TURN `relay`.
    pub async fn relayed(publish: bool, relay: &Relay) -> anyhow::Result<Self> {
        Self::build(publish, Some(relay)).await
    }

    async fn build(publish: bool, relay: Option<&Relay>) -> anyhow::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let publisher = build_pc(shared.clone(), relay).await?;
        let subscriber = build_pc(shared.clone(), relay).await?;
        let (mut video, mut audio) = (None, None);
        if publish {
            let v = local_track(RtpCodecKind::Video, "video/VP8", 90000, 0)?;
            publisher
                .add_track(v.clone() as Arc<dyn TrackLocal>)
                .await?;
            let a = local_track(RtpCodecKind::Audio, "audio/opus", 48000, 2)?;
            publisher
                .add_track(a.clone() as Arc<dyn TrackLocal>)
                .await?;
            video = Some(v);
            audio = Some(a);
        }
        let chat = publisher.create_data_channel("parley", None).await?;
        spawn_reader(chat.clone(), shared.clone());
        Ok(Self {
            publisher,
            subscriber,
            video,
            audio,
            chat: Some(chat),
            shared,
            sending: Mutex::new(None),
            audio_level: Arc::new(AtomicU8::new(NO_LEVEL)),
            audio_frames: Arc::new(AtomicU64::new(0)),
        })
    }

    /// From now on the microphone's frames carry this RFC 6464 level (-dBov: 0 is the loudest,
    /// 127 silence; voice-loud is 40 or less) with the voice flag, as a browser's do while its
    /// user speaks; `None`: no level at all (the default).
    pub fn set_audio_level(&self, level: Option<u8>) {
        let v = level.map_or(NO_LEVEL, |l| l.min(127));
        self.audio_level.store(v, Ordering::Relaxed);
    }

    /// How many 20 ms microphone frames were sent so far.
    pub fn audio_frames_sent(&self) -> u64 {
        self.audio_frames.load(Ordering::Relaxed)
    }

    /// The publisher offer and the mid → source list to send with it.
    pub async fn publisher_offer(&self) -> anyhow::Result<(String, Vec<(String, &'static str)>)> {
        let offer = self.publisher.create_offer(None).await?;
        self.publisher.set_local_description(offer).await?;
        let sdp = self
            .publisher
            .local_description()
            .await
            .ok_or_else(|| anyhow::anyhow!("no local description"))?
            .sdp;
        let mut tracks = Vec::new();
        for t in self.publisher.get_transceivers().await {
            if let (Ok(Some(mid)), Ok(Some(sender))) = (t.mid().await, t.sender().await) {
                let kind = sender.track().kind().await;
                let source = if kind == RtpCodecKind::Audio {
                    "microphone"
                } else {
                    "camera"
                };
                tracks.push((mid, source));
            }
        }
        Ok((sdp, tracks))
    }

    pub async fn publisher_answer(&self, sdp: String) -> anyhow::Result<()> {
        self.publisher
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        Ok(())
    }

    /// Applies a server offer on the subscriber connection and returns the answer.
    pub async fn subscriber_offer(&self, sdp: String) -> anyhow::Result<String> {
        self.subscriber
            .set_remote_description(RTCSessionDescription::offer(sdp)?)
            .await?;
        let answer = self.subscriber.create_answer(None).await?;
        self.subscriber.set_local_description(answer).await?;
        Ok(self
            .subscriber
            .local_description()
            .await
            .ok_or_else(|| anyhow::anyhow!("no local description"))?
            .sdp)
    }

    /// Starts sending 30 fps VP8 (a keyframe every second) and 20 ms Opus frames.
    pub async fn start_media(&self) -> anyhow::Result<()> {
        let (Some(video), Some(audio)) = (self.video.clone(), self.audio.clone()) else {
            return Ok(());
        };
        let pt = |sender: Vec<Arc<dyn webrtc::rtp_transceiver::RtpSender>>| async move {
            let mut out = Vec::new();
            for s in sender {
                let params = s.get_parameters().await?;
                if let Some(c) = params.rtp_parameters.codecs.first() {
                    out.push((c.rtp_codec.mime_type.to_lowercase(), c.payload_type));
                }
            }
            anyhow::Ok(out)
        };
        let pts = pt(self.publisher.get_senders().await).await?;
        let video_pt = pts
            .iter()
            .find(|(m, _)| m == "video/vp8")
            .map(|x| x.1)
            .unwrap_or(96);
        let audio_pt = pts
            .iter()
            .find(|(m, _)| m == "audio/opus")
            .map(|x| x.1)
            .unwrap_or(111);
        let video_ssrc = *video
            .ssrcs()
            .await
            .first()
            .ok_or_else(|| anyhow::anyhow!("no ssrc"))?;
        let audio_ssrc = *audio
            .ssrcs()
            .await
            .first()
            .ok_or_else(|| anyhow::anyhow!("no ssrc"))?;
        let (level, frames) = (self.audio_level.clone(), self.audio_frames.clone());
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                if n.is_multiple_of(2) {
                    // 20 ms Opus frame; content is not decoded by the SFU.
                    let sample = Sample {
                        data: Bytes::from(vec![0xF8u8; 80]),
                        duration: Duration::from_millis(20),
                        ..Sample::new(Instant::now())
                    };
                    let mut writer = audio.sample_writer(audio_ssrc, audio_pt);
                    let l = level.load(Ordering::Relaxed);
                    if l != NO_LEVEL {
                        writer = writer.with_audio_level(AudioLevelExtension {
                            level: l,
                            voice: true,
                        });
                    }
                    let _ = writer.write_sample(&sample).await;
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                if n.is_multiple_of(3) {
                    let frame = (n / 3) as usize;
                    let keyframe = frame.is_multiple_of(30);
                    let mut data = Vec::with_capacity(1500);
                    if keyframe {
                        // VP8 key frame tag (P=0), start code, 640x480.
                        data.extend_from_slice(&[
                            0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
                        ]);
                        data.resize(2500, 0x55);
                    } else {
                        data.extend_from_slice(&[0x11, 0x02, 0x00]);
                        data.resize(900, 0x33);
                    }
                    let sample = Sample {
                        data: Bytes::from(data),
                        duration: Duration::from_millis(33),
                        ..Sample::new(Instant::now())
                    };
                    let _ = video
                        .sample_writer(video_ssrc, video_pt)
                        .write_sample(&sample)
                        .await;
                }
            }
        });
        if let Ok(mut s) = self.sending.lock()
            && let Some(old) = s.replace(handle)
        {
            old.abort();
        }
        Ok(())
    }

    pub async fn send_chat(&self, text: &str) -> anyhow::Result<()> {
        if let Some(dc) = &self.chat {
            let msg = serde_json::json!({"type": "chat", "text": text}).to_string();
            dc.send_text(&msg).await?;
        }
        Ok(())
    }

    /// What was received from `publisher` (its participant id), per kind ("audio"/"video").
    /// Packets of `kind` received from every publisher together.
    pub fn packets_of(&self, kind: &str) -> u64 {
        self.shared.lock().map_or(0, |s| {
            s.received
                .iter()
                .filter(|((_, k), _)| k == kind)
                .map(|(_, r)| r.packets)
                .sum()
        })
    }

    pub fn received(&self, publisher: &str, kind: &str) -> Received {
        self.shared
            .lock()
            .ok()
            .and_then(|s| {
                s.received
                    .get(&(publisher.to_owned(), kind.to_owned()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    pub fn messages(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|s| s.messages.clone())
            .unwrap_or_default()
    }

    pub fn connected_count(&self) -> u32 {
        self.shared.lock().map(|s| s.connected).unwrap_or(0)
    }

    pub async fn close(&self) {
        if let Some(h) = self.sending.lock().ok().and_then(|mut s| s.take()) {
            h.abort();
        }
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
    }
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn wait_for(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        poll.tick().await;
    }
}
