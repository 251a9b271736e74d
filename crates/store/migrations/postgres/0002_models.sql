-- Trained item models: versioned artifacts; servers load the newest. An item model holds no
-- personal data (item-item weights and item popularity); its card says what it was built from.
CREATE TABLE model_artifacts (
    version BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at BIGINT NOT NULL,
    card TEXT NOT NULL,
    weights BYTEA NOT NULL
);
