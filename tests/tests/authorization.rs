//! Authorization, black-box: one table of every endpoint × every kind of caller. Nobody reads or
//! changes what is not theirs: strangers get 401, a member of the account 403 where the action
//! is an admin's, and someone of another account 404, exactly like a thing that does not exist
//! (never a 200 with data, never a 403 that says it exists).
//!
//! The table is checked cell by cell against the running server built by the shared fixture
//! (`parley_tests::fixtures`), and every mismatch is reported at once. A second test parses
//! docs/openapi.json and fails when a documented endpoint has no row, so a new endpoint cannot
//! arrive without its authorization decided here.
//!
//! Calls that use something up (revoke a key, cancel an order, delete an endpoint, accept an
//! invitation…) run on a throwaway object (`Fresh`), made again only after a cell succeeded:
//! every refused caller tried on the very object the next allowed caller then uses, so a
//! refusal that secretly took effect shows up as that caller's failure.
//!
//! Surfaces outside the JSON API are checked in `non_api_surfaces`; see its docs for why each
//! is authorized the way it is.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use parley_tests::fixtures::{
    AccountFixture, CRM_SYSTEM, DEAD_URL, Fixture, PASSWORD, SEAT_PRICE, TARIFF,
};
use parley_tests::{ADMIN_TOKEN, WsClient, str_of};
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls. The table's columns, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// No credential at all.
    Anonymous,
    /// A guest's join token of A's meeting.
    Guest,
    /// The host key of A's meeting.
    Host,
    /// A member of account A (signed in; hosts A's meeting; holds a seat).
    Member,
    /// An account admin of account B (signed in).
    AdminB,
    /// Account B's API key.
    KeyB,
    /// An account admin of account A (signed in).
    AdminA,
    /// Account A's API key.
    KeyA,
    /// The platform operator's token.
    Operator,
    /// A deal-card session of A's member.
    Card,
}

const ROLES: [Role; 10] = [
    Role::Anonymous,
    Role::Guest,
    Role::Host,
    Role::Member,
    Role::AdminB,
    Role::KeyB,
    Role::AdminA,
    Role::KeyA,
    Role::Operator,
    Role::Card,
];

impl Role {
    fn bearer(self, f: &Fixture) -> Option<String> {
        let a = &f.a;
        match self {
            Role::Anonymous => None,
            Role::Guest => Some(a.meeting.guest_token.clone()),
            Role::Host => Some(a.meeting.host_key.clone()),
            Role::Member => Some(a.member.token.clone()),
            Role::AdminB => Some(f.b.admin.token.clone()),
            Role::KeyB => Some(f.b.key.clone()),
            Role::AdminA => Some(a.admin.token.clone()),
            Role::KeyA => Some(a.key.clone()),
            Role::Operator => Some(ADMIN_TOKEN.to_owned()),
            Role::Card => Some(a.card_token.clone()),
        }
    }
}

/// What a cell expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The authorization passed: 2xx, or a rule of the endpoint itself (400, 409, 410, 422).
    Allowed,
    Unauthorized,
    Forbidden,
    NotFound,
    /// Anything else (5xx, 405, 429…): never expected.
    Other(u16),
}

impl Outcome {
    fn parse(s: &str) -> Outcome {
        match s {
            "ok" => Outcome::Allowed,
            "401" => Outcome::Unauthorized,
            "403" => Outcome::Forbidden,
            "404" => Outcome::NotFound,
            other => panic!("unknown outcome {other:?} in the table"),
        }
    }

    fn of(status: u16) -> Outcome {
        match status {
            200..=299 | 400 | 409 | 410 | 422 => Outcome::Allowed,
            401 => Outcome::Unauthorized,
            403 => Outcome::Forbidden,
            404 => Outcome::NotFound,
            s => Outcome::Other(s),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Allowed => write!(f, "allowed"),
            Outcome::Unauthorized => write!(f, "401"),
            Outcome::Forbidden => write!(f, "403"),
            Outcome::NotFound => write!(f, "404"),
            Outcome::Other(s) => write!(f, "{s}"),
        }
    }
}

/// Whose thing a row touches.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// Account A's resource, on A's path.
    AccountA,
    /// Account B's resource, on B's path.
    AccountB,
    /// Account B's object named under A's path: nobody may reach it that way.
    BUnderA,
    MeetingOfA,
    MeetingOfB,
    /// The platform's own (catalogue, accounts, all meetings): the operator's.
    Platform,
    /// Open to anyone (some take a token in the body instead).
    Public,
    /// The caller's own user (`/me`, own sessions).
    Caller,
    /// The deal card's session fixes account, user and deal.
    CardSession,
    /// The inbound CRM webhook: only the account's HMAC signature counts.
    Signed,
}

