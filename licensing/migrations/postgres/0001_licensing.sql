-- Amounts are integer kopecks, dates 'YYYY-MM-DD' text, ids uuid text: the same shapes in
-- SQLite and PostgreSQL so one set of queries (through sqlx::Any) serves both.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    inn TEXT,
    resident BIGINT NOT NULL,
    crm_system TEXT NOT NULL,
    crm_external_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    suspension_reason TEXT,
    terminates_on TEXT,
    postpay_allowed BIGINT NOT NULL DEFAULT 0,
    card_limit_kopecks BIGINT,
    address TEXT,
    version BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (crm_system, crm_external_id)
);

CREATE TABLE tariffs (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    term_months BIGINT NOT NULL,
    price_kopecks BIGINT NOT NULL,
    currency TEXT NOT NULL DEFAULT 'RUB',
    vat_mode TEXT NOT NULL,
    trial BIGINT NOT NULL,
    archived BIGINT NOT NULL DEFAULT 0,
    features TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE lots (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    tariff_code TEXT NOT NULL REFERENCES tariffs (code),
    seats BIGINT NOT NULL CHECK (seats > 0),
    seats_assigned BIGINT NOT NULL DEFAULT 0 CHECK (seats_assigned >= 0 AND seats_assigned <= seats),
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    status TEXT NOT NULL,
    trial BIGINT NOT NULL DEFAULT 0,
    order_id TEXT,
    previous_lot_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX lots_account ON lots (account_id);

CREATE TABLE seat_assignments (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    lot_id TEXT NOT NULL REFERENCES lots (id),
    user_id TEXT NOT NULL,
    assigned_on TEXT NOT NULL,
    last_active_on TEXT,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX seat_assignments_lot ON seat_assignments (lot_id);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    idempotency_key TEXT NOT NULL,
    request TEXT NOT NULL,
    kind TEXT NOT NULL,
    lot_id TEXT,
    tariff_code TEXT NOT NULL,
    payment_terms TEXT NOT NULL,
    channel TEXT NOT NULL,
    start_date TEXT NOT NULL,
    quote TEXT NOT NULL,
    subtotal_kopecks BIGINT NOT NULL,
    total_kopecks BIGINT NOT NULL CHECK (total_kopecks >= 0),
    status TEXT NOT NULL,
    placed_on TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (account_id, idempotency_key)
);
-- One unpaid renewal-type order per lot: two paid renewals of one lot would grant twice.
CREATE UNIQUE INDEX orders_one_open_renewal_per_lot ON orders (lot_id)
    WHERE status = 'pending_payment' AND kind <> 'top_up';

CREATE TABLE lot_grants (
    id TEXT PRIMARY KEY,
    lot_id TEXT NOT NULL REFERENCES lots (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    kind TEXT NOT NULL,
    seats BIGINT NOT NULL,
    amount_kopecks BIGINT NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL
);
CREATE INDEX lot_grants_lot ON lot_grants (lot_id);

-- Gap-free numbering: the row is updated inside the transaction that issues the document.
CREATE TABLE document_counters (
    series TEXT NOT NULL,
    year BIGINT NOT NULL,
    last_number BIGINT NOT NULL,
    PRIMARY KEY (series, year)
);

CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (id),
    year BIGINT NOT NULL,
    number BIGINT NOT NULL,
    issued_on TEXT NOT NULL,
    amount_kopecks BIGINT NOT NULL,
    vat_mode TEXT NOT NULL,
    status TEXT NOT NULL,
    UNIQUE (year, number)
);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    invoice_id TEXT NOT NULL UNIQUE REFERENCES invoices (id),
    idempotency_key TEXT NOT NULL,
    method TEXT NOT NULL,
    amount_kopecks BIGINT NOT NULL,
    paid_on TEXT NOT NULL,
    grant_deadline TEXT NOT NULL,
    granted_on TEXT NOT NULL,
    lot_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (account_id, idempotency_key)
);

CREATE TABLE transfer_documents (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (id),
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    kind TEXT NOT NULL,
    year BIGINT NOT NULL,
    number BIGINT NOT NULL,
    issued_on TEXT NOT NULL,
    grant_date TEXT NOT NULL,
    amount_kopecks BIGINT NOT NULL,
    accept_by TEXT NOT NULL,
    status TEXT NOT NULL,
    objection TEXT,
    UNIQUE (year, number)
);

CREATE TABLE corrective_invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    year BIGINT NOT NULL,
    number BIGINT NOT NULL,
    issued_on TEXT NOT NULL,
    reason TEXT NOT NULL,
    before_kopecks BIGINT NOT NULL,
    after_kopecks BIGINT NOT NULL,
    difference_kopecks BIGINT NOT NULL,
    UNIQUE (year, number)
);

CREATE TABLE credits (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount_kopecks BIGINT NOT NULL,
    corrective_invoice_id TEXT REFERENCES corrective_invoices (id),
    created_at TEXT NOT NULL
);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount_kopecks BIGINT NOT NULL,
    reason TEXT NOT NULL,
    due_on TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE terminations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    notice_on TEXT NOT NULL,
    effective_on TEXT NOT NULL,
    refund_kopecks BIGINT NOT NULL,
    refund_due_on TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE promotions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    code TEXT UNIQUE,
    discount TEXT NOT NULL,
    combinable BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    valid_from TEXT,
    valid_until TEXT,
    tariffs TEXT NOT NULL,
    order_types TEXT NOT NULL,
    total_limit BIGINT,
    per_account_limit BIGINT,
    redeemed BIGINT NOT NULL DEFAULT 0,
    active BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE promo_redemptions (
    id TEXT PRIMARY KEY,
    promotion_id TEXT NOT NULL REFERENCES promotions (id),
    account_id TEXT NOT NULL REFERENCES accounts (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    created_at TEXT NOT NULL
);
CREATE INDEX promo_redemptions_by_account ON promo_redemptions (promotion_id, account_id);

CREATE TABLE outbox_events (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    subject_id TEXT,
    payload TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    due_on TEXT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_due ON outbox_events (due_on);
