-- A refresh token that was rotated (RFC 9700 §4.14) or an authorization code's token that was
-- redeemed is consumed, not revoked: presenting it again is reuse.
ALTER TABLE tokens ADD COLUMN consumed_at BIGINT;
-- RFC 8693 §4.4: the only actor allowed to use this token as a subject token (JSON).
ALTER TABLE tokens ADD COLUMN may_act TEXT;
CREATE INDEX tokens_sub ON tokens (sub, exp);

-- Agents declared in the config or enrolled by the CLI.
CREATE TABLE agents (
    name       TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Attestation challenges (single use, short-lived).
CREATE TABLE attest_nonces (
    nonce      TEXT PRIMARY KEY,
    agent      TEXT,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
