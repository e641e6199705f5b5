-- The CRM deal card: a per-account launch secret and the CRM origin allowed to frame the card,
-- the mapping of CRM users to Parley users, short-lived card sessions, and the deal a meeting
-- was created for.

CREATE TABLE crm_card_settings (
    account_id  TEXT PRIMARY KEY NOT NULL,
    -- The HMAC key of launch URLs. Kept as is (not hashed): the server must recompute HMACs
    -- with it, like the JWT secret in `settings`.
    secret      TEXT NOT NULL,
    -- `scheme://host[:port]` of the account's CRM: the only frame ancestor of its card.
    crm_origin  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE crm_user_links (
    account_id   TEXT NOT NULL,
    crm_user_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (account_id, crm_user_id)
);

CREATE TABLE crm_card_sessions (
    -- SHA-256 of the `cs_` token; the token itself is never stored.
    token_hash   TEXT PRIMARY KEY NOT NULL,
    account_id   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    crm_user_id  TEXT NOT NULL,
    deal_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);

ALTER TABLE meetings ADD COLUMN deal_id TEXT;
CREATE INDEX meetings_deal ON meetings(account_id, deal_id);
