//! The whole flow, end to end with real parts: a signed deal-card launch inside the CRM's page
//! → "Start now" and the deal's contacts invited from the card → the rep and the client join in
//! headless Chromium and talk → the rep ends the meeting → the summary arrives at the CRM as a
//! note on the deal's timeline plus a follow-up task, by email at the SMTP server for the
//! invited contacts, and the meeting's events arrive signed at the customer's webhook receiver.
//!
//! Real parts: the server in-process on real ports, the amoCRM stand-in (v4 paths, OAuth
//! refresh; it also serves the lead's web page that frames the card, as an amoCRM widget does),
//! aiosmtpd on loopback, a webhook receiver that checks the HMAC itself, and Chromium driven by
//! tests/e2e/drivers/whole_flow.mjs (Playwright) as the rep and the client would use it.
//!
//! Needs node, /usr/bin/chromium, tests/e2e/node_modules and aiosmtpd: scripts/test.sh installs
//! them. Screenshots and the browsers' console go to artifacts/whole-flow/.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use chrono::{NaiveDate, Utc};
use parley_signaling::configuration::{LicensingClock, Secret};
use parley_tests::crm_standins::{
    AMO_CLIENT_ID, AMO_CLIENT_SECRET, AMO_LEAD_ID, AMO_REDIRECT_URI, AmoStandIn, WebhookReceiver,
    expected_signature,
};
use parley_tests::smtp::SmtpSink;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const REFRESH: &str = "amo-refresh-whole-flow";
/// amoCRM's id of the rep (the lead's responsible user in the stand-in).
const CRM_USER: &str = "8123001";
const REP_EMAIL: &str = "ivan.sokolov@romashka.example";
const REP_NAME: &str = "Ivan Sokolov";
/// The client types her name as it is in the CRM.
const CLIENT_NAME: &str = "Анна Смирнова";
const EVENTS: [&str; 3] = ["meeting.started", "participant.joined", "meeting.ended"];
/// The browser half runs this long at most (its own deadline is shorter).
const DRIVER_DEADLINE: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The browser tools, or a failure that says how to get them (never a silent pass).
fn require_browser_tools(root: &Path) {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut missing = Vec::new();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        missing.push("node".to_owned());
    }
    if !Path::new(&chromium).exists() {
        missing.push(chromium);
    }
    if !root.join("tests/e2e/node_modules/playwright-core").exists() {
        missing.push("tests/e2e/node_modules (playwright-core)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the whole-flow test needs {}: run scripts/test.sh (it installs them) or install them by hand",
        missing.join(", ")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// What a CRM does: sign `account&deal&crm_user&exp` with the card secret (see crm_card.rs).
fn launch_url(base: &str, account: &str, deal: &str, crm_user: &str, secret: &str) -> String {
    use hmac::Mac;
    let exp = Utc::now().timestamp() + 15 * 60;
    let text = format!("account={account}&deal={deal}&crm_user={crm_user}&exp={exp}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(text.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!("{base}/crm/card?{text}&sig={sig}")
}

async fn must(app: &TestApp, method: Method, path: &str, bearer: &str, body: Value) -> Value {
    let (s, v) = app.call(method, path, Some(bearer), Some(body)).await;
    assert!((200..300).contains(&s), "{path}: {s} {v}");
    v
}

/// POST with an `Idempotency-Key` (orders and payments want one).
async fn post_once(app: &TestApp, path: &str, bearer: &str, key: &str, body: Value) -> Value {
    let r = app
        .http
        .post(app.url(path))
        .bearer_auth(bearer)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{path}: {v}");
    v
}

/// The messages aiosmtpd's debugging handler printed, one string each.
fn smtp_messages(out: &str) -> Vec<String> {
    out.split("---------- MESSAGE FOLLOWS ----------")
        .skip(1)
        .map(|m| {
            m.split("------------ END MESSAGE ------------")
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A top-level header's value (the first line of it).
fn header(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .trim_start()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// A top-level header's value as a mail program shows it: unfolded, and its RFC 2047 encoded
/// words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded. `None` when the header is missing or an
/// encoded word does not decode.
fn decoded_header(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let lines: Vec<&str> = message
        .trim_start()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.to_ascii_lowercase().starts_with(&prefix))?;
    let mut tokens: Vec<&str> = lines[start][prefix.len()..].split_whitespace().collect();
    for l in lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with([' ', '\t']))
    {
        tokens.extend(l.split_whitespace());
    }
    // Adjacent encoded words join without the space between them (RFC 2047 §6.2); their bytes
    // are decoded together, as a character may be split across two of them.
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut last_encoded = false;
    for t in tokens {
        if let Some(bytes) = encoded_word(t) {
            if !last_encoded && !out.is_empty() {
                out.push(' ');
            }
            pending.extend(bytes?);
            last_encoded = true;
        } else {
            out.push_str(&String::from_utf8(std::mem::take(&mut pending)).ok()?);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(t);
            last_encoded = false;
        }
    }
    out.push_str(&String::from_utf8(pending).ok()?);
    Some(out)
}

/// The bytes of one RFC 2047 encoded word in UTF-8; `None` when `word` is no encoded word,
/// `Some(None)` when it is one that does not decode.
fn encoded_word(word: &str) -> Option<Option<Vec<u8>>> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    if !charset.eq_ignore_ascii_case("utf-8") {
        return Some(None);
    }
    Some(match encoding {
        "b" | "B" => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        "q" | "Q" => Some(quoted_printable(&text.replace('_', " "))),
        _ => None,
    })
}

/// The decoded `text/plain` part of a (possibly multipart) message.
fn plain_text(message: &str) -> Option<String> {
    let lines: Vec<&str> = message.lines().collect();
    let start = lines.iter().position(|l| {
        l.to_ascii_lowercase()
            .starts_with("content-type: text/plain")
    })?;
    let mut encoding = String::new();
    let mut i = start;
    while i < lines.len() && !lines[i].trim().is_empty() {
        let l = lines[i].to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-transfer-encoding:") {
            encoding = v.trim().to_owned();
        }
        i += 1;
    }
    let body: Vec<&str> = lines[i..]
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with("--"))
        .copied()
        .collect();
    let bytes = match encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.concat().trim())
            .ok()?,
        "quoted-printable" => quoted_printable(&body.join("\n")),
        _ => body.join("\n").into_bytes(),
    };
    String::from_utf8(bytes).ok()
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Seconds of `talked 1m 05s` / `talked 1h 02m 05s` on the participant's line of a summary text.
fn talked_secs(summary: &str, name: &str) -> Option<u64> {
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("- {name} (")))?;
    let t = line.split("talked ").nth(1)?;
    let mut secs = 0;
    for part in t.split_whitespace() {
        let (n, unit) = part.split_at(part.len() - 1);
        let n: u64 = n.parse().ok()?;
        secs += match unit {
            "h" => n * 3600,
            "m" => n * 60,
            "s" => n,
            _ => return None,
        };
    }
    Some(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_card_meeting_ends_with_note_task_email_and_signed_webhooks() {
    let root = root();
    require_browser_tools(&root);
    let smtp = SmtpSink::start()
        .await
        .expect("aiosmtpd is needed for the whole-flow test: run scripts/test.sh");
    let amo = AmoStandIn::start(REFRESH).await;

    // The server on a port known beforehand: the links it hands out carry its public URL.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (public, smtp_port) = (base.clone(), smtp.port);
    let mut app = TestApp::spawn_with(move |cfg| {
        cfg.http_addr = ([127, 0, 0, 1], port).into();
        cfg.public_url = public;
        cfg.smtp_url = Some(Secret::new(format!("smtp://127.0.0.1:{smtp_port}")));
        cfg.smtp_from = "Parley <no-reply@parley.test>".into();
        // Licensing's "today" must be inside the lot; a fixed date keeps it stable.
        cfg.licensing_clock = Some(LicensingClock::new(
            NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        ));
        cfg.outbox_base_delay = Duration::from_millis(100);
        cfg.outbox_max_delay = Duration::from_secs(1);
        cfg.crm_timeout = Duration::from_secs(5);
    })
    .await;
    assert_eq!(app.base, base);

    // The operator sells the account a tariff that sends results to recipients.
    must(
        &app,
        Method::PUT,
        "/api/v1/tariffs/business-12",
        ADMIN_TOKEN,
        json!({"name": "Business", "term_months": 12, "price_per_seat": "12000.00",
            "features": {"max_participants": 10, "max_meeting_minutes": 240,
                "recording": {"storage_quota_mb": 1024, "retention_days": 30},
                "sdk_embedding": true, "results_to_recipients": true, "screen_share": true}}),
    )
    .await;
    let v = must(
        &app,
        Method::POST,
        "/api/v1/accounts",
        ADMIN_TOKEN,
        json!({"name": "ООО Ромашка", "kind": "legal_entity", "inn": "7707083893",
            "resident": true, "crm_system": "amocrm", "crm_external_id": "WHOLE-FLOW",
            "address": "Москва"}),
    )
    .await;
    let (account, key) = (str_of(&v["account"], "id"), str_of(&v["api_key"], "bearer"));
    let order = post_once(
        &app,
        &format!("/api/v1/accounts/{account}/orders"),
        &key,
        "whole-flow-order",
        json!({"type": "initial", "tariff": "business-12", "seats": 2}),
    )
    .await;
    let invoice = &order["invoice"];
    let paid = post_once(
        &app,
        &format!(
            "/api/v1/accounts/{account}/invoices/{}/payments",
            str_of(invoice, "id")
        ),
        ADMIN_TOKEN,
        "whole-flow-pay",
        json!({"method": "bank_transfer", "amount": invoice["amount"]}),
    )
    .await;
    let lot = str_of(&paid, "lot_id");

    // The account's admin: the rep with a seat, amoCRM connected (its web origin is where the
    // card may be framed), the rep's amoCRM user linked, the card secret, a webhook endpoint.
    let v = must(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/invitations"),
        &key,
        json!({"email": REP_EMAIL, "role": "member", "display_name": REP_NAME}),
    )
    .await;
    let rep_user = str_of(&v["user"], "id");
    must(
        &app,
        Method::PUT,
        &format!("/api/v1/accounts/{account}/users/{rep_user}/seat"),
        &key,
        json!({"lot_id": lot}),
    )
    .await;
    must(
        &app,
        Method::PUT,
        &format!("/api/v1/accounts/{account}/crm"),
        &key,
        json!({"kind": "amocrm", "frame_origin": amo.base_url,
            "settings": {"base_url": amo.base_url, "client_id": AMO_CLIENT_ID,
                "client_secret": AMO_CLIENT_SECRET, "redirect_uri": AMO_REDIRECT_URI,
                "access_token": "expired-access-token", "refresh_token": REFRESH}}),
    )
    .await;
    must(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/crm/users"),
        &key,
        json!({"crm_user_id": CRM_USER, "user_id": rep_user}),
    )
    .await;
    let card = must(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/crm/card-secret"),
        &key,
        json!({}),
    )
    .await;
    assert_eq!(
        card["crm_origin"], amo.base_url,
        "the card's frame origin comes from the CRM connection"
    );
    let receiver = WebhookReceiver::start("unknown-until-registered").await;
    let hook = must(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/webhooks"),
        &key,
        json!({"url": receiver.url, "events": EVENTS}),
    )
    .await;
    let hook_secret = str_of(&hook, "secret");
    receiver.lock().secret = Some(hook_secret.clone());

    // The lead's page in amoCRM frames the signed launch, as the installed widget would.
    let deal = AMO_LEAD_ID.to_string();
    amo.lock().card_launch = Some(launch_url(
        &base,
        &account,
        &deal,
        CRM_USER,
        &str_of(&card, "secret"),
    ));

    // The people: the browser half.
    let artifacts = root.join("artifacts").join("whole-flow");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let args = json!({"crmPage": amo.lead_page_url(), "repName": REP_NAME,
        "clientName": CLIENT_NAME, "talkMs": 3000});
    let child = tokio::process::Command::new("node")
        .arg(root.join("tests/e2e/drivers/whole_flow.mjs"))
        .arg(args.to_string())
        .current_dir(&root)
        .env("PARLEY_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(DRIVER_DEADLINE, child.wait_with_output())
        .await
        .expect("the browser driver did not finish in time")
        .expect("the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success() && seen["ok"] == true,
        "the browser half failed ({}): {}\n--- driver log ---\n{stderr}\n(screenshots in {})",
        out.status,
        seen["error"],
        artifacts.display()
    );

    // What the rep saw on the card: the deal and its contacts, read from amoCRM.
    assert_eq!(
        seen["card"]["title"], "Поставка CRM-лицензий ACME",
        "{seen}"
    );
    let meta = seen["card"]["meta"].as_str().unwrap_or_default();
    assert!(
        meta.contains(&format!("Deal {deal}")) && meta.contains(REP_NAME),
        "{meta}"
    );
    let contacts: Vec<(String, String)> = seen["card"]["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| (str_of(c, "name"), str_of(c, "email")))
        .collect();
    // The main contact first, with the work address.
    let expected = [
        ("Анна Смирнова", "anna@acme.example"),
        ("Пётр Иванов", "petr@acme.example"),
    ];
    assert_eq!(
        contacts,
        expected.map(|(n, e)| (n.to_owned(), e.to_owned())),
        "{seen}"
    );
    let invitation = seen["invitation"]["text"].as_str().unwrap_or_default();
    for (name, email) in expected {
        assert!(
            invitation.contains(&format!("{name} <{email}>")),
            "{invitation}"
        );
    }
    let title = invitation
        .split("meeting \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("the meeting's title in the invitation")
        .to_owned();
    // "Start now" titles the meeting after the deal, as the CRM names it.
    assert_eq!(title, "Поставка CRM-лицензий ACME", "{invitation}");
    let meeting = str_of(&seen["meeting"], "id");
    assert_eq!(seen["rep"]["role"], "host");
    assert_eq!(seen["client"]["role"], "guest");
    for side in ["repSeesClient", "clientSeesRep"] {
        assert!(
            seen["media"][side]["framesDecoded"].as_u64() > Some(0),
            "{seen}"
        );
        assert!(
            seen["media"][side]["audioBytes"].as_u64() > Some(0),
            "{seen}"
        );
    }
    assert_eq!(seen["ended"]["client"], "The meeting has ended", "{seen}");

    // amoCRM: the summary on the lead's timeline and the follow-up task.
    let (note, task, refreshes) = wait_for("the note and the task at amoCRM", || async {
        let st = amo.lock();
        let note = st.notes.first().cloned()?;
        let task = st.tasks.first().cloned()?;
        Some((note, task, st.refreshes))
    })
    .await;
    assert!(refreshes >= 1, "the expired amoCRM token was refreshed");
    assert_eq!(note.0, AMO_LEAD_ID, "on the deal the card was opened for");
    let text = note.1["params"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.starts_with(&format!("Meeting: {title}\n")), "{text}");
    assert!(!text.contains("Meeting: Meeting"), "{text}");
    assert!(text.contains("Talk ratio: rep "), "{text}");
    for (name, side) in [(REP_NAME, "rep"), (CLIENT_NAME, "client")] {
        assert!(text.contains(&format!("- {name} ({side})")), "{text}");
        let talked = talked_secs(&text, name).unwrap_or_else(|| panic!("{name}: {text}"));
        assert!(
            talked > 0,
            "{name} talked, the note says {talked} s: {text}"
        );
    }
    assert_eq!(task["entity_type"], "leads");
    assert_eq!(task["entity_id"], AMO_LEAD_ID);
    assert!(
        task["text"].as_str().unwrap_or_default().contains(&title),
        "{task}"
    );
    {
        let st = amo.lock();
        assert_eq!((st.notes.len(), st.tasks.len()), (1, 1), "once per meeting");
    }

    // The summary email to each invited contact, with the meeting in it.
    let subject = format!("Meeting summary: {title}");
    let mails = wait_for("the summary email at the SMTP server", || async {
        let mails: Vec<String> = smtp_messages(&smtp.received())
            .into_iter()
            .filter(|m| decoded_header(m, "Subject").as_deref() == Some(subject.as_str()))
            .collect();
        let to: Vec<String> = mails.iter().filter_map(|m| header(m, "To")).collect();
        expected
            .iter()
            .all(|(_, e)| to.iter().any(|t| t.contains(e)))
            .then_some(mails)
    })
    .await;
    assert_eq!(mails.len(), 2, "one email per invited contact");
    for m in &mails {
        // The Cyrillic title travels MIME-encoded: the header itself is plain ASCII.
        let raw = header(m, "Subject").unwrap_or_default();
        assert!(raw.is_ascii() && raw.contains("=?"), "{raw}");
        let body = plain_text(m).unwrap_or_else(|| panic!("no text part: {m}"));
        for name in [REP_NAME, CLIENT_NAME] {
            assert!(body.contains(name), "{name} in the email: {body}");
        }
        assert!(body.contains("Talk ratio: rep "), "{body}");
    }

    // The customer's endpoint: the meeting's events, signed and fresh.
    let hooks = wait_for("the meeting's webhooks", || async {
        let st = receiver.lock();
        let got: Vec<_> = st
            .received
            .iter()
            .filter(|r| r.body["data"]["meeting_id"] == meeting.as_str())
            .cloned()
            .collect();
        let count = |t: &str| got.iter().filter(|r| r.body["type"] == t).count();
        (count("meeting.started") == 1
            && count("participant.joined") == 2
            && count("meeting.ended") == 1)
            .then_some(got)
    })
    .await;
    let now = Utc::now().timestamp();
    for h in &hooks {
        let stamp = h.timestamp.as_deref().unwrap_or_else(|| panic!("{h:?}"));
        assert_eq!(
            h.signature.as_deref(),
            Some(expected_signature(&hook_secret, stamp, &h.raw_body).as_str()),
            "signed with the endpoint's secret over timestamp and body: {h:?}"
        );
        let ts: i64 = stamp.parse().unwrap_or_else(|_| panic!("timestamp: {h:?}"));
        assert!((now - ts).abs() < 300, "a fresh timestamp: {ts} vs {now}");
        assert_eq!(h.body["account_id"], account.as_str());
    }
    let mut joined: Vec<(String, String)> = hooks
        .iter()
        .filter(|h| h.body["type"] == "participant.joined")
        .map(|h| {
            (
                str_of(&h.body["data"], "display_name"),
                str_of(&h.body["data"], "role"),
            )
        })
        .collect();
    joined.sort();
    assert_eq!(
        joined,
        vec![
            (REP_NAME.to_owned(), "host".to_owned()),
            (CLIENT_NAME.to_owned(), "guest".to_owned()),
        ]
    );

    // The deal card showed the summary itself (with its own session), both people in it.
    let shown = &seen["cardSummary"];
    assert_eq!(shown["title"], title.as_str(), "{shown}");
    assert!(
        shown["ratio"]
            .as_str()
            .is_some_and(|r| r.starts_with("Talk ratio: rep ")),
        "{shown}"
    );
    let people: Vec<(String, String)> = shown["participants"]
        .as_array()
        .expect("participants on the card")
        .iter()
        .map(|p| (str_of(p, "name"), str_of(p, "side")))
        .collect();
    assert_eq!(
        people,
        [(REP_NAME, "rep"), (CLIENT_NAME, "client")].map(|(n, s)| (n.to_owned(), s.to_owned())),
        "{shown}"
    );

    // The account's view of the summary agrees.
    let (s, summary) = app
        .get_json(&format!("/api/v1/meetings/{meeting}/summary"), Some(&key))
        .await;
    assert_eq!(s, 200, "{summary}");
    assert_eq!(summary["emailed_to"], 2);
    assert!(summary["talk_ratio"]["rep_share"].is_f64(), "{summary}");

    app.shutdown().await;
    smtp.stop().await;
}
