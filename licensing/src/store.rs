//! Persistence over sqlx for SQLite (default) and PostgreSQL.
//!
//! Why `sqlx::Any` rather than an enum over two pools: every query is written once and runs on
//! both databases, so the two can never drift apart, and the tests that run on both exercise
//! the same code. The price is Any's small type set (integers, text), which the schema embraces:
//! amounts are integer kopecks (exact, and what `Money` converts to losslessly), dates are
//! `YYYY-MM-DD` text (which sorts like dates), ids are uuid text. Placeholders are `$N`, which
//! both drivers accept. The two migration directories differ only in integer type names.
//!
//! Concurrency: every write that moves money or seats is one transaction whose first statement
//! bumps the account's `version`. On PostgreSQL that row lock serializes the account's writers
//! (READ COMMITTED then shows each the previous one's commit); on SQLite the transaction starts
//! with `BEGIN IMMEDIATE`, which takes the write lock up front, so no transaction can read a
//! snapshot and later fail to upgrade. Seat counters are additionally guarded by conditional
//! updates (`seats_assigned < seats`) and document numbers by a counter row bumped in the same
//! transaction, so numbers have no gaps and never repeat.

use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use uuid::Uuid;

use crate::account::{Account, AccountKind, AccountStatus, CrmLink, NewAccount};
use crate::calendar::{BusinessCalendar, add_days};
use crate::discount::{PromoUsage, Promotion};
use crate::error::LicensingError;
use crate::inn::Inn;
use crate::lot::{Lot, LotStatus};
use crate::money::Money;
use crate::order::{OrderType, PaymentTerms};
use crate::pricing::{self, LineKind};
use crate::quote::{self, OrderSpec, Quote, QuoteContext, QuoteRequest};
use crate::seats::Seats;
use crate::tariff::{Features, Tariff, TariffCode, VatMode};
use crate::termination::{self, PaidPeriod, TerminationKind, TerminationOutcome};

// `ignore_missing`: the server keeps its own tables in the same database (one SQLite file by
// default), and both migrators record their versions in the one `_sqlx_migrations` table; without
// it each would refuse to start on seeing the other's versions.
static SQLITE_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/sqlite")
};
static POSTGRES_MIGRATIONS: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("./migrations/postgres")
};

/// Days before a lot's end at which the client is reminded (the windows open at 90 and 14).
pub const REMINDER_DAYS: [i64; 5] = [90, 30, 14, 7, 1];
/// A seat unused this long shows up in the monthly review (6.2).
pub const INACTIVE_DAYS: i64 = 30;
/// Business days from signing a postpay order to its invoice's due date. The agreement leaves
/// the terms of postpay to an individual arrangement (5.1, 5.3.4.1) and the spec names no figure;
/// until accounts carry their own term, one rule for all keeps the due date predictable.
pub const POSTPAY_PAYMENT_BUSINESS_DAYS: u32 = 10;
/// Longest bank reference of a payment kept (a payment order's number is far shorter).
pub const MAX_PAYMENT_REFERENCE: usize = 100;

type Result<T> = std::result::Result<T, LicensingError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

// ---- row and value helpers -------------------------------------------------------------

fn text(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}
fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}
fn int(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}
fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}
fn date(row: &AnyRow, col: &str) -> Result<NaiveDate> {
    let s = text(row, col)?;
    NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| corrupt(col, &s))
}
fn opt_date(row: &AnyRow, col: &str) -> Result<Option<NaiveDate>> {
    opt_text(row, col)?
        .map(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| corrupt(col, &s)))
        .transpose()
}
fn uuid(row: &AnyRow, col: &str) -> Result<Uuid> {
    let s = text(row, col)?;
    Uuid::parse_str(&s).map_err(|_| corrupt(col, &s))
}
fn money(row: &AnyRow, col: &str) -> Result<Money> {
    Ok(Money::from_kopecks(int(row, col)?))
}
fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let s = text(row, col)?;
    serde_json::from_str(&s).map_err(|_| corrupt(col, &s))
}
fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| LicensingError::Storage(e.to_string()))
}
fn corrupt(col: &str, value: &str) -> LicensingError {
    LicensingError::Storage(format!("unreadable {col}: {value:?}"))
}
fn now() -> String {
    Utc::now().to_rfc3339()
}
fn flag(b: bool) -> i64 {
    i64::from(b)
}
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

