-- Candor schema, SQLite flavour. Personal data lives only in `events.payload` (encrypted);
-- subjects appear only as 32-byte pseudonyms (HMAC-SHA256 of their id).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE items (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    category TEXT,
    provider TEXT,
    attributes TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE subject_keys (
    subject BLOB PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE consent_history (
    id INTEGER PRIMARY KEY,
    subject BLOB NOT NULL,
    purpose TEXT NOT NULL,
    category TEXT NOT NULL,
    granted INTEGER NOT NULL,
    at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    method TEXT NOT NULL
);
CREATE INDEX consent_history_subject ON consent_history (subject, id);

CREATE TABLE consent_current (
    subject BLOB NOT NULL,
    purpose TEXT NOT NULL,
    category TEXT NOT NULL,
    granted INTEGER NOT NULL,
    at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    method TEXT NOT NULL,
    PRIMARY KEY (subject, purpose, category)
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    subject BLOB NOT NULL,
    -- The pseudonym's first 8 bytes as an integer: a compact key for the per-subject index
    -- (a third the size of the full pseudonym, so batches dirty far fewer index pages).
    subject_hint INTEGER NOT NULL,
    category TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    dedup BLOB NOT NULL UNIQUE,
    payload BLOB NOT NULL
);
CREATE INDEX events_subject ON events (subject_hint);
CREATE INDEX events_expires ON events (expires_at);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject BLOB,
    purpose TEXT,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    mac BLOB NOT NULL
);

-- The signed head of the audit chain, kept apart from the log so truncation is detectable.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    signature BLOB NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
