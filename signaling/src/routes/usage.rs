//! `GET /api/v1/accounts/{account}/usage`: the account's usage per Moscow day (see
//! [`crate::usage`] for what each figure counts), for the admin console's charts. Read like the
//! account's users: its admins' sessions, its API key, the operator; another account's admin or
//! key gets 404, a member 403.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::routes::users::manager;
use crate::startup::AppState;
use crate::usage::{DEFAULT_DAYS, MAX_DAYS, day_start, meetings, moscow_date, per_day};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// First day, `YYYY-MM-DD` (Moscow). Default: 29 days before `to`.
    pub from: Option<String>,
    /// Last day, included, `YYYY-MM-DD` (Moscow). Default: today.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// `YYYY-MM-DD`, a Moscow day.
    #[schema(value_type = String)]
    pub date: NaiveDate,
    /// Meetings held that started that day (someone joined them).
    pub meetings: u32,
    /// Minutes of meetings within that day, rounded to the nearest minute; a meeting across
    /// midnight adds to both days.
    pub meeting_minutes: i64,
    /// The account's users who hosted a meeting running that day.
    pub seats_in_use: u32,
    /// Seats of the account's lots valid that day (lots awaiting payment excluded).
    pub seats_licensed: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub meetings: u64,
    pub meeting_minutes: i64,
    /// The most seats in use on one day of the period.
    pub peak_seats_in_use: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    #[schema(value_type = String)]
    pub from: NaiveDate,
    #[schema(value_type = String)]
    pub to: NaiveDate,
    /// Always `Europe/Moscow`: the zone of the days.
    pub time_zone: String,
    /// One entry per day from `from` to `to`, in order.
    pub days: Vec<UsageDay>,
    pub totals: UsageTotals,
}

fn bad_date(field: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_date",
        message: format!("{field} must be a date YYYY-MM-DD."),
    }
}

fn parse_date(field: &str, v: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    v.map(|s| {
        if s.len() != 10 {
            return Err(bad_date(field));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad_date(field))
    })
    .transpose()
}

/// The period asked for, defaults applied and bounds checked.
fn period(p: &UsageParams, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let from = parse_date("from", p.from.as_deref())?;
    let to = parse_date("to", p.to.as_deref())?;
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, today.max(f)),
        (None, t) => {
            let t = t.unwrap_or(today);
            (t - Duration::days(DEFAULT_DAYS - 1), t)
        }
    };
    let days = (to - from).num_days() + 1;
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::BadRequest {
            code: "invalid_range",
            message: format!(
                "from must be on or before to, and the period at most {MAX_DAYS} days."
            ),
        });
    }
    Ok((from, to))
}

/// The account's meetings, meeting minutes and seats per Moscow day over a period (default the
/// last 30 days; at most 366).
#[utoipa::path(get, path = "/api/v1/accounts/{account}/usage", tag = "usage",
    params(("account" = String, Path), UsageParams), security(("bearer" = [])),
    responses((status = 200, body = Usage),
        (status = 400, description = "invalid_date, invalid_range (to before from, or over 366 days), invalid_query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "A member of the account", body = ErrorBody),
        (status = 404, description = "No such account (or another account's)", body = ErrorBody)))]
pub async fn usage(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<Usage>, ApiError> {
    let (_, account) = manager(&app, &headers, &account).await?;
    // The operator passes `manager` for any id: the account must exist.
    app.licensing.account(account).await?;
    let now = Utc::now();
    let (from, to) = period(&params, moscow_date(now))?;
    let spans = meetings(
        app.store.pool(),
        &account.to_string(),
        day_start(from),
        day_start(to + Duration::days(1)),
        now,
    )
    .await?;
    let lots = app.licensing.lots(account).await?;
    let figures = per_day(from, to, &spans, &lots, app.licensing.today());
    let days: Vec<UsageDay> = figures
        .iter()
        .map(|d| UsageDay {
            date: d.date,
            meetings: d.meetings,
            meeting_minutes: d.meeting_minutes(),
            seats_in_use: d.seats_in_use,
            seats_licensed: d.seats_licensed,
        })
        .collect();
    let totals = UsageTotals {
        meetings: days.iter().map(|d| u64::from(d.meetings)).sum(),
        meeting_minutes: (figures.iter().map(|d| d.meeting_seconds).sum::<i64>() + 30) / 60,
        peak_seats_in_use: days.iter().map(|d| d.seats_in_use).max().unwrap_or(0),
    };
    Ok(Json(Usage {
        from,
        to,
        time_zone: "Europe/Moscow".into(),
        days,
        totals,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(from: Option<&str>, to: Option<&str>) -> UsageParams {
        UsageParams {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn the_default_is_the_last_30_days() {
        assert_eq!(
            period(&p(None, None), d("2026-11-21")).ok(),
            Some((d("2026-10-23"), d("2026-11-21")))
        );
    }

    #[test]
    fn a_reversed_or_too_long_period_or_a_bad_date_is_refused() {
        let today = d("2026-11-21");
        for (f, t) in [
            (Some("2026-05-02"), Some("2026-05-01")),
            (Some("2025-01-01"), Some("2026-01-02")),
            (Some("2024-11-19"), None),
            (Some("2026-5-1"), None),
            (None, Some("yesterday")),
        ] {
            assert!(period(&p(f, t), today).is_err(), "{f:?} {t:?}");
        }
        // Exactly 366 days is allowed.
        assert!(period(&p(Some("2024-01-01"), Some("2024-12-31")), today).is_ok());
    }
}
