//! Email through the outbox: invitations, password resets, meeting summaries and the monthly
//! seat review are enqueued as [`EMAIL`] messages and sent by [`EmailDelivery`] through the
//! configured [`EmailSender`] (SMTP in production). The outbox gives them what the webhooks
//! have: a lease per attempt, backoff on a transient refusal (4xx, connection refused, timeout),
//! the `failed` state at once on a permanent one (5xx) or after the last attempt, and manual
//! retry from the owning account's outbox.
//!
//! Privacy: the recipient's address is in the payload (it must be, to send) but never in a log
//! line or an attempt's detail ([`redacted`]), the account's outbox shows it masked
//! ([`public_payload`]), a delivered message keeps no body (a reset link or a meeting's content
//! has no business outliving its delivery), and erasure of a person scrubs their address
//! ([`erased_payload`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Delivery, DeliveryReport, NewMessage, OutboxMessage};
use crate::domain::Email;
use crate::users::{EmailSender, MailError, OutgoingEmail};

/// The outbox kind of emails.
pub const EMAIL: &str = "email";
/// The destination of every email: the one configured mail relay.
pub const MAIL_RELAY: &str = "mail_relay";

/// Why an email is sent; shown in the outbox instead of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Invitation,
    PasswordReset,
    MeetingSummary,
    SeatReview,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    purpose: Purpose,
    to: String,
    subject: String,
    /// Absent once delivered or erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    html: Option<String>,
}

/// The outbox message for `email`. `account_id` owns it (its outbox lists it); the key, when
/// given, makes enqueuing idempotent (e.g. one summary per meeting and recipient).
pub fn email_message(
    purpose: Purpose,
    email: &OutgoingEmail,
    account_id: Option<&str>,
    idempotency_key: Option<String>,
) -> NewMessage {
    NewMessage {
        kind: EMAIL.into(),
        destination: MAIL_RELAY.into(),
        payload: json!(Payload {
            purpose,
            to: email.to.as_str().to_owned(),
            subject: email.subject.clone(),
            text: Some(email.text.clone()),
            html: email.html.clone(),
        }),
        idempotency_key,
        account_id: account_id.map(str::to_owned),
    }
}

/// Sends [`EMAIL`] messages through the configured sender.
pub struct EmailDelivery {
    sender: Arc<dyn EmailSender>,
}

impl EmailDelivery {
    pub fn new(sender: Arc<dyn EmailSender>) -> Self {
        EmailDelivery { sender }
    }
}

#[async_trait]
impl Delivery for EmailDelivery {
    async fn deliver(&self, m: &OutboxMessage) -> DeliveryReport {
        let p: Payload = match serde_json::from_value(m.payload.clone()) {
            Ok(p) => p,
            Err(e) => return DeliveryReport::permanent(format!("email payload: {e}"), None),
        };
        let Some(text) = p.text else {
            return DeliveryReport::permanent("the message has no body (erased)", None);
        };
        let Ok(to) = Email::parse(&p.to) else {
            return DeliveryReport::permanent("the recipient address is not valid", None);
        };
        let email = OutgoingEmail {
            to,
            subject: p.subject,
            text,
            html: p.html,
        };
        match self.sender.send(email).await {
            Ok(()) => {
                tracing::info!(message = %m.id, purpose = ?p.purpose, "outbox: email sent");
                DeliveryReport::delivered(None)
            }
            Err(MailError::Transient(e)) => DeliveryReport::retryable(redacted(&e), None, None),
            Err(MailError::Permanent(e)) => DeliveryReport::permanent(redacted(&e), None),
        }
    }

    fn retained_payload(&self, m: &OutboxMessage) -> Option<Value> {
        let mut kept = m.payload.clone();
        if let Value::Object(o) = &mut kept {
            o.remove("text");
            o.remove("html");
        }
        Some(kept)
    }
}

/// A mail server's answer may quote the recipient ("550 5.1.1 <anna@…>: no such user"); every
/// word holding an `@` is replaced, so the rest of the answer (code and reason) stays useful in
/// the log and the outbox.
pub fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str("[address]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `a***@example.com`: enough for an admin to tell recipients apart, not to harvest them.
fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "[hidden]".into(),
    }
}

/// An email message's payload as the account's outbox shows it: why, to whom (masked) and the
/// subject. Never the body, which may carry a one-time link meant for the recipient alone.
pub fn public_payload(payload: &Value) -> Value {
    let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    let to = match payload.get("to").and_then(Value::as_str) {
        Some(a) if payload.get("erased").is_some() => a.to_owned(),
        Some(a) => masked(a),
        None => "[hidden]".into(),
    };
    json!({"purpose": field("purpose"), "to": to, "subject": field("subject")})
}

/// The case-insensitive key of an email message's recipient (what erasure matches).
pub fn recipient_key(payload: &Value) -> Option<String> {
    let to = payload.get("to")?.as_str()?;
    Email::parse(to).ok().map(|e| e.key().to_owned())
}

