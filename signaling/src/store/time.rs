//! Instants as stored: text, because `sqlx::Any` has no date type.
//!
//! The text is what sqlx-sqlite wrote for a `DateTime<Utc>` before the store went through
//! `Any` (RFC 3339, `+00:00`, fractional seconds in groups of 3 only when needed), so databases
//! written by earlier versions read back unchanged. All instants are UTC in that one form, so
//! comparing the text in SQL (`expires_at < $1`) orders them as instants on SQLite and on
//! PostgreSQL (whose databases here use the byte-order `C` collation).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type, ValueRef};

/// The stored form of `t`.
pub fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

pub fn opt_text(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(text)
}

/// The stored form of the present instant.
pub fn now_text() -> String {
    text(Utc::now())
}

/// Reads the stored form back; also the space-separated form SQLite's own `datetime()` and
/// older rows may hold.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

fn decode_text(value: AnyValueRef<'_>) -> Result<DateTime<Utc>, BoxDynError> {
    let s = <String as Decode<Any>>::decode(value)?;
    parse(&s).ok_or_else(|| format!("unreadable instant {s:?}").into())
}

/// A stored instant as a column type: `query_scalar::<_, DbTime>`, `row.try_get::<DbTime, _>`,
/// or `#[sqlx(try_from = "DbTime")]` on a `DateTime<Utc>` field of a `FromRow` struct.
#[derive(Debug, Clone, Copy)]
pub struct DbTime(pub DateTime<Utc>);

/// A nullable stored instant, for `#[sqlx(try_from = "OptDbTime")]` on an
/// `Option<DateTime<Utc>>` field (the orphan rule rules out converting from `Option<DbTime>`).
#[derive(Debug, Clone, Copy)]
pub struct OptDbTime(pub Option<DateTime<Utc>>);

impl Type<Any> for DbTime {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl Type<Any> for OptDbTime {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for DbTime {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        decode_text(value).map(DbTime)
    }
}

impl<'r> Decode<'r, Any> for OptDbTime {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(OptDbTime(None));
        }
        decode_text(value).map(|t| OptDbTime(Some(t)))
    }
}

impl From<DbTime> for DateTime<Utc> {
    fn from(t: DbTime) -> Self {
        t.0
    }
}

impl From<OptDbTime> for Option<DateTime<Utc>> {
    fn from(t: OptDbTime) -> Self {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_stored_form_is_what_sqlx_sqlite_wrote() {
        let whole = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 5).unwrap();
        assert_eq!(text(whole), "2026-03-01T12:00:05+00:00");
        let milli = whole + chrono::Duration::milliseconds(250);
        assert_eq!(text(milli), "2026-03-01T12:00:05.250+00:00");
        assert_eq!(parse(&text(milli)), Some(milli));
        assert_eq!(parse("2026-03-01 12:00:05"), Some(whole));
        assert_eq!(parse("2026-03-01T12:00:05Z"), Some(whole));
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn text_order_is_time_order() {
        let base = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 5).unwrap();
        let times = [
            base,
            base + chrono::Duration::nanoseconds(1),
            base + chrono::Duration::microseconds(1),
            base + chrono::Duration::milliseconds(1),
            base + chrono::Duration::milliseconds(999),
            base + chrono::Duration::seconds(1),
        ];
        for pair in times.windows(2) {
            assert!(text(pair[0]) < text(pair[1]), "{:?}", pair);
        }
    }
}
