//! Email through the outbox, black-box, against a real SMTP server on loopback (aiosmtpd) that
//! refuses when told to: a temporary refusal (451) is retried with backoff until the server
//! accepts; a permanent one (550) fails at once, shows in the owning account's outbox (and no
//! other's) without the address, and goes out when retried by hand after the server is fixed;
//! erasure of the recipient scrubs their address from delivered and waiting messages.
//!
//! Nothing sleeps: every expectation waits for its condition with a deadline (`wait_for`).

use std::time::Duration;

use parley_tests::smtp::SmtpSink;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

struct World {
    app: TestApp,
    smtp: SmtpSink,
}

struct Account {
    id: String,
    key: String,
}

impl World {
    /// A server mailing through a scripted SMTP server; `None` where aiosmtpd is missing
    /// outside CI (the test stops, as in users.rs).
    async fn spawn(base_delay: Duration) -> Option<World> {
        let smtp = SmtpSink::start_scripted().await?;
        let port = smtp.port;
        let app = TestApp::spawn_with(move |cfg| {
            cfg.smtp_url = Some(parley_signaling::configuration::Secret::new(format!(
                "smtp://127.0.0.1:{port}"
            )));
            cfg.smtp_from = "Parley <no-reply@parley.test>".into();
            cfg.outbox_max_attempts = 6;
            cfg.outbox_base_delay = base_delay;
            cfg.outbox_max_delay = base_delay * 4;
        })
        .await;
        Some(World { app, smtp })
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.app.call(method, path, bearer, body).await
    }

