-- After the meeting and privacy: talk time per participant session, the results rule of a
-- meeting, its invited contacts, the stored summary, and the audit log.

-- Milliseconds this session was the one speaking, summed from the SFU's ~5 s increments.
ALTER TABLE participant_sessions ADD COLUMN talk_ms INTEGER NOT NULL DEFAULT 0;

-- The license's "results to recipients" (agreement 1.12), copied at creation like the other
-- tariff limits; NULL for unlicensed meetings.
ALTER TABLE meetings ADD COLUMN results_allowed INTEGER;
-- What the host asked at creation (`send_results`); NULL when not said.
ALTER TABLE meetings ADD COLUMN send_results INTEGER;

CREATE TABLE meeting_contacts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id  TEXT NOT NULL REFERENCES meetings(id),
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    -- Lower-cased address: one contact per address per meeting, and erasure finds it.
    email_key   TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    UNIQUE (meeting_id, email_key)
);

CREATE TABLE meeting_summaries (
    meeting_id  TEXT PRIMARY KEY NOT NULL REFERENCES meetings(id),
    -- `crm::summary::MeetingSummary` as JSON.
    summary     TEXT NOT NULL,
    -- How many invited contacts the results were emailed to (0: none, or not allowed).
    emailed_to  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT,
    account_id   TEXT,
    action       TEXT NOT NULL,
    target_kind  TEXT,
    target_id    TEXT,
    from_ip      TEXT
);
CREATE INDEX audit_log_account ON audit_log(account_id, seq);
