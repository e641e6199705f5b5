//! Recording: a tap on published tracks that writes each track to its own file off the forwarding
//! path, plus a mixed-down audio track of the whole room.
//!
//! The engine hands every forwarded publisher packet of a recorded room to a [`tap::RecordingTap`]
//! (a bounded queue, never blocking); a writer thread owns the files and turns packets into Ogg
//! Opus ([`ogg`]), WebM VP8 ([`webm`]) and MP4 H.264 ([`h264`], [`mp4`]) files.

pub mod composite;
#[cfg(test)]
mod ffprobe_tests;
pub mod h264;
#[cfg(feature = "mixdown")]
pub mod mixer;
#[cfg(not(feature = "mixdown"))]
#[path = "mixer_disabled.rs"]
pub mod mixer;
pub mod mp4;
pub mod ogg;
pub mod opus_toc;
pub mod reorder;
pub mod tap;
pub mod track;
pub mod webm;
pub mod writer;
