-- A person's own sessions (the privacy center's credential): one row per live session, so a
-- session is revoked by deleting its row, on every server at once. The token itself is sealed
-- and never stored; erasure deletes the subject's rows with the rest of their data.
CREATE TABLE subject_sessions (
    id TEXT PRIMARY KEY,
    subject BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX subject_sessions_subject ON subject_sessions (subject);
