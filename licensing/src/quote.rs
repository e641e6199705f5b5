//! The quote contract of the spec: a request with the API's field names, parsed into a typed
//! [`OrderSpec`], and a [`Quote`] computed purely from already-loaded records. The order
//! endpoint prices through the same function, so a quote and its order always agree.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::{Account, AccountStatus};
use crate::calendar::parse_date;
use crate::discount::{self, AppliedDiscount, DiscountContext, PromoUsage, Promotion};
use crate::error::LicensingError;
use crate::lot::{Lot, LotStatus};
use crate::money::Money;
use crate::order::{Channel, OrderType, PaymentTerms};
use crate::pricing::{self, Line, Priced};
use crate::seats::Seats;
use crate::tariff::{CURRENCY, Tariff, TariffCode};
use crate::window;

/// The body of `POST .../quotes` and `POST .../orders`. Fields stay loosely typed here so a bad
/// value becomes one of our error codes (`invalid_date`, `invalid_seats`, ...) instead of a
/// generic deserialization failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    #[serde(rename = "type")]
    pub order_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_seats: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_terms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promo_code: Option<String>,
}

/// A well-formed order request: every field present that its type needs, none that it forbids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSpec {
    pub order_type: OrderType,
    pub tariff: Option<TariffCode>,
    pub seats: Option<Seats>,
    pub license_id: Option<Uuid>,
    pub add_seats: Option<Seats>,
    pub payment_terms: PaymentTerms,
    pub channel: Channel,
    pub start_date: NaiveDate,
    pub promo_code: Option<String>,
}

fn required<T>(v: Option<T>, field: &'static str, kind: OrderType) -> Result<T, LicensingError> {
    v.ok_or_else(|| LicensingError::InvalidRequest {
        field,
        reason: format!("required for a {kind} order"),
    })
}

fn forbidden<T>(v: &Option<T>, field: &'static str, kind: OrderType) -> Result<(), LicensingError> {
    match v {
        Some(_) => Err(LicensingError::InvalidRequest {
            field,
            reason: format!("not allowed for a {kind} order"),
        }),
        None => Ok(()),
    }
}

impl OrderSpec {
    /// `today` is the Moscow date; the start date defaults to it and may not lie before it.
    pub fn parse(req: &QuoteRequest, today: NaiveDate) -> Result<OrderSpec, LicensingError> {
        let kind: OrderType = req.order_type.parse()?;
        let tariff = req.tariff.as_deref().map(TariffCode::parse).transpose()?;
        let seats = req.seats.map(Seats::new).transpose()?;
        let add_seats = req.add_seats.map(Seats::new).transpose()?;
        let license_id = req
            .license_id
            .as_deref()
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| LicensingError::UnknownLicense {
                    license_id: s.to_string(),
                })
            })
            .transpose()?;
        let payment_terms = req
            .payment_terms
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
        let channel = req
            .channel
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
        let start_date = req
            .start_date
            .as_deref()
            .map(parse_date)
            .transpose()?
            .unwrap_or(today);
        if start_date < today {
            return Err(LicensingError::InvalidRequest {
                field: "start_date",
                reason: format!("must not be before today ({today})"),
            });
        }
        let promo_code = req
            .promo_code
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);

        match kind {
            OrderType::Initial => {
                required(tariff.as_ref(), "tariff", kind)?;
                required(seats, "seats", kind)?;
                forbidden(&license_id, "license_id", kind)?;
                forbidden(&add_seats, "add_seats", kind)?;
            }
            OrderType::Renewal => {
                required(license_id, "license_id", kind)?;
                forbidden(&seats, "seats", kind)?;
                forbidden(&add_seats, "add_seats", kind)?;
            }
            OrderType::TopUp => {
                required(license_id, "license_id", kind)?;
                required(add_seats, "add_seats", kind)?;
                forbidden(&seats, "seats", kind)?;
            }
            OrderType::RenewalWithTopUp => {
                required(license_id, "license_id", kind)?;
                required(add_seats, "add_seats", kind)?;
                forbidden(&seats, "seats", kind)?;
            }
            OrderType::RenewalWithReduction => {
                required(license_id, "license_id", kind)?;
                required(seats, "seats", kind)?;
                forbidden(&add_seats, "add_seats", kind)?;
            }
        }
        Ok(OrderSpec {
            order_type: kind,
            tariff,
            seats,
            license_id,
            add_seats,
            payment_terms,
            channel,
            start_date,
            promo_code,
        })
    }
}

