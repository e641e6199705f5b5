//! CRM connectors: one trait, [`CrmConnector`], over amoCRM (REST API v4 with OAuth 2), Bitrix24
//! (REST through an incoming-webhook URL) and a generic CRM reached by signed webhooks.
//!
//! A connector does three things for a deal: read it with its contacts (names and emails, so the
//! deal card can invite them), add a note to its timeline (the meeting summary) and create a
//! follow-up task. Every failure is a [`CrmError`] that says whether trying again later can help
//! ([`CrmError::is_retryable`]); the outbox uses that to schedule retries or give up.
//!
//! Nothing here is wired to HTTP routes or the application state yet: connectors are built from
//! their own config structs and a shared `reqwest::Client`.

pub mod amocrm;
pub mod bitrix24;
pub(crate) mod http;
pub mod secret;
pub mod summary;
pub mod webhook;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use secret::SecretString;

/// Most we read of any CRM answer. Deals with a few contacts are a few KiB; anything near this
/// is a broken or hostile server, and reading it unbounded would let it exhaust our memory.
pub const MAX_CRM_BODY: usize = 1024 * 1024;

/// A deal (amoCRM calls it a lead) as the deal card needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// The CRM's own id, as text (amoCRM uses numbers, Bitrix24 numeric strings).
    pub id: String,
    pub title: String,
    /// The CRM user responsible for the deal, when the CRM says.
    pub responsible_user_id: Option<String>,
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub name: String,
    /// Every email the CRM holds for the contact, work address first when the CRM marks one.
    pub emails: Vec<String>,
}

/// What was created in the CRM, by its id there (for the audit log and the deal's history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedId(pub String);

impl FollowUpTask {
    /// Title and description as one text, for CRMs whose tasks have a single text field.
    pub fn full_text(&self) -> String {
        if self.description.trim().is_empty() {
            self.title.clone()
        } else {
            format!("{}\n\n{}", self.title, self.description)
        }
    }
}

/// A follow-up task for the deal's responsible person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpTask {
    /// One line: what to do ("Send the proposal discussed on the call").
    pub title: String,
    /// More detail (may be empty).
    pub description: String,
    pub due: DateTime<Utc>,
    /// The CRM user to assign; `None` lets the connector choose (the deal's or the integration's
    /// user).
    pub responsible_user_id: Option<String>,
}

#[async_trait]
pub trait CrmConnector: Send + Sync {
    /// Which CRM this is, for logs and metrics ("amocrm", "bitrix24", "webhook").
    fn system(&self) -> &'static str;
    async fn read_deal(&self, deal_id: &str) -> Result<Deal, CrmError>;
    async fn add_note(&self, deal_id: &str, text: &str) -> Result<CreatedId, CrmError>;
    async fn create_task(&self, deal_id: &str, task: &FollowUpTask) -> Result<CreatedId, CrmError>;
}

/// Why a CRM call failed. Retryable kinds are passing conditions (the outbox tries again with
/// backoff); permanent ones will fail the same way every time until a person changes something.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("the CRM did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the CRM: {0}")]
    Connection(String),
    #[error("the CRM is limiting our request rate{}", retry_after_text(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the CRM failed with HTTP {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("the CRM refused the request with HTTP {status}: {detail}")]
    Rejected { status: u16, detail: String },
    #[error("the CRM refused our credentials: {0}; the connection must be authorised again")]
    Unauthorized(String),
    #[error("deal {0} does not exist in the CRM (or we may not see it)")]
    UnknownDeal(String),
    #[error("the CRM answered with something that is not what its API documents: {0}")]
    Malformed(String),
    #[error("the CRM answer is larger than the {limit} bytes we accept")]
    TooLarge { limit: usize },
    #[error("could not load or save the CRM tokens: {0}")]
    TokenStore(String),
    #[error("the CRM connection is misconfigured: {0}")]
    Config(String),
}

fn retry_after_text(d: Option<Duration>) -> String {
    d.map(|d| format!(" (retry after {}s)", d.as_secs()))
        .unwrap_or_default()
}

impl CrmError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CrmError::Timeout(_)
                | CrmError::Connection(_)
                | CrmError::RateLimited { .. }
                | CrmError::Server { .. }
                // Our own database hiccup, not the CRM's verdict.
                | CrmError::TokenStore(_)
        )
    }

    /// How long the CRM asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CrmError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the CRM answered with, when the failure came with one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            CrmError::RateLimited { .. } => Some(429),
            CrmError::Server { status, .. } | CrmError::Rejected { status, .. } => Some(*status),
            CrmError::Unauthorized(_) => Some(401),
            _ => None,
        }
    }
}
