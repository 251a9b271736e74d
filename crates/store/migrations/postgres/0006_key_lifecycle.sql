-- API keys can expire and be revoked; a revoked key stays listed (and audited) but admits
-- nothing.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
