//! Card payments through the acquirer (YooKassa). An account may not register a card payment
//! itself — nothing would stand behind it — so the money has to be confirmed by the acquirer:
//!
//! 1. [`start`]: the account asks to pay an invoice by card. The rules are checked first
//!    (individuals and sole proprietors, at most the card limit, an unpaid invoice: 4.7), then
//!    the acquirer creates the payment and Parley keeps what it asked for (`card_payments`)
//!    and hands back the acquirer's confirmation page.
//! 2. [`settle`]: on a notification, or when a pending payment has gone without news for a
//!    while ([`reconcile`], notifications can be lost), the payment is read back from the
//!    acquirer's API — notifications are not signed, so their body is never believed — and
//!    only a succeeded, paid payment whose amount and metadata match the stored row is
//!    registered with the licensing service, under a key derived from the acquirer's id, so
//!    any number of notifications grant once.

pub mod db;
pub mod yookassa;

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use parley_licensing::LicensingError;
use parley_licensing::calendar::moscow_date;
use parley_licensing::store::PaymentMethod;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use db::CardPayment;
use db::Stored;
use yookassa::{NewPayment, ProviderPayment, YooKassa, YooKassaError};

use crate::auth::Caller;
use crate::configuration::Config;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::DbPool;

/// Pending payments looked up again per call of [`reconcile`]: an account rarely has more than
/// one, and the lookups run while its list waits.
const RECONCILE_BATCH: i64 = 5;

/// The acquirer connection and the table of started payments.
#[derive(Clone)]
pub struct CardPayments {
    provider: Option<YooKassa>,
    pool: DbPool,
    recheck: Duration,
}

impl CardPayments {
    pub fn new(config: &Config, pool: DbPool, http: reqwest::Client) -> CardPayments {
        CardPayments {
            provider: config
                .yookassa
                .as_ref()
                .map(|y| YooKassa::new(y, http, config.crm_timeout)),
            pool,
            recheck: config.card_payment_recheck,
        }
    }

    pub fn available(&self) -> bool {
        self.provider.is_some()
    }

    fn provider(&self) -> Result<&YooKassa, ApiError> {
        self.provider
            .as_ref()
            .ok_or_else(|| ApiError::Unprocessable {
                code: "card_payments_unavailable",
                message: "Card payments are not set up on this platform: pay the invoice by bank \
                      transfer, or ask the provider to connect the card acquirer."
                    .into(),
            })
    }
}

fn provider_error(e: YooKassaError) -> ApiError {
    tracing::warn!(error = %e, "card payment provider call failed");
    ApiError::Status {
        status: StatusCode::BAD_GATEWAY,
        code: "payment_provider_error",
        message: "The payment provider did not accept the request; try again in a minute.".into(),
    }
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context("card_payments table"))
}

/// The acquirer's `Idempotence-Key` for the account's start key: the same start always gets
/// the same payment (the acquirer keeps keys 24 hours), even if Parley failed between the
/// acquirer's answer and its own write. Hex SHA-256: 64 characters, the API's maximum.
fn idempotence_key(account: Uuid, key: &str) -> String {
    let k = hex::encode(Sha256::digest(format!("parley-card:{account}:{key}")));
    debug_assert_eq!(k.len(), yookassa::MAX_IDEMPOTENCE_KEY);
    k
}

