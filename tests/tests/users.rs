//! Users over HTTP, black-box: sign-in and sessions, lockout (agreement appendix 1, 1.6) with
//! its message and expiry, session expiry, invitations and password resets through the
//! in-memory mail sender (and once through a real SMTP server on loopback), seats assigned by
//! an account admin deciding who may host, and the authorization table.
//!
//! Time moves by the server's users clock (a test hook), never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike, Utc};
use parley_signaling::configuration::LicensingClock;
use parley_signaling::users::{EmailSenderHook, MemoryEmailSender, UsersClock};
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A server with one or two licensed accounts.
struct World {
    app: TestApp,
    clock: UsersClock,
    mail: MemoryEmailSender,
}

/// An account with its API key and one paid lot.
struct Account {
    id: String,
    key: String,
    lot: String,
}

/// A signed-in user.
struct User {
    id: String,
    email: String,
    token: String,
}

impl World {
    async fn spawn(tweak: impl FnOnce(&mut parley_signaling::Config)) -> World {
        let clock = UsersClock::new();
        let mail = MemoryEmailSender::new();
        let (c, m) = (clock.clone(), mail.clone());
        let app = TestApp::spawn_with(move |cfg| {
            cfg.licensing_clock = Some(LicensingClock::new(
                NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
            ));
            cfg.users_clock = Some(c);
            cfg.email_sender = Some(EmailSenderHook(Arc::new(m)));
            tweak(cfg);
        })
        .await;
        let w = World { app, clock, mail };
        let (s, v) = w
            .req(
                Method::PUT,
                "/api/v1/tariffs/business-12",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": "Business", "term_months": 12, "price_per_seat": "12000.00",
                    "features": {"max_participants": 10, "max_meeting_minutes": 240,
                        "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                        "sdk_embedding": true, "results_to_recipients": true,
                        "screen_share": true}
                })),
            )
            .await;
        assert_eq!(s, 200, "tariff: {v}");
        w
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

    /// An account (operator) with a paid lot of `seats` seats.
    async fn account(&self, crm_id: &str, seats: i64) -> Account {
        let (s, v) = self
            .req(
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(json!({
                    "name": format!("ООО Ромашка {crm_id}"), "kind": "legal_entity",
                    "inn": "7707083893", "resident": true, "crm_system": "sbercrm",
                    "crm_external_id": crm_id, "address": "Москва"
                })),
            )
            .await;
        assert_eq!(s, 201, "account: {v}");
        let (id, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
        let r = self
            .app
            .http
            .post(self.app.url(&format!("/api/v1/accounts/{id}/orders")))
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("order-{crm_id}"))
            .json(&json!({"type": "initial", "tariff": "business-12", "seats": seats}))
            .send()
            .await
            .expect("order");
        assert_eq!(r.status(), 201);
        let order: Value = r.json().await.expect("json");
        let inv = &order["invoice"];
        let r = self
            .app
            .http
            .post(self.app.url(&format!(
                "/api/v1/accounts/{id}/invoices/{}/payments",
                str_of(inv, "id")
            )))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", format!("pay-{crm_id}"))
            .json(&json!({"method": "bank_transfer", "amount": inv["amount"]}))
            .send()
            .await
            .expect("payment");
        assert_eq!(r.status(), 201);
        let p: Value = r.json().await.expect("json");
        Account {
            id,
            key,
            lot: str_of(&p, "lot_id"),
        }
    }

    /// Invites `email` with `role` (by `bearer`: a key, an admin session or the operator);
    /// returns the new user's id.
    /// The mail goes out through the outbox, so this waits until it has arrived.
    async fn invite(&self, acc: &Account, bearer: &str, email: &str, role: &str) -> String {
        let before = self.mail.sent_to(email).len();
        let (s, v) = self
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(bearer),
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "invite {email}: {v}");
        assert_eq!(v["user"]["status"], "invited");
        wait_for("the invitation mail", || async {
            (self.mail.sent_to(email).len() > before).then_some(())
        })
        .await;
        str_of(&v["user"], "id")
    }

    /// The token of the last link mailed to `email` (`#token=<prefix>…`).
    fn last_token(&self, email: &str, prefix: &str) -> String {
        let mails = self.mail.sent_to(email);
        let mail = mails.last().unwrap_or_else(|| panic!("no mail to {email}"));
        token_in(&mail.text, prefix).unwrap_or_else(|| panic!("no {prefix} link in the mail"))
    }

    async fn accept(&self, email: &str) -> (u16, Value) {
        let token = self.last_token(email, "inv_");
        self.req(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(json!({"token": token, "password": PASSWORD})),
        )
        .await
    }

    /// Invites and accepts: a signed-in user.
    async fn user(&self, acc: &Account, bearer: &str, email: &str, role: &str) -> User {
        let id = self.invite(acc, bearer, email, role).await;
        let (s, v) = self.accept(email).await;
        assert_eq!(s, 200, "accept: {v}");
        assert_eq!(v["user"]["status"], "active");
        User {
            id,
            email: email.to_owned(),
            token: str_of(&v, "token"),
        }
    }

    async fn sign_in(&self, email: &str, password: &str) -> (u16, Value) {
        self.req(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    async fn me(&self, token: &str) -> (u16, Value) {
        self.req(Method::GET, "/api/v1/me", Some(token), None).await
    }

    async fn create_meeting(&self, bearer: Option<&str>) -> (u16, Value) {
        self.req(
            Method::POST,
            "/api/v1/meetings",
            bearer,
            Some(json!({"title": "Demo with the client"})),
        )
        .await
    }
}

/// `<prefix><43 alphanumerics>` after `#token=` in a mail body.
fn token_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(&format!("#token={prefix}"))? + "#token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (token.len() == prefix.len() + 43).then_some(token)
}

