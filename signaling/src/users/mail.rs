//! Outgoing mail of the user flows (invitations, password resets) behind [`EmailSender`]:
//! SMTP through lettre (rustls on tokio) in production, an in-memory outbox in tests, and a
//! sender that refuses when no SMTP server is configured (so an invitation is never reported
//! as sent when it was not).

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

#[async_trait::async_trait]
pub trait EmailSender: Send + Sync {
    async fn send(&self, email: OutgoingEmail) -> anyhow::Result<()>;
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
    async fn send(&self, email: OutgoingEmail) -> anyhow::Result<()> {
        self.sent
            .lock()
            .map_err(|_| anyhow::anyhow!("memory mailbox poisoned"))?
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
    async fn send(&self, email: OutgoingEmail) -> anyhow::Result<()> {
        let to = email
            .to
            .as_str()
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("recipient address: {e}"))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject);
        let message = match email.html {
            Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
                email.text, html,
            ))?,
            None => builder
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(email.text)?,
        };
        self.transport
            .send(message)
            .await
            .map_err(|e| anyhow::anyhow!("SMTP: {e}"))?;
        Ok(())
    }
}

/// No SMTP configured: every send fails with a sentence the operator can act on.
pub struct NoEmailSender;

#[async_trait::async_trait]
impl EmailSender for NoEmailSender {
    async fn send(&self, _email: OutgoingEmail) -> anyhow::Result<()> {
        anyhow::bail!("no SMTP server is configured (PARLEY_SMTP_URL)")
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
