-- Card payments started at the acquirer (YooKassa) and not yet, or no longer, in the licensing
-- payments. A row is written when the acquirer has created the payment and stays the record of
-- what Parley asked for: the acquirer's own answers (notifications, lookups) are believed only
-- when they match it. `payment_id` is the licensing payment the confirmed money registered.
CREATE TABLE card_payments (
    id               TEXT PRIMARY KEY NOT NULL,
    provider         TEXT NOT NULL,
    provider_id      TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    invoice_id       TEXT NOT NULL,
    -- The account's Idempotency-Key of the start: a retried start returns this row.
    idempotency_key  TEXT NOT NULL,
    amount_kopecks   BIGINT NOT NULL,
    -- pending | succeeded | canceled | unapplied (money taken, registration refused: refund it)
    -- | rejected (the acquirer's record does not match this row).
    status           TEXT NOT NULL,
    confirmation_url TEXT NOT NULL,
    payment_id       TEXT,
    failure          TEXT,
    -- Unix milliseconds.
    created_at       BIGINT NOT NULL,
    checked_at       BIGINT,
    settled_at       BIGINT,
    UNIQUE (provider, provider_id),
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX card_payments_by_account ON card_payments (account_id, status, created_at);
