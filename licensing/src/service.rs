//! The operations the HTTP layer calls. Each takes plain ids and request values, reads "today"
//! from the [`Clock`] (a Moscow date) and returns typed results or a [`LicensingError`] whose
//! `code()`/`http_status()`/`to_body()` are ready for the response.
//!
//! `Service` is cheap to clone (the pool and calendar are shared) so handlers can hold it in
//! their state.

use std::sync::{Arc, RwLock};

use chrono::{NaiveDate, Utc};
use uuid::Uuid;

use crate::account::{Account, NewAccount};
use crate::calendar::{BusinessCalendar, moscow_date};
use crate::discount::Promotion;
use crate::documents;
use crate::enforcement::{self, Entitlements};
use crate::error::LicensingError;
use crate::lot::Lot;
use crate::money::Money;
use crate::quote::{Quote, QuoteRequest};
use crate::store::{
    AccountPage, CorrectiveInvoice, Invoice, OrderRecord, OutboxEvent, Payment, PaymentMethod,
    PlacedOrder, SeatAssignment, SignedOrder, Store, TransferDocument,
};
use crate::tariff::{Tariff, TariffCode};
use crate::termination::{TerminationKind, TerminationOutcome};

type Result<T> = std::result::Result<T, LicensingError>;

/// Where "today" comes from; tests move it by hand.
pub trait Clock: Send + Sync {
    fn today(&self) -> NaiveDate;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> NaiveDate {
        moscow_date(Utc::now())
    }
}

pub struct ManualClock(RwLock<NaiveDate>);

impl ManualClock {
    pub fn new(today: NaiveDate) -> ManualClock {
        ManualClock(RwLock::new(today))
    }

    pub fn set(&self, today: NaiveDate) {
        if let Ok(mut d) = self.0.write() {
            *d = today;
        }
    }
}

impl Clock for ManualClock {
    fn today(&self) -> NaiveDate {
        self.0
            .read()
            .map(|d| *d)
            .unwrap_or_else(|p| *p.into_inner())
    }
}

#[derive(Clone)]
pub struct Service {
    store: Store,
    calendar: Arc<BusinessCalendar>,
    clock: Arc<dyn Clock>,
    /// The platform's default ceiling for card payments (4.7).
    card_limit: Money,
}

