-- Data subjects' requests with their legal deadlines. The subject is held only as a pseudonym;
-- fulfilling a request needs the subject's id again.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject BYTEA NOT NULL,
    jurisdiction TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    ack_due_at BIGINT,
    extended_until BIGINT,
    extension_reason TEXT,
    completed_at BIGINT
);
