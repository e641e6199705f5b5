-- Account API keys (the credentials of the licensing API until users and sign-in arrive) and the
-- license a meeting runs under. Keys are stored as a SHA-256 of a 256-bit random secret: a
-- database leak yields no usable key, and a fast hash is enough for secrets nobody can guess.

CREATE TABLE account_api_keys (
    key_id       TEXT PRIMARY KEY NOT NULL,
    account_id   TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX account_api_keys_account ON account_api_keys(account_id);

-- NULL everywhere for meetings created without a license (open landing page).
ALTER TABLE meetings ADD COLUMN account_id TEXT;
ALTER TABLE meetings ADD COLUMN host_user_id TEXT;
ALTER TABLE meetings ADD COLUMN max_participants BIGINT;
ALTER TABLE meetings ADD COLUMN max_meeting_minutes BIGINT;
ALTER TABLE meetings ADD COLUMN recording_allowed BIGINT;
ALTER TABLE meetings ADD COLUMN screen_share_allowed BIGINT;
ALTER TABLE meetings ADD COLUMN sdk_allowed BIGINT;
