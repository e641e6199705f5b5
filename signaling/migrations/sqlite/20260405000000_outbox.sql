-- The outbox: messages to CRMs and customer webhooks, delivered by workers with retries.
-- Times here are unix milliseconds (INTEGER), unlike the RFC 3339 text elsewhere: the claim
-- query compares them on every poll and integer comparison is exact and index-friendly.

CREATE TABLE outbox_messages (
    -- `seq` breaks ties between messages due at the same millisecond (oldest first).
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    destination     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- A worker's claim: while `lease_until` is in the future no other worker takes the message.
    lease_token     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX outbox_messages_due ON outbox_messages(status, next_attempt_at);

CREATE TABLE outbox_attempts (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT NOT NULL REFERENCES outbox_messages(id),
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retryable', 'permanent')),
    http_status  INTEGER,
    detail       TEXT
);
CREATE INDEX outbox_attempts_message ON outbox_attempts(message_id, seq);
