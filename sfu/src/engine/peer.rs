//! Builds the server side of one peer connection: ICE-lite with our own credentials and host
//! candidates on the shared port, DTLS-SRTP (AES-GCM preferred, AES-CM allowed), Opus, VP8 and
//! H.264, and the RTCP machinery the forwarding core relies on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot, TwccReceiverBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};

use crate::api::PeerRole;
use crate::engine::srtp_out::KeyTap;

pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const RRID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Opus payload type in what the server offers.
pub const PT_OPUS: u8 = 111;
/// VP8 payload type in what the server offers.
pub const PT_VP8: u8 = 96;
/// H.264 (constrained baseline, packetization-mode 1) payload type in what the server offers.
pub const PT_H264: u8 = 102;
/// Largest data-channel message either side may send (advertised as `a=max-message-size`).
pub const DATA_CHANNEL_MAX_MESSAGE: u32 = 16 * 1024;
/// SCTP receive window per publisher connection (at least one whole message, RFC 9260 floor).
const DATA_CHANNEL_RECEIVE_WINDOW: u32 = 64 * 1024;

pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The codecs the SFU forwards. The subscriber side asks for REMB rather than transport-cc, so the
/// receiving browser estimates its own bandwidth and tells us (the layer selector's input); the
/// publisher side uses transport-cc so the browser's send-side estimator adapts its simulcast.
fn media_engine(role: PeerRole) -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut me = MediaEngine::default();
    let mut video_fb = vec![
        feedback("ccm", "fir"),
        feedback("nack", ""),
        feedback("nack", "pli"),
    ];
    match role {
        PeerRole::Subscriber => video_fb.push(feedback("goog-remb", "")),
        PeerRole::Publisher => video_fb.push(feedback("transport-cc", "")),
    }
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: video_fb.clone(),
            },
            payload_type: PT_VP8,
        },
        RtpCodecKind::Video,
    )?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: H264_FMTP.to_owned(),
                rtcp_feedback: video_fb,
            },
            payload_type: PT_H264,
        },
        RtpCodecKind::Video,
    )?;
    let ext = |uri: &str| RTCRtpHeaderExtensionCapability {
        uri: uri.to_owned(),
    };
    me.register_header_extension(ext(MID_URI), RtpCodecKind::Audio, None)?;
    me.register_header_extension(ext(MID_URI), RtpCodecKind::Video, None)?;
    if role == PeerRole::Publisher {
        me.register_header_extension(ext(AUDIO_LEVEL_URI), RtpCodecKind::Audio, None)?;
        me.register_header_extension(ext(RID_URI), RtpCodecKind::Video, None)?;
        me.register_header_extension(ext(RRID_URI), RtpCodecKind::Video, None)?;
        me.register_header_extension(ext(TWCC_URI), RtpCodecKind::Video, None)?;
        me.register_header_extension(ext(TWCC_URI), RtpCodecKind::Audio, None)?;
    }
    Ok(me)
}

/// How often a subscriber connection sends a sender report per stream (the SFU writes them
/// itself, see `Sfu::send_sender_reports`).
pub const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The interceptor chain: NACK generation and receiver reports towards publishers; towards
/// subscribers only the tap that hands their feedback to the forwarding core. There is
/// deliberately no NACK responder: subscribers' NACKs are answered by the forwarding core from
/// its own per-down-track cache, which holds packets as rewritten for that subscriber.
///
/// Each connection carries media one way only (a publisher connection only receives, a subscriber
/// connection only sends). A subscriber connection has no sender-report interceptor: forwarded
/// packets do not pass through rtc (`engine::srtp_out`), so it would never see them, and the SFU
/// writes the sender reports from its down-tracks' own counters.
fn interceptors(role: PeerRole) -> Registry {
    match role {
        PeerRole::Publisher => Registry::new()
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build()),
        PeerRole::Subscriber => Registry::new().with(
            Slot::Custom(crate::engine::feedback_tap::SLOT),
            crate::engine::feedback_tap::FeedbackTap::default(),
        ),
    }
}

/// Creates a server-side peer connection with the given ICE credentials and host candidates.
/// A subscriber connection comes with the key tap its forwarded media is protected with.
pub fn build(
    now: Instant,
    role: PeerRole,
    ufrag: &str,
    pwd: &str,
    host_candidates: &[SocketAddr],
) -> Result<(RTCPeerConnection, Option<Arc<KeyTap>>), rtc::shared::error::Error> {
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
    let key_tap = match role {
        PeerRole::Subscriber => {
            Some(KeyTap::new().map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?)
        }
        PeerRole::Publisher => None,
    };
    let mut settings = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ])
        .with_include_loopback_candidate(true)
        // rtc allocates a working buffer of the negotiated message size per association (64 KiB
        // by default); the data channel carries chat and reactions of at most 4 KiB, relayed
        // with the sender's name added, so 16 KiB is ample and saves 48 KiB per participant.
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(DATA_CHANNEL_MAX_MESSAGE))
        // The receive window bounds what a client can make us buffer (1 MiB by default).
        .with_sctp_max_receive_buffer_size(DATA_CHANNEL_RECEIVE_WINDOW);
    if let Some(tap) = &key_tap {
        settings = settings.with_crypto_provider(tap.clone());
    }
    let settings = settings.build();
    let me = media_engine(role)?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(interceptors(role))
        .build(now)?;
    for addr in host_candidates {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    }
    Ok((pc, key_tap))
}
