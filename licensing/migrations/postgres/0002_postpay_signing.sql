-- Postpay orders are granted when signed (5.1, 5.2.3): the signature is the grant's record, as a
-- payment is for prepay. `order_id` is unique, so an order can be signed once even if two
-- requests slip past the application's check; the Idempotency-Key makes retries return the
-- first signature.
CREATE TABLE order_signatures (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (id),
    idempotency_key TEXT NOT NULL,
    signed_on TEXT NOT NULL,
    grant_deadline TEXT NOT NULL,
    payment_due_on TEXT NOT NULL,
    lot_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (account_id, idempotency_key)
);

-- The date a signed postpay invoice must be paid by; NULL for prepay invoices (paid before
-- anything is granted, so they have no due date of their own).
ALTER TABLE invoices ADD COLUMN due_on TEXT;
