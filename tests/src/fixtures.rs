//! One shared world for black-box tests that need "a bit of everything": two licensed accounts,
//! each with a signed-in account admin and member (both holding seats), a spare active user, an
//! API key, a paid lot with its order, invoice, payment, transfer document and corrective
//! invoice, a CRM connection (the generic signed webhook), a customer webhook endpoint with a
//! failed outbox message, a deal-card session of the member, and a licensed meeting hosted by
//! the member with a guest's join token.
//!
//! Everything is made through the public HTTP API (and the WebSocket), as a client would; the
//! only hooks are the ones every black-box test uses: the licensing date, the in-memory mailbox
//! (invitation and reset links are read from it) and fast outbox retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use hmac::{Hmac, Mac};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{ADMIN_TOKEN, TestApp, WsClient, str_of, wait_for};

/// The password of every fixture user.
pub const PASSWORD: &str = "correct horse battery";
/// The tariff every fixture lot is sold on (12 months, 12 000.00 a seat).
pub const TARIFF: &str = "business-12";
/// Price of one seat of [`TARIFF`] for a full term: an initial order of one seat costs this.
pub const SEAT_PRICE: &str = "12000.00";
/// The CRM system of the fixture accounts (their external ids are `fixture-a`, `fixture-b`).
pub const CRM_SYSTEM: &str = "sbercrm";
/// The generic CRM's webhook secret of account A (B's is this with `-b`).
pub const INBOUND_SECRET: &str = "inbound-secret-of-the-generic-crm";
/// A loopback address where nothing listens: the outbox fails there at once, never the Internet.
pub const DEAD_URL: &str = "http://127.0.0.1:9";

pub struct Fixture {
    pub app: TestApp,
    pub mail: MemoryEmailSender,
    pub a: AccountFixture,
    pub b: AccountFixture,
    counter: AtomicU64,
}

/// An account and what it holds.
pub struct AccountFixture {
    /// `a` or `b`: in emails, CRM ids and deal ids.
    pub label: String,
    pub id: String,
    /// The API key's bearer value `<key_id>.<secret>`.
    pub key: String,
    pub key_id: String,
    pub crm_external_id: String,
    pub inbound_secret: String,
    /// The paid lot (20 seats for A, 5 for B).
    pub lot: String,
    pub order: String,
    pub invoice: String,
    pub payment: String,
    /// The transfer document of the paid order.
    pub document: String,
    /// The corrective invoice of a retro discount on `invoice`.
    pub corrective: String,
    pub admin: UserFixture,
    pub member: UserFixture,
    /// Active, no seat, no role in any meeting: for sign-ins and links.
    pub spare: UserFixture,
    pub crm_connection: String,
    pub webhook_endpoint: String,
    /// A message to the dead webhook endpoint that has failed (retryable).
    pub outbox_message: String,
    /// The deal card's launch secret (HMAC-SHA256 key of [`Fixture::card_launch`]).
    pub card_secret: String,
    /// The member's CRM user id, linked for the deal card.
    pub crm_user: String,
    /// A deal-card session (`cs_…`) of the member.
    pub card_token: String,
    /// A licensed meeting hosted by the member (created with the member's session).
    pub meeting: MeetingFixture,
}

pub struct UserFixture {
    pub id: String,
    pub email: String,
    /// A session token (`s_…`), for `Authorization: Bearer`.
    pub token: String,
    pub session_id: String,
}

pub struct MeetingFixture {
    pub id: String,
    pub host_key: String,
    pub host_token: String,
    pub invite: String,
    /// A guest's join token, from exchanging the invitation.
    pub guest_token: String,
}

