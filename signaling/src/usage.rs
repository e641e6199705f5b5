//! An account's usage per day, for the admin console's charts: meetings held, meeting minutes,
//! and seats (licensed, and in use). Days are Moscow calendar days, like every date of the
//! agreement.
//!
//! What is stored decides what can be counted:
//! - A meeting is *held* once someone joined it (`started_at`); it counts on the day it started.
//!   Its minutes run from `started_at` to `ended_at` and are split at Moscow midnight, so a
//!   meeting across midnight adds to both days. A meeting still running counts up to now, but
//!   never past its tariff's maximum length (a meeting whose end was never written — a crash —
//!   must not grow forever).
//! - Seats *licensed* on a day: the seats of the account's lots whose dates cover it (paid or
//!   granted lots: not those awaiting payment). A top-up changes a lot's seat count in place, so
//!   past days show the lot's current count.
//! - Seats *in use* on a day: the account's users who hosted a meeting running that day (a
//!   meeting is hosted on its host's seat). Seat assignments keep no history (a reclaimed seat
//!   leaves no row), so "assigned on that day" cannot be known; hosting is what the meetings
//!   table records for every day.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use parley_licensing::{Lot, LotStatus};

use crate::store::DbPool;
use crate::store::time::{self, DbTime, OptDbTime};

/// The longest period one request may ask for: a year, leap day included.
pub const MAX_DAYS: i64 = 366;
/// The period when none is given: the last 30 days, today included.
pub const DEFAULT_DAYS: i64 = 30;

/// The first instant of Moscow day `d`, in UTC.
pub fn day_start(d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_time(NaiveTime::MIN);
    // Moscow has had no daylight saving time since 2014, so midnight is never skipped or
    // repeated; `earliest` only guards the type.
    Moscow
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| midnight.and_utc() - Duration::hours(3))
}

/// The Moscow date of an instant.
pub fn moscow_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Moscow).date_naive()
}

/// One held meeting as the figures need it.
#[derive(Debug, Clone)]
pub struct MeetingSpan {
    pub start: DateTime<Utc>,
    /// `ended_at`, or for a running meeting the time it counts up to.
    pub end: DateTime<Utc>,
    pub host: Option<String>,
}

/// The figures of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFigures {
    pub date: NaiveDate,
    /// Meetings that started that day.
    pub meetings: u32,
    /// Seconds of meetings within that day (summed over meetings).
    pub meeting_seconds: i64,
    pub seats_in_use: u32,
    pub seats_licensed: u32,
}

impl DayFigures {
    /// Whole minutes, rounded to the nearest (a 30-second meeting is half a minute: 1).
    pub fn meeting_minutes(&self) -> i64 {
        (self.meeting_seconds + 30) / 60
    }
}

/// Seats of `lots` licensed on `day`. A terminated lot keeps its dates but stopped granting
/// when the termination took effect, which was on or before `today`: it counts only before.
pub fn seats_licensed(lots: &[Lot], day: NaiveDate, today: NaiveDate) -> u32 {
    lots.iter()
        .filter(|l| l.is_valid_on(day))
        .filter(|l| match l.status {
            LotStatus::PendingPayment => false,
            LotStatus::Terminated => day < today,
            _ => true,
        })
        .map(|l| l.seats.get())
        .fold(0u32, u32::saturating_add)
}

/// The figures of every day from `from` to `to` (inclusive, `from <= to`).
pub fn per_day(
    from: NaiveDate,
    to: NaiveDate,
    meetings: &[MeetingSpan],
    lots: &[Lot],
    today: NaiveDate,
) -> Vec<DayFigures> {
    let n = usize::try_from((to - from).num_days() + 1).unwrap_or(0);
    let mut days: Vec<DayFigures> = Vec::with_capacity(n);
    let mut hosts: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); n];
    for date in from.iter_days().take(n) {
        days.push(DayFigures {
            date,
            meetings: 0,
            meeting_seconds: 0,
            seats_in_use: 0,
            seats_licensed: seats_licensed(lots, date, today),
        });
    }
    let index = |d: NaiveDate| {
        usize::try_from((d - from).num_days())
            .ok()
            .filter(|&i| i < n)
    };
    for m in meetings {
        if m.end <= m.start {
            // Ended the instant it started: held, without minutes.
            if let Some(i) = index(moscow_date(m.start)) {
                days[i].meetings += 1;
                if let Some(h) = &m.host {
                    hosts[i].insert(h);
                }
            }
            continue;
        }
        if let Some(i) = index(moscow_date(m.start)) {
            days[i].meetings += 1;
        }
        // Walk the Moscow days the meeting spans, clipped to the period.
        let first = moscow_date(m.start).max(from);
        let last = moscow_date(m.end - Duration::nanoseconds(1)).min(to);
        for date in first.iter_days().take_while(|d| *d <= last) {
            let Some(i) = index(date) else { continue };
            let lo = m.start.max(day_start(date));
            let hi = m.end.min(day_start(date + Duration::days(1)));
            if hi > lo {
                days[i].meeting_seconds += (hi - lo).num_seconds();
                if let Some(h) = &m.host {
                    hosts[i].insert(h);
                }
            }
        }
    }
    for (d, h) in days.iter_mut().zip(hosts) {
        d.seats_in_use = u32::try_from(h.len()).unwrap_or(u32::MAX);
    }
    days
}