/// Starts a card payment of `invoice` (see the module docs); a retry with the same key returns
/// the first start.
pub async fn start(
    app: &AppState,
    account: Uuid,
    invoice: Uuid,
    key: &str,
) -> Result<CardPayment, ApiError> {
    let cp = &app.card_payments;
    let account_s = account.to_string();
    if let Some(s) = db::by_key(&cp.pool, &account_s, key)
        .await
        .map_err(db_error)?
    {
        if s.view.invoice_id != invoice.to_string() {
            return Err(LicensingError::IdempotencyConflict {
                key: key.to_owned(),
            }
            .into());
        }
        return Ok(s.view);
    }
    let inv = app.licensing.store().invoice(account, invoice).await?;
    match inv.status.as_str() {
        "issued" => {}
        "paid" => {
            return Err(LicensingError::InvoiceAlreadyPaid {
                number: inv.number_text,
            }
            .into());
        }
        s => {
            return Err(LicensingError::InvoiceNotPayable {
                number: inv.number_text,
                status: s.to_owned(),
            }
            .into());
        }
    }
    // The licensing service checks the same again when the money is registered; checking here
    // keeps the payer from paying what could not be registered.
    let acct = app.licensing.store().account(account).await?;
    if !acct.kind.may_pay_by_card() {
        return Err(LicensingError::CardNotAllowed {
            reason: "legal entities pay invoices by bank transfer (4.7)".into(),
        }
        .into());
    }
    let limit = acct.card_limit.unwrap_or(app.config.card_limit);
    if inv.amount > limit {
        return Err(LicensingError::CardNotAllowed {
            reason: format!("the card limit is {limit} RUB"),
        }
        .into());
    }
    let provider = cp.provider()?;
    let return_url = format!(
        "{}/admin/#/payments?invoice={invoice}&card=return",
        app.config.public_url
    );
    let invoice_s = invoice.to_string();
    let description = format!("Счёт № {} (Parley)", inv.number_text);
    let p = provider
        .create(
            &idempotence_key(account, key),
            &NewPayment {
                amount: inv.amount,
                return_url: &return_url,
                description: &description,
                account: &account_s,
                invoice: &invoice_s,
            },
        )
        .await
        .map_err(provider_error)?;
    let url = p
        .confirmation
        .as_ref()
        .filter(|c| c.kind == "redirect")
        .and_then(|c| c.confirmation_url.clone())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let Some(url) = url.filter(|_| amount_matches(&p, inv.amount)) else {
        tracing::warn!(provider_id = %p.id, "the payment provider's answer lacks a confirmation page or the amount asked");
        return Err(provider_error(YooKassaError::Transport(
            "unexpected payment object".into(),
        )));
    };
    let s = db::insert(
        &cp.pool,
        &db::NewRow {
            provider_id: &p.id,
            account_id: &account_s,
            invoice_id: &invoice_s,
            idempotency_key: key,
            amount: inv.amount,
            confirmation_url: &url,
        },
    )
    .await
    .map_err(db_error)?;
    tracing::info!(account = %account, invoice = %invoice, provider_id = %p.id, "card payment started");
    Ok(s.view)
}

fn amount_matches(p: &ProviderPayment, want: parley_licensing::Money) -> bool {
    p.amount.currency == "RUB"
        && p.amount
            .value
            .parse::<parley_licensing::Money>()
            .is_ok_and(|m| m == want)
}

/// What a look-up at the acquirer did.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Still pending at the acquirer.
    Pending,
    /// Registered and granted (now or by an earlier look-up).
    Succeeded,
    Canceled,
    /// Final without a grant (`unapplied`, `rejected`).
    NotGranted,
}

/// Reads `s` back from the acquirer and acts on what it says (see the module docs). An `Err`
/// is a failure to find out (the acquirer or the database): nothing changed, try again later.
pub async fn settle(app: &AppState, headers: &HeaderMap, s: &Stored) -> Result<Settled, ApiError> {
    let provider = app.card_payments.provider()?;
    let pool = &app.card_payments.pool;
    let p = provider
        .payment(&s.view.provider_id)
        .await
        .map_err(provider_error)?;
    if p.id != s.view.provider_id {
        return Err(provider_error(YooKassaError::Transport(
            "the answer is about another payment".into(),
        )));
    }
    match p.status.as_str() {
        "succeeded" if p.paid => {}
        "canceled" => {
            let reason = p
                .cancellation_details
                .as_ref()
                .and_then(|d| d.reason.clone())
                .unwrap_or_else(|| "canceled".into());
            let reason: String = reason.chars().take(100).collect();
            db::settle(pool, &s.view.id, "canceled", None, Some(&reason))
                .await
                .map_err(db_error)?;
            tracing::info!(provider_id = %s.view.provider_id, %reason, "card payment canceled");
            return Ok(Settled::Canceled);
        }
        _ => {
            db::touch(pool, &s.view.id).await.map_err(db_error)?;
            return Ok(Settled::Pending);
        }
    }
    let matches = amount_matches(&p, s.view.amount)
        && p.meta("account") == Some(s.account_id.as_str())
        && p.meta("invoice") == Some(s.view.invoice_id.as_str());
    if !matches {
        // Parley created this payment with exactly these values; a difference is not something
        // to grant on. The provider's staff look at it (and refund).
        tracing::error!(provider_id = %s.view.provider_id, account = %s.account_id,
            "a succeeded card payment does not match what was asked: nothing granted");
        db::settle(
            pool,
            &s.view.id,
            "rejected",
            None,
            Some("the acquirer's amount or metadata differ from the invoice's"),
        )
        .await
        .map_err(db_error)?;
        return Ok(Settled::NotGranted);
    }
    let (Ok(account), Ok(invoice)) = (
        Uuid::parse_str(&s.account_id),
        Uuid::parse_str(&s.view.invoice_id),
    ) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "card payment {} has malformed ids",
            s.view.id
        )));
    };
    let today = app.licensing.today();
    // The day the acquirer took the money, in Moscow; never after the licensing "today".
    let paid_on = p
        .captured_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| moscow_date(t.with_timezone(&Utc)))
        .filter(|d| *d <= today);
    // One key per acquirer payment: the licensing service registers it once, whatever number
    // of notifications and look-ups arrive, at once or after a crash.
    let key = format!("yookassa:{}", s.view.provider_id);
    match app
        .licensing
        .register_referenced_payment(
            account,
            invoice,
            &key,
            PaymentMethod::Card,
            s.view.amount,
            paid_on,
            Some(&s.view.provider_id),
        )
        .await
    {
        Ok(payment) => {
            let first = db::settle(
                pool,
                &s.view.id,
                "succeeded",
                Some(&payment.id.to_string()),
                None,
            )
            .await
            .map_err(db_error)?;
            if first {
                tracing::info!(account = %account, invoice = %invoice, lot = %payment.lot_id,
                    provider_id = %s.view.provider_id, "card payment confirmed and registered");
                crate::routes::licensing::payments::after_registration(
                    app,
                    headers,
                    crate::privacy::Actor {
                        kind: "payment_provider",
                        id: Some("yookassa".into()),
                    },
                    account,
                    &payment,
                )
                .await;
            }
            Ok(Settled::Succeeded)
        }
        Err(e) if e.http_status() < 500 => {
            // The money was taken but the invoice cannot take it (paid meanwhile by another
            // payment, cancelled…): kept visible as `unapplied` for the provider to refund.
            tracing::error!(account = %account, invoice = %invoice,
                provider_id = %s.view.provider_id, error = %e,
                "a confirmed card payment could not be registered: refund it");
            let why: String = e.to_string().chars().take(300).collect();
            db::settle(pool, &s.view.id, "unapplied", None, Some(&why))
                .await
                .map_err(db_error)?;
            Ok(Settled::NotGranted)
        }
        Err(e) => Err(e.into()),
    }
}