impl Fixture {
    /// Starts a server and builds both accounts.
    pub async fn spawn() -> Fixture {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(
        tweak: impl FnOnce(&mut parley_signaling::Config) + Send + 'static,
    ) -> Fixture {
        let mail = MemoryEmailSender::new();
        let m = mail.clone();
        let app = TestApp::spawn_with(move |cfg| {
            // Licensing's "today" before the lots' end, stable whatever the real date.
            cfg.licensing_clock = Some(LicensingClock::new(
                NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
            ));
            cfg.email_sender = Some(EmailSenderHook(Arc::new(m)));
            // Fast retries: the failed outbox message fails within milliseconds.
            cfg.outbox_max_attempts = 2;
            cfg.outbox_base_delay = Duration::from_millis(10);
            cfg.outbox_max_delay = Duration::from_millis(50);
            cfg.crm_timeout = Duration::from_secs(3);
            // No composite video: fixture recordings hold no media to compose.
            cfg.ffmpeg = Some(std::path::PathBuf::new());
            tweak(cfg);
        })
        .await;
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/api/v1/tariffs/{TARIFF}"),
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": "Business", "term_months": 12, "price_per_seat": SEAT_PRICE,
                    "features": {"max_participants": 10, "max_meeting_minutes": 240,
                        "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                        "sdk_embedding": true, "results_to_recipients": true,
                        "screen_share": true}
                })),
            )
            .await;
        assert_eq!(s, 200, "tariff: {v}");
        let mut f = Fixture {
            app,
            mail,
            a: AccountFixture::placeholder(),
            b: AccountFixture::placeholder(),
            counter: AtomicU64::new(0),
        };
        f.a = f.account("a", 20).await;
        f.b = f.account("b", 5).await;
        f
    }

    /// A value no other call of this fixture got: for emails, ids and idempotency keys.
    pub fn unique(&self) -> String {
        format!("u{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Any call, with a fresh `Idempotency-Key` on everything but GET (calls that move money
    /// or seats require one; the others ignore it). Returns status and JSON (Null if not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, text) = self.call_text(method, path, bearer, body).await;
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// [`Fixture::call`] with the raw body text (for HTML answers).
    pub async fn call_text(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let idempotent = method == Method::GET;
        let mut req = self.app.http.request(method, self.app.url(path));
        if !idempotent {
            req = req.header("Idempotency-Key", format!("fixture-{}", self.unique()));
        }
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("request");
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    }

    /// [`Fixture::call`] that must answer `want`; returns the JSON.
    pub async fn must(
        &self,
        want: u16,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (s, v) = self.call(method.clone(), path, bearer, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// Places an order for `acc` with its key; returns `{order, invoice}`.
    pub async fn place_order(&self, acc: &AccountFixture, order: Value) -> Value {
        self.must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/orders", acc.id),
            Some(&acc.key),
            Some(order),
        )
        .await
    }

    /// An unpaid initial order of one seat: `(order id, invoice id, amount due)`. The amount
    /// is [`SEAT_PRICE`] less any promotion the operator has running.
    pub async fn unpaid_order(&self, acc: &AccountFixture) -> (String, String, Value) {
        let v = self
            .place_order(
                acc,
                json!({"type": "initial", "tariff": TARIFF, "seats": 1}),
            )
            .await;
        (
            str_of(&v["order"], "id"),
            str_of(&v["invoice"], "id"),
            v["invoice"]["amount"].clone(),
        )
    }

    /// The operator registers the bank transfer paying `invoice` in full; returns the payment.
    pub async fn pay(&self, acc: &AccountFixture, invoice: &str, amount: &Value) -> Value {
        self.must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/invoices/{invoice}/payments", acc.id),
            Some(ADMIN_TOKEN),
            Some(json!({"method": "bank_transfer", "amount": amount})),
        )
        .await
    }

    /// A paid one-seat order: `(invoice id, its transfer document id)`.
    pub async fn paid_invoice(&self, acc: &AccountFixture) -> (String, String) {
        let (_, invoice, amount) = self.unpaid_order(acc).await;
        self.pay(acc, &invoice, &amount).await;
        let docs = self
            .must(
                200,
                Method::GET,
                &format!("/api/v1/accounts/{}/documents", acc.id),
                Some(&acc.key),
                None,
            )
            .await;
        let doc = docs
            .as_array()
            .and_then(|d| d.iter().find(|d| d["invoice_id"] == invoice.as_str()))
            .unwrap_or_else(|| panic!("no transfer document for invoice {invoice}: {docs}"));
        (invoice, str_of(doc, "id"))
    }

    /// Invites `email` as `role` with the account's key; returns the invited user's id.
    pub async fn invite(&self, acc: &AccountFixture, email: &str, role: &str) -> String {
        let v = self
            .must(
                201,
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": email, "role": role})),
            )
            .await;
        str_of(&v["user"], "id")
    }

    /// The token of the last link mailed to `email` (`#token=<prefix>…`), waiting for the mail
    /// (password reset links are sent after the answer).
    pub async fn mailed_token(&self, email: &str, prefix: &str, nth: usize) -> String {
        wait_for(&format!("mail number {nth} to {email}"), || async {
            let mails = self.mail.sent_to(email);
            (mails.len() >= nth)
                .then(|| mails.last().and_then(|m| token_in(&m.text, prefix)))
                .flatten()
        })
        .await
    }

    /// Invites and accepts: an active, signed-in user.
    pub async fn user(&self, acc: &AccountFixture, email: &str, role: &str) -> UserFixture {
        let id = self.invite(acc, email, role).await;
        let token = self
            .mailed_token(email, "inv_", self.mail.sent_to(email).len())
            .await;
        let v = self
            .must(
                200,
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": PASSWORD})),
            )
            .await;
        UserFixture {
            id,
            email: email.to_owned(),
            token: str_of(&v, "token"),
            session_id: str_of(&v["session"], "id"),
        }
    }

    /// Another session of an existing user (signs in with [`PASSWORD`]).
    pub async fn sign_in(&self, email: &str) -> UserFixture {
        let v = self
            .must(
                200,
                Method::POST,
                "/api/v1/auth/sign-in",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        UserFixture {
            id: str_of(&v["user"], "id"),
            email: email.to_owned(),
            token: str_of(&v, "token"),
            session_id: str_of(&v["session"], "id"),
        }
    }

    /// Gives `user` a seat of the account's lot.
    pub async fn seat(&self, acc: &AccountFixture, user: &str) {
        self.must(
            201,
            Method::PUT,
            &format!("/api/v1/accounts/{}/users/{user}/seat", acc.id),
            Some(&acc.key),
            Some(json!({"lot_id": acc.lot})),
        )
        .await;
    }

    /// Waits until `message` of `acc`'s outbox has failed (it goes to [`DEAD_URL`]).
    pub async fn until_failed(&self, acc: &AccountFixture, message: &str) {
        wait_for(&format!("outbox message {message} failed"), || async {
            let (_, v) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/accounts/{}/outbox?status=failed", acc.id),
                    Some(&acc.key),
                    None,
                )
                .await;
            v.as_array()
                .is_some_and(|l| l.iter().any(|m| m["id"] == message))
                .then_some(())
        })
        .await;
    }

    /// The path of a deal-card launch signed with `secret`, valid for ten minutes.
    pub fn card_launch(acc: &AccountFixture, secret: &str, deal: &str, crm_user: &str) -> String {
        let exp = Utc::now().timestamp() + 600;
        let text = format!(
            "account={}&deal={deal}&crm_user={crm_user}&exp={exp}",
            acc.id
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(text.as_bytes());
        format!(
            "/crm/card?{text}&sig={}",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// A participant connected to `meeting` over the WebSocket (a fresh guest); returns the
    /// open socket (keep it: dropping it leaves) and the participant id.
    pub async fn participant(&self, meeting: &MeetingFixture, name: &str) -> (WsClient, String) {
        let v = self
            .must(
                200,
                Method::POST,
                &format!("/api/v1/meetings/{}/join", meeting.id),
                None,
                Some(json!({"display_name": name, "invite": meeting.invite})),
            )
            .await;
        let (c, joined) = self.app.join(&str_of(&v, "token")).await;
        (c, str_of(&joined, "participant_id"))
    }

    /// A finished recording of `meeting` (of `acc`): someone joins, the host key starts and
    /// stops it, and it is waited for until it is no longer being written or processed.
    /// Needs a tariff with recording (the fixture's has it); returns the recording id.
    pub async fn record(&self, acc: &AccountFixture, meeting: &MeetingFixture) -> String {
        let (_socket, _) = self.participant(meeting, "Recorded").await;
        let path = format!("/api/v1/meetings/{}/recording", meeting.id);
        let v = self
            .must(201, Method::POST, &path, Some(&meeting.host_key), None)
            .await;
        let rid = str_of(&v, "recording_id");
        self.must(200, Method::DELETE, &path, Some(&meeting.host_key), None)
            .await;
        wait_for(&format!("recording {rid} finished"), || async {
            let (_, v) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/recordings/{rid}"),
                    Some(&acc.key),
                    None,
                )
                .await;
            v["status"]
                .as_str()
                .is_some_and(|s| s != "recording" && s != "processing")
                .then_some(())
        })
        .await;
        rid
    }

    /// Ends `meeting` with its host key (its summary is made then).
    pub async fn end_meeting(&self, meeting: &MeetingFixture) {
        self.must(
            204,
            Method::POST,
            &format!("/api/v1/meetings/{}/end", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    }

    /// One account with everything in the module docs.
    async fn account(&self, label: &str, seats: u32) -> AccountFixture {
        let crm_external_id = format!("fixture-{label}");
        let v = self
            .must(
                201,
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": format!("ООО Ромашка {label}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": CRM_SYSTEM,
                    "crm_external_id": crm_external_id, "address": "Москва",
                    "postpay_allowed": true
                })),
            )
            .await;
        let mut acc = AccountFixture::placeholder();
        acc.label = label.to_owned();
        acc.id = str_of(&v["account"], "id");
        acc.key = str_of(&v["api_key"], "bearer");
        acc.key_id = str_of(&v["api_key"], "key_id");
        acc.crm_external_id = crm_external_id;
        acc.inbound_secret = format!("{INBOUND_SECRET}-{label}");

        // The lot: an initial order paid by bank transfer; its document; a retro discount.
        let placed = self
            .place_order(
                &acc,
                json!({"type": "initial", "tariff": TARIFF, "seats": seats}),
            )
            .await;
        acc.order = str_of(&placed["order"], "id");
        acc.invoice = str_of(&placed["invoice"], "id");
        let paid = self
            .pay(&acc, &acc.invoice, &placed["invoice"]["amount"])
            .await;
        acc.payment = str_of(&paid, "id");
        acc.lot = str_of(&paid, "lot_id");
        let docs = self
            .must(
                200,
                Method::GET,
                &format!("/api/v1/accounts/{}/documents", acc.id),
                Some(&acc.key),
                None,
            )
            .await;
        acc.document = str_of(&docs[0], "id");
        let c = self
            .must(
                201,
                Method::POST,
                &format!(
                    "/api/v1/accounts/{}/invoices/{}/retro-discounts",
                    acc.id, acc.invoice
                ),
                Some(ADMIN_TOKEN),
                Some(json!({"discount": "100.00", "reason": "loyalty"})),
            )
            .await;
        acc.corrective = str_of(&c, "id");

        // People: an admin and a member with seats, a spare user without one.
        acc.admin = self
            .user(&acc, &format!("admin@{label}.example"), "account_admin")
            .await;
        acc.member = self
            .user(&acc, &format!("member@{label}.example"), "member")
            .await;
        acc.spare = self
            .user(&acc, &format!("spare@{label}.example"), "member")
            .await;
        self.seat(&acc, &acc.admin.id).await;
        self.seat(&acc, &acc.member.id).await;

        // Integrations: the generic CRM (its outbound side points nowhere), a customer webhook
        // endpoint that cannot be reached, and a message to it that has failed.
        let v = self
            .must(
                200,
                Method::PUT,
                &format!("/api/v1/accounts/{}/crm", acc.id),
                Some(&acc.key),
                Some(acc.crm_settings()),
            )
            .await;
        acc.crm_connection = str_of(&v, "connection_id");
        let v = self
            .must(
                201,
                Method::POST,
                &format!("/api/v1/accounts/{}/webhooks", acc.id),
                Some(&acc.key),
                Some(json!({"url": format!("{DEAD_URL}/hook-{label}"), "events": ["order.paid"]})),
            )
            .await;
        acc.webhook_endpoint = str_of(&v, "id");
        let (_, invoice, amount) = self.unpaid_order(&acc).await;
        self.pay(&acc, &invoice, &amount).await;
        let message = wait_for("the order.paid message failed", || async {
            let (_, v) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/accounts/{}/outbox?status=failed", acc.id),
                    Some(&acc.key),
                    None,
                )
                .await;
            v.as_array()
                .and_then(|l| l.first())
                .map(|m| str_of(m, "id"))
        })
        .await;
        acc.outbox_message = message;

        // The deal card: a secret, the member linked as a CRM user, a launch: a card session.
        let v = self
            .must(
                201,
                Method::POST,
                &format!("/api/v1/accounts/{}/crm/card-secret", acc.id),
                Some(&acc.key),
                Some(json!({"crm_origin": "http://127.0.0.1:9001"})),
            )
            .await;
        acc.card_secret = str_of(&v, "secret");
        acc.crm_user = format!("crm-rep-{label}");
        self.must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/crm/users", acc.id),
            Some(&acc.key),
            Some(json!({"crm_user_id": acc.crm_user, "user_id": acc.member.id})),
        )
        .await;
        let (s, page) = self
            .call_text(
                Method::GET,
                &Self::card_launch(
                    &acc,
                    &acc.card_secret,
                    &format!("deal-{label}"),
                    &acc.crm_user,
                ),
                None,
                None,
            )
            .await;
        assert_eq!(s, 200, "card launch: {page}");
        acc.card_token = card_token_in(&page).expect("the card page carries its session token");

        // The member's licensed meeting and a guest's token for it.
        let v = self
            .must(
                201,
                Method::POST,
                "/api/v1/meetings",
                Some(&acc.member.token),
                Some(json!({"title": format!("Demo for {label}")})),
            )
            .await;
        let mut meeting = MeetingFixture {
            id: str_of(&v, "id"),
            host_key: str_of(&v, "host_key"),
            host_token: str_of(&v, "host_token"),
            invite: str_of(&v, "invite"),
            guest_token: String::new(),
        };
        let v = self
            .must(
                200,
                Method::POST,
                &format!("/api/v1/meetings/{}/join", meeting.id),
                None,
                Some(json!({"display_name": "Guest", "invite": meeting.invite})),
            )
            .await;
        meeting.guest_token = str_of(&v, "token");
        acc.meeting = meeting;
        acc
    }
}

