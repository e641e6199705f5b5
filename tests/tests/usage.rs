//! `GET /api/v1/accounts/{account}/usage`, black-box: meetings whose times we know (created
//! through the API, then their start and end written in the database, since a test cannot wait
//! for days to pass) give the per-day figures a person would compute by hand — Moscow days, a
//! meeting across midnight split over both days, a meeting of another account and one nobody
//! joined left out, a running meeting counted up to its tariff's maximum length — and a meeting
//! joined for real today shows up today. Bad periods are 400, other accounts 404.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use parley_tests::fixtures::{AccountFixture, Fixture};
use parley_tests::{ADMIN_TOKEN, str_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

/// Moscow is UTC+3 all year (no daylight saving since 2014).
fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("offset")
}

/// A Moscow wall-clock time as UTC.
fn msk(day: &str, time: &str) -> DateTime<Utc> {
    let t = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .expect("date")
        .and_time(chrono::NaiveTime::parse_from_str(time, "%H:%M").expect("time"));
    moscow()
        .from_local_datetime(&t)
        .single()
        .expect("moscow time")
        .with_timezone(&Utc)
}

async fn create_meeting(f: &Fixture, host_token: &str, title: &str) -> String {
    let v = f
        .must(
            201,
            Method::POST,
            "/api/v1/meetings",
            Some(host_token),
            Some(json!({ "title": title })),
        )
        .await;
    str_of(&v, "id")
}

/// Writes a meeting's start and end as if it had run then, through the server's own pool and
/// in its own encoding of instants (the same on SQLite and PostgreSQL).
async fn set_times(
    db: &parley_signaling::store::DbPool,
    meeting: &str,
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
) {
    use parley_signaling::store::time::opt_text;
    let r = sqlx::query("UPDATE meetings SET started_at = $1, ended_at = $2 WHERE id = $3")
        .bind(opt_text(started))
        .bind(opt_text(ended))
        .bind(meeting)
        .execute(db)
        .await
        .expect("update meeting times");
    assert_eq!(r.rows_affected(), 1, "meeting {meeting}");
}

async fn usage(f: &Fixture, acc: &AccountFixture, query: &str, bearer: &str) -> (u16, Value) {
    f.call(
        Method::GET,
        &format!("/api/v1/accounts/{}/usage{query}", acc.id),
        Some(bearer),
        None,
    )
    .await
}

