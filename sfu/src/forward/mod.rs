//! The pure forwarding logic of the media plane: what happens to a packet between the publisher's
//! peer connection and each subscriber's, with no sockets, peer connections or clocks. Every
//! time-dependent function takes `now`; every parser takes plain header fields and payload bytes,
//! so the engine calls these with fields of `rtc::rtp::packet::Packet` and the tests with tables.
//!
//! One module per concept, named as in LiveKit's `pkg/sfu`:
//! - [`vp8`], [`h264`]: codec payload inspection (keyframes, VP8 picture id rewriting);
//! - [`rtp_munger`]: SSRC / sequence number / timestamp rewriting across layer switches;
//! - [`packet_cache`]: packets as sent, to answer NACKs;
//! - [`keyframe_requester`]: PLI/FIR relay toward the publisher, rate limited;
//! - [`bitrate`]: per-layer received bitrate and activity;
//! - [`layer_selector`]: which simulcast layer a subscriber gets;
//! - [`bwe`]: a subscriber's bandwidth estimate from REMB and receiver-report loss;
//! - [`audio_level`], [`speaker`]: RFC 6464 levels and dominant speaker detection.

pub mod audio_level;
pub mod bitrate;
pub mod bwe;
pub mod h264;
pub mod keyframe_requester;
pub mod layer_selector;
pub mod packet_cache;
pub mod rtp_munger;
pub mod speaker;
pub mod vp8;