impl AccountFixture {
    fn placeholder() -> AccountFixture {
        let user = || UserFixture {
            id: String::new(),
            email: String::new(),
            token: String::new(),
            session_id: String::new(),
        };
        AccountFixture {
            label: String::new(),
            id: String::new(),
            key: String::new(),
            key_id: String::new(),
            crm_external_id: String::new(),
            inbound_secret: String::new(),
            lot: String::new(),
            order: String::new(),
            invoice: String::new(),
            payment: String::new(),
            document: String::new(),
            corrective: String::new(),
            admin: user(),
            member: user(),
            spare: user(),
            crm_connection: String::new(),
            webhook_endpoint: String::new(),
            outbox_message: String::new(),
            card_secret: String::new(),
            crm_user: String::new(),
            card_token: String::new(),
            meeting: MeetingFixture {
                id: String::new(),
                host_key: String::new(),
                host_token: String::new(),
                invite: String::new(),
                guest_token: String::new(),
            },
        }
    }

    /// The body of `PUT /accounts/{account}/crm` the fixture connected with.
    pub fn crm_settings(&self) -> Value {
        json!({"kind": "webhook", "settings": {
            "url": format!("{DEAD_URL}/crm-{}", self.label), "secret": self.inbound_secret}})
    }

    /// Headers of a request from the account's generic CRM: `X-Parley-Timestamp` and the
    /// `v1=` HMAC-SHA256 signature of `"{ts}.{body}"`.
    pub fn inbound_headers(&self, body: &[u8]) -> [(&'static str, String); 2] {
        let ts = Utc::now().timestamp().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(self.inbound_secret.as_bytes()).expect("key");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        [("x-parley-timestamp", ts), ("x-parley-signature", sig)]
    }
}

/// `<prefix><43 alphanumerics>` after `#token=` in a mail body.
pub fn token_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(&format!("#token={prefix}"))? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == prefix.len() + 43).then_some(token)
}

/// The card session token of a card page (`<meta name="parley-card-token" content="cs_…">`).
pub fn card_token_in(page: &str) -> Option<String> {
    let marker = "name=\"parley-card-token\" content=\"";
    let start = page.find(marker)? + marker.len();
    let token: String = page[start..].chars().take_while(|c| *c != '"').collect();
    token.starts_with("cs_").then_some(token)
}
