//! The CRM connectors, the outbox and customer webhooks wired to the running server.
//!
//! - [`connections`]: one CRM connection per account in the database (`crm_connections`), the
//!   database-backed amoCRM [`TokenStore`](crate::crm::amocrm::TokenStore), and the
//!   [`ConnectorResolver`](crate::outbox::crm::ConnectorResolver) the outbox's CRM deliveries use.
//! - [`endpoints`]: customer webhook endpoints (`webhook_endpoints`) and [`Events::emit`], which
//!   enqueues one outbox message per endpoint subscribed to an event.
//! - [`license_events`]: moves the licensing module's due reminder events into customer webhooks.
//! - [`seat_review`]: the monthly inactive-seat review as a `seats.review` webhook and an email
//!   to the account's admins.
//!
//! Secrets are stored sealed (see [`crate::secrets`]), never returned by the API (except an
//! endpoint's generated secret, once) and never logged: they travel as
//! [`SecretString`](crate::crm::SecretString), whose `Debug` is masked.

pub mod connections;
pub mod endpoints;
pub mod license_events;
pub mod seat_review;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use connections::{Connections, DbTokenStore};
pub use endpoints::{DbEndpoints, Events};

use crate::outbox::crm::{CRM_NOTE, CRM_TASK, CrmDelivery};
use crate::outbox::webhooks::{CUSTOMER_WEBHOOK, CustomerWebhookDelivery, EventType};
use crate::outbox::{Deliveries, Outbox, OutboxError};
use crate::secrets::SecretsCipher;
use crate::startup::AppState;
use crate::store::DbPool;

/// Everything the integration endpoints and the hooks in the rest of the server need.
#[derive(Clone)]
pub struct Integrations {
    pub connections: Arc<Connections>,
    pub events: Events,
    /// Seals and opens the stored secrets (connections, endpoints, deal-card secrets).
    pub cipher: SecretsCipher,
}

/// One HTTP client for every CRM and webhook call: connection pooling across deliveries, a
/// connect timeout so an unroutable host fails fast, and no redirects — a receiver must not be
/// able to bounce our signed request (or a Bitrix24 URL's credential) somewhere else.
pub fn http_client(request_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(request_timeout))
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

impl Integrations {
    pub fn new(
        pool: DbPool,
        outbox: Outbox,
        http: reqwest::Client,
        timeout: Duration,
        cipher: SecretsCipher,
    ) -> Self {
        Integrations {
            connections: Arc::new(Connections::new(
                pool.clone(),
                http,
                timeout,
                cipher.clone(),
            )),
            events: Events::new(pool, outbox),
            cipher,
        }
    }

    /// The deliveries of the server's outbox worker: customer webhooks, CRM notes and tasks.
    pub fn deliveries(&self, http: reqwest::Client, timeout: Duration) -> Deliveries {
        let webhooks = Arc::new(CustomerWebhookDelivery::new(
            http,
            Arc::new(DbEndpoints::new(
                self.events.pool().clone(),
                self.cipher.clone(),
            )),
            timeout,
        ));
        let crm = Arc::new(CrmDelivery::new(Arc::new(self.connections.clone())));
        Deliveries::new()
            .with(CUSTOMER_WEBHOOK, webhooks)
            .with(CRM_NOTE, crm.clone())
            .with(CRM_TASK, crm)
    }
}

/// Enqueues `event` for every endpoint of `account_id` subscribed to it; returns how many.
/// `event_id` must be stable for the event (enqueuing it again stores nothing new).
pub async fn emit_event(
    state: &AppState,
    account_id: &str,
    event: EventType,
    event_id: &str,
    data: Value,
) -> Result<usize, OutboxError> {
    state
        .integrations
        .events
        .emit(account_id, event, event_id, data)
        .await
}

/// Whether `url` may receive our calls: https anywhere, plain http only on loopback (local
/// development and tests) — credentials and signed payloads do not cross networks in clear.
pub fn allowed_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    let Some(host) = u.host_str() else {
        return Err("has no host".into());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err("must use https (plain http only on loopback)".into()),
        _ => Err("must be an https URL".into()),
    }
}
