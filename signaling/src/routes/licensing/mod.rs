//! The licensing API under `/api/v1`: the quote and order contract of the spec, the catalogue
//! (operator), accounts and their keys, lots and seats, invoices and payments, transfer
//! documents, corrective invoices, suspension and termination.
//!
//! Handlers are thin: authenticate ([`Caller`]), parse the path and body at the edge, call the
//! `parley_licensing` service, and let [`ApiError::Licensing`] carry the crate's codes (422 for
//! refusals with the dates that explain them, 404, 409). A foreign account's resource answers
//! exactly like a missing one (404), so a key can never learn what other accounts hold.
//!
//! Who may call what:
//! - the operator (`Bearer <PARLEY_ADMIN_TOKEN>`): everything;
//! - an account's API key, and an account admin signed in to that account (the
//!   `parley_session` cookie of the admin console, or `Bearer s_…`): the account's own
//!   resources — read them, quote and order, sign and cancel orders, assign and reclaim seats,
//!   pay by card (through the acquirer: `card_payments`), object to documents, manage the account's API keys. Orders, signatures,
//!   seats and payments go to the audit log with who did them (the key, or the admin user);
//! - a member of the account (session): 403 on all of this. What a member needs of the
//!   license — the lot of their own seat and whether they may host — is in `GET /api/v1/me`;
//! - the operator alone: the catalogue (tariffs, promotions), creating accounts, registering
//!   bank transfers, retro discounts, suspension and termination. Anyone else who is
//!   identified gets 403 there — after the account check, so another account's key or admin
//!   still gets 404;
//! - another account's key, admin or member: 404, as for an account that does not exist.

pub(crate) mod accounts;
pub(crate) mod card_payments;
pub(crate) mod documents;
pub(crate) mod invoices;
pub(crate) mod lots;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod promotions;
pub mod schemas;
pub(crate) mod tariffs;
pub(crate) mod terminations;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use parley_licensing::{LicensingError, Money};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tariffs", get(tariffs::list))
        .route("/tariffs/{code}", get(tariffs::get).put(tariffs::put))
        .route("/tariffs/{code}/archive", post(tariffs::archive))
        .route(
            "/promotions",
            get(promotions::list).post(promotions::create),
        )
        .route("/accounts", post(accounts::create).get(accounts::list))
        .route(
            "/accounts/by-crm/{system}/{external_id}",
            get(accounts::by_crm),
        )
        .route(
            "/accounts/by-crm/{system}/{external_id}/license",
            get(accounts::license_status),
        )
        .route("/accounts/{account}", get(accounts::get))
        .route(
            "/accounts/{account}/api-keys",
            post(accounts::create_key).get(accounts::list_keys),
        )
        .route(
            "/accounts/{account}/api-keys/{key_id}",
            delete(accounts::revoke_key),
        )
        .route("/accounts/{account}/quotes", post(orders::quote))
        .route(
            "/accounts/{account}/orders",
            post(orders::place).get(orders::list),
        )
        .route("/accounts/{account}/orders/{order}", get(orders::get))
        .route(
            "/accounts/{account}/orders/{order}/cancel",
            post(orders::cancel),
        )
        .route(
            "/accounts/{account}/orders/{order}/sign",
            post(orders::sign),
        )
        .route("/accounts/{account}/lots", get(lots::list))
        .route("/accounts/{account}/lots/{lot}", get(lots::get))
        .route(
            "/accounts/{account}/lots/{lot}/seats",
            post(lots::assign_seat),
        )
        .route("/accounts/{account}/seats", get(lots::list_seats))
        .route(
            "/accounts/{account}/seats/{user_id}",
            delete(lots::reclaim_seat),
        )
        .route("/accounts/{account}/invoices", get(invoices::list))
        .route("/accounts/{account}/invoices/{invoice}", get(invoices::get))
        .route(
            "/accounts/{account}/invoices/{invoice}/payments",
            post(payments::register),
        )
        .route(
            "/accounts/{account}/invoices/{invoice}/retro-discounts",
            post(invoices::retro_discount),
        )
        .route(
            "/accounts/{account}/corrective-invoices",
            get(invoices::list_corrective),
        )
        .route(
            "/accounts/{account}/corrective-invoices/{corrective}",
            get(invoices::get_corrective),
        )
        .route("/accounts/{account}/payments", get(payments::list))
        .route(
            "/accounts/{account}/invoices/{invoice}/card-payments",
            post(card_payments::start),
        )
        .route(
            "/accounts/{account}/card-payments",
            get(card_payments::list),
        )
        // The acquirer's notifications: public by design (see `card_payments`), so their own
        // tighter body limit.
        .route(
            "/payments/yookassa/notifications",
            post(card_payments::notification).layer(axum::extract::DefaultBodyLimit::max(
                card_payments::MAX_NOTIFICATION_BYTES,
            )),
        )
        .route("/accounts/{account}/documents", get(documents::list))
        .route(
            "/accounts/{account}/documents/{document}",
            get(documents::get),
        )
        .route(
            "/accounts/{account}/documents/{document}/objection",
            post(documents::object),
        )
        .route(
            "/accounts/{account}/suspension",
            post(terminations::suspend).delete(terminations::resume),
        )
        .route(
            "/accounts/{account}/termination",
            post(terminations::terminate),
        )
        .route(
            "/accounts/{account}/termination/preview",
            post(terminations::preview),
        )
        .route("/accounts/{account}/refunds", get(terminations::refunds))
}

