-- Recordings of meetings: one row per start..stop of a meeting's recording, made at start (so a
-- summary written at the meeting's end can already link it), and its files once the media plane
-- has closed them.

CREATE TABLE recordings (
    id           TEXT PRIMARY KEY NOT NULL,
    meeting_id   TEXT NOT NULL REFERENCES meetings(id),
    -- The licensing account the files count against; NULL for an unlicensed meeting.
    account_id   TEXT,
    -- Display name of whoever started it (the host's token name, or "Host" for the host key).
    started_by   TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    stopped_at   TEXT,
    status       TEXT NOT NULL
                 CHECK (status IN ('recording', 'processing', 'ready', 'failed')),
    -- stopped, quota_exceeded, meeting_ended, failed.
    stop_reason  TEXT,
    -- Sum of the files' sizes (0 while recording).
    bytes        BIGINT NOT NULL DEFAULT 0,
    -- started_at + the tariff's retention days; NULL: kept until deleted.
    expires_at   TEXT,
    error        TEXT,
    -- The directory holding the files (the media plane's per-room directory).
    dir          TEXT NOT NULL
);
CREATE INDEX recordings_meeting ON recordings(meeting_id, started_at);
CREATE INDEX recordings_account ON recordings(account_id, started_at);
CREATE INDEX recordings_expiry ON recordings(expires_at);

CREATE TABLE recording_files (
    recording_id     TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    -- The file's name in the recording's directory (also its name in download links).
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL
                     CHECK (kind IN ('track_audio', 'track_video', 'mixed_audio', 'composite')),
    participant_id   TEXT,
    display_name     TEXT,
    codec            TEXT NOT NULL,
    bytes            BIGINT NOT NULL,
    duration_ms      BIGINT,
    -- Where the file starts on the recording's timeline.
    start_offset_ms  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (recording_id, name)
);
