//! The `card_payments` table: what Parley asked the acquirer for, and what became of it.

use parley_licensing::Money;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::store::DbPool;

/// A card payment as the account sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CardPayment {
    pub id: String,
    /// `yookassa`.
    pub provider: String,
    /// The acquirer's payment id (in its reports and the payment's `reference`).
    pub provider_id: String,
    pub invoice_id: String,
    #[schema(value_type = String, example = "12000.00")]
    pub amount: Money,
    /// `pending` (waiting for the payer or the acquirer), `succeeded` (registered: see
    /// `payment_id`), `canceled`, `unapplied` (the money was taken but the invoice could not
    /// take it, e.g. it was paid meanwhile: the provider refunds it) or `rejected` (the
    /// acquirer's record did not match what was asked).
    pub status: String,
    /// Where the payer confirms the payment (YooKassa's page).
    pub confirmation_url: String,
    /// The licensing payment, once registered.
    pub payment_id: Option<String>,
    /// Why it was cancelled or not applied.
    pub failure: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A row with what the flow needs besides the view.
#[derive(Debug, Clone)]
pub struct Stored {
    pub view: CardPayment,
    pub account_id: String,
    pub created_ms: i64,
}

pub const SELECT: &str = "SELECT id, provider, provider_id, account_id, invoice_id, amount_kopecks, \
     status, confirmation_url, payment_id, failure, created_at FROM card_payments";

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Stored, sqlx::Error> {
    let created_ms: i64 = r.try_get("created_at")?;
    let created_at = chrono::DateTime::from_timestamp_millis(created_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Stored {
        account_id: r.try_get("account_id")?,
        created_ms,
        view: CardPayment {
            id: r.try_get("id")?,
            provider: r.try_get("provider")?,
            provider_id: r.try_get("provider_id")?,
            invoice_id: r.try_get("invoice_id")?,
            amount: Money::from_kopecks(r.try_get("amount_kopecks")?),
            status: r.try_get("status")?,
            confirmation_url: r.try_get("confirmation_url")?,
            payment_id: r.try_get("payment_id")?,
            failure: r.try_get("failure")?,
            created_at,
        },
    })
}

pub struct NewRow<'a> {
    pub provider_id: &'a str,
    pub account_id: &'a str,
    pub invoice_id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: Money,
    pub confirmation_url: &'a str,
}

/// Records a payment the acquirer created. A retried start (same key, or the same acquirer
/// payment, which its idempotence gives back) keeps the first row, which is returned.
pub async fn insert(pool: &DbPool, n: &NewRow<'_>) -> Result<Stored, sqlx::Error> {
    sqlx::query(
        "INSERT INTO card_payments (id, provider, provider_id, account_id, invoice_id, \
         idempotency_key, amount_kopecks, status, confirmation_url, created_at) \
         VALUES ($1, 'yookassa', $2, $3, $4, $5, $6, 'pending', $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(n.provider_id)
    .bind(n.account_id)
    .bind(n.invoice_id)
    .bind(n.idempotency_key)
    .bind(n.amount.kopecks())
    .bind(n.confirmation_url)
    .bind(now_ms())
    .execute(pool)
    .await?;
    let r = sqlx::query(&format!(
        "{SELECT} WHERE (account_id = $1 AND idempotency_key = $2) \
         OR (provider = 'yookassa' AND provider_id = $3) ORDER BY created_at LIMIT 1"
    ))
    .bind(n.account_id)
    .bind(n.idempotency_key)
    .bind(n.provider_id)
    .fetch_one(pool)
    .await?;
    from_row(&r)
}

pub async fn by_key(
    pool: &DbPool,
    account_id: &str,
    key: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE account_id = $1 AND idempotency_key = $2"
    ))
    .bind(account_id)
    .bind(key)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub async fn by_provider_id(
    pool: &DbPool,
    provider_id: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE provider = 'yookassa' AND provider_id = $1"
    ))
    .bind(provider_id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The account's card payments, oldest first.
pub async fn of_account(pool: &DbPool, account_id: &str) -> Result<Vec<CardPayment>, sqlx::Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE account_id = $1 ORDER BY created_at, id"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| from_row(r).map(|r| r.view))
    .collect()
}

/// Pending payments of the account without news since `before_ms` (at most `limit`).
pub async fn stale_pending(
    pool: &DbPool,
    account_id: &str,
    before_ms: i64,
    limit: i64,
) -> Result<Vec<Stored>, sqlx::Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE account_id = $1 AND status = 'pending' \
         AND COALESCE(checked_at, created_at) <= $2 ORDER BY created_at LIMIT $3"
    ))
    .bind(account_id)
    .bind(before_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Notes that the acquirer was asked (the payment is still pending there).
pub async fn touch(pool: &DbPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE card_payments SET checked_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Moves a pending payment to its final state; `false` if it was no longer pending (another
/// notification or lookup settled it first).
pub async fn settle(
    pool: &DbPool,
    id: &str,
    status: &str,
    payment_id: Option<&str>,
    failure: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE card_payments SET status = $1, payment_id = $2, failure = $3, checked_at = $4, \
         settled_at = $5 WHERE id = $6 AND status = 'pending'",
    )
    .bind(status)
    .bind(payment_id)
    .bind(failure)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
