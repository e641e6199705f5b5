-- The node that holds each participant session and makes each recording. A node restarting
-- closes only its own sessions and unfinished recordings, and a node taking a meeting over
-- from a lost node closes that node's sessions and recordings of the meeting. One process on
-- its own is node 'local'.
ALTER TABLE participant_sessions ADD COLUMN node TEXT NOT NULL DEFAULT 'local';
ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT 'local';
