//! Stand-in for the mixer when Parley is built without the `mixdown` feature (which needs cmake for
//! the bundled libopus): recordings then have their per-track files but no `mixed.ogg`.

use std::io::{self, Write};
use std::marker::PhantomData;
use std::time::Instant;

use super::tap::TrackKey;
use super::track::RtpIn;

/// Never constructed: [`Mixer::new`] always reports the feature as missing.
pub struct Mixer<W: Write>(PhantomData<W>);

impl<W: Write> Mixer<W> {
    pub fn new(_out: W, _origin: Instant) -> Result<Self, &'static str> {
        Err("built without the `mixdown` feature: no mixed audio track")
    }

    pub fn on_packet(&mut self, _track: TrackKey, _p: &RtpIn) -> io::Result<()> {
        Ok(())
    }

    pub fn close(self, _stop: Option<Instant>) -> io::Result<W> {
        Err(io::Error::other("no mixer"))
    }
}
