//! Helpers for the black-box tests.

pub mod media_client;
