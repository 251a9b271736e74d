-- Every signed consent receipt, stored in the transaction of the change it proves, so the
-- person can list and re-verify them; they name the pseudonym, never the raw id, and an
-- erasure deletes them with the rest of the subject's consent records.
CREATE TABLE consent_receipts (
    id TEXT PRIMARY KEY,
    subject BYTEA NOT NULL,
    at BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX consent_receipts_subject ON consent_receipts (subject, at);