/// Each cell is `ok` (allowed: 2xx, or a 400/409/410/422 of the endpoint's own rules, which
/// it reaches only past authorization), `401`, `403` or `404`; columns in [`ROLES`] order:
/// anonymous, guest, host, member of A, admin of B, key of B, admin of A, key of A, operator,
/// deal card.
#[rustfmt::skip]
mod policy {
    //                                        anon gst  host memb admB keyB admA keyA oper card
    pub const PUBLIC: &str =                 "ok   ok   ok   ok   ok   ok   ok   ok   ok   ok";
    /// The operator's own business: whoever else is identified (a key, a session) gets 403.
    pub const OPERATOR: &str =               "401  401  401  403  403  403  403  403  ok   401";
    pub const OPERATOR_LIST: &str =          "401  403  403  403  403  403  403  403  ok   403";
    /// The licensing API: the account's API key, its admins (session: the admin console) or
    /// the operator. A member of the account is 403 (their own seat is in `/me`).
    pub const LICENSING: &str =              "401  401  401  403  404  404  ok   ok   ok   401";
    pub const LICENSING_B: &str =            "401  401  401  404  ok   ok   404  404  ok   401";
    /// The operator's action on an account: its key and admins 403, other accounts 404.
    pub const LICENSING_OPER: &str =         "401  401  401  403  404  404  403  403  ok   401";
    pub const FOREIGN_LICENSING: &str =      "401  401  401  403  404  404  404  404  404  401";
    /// An operator's action: the account's own key and admins are refused before any object
    /// is looked up, so their 403 says nothing about B's object.
    pub const FOREIGN_LICENSING_OPER: &str = "401  401  401  403  404  404  403  403  404  401";
    /// Managed like the account's users: admin session, the account's key, the operator.
    pub const MANAGE: &str =                 "401  401  401  403  404  404  ok   ok   ok   401";
    pub const MANAGE_NO_KEY: &str =          "401  401  401  403  404  404  ok   403  ok   401";
    pub const FOREIGN_MANAGE: &str =         "401  401  401  403  404  404  404  404  404  401";
    /// A user's own record: the user too, besides the account's managers.
    pub const OWN_RECORD: &str =             "401  401  401  ok   404  404  ok   ok   ok   401";
    pub const OWN_USER: &str =               "401  401  401  ok   ok   403  ok   403  403  401";
    /// One of the member's sessions: theirs alone to revoke.
    pub const OWN_SESSION: &str =            "401  401  401  ok   404  403  404  403  403  401";
    /// A meeting is read with its own credentials (invitation, host key, join tokens), by the
    /// user who hosts it, the account's admins and key, and the operator.
    pub const MEETING_READ: &str =           "401  ok   ok   ok   404  404  ok   ok   ok   401";
    /// Joined only with its own credentials: invitation, host key, host token.
    pub const MEETING_JOIN: &str =           "401  ok   ok   401  401  401  401  401  401  401";
    /// Chat, participants, ending: the host (credential or the hosting user's session), the
    /// account's admins and key, the operator.
    pub const OVERSEE: &str =                "401  403  ok   ok   404  404  ok   ok   ok   401";
    /// Host controls (mute, remove): the host credential or the hosting user's session.
    pub const HOST_CONTROL: &str =           "401  403  ok   ok   404  404  403  403  403  401";
    /// Only the meeting's own host credential (contacts, recording control).
    pub const HOST_ONLY: &str =              "401  403  ok   401  401  401  401  401  401  401";
    pub const OTHER_MEETING: &str =          "401  401  401  401  401  401  401  401  401  401";
    /// The meeting's host credential, the user who hosted it, the account's admins and key.
    pub const SUMMARY: &str =                "401  403  ok   ok   404  404  ok   ok   ok   401";
    /// What B's meeting's host, admins and key may see.
    pub const SEEN_BY_B: &str =              "401  401  401  404  ok   ok   404  404  ok   401";
    pub const RECORDINGS: &str =             "401  401  401  ok   404  404  ok   ok   ok   401";
    /// A signed download link: its signature is the credential, whoever sends it.
    pub const SIGNED_LINK: &str =            "403  403  403  403  403  403  403  403  403  403";
    pub const MINT_B: &str =                 "401  401  401  404  ok   ok   404  404  ok   401";
    pub const CREATE_MEETING: &str =         "ok   401  401  ok   ok   ok   ok   ok   ok   401";
    /// A meeting hosted by A's member: B's key may not name A's user (no seat of B's).
    pub const HOST_A_MEMBER: &str =          "401  401  401  ok   ok   403  ok   ok   ok   401";
    pub const CARD: &str =                   "401  401  401  401  401  401  401  401  401  ok";
    pub const SIGNATURE_ONLY: &str =         "401  401  401  401  401  401  401  401  401  401";
}
use policy::*;

/// A throwaway object a row uses up; it binds the path parameter (or body placeholder) named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// `key_id`: another key of A.
    ApiKey,
    /// `order`, `invoice`, `amount`: an unpaid one-seat order of A.
    UnpaidOrder,
    /// `order`: an unsigned postpay order of A.
    PostpayOrder,
    /// `invoice`: a paid invoice of A.
    PaidInvoice,
    /// `document`: a transfer document of A, not objected to.
    Document,
    /// `user_id`: a seat of A's lot held by a CRM user id.
    LicensingSeat,
    /// `user`: an invited user of A without a seat.
    InvitedUser,
    /// `user`: a user of A holding a seat.
    SeatedUser,
    /// `key`: an SDK key of A.
    SdkKey,
    /// `crm_user`: a CRM user linked to A's spare user.
    CrmLink,
    /// `endpoint`: a webhook endpoint of A.
    WebhookEndpoint,
    /// A's CRM connection, connected again if a cell removed it.
    CrmConnection,
    /// `message`: A's outbox message, failed (again) and so retryable.
    FailedMessage,
    /// `session`: another session of A's member.
    MemberSession,
    /// `invitation`: an unused invitation token of A.
    Invitation,
    /// `reset`: an unused password-reset token of a user of A.
    ResetToken,
    /// `rid`: a finished recording of A's meeting.
    Recording,
    /// `pid`: a participant connected to A's meeting.
    Participant,
    /// Account A suspended (lifted again after the row).
    Suspended,
    /// Account A not suspended (and again after the row).
    NotSuspended,
}

struct Row {
    method: Method,
    /// The path exactly as in docs/openapi.json.
    path: &'static str,
    owner: Owner,
    expect: [Outcome; 10],
    /// JSON with `{name}` placeholders in its strings (bindings, and `{unique}`).
    body: Option<Value>,
    /// Path parameter -> binding, where it is not the binding of the same name.
    bind: Vec<(&'static str, &'static str)>,
    fresh: Option<Fresh>,
}

fn row(method: Method, path: &'static str, owner: Owner, expect: &str) -> Row {
    let cells: Vec<Outcome> = expect.split_whitespace().map(Outcome::parse).collect();
    Row {
        method,
        path,
        owner,
        expect: cells
            .try_into()
            .unwrap_or_else(|c: Vec<Outcome>| panic!("{path}: {} cells, not 10", c.len())),
        body: None,
        bind: Vec::new(),
        fresh: None,
    }
}

fn get(path: &'static str, owner: Owner, expect: &str) -> Row {
    row(Method::GET, path, owner, expect)
}

fn post(path: &'static str, owner: Owner, expect: &str) -> Row {
    row(Method::POST, path, owner, expect)
}

fn put(path: &'static str, owner: Owner, expect: &str) -> Row {
    row(Method::PUT, path, owner, expect)
}

fn patch(path: &'static str, owner: Owner, expect: &str) -> Row {
    row(Method::PATCH, path, owner, expect)
}

fn delete(path: &'static str, owner: Owner, expect: &str) -> Row {
    row(Method::DELETE, path, owner, expect)
}

impl Row {
    fn body(mut self, body: Value) -> Row {
        self.body = Some(body);
        self
    }

    fn bind(mut self, param: &'static str, to: &'static str) -> Row {
        self.bind.push((param, to));
        self
    }

    fn fresh(mut self, fresh: Fresh) -> Row {
        self.fresh = Some(fresh);
        self
    }
}

