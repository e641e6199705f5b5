//! Recording: a tap on published tracks that writes each track to its own file off the forwarding
//! path, plus a mixed-down audio track of the whole room.
//!
//! The engine hands every forwarded publisher packet of a recorded room to a [`tap::RecordingTap`]
//! (a bounded queue, never blocking); a writer thread owns the files and turns packets into Ogg
//! Opus ([`ogg`]) and WebM VP8 ([`webm`]) files.

#[cfg(test)]
mod ffprobe_tests;
pub mod mixer;
pub mod ogg;
pub mod opus_toc;
pub mod tap;
pub mod track;
pub mod webm;
pub mod writer;
