//! Parley licensing: accounts, tariffs, seat lots, orders and their windows, prices, discounts,
//! the business calendar, termination and the enforcement queries the meeting server asks.
//!
//! The rules follow the licence agreement (clause numbers in comments are its) as digested by
//! `shared/spec/licensing.md`. They live in pure modules, tested by tables and properties:
//! [`calendar`], [`window`], [`pricing`], [`discount`], [`quote`], [`termination`],
//! [`enforcement`]. Input becomes domain values only through parsing newtypes ([`Inn`],
//! [`Seats`], [`Money`], [`TariffCode`]), so a value that exists is valid.
//!
//! Around them: [`store`] keeps everything in SQLite or PostgreSQL with one transaction per
//! write that moves money or seats; [`service`] is what the HTTP layer calls; [`documents`]
//! renders invoices, transfer documents and corrective invoices as printable HTML.
//!
//! Every amount is a `rust_decimal` (never a float) rounded half up to kopecks once, at the end
//! of its formula; every date is a Moscow calendar date.

pub mod account;
pub mod calendar;
pub mod discount;
pub mod documents;
pub mod enforcement;
pub mod error;
pub mod inn;
pub mod lot;
pub mod money;
pub mod order;
pub mod pricing;
pub mod quote;
pub mod seats;
pub mod service;
pub mod store;
pub mod tariff;
pub mod termination;
pub mod window;

pub use account::{Account, AccountKind, AccountStatus, CrmLink, NewAccount};
pub use calendar::BusinessCalendar;
pub use error::LicensingError;
pub use inn::Inn;
pub use lot::{Lot, LotStatus};
pub use money::Money;
pub use order::{Channel, OrderType, PaymentTerms};
pub use quote::{OrderSpec, Quote, QuoteContext, QuoteRequest};
pub use seats::Seats;
pub use tariff::{Features, Recording, Tariff, TariffCode, VatMode};