/// `(date, meetings, minutes, seats in use, seats licensed)` of every day.
fn rows(v: &Value) -> Vec<(String, i64, i64, i64, i64)> {
    v["days"]
        .as_array()
        .unwrap_or_else(|| panic!("no days in {v}"))
        .iter()
        .map(|d| {
            (
                str_of(d, "date"),
                d["meetings"].as_i64().expect("meetings"),
                d["meeting_minutes"].as_i64().expect("minutes"),
                d["seats_in_use"].as_i64().expect("seats_in_use"),
                d["seats_licensed"].as_i64().expect("seats_licensed"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_per_moscow_day_from_meetings_of_known_length() {
    let f = Fixture::spawn().await;
    let (a, b) = (&f.a, &f.b);
    let db = f.app.pool();

    // A's meetings in May 2026 (Moscow times), hosted by the member and the admin (both seated).
    let m1 = create_meeting(&f, &a.member.token, "Morning demo").await;
    let m2 = create_meeting(&f, &a.admin.token, "Late call").await;
    let m3 = create_meeting(&f, &a.member.token, "Short sync").await;
    let m4 = create_meeting(&f, &a.admin.token, "Night call").await;
    let m5 = create_meeting(&f, &a.member.token, "Never closed").await;
    let never = create_meeting(&f, &a.member.token, "Nobody came").await;
    let other = create_meeting(&f, &b.member.token, "B's meeting").await;
    // 45 minutes on the 10th.
    set_times(
        &db,
        &m1,
        Some(msk("2026-05-10", "10:00")),
        Some(msk("2026-05-10", "10:45")),
    )
    .await;
    // Across midnight: 30 minutes on the 10th (where it counts as a meeting), 20 on the 11th.
    set_times(
        &db,
        &m2,
        Some(msk("2026-05-10", "23:30")),
        Some(msk("2026-05-11", "00:20")),
    )
    .await;
    // 10 minutes on the 12th.
    set_times(
        &db,
        &m3,
        Some(msk("2026-05-12", "09:00")),
        Some(msk("2026-05-12", "09:10")),
    )
    .await;
    // 22:30–23:00 UTC on the 12th is 01:30–02:00 on the 13th in Moscow: a day of its own.
    let utc = |s: &str| s.parse::<DateTime<Utc>>().expect("utc");
    set_times(
        &db,
        &m4,
        Some(utc("2026-05-12T22:30:00Z")),
        Some(utc("2026-05-12T23:00:00Z")),
    )
    .await;
    // Started 23:00 on the 14th and never ended (a crash): it counts up to the tariff's
    // 240-minute maximum, 60 minutes on the 14th and 180 on the 15th.
    set_times(&db, &m5, Some(msk("2026-05-14", "23:00")), None).await;
    // Ended without anyone joining: not held.
    set_times(&db, &never, None, Some(msk("2026-05-12", "12:00"))).await;
    // Another account's meeting on the 10th.
    set_times(
        &db,
        &other,
        Some(msk("2026-05-10", "12:00")),
        Some(msk("2026-05-10", "13:00")),
    )
    .await;

    let (s, v) = usage(&f, a, "?from=2026-05-09&to=2026-05-15", &a.admin.token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["from"], "2026-05-09");
    assert_eq!(v["to"], "2026-05-15");
    assert_eq!(v["time_zone"], "Europe/Moscow");
    // Seats licensed: A's 20-seat lot and the one-seat lot of its second paid order, both
    // granted on the fixture's licensing date 2026-03-01 for twelve months.
    let l = 21;
    let want: Vec<(String, i64, i64, i64, i64)> = [
        ("2026-05-09", 0, 0, 0, l),
        ("2026-05-10", 2, 75, 2, l),
        ("2026-05-11", 0, 20, 1, l),
        ("2026-05-12", 1, 10, 1, l),
        ("2026-05-13", 1, 30, 1, l),
        ("2026-05-14", 1, 60, 1, l),
        ("2026-05-15", 0, 180, 1, l),
    ]
    .into_iter()
    .map(|(d, m, min, u, lic)| (d.to_owned(), m, min, u, lic))
    .collect();
    assert_eq!(rows(&v), want);
    assert_eq!(v["totals"]["meetings"], 5);
    assert_eq!(v["totals"]["meeting_minutes"], 375);
    assert_eq!(v["totals"]["peak_seats_in_use"], 2);

    // The same figures for the account's key and the operator; B sees only its own meeting.
    for bearer in [a.key.as_str(), ADMIN_TOKEN] {
        let (s, w) = usage(&f, a, "?from=2026-05-09&to=2026-05-15", bearer).await;
        assert_eq!((s, rows(&w)), (200, want.clone()));
    }
    let (s, w) = usage(&f, b, "?from=2026-05-10&to=2026-05-10", &b.admin.token).await;
    assert_eq!(s, 200, "{w}");
    // B: 5 seats on its lot, 1 on its second order's.
    assert_eq!(rows(&w), vec![("2026-05-10".to_owned(), 1, 60, 1, 6)]);

    // Seats licensed start with the lots: nothing before 2026-03-01.
    let (s, w) = usage(&f, a, "?from=2026-02-27&to=2026-03-02", &a.admin.token).await;
    assert_eq!(s, 200, "{w}");
    let licensed: Vec<i64> = rows(&w).iter().map(|r| r.4).collect();
    assert_eq!(licensed, vec![0, 0, l, l]);

    // Today, for real: a guest joins A's meeting (the member hosts it); the default period is
    // the last 30 days, today last.
    let today = Utc::now().with_timezone(&moscow()).date_naive().to_string();
    let (_guest, _) = f.participant(&a.meeting, "Guest today").await;
    let v = wait_for("today's meeting in the usage", || async {
        let (_, v) = usage(&f, a, "", &a.admin.token).await;
        let last = v["days"].as_array()?.last()?.clone();
        (last["meetings"] == 1).then_some(v)
    })
    .await;
    let days = rows(&v);
    assert_eq!(days.len(), 30);
    let last = days.last().expect("a day");
    assert_eq!((last.0.as_str(), last.1, last.3), (today.as_str(), 1, 1));
    assert_eq!(
        v["from"].as_str(),
        Some(
            (NaiveDate::parse_from_str(&today, "%Y-%m-%d").expect("today") - Duration::days(29))
                .to_string()
                .as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_refuses_bad_periods_and_other_peoples_accounts() {
    let f = Fixture::spawn().await;
    let a = &f.a;
    for (query, code) in [
        ("?from=2026-05-02&to=2026-05-01", "invalid_range"),
        ("?from=2025-01-01&to=2026-01-02", "invalid_range"),
        ("?from=2026-5-1&to=2026-05-02", "invalid_date"),
        ("?from=2026-02-30", "invalid_date"),
        ("?to=yesterday", "invalid_date"),
        ("?days=7", "invalid_query"),
    ] {
        let (s, v) = usage(&f, a, query, &a.admin.token).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {v}"
        );
    }
    // 366 days is the most one request may ask for.
    let (s, v) = usage(&f, a, "?from=2024-01-01&to=2024-12-31", &a.admin.token).await;
    assert_eq!(
        (s, v["days"].as_array().map(Vec::len)),
        (200, Some(366)),
        "{v}"
    );

    // A member of the account: 403; B's admin and key: 404 as for a missing account; the
    // operator asking for an account that does not exist: 404; nobody: 401.
    let (s, _) = usage(&f, a, "", &a.member.token).await;
    assert_eq!(s, 403);
    for bearer in [f.b.admin.token.as_str(), f.b.key.as_str()] {
        let (s, v) = usage(&f, a, "", bearer).await;
        assert_eq!(s, 404, "{v}");
    }
    let (s, _) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{}/usage", uuid::Uuid::new_v4()),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = f
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{}/usage", a.id),
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);
}
