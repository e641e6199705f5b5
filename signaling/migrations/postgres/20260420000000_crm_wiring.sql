-- CRM connections and customer webhook endpoints. (A meeting's deal is `meetings.deal_id`,
-- its invited contacts `meeting_contacts`: both from later migrations of the deal card and
-- the summaries.)
--
-- Secrets (amoCRM client secret and tokens, the Bitrix24 webhook URL, webhook secrets) are
-- stored as given for now; encryption at rest is a later step. The API never returns them.
-- Rows are soft-deleted (`deleted_at`) so that outbox messages addressed to a removed
-- connection or endpoint still belong to their account in the admin listing.

CREATE TABLE crm_connections (
    id              TEXT PRIMARY KEY NOT NULL,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('amocrm', 'bitrix24', 'webhook')),
    -- JSON of the settings that are not secret (base URL, client id, redirect URI...).
    settings        TEXT NOT NULL,
    -- JSON of the secret settings (client secret, Bitrix24 webhook URL, webhook secret).
    secrets         TEXT NOT NULL,
    -- amoCRM OAuth tokens, rewritten on every refresh (refresh tokens are single-use).
    amo_access_token  TEXT,
    amo_refresh_token TEXT,
    amo_expires_at    TEXT,
    -- The CRM's web origin, for the deal card's frame-ancestors.
    frame_origin    TEXT,
    last_success_at TEXT,
    last_error      TEXT,
    last_error_at   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT
);
-- One live connection per account.
CREATE UNIQUE INDEX crm_connections_live ON crm_connections(account_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    -- JSON array of event type names.
    events      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints(account_id);
