-- Tamper evidence for the consent history: one leaf per consent_history row, a keyed MAC of
-- the row's canonical bytes, committed by the audit entry (recorded_seq) appended in the same
-- transaction. Leaves outlive an erasure, which marks them with its own entry (erased_seq),
-- so a row deleted by anything else is detected.
CREATE TABLE consent_leaves (
    id INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    recorded_seq INTEGER NOT NULL,
    erased_seq INTEGER
);

-- Consent-history ids are never reused (AUTOINCREMENT), so a row written after an erasure
-- cannot take the id of an erased row whose leaf remains.
CREATE TABLE consent_history_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject BLOB NOT NULL,
    purpose TEXT NOT NULL,
    category TEXT NOT NULL,
    granted INTEGER NOT NULL,
    at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    method TEXT NOT NULL
);
INSERT INTO consent_history_new SELECT id, subject, purpose, category, granted, at, expires_at, policy_version, method FROM consent_history;
DROP TABLE consent_history;
ALTER TABLE consent_history_new RENAME TO consent_history;
CREATE INDEX consent_history_subject ON consent_history (subject, id);
