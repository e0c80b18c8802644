-- Zero-touch TPM enrollment (credential activation). An agent enrolled by its EK is pinned to
-- that EK: ek_hash is SHA-256 of the EK's SubjectPublicKeyInfo (the certified key), hex. One
-- EK enrolls at most one agent.
ALTER TABLE agents ADD COLUMN ek_hash TEXT;
CREATE UNIQUE INDEX agents_ek_hash ON agents (ek_hash) WHERE ek_hash IS NOT NULL;

-- A credential-activation challenge waiting for the agent's answer: single use (taken by a
-- DELETE .. RETURNING whether the answer is right or not), expires in minutes. Only a hash of the
-- secret is kept.
CREATE TABLE tpm_enrollments (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    ek_hash     TEXT NOT NULL,
    ek_issuer   TEXT NOT NULL,
    ak_public   TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