/// Authenticates the caller and checks it may act on `account` (the operator, its own key or
/// one of its admins; see the module docs). A malformed account id is simply an account that
/// does not exist. One indexed read for a key or a session, none for the operator: the quote
/// endpoint's latency budget counts on it.
pub(crate) async fn account_scope(
    app: &AppState,
    headers: &HeaderMap,
    account: &str,
) -> Result<(Caller, Uuid), ApiError> {
    let caller = Caller::from_headers(app, headers).await?;
    if caller == Caller::Anonymous {
        // The same 401 whether or not the account exists.
        caller.require_account(Uuid::nil())?;
    }
    let id = Uuid::parse_str(account).map_err(|_| LicensingError::UnknownAccount)?;
    caller.require_account(id)?;
    Ok((caller, id))
}

/// Operator-only calls.
pub(crate) async fn operator(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    Caller::from_headers(app, headers).await?.require_operator()
}

/// Largest page of a list.
pub const MAX_PAGE: u32 = 500;

/// `?limit&offset&order` of the account's lists (orders, invoices, payments, documents, lots,
/// seats, users). Without `limit` the whole list comes back, as before these parameters
/// existed. The list is read whole and cut here: an account's lists grow by a few entries a
/// month, so one indexed read per page costs less than a second query for the count.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPage {
    /// 1 to 500; absent: the whole list.
    pub limit: Option<u32>,
    /// Entries to skip, default 0: the next page starts at `offset + limit`.
    pub offset: Option<u32>,
    /// `oldest` first (default) or `newest` first.
    pub order: Option<String>,
}

impl ListPage {
    /// The page of `items` (given oldest first) the query asks for.
    pub fn apply<T>(&self, mut items: Vec<T>) -> Result<Vec<T>, ApiError> {
        let bad = |message: String| ApiError::BadRequest {
            code: "invalid_query",
            message,
        };
        match self.order.as_deref() {
            None | Some("oldest") => {}
            Some("newest") => items.reverse(),
            Some(_) => return Err(bad("order must be oldest or newest.".into())),
        }
        let offset = usize::try_from(self.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let Some(limit) = self.limit else {
            return Ok(items.into_iter().skip(offset).collect());
        };
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(bad(format!("limit must be between 1 and {MAX_PAGE}.")));
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(items.into_iter().skip(offset).take(limit).collect())
    }
}

/// A path id; a malformed one is "not found" like any id that does not exist.
pub(crate) fn path_id(s: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| LicensingError::NotFound { what }.into())
}

