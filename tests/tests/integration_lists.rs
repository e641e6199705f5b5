//! The lists behind the admin console's integration pages, black-box: the delivery log (the
//! account's outbox) paged with its masked recipients, the audit log filtered by action and by
//! Moscow day, recordings paged with their total, the CRM-user links and the card secret's
//! status (never the secret), and API keys paged.

use chrono::{Duration, FixedOffset, Utc};
use parley_tests::fixtures::{AccountFixture, Fixture};
use parley_tests::{ADMIN_TOKEN, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

async fn get(f: &Fixture, path: &str, bearer: &str) -> Value {
    f.must(200, Method::GET, path, Some(bearer), None).await
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|m| str_of(m, "id"))
        .collect()
}

/// Pays one more one-seat order: one more `order.paid` event for the dead webhook endpoint.
async fn one_more_failed_message(f: &Fixture, acc: &AccountFixture) {
    let (_, invoice, amount) = f.unpaid_order(acc).await;
    f.pay(acc, &invoice, &amount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_log_pages_and_masks_recipients() {
    let f = Fixture::spawn().await;
    let a = &f.a;
    let outbox = |q: &str| format!("/api/v1/accounts/{}/outbox{q}", a.id);
    // The fixture's failed message and two more.
    one_more_failed_message(&f, a).await;
    one_more_failed_message(&f, a).await;
    let all_failed = wait_for("three failed webhook messages", || async {
        let (_, v) = f
            .call(
                Method::GET,
                &outbox("?status=failed"),
                Some(&a.admin.token),
                None,
            )
            .await;
        (v.as_array().map(Vec::len) == Some(3)).then_some(v)
    })
    .await;
    for m in all_failed.as_array().expect("list") {
        assert_eq!(m["kind"], "customer_webhook");
        assert_eq!(m["payload"]["type"], "order.paid");
        // The endpoint is http://127.0.0.1:9/hook-a: its path is masked.
        assert_eq!(m["recipient"], "http://127.0.0.1:9/…", "{m}");
        assert!(m["last_error"].is_string(), "{m}");
    }

    // Two pages of two: the same messages, newest first, none twice.
    let p1 = get(&f, &outbox("?status=failed&limit=2"), &a.admin.token).await;
    let p2 = get(
        &f,
        &outbox("?status=failed&limit=2&offset=2"),
        &a.admin.token,
    )
    .await;
    let p3 = get(
        &f,
        &outbox("?status=failed&limit=2&offset=4"),
        &a.admin.token,
    )
    .await;
    assert_eq!((ids(&p1).len(), ids(&p2).len(), ids(&p3).len()), (2, 1, 0));
    let paged: Vec<String> = ids(&p1).into_iter().chain(ids(&p2)).collect();
    assert_eq!(paged, ids(&all_failed));

    // `all` holds the invitation emails too (delivered), their addresses masked.
    let all = get(&f, &outbox("?status=all"), &a.key).await;
    let emails: Vec<&Value> = all
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| m["kind"] == "email")
        .collect();
    assert!(
        emails
            .iter()
            .any(|m| m["recipient"] == "a***@a.example" && m["status"] == "delivered"),
        "the admin's invitation, masked: {all}"
    );
    assert!(
        !all.to_string().contains("admin@a.example"),
        "no address in clear: {all}"
    );
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(ids(&all_failed).len() + emails.len())
    );

    for q in ["?limit=0", "?limit=101", "?status=lost", "?page=2"] {
        let (s, v) = f
            .call(Method::GET, &outbox(q), Some(&a.admin.token), None)
            .await;
        assert_eq!(s, 400, "{q}: {v}");
    }

    // A retried message leaves the failed page at once (it is pending, or delivered).
    let first = &ids(&all_failed)[0];
    f.must(
        200,
        Method::POST,
        &format!("/api/v1/accounts/{}/outbox/{first}/retry", a.id),
        Some(&a.admin.token),
        None,
    )
    .await;
    let after = get(&f, &outbox("?status=pending"), &a.admin.token).await;
    assert!(
        ids(&after).contains(first)
            || ids(&get(&f, &outbox("?status=failed"), &a.admin.token).await).contains(first),
        "the retried message is pending, or has failed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_filters_by_action_and_moscow_day() {
    let f = Fixture::spawn().await;
    let a = &f.a;
    let keys = format!("/api/v1/accounts/{}/sdk-keys", a.id);
    let mut made = Vec::new();
    for n in 0..2 {
        let v = f
            .must(
                201,
                Method::POST,
                &keys,
                Some(&a.admin.token),
                Some(json!({"name": format!("Shop {n}"), "allowed_origins": ["https://shop.example"]})),
            )
            .await;
        made.push(str_of(&v, "id"));
    }
    f.must(
        204,
        Method::DELETE,
        &format!("{keys}/{}", made[0]),
        Some(&a.admin.token),
        None,
    )
    .await;

    let audit = |q: &str| format!("/api/v1/accounts/{}/audit{q}", a.id);
    let actions = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| str_of(e, "action"))
            .collect()
    };
    let v = get(&f, &audit("?action=sdk_key.create"), &a.admin.token).await;
    assert_eq!(actions(&v), vec!["sdk_key.create", "sdk_key.create"]);
    let v = get(&f, &audit("?action=sdk_key."), &a.admin.token).await;
    assert_eq!(
        actions(&v),
        vec!["sdk_key.revoke", "sdk_key.create", "sdk_key.create"]
    );
    // The group never matches by accident: `sdk_key.` is not a prefix of `seat.assign`.
    let v = get(&f, &audit("?action=seat."), &a.admin.token).await;
    assert!(actions(&v).iter().all(|a| a.starts_with("seat.")), "{v}");
    assert!(!actions(&v).is_empty(), "the fixture assigned seats: {v}");

    // Pages of a filtered list.
    let p1 = get(&f, &audit("?action=sdk_key.&limit=2"), &a.admin.token).await;
    assert_eq!(actions(&p1).len(), 2);
    let cursor = str_of(&p1, "next_cursor");
    let p2 = get(
        &f,
        &audit(&format!("?action=sdk_key.&limit=2&cursor={cursor}")),
        &a.admin.token,
    )
    .await;
    assert_eq!(actions(&p2), vec!["sdk_key.create"]);
    assert!(p2["next_cursor"].is_null());

    // Moscow days: today has them, yesterday and tomorrow none.
    let today = Utc::now()
        .with_timezone(&FixedOffset::east_opt(3 * 3600).expect("offset"))
        .date_naive();
    let (yesterday, tomorrow) = (today - Duration::days(1), today + Duration::days(1));
    let v = get(
        &f,
        &audit(&format!("?action=sdk_key.&from={today}&to={today}")),
        &a.admin.token,
    )
    .await;
    assert_eq!(actions(&v).len(), 3);
    for q in [format!("?to={yesterday}"), format!("?from={tomorrow}")] {
        let v = get(&f, &audit(&q), &a.admin.token).await;
        assert_eq!(actions(&v), Vec::<String>::new(), "{q}");
    }

    for q in [
        "?action=Seat.Assign",
        "?action=seat%25",
        "?from=2026-13-01",
        "?to=today",
    ] {
        let (s, v) = f
            .call(Method::GET, &audit(q), Some(&a.admin.token), None)
            .await;
        assert_eq!(s, 400, "{q}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_crm_links_card_secret_and_api_keys_lists() {
    let f = Fixture::spawn().await;
    let a = &f.a;

    // Recordings: two, paged one at a time, with the total and the storage on every page.
    let first = f.record(a, &a.meeting).await;
    let second = f.record(a, &a.meeting).await;
    let recs = |q: &str| format!("/api/v1/accounts/{}/recordings{q}", a.id);
    let p1 = get(&f, &recs("?limit=1"), &a.admin.token).await;
    let p2 = get(&f, &recs("?limit=1&offset=1"), &a.admin.token).await;
    let p3 = get(&f, &recs("?limit=1&offset=2"), &a.admin.token).await;
    let one = |v: &Value| -> Vec<String> { ids(&v["recordings"]) };
    assert_eq!(
        (one(&p1), one(&p2), one(&p3)),
        (vec![second], vec![first], vec![])
    );
    assert_eq!((&p1["total"], &p3["total"]), (&json!(2), &json!(2)));
    assert!(p1["storage"]["used_bytes"].as_u64().is_some(), "{p1}");
    assert_eq!(
        p1["storage"]["quota_bytes"].as_u64(),
        Some(1024 * 1024 * 1024),
        "the tariff's 1024 MB"
    );
    for q in ["?limit=0", "?limit=201", "?sort=size"] {
        let (s, _) = f
            .call(Method::GET, &recs(q), Some(&a.admin.token), None)
            .await;
        assert_eq!(s, 400, "{q}");
    }

    // CRM users: the fixture's link and two more, by CRM user id, with who they are.
    let links = format!("/api/v1/accounts/{}/crm/users", a.id);
    for (crm, user) in [("crm-x", &a.spare.id), ("crm-y", &a.admin.id)] {
        f.must(
            201,
            Method::POST,
            &links,
            Some(&a.admin.token),
            Some(json!({"crm_user_id": crm, "user_id": user})),
        )
        .await;
    }
    let v = get(&f, &format!("{links}?limit=2"), &a.admin.token).await;
    assert_eq!(v["total"], 3);
    let shown: Vec<(String, String)> = v["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| (str_of(l, "crm_user_id"), str_of(l, "email")))
        .collect();
    assert_eq!(
        shown,
        vec![
            (a.crm_user.clone(), a.member.email.clone()),
            ("crm-x".into(), a.spare.email.clone()),
        ]
    );
    let v = get(&f, &format!("{links}?limit=2&offset=2"), &a.admin.token).await;
    assert_eq!(v["links"][0]["crm_user_id"], "crm-y");
    assert_eq!(v["links"][0]["user_id"], a.admin.id.as_str());

    // The card secret: set (by the fixture), never shown here; rotating moves its date on.
    let status_path = format!("/api/v1/accounts/{}/crm/card-secret", a.id);
    let before = get(&f, &status_path, &a.admin.token).await;
    assert_eq!(before["configured"], true);
    assert!(!before.to_string().contains(&a.card_secret), "{before}");
    let rotated = f
        .must(
            201,
            Method::POST,
            &status_path,
            Some(&a.admin.token),
            Some(json!({})),
        )
        .await;
    assert_ne!(str_of(&rotated, "secret"), a.card_secret);
    let after = get(&f, &status_path, &a.admin.token).await;
    let at = |v: &Value| {
        str_of(v, "set_at")
            .parse::<chrono::DateTime<Utc>>()
            .expect("set_at")
    };
    assert!(at(&after) > at(&before), "{before} → {after}");
    assert!(!after.to_string().contains(&str_of(&rotated, "secret")));
    // An account that never made one.
    let fresh = f
        .must(
            201,
            Method::POST,
            "/api/v1/accounts",
            Some(ADMIN_TOKEN),
            Some(
                json!({"name": "Fresh", "kind": "individual", "crm_system": "s",
                "crm_external_id": f.unique()}),
            ),
        )
        .await;
    let fresh_id = str_of(&fresh["account"], "id");
    let v = get(
        &f,
        &format!("/api/v1/accounts/{fresh_id}/crm/card-secret"),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        (&v["configured"], &v["set_at"]),
        (&json!(false), &Value::Null)
    );

    // API keys: a second key, listed newest first one page at a time.
    let keys = format!("/api/v1/accounts/{}/api-keys", a.id);
    let k = f
        .must(201, Method::POST, &keys, Some(&a.admin.token), None)
        .await;
    let v = get(&f, &format!("{keys}?order=newest&limit=1"), &a.admin.token).await;
    assert_eq!(v[0]["key_id"], k["key_id"]);
    assert!(v[0].get("secret").is_none(), "{v}");
    let v = get(
        &f,
        &format!("{keys}?order=newest&limit=1&offset=1"),
        &a.admin.token,
    )
    .await;
    assert_eq!(v[0]["key_id"], a.key_id.as_str());
}