/// `started_at, ended_at, host_user_id, max_meeting_minutes` of a meeting.
type SpanRow = (DbTime, OptDbTime, Option<String>, Option<i64>);

/// The held meetings of `account` that overlap `[from_start, to_end)`, with the end a running
/// one counts up to (see the module docs).
pub async fn meetings(
    pool: &DbPool,
    account: &str,
    from_start: DateTime<Utc>,
    to_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<MeetingSpan>> {
    // Timestamps are RFC 3339 text in UTC in one form (`store::time`), so text order is time
    // order.
    let rows: Vec<SpanRow> = sqlx::query_as(
        "SELECT started_at, ended_at, host_user_id, max_meeting_minutes FROM meetings \
             WHERE account_id = $1 AND started_at IS NOT NULL AND started_at < $2 \
             AND (ended_at IS NULL OR ended_at >= $3)",
    )
    .bind(account)
    .bind(time::text(to_end))
    .bind(time::text(from_start))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(DbTime(start), OptDbTime(ended), host, max_minutes)| {
            let end = ended.unwrap_or_else(|| {
                let cap = max_minutes
                    .filter(|m| *m > 0)
                    .map(|m| start + Duration::minutes(m))
                    .unwrap_or(now);
                now.min(cap)
            });
            MeetingSpan {
                start,
                end: end.max(start),
                host,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msk(d: &str, t: &str) -> DateTime<Utc> {
        let d = NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
        let t = NaiveTime::parse_from_str(t, "%H:%M").expect("time");
        Moscow
            .from_local_datetime(&d.and_time(t))
            .single()
            .expect("moscow")
            .with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn span(start: DateTime<Utc>, end: DateTime<Utc>, host: &str) -> MeetingSpan {
        MeetingSpan {
            start,
            end,
            host: Some(host.into()),
        }
    }

    #[test]
    fn moscow_midnight_is_21_utc_of_the_day_before() {
        assert_eq!(
            day_start(date("2026-05-10")).to_rfc3339(),
            "2026-05-09T21:00:00+00:00"
        );
    }

    #[test]
    fn a_meeting_across_midnight_splits_its_minutes_and_counts_where_it_started() {
        let m = [
            span(msk("2026-05-10", "23:30"), msk("2026-05-11", "00:20"), "u1"),
            span(msk("2026-05-10", "10:00"), msk("2026-05-10", "10:45"), "u2"),
            // Before the period: only its part inside counts, and not as a meeting.
            span(msk("2026-05-08", "23:50"), msk("2026-05-09", "00:05"), "u3"),
        ];
        let d = per_day(
            date("2026-05-09"),
            date("2026-05-11"),
            &m,
            &[],
            date("2026-05-11"),
        );
        let got: Vec<(u32, i64, u32)> = d
            .iter()
            .map(|d| (d.meetings, d.meeting_minutes(), d.seats_in_use))
            .collect();
        assert_eq!(got, vec![(0, 5, 1), (2, 75, 2), (0, 20, 1)]);
    }

    #[test]
    fn minutes_round_to_the_nearest() {
        let start = msk("2026-05-10", "10:00");
        let m = [
            span(start, start + Duration::seconds(29), "a"),
            span(start, start + Duration::seconds(89), "a"),
        ];
        let d = per_day(
            date("2026-05-10"),
            date("2026-05-10"),
            &m,
            &[],
            date("2026-05-10"),
        );
        // 118 seconds: 2 minutes; the host counted once.
        assert_eq!(
            (d[0].meetings, d[0].meeting_minutes(), d[0].seats_in_use),
            (2, 2, 1)
        );
    }
}
