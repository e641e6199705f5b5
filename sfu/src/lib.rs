//! Parley's selective forwarding unit.
//!
//! The media plane is a sans-IO core: it is fed datagrams, timer ticks and commands, and it returns
//! datagrams to send and events. A thin driver ([`start`]) runs the core on one UDP socket in its own
//! thread and exposes an async [`SfuHandle`].

pub mod api;
mod driver;
pub mod engine;
pub mod forward;
mod handle;
pub mod recording;

pub use api::*;
pub use driver::{default_announced_ips, start};
pub use handle::SfuHandle;
