-- Signed tree heads of the audit log (RFC 6962): the Merkle root over the first tree_size
-- entries, each leaf an entry's hash. One head per size, whichever server issued it first;
-- heads are published and never changed, so a rewritten log cannot match them.
CREATE TABLE audit_tree_heads (
    tree_size BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    root BYTEA NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL
);
