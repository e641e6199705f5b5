-- Sessions of the platform operator: the admin console exchanges the operator token for one of
-- these, so the token itself never stays in the browser. `token_hash` is the hex HMAC-SHA256
-- of the session token keyed by the operator token: a changed PARLEY_ADMIN_TOKEN ends every
-- session opened with the old one, and a copy of this table reveals neither secret.
CREATE TABLE operator_sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    user_agent    TEXT
);
