//! Parley's selective forwarding unit.
//!
//! The media plane is a sans-IO core: it is fed datagrams, timer ticks and commands, and it returns
//! datagrams to send and events. A thin driver ([`start`]) runs the core on one UDP socket in its own
//! thread and exposes an async [`SfuHandle`].

pub mod api;
mod handle;

pub use api::*;
pub use handle::SfuHandle;

/// Starts the media plane on its own thread. Returns the handle and the event stream.
pub fn start(
    config: SfuConfig,
) -> std::io::Result<(SfuHandle, tokio::sync::mpsc::UnboundedReceiver<SfuEvent>)> {
    let _ = config;
    Err(std::io::Error::other("media plane not built yet"))
}
