//! CRM connectors against local stand-ins of amoCRM v4 and Bitrix24 REST (see
//! `parley_tests::crm_standins`): real paths, auth headers and bodies; token refresh, 429 with
//! Retry-After, 5xx, timeouts, malformed and oversized answers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use parley_signaling::crm::amocrm::{AmoCrm, AmoCrmConfig, AmoTokens, InMemoryTokenStore};
use parley_signaling::crm::bitrix24::{Bitrix24, Bitrix24Config};
use parley_signaling::crm::{CrmConnector, CrmError, FollowUpTask, SecretString};
use parley_tests::crm_standins::*;

const CONN: &str = "conn-amo-1";
const TIMEOUT: Duration = Duration::from_millis(800);

fn expired_tokens() -> AmoTokens {
    AmoTokens {
        access_token: SecretString::new("access-expired"),
        refresh_token: SecretString::new("refresh-0"),
        expires_at: None,
    }
}

async fn amo() -> (AmoStandIn, AmoCrm, Arc<InMemoryTokenStore>) {
    let stand_in = AmoStandIn::start("refresh-0").await;
    let tokens = Arc::new(InMemoryTokenStore::with(CONN, expired_tokens()));
    let crm = AmoCrm::new(
        AmoCrmConfig {
            base_url: stand_in.base_url.clone(),
            client_id: AMO_CLIENT_ID.into(),
            client_secret: SecretString::new(AMO_CLIENT_SECRET),
            redirect_uri: AMO_REDIRECT_URI.into(),
            connection_id: CONN.into(),
            timeout: TIMEOUT,
            task_type_id: 1,
        },
        reqwest::Client::new(),
        tokens.clone(),
    );
    (stand_in, crm, tokens)
}

fn task() -> FollowUpTask {
    FollowUpTask {
        title: "Send the proposal discussed on the call".into(),
        description: "Prices for 25 seats".into(),
        due: Utc
            .with_ymd_and_hms(2026, 3, 5, 15, 0, 0)
            .single()
            .expect("time"),
        responsible_user_id: None,
    }
}

#[tokio::test]
async fn amocrm_refreshes_an_expired_token_once_and_reads_the_deal() {
    let (s, crm, tokens) = amo().await;
    let deal = crm.read_deal(&AMO_LEAD_ID.to_string()).await.expect("deal");
    assert_eq!(deal.title, "Поставка CRM-лицензий ACME");
    assert_eq!(deal.responsible_user_id.as_deref(), Some("8123001"));
    // Main contact first; work email first.
    let people: Vec<(&str, Vec<&str>)> = deal
        .contacts
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.emails.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        people,
        [
            (
                "Анна Смирнова",
                vec!["anna@acme.example", "anna.home@example.ru"]
            ),
            ("Пётр Иванов", vec!["petr@acme.example"]),
        ]
    );

    let log = s.requests();
    let seen: Vec<(String, u16, Option<String>)> = log
        .iter()
        .map(|r| (r.path.clone(), r.status, r.authorization.clone()))
        .collect();
    let lead = format!("/api/v4/leads/{AMO_LEAD_ID}");
    assert_eq!(
        seen,
        [
            (lead.clone(), 401, Some("Bearer access-expired".into())),
            ("/oauth2/access_token".into(), 200, None),
            (lead, 200, Some("Bearer access-1".into())),
            (
                "/api/v4/contacts/500".into(),
                200,
                Some("Bearer access-1".into())
            ),
            (
                "/api/v4/contacts/501".into(),
                200,
                Some("Bearer access-1".into())
            ),
        ]
    );
    // The new pair is persisted (the old refresh token is dead now).
    let stored = tokens.get(CONN).expect("tokens");
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(stored.refresh_token.expose(), "refresh-1");
    assert!(stored.expires_at.is_some());
    assert_eq!(s.lock().refreshes, 1);
    // Nothing secret in Debug output.
    let dbg = format!("{crm:?} {stored:?}");
    assert!(
        !dbg.contains("access-1") && !dbg.contains(AMO_CLIENT_SECRET),
        "{dbg}"
    );
}