/// Looks up the account's pending payments that have gone without news for the recheck
/// interval. Failures are logged: the caller's own answer does not depend on them.
pub async fn reconcile(app: &AppState, headers: &HeaderMap, account: Uuid) {
    let cp = &app.card_payments;
    if !cp.available() {
        return;
    }
    let before = db::now_ms() - i64::try_from(cp.recheck.as_millis()).unwrap_or(i64::MAX);
    let stale =
        match db::stale_pending(&cp.pool, &account.to_string(), before, RECONCILE_BATCH).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "cannot read pending card payments");
                return;
            }
        };
    for s in stale {
        if let Err(e) = settle(app, headers, &s).await {
            tracing::warn!(account = %account, provider_id = %s.view.provider_id, error = %e,
                "cannot reconcile a pending card payment");
        }
    }
}

/// The account's card payments, oldest first.
pub async fn of_account(app: &AppState, account: Uuid) -> Result<Vec<CardPayment>, ApiError> {
    db::of_account(&app.card_payments.pool, &account.to_string())
        .await
        .map_err(db_error)
}

/// A notification about the acquirer's payment `provider_id`: settles it if Parley started it
/// and it is still pending. Unknown ids change nothing and say nothing (logged only).
pub async fn notified(
    app: &AppState,
    headers: &HeaderMap,
    provider_id: &str,
) -> Result<(), ApiError> {
    let cp = &app.card_payments;
    if !cp.available() {
        tracing::warn!("a card payment notification arrived, but no acquirer is configured");
        return Ok(());
    }
    let Some(s) = db::by_provider_id(&cp.pool, provider_id)
        .await
        .map_err(db_error)?
    else {
        let shown: String = provider_id.chars().take(64).collect();
        tracing::warn!(provider_id = ?shown, "notification about a payment Parley did not start: ignored");
        return Ok(());
    };
    if s.view.status != "pending" {
        return Ok(());
    }
    settle(app, headers, &s).await.map(|_| ())
}

/// Refuses a card payment the caller registers directly: only the acquirer confirms card
/// money (the operator may still register one by hand, e.g. from the acquirer's report).
pub fn refuse_direct(caller: &Caller) -> Result<(), ApiError> {
    if *caller == Caller::Operator {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "Card payments are confirmed by the payment provider: start one with \
         POST /api/v1/accounts/{account}/invoices/{invoice}/card-payments and pay on the \
         provider's page; access is granted when the provider confirms the money."
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acquirer_key_is_stable_per_start_and_within_its_limit() {
        let a = Uuid::new_v4();
        let k = idempotence_key(a, "k1");
        assert_eq!(k.len(), yookassa::MAX_IDEMPOTENCE_KEY);
        assert_eq!(k, idempotence_key(a, "k1"));
        assert_ne!(k, idempotence_key(a, "k2"));
        assert_ne!(k, idempotence_key(Uuid::new_v4(), "k1"));
    }

    #[test]
    fn a_card_payment_is_registered_by_the_operator_only() {
        assert!(refuse_direct(&Caller::Operator).is_ok());
        let id = Uuid::new_v4();
        for c in [
            Caller::Account(id),
            Caller::User {
                account: id,
                user_id: "u".into(),
                admin: true,
            },
        ] {
            assert!(matches!(refuse_direct(&c), Err(ApiError::Forbidden(_))));
        }
    }
}
