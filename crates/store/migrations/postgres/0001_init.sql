-- Candor schema, PostgreSQL flavour. Personal data lives only in `events.payload` (encrypted);
-- subjects appear only as 32-byte pseudonyms (HMAC-SHA256 of their id).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE items (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    category TEXT,
    provider TEXT,
    attributes TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE subject_keys (
    subject BYTEA PRIMARY KEY,
    wrapped_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE consent_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject BYTEA NOT NULL,
    purpose TEXT NOT NULL,
    category TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    policy_version TEXT NOT NULL,
    method TEXT NOT NULL
);
CREATE INDEX consent_history_subject ON consent_history (subject, id);

CREATE TABLE consent_current (
    subject BYTEA NOT NULL,
    purpose TEXT NOT NULL,
    category TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    method TEXT NOT NULL,
    PRIMARY KEY (subject, purpose, category)
);

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject BYTEA NOT NULL,
    -- The pseudonym's first 8 bytes as an integer: a compact key for the per-subject index
    -- (a third the size of the full pseudonym, so batches dirty far fewer index pages).
    subject_hint BIGINT NOT NULL,
    category TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    dedup BYTEA NOT NULL UNIQUE,
    payload BYTEA NOT NULL
);
CREATE INDEX events_subject ON events (subject_hint);
CREATE INDEX events_expires ON events (expires_at);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject BYTEA,
    purpose TEXT,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    mac BYTEA NOT NULL
);

-- The signed head of the audit chain, kept apart from the log so truncation is detectable.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    signature BYTEA NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