/// Everything a quote needs, loaded by the caller (the store) beforehand.
pub struct QuoteContext<'a> {
    pub account: &'a Account,
    pub today: NaiveDate,
    pub tariffs: &'a [Tariff],
    /// The lot named by `license_id`, if the account owns it.
    pub lot: Option<&'a Lot>,
    pub promotions: &'a [Promotion],
    pub usage: &'a [PromoUsage],
    pub paid_total: Money,
    pub trial_used: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub tariff: TariffCode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub license_id: Option<Uuid>,
    pub payment_terms: PaymentTerms,
    pub channel: Channel,
    pub start_date: NaiveDate,
    pub lines: Vec<Line>,
    pub discounts: Vec<AppliedDiscount>,
    pub subtotal: Money,
    pub total: Money,
    pub currency: String,
}

impl Quote {
    pub fn seats(&self) -> u32 {
        self.lines.iter().map(|l| l.seats.get()).sum()
    }
}

fn find_tariff<'a>(tariffs: &'a [Tariff], code: &TariffCode) -> Result<&'a Tariff, LicensingError> {
    tariffs
        .iter()
        .find(|t| &t.code == code)
        .ok_or_else(|| LicensingError::UnknownTariff {
            code: code.to_string(),
        })
}

/// A tariff a client may buy now: known, not archived, and not a trial when renewing.
fn buyable<'a>(tariffs: &'a [Tariff], code: &TariffCode) -> Result<&'a Tariff, LicensingError> {
    let t = find_tariff(tariffs, code)?;
    if t.archived {
        return Err(LicensingError::TariffArchived {
            code: code.to_string(),
        });
    }
    Ok(t)
}

fn current_lot<'a>(spec: &OrderSpec, ctx: &QuoteContext<'a>) -> Result<&'a Lot, LicensingError> {
    let id = spec.license_id.unwrap_or_default();
    let lot = ctx
        .lot
        .filter(|l| l.id == id && l.account_id == ctx.account.id)
        .ok_or_else(|| LicensingError::UnknownLicense {
            license_id: id.to_string(),
        })?;
    // A replaced or terminated lot says so; an active one past its end reports the expiry
    // with its date through the window check.
    if !matches!(lot.status, LotStatus::Active | LotStatus::Expired) {
        return Err(LicensingError::LicenseNotActive {
            license_id: lot.id.to_string(),
            status: lot.status.to_string(),
        });
    }
    for on in [ctx.today, spec.start_date] {
        window::check(spec.order_type, &lot.id.to_string(), lot.ends_on, on)?;
    }
    if lot.status == LotStatus::Expired {
        return Err(LicensingError::LicenseExpired {
            license_id: lot.id.to_string(),
            ended_on: lot.ends_on,
        });
    }
    if lot.trial {
        return Err(LicensingError::TrialNotExtendable);
    }
    Ok(lot)
}