// ---- records the store returns ---------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    /// A postpay order granted at its signing (5.1), its invoice still to be paid.
    Signed,
    Paid,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Signed => "signed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending_payment" => Ok(OrderStatus::PendingPayment),
            "signed" => Ok(OrderStatus::Signed),
            "paid" => Ok(OrderStatus::Paid),
            "cancelled" => Ok(OrderStatus::Cancelled),
            _ => Err(corrupt("orders.status", s)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub idempotency_key: String,
    pub status: OrderStatus,
    pub placed_on: NaiveDate,
    pub quote: Quote,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invoice {
    pub id: Uuid,
    pub account_id: Uuid,
    pub order_id: Uuid,
    pub year: i32,
    pub number: i64,
    /// Printed number, e.g. `2026-000042`.
    pub number_text: String,
    pub issued_on: NaiveDate,
    pub amount: Money,
    pub vat: VatMode,
    pub status: String,
    /// When a signed postpay invoice must be paid; `None` for prepay invoices, which are paid
    /// before anything is granted.
    pub due_on: Option<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacedOrder {
    pub order: OrderRecord,
    /// `None` for a free order (a trial, or one discounted to zero), granted at once.
    pub invoice: Option<Invoice>,
    pub granted_lot: Option<Uuid>,
}

/// A postpay order granted at its signing: the lot is live, the invoice unpaid until `due_on`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedOrder {
    pub order: OrderRecord,
    pub invoice: Invoice,
    /// The lot that now holds the seats (new for initial orders and renewals, the same lot for
    /// top-ups).
    pub lot_id: Uuid,
    pub signed_on: NaiveDate,
    /// The latest grant the agreement allows after signing (5.1); the grant is the signing
    /// itself, so it is never late.
    pub grant_deadline: NaiveDate,
    pub payment_due_on: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    BankTransfer,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::BankTransfer => "bank_transfer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub method: String,
    pub amount: Money,
    pub paid_on: NaiveDate,
    /// The latest grant date the agreement allows (3.2.7, 5.1).
    pub grant_deadline: NaiveDate,
    pub granted_on: NaiveDate,
    pub granted_late: bool,
    pub lot_id: Uuid,
    /// The bank's reference of a transfer (the payment order's number), as the provider
    /// registered it; `None` for card payments and registrations without one.
    pub reference: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferDocument {
    pub id: Uuid,
    pub account_id: Uuid,
    pub order_id: Uuid,
    pub invoice_id: Uuid,
    /// `upd` or `act` (a one-sided act, 3.2.5).
    pub kind: String,
    pub number_text: String,
    pub issued_on: NaiveDate,
    pub grant_date: NaiveDate,
    pub amount: Money,
    pub accept_by: NaiveDate,
    /// `sent`, `accepted` or `disputed`.
    pub status: String,
    pub objection: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorrectiveInvoice {
    pub id: Uuid,
    pub account_id: Uuid,
    pub invoice_id: Uuid,
    pub number_text: String,
    pub issued_on: NaiveDate,
    pub reason: String,
    pub before: Money,
    pub after: Money,
    pub difference: Money,
}

/// One account as the operator's list shows it: the account and what it holds today.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountSummary {
    #[serde(flatten)]
    pub account: Account,
    /// Seats on active lots valid today.
    pub seats: u32,
    /// Invoices issued and not paid (nor cancelled): what a bank transfer may be waiting for.
    pub unpaid_invoices: u32,
    /// The day a termination takes (or took) effect, once one was given.
    pub terminates_on: Option<NaiveDate>,
}

/// One page of the operator's account list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountPage {
    pub items: Vec<AccountSummary>,
    /// Accounts matching the search in all.
    pub total: u64,
}

/// Longest search text of the account list.
pub const MAX_ACCOUNT_SEARCH: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeatAssignment {
    pub lot_id: Uuid,
    pub user_id: String,
    pub assigned_on: NaiveDate,
    pub last_active_on: Option<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEvent {
    pub id: Uuid,
    pub kind: String,
    pub account_id: Uuid,
    pub payload: serde_json::Value,
    pub due_on: NaiveDate,
}

fn number_text(year: i32, number: i64) -> String {
    format!("{year}-{number:06}")
}

// ---- the store ---------------------------------------------------------------------------

impl Store {
    /// Opens `url` (`sqlite://path?mode=rwc` or `postgres://...`) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_in_schema(url, None).await
    }

    /// Like [`Store::connect`], with every PostgreSQL connection's `search_path` set to
    /// `schema` (created if missing): lets tests share one database without colliding.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(LicensingError::Storage(format!(
                "unsupported database url scheme in {url:?}"
            )));
        };
        let schema = schema.map(str::to_string);
        if let Some(s) = &schema
            && !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(LicensingError::Storage(format!("bad schema name {s:?}")));
        }
        if let (Backend::Postgres, Some(s)) = (backend, &schema) {
            let setup = AnyPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            setup
                .execute(format!("CREATE SCHEMA IF NOT EXISTS {s}").as_str())
                .await?;
            setup.close().await;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // WAL lets readers run beside the one writer; the long busy timeout
                            // queues writers instead of failing them.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 60000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Backend::Postgres => {
                            if let Some(s) = schema {
                                conn.execute(format!("SET search_path TO {s}").as_str())
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// First statement of every money or seat transaction: serializes the account's writers.
    async fn lock_account(tx: &mut Transaction<'static, Any>, account_id: Uuid) -> Result<()> {
        let r = sqlx::query("UPDATE accounts SET version = version + 1 WHERE id = $1")
            .bind(account_id.to_string())
            .execute(&mut **tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LicensingError::UnknownAccount);
        }
        Ok(())
    }

    /// The next number of `series` in `year`, in the caller's transaction: a rollback gives the
    /// number back, a commit keeps it, so the sequence has no gaps.
    async fn next_number(
        tx: &mut Transaction<'static, Any>,
        series: &str,
        year: i32,
    ) -> Result<i64> {
        sqlx::query(
            "INSERT INTO document_counters (series, year, last_number) VALUES ($1, $2, 0) \
             ON CONFLICT (series, year) DO NOTHING",
        )
        .bind(series)
        .bind(i64::from(year))
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(
            "UPDATE document_counters SET last_number = last_number + 1 \
             WHERE series = $1 AND year = $2 RETURNING last_number",
        )
        .bind(series)
        .bind(i64::from(year))
        .fetch_one(&mut **tx)
        .await?;
        int(&row, "last_number")
    }

    // ---- accounts ----

    pub async fn create_account(&self, a: &NewAccount) -> Result<Account> {
        let id = Uuid::new_v4();
        let r = sqlx::query(
            "INSERT INTO accounts (id, name, kind, inn, resident, crm_system, crm_external_id, status, \
             postpay_allowed, card_limit_kopecks, address, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $10, $11)",
        )
        .bind(id.to_string())
        .bind(a.name.clone())
        .bind(a.kind.as_str())
        .bind(a.inn.as_ref().map(|i| i.to_string()))
        .bind(flag(a.resident))
        .bind(a.crm.system.clone())
        .bind(a.crm.external_id.clone())
        .bind(flag(a.postpay_allowed))
        .bind(a.card_limit.map(Money::kopecks))
        .bind(a.address.clone())
        .bind(now())
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(LicensingError::AccountExists {
                crm_system: a.crm.system.clone(),
                crm_external_id: a.crm.external_id.clone(),
            }),
            Err(e) => Err(e.into()),
            Ok(_) => self.account(id).await,
        }
    }

    fn account_from(row: &AnyRow) -> Result<Account> {
        let status = match text(row, "status")?.as_str() {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended {
                reason: opt_text(row, "suspension_reason")?.unwrap_or_default(),
            },
            "terminated" => AccountStatus::Terminated,
            s => return Err(corrupt("accounts.status", s)),
        };
        Ok(Account {
            id: uuid(row, "id")?,
            name: text(row, "name")?,
            kind: AccountKind::parse(&text(row, "kind")?)?,
            inn: opt_text(row, "inn")?.map(|s| Inn::parse(&s)).transpose()?,
            resident: int(row, "resident")? != 0,
            crm: CrmLink {
                system: text(row, "crm_system")?,
                external_id: text(row, "crm_external_id")?,
            },
            status,
            postpay_allowed: int(row, "postpay_allowed")? != 0,
            card_limit: opt_int(row, "card_limit_kopecks")?.map(Money::from_kopecks),
            address: opt_text(row, "address")?,
        })
    }

    /// The account as of today: a termination whose date has come reads as terminated.
    pub async fn account_on(&self, id: Uuid, today: NaiveDate) -> Result<Account> {
        Self::account_in(&self.pool, id, Some(today)).await
    }

    pub async fn account(&self, id: Uuid) -> Result<Account> {
        Self::account_in(&self.pool, id, None).await
    }

    /// Reads inside the caller's transaction: a writer holding SQLite's lock must not wait for
    /// a second pooled connection that other writers may be holding.
    async fn account_in<'e, E: Executor<'e, Database = Any>>(
        ex: E,
        id: Uuid,
        today: Option<NaiveDate>,
    ) -> Result<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(ex)
            .await?
            .ok_or(LicensingError::UnknownAccount)?;
        let mut a = Self::account_from(&row)?;
        if let Some(today) = today
            && opt_date(&row, "terminates_on")?.is_some_and(|t| t <= today)
        {
            a.status = AccountStatus::Terminated;
        }
        Ok(a)
    }

    /// A page of accounts, newest first, optionally only those whose name, INN, CRM system or
    /// CRM id contains `search` (case-insensitive) or whose id is `search`.
    ///
    /// The search runs in Rust over the few columns it needs rather than in SQL: SQLite's
    /// `LOWER` and `LIKE` fold ASCII only, so a Cyrillic name typed in lower case would never
    /// match there, and the two databases would disagree. An operator's account list is small
    /// enough (thousands, not millions) for one narrow scan per search.
    pub async fn accounts_page(
        &self,
        search: Option<&str>,
        limit: u32,
        offset: u64,
        today: NaiveDate,
    ) -> Result<AccountPage> {
        let needle = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        if needle
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_ACCOUNT_SEARCH)
        {
            return Err(LicensingError::InvalidRequest {
                field: "q",
                reason: format!("at most {MAX_ACCOUNT_SEARCH} characters"),
            });
        }
        let limit = i64::from(limit);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (rows, total) = match needle {
            None => {
                let total = int(
                    &sqlx::query("SELECT COUNT(*) AS n FROM accounts")
                        .fetch_one(&self.pool)
                        .await?,
                    "n",
                )?;
                let rows = sqlx::query(
                    "SELECT * FROM accounts ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
                )
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                (rows, u64::try_from(total).unwrap_or_default())
            }
            Some(needle) => {
                let mut matching = Vec::new();
                for r in sqlx::query(
                    "SELECT id, name, inn, crm_system, crm_external_id FROM accounts \
                     ORDER BY created_at DESC, id",
                )
                .fetch_all(&self.pool)
                .await?
                {
                    let id = text(&r, "id")?;
                    let hit = id == needle
                        || [
                            Some(text(&r, "name")?),
                            opt_text(&r, "inn")?,
                            Some(text(&r, "crm_system")?),
                            Some(text(&r, "crm_external_id")?),
                        ]
                        .into_iter()
                        .flatten()
                        .any(|field| field.to_lowercase().contains(&needle));
                    if hit {
                        matching.push(id);
                    }
                }
                let total = matching.len() as u64;
                let page: Vec<String> = matching
                    .into_iter()
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(limit).unwrap_or_default())
                    .collect();
                let mut rows = Vec::with_capacity(page.len());
                for id in &page {
                    if let Some(r) = sqlx::query("SELECT * FROM accounts WHERE id = $1")
                        .bind(id.clone())
                        .fetch_optional(&self.pool)
                        .await?
                    {
                        rows.push(r);
                    }
                }
                (rows, total)
            }
        };
        // What the listed accounts hold today, in two grouped reads for the whole page rather
        // than two per account.
        let seats = Self::counts_by_account(
            &self.pool,
            "SELECT account_id, CAST(SUM(seats) AS BIGINT) AS n FROM lots \
             WHERE status = 'active' AND starts_on <= $1 AND ends_on > $1 GROUP BY account_id",
            Some(today.to_string()),
        )
        .await?;
        let unpaid = Self::counts_by_account(
            &self.pool,
            "SELECT account_id, COUNT(*) AS n FROM invoices WHERE status = 'issued' \
             GROUP BY account_id",
            None,
        )
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut account = Self::account_from(r)?;
            let terminates_on = opt_date(r, "terminates_on")?;
            if terminates_on.is_some_and(|t| t <= today) {
                account.status = AccountStatus::Terminated;
            }
            let id = account.id.to_string();
            items.push(AccountSummary {
                seats: count(seats.get(&id).copied().unwrap_or(0)),
                unpaid_invoices: count(unpaid.get(&id).copied().unwrap_or(0)),
                account,
                terminates_on,
            });
        }
        Ok(AccountPage { items, total })
    }

    /// `account_id -> n` of a grouped count query (`$1` bound to `param` when given).
    async fn counts_by_account(
        pool: &AnyPool,
        sql: &str,
        param: Option<String>,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let mut q = sqlx::query(sql);
        if let Some(p) = param {
            q = q.bind(p);
        }
        q.fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((text(r, "account_id")?, int(r, "n")?)))
            .collect()
    }

    pub async fn account_by_crm(&self, system: &str, external_id: &str) -> Result<Account> {
        let row =
            sqlx::query("SELECT * FROM accounts WHERE crm_system = $1 AND crm_external_id = $2")
                .bind(system)
                .bind(external_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(LicensingError::UnknownAccount)?;
        Self::account_from(&row)
    }

    pub async fn set_suspension(&self, id: Uuid, reason: Option<&str>) -> Result<Account> {
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, id).await?;
        sqlx::query(
            "UPDATE accounts SET status = CASE WHEN status = 'terminated' THEN status ELSE $2 END, \
             suspension_reason = $3 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(if reason.is_some() {
            "suspended"
        } else {
            "active"
        })
        .bind(reason.map(str::to_string))
        .execute(&mut *tx)
        .await?;
        let a = Self::account_in(&mut *tx, id, None).await?;
        tx.commit().await?;
        Ok(a)
    }

    // ---- tariffs and promotions ----

    pub async fn upsert_tariff(&self, t: &Tariff) -> Result<()> {
        t.validate()?;
        // Price and term are fixed once sold: a changed offer is a new tariff code (4.3).
        sqlx::query(
            "INSERT INTO tariffs (code, name, term_months, price_kopecks, vat_mode, trial, archived, features, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, archived = excluded.archived, \
             features = excluded.features",
        )
        .bind(t.code.to_string())
        .bind(t.name.clone())
        .bind(i64::from(t.term_months))
        .bind(t.price_per_seat.kopecks())
        .bind(t.vat.as_str())
        .bind(flag(t.trial))
        .bind(flag(t.archived))
        .bind(to_json(&t.features)?)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn archive_tariff(&self, code: &TariffCode) -> Result<()> {
        let r = sqlx::query("UPDATE tariffs SET archived = 1 WHERE code = $1")
            .bind(code.to_string())
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LicensingError::UnknownTariff {
                code: code.to_string(),
            });
        }
        Ok(())
    }

    fn tariff_from(row: &AnyRow) -> Result<Tariff> {
        let code = text(row, "code")?;
        Ok(Tariff {
            code: TariffCode::parse(&code)?,
            name: text(row, "name")?,
            term_months: u32::try_from(int(row, "term_months")?)
                .map_err(|_| corrupt("term_months", &code))?,
            price_per_seat: money(row, "price_kopecks")?,
            vat: VatMode::parse(&text(row, "vat_mode")?)?,
            features: json::<Features>(row, "features")?,
            trial: int(row, "trial")? != 0,
            archived: int(row, "archived")? != 0,
        })
    }

    pub async fn tariffs(&self) -> Result<Vec<Tariff>> {
        Self::tariffs_in(&self.pool).await
    }

    async fn tariffs_in<'e, E: Executor<'e, Database = Any>>(ex: E) -> Result<Vec<Tariff>> {
        sqlx::query("SELECT * FROM tariffs ORDER BY code")
            .fetch_all(ex)
            .await?
            .iter()
            .map(Self::tariff_from)
            .collect()
    }

    pub async fn create_promotion(&self, p: &Promotion) -> Result<()> {
        p.validate()?;
        let r = sqlx::query(
            "INSERT INTO promotions (id, name, code, discount, combinable, priority, valid_from, valid_until, \
             tariffs, order_types, total_limit, per_account_limit, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(p.id.to_string())
        .bind(p.name.clone())
        .bind(p.code.as_ref().map(|c| c.trim().to_uppercase()))
        .bind(to_json(&p.discount)?)
        .bind(flag(p.combinable))
        .bind(i64::from(p.priority))
        .bind(p.valid_from.map(|d| d.to_string()))
        .bind(p.valid_until.map(|d| d.to_string()))
        .bind(to_json(&p.tariffs)?)
        .bind(to_json(&p.order_types)?)
        .bind(p.total_limit.map(i64::from))
        .bind(p.per_account_limit.map(i64::from))
        .bind(flag(p.active))
        .bind(now())
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(LicensingError::InvalidRequest {
                field: "code",
                reason: "a promotion with this code already exists".into(),
            }),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    fn promotion_from(row: &AnyRow) -> Result<Promotion> {
        Ok(Promotion {
            id: uuid(row, "id")?,
            name: text(row, "name")?,
            code: opt_text(row, "code")?,
            discount: json(row, "discount")?,
            combinable: int(row, "combinable")? != 0,
            priority: i32::try_from(int(row, "priority")?).unwrap_or(i32::MAX),
            valid_from: opt_date(row, "valid_from")?,
            valid_until: opt_date(row, "valid_until")?,
            tariffs: json(row, "tariffs")?,
            order_types: json(row, "order_types")?,
            total_limit: opt_int(row, "total_limit")?.map(count),
            per_account_limit: opt_int(row, "per_account_limit")?.map(count),
            active: int(row, "active")? != 0,
        })
    }

    pub async fn promotions(&self) -> Result<Vec<Promotion>> {
        sqlx::query("SELECT * FROM promotions ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::promotion_from)
            .collect()
    }

    // ---- lots and seats ----

    fn lot_from(row: &AnyRow) -> Result<Lot> {
        Ok(Lot {
            id: uuid(row, "id")?,
            account_id: uuid(row, "account_id")?,
            tariff: TariffCode::parse(&text(row, "tariff_code")?)?,
            seats: Seats::new(int(row, "seats")?)?,
            starts_on: date(row, "starts_on")?,
            ends_on: date(row, "ends_on")?,
            status: LotStatus::parse(&text(row, "status")?)?,
            trial: int(row, "trial")? != 0,
        })
    }

    pub async fn lots(&self, account_id: Uuid) -> Result<Vec<Lot>> {
        sqlx::query("SELECT * FROM lots WHERE account_id = $1 ORDER BY starts_on, id")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::lot_from)
            .collect()
    }

    pub async fn lot(&self, account_id: Uuid, lot_id: Uuid) -> Result<Lot> {
        Self::lot_in(&self.pool, account_id, lot_id).await
    }

    /// A lot of another account is reported as unknown: ids do not leak across accounts.
    async fn lot_in<'e, E: Executor<'e, Database = Any>>(
        ex: E,
        account_id: Uuid,
        lot_id: Uuid,
    ) -> Result<Lot> {
        let row = sqlx::query("SELECT * FROM lots WHERE id = $1 AND account_id = $2")
            .bind(lot_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(ex)
            .await?
            .ok_or_else(|| LicensingError::UnknownLicense {
                license_id: lot_id.to_string(),
            })?;
        Self::lot_from(&row)
    }

    pub async fn seats(&self, account_id: Uuid) -> Result<Vec<SeatAssignment>> {
        sqlx::query("SELECT * FROM seat_assignments WHERE account_id = $1 ORDER BY user_id")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SeatAssignment {
                    lot_id: uuid(r, "lot_id")?,
                    user_id: text(r, "user_id")?,
                    assigned_on: date(r, "assigned_on")?,
                    last_active_on: opt_date(r, "last_active_on")?,
                })
            })
            .collect()
    }

    pub async fn seat_of(&self, account_id: Uuid, user_id: &str) -> Result<Option<Uuid>> {
        let row = sqlx::query(
            "SELECT lot_id FROM seat_assignments WHERE account_id = $1 AND user_id = $2",
        )
        .bind(account_id.to_string())
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| uuid(&r, "lot_id")).transpose()
    }

    pub async fn assign_seat(
        &self,
        account_id: Uuid,
        lot_id: Uuid,
        user_id: &str,
        today: NaiveDate,
    ) -> Result<SeatAssignment> {
        if user_id.is_empty() || user_id.len() > 200 {
            return Err(LicensingError::InvalidRequest {
                field: "user_id",
                reason: "1 to 200 characters".into(),
            });
        }
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let lot = Self::lot_in(&mut *tx, account_id, lot_id).await?;
        if !lot.grants_access_on(today) {
            return Err(LicensingError::LicenseNotActive {
                license_id: lot_id.to_string(),
                status: lot.status_on(today).to_string(),
            });
        }
        let held = sqlx::query(
            "SELECT lot_id FROM seat_assignments WHERE account_id = $1 AND user_id = $2",
        )
        .bind(account_id.to_string())
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_some() {
            return Err(LicensingError::SeatAlreadyAssigned {
                user_id: user_id.to_string(),
            });
        }
        let r = sqlx::query("UPDATE lots SET seats_assigned = seats_assigned + 1 WHERE id = $1 AND seats_assigned < seats")
            .bind(lot_id.to_string())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LicensingError::NoFreeSeat {
                license_id: lot_id.to_string(),
                seats: lot.seats.get(),
            });
        }
        sqlx::query("INSERT INTO seat_assignments (account_id, lot_id, user_id, assigned_on) VALUES ($1, $2, $3, $4)")
            .bind(account_id.to_string())
            .bind(lot_id.to_string())
            .bind(user_id)
            .bind(today.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SeatAssignment {
            lot_id,
            user_id: user_id.to_string(),
            assigned_on: today,
            last_active_on: None,
        })
    }

    pub async fn reclaim_seat(&self, account_id: Uuid, user_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let row = sqlx::query(
            "DELETE FROM seat_assignments WHERE account_id = $1 AND user_id = $2 RETURNING lot_id",
        )
        .bind(account_id.to_string())
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| LicensingError::NoSeat {
            user_id: user_id.to_string(),
        })?;
        sqlx::query("UPDATE lots SET seats_assigned = seats_assigned - 1 WHERE id = $1 AND seats_assigned > 0")
            .bind(text(&row, "lot_id")?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Seats of the account unused for [`INACTIVE_DAYS`] or more on `today` (a seat never used
    /// counts from its assignment): the monthly review's list (6.2), computed live.
    pub async fn inactive_seats(
        &self,
        account_id: Uuid,
        today: NaiveDate,
    ) -> Result<Vec<SeatAssignment>> {
        sqlx::query(
            "SELECT * FROM seat_assignments WHERE account_id = $1 \
             AND COALESCE(last_active_on, assigned_on) <= $2 ORDER BY user_id",
        )
        .bind(account_id.to_string())
        .bind(add_days(today, -INACTIVE_DAYS).to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(SeatAssignment {
                lot_id: uuid(r, "lot_id")?,
                user_id: text(r, "user_id")?,
                assigned_on: date(r, "assigned_on")?,
                last_active_on: opt_date(r, "last_active_on")?,
            })
        })
        .collect()
    }

    /// Reclaims the user's seat only if it is still inactive on `today`: the condition is part
    /// of the delete, so a user who hosted since the review was read keeps their seat. Returns
    /// the lot of the reclaimed seat, or `None` when the user holds no seat or used it lately.
    pub async fn reclaim_inactive_seat(
        &self,
        account_id: Uuid,
        user_id: &str,
        today: NaiveDate,
    ) -> Result<Option<Uuid>> {
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let row = sqlx::query(
            "DELETE FROM seat_assignments WHERE account_id = $1 AND user_id = $2 \
             AND COALESCE(last_active_on, assigned_on) <= $3 RETURNING lot_id",
        )
        .bind(account_id.to_string())
        .bind(user_id)
        .bind(add_days(today, -INACTIVE_DAYS).to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let lot = text(&row, "lot_id")?;
        sqlx::query("UPDATE lots SET seats_assigned = seats_assigned - 1 WHERE id = $1 AND seats_assigned > 0")
            .bind(&lot)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(uuid(&row, "lot_id")?))
    }

    /// Marks that the user used their seat on `day`, for the inactive-seat review.
    pub async fn record_activity(
        &self,
        account_id: Uuid,
        user_id: &str,
        day: NaiveDate,
    ) -> Result<()> {
        sqlx::query("UPDATE seat_assignments SET last_active_on = $3 WHERE account_id = $1 AND user_id = $2")
            .bind(account_id.to_string())
            .bind(user_id)
            .bind(day.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- quotes and orders ----

    async fn quote_in(
        tx: &mut Transaction<'static, Any>,
        account: &Account,
        spec: &OrderSpec,
        today: NaiveDate,
    ) -> Result<Quote> {
        let tariffs = Self::tariffs_in(&mut **tx).await?;
        let lot = match spec.license_id {
            Some(id) => Some(Self::lot_in(&mut **tx, account.id, id).await?),
            None => None,
        };
        let promotions: Vec<Promotion> =
            sqlx::query("SELECT * FROM promotions WHERE active = 1 ORDER BY id")
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(Self::promotion_from)
                .collect::<Result<_>>()?;
        let usage: Vec<PromoUsage> = sqlx::query(
            "SELECT p.id AS id, p.redeemed AS total, \
             (SELECT COUNT(*) FROM promo_redemptions r WHERE r.promotion_id = p.id AND r.account_id = $1) AS mine \
             FROM promotions p WHERE p.active = 1",
        )
        .bind(account.id.to_string())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok(PromoUsage { promotion_id: uuid(r, "id")?, total: count(int(r, "total")?), by_account: count(int(r, "mine")?) }))
        .collect::<Result<_>>()?;
        let paid = sqlx::query("SELECT CAST(COALESCE(SUM(amount_kopecks), 0) AS BIGINT) AS paid FROM payments WHERE account_id = $1")
            .bind(account.id.to_string())
            .fetch_one(&mut **tx)
            .await?;
        let trial =
            sqlx::query("SELECT COUNT(*) AS n FROM lots WHERE account_id = $1 AND trial = 1")
                .bind(account.id.to_string())
                .fetch_one(&mut **tx)
                .await?;
        quote::compute(
            spec,
            &QuoteContext {
                account,
                today,
                tariffs: &tariffs,
                lot: lot.as_ref(),
                promotions: &promotions,
                usage: &usage,
                paid_total: money(&paid, "paid")?,
                trial_used: int(&trial, "n")? > 0,
            },
        )
    }

    /// A quote reads only, but inside a transaction so it sees one consistent state.
    pub async fn quote(
        &self,
        account_id: Uuid,
        req: &QuoteRequest,
        today: NaiveDate,
    ) -> Result<Quote> {
        let spec = OrderSpec::parse(req, today)?;
        let account = self.account_on(account_id, today).await?;
        let mut tx = self.pool.begin().await?;
        let q = Self::quote_in(&mut tx, &account, &spec, today).await;
        tx.rollback().await?;
        q
    }

    fn order_from(row: &AnyRow) -> Result<OrderRecord> {
        Ok(OrderRecord {
            id: uuid(row, "id")?,
            account_id: uuid(row, "account_id")?,
            idempotency_key: text(row, "idempotency_key")?,
            status: OrderStatus::parse(&text(row, "status")?)?,
            placed_on: date(row, "placed_on")?,
            quote: json(row, "quote")?,
        })
    }

    fn invoice_from(row: &AnyRow) -> Result<Invoice> {
        let year = i32::try_from(int(row, "year")?).unwrap_or_default();
        let number = int(row, "number")?;
        Ok(Invoice {
            id: uuid(row, "id")?,
            account_id: uuid(row, "account_id")?,
            order_id: uuid(row, "order_id")?,
            year,
            number,
            number_text: number_text(year, number),
            issued_on: date(row, "issued_on")?,
            amount: money(row, "amount_kopecks")?,
            vat: VatMode::parse(&text(row, "vat_mode")?)?,
            status: text(row, "status")?,
            due_on: opt_date(row, "due_on")?,
        })
    }

    async fn placed_order_in(
        tx: &mut Transaction<'static, Any>,
        order_row: &AnyRow,
    ) -> Result<PlacedOrder> {
        let order = Self::order_from(order_row)?;
        let invoice = sqlx::query("SELECT * FROM invoices WHERE order_id = $1")
            .bind(order.id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| Self::invoice_from(&r))
            .transpose()?;
        let granted_lot = sqlx::query("SELECT lot_id FROM lot_grants WHERE order_id = $1 LIMIT 1")
            .bind(order.id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| uuid(&r, "lot_id"))
            .transpose()?;
        Ok(PlacedOrder {
            order,
            invoice,
            granted_lot,
        })
    }

    /// Places an order under an Idempotency-Key: the same key with the same request returns the
    /// first result; with a different request it is refused. Pricing, promo redemption and the
    /// invoice number happen in one transaction.
    pub async fn place_order(
        &self,
        account_id: Uuid,
        idempotency_key: &str,
        req: &QuoteRequest,
        today: NaiveDate,
    ) -> Result<PlacedOrder> {
        if idempotency_key.is_empty() || idempotency_key.len() > 200 {
            return Err(LicensingError::InvalidRequest {
                field: "Idempotency-Key",
                reason: "1 to 200 characters".into(),
            });
        }
        let spec = OrderSpec::parse(req, today)?;
        let request_text = to_json(req)?;
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        if let Some(row) =
            sqlx::query("SELECT * FROM orders WHERE account_id = $1 AND idempotency_key = $2")
                .bind(account_id.to_string())
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await?
        {
            if text(&row, "request")? != request_text {
                return Err(LicensingError::IdempotencyConflict {
                    key: idempotency_key.to_string(),
                });
            }
            let placed = Self::placed_order_in(&mut tx, &row).await;
            tx.rollback().await?;
            return placed;
        }
        let account = Self::account_in(&mut *tx, account_id, Some(today)).await?;
        let q = Self::quote_in(&mut tx, &account, &spec, today).await?;

        if let Some(lot_id) = spec.license_id {
            if spec.order_type.renews()
                && let Some(open) = sqlx::query(
                    "SELECT id FROM orders WHERE lot_id = $1 AND status = 'pending_payment' AND kind <> 'top_up'",
                )
                .bind(lot_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
            {
                return Err(LicensingError::OrderInProgress { license_id: lot_id.to_string(), order_id: text(&open, "id")? });
            }
            if spec.order_type == OrderType::TopUp {
                Self::check_top_up_room(&mut tx, lot_id, &q).await?;
            }
            if let (OrderType::RenewalWithReduction, Some(seats)) = (spec.order_type, spec.seats) {
                let row = sqlx::query("SELECT seats_assigned FROM lots WHERE id = $1")
                    .bind(lot_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                let assigned = count(int(&row, "seats_assigned")?);
                if assigned > seats.get() {
                    return Err(LicensingError::SeatsInUse {
                        assigned,
                        requested: seats.get(),
                    });
                }
            }
        }

        let order_id = Uuid::new_v4();
        let r = sqlx::query(
            "INSERT INTO orders (id, account_id, idempotency_key, request, kind, lot_id, tariff_code, payment_terms, \
             channel, start_date, quote, subtotal_kopecks, total_kopecks, status, placed_on, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending_payment', $14, $15)",
        )
        .bind(order_id.to_string())
        .bind(account_id.to_string())
        .bind(idempotency_key)
        .bind(request_text)
        .bind(spec.order_type.as_str())
        .bind(spec.license_id.map(|l| l.to_string()))
        .bind(q.tariff.to_string())
        .bind(spec.payment_terms.as_str())
        .bind(spec.channel.as_str())
        .bind(spec.start_date.to_string())
        .bind(to_json(&q)?)
        .bind(q.subtotal.kopecks())
        .bind(q.total.kopecks())
        .bind(today.to_string())
        .bind(now())
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if is_unique_violation(&e) {
                LicensingError::OrderInProgress {
                    license_id: spec.license_id.map(|l| l.to_string()).unwrap_or_default(),
                    order_id: String::new(),
                }
            } else {
                e.into()
            });
        }

        // Limited promotions are redeemed when the order is placed, under a conditional update,
        // so concurrent orders can never exceed the total limit.
        for d in &q.discounts {
            let r = sqlx::query(
                "UPDATE promotions SET redeemed = redeemed + 1 WHERE id = $1 \
                 AND (total_limit IS NULL OR redeemed < total_limit)",
            )
            .bind(d.promotion_id.to_string())
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(LicensingError::PromoCodeExhausted {
                    code: d.code.clone().unwrap_or_else(|| d.name.clone()),
                });
            }
            sqlx::query("INSERT INTO promo_redemptions (id, promotion_id, account_id, order_id, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(Uuid::new_v4().to_string())
                .bind(d.promotion_id.to_string())
                .bind(account_id.to_string())
                .bind(order_id.to_string())
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }

        let tariff = Self::tariffs_in(&mut *tx)
            .await?
            .into_iter()
            .find(|t| t.code == q.tariff)
            .ok_or_else(|| LicensingError::UnknownTariff {
                code: q.tariff.to_string(),
            })?;
        let mut invoice = None;
        let mut granted_lot = None;
        if q.total == Money::ZERO {
            // Nothing to pay (a trial, or fully discounted): access is granted at once.
            granted_lot = Some(
                Self::grant_in(&mut tx, account_id, order_id, &q, today, OrderStatus::Paid).await?,
            );
        } else {
            let year = today.year();
            let number = Self::next_number(&mut tx, "invoice", year).await?;
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO invoices (id, account_id, order_id, year, number, issued_on, amount_kopecks, vat_mode, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'issued')",
            )
            .bind(id.to_string())
            .bind(account_id.to_string())
            .bind(order_id.to_string())
            .bind(i64::from(year))
            .bind(number)
            .bind(today.to_string())
            .bind(q.total.kopecks())
            .bind(tariff.vat.as_str())
            .execute(&mut *tx)
            .await?;
            invoice = Some(Invoice {
                id,
                account_id,
                order_id,
                year,
                number,
                number_text: number_text(year, number),
                issued_on: today,
                amount: q.total,
                vat: tariff.vat,
                status: "issued".into(),
                due_on: None,
            });
        }
        tx.commit().await?;
        let status = if granted_lot.is_some() {
            OrderStatus::Paid
        } else {
            OrderStatus::PendingPayment
        };
        Ok(PlacedOrder {
            order: OrderRecord {
                id: order_id,
                account_id,
                idempotency_key: idempotency_key.to_string(),
                status,
                placed_on: today,
                quote: q,
            },
            invoice,
            granted_lot,
        })
    }

    /// Top-ups of one lot are not exclusive: each is priced on the same lot end and pays for
    /// its own seats, so two of them are just a larger top-up split in two (unlike renewals,
    /// which replace the lot and so would grant it twice). What they must not do together is
    /// push the lot past [`Seats::MAX`]: the lot's seats, the seats of every unpaid top-up of it
    /// and this one must fit, checked under the account lock so concurrent orders see each
    /// other. (Signed postpay top-ups are already in the lot's count.)
    async fn check_top_up_room(
        tx: &mut Transaction<'static, Any>,
        lot_id: Uuid,
        q: &Quote,
    ) -> Result<()> {
        let lot = sqlx::query("SELECT seats FROM lots WHERE id = $1")
            .bind(lot_id.to_string())
            .fetch_one(&mut **tx)
            .await?;
        let mut total = int(&lot, "seats")?;
        for r in sqlx::query(
            "SELECT quote FROM orders WHERE lot_id = $1 AND kind = 'top_up' AND status = 'pending_payment'",
        )
        .bind(lot_id.to_string())
        .fetch_all(&mut **tx)
        .await?
        {
            let open: Quote = json(&r, "quote")?;
            total += open
                .lines
                .iter()
                .map(|l| i64::from(l.seats.get()))
                .sum::<i64>();
        }
        total += q
            .lines
            .iter()
            .map(|l| i64::from(l.seats.get()))
            .sum::<i64>();
        if total > i64::from(Seats::MAX) {
            return Err(LicensingError::InvalidSeats {
                seats: total,
                reason: format!(
                    "the lot with its unpaid top-ups would hold {total} seats, at most {} are possible",
                    Seats::MAX
                ),
            });
        }
        Ok(())
    }

    pub async fn orders(&self, account_id: Uuid) -> Result<Vec<OrderRecord>> {
        sqlx::query("SELECT * FROM orders WHERE account_id = $1 ORDER BY created_at, id")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::order_from)
            .collect()
    }

    /// Cancels an unpaid order: its invoice keeps its number (marked cancelled, so the sequence
    /// stays gap-free) and limited promotions get their redemption back.
    pub async fn cancel_order(&self, account_id: Uuid, order_id: Uuid) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let r = sqlx::query("UPDATE orders SET status = 'cancelled' WHERE id = $1 AND account_id = $2 AND status = 'pending_payment'")
            .bind(order_id.to_string())
            .bind(account_id.to_string())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LicensingError::NotFound {
                what: "unpaid order",
            });
        }
        sqlx::query("UPDATE invoices SET status = 'cancelled' WHERE order_id = $1")
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE promotions SET redeemed = redeemed - 1 WHERE id IN \
             (SELECT promotion_id FROM promo_redemptions WHERE order_id = $1) AND redeemed > 0",
        )
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM promo_redemptions WHERE order_id = $1")
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- payments and grants ----

    /// Creates or changes the lots an order grants on `grant`, in the caller's transaction.
    /// Returns the lot that now holds the seats.
    async fn grant_in(
        tx: &mut Transaction<'static, Any>,
        account_id: Uuid,
        order_id: Uuid,
        q: &Quote,
        grant: NaiveDate,
        status_after: OrderStatus,
    ) -> Result<Uuid> {
        let tariff = Self::tariffs_in(&mut **tx)
            .await?
            .into_iter()
            .find(|t| t.code == q.tariff)
            .ok_or_else(|| LicensingError::UnknownTariff {
                code: q.tariff.to_string(),
            })?;
        let old = match q.license_id {
            Some(id) => Some(Self::lot_in(&mut **tx, account_id, id).await?),
            None => None,
        };
        let inactive = |lot: &Lot| LicensingError::LicenseNotActive {
            license_id: lot.id.to_string(),
            status: lot.status.to_string(),
        };
        let (lot_id, ends_on, periods): (Uuid, NaiveDate, Vec<(LineKind, u32, NaiveDate)>) = match (
            q.order_type,
            &old,
        ) {
            (OrderType::TopUp, Some(lot)) => {
                let add: u32 = q.lines.iter().map(|l| l.seats.get()).sum();
                // Several top-ups of one lot may be open at once (each pays for its own seats);
                // placing checks their sum against the lot limit, and this re-check under the
                // account lock keeps the limit even if the lot changed since.
                lot.seats.checked_add(Seats::new(i64::from(add))?)?;
                let r = sqlx::query("UPDATE lots SET seats = seats + $2 WHERE id = $1 AND status = 'active' AND ends_on > $3")
                    .bind(lot.id.to_string())
                    .bind(i64::from(add))
                    .bind(grant.to_string())
                    .execute(&mut **tx)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(inactive(lot));
                }
                (
                    lot.id,
                    lot.ends_on,
                    vec![(LineKind::TopUp, add, lot.ends_on)],
                )
            }
            (OrderType::Initial, _) => {
                // A purchase ends any running trial (4.5).
                sqlx::query(
                    "UPDATE lots SET status = 'superseded', ends_on = $2 \
                     WHERE account_id = $1 AND trial = 1 AND status = 'active' AND ends_on > $2",
                )
                .bind(account_id.to_string())
                .bind(grant.to_string())
                .execute(&mut **tx)
                .await?;
                let end = pricing::initial_end(grant, tariff.term_months);
                let seats = q.lines.iter().map(|l| l.seats.get()).sum();
                let id =
                    Self::insert_lot(tx, account_id, &tariff, seats, grant, end, order_id, None)
                        .await?;
                (id, end, vec![(LineKind::Initial, seats, end)])
            }
            (kind, Some(lot)) if kind.renews() => {
                let end = if kind == OrderType::RenewalWithReduction {
                    pricing::reduction_end(grant, tariff.term_months)
                } else {
                    pricing::renewal_end(grant, tariff.term_months, lot.ends_on)
                };
                let seats: u32 = q.lines.iter().map(|l| l.seats.get()).sum();
                // The conditional update is what makes a second grant of the same lot impossible.
                let r = sqlx::query(
                    "UPDATE lots SET status = 'superseded', ends_on = CASE WHEN ends_on > $2 THEN $2 ELSE ends_on END \
                     WHERE id = $1 AND status = 'active'",
                )
                .bind(lot.id.to_string())
                .bind(grant.to_string())
                .execute(&mut **tx)
                .await?;
                if r.rows_affected() == 0 {
                    return Err(inactive(lot));
                }
                let assigned = sqlx::query("SELECT seats_assigned FROM lots WHERE id = $1")
                    .bind(lot.id.to_string())
                    .fetch_one(&mut **tx)
                    .await?;
                let assigned = count(int(&assigned, "seats_assigned")?);
                if assigned > seats {
                    return Err(LicensingError::SeatsInUse {
                        assigned,
                        requested: seats,
                    });
                }
                let id = Self::insert_lot(
                    tx,
                    account_id,
                    &tariff,
                    seats,
                    grant,
                    end,
                    order_id,
                    Some(lot.id),
                )
                .await?;
                sqlx::query("UPDATE seat_assignments SET lot_id = $2 WHERE lot_id = $1")
                    .bind(lot.id.to_string())
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE lots SET seats_assigned = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(i64::from(assigned))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE lots SET seats_assigned = 0 WHERE id = $1")
                    .bind(lot.id.to_string())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM outbox_events WHERE subject_id = $1 AND delivered_at IS NULL AND kind = 'lot_ending'")
                    .bind(lot.id.to_string())
                    .execute(&mut **tx)
                    .await?;
                let periods = q
                    .lines
                    .iter()
                    .map(|l| (l.kind, l.seats.get(), end))
                    .collect();
                (id, end, periods)
            }
            _ => {
                return Err(LicensingError::UnknownLicense {
                    license_id: String::new(),
                });
            }
        };

        // The paid amount is spread over the lines in proportion (the last takes the rest), so
        // a later pro-rata refund starts from what was actually paid.
        let mut left = q.total;
        let n = periods.len();
        for (i, ((kind, seats, end), line)) in periods.into_iter().zip(&q.lines).enumerate() {
            let amount = if i + 1 == n || q.subtotal == Money::ZERO {
                left
            } else {
                Money::round_half_up(line.amount.amount() * q.total.amount() / q.subtotal.amount())
            };
            left = left - amount;
            sqlx::query(
                "INSERT INTO lot_grants (id, lot_id, order_id, kind, seats, amount_kopecks, starts_on, ends_on) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(lot_id.to_string())
            .bind(order_id.to_string())
            .bind(kind.as_str())
            .bind(i64::from(seats))
            .bind(amount.kopecks())
            .bind(grant.to_string())
            .bind(end.to_string())
            .execute(&mut **tx)
            .await?;
        }

        for days in REMINDER_DAYS {
            let due = add_days(ends_on, -days);
            if due < grant {
                continue;
            }
            let payload =
                serde_json::json!({"license_id": lot_id, "ends_on": ends_on, "days_left": days});
            sqlx::query(
                "INSERT INTO outbox_events (id, kind, account_id, subject_id, payload, dedup_key, due_on, created_at) \
                 VALUES ($1, 'lot_ending', $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(account_id.to_string())
            .bind(lot_id.to_string())
            .bind(payload.to_string())
            .bind(format!("lot_ending:{lot_id}:{ends_on}:{days}"))
            .bind(due.to_string())
            .bind(now())
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query("UPDATE orders SET status = $2 WHERE id = $1")
            .bind(order_id.to_string())
            .bind(status_after.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(lot_id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_lot(
        tx: &mut Transaction<'static, Any>,
        account_id: Uuid,
        tariff: &Tariff,
        seats: u32,
        starts_on: NaiveDate,
        ends_on: NaiveDate,
        order_id: Uuid,
        previous: Option<Uuid>,
    ) -> Result<Uuid> {
        Seats::new(i64::from(seats))?;
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO lots (id, account_id, tariff_code, seats, starts_on, ends_on, status, trial, order_id, previous_lot_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10)",
        )
        .bind(id.to_string())
        .bind(account_id.to_string())
        .bind(tariff.code.to_string())
        .bind(i64::from(seats))
        .bind(starts_on.to_string())
        .bind(ends_on.to_string())
        .bind(flag(tariff.trial))
        .bind(order_id.to_string())
        .bind(previous.map(|p| p.to_string()))
        .bind(now())
        .execute(&mut **tx)
        .await?;
        Ok(id)
    }

    fn payment_from(row: &AnyRow) -> Result<Payment> {
        let deadline = date(row, "grant_deadline")?;
        let granted = date(row, "granted_on")?;
        Ok(Payment {
            id: uuid(row, "id")?,
            invoice_id: uuid(row, "invoice_id")?,
            method: text(row, "method")?,
            amount: money(row, "amount_kopecks")?,
            paid_on: date(row, "paid_on")?,
            grant_deadline: deadline,
            granted_on: granted,
            granted_late: granted > deadline,
            lot_id: uuid(row, "lot_id")?,
            reference: opt_text(row, "reference")?,
        })
    }

    /// Registers a payment of an invoice and grants access at once (5.2.3), in one transaction:
    /// payment, lot changes, seat moves, transfer document and reminders commit together.
    #[allow(clippy::too_many_arguments)]
    pub async fn register_payment(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        idempotency_key: &str,
        method: PaymentMethod,
        amount: Money,
        paid_on: NaiveDate,
        today: NaiveDate,
        card_limit: Money,
        calendar: &BusinessCalendar,
    ) -> Result<Payment> {
        self.register_referenced_payment(
            account_id,
            invoice_id,
            idempotency_key,
            method,
            amount,
            paid_on,
            None,
            today,
            card_limit,
            calendar,
        )
        .await
    }

    /// [`Store::register_payment`] with the bank's reference of the transfer, kept with the
    /// payment so the operator can match it to the bank statement. A retry with the same
    /// `Idempotency-Key` returns the first registration, reference included.
    #[allow(clippy::too_many_arguments)]
    pub async fn register_referenced_payment(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        idempotency_key: &str,
        method: PaymentMethod,
        amount: Money,
        paid_on: NaiveDate,
        reference: Option<&str>,
        today: NaiveDate,
        card_limit: Money,
        calendar: &BusinessCalendar,
    ) -> Result<Payment> {
        if reference
            .is_some_and(|r| r.trim().is_empty() || r.chars().count() > MAX_PAYMENT_REFERENCE)
        {
            return Err(LicensingError::InvalidRequest {
                field: "reference",
                reason: format!("1 to {MAX_PAYMENT_REFERENCE} characters"),
            });
        }
        let reference = reference.map(str::trim);
        if idempotency_key.is_empty() || idempotency_key.len() > 200 {
            return Err(LicensingError::InvalidRequest {
                field: "Idempotency-Key",
                reason: "1 to 200 characters".into(),
            });
        }
        if paid_on > today {
            return Err(LicensingError::InvalidRequest {
                field: "paid_on",
                reason: "cannot be in the future".into(),
            });
        }
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        if let Some(row) =
            sqlx::query("SELECT * FROM payments WHERE account_id = $1 AND idempotency_key = $2")
                .bind(account_id.to_string())
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await?
        {
            let p = Self::payment_from(&row)?;
            tx.rollback().await?;
            if p.invoice_id != invoice_id || p.amount != amount {
                return Err(LicensingError::IdempotencyConflict {
                    key: idempotency_key.to_string(),
                });
            }
            return Ok(p);
        }
        let inv_row = sqlx::query("SELECT * FROM invoices WHERE id = $1 AND account_id = $2")
            .bind(invoice_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(LicensingError::NotFound { what: "invoice" })?;
        let invoice = Self::invoice_from(&inv_row)?;
        match invoice.status.as_str() {
            "issued" => {}
            "paid" => {
                return Err(LicensingError::InvoiceAlreadyPaid {
                    number: invoice.number_text,
                });
            }
            s => {
                return Err(LicensingError::InvoiceNotPayable {
                    number: invoice.number_text,
                    status: s.to_string(),
                });
            }
        }
        if amount != invoice.amount {
            return Err(LicensingError::PaymentAmountMismatch {
                expected: invoice.amount,
                got: amount,
            });
        }
        let account = Self::account_in(&mut *tx, account_id, None).await?;
        if method == PaymentMethod::Card {
            if !account.kind.may_pay_by_card() {
                return Err(LicensingError::CardNotAllowed {
                    reason: "legal entities pay invoices by bank transfer (4.7)".into(),
                });
            }
            let limit = account.card_limit.unwrap_or(card_limit);
            if amount > limit {
                return Err(LicensingError::CardNotAllowed {
                    reason: format!("the card limit is {limit} RUB"),
                });
            }
        }
        let order_row = sqlx::query("SELECT * FROM orders WHERE id = $1")
            .bind(invoice.order_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let order = Self::order_from(&order_row)?;
        let (grant, lot_id, deadline) = if order.status == OrderStatus::Signed {
            // A signed postpay order was granted at its signing (5.1): the payment settles the
            // invoice and grants nothing more; the grant date and deadline are the signature's.
            let sig = sqlx::query("SELECT * FROM order_signatures WHERE order_id = $1")
                .bind(order.id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("UPDATE orders SET status = 'paid' WHERE id = $1 AND status = 'signed'")
                .bind(order.id.to_string())
                .execute(&mut *tx)
                .await?;
            (
                date(&sig, "signed_on")?,
                uuid(&sig, "lot_id")?,
                date(&sig, "grant_deadline")?,
            )
        } else {
            // Prepay, or a postpay order paid before it was signed: the money is there, so
            // access is granted now rather than deferred to a signature (5.2.3).
            let grant = today;
            let lot_id = Self::grant_in(
                &mut tx,
                account_id,
                order.id,
                &order.quote,
                grant,
                OrderStatus::Paid,
            )
            .await?;
            let base = if order.quote.payment_terms == PaymentTerms::Postpay {
                order.placed_on
            } else {
                paid_on
            };
            let deadline = calendar
                .add_business_days(base, order.quote.order_type.grant_deadline_business_days());
            (grant, lot_id, deadline)
        };
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO payments (id, account_id, invoice_id, idempotency_key, method, amount_kopecks, paid_on, \
             grant_deadline, granted_on, lot_id, created_at, reference) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id.to_string())
        .bind(account_id.to_string())
        .bind(invoice_id.to_string())
        .bind(idempotency_key)
        .bind(method.as_str())
        .bind(amount.kopecks())
        .bind(paid_on.to_string())
        .bind(deadline.to_string())
        .bind(grant.to_string())
        .bind(lot_id.to_string())
        .bind(now())
        .bind(reference.map(str::to_owned))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE invoices SET status = 'paid' WHERE id = $1")
            .bind(invoice_id.to_string())
            .execute(&mut *tx)
            .await?;
        // 3.2.5: a UPD for corporate clients, a one-sided act otherwise; accepted after 5
        // business days without a reasoned objection (3.2.6).
        let kind = if account.kind.is_corporate() {
            "upd"
        } else {
            "act"
        };
        let year = today.year();
        let number = Self::next_number(&mut tx, "transfer", year).await?;
        sqlx::query(
            "INSERT INTO transfer_documents (id, account_id, order_id, invoice_id, kind, year, number, issued_on, \
             grant_date, amount_kopecks, accept_by, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'sent')",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(account_id.to_string())
        .bind(order.id.to_string())
        .bind(invoice_id.to_string())
        .bind(kind)
        .bind(i64::from(year))
        .bind(number)
        .bind(today.to_string())
        .bind(grant.to_string())
        .bind(amount.kopecks())
        .bind(calendar.add_business_days(today, 5).to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Payment {
            id,
            invoice_id,
            method: method.as_str().into(),
            amount,
            paid_on,
            grant_deadline: deadline,
            granted_on: grant,
            granted_late: grant > deadline,
            lot_id,
            reference: reference.map(str::to_owned),
        })
    }

    /// Signs a postpay order and grants it at once (5.1, 5.2.3, 5.5.3), in one transaction: the
    /// lot is created or extended exactly as a prepay payment would, the invoice stays unpaid
    /// with its due date, and the signature is recorded. A retry with the same
    /// `Idempotency-Key` returns the first signature; a second signature under another key, or
    /// the signature of a prepay, paid or cancelled order, is refused.
    pub async fn sign_order(
        &self,
        account_id: Uuid,
        order_id: Uuid,
        idempotency_key: &str,
        today: NaiveDate,
        calendar: &BusinessCalendar,
    ) -> Result<SignedOrder> {
        if idempotency_key.is_empty() || idempotency_key.len() > 200 {
            return Err(LicensingError::InvalidRequest {
                field: "Idempotency-Key",
                reason: "1 to 200 characters".into(),
            });
        }
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        if let Some(sig) = sqlx::query(
            "SELECT * FROM order_signatures WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(account_id.to_string())
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await?
        {
            let signed = Self::signed_from(&mut tx, &sig).await;
            tx.rollback().await?;
            let signed = signed?;
            if signed.order.id != order_id {
                return Err(LicensingError::IdempotencyConflict {
                    key: idempotency_key.to_string(),
                });
            }
            return Ok(signed);
        }
        let order_row = sqlx::query("SELECT * FROM orders WHERE id = $1 AND account_id = $2")
            .bind(order_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(LicensingError::NotFound { what: "order" })?;
        let order = Self::order_from(&order_row)?;
        if order.quote.payment_terms != PaymentTerms::Postpay {
            return Err(LicensingError::OrderNotPostpay {
                order_id: order_id.to_string(),
            });
        }
        match order.status {
            OrderStatus::PendingPayment => {}
            OrderStatus::Signed => {
                let sig = sqlx::query("SELECT signed_on FROM order_signatures WHERE order_id = $1")
                    .bind(order_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                return Err(LicensingError::OrderAlreadySigned {
                    order_id: order_id.to_string(),
                    signed_on: date(&sig, "signed_on")?,
                });
            }
            other => {
                return Err(LicensingError::OrderNotSignable {
                    order_id: order_id.to_string(),
                    status: other.as_str().to_string(),
                });
            }
        }
        // Signing extends credit: not to an account that is suspended or terminated, nor one
        // whose postpay arrangement was withdrawn after the order was placed.
        let account = Self::account_in(&mut *tx, account_id, Some(today)).await?;
        account.status.check_usable()?;
        if !account.postpay_allowed {
            return Err(LicensingError::PostpayNotAllowed);
        }
        let inv_row = sqlx::query("SELECT * FROM invoices WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(LicensingError::NotFound { what: "invoice" })?;
        let mut invoice = Self::invoice_from(&inv_row)?;
        let lot_id = Self::grant_in(
            &mut tx,
            account_id,
            order_id,
            &order.quote,
            today,
            OrderStatus::Signed,
        )
        .await?;
        let grant_deadline = calendar
            .add_business_days(today, order.quote.order_type.grant_deadline_business_days());
        let due = calendar.add_business_days(today, POSTPAY_PAYMENT_BUSINESS_DAYS);
        sqlx::query("UPDATE invoices SET due_on = $2 WHERE id = $1")
            .bind(invoice.id.to_string())
            .bind(due.to_string())
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "INSERT INTO order_signatures (id, account_id, order_id, idempotency_key, signed_on, \
             grant_deadline, payment_due_on, lot_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(account_id.to_string())
        .bind(order_id.to_string())
        .bind(idempotency_key)
        .bind(today.to_string())
        .bind(grant_deadline.to_string())
        .bind(due.to_string())
        .bind(lot_id.to_string())
        .bind(now())
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            // The account lock makes this unreachable; the unique order_id is the last guard.
            return Err(if is_unique_violation(&e) {
                LicensingError::OrderAlreadySigned {
                    order_id: order_id.to_string(),
                    signed_on: today,
                }
            } else {
                e.into()
            });
        }
        tx.commit().await?;
        invoice.due_on = Some(due);
        Ok(SignedOrder {
            order: OrderRecord {
                status: OrderStatus::Signed,
                ..order
            },
            invoice,
            lot_id,
            signed_on: today,
            grant_deadline,
            payment_due_on: due,
        })
    }

    /// A stored signature with its order and invoice as they are now (a retry after the
    /// invoice was paid shows it paid).
    async fn signed_from(tx: &mut Transaction<'static, Any>, sig: &AnyRow) -> Result<SignedOrder> {
        let order_id = text(sig, "order_id")?;
        let order_row = sqlx::query("SELECT * FROM orders WHERE id = $1")
            .bind(order_id.clone())
            .fetch_one(&mut **tx)
            .await?;
        let inv_row = sqlx::query("SELECT * FROM invoices WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut **tx)
            .await?;
        Ok(SignedOrder {
            order: Self::order_from(&order_row)?,
            invoice: Self::invoice_from(&inv_row)?,
            lot_id: uuid(sig, "lot_id")?,
            signed_on: date(sig, "signed_on")?,
            grant_deadline: date(sig, "grant_deadline")?,
            payment_due_on: date(sig, "payment_due_on")?,
        })
    }

    pub async fn invoices(&self, account_id: Uuid) -> Result<Vec<Invoice>> {
        sqlx::query("SELECT * FROM invoices WHERE account_id = $1 ORDER BY year, number")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::invoice_from)
            .collect()
    }

    pub async fn invoice(&self, account_id: Uuid, invoice_id: Uuid) -> Result<Invoice> {
        let row = sqlx::query("SELECT * FROM invoices WHERE id = $1 AND account_id = $2")
            .bind(invoice_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(LicensingError::NotFound { what: "invoice" })?;
        Self::invoice_from(&row)
    }

    pub async fn order(&self, account_id: Uuid, order_id: Uuid) -> Result<OrderRecord> {
        let row = sqlx::query("SELECT * FROM orders WHERE id = $1 AND account_id = $2")
            .bind(order_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(LicensingError::NotFound { what: "order" })?;
        Self::order_from(&row)
    }

    pub async fn payments(&self, account_id: Uuid) -> Result<Vec<Payment>> {
        sqlx::query("SELECT * FROM payments WHERE account_id = $1 ORDER BY created_at, id")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::payment_from)
            .collect()
    }

    // ---- transfer documents ----

    fn document_from(row: &AnyRow, today: NaiveDate) -> Result<TransferDocument> {
        let year = i32::try_from(int(row, "year")?).unwrap_or_default();
        let accept_by = date(row, "accept_by")?;
        let mut status = text(row, "status")?;
        // Acceptance by silence needs no write: past the deadline a sent document is accepted.
        if status == "sent" && today > accept_by {
            status = "accepted".into();
        }
        Ok(TransferDocument {
            id: uuid(row, "id")?,
            account_id: uuid(row, "account_id")?,
            order_id: uuid(row, "order_id")?,
            invoice_id: uuid(row, "invoice_id")?,
            kind: text(row, "kind")?,
            number_text: number_text(year, int(row, "number")?),
            issued_on: date(row, "issued_on")?,
            grant_date: date(row, "grant_date")?,
            amount: money(row, "amount_kopecks")?,
            accept_by,
            status,
            objection: opt_text(row, "objection")?,
        })
    }

    pub async fn transfer_documents(
        &self,
        account_id: Uuid,
        today: NaiveDate,
    ) -> Result<Vec<TransferDocument>> {
        sqlx::query("SELECT * FROM transfer_documents WHERE account_id = $1 ORDER BY year, number")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Self::document_from(r, today))
            .collect()
    }

    /// A reasoned objection within the acceptance period opens a dispute (3.2.6).
    pub async fn object_to_document(
        &self,
        account_id: Uuid,
        document_id: Uuid,
        reason: &str,
        today: NaiveDate,
    ) -> Result<TransferDocument> {
        if reason.trim().is_empty() {
            return Err(LicensingError::InvalidRequest {
                field: "reason",
                reason: "an objection must give its reasons".into(),
            });
        }
        let r = sqlx::query(
            "UPDATE transfer_documents SET status = 'disputed', objection = $3 \
             WHERE id = $1 AND account_id = $2 AND status = 'sent' AND accept_by >= $4",
        )
        .bind(document_id.to_string())
        .bind(account_id.to_string())
        .bind(reason.trim())
        .bind(today.to_string())
        .execute(&self.pool)
        .await?;
        let docs = self.transfer_documents(account_id, today).await?;
        let doc =
            docs.into_iter()
                .find(|d| d.id == document_id)
                .ok_or(LicensingError::NotFound {
                    what: "transfer document",
                })?;
        if r.rows_affected() == 0 {
            return Err(LicensingError::DocumentNotOpen { status: doc.status });
        }
        Ok(doc)
    }

    // ---- retro-discounts ----

    /// A discount granted after an invoice was paid: a corrective invoice with the values before
    /// and after and their difference, and a credit for the difference, in one transaction.
    pub async fn retro_discount(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        discount: Money,
        reason: &str,
        today: NaiveDate,
    ) -> Result<CorrectiveInvoice> {
        if discount.is_negative() || discount == Money::ZERO {
            return Err(LicensingError::InvalidAmount {
                value: discount.to_string(),
                reason: "a discount must be positive".into(),
            });
        }
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let inv = sqlx::query("SELECT * FROM invoices WHERE id = $1 AND account_id = $2")
            .bind(invoice_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(LicensingError::NotFound { what: "invoice" })?;
        let invoice = Self::invoice_from(&inv)?;
        if invoice.status != "paid" {
            return Err(LicensingError::InvoiceNotPayable {
                number: invoice.number_text,
                status: invoice.status,
            });
        }
        let prior = sqlx::query("SELECT CAST(COALESCE(SUM(difference_kopecks), 0) AS BIGINT) AS d FROM corrective_invoices WHERE invoice_id = $1")
            .bind(invoice_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let before = invoice.amount + money(&prior, "d")?;
        let after = (before - discount).clamp_non_negative();
        let difference = after - before;
        let year = today.year();
        let number = Self::next_number(&mut tx, "corrective", year).await?;
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO corrective_invoices (id, account_id, invoice_id, year, number, issued_on, reason, before_kopecks, \
             after_kopecks, difference_kopecks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.to_string())
        .bind(account_id.to_string())
        .bind(invoice_id.to_string())
        .bind(i64::from(year))
        .bind(number)
        .bind(today.to_string())
        .bind(reason)
        .bind(before.kopecks())
        .bind(after.kopecks())
        .bind(difference.kopecks())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO credits (id, account_id, amount_kopecks, corrective_invoice_id, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(Uuid::new_v4().to_string())
            .bind(account_id.to_string())
            .bind((-difference).kopecks())
            .bind(id.to_string())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(CorrectiveInvoice {
            id,
            account_id,
            invoice_id,
            number_text: number_text(year, number),
            issued_on: today,
            reason: reason.to_string(),
            before,
            after,
            difference,
        })
    }

    pub async fn corrective_invoices(&self, account_id: Uuid) -> Result<Vec<CorrectiveInvoice>> {
        sqlx::query("SELECT * FROM corrective_invoices WHERE account_id = $1 ORDER BY year, number")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let year = i32::try_from(int(r, "year")?).unwrap_or_default();
                Ok(CorrectiveInvoice {
                    id: uuid(r, "id")?,
                    account_id: uuid(r, "account_id")?,
                    invoice_id: uuid(r, "invoice_id")?,
                    number_text: number_text(year, int(r, "number")?),
                    issued_on: date(r, "issued_on")?,
                    reason: text(r, "reason")?,
                    before: money(r, "before_kopecks")?,
                    after: money(r, "after_kopecks")?,
                    difference: money(r, "difference_kopecks")?,
                })
            })
            .collect()
    }

    // ---- termination ----

    /// Ends the agreement: provider (45 days' notice, pro-rata refund due in 10 business days),
    /// breach (at once, nothing back) or client (at the end of the paid month). The lots end on
    /// the effective date; refunds are recorded in the same transaction.
    pub async fn terminate(
        &self,
        account_id: Uuid,
        kind: TerminationKind,
        effective_on: Option<NaiveDate>,
        today: NaiveDate,
        calendar: &BusinessCalendar,
    ) -> Result<TerminationOutcome> {
        let mut tx = self.begin().await?;
        Self::lock_account(&mut tx, account_id).await?;
        let outcome =
            Self::termination_outcome(&mut tx, account_id, kind, effective_on, today, calendar)
                .await?;
        let eff = outcome.effective_on.to_string();
        sqlx::query("UPDATE lots SET ends_on = $2 WHERE account_id = $1 AND status = 'active' AND ends_on > $2")
            .bind(account_id.to_string())
            .bind(eff.clone())
            .execute(&mut *tx)
            .await?;
        if outcome.effective_on <= today {
            sqlx::query(
                "UPDATE lots SET status = 'terminated' WHERE account_id = $1 AND status = 'active'",
            )
            .bind(account_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE accounts SET terminates_on = $2, status = CASE WHEN $2 <= $3 THEN 'terminated' ELSE status END WHERE id = $1")
            .bind(account_id.to_string())
            .bind(eff.clone())
            .bind(today.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO terminations (id, account_id, kind, notice_on, effective_on, refund_kopecks, refund_due_on, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(account_id.to_string())
        .bind(kind.as_str())
        .bind(today.to_string())
        .bind(eff)
        .bind(outcome.refund.kopecks())
        .bind(outcome.refund_due_on.map(|d| d.to_string()))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if outcome.refund > Money::ZERO {
            sqlx::query("INSERT INTO refunds (id, account_id, amount_kopecks, reason, due_on, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(Uuid::new_v4().to_string())
                .bind(account_id.to_string())
                .bind(outcome.refund.kopecks())
                .bind(format!("termination ({})", kind.as_str()))
                .bind(outcome.refund_due_on.map(|d| d.to_string()))
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// What ending the agreement today would give, without changing anything: the same rules
    /// and the same reads as [`Store::terminate`], so the operator sees before confirming
    /// exactly the refund and dates that confirming records.
    pub async fn termination_preview(
        &self,
        account_id: Uuid,
        kind: TerminationKind,
        effective_on: Option<NaiveDate>,
        today: NaiveDate,
        calendar: &BusinessCalendar,
    ) -> Result<TerminationOutcome> {
        let mut tx = self.begin().await?;
        Self::account_in(&mut *tx, account_id, None).await?;
        let outcome =
            Self::termination_outcome(&mut tx, account_id, kind, effective_on, today, calendar)
                .await;
        tx.rollback().await?;
        outcome
    }

    /// The outcome of a termination given today, read inside the caller's transaction.
    async fn termination_outcome(
        tx: &mut Transaction<'static, Any>,
        account_id: Uuid,
        kind: TerminationKind,
        effective_on: Option<NaiveDate>,
        today: NaiveDate,
        calendar: &BusinessCalendar,
    ) -> Result<TerminationOutcome> {
        let lots: Vec<Lot> = sqlx::query(
            "SELECT * FROM lots WHERE account_id = $1 AND status = 'active' AND ends_on > $2",
        )
        .bind(account_id.to_string())
        .bind(today.to_string())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(Self::lot_from)
        .collect::<Result<_>>()?;
        Ok(match kind {
            TerminationKind::Breach => termination::breach(today),
            TerminationKind::Provider => {
                let effective = effective_on
                    .unwrap_or_else(|| add_days(today, termination::PROVIDER_NOTICE_DAYS));
                let mut periods = Vec::new();
                for lot in &lots {
                    // Only what was paid is refunded: a signed postpay order not yet paid
                    // has a grant but no money behind it.
                    for r in sqlx::query(
                        "SELECT g.amount_kopecks AS amount_kopecks, g.starts_on AS starts_on, \
                         g.ends_on AS ends_on FROM lot_grants g JOIN orders o ON o.id = g.order_id \
                         WHERE g.lot_id = $1 AND o.status = 'paid'",
                    )
                    .bind(lot.id.to_string())
                    .fetch_all(&mut **tx)
                    .await?
                    {
                        periods.push(PaidPeriod {
                            amount: money(&r, "amount_kopecks")?,
                            starts_on: date(&r, "starts_on")?,
                            ends_on: date(&r, "ends_on")?,
                        });
                    }
                }
                termination::provider(today, effective, &periods, calendar)?
            }
            TerminationKind::Client => {
                let lot = lots
                    .iter()
                    .max_by_key(|l| l.ends_on)
                    .ok_or(LicensingError::NoActiveLicense)?;
                termination::client(today, lot.starts_on, lot.ends_on)
            }
        })
    }

    pub async fn refunds(
        &self,
        account_id: Uuid,
    ) -> Result<Vec<(Money, String, Option<NaiveDate>)>> {
        sqlx::query("SELECT * FROM refunds WHERE account_id = $1 ORDER BY created_at")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    money(r, "amount_kopecks")?,
                    text(r, "reason")?,
                    opt_date(r, "due_on")?,
                ))
            })
            .collect()
    }

    // ---- outbox ----

    /// Emits the monthly review of seats unused for 30 days or more (6.2), once per account
    /// and month.
    pub async fn emit_inactive_review(&self, today: NaiveDate) -> Result<usize> {
        let cutoff = add_days(today, -INACTIVE_DAYS).to_string();
        let rows = sqlx::query(
            "SELECT account_id, user_id, lot_id, last_active_on FROM seat_assignments \
             WHERE COALESCE(last_active_on, assigned_on) <= $1 ORDER BY account_id, user_id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        let mut by_account: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
            Default::default();
        for r in &rows {
            by_account
                .entry(text(r, "account_id")?)
                .or_default()
                .push(serde_json::json!({
                    "user_id": text(r, "user_id")?,
                    "license_id": text(r, "lot_id")?,
                    "last_active_on": opt_text(r, "last_active_on")?,
                }));
        }
        let month = format!("{:04}-{:02}", today.year(), today.month());
        let mut emitted = 0;
        for (account, users) in by_account {
            let r = sqlx::query(
                "INSERT INTO outbox_events (id, kind, account_id, payload, dedup_key, due_on, created_at) \
                 VALUES ($1, 'inactive_seats_review', $2, $3, $4, $5, $6) ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(account.clone())
            .bind(serde_json::json!({"month": month, "users": users}).to_string())
            .bind(format!("inactive_seats_review:{account}:{month}"))
            .bind(today.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?;
            emitted += usize::try_from(r.rows_affected()).unwrap_or(0);
        }
        Ok(emitted)
    }

    /// Undelivered events due on or before `today`, oldest first.
    pub async fn due_events(&self, today: NaiveDate) -> Result<Vec<OutboxEvent>> {
        sqlx::query("SELECT * FROM outbox_events WHERE delivered_at IS NULL AND due_on <= $1 ORDER BY due_on, created_at, id")
            .bind(today.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(OutboxEvent { id: uuid(r, "id")?, kind: text(r, "kind")?, account_id: uuid(r, "account_id")?, payload: json(r, "payload")?, due_on: date(r, "due_on")? }))
            .collect()
    }

    pub async fn events_for(&self, account_id: Uuid) -> Result<Vec<OutboxEvent>> {
        sqlx::query("SELECT * FROM outbox_events WHERE account_id = $1 ORDER BY due_on, kind, id")
            .bind(account_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(OutboxEvent {
                    id: uuid(r, "id")?,
                    kind: text(r, "kind")?,
                    account_id: uuid(r, "account_id")?,
                    payload: json(r, "payload")?,
                    due_on: date(r, "due_on")?,
                })
            })
            .collect()
    }

    pub async fn mark_delivered(&self, event_id: Uuid) -> Result<()> {
        sqlx::query("UPDATE outbox_events SET delivered_at = $2 WHERE id = $1")
            .bind(event_id.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Total paid by the account, the base of loyalty tiers.
    pub async fn paid_total(&self, account_id: Uuid) -> Result<Money> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(amount_kopecks), 0) AS BIGINT) AS paid FROM payments WHERE account_id = $1")
            .bind(account_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        money(&row, "paid")
    }

    #[doc(hidden)]
    pub fn parse_uuid(s: &str, what: &'static str) -> Result<Uuid> {
        Uuid::from_str(s).map_err(|_| LicensingError::NotFound { what })
    }
}
