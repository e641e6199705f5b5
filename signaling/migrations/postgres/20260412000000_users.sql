-- Users of licensing accounts, their sign-in sessions, one-time tokens (invitations, password
-- resets) and the sign-in lockout state. Secrets are never stored: passwords as argon2id PHC
-- strings, session and one-time tokens as the SHA-256 of 256-bit random values.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    -- The licensing account (its UUID); the licensing tables may live in another database,
    -- so no foreign key.
    account_id      TEXT NOT NULL,
    email           TEXT NOT NULL,
    -- The address in lower case: unique per installation, whatever the case typed.
    email_key       TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('account_admin', 'member')),
    status          TEXT NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
    password_hash   TEXT,
    created_at      TEXT NOT NULL,
    last_sign_in_at TEXT
);
CREATE INDEX users_account ON users(account_id);

CREATE TABLE user_sessions (
    -- A public handle for listing and revoking; the bearer secret is only in `token_hash`.
    id            TEXT PRIMARY KEY NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    -- The absolute end; the idle end is last_seen_at plus the configured idle timeout.
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    user_agent    TEXT
);
CREATE INDEX user_sessions_user ON user_sessions(user_id);

CREATE TABLE user_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('invitation', 'password_reset')),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX user_tokens_user ON user_tokens(user_id, purpose);

-- Keyed by the case-folded email as typed, known or not (see users::lockout).
CREATE TABLE sign_in_throttle (
    email_key     TEXT PRIMARY KEY NOT NULL,
    failures      BIGINT NOT NULL,
    window_start  TEXT,
    locked_until  TEXT
);
