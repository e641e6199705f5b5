//! The admin console's credential, black-box: an account admin's session cookie runs the
//! account's licensing (where the account's API key may, audited as the admin) and oversees
//! its meetings; a member's session may do neither beyond the meetings they host; nobody
//! learns about another account's things; and a meeting tells a caller without any credential
//! 401 whether or not it exists. The authorization table (tests/tests/authorization.rs) checks
//! every endpoint with bearer sessions; this suite follows the console's own path (the
//! `parley_session` cookie) through what happens after the status code.

use parley_tests::fixtures::{Fixture, TARIFF};
use parley_tests::{ADMIN_TOKEN, str_of};
use reqwest::Method;
use serde_json::{Value, json};

/// A call as the browser makes it: the session in the `parley_session` cookie (or nothing).
async fn browser(
    f: &Fixture,
    method: Method,
    path: &str,
    session: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = f.app.http.request(method.clone(), f.app.url(path));
    if method != Method::GET {
        req = req.header("Idempotency-Key", format!("console-{}", f.unique()));
    }
    if let Some(token) = session {
        req = req.header("Cookie", format!("theme=dark; parley_session={token}"));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The account's audit entries with `action`, newest first (read with the account's key).
async fn audited(f: &Fixture, action: &str) -> Vec<Value> {
    let v = f
        .must(
            200,
            Method::GET,
            &format!("/api/v1/accounts/{}/audit?limit=200", f.a.id),
            Some(&f.a.key),
            None,
        )
        .await;
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// An error's code and message with `ids` blanked: what tells two 404s apart.
fn shape(status: u16, v: &Value, ids: &[&str]) -> String {
    let mut message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for id in ids {
        message = message.replace(id, "<id>");
    }
    format!("{status} {} {message}", v["error"]["code"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_session_runs_its_account_licensing_and_a_member_session_does_not() {
    let mut f = Fixture::spawn().await;
    let (a, b) = (&f.a, &f.b);
    let admin = a.admin.token.as_str();
    let acc = format!("/api/v1/accounts/{}", a.id);

    // The console reads the account's lots, and prices exactly as the account's key does.
    let (s, lots) = browser(&f, Method::GET, &format!("{acc}/lots"), Some(admin), None).await;
    assert_eq!(s, 200, "{lots}");
    assert!(lots.to_string().contains(&a.lot), "{lots}");
    let order = json!({"type": "initial", "tariff": TARIFF, "seats": 2});
    let (s, by_admin) = browser(
        &f,
        Method::POST,
        &format!("{acc}/quotes"),
        Some(admin),
        Some(order.clone()),
    )
    .await;
    assert_eq!(s, 200, "{by_admin}");
    let (_, by_key) = f
        .call(
            Method::POST,
            &format!("{acc}/quotes"),
            Some(&a.key),
            Some(order.clone()),
        )
        .await;
    assert_eq!(by_admin, by_key);

    // It orders and gives a seat; the audit log names the admin, not a key.
    let (s, placed) = browser(
        &f,
        Method::POST,
        &format!("{acc}/orders"),
        Some(admin),
        Some(order),
    )
    .await;
    assert_eq!(s, 201, "{placed}");
    let order_id = str_of(&placed["order"], "id");
    let invoice = str_of(&placed["invoice"], "id");
    let seat_user = format!("crm-{}", f.unique());
    let (s, seat) = browser(
        &f,
        Method::POST,
        &format!("{acc}/lots/{}/seats", a.lot),
        Some(admin),
        Some(json!({"user_id": seat_user})),
    )
    .await;
    assert_eq!(s, 201, "{seat}");
    for (action, target) in [("order.place", &order_id), ("seat.assign", &seat_user)] {
        let entries = audited(&f, action).await;
        let entry = entries
            .iter()
            .find(|e| e["target_id"] == target.as_str())
            .unwrap_or_else(|| panic!("no {action} of {target}: {entries:?}"));
        assert_eq!(entry["actor_kind"], "user", "{entry}");
        assert_eq!(entry["actor_id"], a.admin.id.as_str(), "{entry}");
    }

    // The operator's business stays the operator's: the admin's tries change nothing.
    let (s, v) = browser(
        &f,
        Method::POST,
        &format!("{acc}/invoices/{invoice}/payments"),
        Some(admin),
        Some(json!({"method": "bank_transfer", "amount": placed["invoice"]["amount"]})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = browser(
        &f,
        Method::POST,
        &format!("{acc}/suspension"),
        Some(admin),
        Some(json!({"reason": "mine"})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = browser(
        &f,
        Method::PUT,
        &format!("/api/v1/tariffs/{TARIFF}"),
        Some(admin),
        Some(
            json!({"name": "Cheap", "term_months": 12, "price_per_seat": "1.00",
            "features": {"max_participants": 5, "max_meeting_minutes": 60}}),
        ),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (_, order_now) = f
        .call(
            Method::GET,
            &format!("{acc}/orders/{order_id}"),
            Some(&a.key),
            None,
        )
        .await;
    assert!(order_now["order"]["status"].is_string(), "{order_now}");
    assert_eq!(order_now["order"]["status"], placed["order"]["status"]);
    let (_, account_now) = f.call(Method::GET, &acc, Some(&a.key), None).await;
    assert_eq!(account_now["status"]["status"], "active", "{account_now}");
    let (_, tariff_now) = f
        .call(
            Method::GET,
            &format!("/api/v1/tariffs/{TARIFF}"),
            None,
            None,
        )
        .await;
    assert_ne!(tariff_now["name"], "Cheap");

    // Another account is, to this admin, an account that does not exist.
    let missing = uuid::Uuid::new_v4().to_string();
    let (s_b, v_b) = browser(
        &f,
        Method::GET,
        &format!("/api/v1/accounts/{}/lots", b.id),
        Some(admin),
        None,
    )
    .await;
    let (s_none, v_none) = browser(
        &f,
        Method::GET,
        &format!("/api/v1/accounts/{missing}/lots"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(s_b, 404, "{v_b}");
    let ids = [b.id.as_str(), missing.as_str()];
    assert_eq!(shape(s_b, &v_b, &ids), shape(s_none, &v_none, &ids));

    // A member is refused the account's licensing, and finds their own seat in /me.
    let member = a.member.token.as_str();
    for (method, path, body) in [
        (Method::GET, format!("{acc}/lots"), None),
        (Method::GET, format!("{acc}/invoices"), None),
        (
            Method::POST,
            format!("{acc}/quotes"),
            Some(json!({"type": "initial", "tariff": TARIFF, "seats": 1})),
        ),
    ] {
        let (s, v) = browser(&f, method, &path, Some(member), body).await;
        assert_eq!(s, 403, "{path}: {v}");
    }
    let (s, me) = browser(&f, Method::GET, "/api/v1/me", Some(member), None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["seat_lot_id"], a.lot.as_str(), "{me}");

    // Signed out, the cookie is nobody's: 401, and nothing of the account shows.
    let (s, _) = browser(&f, Method::POST, "/api/v1/auth/sign-out", Some(admin), None).await;
    assert!((200..300).contains(&s), "sign-out: {s}");
    let (s, v) = browser(&f, Method::GET, &format!("{acc}/lots"), Some(admin), None).await;
    assert_eq!(s, 401, "{v}");
    assert!(!v.to_string().contains(&a.lot), "{v}");
    f.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_answer_their_host_user_and_their_account_admins() {
    let mut f = Fixture::spawn().await;
    let (a, b) = (&f.a, &f.b);
    let meeting = format!("/api/v1/meetings/{}", a.meeting.id);
    let (mut socket, pid) = f.participant(&a.meeting, "Ivan").await;

    // Without any credential, a real meeting and a made-up one answer alike: 401.
    let made_up = "/api/v1/meetings/zzzzzzzzzzzz";
    for (method, tail, body) in [
        (Method::GET, String::new(), None),
        (Method::GET, "/chat".to_owned(), None),
        (Method::GET, "/participants".to_owned(), None),
        (Method::POST, "/end".to_owned(), None),
        (
            Method::POST,
            format!("/participants/{pid}/mute"),
            Some(json!({"source": "microphone"})),
        ),
        (Method::DELETE, format!("/participants/{pid}"), None),
        (
            Method::POST,
            "/join".to_owned(),
            Some(json!({"display_name": "Nobody"})),
        ),
    ] {
        let (real, none) = (format!("{meeting}{tail}"), format!("{made_up}{tail}"));
        let (s_real, v_real) = browser(&f, method.clone(), &real, None, body.clone()).await;
        let (s_none, v_none) = browser(&f, method.clone(), &none, None, body).await;
        assert_eq!(
            (s_real, s_none),
            (401, 401),
            "{method} {tail}: {v_real} {v_none}"
        );
        assert_eq!(v_real, v_none, "{method} {tail}");
    }

    // A member who does not host it may neither read, nor oversee, nor end it.
    let bystander = f.sign_in(&a.spare.email).await;
    for (method, tail) in [
        (Method::GET, ""),
        (Method::GET, "/chat"),
        (Method::GET, "/participants"),
        (Method::POST, "/end"),
    ] {
        let path = format!("{meeting}{tail}");
        let (s, v) = browser(&f, method, &path, Some(&bystander.token), None).await;
        assert_eq!(s, 403, "{path}: {v}");
    }

    // Its host user reads it with the session alone, and mutes like the host key does.
    let (s, info) = browser(&f, Method::GET, &meeting, Some(&a.member.token), None).await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["id"], a.meeting.id.as_str());
    let (s, v) = browser(
        &f,
        Method::POST,
        &format!("{meeting}/participants/{pid}/mute"),
        Some(&a.member.token),
        Some(json!({"source": "microphone"})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    socket
        .expect_where("mute_request", |m| m["source"] == "microphone")
        .await;

    // The admin console oversees it: participants and chat, but no host controls.
    let admin = a.admin.token.as_str();
    let (s, people) = browser(
        &f,
        Method::GET,
        &format!("{meeting}/participants"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(s, 200, "{people}");
    assert!(
        people.as_array().is_some_and(|l| l
            .iter()
            .any(|p| p["participant_id"] == pid.as_str() && p["present"] == true)),
        "{people}"
    );
    let (s, chat) = browser(
        &f,
        Method::GET,
        &format!("{meeting}/chat"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(s, 200, "{chat}");
    let (s, v) = browser(
        &f,
        Method::DELETE,
        &format!("{meeting}/participants/{pid}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");

    // Another account's key and admin: the 404 of a meeting that does not exist.
    let (s_none, v_none) = f
        .call(Method::POST, &format!("{made_up}/end"), Some(&b.key), None)
        .await;
    for who in [b.key.as_str(), b.admin.token.as_str()] {
        let (s, v) = f
            .call(Method::POST, &format!("{meeting}/end"), Some(who), None)
            .await;
        let ids = [a.meeting.id.as_str(), "zzzzzzzzzzzz"];
        assert_eq!(shape(s, &v, &ids), shape(s_none, &v_none, &ids));
        assert_eq!(s, 404, "{v}");
    }
    let (_, still) = f
        .call(Method::GET, &meeting, Some(&a.meeting.host_key), None)
        .await;
    assert!(still["ended_at"].is_null(), "{still}");

    // The admin ends it: the participant is told, and the log says who read and who ended.
    let (s, v) = browser(
        &f,
        Method::POST,
        &format!("{meeting}/end"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let closed = socket.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (4001, "meeting ended")
    );
    let (_, ended) = f
        .call(Method::GET, &meeting, Some(&a.meeting.host_key), None)
        .await;
    assert!(ended["ended_at"].is_string(), "{ended}");
    for action in ["chat.read", "meeting.end"] {
        let entries = audited(&f, action).await;
        assert!(
            entries.iter().any(|e| e["actor_kind"] == "user"
                && e["actor_id"] == a.admin.id.as_str()
                && e["target_id"] == a.meeting.id.as_str()),
            "{action}: {entries:?}"
        );
    }
    // The operator oversees any meeting.
    let (s, _) = f
        .call(
            Method::GET,
            &format!("{meeting}/participants"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 200);
    f.app.shutdown().await;
}
