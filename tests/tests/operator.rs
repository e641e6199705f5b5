//! The platform operator's console API, black-box: operator sessions (the token traded for an
//! expiring, revocable session), the account list with search and pages, bank payments with
//! their reference and grant deadline, the termination preview (the refund shown before
//! confirming is the refund recorded), and the node's load with the meetings live on it.
//!
//! Every account is made through the public API by the shared fixture (licensing "today" is
//! 2026-03-01; A holds lots of 20 and 1 seats, B of 5 and 1, all 2026-03-01 .. 2027-03-01).

use std::time::Duration;

use chrono::NaiveDate;
use parley_signaling::configuration::Secret;
use parley_signaling::users::UsersClock;
use parley_tests::fixtures::Fixture;
use parley_tests::{ADMIN_TOKEN, TestApp, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const TODAY: &str = "2026-03-01";

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// Opens an operator session with the token; returns the session token.
async fn session(f: &Fixture) -> String {
    let v = f
        .must(
            201,
            Method::POST,
            "/api/v1/operator/sessions",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    let token = str_of(&v, "token");
    assert!(token.starts_with("op_"), "{v}");
    assert_ne!(token, ADMIN_TOKEN);
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_session_acts_as_the_operator_until_it_ends() {
    let clock = UsersClock::new();
    let c = clock.clone();
    let mut f = Fixture::spawn_with(move |cfg| cfg.users_clock = Some(c)).await;
    let op = session(&f).await;

    // It does what the operator token does: operator-only calls, any account, the meeting list.
    f.must(200, Method::GET, "/api/v1/accounts", Some(&op), None)
        .await;
    f.must(
        200,
        Method::GET,
        &format!("/api/v1/accounts/{}/lots", f.b.id),
        Some(&op),
        None,
    )
    .await;
    f.must(200, Method::GET, "/api/v1/meetings", Some(&op), None)
        .await;
    // But it cannot open sessions: only the token can, so a stolen session dies at its end.
    let (s, v) = f
        .call(Method::POST, "/api/v1/operator/sessions", Some(&op), None)
        .await;
    assert_eq!(s, 403, "{v}");
    // Nobody else opens one.
    for (who, bearer) in [
        ("A's key", Some(f.a.key.as_str())),
        ("A's admin", Some(f.a.admin.token.as_str())),
        ("a wrong token", Some("not-the-admin-token")),
        ("nobody", None),
    ] {
        let (s, v) = f
            .call(Method::POST, "/api/v1/operator/sessions", bearer, None)
            .await;
        let want = if who == "A's key" || who == "A's admin" {
            403
        } else {
            401
        };
        assert_eq!(s, want, "{who}: {v}");
    }

    // Used, it stays alive past the idle timeout; the absolute end comes after 8 hours anyway.
    let busy = session(&f).await;
    for step in 1..=24 {
        clock.advance(Duration::from_secs(20 * 60));
        let (s, v) = f
            .call(Method::GET, "/api/v1/operator/node", Some(&busy), None)
            .await;
        if step < 24 {
            assert_eq!(s, 200, "after {} minutes of use: {v}", step * 20);
        } else {
            assert_eq!(s, 401, "{v}");
            assert_eq!(v["error"]["code"], "session_expired");
        }
    }
    // `op` was not used in those 8 hours: long past its idle timeout.
    let (s, v) = f
        .call(Method::GET, "/api/v1/accounts", Some(&op), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (401, json!("session_expired"))
    );

    // Sign-out ends it at once; signing out with the token itself ends nothing.
    let op = session(&f).await;
    f.must(
        204,
        Method::DELETE,
        "/api/v1/operator/sessions/current",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    f.must(200, Method::GET, "/api/v1/accounts", Some(&op), None)
        .await;
    f.must(
        204,
        Method::DELETE,
        "/api/v1/operator/sessions/current",
        Some(&op),
        None,
    )
    .await;
    for path in [
        "/api/v1/accounts",
        "/api/v1/meetings",
        "/api/v1/operator/node",
    ] {
        let (s, v) = f.call(Method::GET, path, Some(&op), None).await;
        assert_eq!(s, 401, "{path} after sign-out: {v}");
        assert_eq!(v["error"]["code"], "invalid_session", "{path}");
    }
    // A made-up session is refused the same way.
    let forged = format!("op_{}", "a".repeat(43));
    let (s, v) = f
        .call(Method::GET, "/api/v1/accounts", Some(&forged), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (401, json!("invalid_session"))
    );
    f.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_operator_token_ends_the_old_sessions() {
    let mut app = TestApp::spawn().await;
    let (s, v) = app
        .call(
            Method::POST,
            "/api/v1/operator/sessions",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let op = str_of(&v, "token");
    let (s, _) = app.get_json("/api/v1/operator/node", Some(&op)).await;
    assert_eq!(s, 200);
    app.restart_with(|cfg| cfg.admin_token = Some(Secret::new("a-rotated-operator-token")))
        .await
        .expect("restart");
    let (s, v) = app.get_json("/api/v1/operator/node", Some(&op)).await;
    assert_eq!(s, 401, "a session of the old token: {v}");
    let (s, _) = app
        .get_json("/api/v1/operator/node", Some("a-rotated-operator-token"))
        .await;
    assert_eq!(s, 200);
    app.shutdown().await;
}

/// Every account of the list, page by page.
async fn all_pages(f: &Fixture, query: &str, limit: u32) -> (Vec<Value>, u64) {
    let mut items = Vec::new();
    let mut total = 0;
    for page in 0.. {
        let v = f
            .must(
                200,
                Method::GET,
                &format!(
                    "/api/v1/accounts?limit={limit}&offset={}{query}",
                    page * limit
                ),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        total = v["total"].as_u64().expect("total");
        let got = v["items"].as_array().expect("items").clone();
        assert!(got.len() <= limit as usize);
        let done = got.len() < limit as usize;
        items.extend(got);
        if done {
            break;
        }
    }
    (items, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_list_pages_and_searches() {
    let mut f = Fixture::spawn().await;
    let mut extra = Vec::new();
    for name in ["Лютик", "Василёк", "Buttercup LLC"] {
        let v = f
            .must(
                201,
                Method::POST,
                "/api/v1/accounts",
                Some(ADMIN_TOKEN),
                Some(json!({"name": name, "kind": "individual",
                    "crm_system": "amocrm", "crm_external_id": format!("crm-{}", f.unique())})),
            )
            .await;
        extra.push(str_of(&v["account"], "id"));
    }
    // Pages of two cover all five accounts once, newest first.
    let (items, total) = all_pages(&f, "", 2).await;
    assert_eq!(total, 5);
    let ids: Vec<String> = items.iter().map(|a| str_of(a, "id")).collect();
    let mut newest_first = extra.clone();
    newest_first.reverse();
    newest_first.extend([f.b.id.clone(), f.a.id.clone()]);
    assert_eq!(ids, newest_first);

    // What each holds today: A 20 + 1 seats, B 5 + 1, no invoice waiting.
    let a = items.iter().find(|x| x["id"] == f.a.id.as_str()).unwrap();
    assert_eq!(a["seats"], 21, "{a}");
    assert_eq!(a["unpaid_invoices"], 0);
    assert_eq!(a["crm"]["external_id"], "fixture-a");
    assert_eq!(a["inn"], "7707083893");
    assert_eq!(a["status"]["status"], "active");
    let b = items.iter().find(|x| x["id"] == f.b.id.as_str()).unwrap();
    assert_eq!(b["seats"], 6, "{b}");
    // An order waiting for its bank transfer shows.
    f.unpaid_order(&f.a).await;
    let (items, _) = all_pages(&f, "&q=fixture-a", 20).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["unpaid_invoices"], 1);

    // Search: any case of a Cyrillic name, the INN, the CRM id, the account id.
    let search = |q: &'static str| {
        let f = &f;
        async move {
            let (items, total) = all_pages(f, &format!("&q={}", urlencode(q)), 20).await;
            assert_eq!(total as usize, items.len());
            let mut ids: Vec<String> = items.iter().map(|a| str_of(a, "id")).collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![f.a.id.clone(), f.b.id.clone()];
    both.sort();
    assert_eq!(search("ромашка").await, both);
    assert_eq!(search("ООО РОМАШКА A").await, vec![f.a.id.clone()]);
    assert_eq!(search("7707083893").await, both);
    assert_eq!(search("AMOCRM").await.len(), 3);
    assert_eq!(search("василёк").await, vec![extra[1].clone()]);
    assert_eq!(search("nothing like it").await, Vec::<String>::new());
    let by_id = all_pages(&f, &format!("&q={}", f.b.id), 20).await.0;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["id"], f.b.id.as_str());

    // Bad pages and searches are refused; nobody but the operator lists accounts.
    for q in ["limit=0", "limit=101", "offset=-1", "limit=x", "colour=red"] {
        let (s, v) = f
            .call(
                Method::GET,
                &format!("/api/v1/accounts?{q}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(s, 400, "{q}: {v}");
    }
    let (s, v) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts?q={}", "x".repeat(101)),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 422, "{v}");
    for bearer in [&f.a.key, &f.a.admin.token, &f.b.key] {
        let (s, v) = f
            .call(Method::GET, "/api/v1/accounts", Some(bearer), None)
            .await;
        assert_eq!(s, 403, "{v}");
        assert!(!v.to_string().contains(&f.b.id), "{v}");
    }
    let (s, _) = f.call(Method::GET, "/api/v1/accounts", None, None).await;
    assert_eq!(s, 401);
    f.app.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_payment_grants_at_once_and_tells_whether_the_grant_was_late() {
    let mut f = Fixture::spawn().await;
    let acc = format!("/api/v1/accounts/{}", f.a.id);
    let pay = |invoice: String, body: Value| {
        let f = &f;
        let acc = acc.clone();
        async move {
            f.call(
                Method::POST,
                &format!("{acc}/invoices/{invoice}/payments"),
                Some(ADMIN_TOKEN),
                Some(body),
            )
            .await
        }
    };

    // Paid today: granted today, within the deadline (5 business days for an initial order).
    let (_, invoice, amount) = f.unpaid_order(&f.a).await;
    let (s, p) = pay(
        invoice.clone(),
        json!({"method": "bank_transfer", "amount": amount, "paid_on": TODAY,
            "reference": "  п/п № 1842  "}),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["reference"], "п/п № 1842");
    assert_eq!(p["granted_on"], TODAY);
    assert_eq!(p["granted_late"], false);
    let deadline = date(&str_of(&p, "grant_deadline"));
    assert!(deadline > date(TODAY), "{p}");
    // The lot is live for the account at once.
    let lots = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/lots"),
            Some(&f.a.key),
            None,
        )
        .await;
    let lot = lots
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == p["lot_id"])
        .unwrap_or_else(|| panic!("lot {} in {lots}", p["lot_id"]));
    assert_eq!(lot["status"], "active", "{lot}");
    // The account's payment list keeps the reference.
    let list = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/payments"),
            Some(&f.a.key),
            None,
        )
        .await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == p["id"])
        .unwrap();
    assert_eq!(listed["reference"], "п/п № 1842");

    // Money that arrived a month ago and is registered only now: granted late, visibly.
    let (_, invoice, amount) = f.unpaid_order(&f.a).await;
    let (s, p) = pay(
        invoice.clone(),
        json!({"method": "bank_transfer", "amount": amount, "paid_on": "2026-02-02"}),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["granted_late"], true, "{p}");
    assert!(date(&str_of(&p, "grant_deadline")) < date(TODAY), "{p}");
    assert_eq!(p["reference"], Value::Null);

    // A reference that is too long, or blank, is refused and nothing is paid.
    let (_, invoice, amount) = f.unpaid_order(&f.a).await;
    for reference in ["x".repeat(101), "   ".to_owned()] {
        let (s, v) = pay(
            invoice.clone(),
            json!({"method": "bank_transfer", "amount": amount, "reference": reference}),
        )
        .await;
        assert_eq!(s, 422, "{v}");
    }
    let invoice_now = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/invoices/{invoice}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(invoice_now["status"], "issued", "{invoice_now}");
    f.app.shutdown().await;
}

/// The spec's rule (8.3.3), from what B paid: Σ paid × unexpired days / lot days, rounded half
/// up to kopecks once at the end. Integer kopecks keep it exact.
fn expected_refund(paid: &[(i64, NaiveDate, NaiveDate)], effective: NaiveDate) -> String {
    // Sum of fractions kopecks × unexpired / days over a common denominator.
    let denominator: i128 = paid
        .iter()
        .map(|(_, s, e)| (*e - *s).num_days() as i128)
        .product();
    let numerator: i128 = paid
        .iter()
        .map(|(k, s, e)| {
            let days = (*e - *s).num_days() as i128;
            let unexpired = (*e - effective.max(*s)).num_days().clamp(0, days as i64) as i128;
            *k as i128 * unexpired * (denominator / days)
        })
        .sum();
    let kopecks = (2 * numerator + denominator) / (2 * denominator);
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_termination_preview_is_the_refund_the_termination_records() {
    let mut f = Fixture::spawn().await;
    let acc = format!("/api/v1/accounts/{}", f.b.id);
    let preview = |body: Value| {
        let f = &f;
        let acc = acc.clone();
        async move {
            f.call(
                Method::POST,
                &format!("{acc}/termination/preview"),
                Some(ADMIN_TOKEN),
                Some(body),
            )
            .await
        }
    };
    // What B paid, for which dates (its lots' dates).
    let payments = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/payments"),
            Some(&f.b.key),
            None,
        )
        .await;
    let lots = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/lots"),
            Some(&f.b.key),
            None,
        )
        .await;
    let paid: Vec<(i64, NaiveDate, NaiveDate)> = payments
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let lot = lots
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["id"] == p["lot_id"])
                .unwrap();
            let amount = str_of(p, "amount").replace('.', "");
            (
                amount.parse().unwrap(),
                date(&str_of(lot, "starts_on")),
                date(&str_of(lot, "ends_on")),
            )
        })
        .collect();
    assert_eq!(paid.len(), 2, "{payments}");

    // Provider termination on 2026-10-16 (notice today, 229 days ahead).
    let body = json!({"kind": "provider", "effective_on": "2026-10-16"});
    let (s, shown) = preview(body.clone()).await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["refund"], expected_refund(&paid, date("2026-10-16")));
    assert_eq!(shown["effective_on"], "2026-10-16");
    assert_eq!(shown["notice_on"], TODAY);
    assert!(date(&str_of(&shown, "refund_due_on")) > date("2026-10-16"));
    // Previewing changed nothing: same lots, no refund, still active; asking twice is the same.
    let (_, again) = preview(body.clone()).await;
    assert_eq!(again, shown);
    let lots_after = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/lots"),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(lots_after, lots);
    let refunds = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/refunds"),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(refunds, json!([]));

    // Less than 45 days' notice is refused, naming the earliest date; breach refunds nothing.
    let (s, v) = preview(json!({"kind": "provider", "effective_on": "2026-04-01"})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "notice_too_short");
    let (s, v) = preview(json!({"kind": "breach"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["refund"].clone(), v["refund_due_on"].clone()),
        (json!("0.00"), Value::Null)
    );
    // The preview is the operator's, like the termination.
    for bearer in [&f.b.key, &f.b.admin.token] {
        let (s, _) = f
            .call(
                Method::POST,
                &format!("{acc}/termination/preview"),
                Some(bearer),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, 403);
    }

    // Confirming records exactly what was shown.
    let done = f
        .must(
            200,
            Method::POST,
            &format!("{acc}/termination"),
            Some(ADMIN_TOKEN),
            Some(body),
        )
        .await;
    assert_eq!(done, shown);
    let refunds = f
        .must(
            200,
            Method::GET,
            &format!("{acc}/refunds"),
            Some(&f.b.key),
            None,
        )
        .await;
    assert_eq!(refunds[0]["amount"], shown["refund"], "{refunds}");
    assert_eq!(refunds[0]["due_on"], shown["refund_due_on"]);
    let (_, list) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts?q={}", f.b.id),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(list["items"][0]["terminates_on"], "2026-10-16", "{list}");
    f.app.shutdown().await;
}

#[test]
fn the_refund_rule_of_the_test_matches_worked_example_7() {
    // Paid 120 000.00 for 2026-03-01 .. 2027-03-01, ended 2026-10-16: 44 712.33.
    let paid = [(12_000_000, date("2026-03-01"), date("2027-03-01"))];
    assert_eq!(expected_refund(&paid, date("2026-10-16")), "44712.33");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_shows_its_load_and_the_meetings_live_on_it() {
    let mut f = Fixture::spawn().await;
    let live = |limit: u32| {
        let f = &f;
        async move {
            f.must(
                200,
                Method::GET,
                &format!("/api/v1/operator/meetings?limit={limit}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await
        }
    };
    let meeting = f.a.meeting.id.clone();
    let (mut first, _) = f.participant(&f.a.meeting, "Анна").await;
    let (mut second, _) = f.participant(&f.a.meeting, "Борис").await;
    let (mut other, _) = f.participant(&f.b.meeting, "Вера").await;
    let v = live(20).await;
    assert_eq!(v["total"], 2, "{v}");
    let m = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == meeting.as_str())
        .unwrap_or_else(|| panic!("A's meeting in {v}"));
    assert_eq!(m["participants"], 2, "{m}");
    assert_eq!(m["account_id"], f.a.id.as_str());
    assert_eq!(m["account_name"], "ООО Ромашка a");
    assert_eq!(m["title"], "Demo for a");
    assert_eq!(m["recording"], false);
    assert!(m["started_at"].is_string(), "{m}");
    // Pages of one.
    let page = live(1).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], 2);

    // A recording shows.
    let rec = format!("/api/v1/meetings/{meeting}/recording");
    f.must(201, Method::POST, &rec, Some(&f.a.meeting.host_key), None)
        .await;
    let v = live(20).await;
    let m = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == meeting.as_str())
        .unwrap();
    assert_eq!(m["recording"], true, "{m}");
    f.must(200, Method::DELETE, &rec, Some(&f.a.meeting.host_key), None)
        .await;

    // The node counts the people in and reads its own process.
    let node = f
        .must(
            200,
            Method::GET,
            "/api/v1/operator/node",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(
        node["signaling"]["participants"].as_u64().unwrap() >= 3,
        "{node}"
    );
    assert!(
        node["signaling"]["meetings_active"].as_u64().unwrap() >= 2,
        "{node}"
    );
    assert!(
        node["signaling"]["ws_connections"].as_u64().unwrap() >= 3,
        "{node}"
    );
    assert!(node["host"]["cpus"].as_u64().unwrap() >= 1);
    if cfg!(target_os = "linux") {
        assert!(
            node["process"]["memory_rss_bytes"].as_u64().unwrap() > 0,
            "{node}"
        );
        assert!(
            node["process"]["cpu_seconds"].as_f64().unwrap() > 0.0,
            "{node}"
        );
        assert!(node["uptime_seconds"].is_u64(), "{node}");
    }
    for key in ["packets_out", "bytes_out", "rooms", "participants"] {
        assert!(node["media"][key].is_u64(), "{key}: {node}");
    }

    // Everyone leaves A's meeting: it is no longer live.
    for socket in [&mut first, &mut second] {
        socket.send(json!({"type": "leave"})).await;
        socket.expect_close().await;
    }
    wait_for("A's meeting no longer live", || async {
        let v = live(20).await;
        (v["total"] == 1 && v["items"][0]["id"] == f.b.meeting.id.as_str()).then_some(())
    })
    .await;

    // The operator's alone.
    for path in ["/api/v1/operator/meetings", "/api/v1/operator/node"] {
        for bearer in [&f.a.key, &f.a.admin.token, &f.a.member.token] {
            let (s, _) = f.call(Method::GET, path, Some(bearer), None).await;
            assert_eq!(s, 403, "{path}");
        }
        let (s, _) = f.call(Method::GET, path, None, None).await;
        assert_eq!(s, 401, "{path}");
    }
    other.send(json!({"type": "leave"})).await;
    other.expect_close().await;
    f.app.shutdown().await;
}
