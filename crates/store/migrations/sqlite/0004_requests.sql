-- Data subjects' requests with their legal deadlines. The subject is held only as a pseudonym;
-- fulfilling a request needs the subject's id again.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject BLOB NOT NULL,
    jurisdiction TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    ack_due_at INTEGER,
    extended_until INTEGER,
    extension_reason TEXT,
    completed_at INTEGER
);