/// The payload after its recipient asked to be erased: no address, no body.
pub fn erased_payload(payload: &Value) -> Value {
    json!({
        "purpose": payload.get("purpose").cloned().unwrap_or(Value::Null),
        "to": "[erased]",
        "subject": payload.get("subject").cloned().unwrap_or(Value::Null),
        "erased": true,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{
        Deliveries, MemoryOutboxStore, Outbox, OutboxWorker, RetryPolicy, Status, TokioClock,
    };
    use super::*;
    use crate::users::MemoryEmailSender;

    /// Refuses the first send with the given error, then delivers to memory.
    struct RefusesOnce(std::sync::Mutex<Option<MailError>>, MemoryEmailSender);

    #[async_trait]
    impl EmailSender for RefusesOnce {
        async fn send(&self, email: OutgoingEmail) -> Result<(), MailError> {
            let refusal = self.0.lock().map(|mut r| r.take()).unwrap_or(None);
            match refusal {
                Some(e) => Err(e),
                None => self.1.send(email).await,
            }
        }
    }

    fn invitation() -> OutgoingEmail {
        OutgoingEmail {
            to: Email::parse("judy@example.com").expect("email"),
            subject: "You are invited".into(),
            text: "open #token=inv_secret".into(),
            html: None,
        }
    }

    async fn attempt_with(refusal: MailError) -> (Outbox, OutboxWorker, String, MemoryEmailSender) {
        let mailbox = MemoryEmailSender::new();
        let sender = RefusesOnce(std::sync::Mutex::new(Some(refusal)), mailbox.clone());
        let policy = RetryPolicy {
            base_delay: std::time::Duration::ZERO,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let outbox = Outbox::new(
            Arc::new(MemoryOutboxStore::new()),
            policy,
            Arc::new(TokioClock::new()),
        );
        let worker = OutboxWorker::new(
            outbox.clone(),
            Deliveries::new().with(EMAIL, Arc::new(EmailDelivery::new(Arc::new(sender)))),
        );
        let m = outbox
            .enqueue(email_message(
                Purpose::Invitation,
                &invitation(),
                None,
                None,
            ))
            .await
            .expect("enqueue");
        (outbox, worker, m.id, mailbox)
    }

    #[tokio::test]
    async fn a_transient_refusal_is_retried_and_the_delivered_message_keeps_no_body() {
        let (outbox, worker, id, mailbox) = attempt_with(MailError::Transient(
            "SMTP: transient error (451): <judy@example.com> busy".into(),
        ))
        .await;
        assert_eq!(worker.drain().await.expect("drain"), 2);
        assert_eq!(mailbox.sent_to("judy@example.com").len(), 1);
        let m = outbox.get(&id).await.expect("get").expect("kept");
        assert_eq!(m.status, Status::Delivered);
        assert_eq!(m.payload["to"], "judy@example.com", "erasure matches on it");
        assert!(
            !m.payload.to_string().contains("inv_secret"),
            "{}",
            m.payload
        );
        let log = outbox.attempts(&id).await.expect("log");
        assert_eq!(
            log[0].detail.as_deref(),
            Some("SMTP: transient error (451): [address] busy")
        );
    }

    #[tokio::test]
    async fn a_permanent_refusal_fails_at_once() {
        let (outbox, worker, id, mailbox) =
            attempt_with(MailError::Permanent("SMTP: permanent error (550)".into())).await;
        assert_eq!(worker.drain().await.expect("drain"), 1);
        let m = outbox.get(&id).await.expect("get").expect("kept");
        assert_eq!(m.status, Status::Failed);
        assert_eq!(m.attempts, 1);
        assert!(mailbox.sent().is_empty());
        // A failed message keeps its body: a retry by hand sends it.
        assert!(m.payload.to_string().contains("inv_secret"));
    }

    #[test]
    fn addresses_are_redacted_from_server_answers() {
        assert_eq!(
            redacted("SMTP: permanent error (550): 5.1.1 <Anna@Example.com>: no such user"),
            "SMTP: permanent error (550): 5.1.1 [address] no such user"
        );
        assert_eq!(
            redacted("connection refused"),
            "connection refused",
            "nothing to hide"
        );
    }

    #[test]
    fn the_outbox_shows_no_body_and_a_masked_recipient() {
        let email = OutgoingEmail {
            to: Email::parse("judy@example.com").expect("email"),
            subject: "You are invited".into(),
            text: "open #token=inv_secret".into(),
            html: None,
        };
        let m = email_message(Purpose::Invitation, &email, Some("acc"), None);
        assert_eq!(m.kind, EMAIL);
        assert_eq!(m.account_id.as_deref(), Some("acc"));
        let shown = public_payload(&m.payload);
        assert_eq!(
            shown,
            json!({"purpose": "invitation", "to": "j***@example.com", "subject": "You are invited"})
        );
        assert_eq!(
            recipient_key(&m.payload).as_deref(),
            Some("judy@example.com")
        );
        let erased = erased_payload(&m.payload);
        assert!(!erased.to_string().contains("judy"));
        assert!(!erased.to_string().contains("inv_secret"));
        assert_eq!(public_payload(&erased)["to"], "[erased]");
    }
}
