-- One row per run of a scheduled job: the node that inserted it is the one that runs it, so
-- nodes sharing this database never run the same run twice. `slot` numbers the runs of a job
-- (milliseconds since the epoch divided by its period), the same on every node.
CREATE TABLE job_runs (
    job         TEXT NOT NULL,
    slot        BIGINT NOT NULL,
    node        TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (job, slot)
);
