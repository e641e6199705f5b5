//! The OpenAPI document, derived from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::licensing::{
    accounts, card_payments, documents, invoices, lots, orders, payments, promotions, tariffs,
    terminations,
};
use super::users::{auth, manage, me, seat_review};
use super::{crm_card, health, integrations, meetings, participants};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley API",
        description = "Meetings, join tokens and host controls; licensing (tariffs, accounts, \
            quotes and orders, lots and seats, invoices, payments, documents). Errors are always \
            `{\"error\": {\"code\": \"snake_case\", \"message\": \"...\"}}`; licensing refusals \
            (422) add the fields that explain them, e.g. `opens_on`. Amounts are strings with two \
            decimals, dates `YYYY-MM-DD`. Real-time signaling is a WebSocket at `/api/v1/ws`, \
            described in docs/protocol.md.",
        version = "1"
    ),
    paths(
        meetings::create, meetings::list, meetings::get, meetings::join, meetings::end,
        meetings::chat, participants::list, participants::mute, participants::remove,
        health::healthz, health::readyz, health::metrics,
        tariffs::list, tariffs::get, tariffs::put, tariffs::archive,
        promotions::list, promotions::create,
        accounts::create, accounts::get, accounts::create_key, accounts::list_keys,
        accounts::revoke_key, accounts::by_crm,
        accounts::license_status,
        orders::quote, orders::place, orders::list, orders::get, orders::cancel,
        orders::sign,
        lots::list, lots::get, lots::list_seats, lots::assign_seat, lots::reclaim_seat,
        invoices::list, invoices::get, invoices::retro_discount, invoices::list_corrective,
        invoices::get_corrective,
        payments::register, payments::list,
        card_payments::start, card_payments::list, card_payments::notification,
        documents::list, documents::get, documents::object,
        terminations::suspend, terminations::resume, terminations::terminate,
        terminations::refunds, terminations::preview, accounts::list,
        super::operator::sessions::open, super::operator::sessions::close,
        super::operator::node::status, super::operator::live::list,
        super::operator::drain::drain,
        auth::sign_in, auth::sign_out, auth::list_sessions, auth::revoke_session,
        auth::request_reset, auth::confirm_reset, auth::accept_invitation,
        auth::preview_invitation, me::me,
        manage::invite, manage::list, manage::get, manage::update, manage::assign_seat,
        manage::reclaim_seat, seat_review::report, seat_review::reclaim,
        crate::summaries::http::get_summary, crate::summaries::http::add_contacts,
        crate::privacy::list, crate::privacy::erasure::erase,
        crate::recordings::http::start, crate::recordings::http::stop,
        crate::recordings::http::of_meeting, crate::recordings::http::get,
        crate::recordings::http::delete, crate::recordings::http::links,
        crate::recordings::http::of_account, crate::recordings::http::download,
        crm_card::put_secret, crm_card::secret_status, crm_card::list_links,
        crm_card::link_user, crm_card::unlink_user, crm_card::deal,
        crm_card::meetings, crm_card::create, crm_card::summary,
        integrations::put_crm, integrations::get_crm, integrations::delete_crm,
        integrations::create_webhook, integrations::list_webhooks, integrations::delete_webhook,
        integrations::list_outbox, integrations::retry_outbox, integrations::inbound_meeting,
        super::sdk::create_key, super::sdk::list_keys, super::sdk::revoke_key,
        super::sdk::mint_token,
        super::usage::usage
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "meetings", description = "Create, read, join and end meetings. A meeting \
            answers its own credentials (host key, join tokens, invitation), the session of the \
            user who hosts it (as its host), its account's admins (session) and API key (read \
            it, its chat and participants, end it) and the operator (any meeting). A member of \
            the account who does not host it gets 403; another account's users and keys 404, as \
            for a meeting that does not exist; a call without any credential 401, whether or not \
            the meeting exists."),
        (name = "participants", description = "The participant list (the meeting's host, its \
            account's admins and key, the operator) and host controls (mute, remove: the host \
            key, a host token or the hosting user's session)"),
        (name = "operations", description = "Health and metrics"),
        (name = "operator", description = "The platform operator's console: operator sessions \
            (the operator token exchanged for an expiring, revocable `Bearer op_<token>` that \
            acts as the operator token everywhere but here), the node's load and the meetings \
            live on it. Anyone else who is identified gets 403."),
        (name = "licensing", description = "Tariffs, accounts, quotes and orders, lots and seats, \
            invoices, payments, transfer documents, suspension and termination. The operator \
            calls with `Bearer <PARLEY_ADMIN_TOKEN>`; an account with its API key (`Bearer \
            <key_id>.<secret>`) or an account admin's session (the `parley_session` cookie or \
            `Bearer s_<token>`), and sees only its own resources (another account's are 404). \
            The catalogue, creating accounts, bank transfers, retro discounts, suspension and \
            termination are the operator's (403 for a key or a session). A member's session \
            gets 403: their own seat is in `GET /api/v1/me`."),
        (name = "recordings", description = "Recording of meetings. Start and stop with a join \
            token that has the `record` grant or the meeting's host key (everyone in the meeting \
            is told over the WebSocket); the tariff must include recording and its storage quota \
            must have room. A recording is `recording`, then `processing`, then `ready` (or \
            `failed` with its error, files kept) and is deleted when the tariff's retention ends. \
            The meeting's host user, the account's admins, its API key and the operator see \
            recordings and get short-lived signed download links \
            (`GET /recordings/{rid}/{file}?expires=…&sig=…`, no credential needed, ranges \
            supported; expired or altered links are 403)."),
        (name = "privacy", description = "The account's audit log of actions on personal data \
            and licenses, and erasure of a person's data on request (financial records are kept)."),
        (name = "integrations", description = "The account's CRM connection (secrets never \
            returned), customer webhook endpoints (signed with `X-Parley-Timestamp` and \
            `X-Parley-Signature: v1=<hex HMAC-SHA256(secret, \"{timestamp}.{body}\")>`), the \
            outbox with its delivery logs and manual retry, and the inbound endpoint a generic \
            CRM calls to start a meeting for a deal."),
        (name = "users", description = "Users of an account: sign-in (the `parley_session` \
            cookie or `Bearer s_<token>`), sessions, invitations, password resets, roles and \
            seats. Account admins (session), the account's API key and the operator manage an \
            account's users; another account's are 404."),
        (name = "crm card", description = "The deal card a CRM shows in an iframe: launched by \
            `GET /crm/card?account&deal&crm_user&exp&sig` (hex HMAC-SHA256 with the account's \
            card secret over `account=…&deal=…&crm_user=…&exp=…`), then called with the card \
            session (`Bearer cs_<token>` or the `parley_card` cookie). The account's admin, API \
            key or the operator set the card secret and link CRM users to Parley users."),
        (name = "sdk", description = "Embedding meetings in your own site (docs/sdk.md): SDK \
            keys with their allowed origins (tariffs with SDK embedding only), and join tokens \
            your backend mints with the account API key. A token minted with `sdk_key_id` is \
            admitted by the WebSocket only from the key's origins and opens the iframe page \
            `GET /embed/{meeting}?token=…`, framable only by them. The SDK module is \
            `/sdk/v1/parley.js`."),
        (name = "usage", description = "The account's usage per Moscow day for the admin \
            console's charts: meetings held, meeting minutes, seats in use (users who hosted a \
            meeting that day) and seats licensed.")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A join token (JWT), the meeting's host key, its invitation secret, the \
                         operator's admin token or an operator session (`op_<token>`), an \
                         account API key (`<key_id>.<secret>`), or a user session \
                         (`s_<token>`), depending on the call.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the form committed to docs/openapi.json).
pub fn openapi_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// `GET /api/v1/openapi.json`
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