pub fn compute(spec: &OrderSpec, ctx: &QuoteContext<'_>) -> Result<Quote, LicensingError> {
    if ctx.account.status == AccountStatus::Terminated {
        return Err(LicensingError::AccountTerminated);
    }
    if spec.payment_terms == PaymentTerms::Postpay && !ctx.account.postpay_allowed {
        return Err(LicensingError::PostpayNotAllowed);
    }
    let kind = spec.order_type;
    let no_trial = |t: &Tariff| {
        if t.trial {
            Err(LicensingError::TrialNotExtendable)
        } else {
            Ok(())
        }
    };
    let (priced, tariff) = match kind {
        OrderType::Initial => {
            let code = required(spec.tariff.as_ref(), "tariff", kind)?;
            let seats = required(spec.seats, "seats", kind)?;
            let t = buyable(ctx.tariffs, code)?;
            if t.trial && ctx.trial_used {
                return Err(LicensingError::TrialAlreadyUsed);
            }
            (Priced::Initial { tariff: t, seats }, t)
        }
        OrderType::TopUp => {
            let lot = current_lot(spec, ctx)?;
            // Added seats join the lot on its own tariff, archived or not: sold licences keep
            // their terms (4.3).
            let t = find_tariff(ctx.tariffs, &lot.tariff)?;
            if spec.tariff.as_ref().is_some_and(|c| c != &lot.tariff) {
                return Err(LicensingError::InvalidRequest {
                    field: "tariff",
                    reason: "added seats join the lot on its own tariff".into(),
                });
            }
            let add = required(spec.add_seats, "add_seats", kind)?;
            lot.seats.checked_add(add)?;
            (
                Priced::TopUp {
                    lot,
                    lot_tariff: t,
                    add,
                },
                t,
            )
        }
        OrderType::Renewal | OrderType::RenewalWithTopUp | OrderType::RenewalWithReduction => {
            let lot = current_lot(spec, ctx)?;
            let t = buyable(ctx.tariffs, spec.tariff.as_ref().unwrap_or(&lot.tariff))?;
            no_trial(t)?;
            let priced = match kind {
                OrderType::Renewal => Priced::Renewal { lot, tariff: t },
                OrderType::RenewalWithTopUp => {
                    let add = required(spec.add_seats, "add_seats", kind)?;
                    lot.seats.checked_add(add)?;
                    Priced::RenewalWithTopUp {
                        lot,
                        tariff: t,
                        add,
                    }
                }
                _ => {
                    let seats = required(spec.seats, "seats", kind)?;
                    if seats >= lot.seats {
                        return Err(LicensingError::InvalidSeats {
                            seats: i64::from(seats.get()),
                            reason: format!(
                                "a reduction needs fewer than the current {} seats; use a renewal to keep them",
                                lot.seats
                            ),
                        });
                    }
                    Priced::RenewalWithReduction {
                        lot,
                        tariff: t,
                        seats,
                    }
                }
            };
            (priced, t)
        }
    };

    let lines = pricing::price(priced, spec.payment_terms, spec.channel, spec.start_date);
    let subtotal: Money = lines.iter().map(|l| l.amount).sum();
    let seats = lines.iter().map(|l| l.seats.get()).sum();
    let discounts = discount::apply(
        ctx.promotions,
        &DiscountContext {
            order_type: kind,
            tariff: &tariff.code,
            on: spec.start_date,
            seats,
            subtotal,
            paid_total: ctx.paid_total,
            promo_code: spec.promo_code.as_deref(),
            usage: ctx.usage,
        },
    )?;
    let total = (subtotal - discounts.iter().map(|d| d.amount).sum()).clamp_non_negative();
    Ok(Quote {
        order_type: kind,
        tariff: tariff.code.clone(),
        license_id: spec.license_id,
        payment_terms: spec.payment_terms,
        channel: spec.channel,
        start_date: spec.start_date,
        lines,
        discounts,
        subtotal,
        total,
        currency: CURRENCY.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountKind, CrmLink};
    use crate::tariff::fixtures::business12;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn account() -> Account {
        Account {
            id: Uuid::from_u128(1),
            name: "Acme".into(),
            kind: AccountKind::LegalEntity,
            inn: None,
            resident: true,
            crm: CrmLink {
                system: "amo".into(),
                external_id: "1".into(),
            },
            status: AccountStatus::Active,
            postpay_allowed: false,
            card_limit: None,
            address: None,
        }
    }

    fn req(json: &str) -> QuoteRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parse_bad_input() {
        let today = d("2026-06-01");
        let cases = [
            (r#"{"type":"initial","seats":3}"#, "invalid_request"),
            (
                r#"{"type":"initial","tariff":"business-12","seats":0}"#,
                "invalid_seats",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":-2}"#,
                "invalid_seats",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":100001}"#,
                "invalid_seats",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":2,"start_date":"01.07.2026"}"#,
                "invalid_date",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":2,"start_date":"2026-05-31"}"#,
                "invalid_request",
            ),
            (
                r#"{"type":"initial","tariff":"Bad Code","seats":2}"#,
                "unknown_tariff",
            ),
            (r#"{"type":"upgrade"}"#, "invalid_request"),
            (
                r#"{"type":"top_up","license_id":"not-a-uuid","add_seats":1}"#,
                "unknown_license",
            ),
            (
                r#"{"type":"top_up","license_id":"00000000-0000-0000-0000-000000000001"}"#,
                "invalid_request",
            ),
            (
                r#"{"type":"renewal","license_id":"00000000-0000-0000-0000-000000000001","seats":3}"#,
                "invalid_request",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":2,"payment_terms":"later"}"#,
                "invalid_request",
            ),
            (
                r#"{"type":"initial","tariff":"business-12","seats":2,"channel":"fax"}"#,
                "invalid_request",
            ),
        ];
        for (json, code) in cases {
            assert_eq!(
                OrderSpec::parse(&req(json), today).unwrap_err().code(),
                code,
                "{json}"
            );
        }
        assert!(serde_json::from_str::<QuoteRequest>(r#"{"type":"initial","bogus":1}"#).is_err());
        let ok = OrderSpec::parse(
            &req(r#"{"type":"initial","tariff":"business-12","seats":2}"#),
            today,
        )
        .unwrap();
        assert_eq!(ok.start_date, today);
        assert_eq!(ok.payment_terms, PaymentTerms::Prepay);
        assert_eq!(ok.channel, Channel::Portal);
    }

    #[test]
    fn refusals_from_records() {
        let acc = account();
        let mut t = business12();
        let lot = Lot {
            id: Uuid::from_u128(9),
            account_id: acc.id,
            tariff: t.code.clone(),
            seats: Seats::new(10).unwrap(),
            starts_on: d("2026-03-01"),
            ends_on: d("2027-03-01"),
            status: LotStatus::Active,
            trial: false,
        };
        let run =
            |json: &str, today: &str, tariffs: &[Tariff], lot: Option<&Lot>, acc: &Account| {
                let spec = OrderSpec::parse(&req(json), d(today))?;
                compute(
                    &spec,
                    &QuoteContext {
                        account: acc,
                        today: d(today),
                        tariffs,
                        lot,
                        promotions: &[],
                        usage: &[],
                        paid_total: Money::ZERO,
                        trial_used: true,
                    },
                )
            };
        let lid = lot.id.to_string();
        let tariffs = [t.clone()];
        let code = |r: Result<Quote, LicensingError>| r.map(|_| "ok").unwrap_or_else(|e| e.code());
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"top_up","license_id":"{lid}","add_seats":1}}"#),
                "2026-11-21",
                &tariffs,
                Some(&lot),
                &acc
            )),
            "ok"
        );
        let foreign = Lot {
            account_id: Uuid::from_u128(2),
            ..lot.clone()
        };
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"top_up","license_id":"{lid}","add_seats":1}}"#),
                "2026-11-21",
                &tariffs,
                Some(&foreign),
                &acc
            )),
            "unknown_license"
        );
        assert_eq!(
            code(run(
                &format!(
                    r#"{{"type":"top_up","license_id":"{lid}","add_seats":1,"payment_terms":"postpay"}}"#
                ),
                "2026-11-21",
                &tariffs,
                Some(&lot),
                &acc
            )),
            "postpay_not_allowed"
        );
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"renewal_with_reduction","license_id":"{lid}","seats":10}}"#),
                "2027-02-20",
                &tariffs,
                Some(&lot),
                &acc
            )),
            "invalid_seats"
        );
        assert_eq!(
            code(run(
                r#"{"type":"initial","tariff":"pro","seats":1}"#,
                "2026-11-21",
                &tariffs,
                None,
                &acc
            )),
            "unknown_tariff"
        );
        t.archived = true;
        let archived = [t.clone()];
        assert_eq!(
            code(run(
                r#"{"type":"initial","tariff":"business-12","seats":1}"#,
                "2026-11-21",
                &archived,
                None,
                &acc
            )),
            "tariff_archived"
        );
        // Sold lots keep their tariff: a top-up on an archived tariff is still priced.
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"top_up","license_id":"{lid}","add_seats":1}}"#),
                "2026-11-21",
                &archived,
                Some(&lot),
                &acc
            )),
            "ok"
        );
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"renewal","license_id":"{lid}"}}"#),
                "2027-01-15",
                &archived,
                Some(&lot),
                &acc
            )),
            "tariff_archived"
        );
        let superseded = Lot {
            status: LotStatus::Superseded,
            ..lot.clone()
        };
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"renewal","license_id":"{lid}"}}"#),
                "2027-01-15",
                &tariffs,
                Some(&superseded),
                &acc
            )),
            "license_not_active"
        );
        let trial_tariff = Tariff {
            trial: true,
            price_per_seat: Money::ZERO,
            ..business12()
        };
        assert_eq!(
            code(run(
                r#"{"type":"initial","tariff":"business-12","seats":1}"#,
                "2026-11-21",
                &[trial_tariff],
                None,
                &acc
            )),
            "trial_already_used"
        );
        let trial_lot = Lot {
            trial: true,
            ..lot.clone()
        };
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"top_up","license_id":"{lid}","add_seats":1}}"#),
                "2026-11-21",
                &tariffs,
                Some(&trial_lot),
                &acc
            )),
            "trial_not_extendable"
        );
        // The order placed today must be in its window today, not only on its start date.
        assert_eq!(
            code(run(
                &format!(r#"{{"type":"renewal","license_id":"{lid}","start_date":"2026-12-05"}}"#),
                "2026-11-25",
                &tariffs,
                Some(&lot),
                &acc
            )),
            "window_not_open"
        );
        let terminated = Account {
            status: AccountStatus::Terminated,
            ..acc.clone()
        };
        assert_eq!(
            code(run(
                r#"{"type":"initial","tariff":"business-12","seats":1}"#,
                "2026-11-21",
                &tariffs,
                None,
                &terminated
            )),
            "account_terminated"
        );
    }

    #[test]
    fn serializes_to_the_contract() {
        let acc = account();
        let t = business12();
        let spec = OrderSpec::parse(
            &req(r#"{"type":"initial","tariff":"business-12","seats":2}"#),
            d("2026-06-01"),
        )
        .unwrap();
        let q = compute(
            &spec,
            &QuoteContext {
                account: &acc,
                today: d("2026-06-01"),
                tariffs: &[t],
                lot: None,
                promotions: &[],
                usage: &[],
                paid_total: Money::ZERO,
                trial_used: false,
            },
        )
        .unwrap();
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["total"], "24000.00");
        assert_eq!(v["subtotal"], "24000.00");
        assert_eq!(v["currency"], "RUB");
        assert_eq!(v["lines"][0]["kind"], "initial");
        assert_eq!(v["lines"][0]["unit_price"], "12000.00");
        assert_eq!(v["lines"][0]["starts_on"], "2026-06-01");
        assert_eq!(v["lines"][0]["ends_on"], "2027-06-01");
        assert!(v["lines"][0].get("formula").is_none());
        assert_eq!(v["discounts"], serde_json::json!([]));
    }
}