impl Service {
    pub fn new(
        store: Store,
        calendar: BusinessCalendar,
        clock: Arc<dyn Clock>,
        card_limit: Money,
    ) -> Service {
        Service {
            store,
            calendar: Arc::new(calendar),
            clock,
            card_limit,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }

    pub fn calendar(&self) -> &BusinessCalendar {
        &self.calendar
    }

    // accounts
    pub async fn create_account(&self, new: &NewAccount) -> Result<Account> {
        self.store.create_account(new).await
    }
    pub async fn account(&self, id: Uuid) -> Result<Account> {
        self.store.account_on(id, self.today()).await
    }
    /// A page of the operator's account list (see [`Store::accounts_page`]).
    pub async fn accounts_page(
        &self,
        search: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<AccountPage> {
        self.store
            .accounts_page(search, limit, offset, self.today())
            .await
    }
    pub async fn account_by_crm(&self, system: &str, external_id: &str) -> Result<Account> {
        self.store.account_by_crm(system, external_id).await
    }
    pub async fn suspend(&self, id: Uuid, reason: &str) -> Result<Account> {
        if reason.trim().is_empty() {
            return Err(LicensingError::InvalidRequest {
                field: "reason",
                reason: "a suspension states its ground (3.5, 6.5)".into(),
            });
        }
        self.store.set_suspension(id, Some(reason.trim())).await
    }
    pub async fn resume(&self, id: Uuid) -> Result<Account> {
        self.store.set_suspension(id, None).await
    }

    // catalogue (platform operator)
    pub async fn upsert_tariff(&self, t: &Tariff) -> Result<()> {
        self.store.upsert_tariff(t).await
    }
    pub async fn archive_tariff(&self, code: &str) -> Result<()> {
        self.store.archive_tariff(&TariffCode::parse(code)?).await
    }
    pub async fn tariffs(&self) -> Result<Vec<Tariff>> {
        self.store.tariffs().await
    }
    pub async fn create_promotion(&self, p: &Promotion) -> Result<()> {
        self.store.create_promotion(p).await
    }
    pub async fn promotions(&self) -> Result<Vec<Promotion>> {
        self.store.promotions().await
    }

    // quotes and orders
    pub async fn quote(&self, account_id: Uuid, req: &QuoteRequest) -> Result<Quote> {
        self.store.quote(account_id, req, self.today()).await
    }
    pub async fn place_order(
        &self,
        account_id: Uuid,
        idempotency_key: &str,
        req: &QuoteRequest,
    ) -> Result<PlacedOrder> {
        self.store
            .place_order(account_id, idempotency_key, req, self.today())
            .await
    }
    pub async fn orders(&self, account_id: Uuid) -> Result<Vec<OrderRecord>> {
        self.store.orders(account_id).await
    }
    /// Signs a postpay order: granted today, invoice due in
    /// [`POSTPAY_PAYMENT_BUSINESS_DAYS`](crate::store::POSTPAY_PAYMENT_BUSINESS_DAYS).
    pub async fn sign_order(
        &self,
        account_id: Uuid,
        order_id: Uuid,
        idempotency_key: &str,
    ) -> Result<SignedOrder> {
        self.store
            .sign_order(
                account_id,
                order_id,
                idempotency_key,
                self.today(),
                &self.calendar,
            )
            .await
    }
    pub async fn cancel_order(&self, account_id: Uuid, order_id: Uuid) -> Result<()> {
        self.store.cancel_order(account_id, order_id).await
    }

    // payments
    /// `paid_on` defaults to today: the day the money reached the provider's bank (4.1).
    pub async fn register_payment(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        idempotency_key: &str,
        method: PaymentMethod,
        amount: Money,
        paid_on: Option<NaiveDate>,
    ) -> Result<Payment> {
        let today = self.today();
        self.store
            .register_payment(
                account_id,
                invoice_id,
                idempotency_key,
                method,
                amount,
                paid_on.unwrap_or(today),
                today,
                self.card_limit,
                &self.calendar,
            )
            .await
    }
    /// A bank transfer or card payment with the bank's reference of the transfer.
    #[allow(clippy::too_many_arguments)]
    pub async fn register_referenced_payment(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        idempotency_key: &str,
        method: PaymentMethod,
        amount: Money,
        paid_on: Option<NaiveDate>,
        reference: Option<&str>,
    ) -> Result<Payment> {
        let today = self.today();
        self.store
            .register_referenced_payment(
                account_id,
                invoice_id,
                idempotency_key,
                method,
                amount,
                paid_on.unwrap_or(today),
                reference,
                today,
                self.card_limit,
                &self.calendar,
            )
            .await
    }
    pub async fn payments(&self, account_id: Uuid) -> Result<Vec<Payment>> {
        self.store.payments(account_id).await
    }

    // lots and seats
    /// Lots with their status as of today (an active lot past its end reads as expired).
    pub async fn lots(&self, account_id: Uuid) -> Result<Vec<Lot>> {
        let today = self.today();
        let mut lots = self.store.lots(account_id).await?;
        for l in &mut lots {
            l.status = l.status_on(today);
        }
        Ok(lots)
    }
    pub async fn seats(&self, account_id: Uuid) -> Result<Vec<SeatAssignment>> {
        self.store.seats(account_id).await
    }
    pub async fn assign_seat(
        &self,
        account_id: Uuid,
        lot_id: Uuid,
        user_id: &str,
    ) -> Result<SeatAssignment> {
        self.store
            .assign_seat(account_id, lot_id, user_id, self.today())
            .await
    }
    pub async fn reclaim_seat(&self, account_id: Uuid, user_id: &str) -> Result<()> {
        self.store.reclaim_seat(account_id, user_id).await
    }
    /// Seats unused for 30 days or more today (the monthly review, 6.2).
    pub async fn inactive_seats(&self, account_id: Uuid) -> Result<Vec<SeatAssignment>> {
        self.store.inactive_seats(account_id, self.today()).await
    }
    /// Reclaims the seat if it is still inactive today; the lot it was on, or `None`.
    pub async fn reclaim_inactive_seat(
        &self,
        account_id: Uuid,
        user_id: &str,
    ) -> Result<Option<Uuid>> {
        self.store
            .reclaim_inactive_seat(account_id, user_id, self.today())
            .await
    }

    // documents
    pub async fn invoices(&self, account_id: Uuid) -> Result<Vec<Invoice>> {
        self.store.invoices(account_id).await
    }
    pub async fn transfer_documents(&self, account_id: Uuid) -> Result<Vec<TransferDocument>> {
        self.store
            .transfer_documents(account_id, self.today())
            .await
    }
    pub async fn object_to_document(
        &self,
        account_id: Uuid,
        document_id: Uuid,
        reason: &str,
    ) -> Result<TransferDocument> {
        self.store
            .object_to_document(account_id, document_id, reason, self.today())
            .await
    }
    pub async fn retro_discount(
        &self,
        account_id: Uuid,
        invoice_id: Uuid,
        discount: Money,
        reason: &str,
    ) -> Result<CorrectiveInvoice> {
        self.store
            .retro_discount(account_id, invoice_id, discount, reason, self.today())
            .await
    }
    pub async fn corrective_invoices(&self, account_id: Uuid) -> Result<Vec<CorrectiveInvoice>> {
        self.store.corrective_invoices(account_id).await
    }
    pub async fn invoice_html(&self, account_id: Uuid, invoice_id: Uuid) -> Result<String> {
        let account = self.store.account(account_id).await?;
        let invoice = self.store.invoice(account_id, invoice_id).await?;
        let order = self.store.order(account_id, invoice.order_id).await?;
        Ok(documents::invoice_html(&account, &invoice, &order.quote))
    }
    pub async fn transfer_document_html(
        &self,
        account_id: Uuid,
        document_id: Uuid,
    ) -> Result<String> {
        let account = self.store.account(account_id).await?;
        let doc = self
            .transfer_documents(account_id)
            .await?
            .into_iter()
            .find(|d| d.id == document_id)
            .ok_or(LicensingError::NotFound {
                what: "transfer document",
            })?;
        let order = self.store.order(account_id, doc.order_id).await?;
        Ok(documents::transfer_document_html(
            &account,
            &doc,
            &order.quote,
        ))
    }
    pub async fn corrective_invoice_html(
        &self,
        account_id: Uuid,
        corrective_id: Uuid,
    ) -> Result<String> {
        let account = self.store.account(account_id).await?;
        let c = self
            .corrective_invoices(account_id)
            .await?
            .into_iter()
            .find(|c| c.id == corrective_id)
            .ok_or(LicensingError::NotFound {
                what: "corrective invoice",
            })?;
        let invoice = self.store.invoice(account_id, c.invoice_id).await?;
        let order = self.store.order(account_id, invoice.order_id).await?;
        Ok(documents::corrective_invoice_html(
            &account,
            &invoice,
            &c,
            &order.quote,
        ))
    }

    // termination and refunds
    pub async fn terminate(
        &self,
        account_id: Uuid,
        kind: TerminationKind,
        effective_on: Option<NaiveDate>,
    ) -> Result<TerminationOutcome> {
        self.store
            .terminate(account_id, kind, effective_on, self.today(), &self.calendar)
            .await
    }
    /// What [`Service::terminate`] would give today, changing nothing.
    pub async fn termination_preview(
        &self,
        account_id: Uuid,
        kind: TerminationKind,
        effective_on: Option<NaiveDate>,
    ) -> Result<TerminationOutcome> {
        self.store
            .termination_preview(account_id, kind, effective_on, self.today(), &self.calendar)
            .await
    }
    pub async fn refunds(
        &self,
        account_id: Uuid,
    ) -> Result<Vec<(Money, String, Option<NaiveDate>)>> {
        self.store.refunds(account_id).await
    }

    // enforcement
    /// May this user host a meeting today, and under which limits?
    pub async fn may_host(&self, account_id: Uuid, user_id: &str) -> Result<Entitlements> {
        let today = self.today();
        let account = self.store.account_on(account_id, today).await?;
        let tariffs = self.store.tariffs().await?;
        let lots: Vec<(Lot, Tariff)> = self
            .store
            .lots(account_id)
            .await?
            .into_iter()
            .filter_map(|l| {
                tariffs
                    .iter()
                    .find(|t| t.code == l.tariff)
                    .cloned()
                    .map(|t| (l, t))
            })
            .collect();
        let seat = self.store.seat_of(account_id, user_id).await?;
        let e = enforcement::may_host(&account, &lots, user_id, seat, today)?;
        self.store
            .record_activity(account_id, user_id, today)
            .await?;
        Ok(e)
    }
    /// Guests need no seat, but a suspended or terminated account's meetings are closed.
    pub async fn may_join(&self, account_id: Uuid) -> Result<()> {
        enforcement::may_join(&self.store.account_on(account_id, self.today()).await?)
    }
    /// May the account use the SDK today (an active lot on a tariff with SDK embedding)?
    pub async fn may_embed(&self, account_id: Uuid) -> Result<()> {
        let today = self.today();
        let account = self.store.account_on(account_id, today).await?;
        let tariffs = self.store.tariffs().await?;
        let lots: Vec<(Lot, Tariff)> = self
            .store
            .lots(account_id)
            .await?
            .into_iter()
            .filter_map(|l| {
                let t = tariffs.iter().find(|t| t.code == l.tariff)?.clone();
                Some((l, t))
            })
            .collect();
        enforcement::may_embed(&account, &lots, today)
    }

    // outbox
    pub async fn emit_inactive_review(&self) -> Result<usize> {
        self.store.emit_inactive_review(self.today()).await
    }
    pub async fn due_events(&self) -> Result<Vec<OutboxEvent>> {
        self.store.due_events(self.today()).await
    }
}
