//! Parley's server: the HTTP API, WebSocket signaling, meetings and join tokens, wired to the
//! media plane (`parley_sfu`). Start it with [`spawn`]; the `parley` binary adds configuration
//! loading, logging and signal handling.

pub mod auth;
pub mod card;
pub mod card_payments;
pub mod cluster;
pub mod configuration;
pub mod crm;
pub mod domain;
pub mod error;
pub mod integrations;
pub mod metrics;
pub mod outbox;
pub mod privacy;
pub mod recordings;
pub mod routes;
pub mod schedule;
pub mod sdk;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod summaries;
pub mod telemetry;
pub mod turn;
pub mod usage;
pub mod users;
pub mod ws;

pub use configuration::Config;
pub use routes::openapi::openapi_json;
pub use startup::{RunningServer, spawn};
