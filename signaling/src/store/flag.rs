//! Booleans as stored: integers 0/1 on both databases, because `sqlx::Any` reads SQLite's
//! integers only as integers and one schema serves SQLite and PostgreSQL.

use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type, ValueRef};

/// The stored form of `b`.
pub fn int(b: bool) -> i64 {
    i64::from(b)
}

pub fn opt_int(b: Option<bool>) -> Option<i64> {
    b.map(int)
}

/// A stored flag as a column type (`#[sqlx(try_from = "DbFlag")]` on a `bool` field).
#[derive(Debug, Clone, Copy)]
pub struct DbFlag(pub bool);

/// A nullable stored flag, for `#[sqlx(try_from = "OptDbFlag")]` on an `Option<bool>` field.
#[derive(Debug, Clone, Copy)]
pub struct OptDbFlag(pub Option<bool>);

impl Type<Any> for DbFlag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl Type<Any> for OptDbFlag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for DbFlag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbFlag(<i64 as Decode<Any>>::decode(value)? != 0))
    }
}

impl<'r> Decode<'r, Any> for OptDbFlag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(OptDbFlag(None));
        }
        Ok(OptDbFlag(Some(<i64 as Decode<Any>>::decode(value)? != 0)))
    }
}

impl From<DbFlag> for bool {
    fn from(f: DbFlag) -> Self {
        f.0
    }
}

impl From<OptDbFlag> for Option<bool> {
    fn from(f: OptDbFlag) -> Self {
        f.0
    }
}
