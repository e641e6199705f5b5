-- SDK keys (agreement 1.14, 3.6): an account's public handles for embedding meetings in its own
-- sites. Not secrets: a key only names the web origins allowed to embed (JSON array of
-- `scheme://host[:port]`). Revocation keeps the row, so tokens minted for the key are refused
-- with a clear reason instead of "unknown key".
CREATE TABLE sdk_keys (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
);

CREATE INDEX sdk_keys_by_account ON sdk_keys (account_id, created_at);