/// `{id}` or `{id}.html`: the printable form of a document shares its path.
pub(crate) fn split_html(s: &str) -> (&str, bool) {
    match s.strip_suffix(".html") {
        Some(id) => (id, true),
        None => (s, false),
    }
}

pub(crate) fn html(body: String) -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Largest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The `Idempotency-Key` header, required on calls that move money or seats.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Err(ApiError::BadRequest {
            code: "idempotency_key_required",
            message: "This call needs an Idempotency-Key header (a unique string per operation; \
                      resend the same one when retrying)."
                .into(),
        });
    };
    match v.to_str() {
        Ok(k)
            if !k.trim().is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(k.to_owned())
        }
        _ => Err(ApiError::BadRequest {
            code: "invalid_idempotency_key",
            message: format!(
                "The Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters."
            ),
        }),
    }
}

/// A free-text field with a length limit (reasons, names).
pub(crate) fn bounded_text<'a>(
    field: &'static str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max_chars || v.chars().any(char::is_control) {
        return Err(LicensingError::InvalidRequest {
            field,
            reason: format!("must be 1 to {max_chars} characters without control characters"),
        }
        .into());
    }
    Ok(v)
}

/// An amount from JSON: a string such as `"15245.90"` (the contract's form) or a plain number.
/// More than two decimals, exponents and non-numbers are refused, never rounded.
pub(crate) fn amount(field: &'static str, v: &Value) -> Result<Money, ApiError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(LicensingError::InvalidRequest {
                field,
                reason: "an amount is a string with at most two decimals, e.g. \"15245.90\"".into(),
            }
            .into());
        }
    };
    Ok(text.parse::<Money>()?)
}

/// An optional `YYYY-MM-DD` field.
pub(crate) fn opt_date(v: Option<&str>) -> Result<Option<chrono::NaiveDate>, ApiError> {
    Ok(v.map(parley_licensing::calendar::parse_date).transpose()?)
}

#[cfg(test)]
mod list_page_tests {
    use super::ListPage;

    fn page(limit: Option<u32>, offset: Option<u32>, order: Option<&str>) -> ListPage {
        ListPage {
            limit,
            offset,
            order: order.map(str::to_owned),
        }
    }

    #[test]
    fn without_a_limit_the_whole_list_as_before() {
        assert_eq!(
            page(None, None, None).apply(vec![1, 2, 3]).unwrap(),
            [1, 2, 3]
        );
        assert_eq!(
            page(None, Some(1), None).apply(vec![1, 2, 3]).unwrap(),
            [2, 3]
        );
    }

    #[test]
    fn pages_in_either_order() {
        let items: Vec<u32> = (1..=7).collect();
        let p = |o, order| page(Some(3), Some(o), order).apply(items.clone()).unwrap();
        assert_eq!(p(0, None), [1, 2, 3]);
        assert_eq!(p(3, Some("oldest")), [4, 5, 6]);
        assert_eq!(p(6, None), [7]);
        assert_eq!(p(9, None), Vec::<u32>::new());
        assert_eq!(p(0, Some("newest")), [7, 6, 5]);
        assert_eq!(p(6, Some("newest")), [1]);
    }

    #[test]
    fn bad_queries_are_refused_not_clamped() {
        for bad in [
            page(Some(0), None, None),
            page(Some(super::MAX_PAGE + 1), None, None),
            page(Some(5), None, Some("random")),
        ] {
            let e = bad.apply(vec![1]).unwrap_err();
            assert!(
                matches!(
                    e,
                    crate::error::ApiError::BadRequest {
                        code: "invalid_query",
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        assert!(
            page(Some(super::MAX_PAGE), Some(u32::MAX), None)
                .apply(vec![1])
                .unwrap()
                .is_empty()
        );
    }
}
