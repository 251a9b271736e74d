-- Tamper evidence for the consent history: one leaf per consent_history row, a keyed MAC of
-- the row's canonical bytes, committed by the audit entry (recorded_seq) appended in the same
-- transaction. Leaves outlive an erasure, which marks them with its own entry (erased_seq),
-- so a row deleted by anything else is detected.
CREATE TABLE consent_leaves (
    id BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL,
    recorded_seq BIGINT NOT NULL,
    erased_seq BIGINT
);
