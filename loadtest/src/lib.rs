//! Parley's load generator as a library, so the smoke test can run a scenario without the
//! binary. The `parley-loadtest` binary (src/main.rs) is the command-line front.

pub mod media;