fn assert_code(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(body["error"]["code"], want_code, "code; body {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_cookie_or_bearer_list_revoke_and_sign_out() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-1", 2).await;
    let ann = w
        .user(&a, &a.key, "Ann.Admin@Example.com", "account_admin")
        .await;

    // Wrong password and unknown email: one answer.
    let (s, wrong) = w.sign_in("ann.admin@example.com", "not the password").await;
    assert_code(s, &wrong, 401, "invalid_credentials");
    let (s, unknown) = w.sign_in("nobody@example.com", "not the password").await;
    assert_code(s, &unknown, 401, "invalid_credentials");
    assert_eq!(wrong, unknown, "no user enumeration");
    let (s, v) = w.sign_in("not an email", PASSWORD).await;
    assert_code(s, &v, 422, "invalid_email");

    // Email matching ignores case; the cookie is HttpOnly, SameSite=Lax, not Secure over http.
    let r = w
        .app
        .http
        .post(w.app.url("/api/v1/auth/sign-in"))
        .json(&json!({"email": "ANN.ADMIN@example.COM", "password": PASSWORD}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie")
        .to_owned();
    let v: Value = r.json().await.expect("json");
    let token = str_of(&v, "token");
    assert!(token.starts_with("s_"));
    assert!(
        cookie.starts_with(&format!("parley_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert_eq!(v["user"]["email"], "Ann.Admin@example.com");
    assert!(v["user"].get("password_hash").is_none());

    // The cookie works like the bearer.
    let r = w
        .app
        .http
        .get(w.app.url("/api/v1/me"))
        .header("Cookie", format!("theme=dark; parley_session={token}"))
        .send()
        .await
        .expect("me");
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.expect("json");
    assert_eq!(me["user"]["id"], ann.id.as_str());
    assert_eq!(me["user"]["role"], "account_admin");
    assert_eq!(me["account"]["id"], a.id.as_str());

    // Two sessions listed; revoking the first ends it at once.
    let (s, list) = w
        .req(Method::GET, "/api/v1/auth/sessions", Some(&token), None)
        .await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|s| s.get("token").is_none() && s.get("token_hash").is_none())
    );
    let first = list
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    let (s, _) = w
        .req(
            Method::DELETE,
            &format!("/api/v1/auth/sessions/{}", str_of(first, "id")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = w.me(&ann.token).await;
    assert_code(s, &v, 401, "invalid_session");
    let (s, v) = w
        .req(
            Method::DELETE,
            "/api/v1/auth/sessions/ses_nope",
            Some(&token),
            None,
        )
        .await;
    assert_code(s, &v, 404, "not_found");

    // Sign-out ends the session and clears the cookie.
    let r = w
        .app
        .http
        .post(w.app.url("/api/v1/auth/sign-out"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sign out");
    assert_eq!(r.status(), 204);
    let cleared = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cleared.contains("parley_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (s, v) = w.me(&token).await;
    assert_code(s, &v, 401, "invalid_session");
    let (s, v) = w.me("s_forged").await;
    assert_code(s, &v, 401, "invalid_session");
    w.app.shutdown().await;
}

/// Moscow is UTC+3 all year (no daylight saving since 2014).
fn moscow_minute_after(t: DateTime<Utc>) -> String {
    let m = t.with_timezone(&FixedOffset::east_opt(3 * 3600).expect("offset"));
    let m = if m.second() > 0 || m.nanosecond() > 0 {
        m + chrono::Duration::minutes(1)
    } else {
        m
    };
    m.format("%H:%M").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_lock_sign_in_for_fifteen_minutes_known_email_or_not() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-2", 1).await;
    let bob = w.user(&a, &a.key, "bob@example.com", "member").await;

    for email in [bob.email.as_str(), "ghost@example.com"] {
        for _ in 0..4 {
            let (s, v) = w.sign_in(email, "wrong password!").await;
            assert_code(s, &v, 401, "invalid_credentials");
        }
        let before = w.clock.now();
        let r = w
            .app
            .http
            .post(w.app.url("/api/v1/auth/sign-in"))
            .json(&json!({"email": email, "password": "wrong password!"}))
            .send()
            .await
            .expect("sign in");
        let after = w.clock.now();
        assert_eq!(r.status(), 429, "{email}: the fifth failure locks");
        let retry: i64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((895..=900).contains(&retry), "{retry}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "account_locked");
        let msg = v["error"]["message"].as_str().expect("message").to_owned();
        let fifteen = chrono::Duration::minutes(15);
        let expected = [
            moscow_minute_after(before + fifteen),
            moscow_minute_after(after + fifteen),
        ];
        assert!(
            expected
                .iter()
                .any(|hhmm| msg.contains(&format!("Try again after {hhmm} (Europe/Moscow)"))),
            "{msg} (expected one of {expected:?})"
        );
        // The right password during the lock is refused too.
        let (s, v) = w.sign_in(email, PASSWORD).await;
        assert_code(s, &v, 429, "account_locked");
    }

    // 14 minutes later still locked; at 15 the lock is over and the right password works.
    w.clock.advance(Duration::from_secs(14 * 60));
    let (s, v) = w.sign_in(&bob.email, PASSWORD).await;
    assert_code(s, &v, 429, "account_locked");
    w.clock.advance(Duration::from_secs(61));
    let (s, v) = w.sign_in(&bob.email, PASSWORD).await;
    assert_eq!(s, 200, "{v}");

    // A success resets the count: 4 failures, success, 4 failures never lock.
    for _ in 0..4 {
        let (s, _) = w.sign_in(&bob.email, "wrong password!").await;
        assert_eq!(s, 401);
    }
    let (s, _) = w.sign_in(&bob.email, PASSWORD).await;
    assert_eq!(s, 200);
    for _ in 0..4 {
        let (s, _) = w.sign_in(&bob.email, "wrong password!").await;
        assert_eq!(s, 401);
    }
    let (s, _) = w.sign_in(&bob.email, PASSWORD).await;
    assert_eq!(s, 200);
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_idle_and_at_their_absolute_end() {
    let mut w = World::spawn(|c| {
        c.session_idle = Duration::from_secs(3600);
        c.session_max = Duration::from_secs(3 * 3600);
    })
    .await;
    let a = w.account("U-3", 1).await;
    let u = w.user(&a, &a.key, "carol@example.com", "member").await;

    // Used every 50 minutes it stays alive... until its absolute end at 3 h.
    for _ in 0..3 {
        w.clock.advance(Duration::from_secs(50 * 60));
        let (s, v) = w.me(&u.token).await;
        assert_eq!(s, 200, "{v}");
    }
    w.clock.advance(Duration::from_secs(31 * 60));
    let (s, v) = w.me(&u.token).await;
    assert_code(s, &v, 401, "session_expired");

    // Unused for more than an hour it ends.
    let (s, v) = w.sign_in(&u.email, PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    let token = str_of(&v, "token");
    w.clock.advance(Duration::from_secs(59 * 60));
    let (s, _) = w.me(&token).await;
    assert_eq!(s, 200);
    w.clock.advance(Duration::from_secs(61 * 60));
    let (s, v) = w.me(&token).await;
    assert_code(s, &v, 401, "session_expired");
    // Expired sessions are not listed.
    let (s, v) = w.sign_in(&u.email, PASSWORD).await;
    assert_eq!(s, 200);
    let (s, list) = w
        .req(
            Method::GET,
            "/api/v1/auth/sessions",
            Some(&str_of(&v, "token")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_single_use_replaceable_and_expire() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-4", 1).await;
    let admin = w
        .user(&a, &a.key, "admin@example.com", "account_admin")
        .await;

    // The admin invites by session; the invited user cannot sign in yet.
    w.invite(&a, &admin.token, "dave@example.com", "member")
        .await;
    let mail = w.mail.sent_to("dave@example.com");
    assert_eq!(mail.len(), 1);
    assert!(mail[0].text.contains("http://"), "a link");
    assert!(
        !format!("{:?}", mail[0]).contains("inv_"),
        "Debug hides the link"
    );
    let (s, _) = w.sign_in("dave@example.com", PASSWORD).await;
    assert_eq!(s, 401);
    let first = w.last_token("dave@example.com", "inv_");

    // Inviting again sends a new link and voids the first one.
    w.invite(&a, &admin.token, "DAVE@example.com", "member")
        .await;
    let second = w.last_token("dave@example.com", "inv_");
    assert_ne!(first, second);
    let accept = |token: String, password: &'static str| {
        let w = &w;
        async move {
            w.req(
                Method::POST,
                "/api/v1/invitations/accept",
                None,
                Some(json!({"token": token, "password": password, "display_name": "Dave"})),
            )
            .await
        }
    };
    let (s, v) = accept(first, PASSWORD).await;
    assert_code(s, &v, 400, "invalid_token");
    let (s, v) = accept(second.clone(), "short").await;
    assert_code(s, &v, 422, "invalid_password");
    let (s, v) = accept(second.clone(), PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user"]["display_name"], "Dave");
    let (s, v) = accept(second, PASSWORD).await;
    assert_code(s, &v, 400, "invalid_token");
    let (s, v) = w.sign_in("dave@example.com", PASSWORD).await;
    assert_eq!(s, 200, "{v}");

    // The address is taken now, in this account and any other.
    let b = w.account("U-4b", 1).await;
    for acc in [&a, &b] {
        let (s, v) = w
            .req(
                Method::POST,
                &format!("/api/v1/accounts/{}/invitations", acc.id),
                Some(&acc.key),
                Some(json!({"email": "Dave@Example.com", "role": "member"})),
            )
            .await;
        assert_code(s, &v, 409, "email_taken");
    }

    // A link older than 7 days no longer works.
    w.invite(&a, &a.key, "erin@example.com", "member").await;
    w.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    let (s, v) = w.accept("erin@example.com").await;
    assert_code(s, &v, 400, "invalid_token");
    for bad in [
        "",
        "inv_short",
        "rst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (s, v) = accept(bad.into(), PASSWORD).await;
        assert_code(s, &v, 400, "invalid_token");
    }
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_sets_a_new_password_and_revokes_every_session() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-5", 1).await;
    let u = w.user(&a, &a.key, "frank@example.com", "member").await;
    let (s, v) = w.sign_in(&u.email, PASSWORD).await;
    assert_eq!(s, 200);
    let second = str_of(&v, "token");

    // Always 202, known or not, even malformed.
    for email in ["FRANK@example.com", "nobody@example.com", "not an email"] {
        let (s, _) = w
            .req(
                Method::POST,
                "/api/v1/auth/password-reset",
                None,
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(s, 202, "{email}");
    }
    let token = wait_for("the reset mail", || async {
        w.mail
            .sent_to("frank@example.com")
            .iter()
            .find_map(|m| token_in(&m.text, "rst_"))
    })
    .await;
    assert!(w.mail.sent_to("nobody@example.com").is_empty());

    let confirm = |token: String| {
        let w = &w;
        async move {
            w.req(
                Method::POST,
                "/api/v1/auth/password-reset/confirm",
                None,
                Some(json!({"token": token, "password": "a brand new passphrase"})),
            )
            .await
        }
    };
    let (s, v) = confirm(token.clone()).await;
    assert_eq!(s, 204, "{v}");
    for t in [&u.token, &second] {
        let (s, v) = w.me(t).await;
        assert_code(s, &v, 401, "invalid_session");
    }
    let (s, _) = w.sign_in(&u.email, PASSWORD).await;
    assert_eq!(s, 401, "the old password is gone");
    let (s, v) = w.sign_in(&u.email, "a brand new passphrase").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = confirm(token).await;
    assert_code(s, &v, 400, "invalid_token");

    // A reset link is good for one hour.
    let (s, _) = w
        .req(
            Method::POST,
            "/api/v1/auth/password-reset",
            None,
            Some(json!({"email": "frank@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
    let token = wait_for("the second reset mail", || async {
        (w.mail.sent_to("frank@example.com").len() == 3)
            .then(|| w.last_token("frank@example.com", "rst_"))
    })
    .await;
    w.clock.advance(Duration::from_secs(3601));
    let (s, v) = confirm(token).await;
    assert_code(s, &v, 400, "invalid_token");
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_assigns_a_seat_and_only_then_the_user_can_host() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-6", 1).await;
    let admin = w
        .user(&a, &a.key, "grace@example.com", "account_admin")
        .await;
    let rep = w
        .user(&a, &admin.token, "heidi@example.com", "member")
        .await;

    let (s, me) = w.me(&rep.token).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(
        (me["may_host"].clone(), me["may_host_refusal"].clone()),
        (json!(false), json!("no_seat"))
    );
    assert_eq!(me["seat_lot_id"], Value::Null);
    let (s, v) = w.create_meeting(Some(&rep.token)).await;
    assert_code(s, &v, 403, "no_seat");

    let seat = format!("/api/v1/accounts/{}/users/{}/seat", a.id, rep.id);
    let (s, v) = w
        .req(
            Method::PUT,
            &seat,
            Some(&admin.token),
            Some(json!({"lot_id": a.lot})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["user_id"], rep.id.as_str());
    let (_, me) = w.me(&rep.token).await;
    assert_eq!(me["may_host"], true, "{me}");
    assert_eq!(me["seat_lot_id"], a.lot.as_str());
    let (s, v) = w.create_meeting(Some(&rep.token)).await;
    assert_eq!(s, 201, "{v}");
    // The one seat is taken: the admin has none.
    let (s, v) = w
        .req(
            Method::PUT,
            &format!("/api/v1/accounts/{}/users/{}/seat", a.id, admin.id),
            Some(&admin.token),
            Some(json!({"lot_id": a.lot})),
        )
        .await;
    assert_code(s, &v, 422, "no_free_seat");
    let (s, v) = w.create_meeting(Some(&admin.token)).await;
    assert_code(s, &v, 403, "no_seat");

    // Reclaimed: the rep can no longer host; the admin can after taking the seat.
    let (s, _) = w.req(Method::DELETE, &seat, Some(&admin.token), None).await;
    assert_eq!(s, 204);
    let (s, v) = w.create_meeting(Some(&rep.token)).await;
    assert_code(s, &v, 403, "no_seat");
    let (s, _) = w
        .req(
            Method::PUT,
            &format!("/api/v1/accounts/{}/users/{}/seat", a.id, admin.id),
            Some(&admin.token),
            Some(json!({"lot_id": a.lot})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = w.create_meeting(Some(&admin.token)).await;
    assert_eq!(s, 201, "{v}");

    // Without PARLEY_REQUIRE_LICENSE anonymous meetings still work.
    let (s, v) = w.create_meeting(None).await;
    assert_eq!(s, 201, "{v}");
    // A disabled user's sessions end at once.
    let (s, v) = w
        .req(
            Method::PATCH,
            &format!("/api/v1/accounts/{}/users/{}", a.id, rep.id),
            Some(&admin.token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = w.me(&rep.token).await;
    assert_eq!(s, 401);
    let (s, _) = w.sign_in(&rep.email, PASSWORD).await;
    assert_eq!(s, 401);
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_licenses_required_a_signed_in_user_hosts_on_their_seat() {
    let mut w = World::spawn(|c| c.require_license = true).await;
    let a = w.account("U-7", 1).await;
    let admin = w
        .user(&a, &a.key, "ivan@example.com", "account_admin")
        .await;
    let (s, v) = w.create_meeting(None).await;
    assert_code(s, &v, 403, "license_required");
    let (s, v) = w.create_meeting(Some(&admin.token)).await;
    assert_code(s, &v, 403, "no_seat");
    let (s, _) = w
        .req(
            Method::PUT,
            &format!("/api/v1/accounts/{}/users/{}/seat", a.id, admin.id),
            Some(&a.key),
            Some(json!({"lot_id": a.lot})),
        )
        .await;
    assert_eq!(s, 201);
    // Also through the cookie, and a foreign host_user_id is refused.
    let r = w
        .app
        .http
        .post(w.app.url("/api/v1/meetings"))
        .header("Cookie", format!("parley_session={}", admin.token))
        .json(&json!({"title": "Cookie meeting"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let (s, v) = w
        .req(
            Method::POST,
            "/api/v1/meetings",
            Some(&admin.token),
            Some(json!({"title": "x", "host_user_id": "someone-else"})),
        )
        .await;
    assert_code(s, &v, 422, "invalid_request");
    w.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_code() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-8", 1).await;
    let inv = format!("/api/v1/accounts/{}/invitations", a.id);
    let cases = [
        (
            json!({"email": "x", "role": "member"}),
            422,
            "invalid_email",
        ),
        (
            json!({"email": "x@example.com", "role": "owner"}),
            422,
            "invalid_role",
        ),
        (
            json!({"email": "x@example.com", "role": "member", "display_name": ""}),
            422,
            "invalid_display_name",
        ),
        (
            json!({"email": "x@example.com", "role": "member", "admin": true}),
            422,
            "invalid_body",
        ),
        (json!({"email": "x@example.com"}), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let (s, v) = w
            .req(Method::POST, &inv, Some(&a.key), Some(body.clone()))
            .await;
        assert_code(s, &v, status, code);
    }
    let (s, v) = w.sign_in("a@example.com", &"p".repeat(100_000)).await;
    assert_code(s, &v, 413, "payload_too_large");
    let (s, v) = w
        .req(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"email": "a@example.com", "password": "x".repeat(5000)})),
        )
        .await;
    assert_code(s, &v, 401, "invalid_credentials");
    let (s, v) = w
        .req(
            Method::PATCH,
            &format!("/api/v1/accounts/{}/users/not-a-uuid", a.id),
            Some(&a.key),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_code(s, &v, 404, "not_found");
    w.app.shutdown().await;
}

/// One row of the authorization table: a call and the status each caller gets.
type Row = (Method, String, Option<Value>, Box<dyn Fn(Who) -> u16>);

/// Who calls, in the table below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Member,
    OtherAdmin,
    OtherKey,
    Admin,
    Key,
    Operator,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_table() {
    use Who::*;
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-9a", 3).await;
    let b = w.account("U-9b", 1).await;
    let admin = w
        .user(&a, &a.key, "admin-a@example.com", "account_admin")
        .await;
    let member = w.user(&a, &a.key, "member-a@example.com", "member").await;
    let target = w.user(&a, &a.key, "target-a@example.com", "member").await;
    let other_admin = w
        .user(&b, &b.key, "admin-b@example.com", "account_admin")
        .await;
    let bearer = |who: Who| -> Option<String> {
        match who {
            Anonymous => None,
            Member => Some(member.token.clone()),
            OtherAdmin => Some(other_admin.token.clone()),
            OtherKey => Some(b.key.clone()),
            Admin => Some(admin.token.clone()),
            Key => Some(a.key.clone()),
            Operator => Some(ADMIN_TOKEN.into()),
        }
    };
    let acc = &a.id;
    let t = &target.id;
    let all = [
        Anonymous, Member, OtherAdmin, OtherKey, Admin, Key, Operator,
    ];
    // Account A's users: managers only; members 403; the other account 404 (as if missing).
    let manage = |who: Who, ok: u16| match who {
        Anonymous => 401,
        Member => 403,
        OtherAdmin | OtherKey => 404,
        Admin | Key | Operator => ok,
    };
    let rows: Vec<Row> = vec![
        (
            Method::GET,
            format!("/api/v1/accounts/{acc}/users"),
            None,
            Box::new(move |w| manage(w, 200)),
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{acc}/users/{t}"),
            None,
            Box::new(move |w| manage(w, 200)),
        ),
        (
            Method::PATCH,
            format!("/api/v1/accounts/{acc}/users/{t}"),
            Some(json!({"display_name": "Renamed"})),
            Box::new(move |w| manage(w, 200)),
        ),
        (
            Method::PUT,
            format!("/api/v1/accounts/{acc}/users/{t}/seat"),
            Some(json!({"lot_id": a.lot})),
            Box::new(move |w| manage(w, 201)),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{acc}/users/{t}/seat"),
            None,
            Box::new(move |w| manage(w, 204)),
        ),
        // Invitations: a fresh address per caller, so a success is never a conflict.
        (
            Method::POST,
            format!("/api/v1/accounts/{acc}/invitations"),
            None,
            Box::new(move |w| manage(w, 201)),
        ),
        // The member reads their own record, not a colleague's.
        (
            Method::GET,
            format!("/api/v1/accounts/{acc}/users/{}", member.id),
            None,
            Box::new(move |w| if w == Member { 200 } else { manage(w, 200) }),
        ),
        // Own things of a signed-in user: sessions and /me; keys and the operator are no users.
        (
            Method::GET,
            "/api/v1/me".into(),
            None,
            Box::new(|w| match w {
                Anonymous => 401,
                Member | OtherAdmin | Admin => 200,
                OtherKey | Key | Operator => 403,
            }),
        ),
        (
            Method::GET,
            "/api/v1/auth/sessions".into(),
            None,
            Box::new(|w| match w {
                Anonymous => 401,
                Member | OtherAdmin | Admin => 200,
                OtherKey | Key | Operator => 403,
            }),
        ),
    ];
    for (method, path, body, want) in &rows {
        for who in all {
            let body = if path.ends_with("/invitations") {
                Some(json!({"email": format!("new-{who:?}@example.com"), "role": "member"}))
            } else {
                body.clone()
            };
            if *method == Method::DELETE && path.ends_with("/seat") {
                // Something to reclaim (already there after a refused attempt: 422, fine).
                w.req(
                    Method::PUT,
                    path,
                    Some(&a.key),
                    Some(json!({"lot_id": a.lot})),
                )
                .await;
            }
            let (s, v) = w
                .req(method.clone(), path, bearer(who).as_deref(), body)
                .await;
            assert_eq!(s, want(who), "{method} {path} as {who:?}: {v}");
            if s >= 400 {
                assert!(v["error"]["code"].is_string(), "{v}");
            }
            // Give the seat back after every successful assignment so the next caller can try.
            if s == 201 && path.ends_with("/seat") {
                let (s, _) = w.req(Method::DELETE, path, Some(&a.key), None).await;
                assert_eq!(s, 204);
            }
        }
    }
    // Nothing the refused callers tried took effect: the admin-only role change and disabling.
    for who in [Anonymous, Member, OtherAdmin, OtherKey] {
        let (s, _) = w
            .req(
                Method::PATCH,
                &format!("/api/v1/accounts/{acc}/users/{t}"),
                bearer(who).as_deref(),
                Some(json!({"role": "account_admin", "status": "disabled"})),
            )
            .await;
        assert!(s == 401 || s == 403 || s == 404, "{who:?}: {s}");
        // Nor may anyone revoke another user's session by its id.
        let (_, list) = w
            .req(
                Method::GET,
                "/api/v1/auth/sessions",
                Some(&target.token),
                None,
            )
            .await;
        let sid = str_of(&list[0], "id");
        let (s, _) = w
            .req(
                Method::DELETE,
                &format!("/api/v1/auth/sessions/{sid}"),
                bearer(who).as_deref(),
                None,
            )
            .await;
        assert!(s == 401 || s == 403 || s == 404, "{who:?}: {s}");
    }
    let (_, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{acc}/users/{t}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(v["user"]["role"], "member");
    assert_eq!(v["user"]["status"], "active");
    let (s, _) = w.me(&target.token).await;
    assert_eq!(s, 200, "the target's session survived");
    // Account B sees none of A's users, and A's admin cannot promote or disable themselves.
    let (_, v) = w
        .req(
            Method::GET,
            &format!("/api/v1/accounts/{}/users", b.id),
            Some(&other_admin.token),
            None,
        )
        .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = w
        .req(
            Method::PATCH,
            &format!("/api/v1/accounts/{acc}/users/{}", admin.id),
            Some(&admin.token),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_code(s, &v, 409, "own_role_or_status");
    w.app.shutdown().await;
}

/// The invitation goes out over real SMTP to Python's aiosmtpd on loopback. Installed by
/// scripts/test.sh; where it is missing outside CI the test says so and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_mail_reaches_a_real_smtp_server() {
    let Some(smtp) = parley_tests::smtp::SmtpSink::start().await else {
        return;
    };
    let port = smtp.port;

    let mut app = TestApp::spawn_with(move |cfg| {
        cfg.licensing_clock = Some(LicensingClock::new(
            NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        ));
        cfg.smtp_url = Some(parley_signaling::configuration::Secret::new(format!(
            "smtp://127.0.0.1:{port}"
        )));
        cfg.smtp_from = "Parley <no-reply@parley.test>".into();
    })
    .await;
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(
                json!({"name": "ООО Почта", "kind": "legal_entity", "inn": "7707083893",
                "resident": true, "crm_system": "sbercrm", "crm_external_id": "smtp-1"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (acc, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{acc}/invitations"),
            Some(&key),
            Some(json!({"email": "judy@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // Undo quoted-printable soft breaks and `=3D` before reading the link.
    let token = wait_for("the invitation at the SMTP server", || async {
        let text = smtp.received();
        let plain = text
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        (plain.contains("judy@example.com") && plain.contains("Subject: You are invited to Parley"))
            .then(|| token_in(&plain, "inv_"))
            .flatten()
    })
    .await;
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(json!({"token": token, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    app.shutdown().await;
    smtp.stop().await;
}

/// The invitation page reads whose invitation a token is before accepting: the account's name,
/// the address and the expiry, and nothing more. It works as long as the token would be
/// accepted (not after use, replacement or expiry) and is not used up by reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_shows_its_account_and_address_until_it_is_used() {
    let mut w = World::spawn(|_| {}).await;
    let a = w.account("U-preview", 1).await;
    let preview = |token: String| {
        let w = &w;
        async move {
            w.req(
                Method::POST,
                "/api/v1/invitations/preview",
                None,
                Some(json!({ "token": token })),
            )
            .await
        }
    };
    let mailed_token = |n: usize| {
        let w = &w;
        async move {
            wait_for("the invitation mail", || async {
                let mails = w.mail.sent_to("frank@example.com");
                (mails.len() >= n)
                    .then(|| token_in(&mails[n - 1].text, "inv_"))
                    .flatten()
            })
            .await
        }
    };

    let before = w.clock.now();
    w.invite(&a, &a.key, "Frank@Example.com", "member").await;
    let after = w.clock.now();
    let first = mailed_token(1).await;
    let (s, v) = preview(first.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["account_name"], "ООО Ромашка U-preview");
    assert_eq!(v["email"], "Frank@example.com");
    let expires: DateTime<Utc> = str_of(&v, "expires_at").parse().expect("a timestamp");
    let week = chrono::Duration::days(7);
    assert!(
        before + week <= expires && expires <= after + week,
        "{expires}"
    );
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["account_name", "email", "expires_at"],
        "nothing else"
    );
    // Reading twice is fine: the token is not used up.
    let (s, _) = preview(first.clone()).await;
    assert_eq!(s, 200);

    // A fresh invitation voids the first link; the new one reads.
    w.invite(&a, &a.key, "frank@example.com", "member").await;
    let second = mailed_token(2).await;
    let (s, v) = preview(first).await;
    assert_code(s, &v, 400, "invalid_token");
    let (s, v) = preview(second.clone()).await;
    assert_eq!(s, 200, "{v}");

    // Accepted: no longer readable.
    let (s, v) = w
        .req(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(json!({"token": second, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = preview(second).await;
    assert_code(s, &v, 400, "invalid_token");

    // Expired, malformed or of another kind: the same refusal.
    w.invite(&a, &a.key, "gina@example.com", "member").await;
    let gina = wait_for("gina's invitation", || async {
        w.mail
            .sent_to("gina@example.com")
            .last()
            .and_then(|m| token_in(&m.text, "inv_"))
    })
    .await;
    w.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    let (s, v) = preview(gina).await;
    assert_code(s, &v, 400, "invalid_token");
    for bad in [
        "",
        "inv_short",
        "rst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (s, v) = preview(bad.into()).await;
        assert_code(s, &v, 400, "invalid_token");
    }
    w.app.shutdown().await;
}