/// The table. Order matters only where a row changes what later rows see: the meeting is ended
/// near the end (its summary exists only then) and signing out comes last.
fn table() -> Vec<Row> {
    use Owner::*;
    let one_seat = json!({"type": "initial", "tariff": TARIFF, "seats": 1});
    vec![
        // Operations: public by design (probes and Prometheus scrape on a private network).
        get("/healthz", Public, PUBLIC),
        get("/readyz", Public, PUBLIC),
        get("/metrics", Public, PUBLIC),
        // The catalogue and the operator's business.
        get("/api/v1/tariffs", Public, PUBLIC),
        get("/api/v1/tariffs/{code}", Public, PUBLIC).bind("code", "tariff"),
        put("/api/v1/tariffs/{code}", Platform, OPERATOR)
            .bind("code", "spare_tariff")
            .body(
                json!({"name": "Spare", "term_months": 12, "price_per_seat": "1.00",
                "features": {"max_participants": 5, "max_meeting_minutes": 60}}),
            ),
        post("/api/v1/tariffs/{code}/archive", Platform, OPERATOR).bind("code", "spare_tariff"),
        get("/api/v1/promotions", Platform, OPERATOR),
        post("/api/v1/promotions", Platform, OPERATOR).body(
            json!({"name": "promo {unique}", "discount": {"kind": "percent", "percent": "5"}}),
        ),
        post("/api/v1/accounts", Platform, OPERATOR).body(json!({
            "name": "New {unique}", "kind": "individual", "crm_system": "s",
            "crm_external_id": "{unique}"})),
        get("/api/v1/meetings", Platform, OPERATOR_LIST),
        // The operator console: the account list, operator sessions, the node, live meetings.
        get("/api/v1/accounts", Platform, OPERATOR),
        post("/api/v1/operator/sessions", Platform, OPERATOR),
        delete("/api/v1/operator/sessions/current", Platform, OPERATOR),
        get("/api/v1/operator/node", Platform, OPERATOR),
        get("/api/v1/operator/meetings", Platform, OPERATOR),
        // The fixture is one node: the operator reaches the endpoint's own 409 `not_clustered`.
        post("/api/v1/operator/drain", Platform, OPERATOR),
        // Accounts and keys.
        get("/api/v1/accounts/{account}", AccountA, LICENSING),
        get("/api/v1/accounts/{account}", AccountB, LICENSING_B).bind("account", "b.account"),
        get(
            "/api/v1/accounts/by-crm/{system}/{external_id}",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/by-crm/{system}/{external_id}/license",
            AccountA,
            LICENSING,
        ),
        post("/api/v1/accounts/{account}/api-keys", AccountA, LICENSING),
        get("/api/v1/accounts/{account}/api-keys", AccountA, LICENSING),
        delete(
            "/api/v1/accounts/{account}/api-keys/{key_id}",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::ApiKey),
        delete(
            "/api/v1/accounts/{account}/api-keys/{key_id}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("key_id", "b.key_id"),
        // Quotes, orders, lots and seats.
        post("/api/v1/accounts/{account}/quotes", AccountA, LICENSING).body(one_seat.clone()),
        // A top-up of B's lot, priced or ordered on A's account.
        post(
            "/api/v1/accounts/{account}/quotes",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .body(json!({"type": "top_up", "license_id": "{b.lot}", "add_seats": 1})),
        post(
            "/api/v1/accounts/{account}/orders",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .body(json!({"type": "top_up", "license_id": "{b.lot}", "add_seats": 1})),
        get("/api/v1/accounts/{account}/orders", AccountA, LICENSING),
        post("/api/v1/accounts/{account}/orders", AccountA, LICENSING).body(one_seat.clone()),
        get(
            "/api/v1/accounts/{account}/orders/{order}",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/{account}/orders/{order}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("order", "b.order"),
        post(
            "/api/v1/accounts/{account}/orders/{order}/cancel",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::UnpaidOrder),
        post(
            "/api/v1/accounts/{account}/orders/{order}/cancel",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("order", "b.order"),
        post(
            "/api/v1/accounts/{account}/orders/{order}/sign",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::PostpayOrder),
        get("/api/v1/accounts/{account}/lots", AccountA, LICENSING),
        get("/api/v1/accounts/{account}/lots/{lot}", AccountA, LICENSING),
        get(
            "/api/v1/accounts/{account}/lots/{lot}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("lot", "b.lot"),
        post(
            "/api/v1/accounts/{account}/lots/{lot}/seats",
            AccountA,
            LICENSING,
        )
        .body(json!({"user_id": "crm-seat-{unique}"})),
        post(
            "/api/v1/accounts/{account}/lots/{lot}/seats",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("lot", "b.lot")
        .body(json!({"user_id": "crm-seat-{unique}"})),
        get("/api/v1/accounts/{account}/seats", AccountA, LICENSING),
        delete(
            "/api/v1/accounts/{account}/seats/{user_id}",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::LicensingSeat),
        // Money and documents.
        get("/api/v1/accounts/{account}/invoices", AccountA, LICENSING),
        get(
            "/api/v1/accounts/{account}/invoices/{invoice}",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/{account}/invoices/{invoice}",
            AccountA,
            LICENSING,
        )
        .bind("invoice", "invoice.html"),
        get(
            "/api/v1/accounts/{account}/invoices/{invoice}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("invoice", "b.invoice.html"),
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/payments",
            AccountA,
            LICENSING_OPER,
        )
        .fresh(Fresh::UnpaidOrder)
        .body(json!({"method": "bank_transfer", "amount": "{amount}"})),
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/payments",
            BUnderA,
            FOREIGN_LICENSING_OPER,
        )
        .bind("invoice", "b.invoice")
        .body(json!({"method": "bank_transfer", "amount": SEAT_PRICE})),
        // A card payment registered directly is the operator's too (an account's card money is
        // confirmed by the acquirer: the card-payments rows below).
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/payments",
            BUnderA,
            FOREIGN_LICENSING_OPER,
        )
        .bind("invoice", "b.invoice")
        .body(json!({"method": "card", "amount": SEAT_PRICE})),
        // Card payments go through the acquirer (fixture A is a legal entity and no acquirer
        // is configured here, so the allowed cells get the rules' 422; the flow itself:
        // tests/tests/card_payments.rs).
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/card-payments",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::UnpaidOrder),
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/card-payments",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("invoice", "b.invoice"),
        get(
            "/api/v1/accounts/{account}/card-payments",
            AccountA,
            LICENSING,
        ),
        // The acquirer's notification: public by design (YooKassa cannot authenticate; its
        // body is never believed — only the payment id is read and the payment looked up at
        // the acquirer). An unknown id is the same quiet 200 for everyone.
        post("/api/v1/payments/yookassa/notifications", Public, PUBLIC).body(json!({
            "type": "notification", "event": "payment.succeeded", "object": {"id": "{unique}"}})),
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/retro-discounts",
            AccountA,
            LICENSING_OPER,
        )
        .fresh(Fresh::PaidInvoice)
        .body(json!({"discount": "100.00", "reason": "loyalty"})),
        post(
            "/api/v1/accounts/{account}/invoices/{invoice}/retro-discounts",
            BUnderA,
            FOREIGN_LICENSING_OPER,
        )
        .bind("invoice", "b.invoice")
        .body(json!({"discount": "100.00", "reason": "loyalty"})),
        get(
            "/api/v1/accounts/{account}/corrective-invoices",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/{account}/corrective-invoices/{corrective}",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/{account}/corrective-invoices/{corrective}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("corrective", "b.corrective"),
        get("/api/v1/accounts/{account}/payments", AccountA, LICENSING),
        get("/api/v1/accounts/{account}/documents", AccountA, LICENSING),
        get(
            "/api/v1/accounts/{account}/documents/{document}",
            AccountA,
            LICENSING,
        ),
        get(
            "/api/v1/accounts/{account}/documents/{document}",
            AccountA,
            LICENSING,
        )
        .bind("document", "document.html"),
        get(
            "/api/v1/accounts/{account}/documents/{document}",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("document", "b.document"),
        post(
            "/api/v1/accounts/{account}/documents/{document}/objection",
            AccountA,
            LICENSING,
        )
        .fresh(Fresh::Document)
        .body(json!({"reason": "wrong date"})),
        post(
            "/api/v1/accounts/{account}/documents/{document}/objection",
            BUnderA,
            FOREIGN_LICENSING,
        )
        .bind("document", "b.document")
        .body(json!({"reason": "wrong date"})),
        get("/api/v1/accounts/{account}/refunds", AccountA, LICENSING),
        // The account's standing: the operator's. Termination is tried with a kind that does
        // not exist: the operator gets 422, proof enough, and A lives on for the other rows.
        post(
            "/api/v1/accounts/{account}/suspension",
            AccountA,
            LICENSING_OPER,
        )
        .fresh(Fresh::NotSuspended)
        .body(json!({"reason": "audit"})),
        delete(
            "/api/v1/accounts/{account}/suspension",
            AccountA,
            LICENSING_OPER,
        )
        .fresh(Fresh::Suspended),
        post(
            "/api/v1/accounts/{account}/termination",
            AccountA,
            LICENSING_OPER,
        )
        .body(json!({"kind": "sideways"})),
        // The preview changes nothing, so it runs with a real kind.
        post(
            "/api/v1/accounts/{account}/termination/preview",
            AccountA,
            LICENSING_OPER,
        )
        .body(json!({"kind": "provider"})),
        // Users and their seats.
        get("/api/v1/accounts/{account}/users", AccountA, MANAGE),
        post("/api/v1/accounts/{account}/invitations", AccountA, MANAGE)
            .body(json!({"email": "invitee-{unique}@a.example", "role": "member"})),
        get("/api/v1/accounts/{account}/users/{user}", AccountA, MANAGE).bind("user", "a.admin"),
        get(
            "/api/v1/accounts/{account}/users/{user}",
            AccountA,
            OWN_RECORD,
        )
        .bind("user", "a.member"),
        get(
            "/api/v1/accounts/{account}/users/{user}",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("user", "b.admin"),
        patch("/api/v1/accounts/{account}/users/{user}", AccountA, MANAGE)
            .bind("user", "a.spare")
            .body(json!({"display_name": "Renamed {unique}"})),
        patch(
            "/api/v1/accounts/{account}/users/{user}",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("user", "b.admin")
        .body(json!({"display_name": "Renamed {unique}"})),
        put(
            "/api/v1/accounts/{account}/users/{user}/seat",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::InvitedUser)
        .body(json!({"lot_id": "{lot}"})),
        put(
            "/api/v1/accounts/{account}/users/{user}/seat",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("user", "b.admin")
        .body(json!({"lot_id": "{lot}"})),
        // A's user, but a seat of B's lot.
        put(
            "/api/v1/accounts/{account}/users/{user}/seat",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .fresh(Fresh::InvitedUser)
        .body(json!({"lot_id": "{b.lot}"})),
        delete(
            "/api/v1/accounts/{account}/users/{user}/seat",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::SeatedUser),
        delete(
            "/api/v1/accounts/{account}/users/{user}/seat",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("user", "b.admin"),
        // The monthly review of unused seats (reclaiming nobody's seat: the columns' users
        // keep theirs).
        get("/api/v1/accounts/{account}/seat-review", AccountA, MANAGE),
        post(
            "/api/v1/accounts/{account}/seat-review/reclaim",
            AccountA,
            MANAGE,
        )
        .body(json!({"user_ids": ["nobody-{unique}"]})),
        // Integrations, the deal card's settings, the audit log and erasure.
        get("/api/v1/accounts/{account}/crm", AccountA, MANAGE),
        put("/api/v1/accounts/{account}/crm", AccountA, MANAGE).body(json!({
            "kind": "webhook", "settings": {"url": "{crm_url}", "secret": "{crm_secret}"}})),
        delete("/api/v1/accounts/{account}/crm", AccountA, MANAGE).fresh(Fresh::CrmConnection),
        post(
            "/api/v1/accounts/{account}/crm/card-secret",
            AccountA,
            MANAGE,
        )
        .body(json!({"crm_origin": "http://127.0.0.1:9001"})),
        get(
            "/api/v1/accounts/{account}/crm/card-secret",
            AccountA,
            MANAGE,
        ),
        get("/api/v1/accounts/{account}/crm/users", AccountA, MANAGE),
        post("/api/v1/accounts/{account}/crm/users", AccountA, MANAGE)
            .body(json!({"crm_user_id": "crm-{unique}", "user_id": "{a.spare}"})),
        post(
            "/api/v1/accounts/{account}/crm/users",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .body(json!({"crm_user_id": "crm-{unique}", "user_id": "{b.admin}"})),
        delete(
            "/api/v1/accounts/{account}/crm/users/{crm_user}",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::CrmLink),
        get("/api/v1/accounts/{account}/webhooks", AccountA, MANAGE),
        post("/api/v1/accounts/{account}/webhooks", AccountA, MANAGE).body(json!({
            "url": "{dead_url}/hook-{unique}", "events": ["meeting.ended"]})),
        delete(
            "/api/v1/accounts/{account}/webhooks/{endpoint}",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::WebhookEndpoint),
        delete(
            "/api/v1/accounts/{account}/webhooks/{endpoint}",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("endpoint", "b.endpoint"),
        get("/api/v1/accounts/{account}/outbox", AccountA, MANAGE),
        post(
            "/api/v1/accounts/{account}/outbox/{message}/retry",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::FailedMessage),
        post(
            "/api/v1/accounts/{account}/outbox/{message}/retry",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("message", "b.message"),
        get("/api/v1/accounts/{account}/audit", AccountA, MANAGE),
        // Usage figures for the console's charts: read like the account's users.
        get("/api/v1/accounts/{account}/usage", AccountA, MANAGE),
        get("/api/v1/accounts/{account}/usage", AccountB, SEEN_BY_B).bind("account", "b.account"),
        // Erasure is a person's request, decided by a person: not by a server-to-server key.
        post(
            "/api/v1/accounts/{account}/erasure",
            AccountA,
            MANAGE_NO_KEY,
        )
        .body(json!({"email": "gone-{unique}@client.example"})),
        // Erasing, in A, the address of B's admin touches nothing of B (B's admin columns of
        // the rows below still work).
        post(
            "/api/v1/accounts/{account}/erasure",
            AccountA,
            MANAGE_NO_KEY,
        )
        .body(json!({"email": "{b.admin.email}"})),
        // SDK embedding: keys managed like the users; join tokens minted for the account's
        // meetings by its admins, its key or the operator.
        post("/api/v1/accounts/{account}/sdk-keys", AccountA, MANAGE).body(json!({
            "name": "Shop {unique}", "allowed_origins": ["https://shop.example"]})),
        get("/api/v1/accounts/{account}/sdk-keys", AccountA, MANAGE),
        delete(
            "/api/v1/accounts/{account}/sdk-keys/{key}",
            AccountA,
            MANAGE,
        )
        .fresh(Fresh::SdkKey),
        delete(
            "/api/v1/accounts/{account}/sdk-keys/{key}",
            BUnderA,
            FOREIGN_MANAGE,
        )
        .bind("key", "b.sdk_key"),
        post("/api/v1/meetings/{id}/tokens", MeetingOfA, MANAGE)
            .body(json!({"display_name": "Embedded"})),
        post("/api/v1/meetings/{id}/tokens", MeetingOfB, MINT_B)
            .bind("id", "b.id")
            .body(json!({"display_name": "Embedded"})),
        // The deal card: its session is the only credential.
        get("/api/v1/crm/card/deal", CardSession, CARD),
        get("/api/v1/crm/card/meetings", CardSession, CARD),
        post("/api/v1/crm/card/meetings", CardSession, CARD)
            .body(json!({"title": "From the card {unique}"})),
        // The generic CRM's inbound webhook: bearer credentials count for nothing there (the
        // signed calls are in `non_api_surfaces`).
        post(
            "/api/v1/crm/webhook/{account}/meetings",
            Signed,
            SIGNATURE_ONLY,
        )
        .body(json!({"deal_id": "D-1", "host_user_id": "{a.member}"})),
        // Users' own things, sign-in and the emailed links (the token in the body is the
        // credential).
        get("/api/v1/me", Caller, OWN_USER),
        get("/api/v1/auth/sessions", Caller, OWN_USER),
        delete("/api/v1/auth/sessions/{session}", Caller, OWN_SESSION).fresh(Fresh::MemberSession),
        post("/api/v1/auth/sign-in", Public, PUBLIC)
            .body(json!({"email": "{a.spare.email}", "password": PASSWORD})),
        post("/api/v1/auth/password-reset", Public, PUBLIC)
            .body(json!({"email": "{a.spare.email}"})),
        post("/api/v1/auth/password-reset/confirm", Public, PUBLIC)
            .fresh(Fresh::ResetToken)
            .body(json!({"token": "{reset}", "password": PASSWORD})),
        post("/api/v1/invitations/preview", Public, PUBLIC)
            .fresh(Fresh::Invitation)
            .body(json!({"token": "{invitation}"})),
        post("/api/v1/invitations/accept", Public, PUBLIC)
            .fresh(Fresh::Invitation)
            .body(json!({"token": "{invitation}", "password": PASSWORD})),
        // Meetings. Creating one is open (without PARLEY_REQUIRE_LICENSE); a key must name its
        // host, and may only name a user of its own account.
        post("/api/v1/meetings", Public, CREATE_MEETING).body(json!({"title": "Open {unique}"})),
        post("/api/v1/meetings", AccountA, HOST_A_MEMBER)
            .body(json!({"title": "On a seat {unique}", "host_user_id": "{a.member}"})),
        // A meeting is reached with its own credentials (invitation, host key, join tokens),
        // by the user who hosts it (the member), and overseen by its account's admins and key
        // and the operator; joined only with its own credentials.
        get("/api/v1/meetings/{id}", MeetingOfA, MEETING_READ),
        get("/api/v1/meetings/{id}", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        post("/api/v1/meetings/{id}/join", MeetingOfA, MEETING_JOIN)
            .body(json!({"display_name": "Again"})),
        post("/api/v1/meetings/{id}/join", MeetingOfB, OTHER_MEETING)
            .bind("id", "b.id")
            .body(json!({"display_name": "Again"})),
        get("/api/v1/meetings/{id}/chat", MeetingOfA, OVERSEE),
        get("/api/v1/meetings/{id}/chat", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        get("/api/v1/meetings/{id}/participants", MeetingOfA, OVERSEE),
        get("/api/v1/meetings/{id}/participants", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        post("/api/v1/meetings/{id}/contacts", MeetingOfA, HOST_ONLY)
            .body(json!({"contacts": [{"name": "Ivan", "email": "ivan-{unique}@client.example"}]})),
        post(
            "/api/v1/meetings/{id}/participants/{pid}/mute",
            MeetingOfA,
            HOST_CONTROL,
        )
        .fresh(Fresh::Participant)
        .body(json!({"source": "microphone"})),
        delete(
            "/api/v1/meetings/{id}/participants/{pid}",
            MeetingOfA,
            HOST_CONTROL,
        )
        .fresh(Fresh::Participant),
        // Recordings: started and stopped with the meeting's own credentials (a guest's token
        // has no record grant); seen by the user who hosted, the account's admins and key and
        // the operator; deleted by the account's admins, key and the operator.
        post("/api/v1/meetings/{id}/recording", MeetingOfA, HOST_ONLY).fresh(Fresh::Participant),
        delete("/api/v1/meetings/{id}/recording", MeetingOfA, HOST_ONLY),
        post("/api/v1/meetings/{id}/recording", MeetingOfB, OTHER_MEETING).bind("id", "b.id"),
        delete("/api/v1/meetings/{id}/recording", MeetingOfB, OTHER_MEETING).bind("id", "b.id"),
        get("/api/v1/meetings/{id}/recordings", MeetingOfA, RECORDINGS),
        get("/api/v1/meetings/{id}/recordings", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        get("/api/v1/recordings/{rid}", MeetingOfA, RECORDINGS),
        get("/api/v1/recordings/{rid}", MeetingOfB, SEEN_BY_B).bind("rid", "b.rid"),
        post("/api/v1/recordings/{rid}/links", MeetingOfA, RECORDINGS),
        post("/api/v1/recordings/{rid}/links", MeetingOfB, SEEN_BY_B).bind("rid", "b.rid"),
        delete("/api/v1/recordings/{rid}", MeetingOfA, MANAGE).fresh(Fresh::Recording),
        get("/api/v1/accounts/{account}/recordings", AccountA, MANAGE),
        get("/recordings/{rid}/{file}", Signed, SIGNED_LINK).bind("file", "forged_link"),
        post("/api/v1/meetings/{id}/end", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        // B's meeting ended before the table; A's ends here, and then has its summary.
        get("/api/v1/meetings/{id}/summary", MeetingOfB, SEEN_BY_B).bind("id", "b.id"),
        post("/api/v1/meetings/{id}/end", MeetingOfA, OVERSEE),
        get("/api/v1/meetings/{id}/summary", MeetingOfA, SUMMARY),
        // The card reads summaries of its own deal's meetings only; A's meeting is not one.
        get(
            "/api/v1/crm/card/meetings/{id}/summary",
            MeetingOfA,
            "401  401  401  401  401  401  401  401  401  404",
        ),
        // Last: signing out ends the sessions the columns use.
        post("/api/v1/auth/sign-out", Public, PUBLIC),
    ]
}

/// The values rows bind to, by name.
fn bindings(f: &Fixture) -> HashMap<String, String> {
    let (a, b) = (&f.a, &f.b);
    let pairs: Vec<(&str, String)> = vec![
        ("account", a.id.clone()),
        ("b.account", b.id.clone()),
        ("system", CRM_SYSTEM.into()),
        ("external_id", a.crm_external_id.clone()),
        ("tariff", TARIFF.into()),
        ("spare_tariff", "spare-tariff".into()),
        ("b.key_id", b.key_id.clone()),
        ("order", a.order.clone()),
        ("b.order", b.order.clone()),
        ("lot", a.lot.clone()),
        ("b.lot", b.lot.clone()),
        ("invoice", a.invoice.clone()),
        ("invoice.html", format!("{}.html", a.invoice)),
        ("b.invoice", b.invoice.clone()),
        ("b.invoice.html", format!("{}.html", b.invoice)),
        ("corrective", a.corrective.clone()),
        ("b.corrective", b.corrective.clone()),
        ("document", a.document.clone()),
        ("document.html", format!("{}.html", a.document)),
        ("b.document", b.document.clone()),
        ("a.admin", a.admin.id.clone()),
        ("a.member", a.member.id.clone()),
        ("a.spare", a.spare.id.clone()),
        ("a.spare.email", a.spare.email.clone()),
        ("b.admin", b.admin.id.clone()),
        ("b.admin.email", b.admin.email.clone()),
        ("b.endpoint", b.webhook_endpoint.clone()),
        ("b.message", b.outbox_message.clone()),
        ("crm_url", str_of(&a.crm_settings()["settings"], "url")),
        ("crm_secret", a.inbound_secret.clone()),
        ("dead_url", DEAD_URL.into()),
        ("id", a.meeting.id.clone()),
        ("b.id", b.meeting.id.clone()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Replaces every `{name}` in `text` by its binding; an unknown name is a bug of the table.
fn fill(text: &str, binds: &HashMap<String, String>, what: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unclosed placeholder in {what}"));
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        out.push_str(
            binds
                .get(name)
                .unwrap_or_else(|| panic!("{what}: nothing bound to {{{name}}}")),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn fill_json(v: &Value, binds: &HashMap<String, String>, what: &str) -> Value {
    match v {
        Value::String(s) => Value::String(fill(s, binds, what)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_json(x, binds, what)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_json(x, binds, what)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a fresh object left behind that must live while it is used (an open socket).
#[derive(Default)]
struct Held {
    sockets: Vec<WsClient>,
}

/// Makes the row's throwaway object; returns its bindings.
async fn prepare(f: &Fixture, fresh: Fresh, held: &mut Held) -> Vec<(&'static str, String)> {
    let a = &f.a;
    let acc = format!("/api/v1/accounts/{}", a.id);
    match fresh {
        Fresh::ApiKey => {
            let v = f
                .must(
                    201,
                    Method::POST,
                    &format!("{acc}/api-keys"),
                    Some(ADMIN_TOKEN),
                    None,
                )
                .await;
            vec![("key_id", str_of(&v, "key_id"))]
        }
        Fresh::UnpaidOrder => {
            let (order, invoice, amount) = f.unpaid_order(a).await;
            let amount = amount.as_str().unwrap_or_default().to_owned();
            vec![("order", order), ("invoice", invoice), ("amount", amount)]
        }
        Fresh::PostpayOrder => {
            let v = f
                .place_order(
                    a,
                    json!({"type": "initial", "tariff": TARIFF, "seats": 1, "payment_terms": "postpay"}),
                )
                .await;
            vec![("order", str_of(&v["order"], "id"))]
        }
        Fresh::PaidInvoice => vec![("invoice", f.paid_invoice(a).await.0)],
        Fresh::Document => vec![("document", f.paid_invoice(a).await.1)],
        Fresh::LicensingSeat => {
            let user = format!("crm-seat-{}", f.unique());
            f.must(
                201,
                Method::POST,
                &format!("{acc}/lots/{}/seats", a.lot),
                Some(&a.key),
                Some(json!({"user_id": user})),
            )
            .await;
            vec![("user_id", user)]
        }
        Fresh::InvitedUser => {
            let email = format!("fresh-{}@a.example", f.unique());
            vec![("user", f.invite(a, &email, "member").await)]
        }
        Fresh::SeatedUser => {
            let email = format!("fresh-{}@a.example", f.unique());
            let user = f.invite(a, &email, "member").await;
            f.seat(a, &user).await;
            vec![("user", user)]
        }
        Fresh::SdkKey => vec![("key", sdk_key(f, a).await)],
        Fresh::CrmLink => {
            let crm_user = format!("crm-{}", f.unique());
            f.must(
                201,
                Method::POST,
                &format!("{acc}/crm/users"),
                Some(&a.key),
                Some(json!({"crm_user_id": crm_user, "user_id": a.spare.id})),
            )
            .await;
            vec![("crm_user", crm_user)]
        }
        Fresh::WebhookEndpoint => {
            let v = f
                .must(
                    201,
                    Method::POST,
                    &format!("{acc}/webhooks"),
                    Some(&a.key),
                    Some(json!({"url": format!("{DEAD_URL}/hook-{}", f.unique()),
                        "events": ["meeting.ended"]})),
                )
                .await;
            vec![("endpoint", str_of(&v, "id"))]
        }
        Fresh::CrmConnection => {
            f.must(
                200,
                Method::PUT,
                &format!("{acc}/crm"),
                Some(&a.key),
                Some(a.crm_settings()),
            )
            .await;
            vec![]
        }
        Fresh::FailedMessage => {
            f.until_failed(a, &a.outbox_message).await;
            vec![("message", a.outbox_message.clone())]
        }
        Fresh::MemberSession => vec![("session", f.sign_in(&a.member.email).await.session_id)],
        Fresh::Invitation => {
            let email = format!("invited-{}@a.example", f.unique());
            f.invite(a, &email, "member").await;
            vec![("invitation", f.mailed_token(&email, "inv_", 1).await)]
        }
        Fresh::ResetToken => {
            // A user of its own: reset mails of other rows' requests cannot overtake its link.
            let email = &format!("reset-{}@a.example", f.unique());
            f.user(a, email, "member").await;
            let before = f.mail.sent_to(email).len();
            f.must(
                202,
                Method::POST,
                "/api/v1/auth/password-reset",
                None,
                Some(json!({"email": email})),
            )
            .await;
            vec![("reset", f.mailed_token(email, "rst_", before + 1).await)]
        }
        Fresh::Recording => vec![("rid", f.record(a, &a.meeting).await)],
        Fresh::Participant => {
            let (socket, pid) = f.participant(&a.meeting, "Fresh participant").await;
            held.sockets.push(socket);
            vec![("pid", pid)]
        }
        Fresh::Suspended => {
            f.must(
                200,
                Method::POST,
                &format!("{acc}/suspension"),
                Some(ADMIN_TOKEN),
                Some(json!({"reason": "audit"})),
            )
            .await;
            vec![]
        }
        Fresh::NotSuspended => {
            lift_suspension(f).await;
            vec![]
        }
    }
}

/// A new SDK key of `acc` (by its API key); returns its id.
async fn sdk_key(f: &Fixture, acc: &AccountFixture) -> String {
    let v = f
        .must(
            201,
            Method::POST,
            &format!("/api/v1/accounts/{}/sdk-keys", acc.id),
            Some(&acc.key),
            Some(json!({"name": format!("Shop {}", f.unique()),
                "allowed_origins": ["https://shop.example"]})),
        )
        .await;
    str_of(&v, "id")
}

/// Account A in good standing again (a no-op when it is).
async fn lift_suspension(f: &Fixture) {
    let (s, v) = f
        .call(
            Method::DELETE,
            &format!("/api/v1/accounts/{}/suspension", f.a.id),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(s == 200 || s == 422, "lifting the suspension: {s} {v}");
}

/// One cell that is not as the table says, or that answered as expected but still told too much.
struct Mismatch {
    method: Method,
    path: String,
    owner: Owner,
    role: Role,
    problem: String,
    body: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let excerpt: String = self.body.chars().take(160).collect();
        write!(
            f,
            "{} {} [{:?}] as {:?}: {}; body: {}",
            self.method, self.path, self.owner, self.role, self.problem, excerpt
        )
    }
}

/// Account B's identifiers, by what they are: none may appear in an answer about A's things.
fn b_identifiers(f: &Fixture) -> Vec<(&'static str, String)> {
    let b = &f.b;
    vec![
        ("B's account id", b.id.clone()),
        ("B's lot", b.lot.clone()),
        ("B's order", b.order.clone()),
        ("B's invoice", b.invoice.clone()),
        ("B's payment", b.payment.clone()),
        ("B's document", b.document.clone()),
        ("B's corrective invoice", b.corrective.clone()),
        ("B's admin", b.admin.id.clone()),
        ("B's admin's email", b.admin.email.clone()),
        ("B's member", b.member.id.clone()),
        ("B's member's email", b.member.email.clone()),
        ("B's key", b.key_id.clone()),
        ("B's CRM connection", b.crm_connection.clone()),
        ("B's webhook endpoint", b.webhook_endpoint.clone()),
        ("B's outbox message", b.outbox_message.clone()),
        ("B's meeting", b.meeting.id.clone()),
    ]
}

/// The binding that names the thing a 404 hides: the B object a row points at (in its path or
/// its body), else A's account, recording or meeting (hidden from B's callers).
fn hidden_binding(row: &Row) -> Option<String> {
    let in_body = row.body.as_ref().and_then(|b| {
        let text = b.to_string();
        let start = text.find("{b.")? + 1;
        let end = start + text[start..].find('}')?;
        Some(text[start..end].to_owned())
    });
    row.bind
        .iter()
        .find(|(_, to)| to.starts_with("b."))
        .map(|(_, to)| (*to).to_owned())
        .or(in_body)
        .or_else(|| {
            ["account", "rid", "id"]
                .into_iter()
                .find(|p| row.path.contains(&format!("{{{p}}}")))
                .map(str::to_owned)
        })
}

/// Status, error code and message, with the given ids blanked: what tells two 404s apart.
fn error_shape(status: u16, text: &str, ids: &[&str]) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let mut message = v["error"]["message"].as_str().unwrap_or(text).to_owned();
    for id in ids {
        message = message.replace(id, "<id>");
    }
    format!("{status} {} {message}", v["error"]["code"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_for_every_caller() {
    let mut f = Fixture::spawn().await;
    // Each meeting has a finished recording; B's meeting is then over (its summary exists).
    let rid = f.record(&f.a, &f.a.meeting).await;
    let b_rid = f.record(&f.b, &f.b.meeting).await;
    f.end_meeting(&f.b.meeting).await;
    let mut base = bindings(&f);
    base.insert("b.sdk_key".into(), sdk_key(&f, &f.b).await);
    base.insert(
        "forged_link".into(),
        "audio.ogg?expires=4102444800&sig=00".into(),
    );
    base.insert("rid".into(), rid);
    base.insert("b.rid".into(), b_rid);
    let b_ids = b_identifiers(&f);
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for row in table() {
        let mut binds = base.clone();
        let mut held = Held::default();
        let mut used_up = true;
        for (i, role) in ROLES.into_iter().enumerate() {
            if let Some(fresh) = row.fresh
                && used_up
            {
                for (k, v) in prepare(&f, fresh, &mut held).await {
                    binds.insert(k.to_owned(), v);
                }
            }
            binds.insert("unique".into(), f.unique());
            let mut path_binds = binds.clone();
            for (param, to) in &row.bind {
                let v = binds
                    .get(*to)
                    .unwrap_or_else(|| panic!("{}: nothing bound to {to}", row.path));
                path_binds.insert((*param).to_owned(), v.clone());
            }
            let path = fill(row.path, &path_binds, row.path);
            let body = row.body.as_ref().map(|b| fill_json(b, &binds, row.path));
            let bearer = role.bearer(&f);
            let (status, text) = f
                .call_text(row.method.clone(), &path, bearer.as_deref(), body.clone())
                .await;
            cells += 1;
            used_up = (200..300).contains(&status);
            let mismatch = |problem: String| Mismatch {
                method: row.method.clone(),
                path: path.clone(),
                owner: row.owner,
                role,
                problem,
                body: text.clone(),
            };
            let expected = row.expect[i];
            if Outcome::of(status) != expected {
                mismatches.push(mismatch(format!("expected {expected}, got {status}")));
                continue;
            }
            // An answer about A's things never carries B's (B's own callers aside).
            let about_a = matches!(
                row.owner,
                Owner::AccountA | Owner::BUnderA | Owner::MeetingOfA | Owner::CardSession
            );
            if used_up && about_a && !matches!(role, Role::AdminB | Role::KeyB) {
                for (what, id) in &b_ids {
                    if text.contains(id.as_str()) {
                        mismatches.push(mismatch(format!("{status}, but it shows {what}")));
                    }
                }
            }
            // A 404 that hides something must read exactly like the 404 of nothing at all.
            if expected == Outcome::NotFound
                && let Some(hidden_name) = hidden_binding(&row)
            {
                let hidden = binds[&hidden_name].clone();
                let nothing = uuid::Uuid::new_v4().to_string();
                let swap = |m: &HashMap<String, String>| {
                    let mut m = m.clone();
                    for v in m.values_mut() {
                        if *v == hidden {
                            v.clone_from(&nothing);
                        }
                    }
                    m
                };
                let missing_path = fill(row.path, &swap(&path_binds), row.path);
                let missing_body = row
                    .body
                    .as_ref()
                    .map(|b| fill_json(b, &swap(&binds), row.path));
                let (s2, text2) = f
                    .call_text(
                        row.method.clone(),
                        &missing_path,
                        bearer.as_deref(),
                        missing_body,
                    )
                    .await;
                let ids = [hidden.as_str(), nothing.as_str()];
                let (this, none) = (
                    error_shape(status, &text, &ids),
                    error_shape(s2, &text2, &ids),
                );
                if this != none {
                    mismatches.push(mismatch(format!(
                        "its 404 differs from that of a {hidden_name} that does not exist: \
                         {this:?} vs {none:?}"
                    )));
                }
            }
        }
        if matches!(row.fresh, Some(Fresh::Suspended | Fresh::NotSuspended)) {
            lift_suspension(&f).await;
        }
        // The row's participants leave properly: a dropped socket keeps its place for the
        // resume grace period, and the meeting's participant limit would fill up.
        for mut socket in held.sockets {
            if socket
                .try_send_text(json!({"type": "leave"}).to_string())
                .await
            {
                socket.expect_close().await;
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} problems in {cells} cells of the authorization table:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    f.app.shutdown().await;
}

/// Every (method, path) of the OpenAPI document has a row: a new endpoint without a decided
/// authorization fails here.
#[test]
fn every_documented_endpoint_has_a_row() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}")),
    )
    .expect("openapi.json is JSON");
    let rows: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let missing: Vec<String> = documented
        .difference(&rows)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} documented endpoints have no row in the authorization table \
         (tests/tests/authorization.rs):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// Surfaces outside the JSON API, and why each is authorized as it is:
///
/// - `/healthz`, `/readyz`, `/metrics`: rows of the table; public, for probes and the
///   Prometheus scrape on the operator's network. They carry counts, never account data.
/// - The web pages (`/`, `/m/{id}`, `/sign-in`, `/invitation`, …, `/static/…`): the same
///   static files for everyone; what a page shows comes from the API with the visitor's own
///   credentials. Checked here: a stranger gets exactly what the operator gets, and nothing
///   outside the web root.
/// - `GET /crm/card?account&deal&crm_user&exp&sig`: the signature by the account's card secret
///   is the credential. Checked here: a good launch opens a card session; A's secret does not
///   launch B's card, nor a deal it did not sign. Edge cases: tests/tests/crm_card.rs.
/// - `POST /api/v1/payments/yookassa/notifications`: a row of the table, public: the acquirer
///   does not sign its notifications, so nothing in one is believed; the payment is read back
///   from the acquirer's API (tests/tests/card_payments.rs forges them).
/// - `POST /api/v1/crm/webhook/{account}/meetings`: the HMAC of the account's CRM secret.
///   Checked here: A's signature creates A's meeting, and does nothing on B's path. Replays and
///   stale timestamps: tests/tests/crm_wiring.rs.
/// - The WebSocket: a join token (a JWT for one meeting) in its first message. Checked here:
///   none of the other credentials joins a meeting, and A's guest token does not join B's
///   meeting. Forged, expired and algorithm-confused tokens: tests/tests/tokens.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_api_surfaces() {
    let mut f = Fixture::spawn().await;
    let (a, b) = (&f.a, &f.b);

    // Web pages: static, the same for anyone; nothing from outside the web root.
    for page in [
        "/",
        "/sign-in",
        "/invitation",
        &format!("/m/{}", a.meeting.id),
    ] {
        let (s_anon, anon) = f.call_text(Method::GET, page, None, None).await;
        let (s_op, op) = f
            .call_text(Method::GET, page, Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!((s_anon, s_op), (200, 200), "{page}");
        assert_eq!(
            anon, op,
            "{page} is the same for a stranger and the operator"
        );
    }
    for outside in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/static/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let (s, text) = f.call_text(Method::GET, outside, None, None).await;
        assert!(
            !(200..300).contains(&s) && !text.contains("[workspace]"),
            "{outside}: {s}"
        );
    }

    // The deal-card launch: only what the account's secret signed.
    let good = Fixture::card_launch(a, &a.card_secret, "deal-x", &a.crm_user);
    let r = f
        .app
        .http
        .get(f.app.url(&good))
        .send()
        .await
        .expect("launch");
    assert_eq!(r.status(), 200);
    let forged_for_b = Fixture::card_launch(b, &a.card_secret, "deal-x", &b.crm_user);
    let tampered = good.replace("deal=deal-x", "deal=deal-y");
    for (what, path) in [
        ("A's secret on B's card", forged_for_b),
        ("another deal", tampered),
    ] {
        let r = f
            .app
            .http
            .get(f.app.url(&path))
            .send()
            .await
            .expect("launch");
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{what}: {status}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{what}: no card session"
        );
        let page = r.text().await.unwrap_or_default();
        assert!(
            parley_tests::fixtures::card_token_in(&page).is_none(),
            "{what}"
        );
    }

    // The generic CRM's webhook: A's signature counts on A's path only.
    let body =
        serde_json::to_vec(&json!({"deal_id": "D-9", "host_user_id": a.member.id})).expect("json");
    let signed = |account: &str| {
        let mut req = f
            .app
            .http
            .post(
                f.app
                    .url(&format!("/api/v1/crm/webhook/{account}/meetings")),
            )
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in a.inbound_headers(&body) {
            req = req.header(name, value);
        }
        req
    };
    let r = signed(&b.id).send().await.expect("request");
    assert_eq!(r.status(), 401, "A's signature on B's path");
    let r = signed(&a.id).send().await.expect("request");
    assert_eq!(r.status(), 201, "A's signature on A's path");
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["deal_id"], "D-9");

    // The WebSocket: only a join token of that very meeting.
    let not_join_tokens = [
        ("a member's session", a.member.token.clone()),
        ("an admin's session", a.admin.token.clone()),
        ("the account's key", a.key.clone()),
        ("the operator's token", ADMIN_TOKEN.to_owned()),
        ("the host key", a.meeting.host_key.clone()),
        ("the invitation secret", a.meeting.invite.clone()),
        ("a card session", a.card_token.clone()),
    ];
    for (what, token) in not_join_tokens {
        let mut c = f.app.connect().await;
        c.send(json!({"type": "join", "token": token})).await;
        let closed = c.expect_close().await;
        assert_eq!(closed.code, 1008, "{what}: {closed:?}");
    }
    let mut c = f.app.connect().await;
    c.send(json!({"type": "join", "token": a.meeting.guest_token, "meeting_id": b.meeting.id}))
        .await;
    let closed = c.expect_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "invalid token: wrong meeting")
    );
    let (_, joined) = f.app.join(&a.meeting.guest_token).await;
    assert_eq!(joined["meeting"]["id"], a.meeting.id.as_str());
    f.app.shutdown().await;
}
