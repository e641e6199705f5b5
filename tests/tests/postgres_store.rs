//! The server on PostgreSQL, black-box: a whole account's life (invitations, sign-in, API keys,
//! orders, CRM and webhook settings, meetings, joins up to the participant limit, a recording)
//! through the HTTP API and the WebSocket with every table in a PostgreSQL schema, kept across
//! a restart; and two servers sharing one schema, whose outbox pollers race for the same
//! messages and deliver each one once.
//!
//! Needs `PARLEY_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`); without it
//! each test says so and passes without running.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parley_signaling::users::EmailSenderHook;
use parley_tests::crm_standins::WebhookReceiver;
use parley_tests::fixtures::{AccountFixture, Fixture, MeetingFixture, PASSWORD};
use parley_tests::postgres::{self, Schema, on_postgres};
use parley_tests::{TestApp, WsClient, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

fn postgres_url(test: &str) -> Option<String> {
    let url = postgres::url();
    if url.is_none() {
        eprintln!("{test}: skipped, PARLEY_TEST_POSTGRES_URL is not set");
    }
    url
}

/// A fixture world (see [`Fixture`]) whose server keeps everything in `schema`.
async fn world_in(schema: &Schema) -> Fixture {
    let (url, name) = (schema.url.clone(), schema.name.clone());
    Fixture::spawn_with(move |cfg| on_postgres(cfg, &url, &name)).await
}

/// A new licensed meeting of `acc`, hosted by its member.
async fn fresh_meeting(f: &Fixture, acc: &AccountFixture) -> MeetingFixture {
    let (s, v) = f
        .call(
            Method::POST,
            "/api/v1/meetings",
            Some(&acc.member.token),
            Some(json!({"title": format!("On PostgreSQL {}", f.unique())})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    MeetingFixture {
        id: str_of(&v, "id"),
        host_key: str_of(&v, "host_key"),
        host_token: str_of(&v, "host_token"),
        invite: str_of(&v, "invite"),
        guest_token: String::new(),
    }
}

/// Rows of `table` in `schema`, read straight from PostgreSQL.
async fn rows_in(schema: &Schema, table: &str) -> i64 {
    let pool = sqlx::PgPool::connect(&schema.url).await.expect("postgres");
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.{table}", schema.name))
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_lives_on_postgres_and_survives_a_restart() {
    let Some(url) = postgres_url("an_account_lives_on_postgres_and_survives_a_restart") else {
        return;
    };
    let schema = Schema::fresh(&url);
    let mut f = world_in(&schema).await;
    let a = &f.a;

    // The stores really are PostgreSQL's: the fixture's rows are in the schema.
    assert!(rows_in(&schema, "meetings").await >= 2);
    assert!(rows_in(&schema, "users").await >= 6);
    assert!(
        rows_in(&schema, "accounts").await >= 2,
        "licensing shares the schema"
    );

    // API key auth: the key reads its account, a forged secret and another account do not.
    let (s, v) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{}/users", a.id),
            Some(&a.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let emails: HashSet<String> = v
        .as_array()
        .expect("users")
        .iter()
        .map(|u| str_of(&u["user"], "email"))
        .collect();
    assert!(
        emails.contains(&a.admin.email) && emails.contains(&a.member.email),
        "{v}"
    );
    let forged = format!("{}.{}", a.key_id, "x".repeat(43));
    let (s, _) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{}/users", a.id),
            Some(&forged),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{}/users", f.b.id),
            Some(&a.key),
            None,
        )
        .await;
    // Another account's things are answered as if they did not exist (authorization.rs).
    assert_eq!(s, 404);

    // An invitation accepted, then a sign-in: the session works, a wrong password does not.
    let email = format!("{}@pg.example", f.unique());
    let invited = f.user(a, &email, "member").await;
    let again = f.sign_in(&email).await;
    assert_eq!(again.id, invited.id);
    let (s, me) = f
        .call(Method::GET, "/api/v1/me", Some(&again.token), None)
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["email"], email.as_str(), "{me}");
    let (s, v) = f
        .call(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"email": email, "password": format!("{PASSWORD}!")})),
        )
        .await;
    assert_eq!(s, 401, "{v}");

    // Joins over the WebSocket up to the tariff's limit of 10; the next one is refused.
    let meeting = &fresh_meeting(&f, a).await;
    let mut sockets: Vec<WsClient> = Vec::new();
    let mut ids = HashSet::new();
    for i in 0..10 {
        let (socket, pid) = f.participant(meeting, &format!("Guest {i}")).await;
        sockets.push(socket);
        ids.insert(pid);
    }
    assert_eq!(ids.len(), 10);
    let (s, v) = f
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", meeting.id),
            None,
            Some(json!({"display_name": "Late", "invite": meeting.invite})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "participant_limit", "{v}");
    // The first guest saw the second one come in.
    let second = sockets[0].expect_type("participant_joined").await;
    assert!(
        ids.contains(&str_of(&second["participant"], "id")),
        "{second}"
    );
    drop(sockets);

    // A recording row round trip.
    let other = &f.b.meeting;
    let rid = f.record(&f.b, other).await;
    let (s, v) = f
        .call(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meeting_id"], other.id.as_str(), "{v}");
    let (s, list) = f
        .call(
            Method::GET,
            &format!("/api/v1/meetings/{}/recordings", other.id),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    assert!(list.to_string().contains(&rid), "{list}");

    // A restart on the same schema finds everything again.
    let (url2, name2) = (schema.url.clone(), schema.name.clone());
    f.app
        .restart_with(move |cfg| on_postgres(cfg, &url2, &name2))
        .await
        .expect("restart");
    let (s, me) = f
        .call(Method::GET, "/api/v1/me", Some(&again.token), None)
        .await;
    assert_eq!(s, 200, "the session outlives the process: {me}");
    let (s, v) = f
        .call(
            Method::GET,
            &format!("/api/v1/meetings/{}", meeting.id),
            Some(&meeting.host_key),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], meeting.id.as_str(), "{v}");
    f.app.shutdown().await;
}

/// A second server on `schema`, as a second node would run.
async fn second_node(schema: &Schema, mail: parley_signaling::users::MemoryEmailSender) -> TestApp {
    let (url, name) = (schema.url.clone(), schema.name.clone());
    TestApp::spawn_with(move |cfg| {
        on_postgres(cfg, &url, &name);
        cfg.email_sender = Some(EmailSenderHook(Arc::new(mail)));
        cfg.outbox_max_attempts = 2;
        cfg.outbox_base_delay = Duration::from_millis(10);
        cfg.outbox_max_delay = Duration::from_millis(50);
    })
    .await
}

/// A guest joined through `app` (either node) over the WebSocket.
async fn join_via(app: &TestApp, meeting: &MeetingFixture, name: &str) -> WsClient {
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/api/v1/meetings/{}/join", meeting.id),
            None,
            Some(json!({"display_name": name, "invite": meeting.invite})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    app.join(&str_of(&v, "token")).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_schema_deliver_each_webhook_once() {
    let Some(url) = postgres_url("two_nodes_on_one_schema_deliver_each_webhook_once") else {
        return;
    };
    let schema = Schema::fresh(&url);
    let mut f = world_in(&schema).await;
    let mut b = second_node(&schema, f.mail.clone()).await;
    let a = &f.a;

    // Registered on the second node with the key made on the first: one shared state.
    let receiver = WebhookReceiver::start("unknown-until-registered").await;
    let (s, v) = b
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{}/webhooks", a.id),
            Some(&a.key),
            Some(json!({"url": receiver.url, "events": ["participant.joined"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    receiver.lock().secret = Some(str_of(&v, "secret"));
    let endpoint = str_of(&v, "id");

    // Guests join through both nodes: each node enqueues, and both nodes' pollers claim from
    // the one table.
    let meeting = fresh_meeting(&f, a).await;
    let messages = 8;
    let mut sockets = Vec::new();
    for i in 0..messages {
        let node = if i % 2 == 0 { &f.app } else { &b };
        sockets.push(join_via(node, &meeting, &format!("Guest {i}")).await);
    }

    let outbox = |status: &'static str| {
        let (app, acc, key, endpoint) = (&f.app, a.id.clone(), a.key.clone(), endpoint.clone());
        async move {
            let (s, v) = app
                .call(
                    Method::GET,
                    &format!("/api/v1/accounts/{acc}/outbox?status={status}"),
                    Some(&key),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            v.as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m["destination"] == endpoint.as_str())
                .collect::<Vec<Value>>()
        }
    };
    let delivered = wait_for("every webhook message delivered", || async {
        let d = outbox("delivered").await;
        (d.len() == messages).then_some(d)
    })
    .await;
    for m in &delivered {
        assert_eq!(m["attempts"], 1, "claimed once: {m}");
    }
    let got = receiver.lock().received.clone();
    let keys: HashSet<String> = got
        .iter()
        .filter_map(|w| w.idempotency_key.clone())
        .collect();
    assert_eq!(got.len(), messages, "one request per message");
    assert_eq!(keys.len(), messages, "no message delivered twice");
    assert!(got.iter().all(|w| w.signature_ok));
    assert!(outbox("pending").await.is_empty());

    drop(sockets);
    b.shutdown().await;
    f.app.shutdown().await;
}