#[tokio::test]
async fn amocrm_note_and_task_have_the_documented_bodies() {
    let (s, crm, _) = amo().await;
    let deal = AMO_LEAD_ID.to_string();
    let note = crm
        .add_note(&deal, "Meeting: demo\nTalk ratio: rep 30% / client 70%")
        .await
        .expect("note");
    let t = crm.create_task(&deal, &task()).await.expect("task");
    assert_eq!(note.0, "70001");
    assert_eq!(t.0, "90001");
    let g = s.lock();
    assert_eq!(g.refreshes, 1, "one refresh serves both calls");
    let (lead, n) = &g.notes[0];
    assert_eq!(*lead, AMO_LEAD_ID);
    assert_eq!(n["note_type"], "common");
    assert!(
        n["params"]["text"]
            .as_str()
            .expect("text")
            .contains("rep 30%")
    );
    let task = &g.tasks[0];
    assert_eq!(task["entity_type"], "leads");
    assert_eq!(task["entity_id"], AMO_LEAD_ID);
    assert_eq!(task["task_type_id"], 1);
    assert_eq!(task["complete_till"], 1_772_722_800_i64);
    assert!(
        task["text"]
            .as_str()
            .expect("text")
            .starts_with("Send the proposal")
    );
}

#[tokio::test]
async fn amocrm_unknown_deal_and_revoked_refresh_are_permanent() {
    let (s, crm, tokens) = amo().await;
    let e = crm.read_deal("999").await.expect_err("204 = no such lead");
    assert!(
        matches!(e, CrmError::UnknownDeal(ref d) if d == "999"),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    let e = crm.read_deal("not-a-number").await.expect_err("bad id");
    assert!(matches!(e, CrmError::UnknownDeal(_)));

    // Someone else used the refresh token: amoCRM refuses it; re-authorisation is needed.
    s.lock().valid_access = None;
    s.lock().valid_refresh = "refresh-elsewhere".into();
    let e = crm
        .read_deal(&AMO_LEAD_ID.to_string())
        .await
        .expect_err("refresh refused");
    assert!(matches!(e, CrmError::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("Token has been revoked"), "{e}");
    // The stored pair is kept as it was (not replaced by garbage).
    assert_eq!(
        tokens.get(CONN).expect("tokens").refresh_token.expose(),
        "refresh-1"
    );
}

#[tokio::test]
async fn amocrm_429_5xx_timeout_garbage_and_huge_are_classified() {
    let (s, crm, _) = amo().await;
    let deal = AMO_LEAD_ID.to_string();
    // Get a valid token first so faults hit the API calls.
    crm.add_note(&deal, "warm-up").await.expect("note");

    s.push_faults([Fault::Status(429, Some(7))]);
    let e = crm.add_note(&deal, "x").await.expect_err("429");
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(e.http_status(), Some(429));

    s.push_faults([Fault::Status(502, None)]);
    let e = crm.add_note(&deal, "x").await.expect_err("502");
    assert!(matches!(e, CrmError::Server { status: 502, .. }), "{e:?}");
    assert!(e.is_retryable());

    s.push_faults([Fault::Hang]);
    let started = std::time::Instant::now();
    let e = crm.add_note(&deal, "x").await.expect_err("timeout");
    assert!(matches!(e, CrmError::Timeout(_)), "{e:?}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the client timeout ended it"
    );

    s.push_faults([Fault::Garbage]);
    let e = crm.add_note(&deal, "x").await.expect_err("garbage");
    assert!(matches!(e, CrmError::Malformed(_)), "{e:?}");
    assert!(!e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("expected JSON") && msg.contains("502 Bad Gateway"),
        "{msg}"
    );

    s.push_faults([Fault::Huge]);
    let e = crm.add_note(&deal, "x").await.expect_err("huge");
    assert!(matches!(e, CrmError::TooLarge { .. }), "{e:?}");

    s.push_faults([Fault::Status(400, None)]);
    let e = crm.add_note(&deal, "x").await.expect_err("400");
    assert!(matches!(e, CrmError::Rejected { status: 400, .. }), "{e:?}");
    assert!(!e.is_retryable());

    // And it still works afterwards.
    crm.add_note(&deal, "after").await.expect("note");
}

#[tokio::test]
async fn amocrm_unreachable_is_a_retryable_connection_error() {
    // A port nothing listens on (bound, then released).
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let tokens = Arc::new(InMemoryTokenStore::with(CONN, expired_tokens()));
    let crm = AmoCrm::new(
        AmoCrmConfig {
            base_url: format!("http://{addr}"),
            client_id: AMO_CLIENT_ID.into(),
            client_secret: SecretString::new(AMO_CLIENT_SECRET),
            redirect_uri: AMO_REDIRECT_URI.into(),
            connection_id: CONN.into(),
            timeout: TIMEOUT,
            task_type_id: 1,
        },
        reqwest::Client::new(),
        tokens,
    );
    let e = crm.read_deal("1").await.expect_err("unreachable");
    assert!(matches!(e, CrmError::Connection(_)), "{e:?}");
    assert!(e.is_retryable());
}

async fn bitrix() -> (BitrixStandIn, Bitrix24) {
    let s = BitrixStandIn::start().await;
    let b = Bitrix24::new(
        Bitrix24Config {
            webhook_url: SecretString::new(s.webhook_url()),
            timeout: TIMEOUT,
            default_responsible_id: None,
        },
        reqwest::Client::new(),
    )
    .expect("webhook url");
    (s, b)
}

#[tokio::test]
async fn bitrix24_reads_deal_adds_comment_and_task() {
    let (s, b) = bitrix().await;
    let deal_id = BITRIX_DEAL_ID.to_string();
    let deal = b.read_deal(&deal_id).await.expect("deal");
    assert_eq!(deal.title, "Внедрение видеосвязи для отдела продаж");
    assert_eq!(deal.responsible_user_id.as_deref(), Some("7"));
    assert_eq!(deal.contacts.len(), 2);
    assert_eq!(deal.contacts[0].name, "Мария Кузнецова");
    assert_eq!(
        deal.contacts[0].emails,
        ["m.kuznetsova@client.example", "maria@home.example"]
    );
    assert_eq!(deal.contacts[1].name, "Олег Петров");
    assert!(deal.contacts[1].emails.is_empty());

    let c = b
        .add_note(&deal_id, "Meeting: demo (45m 00s)")
        .await
        .expect("comment");
    assert_eq!(c.0, "501");
    let mut t = task();
    t.responsible_user_id = deal.responsible_user_id.clone();
    let created = b.create_task(&deal_id, &t).await.expect("task");
    assert_eq!(created.0, "701");

    let g = s.lock();
    let methods: Vec<&str> = g.calls.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        [
            "crm.deal.get",
            "crm.deal.contact.items.get",
            "crm.contact.get",
            "crm.contact.get",
            "crm.timeline.comment.add",
            "tasks.task.add"
        ]
    );
    assert!(g.requests.iter().all(|r| {
        r.path
            .starts_with(&format!("/rest/{BITRIX_USER}/{BITRIX_CODE}/"))
    }));
    let comment = &g.comments[0];
    assert_eq!(comment["ENTITY_TYPE"], "deal");
    assert_eq!(comment["ENTITY_ID"], BITRIX_DEAL_ID);
    let task = &g.tasks[0];
    assert_eq!(
        task["UF_CRM_TASK"],
        serde_json::json!([format!("D_{BITRIX_DEAL_ID}")])
    );
    assert_eq!(task["RESPONSIBLE_ID"], "7");
    assert_eq!(task["TITLE"], "Send the proposal discussed on the call");
    assert_eq!(task["DEADLINE"], "2026-03-05T15:00:00+00:00");
}

#[tokio::test]
async fn bitrix24_errors_are_classified() {
    let (s, b) = bitrix().await;
    let e = b.read_deal("999999").await.expect_err("unknown");
    assert!(matches!(e, CrmError::UnknownDeal(_)), "{e:?}");
    let e = b.add_note("999999", "x").await.expect_err("unknown");
    assert!(matches!(e, CrmError::UnknownDeal(_)), "{e:?}");

    s.push_faults([Fault::BitrixQueryLimit]);
    let e = b
        .add_note(&BITRIX_DEAL_ID.to_string(), "x")
        .await
        .expect_err("limit");
    assert!(matches!(e, CrmError::RateLimited { .. }), "{e:?}");
    assert!(e.is_retryable());

    s.push_faults([Fault::Status(500, None)]);
    let e = b
        .read_deal(&BITRIX_DEAL_ID.to_string())
        .await
        .expect_err("500");
    assert!(e.is_retryable(), "{e:?}");

    s.push_faults([Fault::Garbage]);
    let e = b
        .read_deal(&BITRIX_DEAL_ID.to_string())
        .await
        .expect_err("garbage");
    assert!(matches!(e, CrmError::Malformed(_)), "{e:?}");
    assert!(e.to_string().contains("502 Bad Gateway"), "{e}");

    s.push_faults([Fault::Hang]);
    let e = b
        .read_deal(&BITRIX_DEAL_ID.to_string())
        .await
        .expect_err("hang");
    assert!(matches!(e, CrmError::Timeout(_)), "{e:?}");

    // A wrong webhook code: refused, permanent, and the code is not in the message.
    let wrong = Bitrix24::new(
        Bitrix24Config {
            webhook_url: SecretString::new(format!("{}/rest/1/wrongcode123/", s.origin)),
            timeout: TIMEOUT,
            default_responsible_id: None,
        },
        reqwest::Client::new(),
    )
    .expect("shape is fine");
    let e = wrong.read_deal("1").await.expect_err("credentials");
    assert!(matches!(e, CrmError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("wrongcode123"));
}
