//! Outgoing mail behind [`EmailSender`]: SMTP through lettre (rustls on tokio) in production,
//! an in-memory mailbox in tests, and a sender that refuses when no SMTP server is configured
//! (so a message is never reported as sent when it was not). Nothing calls a sender directly:
//! every email goes through the outbox ([`crate::outbox::email`]), which retries what
//! [`MailError::Transient`] says is worth retrying.

use std::fmt;
use std::sync::{Arc, Mutex};

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::configuration::Secret;
use crate::domain::Email;

/// One message: plain text, with an HTML alternative when `html` is set. Bodies carry one-time
/// links or meeting contents, so `Debug` leaves them out.
#[derive(Clone)]
pub struct OutgoingEmail {
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &"<hidden: contains a one-time link>")
            .field("html", &self.html.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Why a message did not go out. The text may quote the mail server, whose answers can name
/// the recipient: callers redact it before logging (see [`crate::outbox::email::redacted`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Worth another try later: a 4xx reply ("mailbox busy", greylisting), a connection
    /// refused, reset or timed out, a TLS handshake that failed.
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way every time until someone changes something: a 5xx reply (no such
    /// user, relaying denied), an address or message that cannot be written, no SMTP server.
    #[error("{0}")]
    Permanent(String),
}

impl MailError {
    /// An SMTP transport failure, classified by its reply code when the server gave one.
    fn from_smtp(e: &lettre::transport::smtp::Error) -> Self {
        let text = format!("SMTP: {e}");
        if e.is_permanent() || e.is_client() {
            MailError::Permanent(text)
        } else {
            // Transient replies, and no reply at all (refused, reset, timed out, TLS).
            MailError::Transient(text)
        }
    }
}

#[async_trait::async_trait]
pub trait EmailSender: Send + Sync {
    async fn send(&self, email: OutgoingEmail) -> Result<(), MailError>;
}

/// Keeps messages in memory; tests read the links from it.
#[derive(Clone, Default)]
pub struct MemoryEmailSender {
    sent: Arc<Mutex<Vec<OutgoingEmail>>>,
}

impl MemoryEmailSender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything sent so far, oldest first.
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The messages sent to `to` (any case).
    pub fn sent_to(&self, to: &str) -> Vec<OutgoingEmail> {
        let key = to.to_lowercase();
        self.sent()
            .into_iter()
            .filter(|m| m.to.key() == key)
            .collect()
    }
}

#[async_trait::async_trait]
impl EmailSender for MemoryEmailSender {
    async fn send(&self, email: OutgoingEmail) -> Result<(), MailError> {
        self.sent
            .lock()
            .map_err(|_| MailError::Transient("memory mailbox poisoned".into()))?
            .push(email);
        Ok(())
    }
}

/// SMTP: `PARLEY_SMTP_URL` as lettre reads it, e.g. `smtp://host:25` (plain, for a relay on the
/// same network), `smtp://host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
pub struct SmtpEmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpEmailSender {
    pub fn new(url: &Secret, from: &str) -> anyhow::Result<Self> {
        // The URL may hold credentials: errors name neither it nor them.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| anyhow::anyhow!("invalid SMTP URL: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("invalid sender address {from:?}: {e}"))?;
        Ok(SmtpEmailSender { transport, from })
    }
}

#[async_trait::async_trait]
impl EmailSender for SmtpEmailSender {
    async fn send(&self, email: OutgoingEmail) -> Result<(), MailError> {
        let to = email
            .to
            .as_str()
            .parse::<Mailbox>()
            .map_err(|e| MailError::Permanent(format!("recipient address: {e}")))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject);
        let message = match email.html {
            Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
                email.text, html,
            )),
            None => builder
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(email.text),
        }
        .map_err(|e| MailError::Permanent(format!("the message cannot be written: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::from_smtp(&e))?;
        Ok(())
    }
}

/// No SMTP configured: every send fails with a sentence the operator can act on.
pub struct NoEmailSender;

#[async_trait::async_trait]
impl EmailSender for NoEmailSender {
    async fn send(&self, _email: OutgoingEmail) -> Result<(), MailError> {
        // Permanent: nothing changes until the operator configures a server (and then retries
        // the failed messages by hand).
        Err(MailError::Permanent(
            "no SMTP server is configured (PARLEY_SMTP_URL)".into(),
        ))
    }
}

/// A sender handed in by tests through the configuration (`Config::email_sender`).
#[derive(Clone)]
pub struct EmailSenderHook(pub Arc<dyn EmailSender>);

impl fmt::Debug for EmailSenderHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailSenderHook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nobody listening is a passing condition (the server restarts), not a verdict on the
    /// message: the outbox tries again.
    #[tokio::test]
    async fn connection_refused_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let sender = SmtpEmailSender::new(
            &Secret::new(format!("smtp://127.0.0.1:{port}")),
            "Parley <no-reply@parley.test>",
        )
        .expect("sender");
        let r = sender
            .send(OutgoingEmail {
                to: Email::parse("judy@example.com").expect("email"),
                subject: "Hello".into(),
                text: "Hello".into(),
                html: None,
            })
            .await;
        assert!(matches!(r, Err(MailError::Transient(_))), "{r:?}");
        let r = NoEmailSender
            .send(OutgoingEmail {
                to: Email::parse("judy@example.com").expect("email"),
                subject: "Hello".into(),
                text: "Hello".into(),
                html: None,
            })
            .await;
        assert!(matches!(r, Err(MailError::Permanent(_))), "{r:?}");
    }
}
