-- Art. 18 restriction of processing: while a subject's row is here, their data is stored but
-- not processed (no ingestion, no profiling, no training, no personalized recommendations).
CREATE TABLE restrictions (
    subject BYTEA PRIMARY KEY,
    at BIGINT NOT NULL
);
