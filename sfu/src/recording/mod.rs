//! Recording: a tap on published tracks that writes each track to its own file off the forwarding
//! path, plus a mixed-down audio track of the whole room.
//!
//! The engine hands every forwarded publisher packet of a recorded room to a [`tap::RecordingTap`]
//! (a bounded queue, never blocking); a writer thread owns the files and turns packets into Ogg
//! Opus ([`ogg`]) and WebM VP8 ([`webm`]) files.

// Real Opus packets for the ffprobe check come from libopus, so it needs `mixdown`.
#[cfg(all(test, feature = "mixdown"))]
mod ffprobe_tests;
#[cfg(feature = "mixdown")]
pub mod mixer;
#[cfg(not(feature = "mixdown"))]
#[path = "mixer_disabled.rs"]
pub mod mixer;
pub mod ogg;
pub mod opus_toc;
pub mod tap;
pub mod track;
pub mod webm;
pub mod writer;