    async fn account(&self, crm_id: &str) -> Account {
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(
                    json!({"name": format!("ООО Почта {crm_id}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                    "crm_external_id": crm_id}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        Account {
            id: str_of(&v["account"], "id"),
            key: str_of(&v["api_key"], "bearer"),
        }
    }

    /// Invites `email` as a member; returns the outbox message carrying the link.
    async fn invite(&self, acc: &Account, email: &str) -> String {
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": email, "role": "member"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        str_of(&v, "email_message_id")
    }

    /// The account's outbox messages in `status`, as `bearer` sees them.
    async fn outbox(&self, acc: &Account, bearer: &str, status: &str) -> (u16, Vec<Value>) {
        let (s, v) = self
            .app
            .get_json(
                &format!("/api/v1/accounts/{}/outbox?status={status}", acc.id),
                Some(bearer),
            )
            .await;
        (s, v.as_array().cloned().unwrap_or_default())
    }

    /// Waits until message `id` of `acc` is listed in `status`; returns it.
    async fn message_in(&self, acc: &Account, id: &str, status: &str) -> Value {
        wait_for(&format!("message {id} to be {status}"), || async {
            let (s, list) = self.outbox(acc, &acc.key, status).await;
            assert_eq!(s, 200);
            list.into_iter().find(|m| m["id"] == id)
        })
        .await
    }
}

fn outcomes(m: &Value) -> Vec<String> {
    m["attempt_log"]
        .as_array()
        .map(|log| log.iter().map(|a| str_of(a, "outcome")).collect())
        .unwrap_or_default()
}

/// `inv_` + 43 alphanumerics after `#token=`.
fn invitation_token(text: &str) -> Option<String> {
    let start = text.find("#token=inv_")? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == 4 + 43).then_some(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_until_the_server_accepts() {
    let Some(mut w) = World::spawn(Duration::from_millis(50)).await else {
        return;
    };
    let acc = w.account("mail-451").await;
    w.smtp.set_replies(&[
        "451 4.3.0 Mailbox busy, try again later",
        "451 4.7.1 Greylisted, come back later",
    ]);
    let id = w.invite(&acc, "judy@example.com").await;

    let mail = wait_for("the invitation at the SMTP server", || async {
        w.smtp.messages_to("judy@example.com").pop()
    })
    .await;
    assert!(
        mail.contains("Subject: You are invited to Parley"),
        "{mail}"
    );
    assert_eq!(w.smtp.refusals(), 2);

    let m = w.message_in(&acc, &id, "delivered").await;
    assert_eq!(m["kind"], "email");
    assert_eq!(outcomes(&m), ["retryable", "retryable", "delivered"]);
    assert_eq!(m["attempts"], 3);
    assert!(
        m["attempt_log"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("451")),
        "{m}"
    );
    // The outbox shows why and to whom (masked), never the body with its one-time link.
    assert_eq!(
        m["payload"],
        json!({"purpose": "invitation", "to": "j***@example.com",
            "subject": "You are invited to Parley"})
    );
    assert!(!m.to_string().contains("judy@"), "{m}");

    // The link that finally went out works.
    let token = invitation_token(&mail).unwrap_or_else(|| panic!("a link in the mail: {mail}"));
    let (s, v) = w
        .req(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(json!({"token": token, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.app.shutdown().await;
    w.smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_at_once_and_a_retry_by_hand_delivers_once_fixed() {
    let Some(mut w) = World::spawn(Duration::from_millis(50)).await else {
        return;
    };
    let acc = w.account("mail-550").await;
    let other = w.account("mail-other").await;
    w.smtp
        .set_replies(&["always 550 5.1.1 <judy@example.com>: mailbox unavailable"]);
    let id = w.invite(&acc, "judy@example.com").await;

    let failed = w.message_in(&acc, &id, "failed").await;
    assert_eq!(failed["attempts"], 1, "no retry after a 550: {failed}");
    assert_eq!(outcomes(&failed), ["permanent"]);
    let error = str_of(&failed, "last_error");
    assert!(error.contains("550"), "{error}");
    assert!(!error.contains('@'), "the address is never shown: {error}");
    assert_eq!(w.smtp.refusals(), 1);

    // Another account sees nothing of it and cannot retry it; the operator can see it.
    let (s, list) = w.outbox(&other, &other.key, "failed").await;
    assert_eq!(s, 200);
    assert!(list.iter().all(|m| m["id"] != id.as_str()), "{list:?}");
    let retry = format!("/api/v1/accounts/{}/outbox/{id}/retry", other.id);
    let (s, _) = w.req(Method::POST, &retry, Some(&other.key), None).await;
    assert_eq!(s, 404);
    let (s, _) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/{id}/retry", acc.id),
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!(s, 404, "another account's key");
    let (s, list) = w.outbox(&acc, ADMIN_TOKEN, "failed").await;
    assert_eq!(s, 200);
    assert!(list.iter().any(|m| m["id"] == id.as_str()));

    // The mail server is fixed; the account's admin side retries by hand.
    w.smtp.set_replies(&[]);
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/{id}/retry", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let delivered = w.message_in(&acc, &id, "delivered").await;
    assert_eq!(outcomes(&delivered), ["permanent", "delivered"]);
    let mail = wait_for("the invitation at the SMTP server", || async {
        w.smtp.messages_to("judy@example.com").pop()
    })
    .await;
    assert!(invitation_token(&mail).is_some(), "{mail}");
    assert_eq!(w.smtp.messages_to("judy@example.com").len(), 1);
    // Delivered messages cannot be retried again.
    let (s, v) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/outbox/{id}/retry", acc.id),
            Some(&acc.key),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    w.app.shutdown().await;
    w.smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_scrubs_the_address_from_delivered_and_waiting_emails() {
    // Slow backoff: the second message stays pending between its attempts.
    let Some(mut w) = World::spawn(Duration::from_secs(30)).await else {
        return;
    };
    let acc = w.account("mail-erase").await;
    let delivered = w.invite(&acc, "judy@example.com").await;
    w.message_in(&acc, &delivered, "delivered").await;
    w.smtp
        .set_replies(&["always 451 4.7.1 <judy@example.com> greylisted"]);
    // Still only invited: a fresh link, a second message.
    let waiting = w.invite(&acc, "Judy@Example.com").await;
    let pending = wait_for("the first refused attempt", || async {
        let (_, list) = w.outbox(&acc, &acc.key, "pending").await;
        list.into_iter()
            .find(|m| m["id"] == waiting.as_str() && !outcomes(m).is_empty())
    })
    .await;
    assert_eq!(outcomes(&pending), ["retryable"]);

    let (s, report) = w
        .req(
            Method::POST,
            &format!("/api/v1/accounts/{}/erasure", acc.id),
            Some(ADMIN_TOKEN),
            Some(json!({"email": "JUDY@example.com"})),
        )
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["outbox_emails"], 2, "{report}");

    let (_, sent) = w.outbox(&acc, &acc.key, "delivered").await;
    let sent = sent
        .into_iter()
        .find(|m| m["id"] == delivered.as_str())
        .expect("still listed");
    assert_eq!(sent["payload"]["to"], "[erased]");
    // The waiting one can no longer go out.
    let (_, failed) = w.outbox(&acc, &acc.key, "failed").await;
    let failed = failed
        .into_iter()
        .find(|m| m["id"] == waiting.as_str())
        .expect("failed now");
    assert_eq!(failed["last_error"], "the recipient was erased");
    assert_eq!(failed["payload"]["to"], "[erased]");
    for status in ["pending", "delivered", "failed"] {
        let (_, list) = w.outbox(&acc, ADMIN_TOKEN, status).await;
        let text = serde_json::to_string(&list).expect("json").to_lowercase();
        assert!(!text.contains("judy"), "{status}: {text}");
    }
    w.app.shutdown().await;
    w.smtp.stop().await;
}
