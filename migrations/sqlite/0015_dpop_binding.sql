-- RFC 9449 DPoP: the RFC 7638 thumbprint (base64url SHA-256) of the key a token is bound to, its
-- `cnf.jkt`, and where that key lives: `tpm` when the agent's enrolled attestation key certified
-- it as held by its TPM (TPM2_Certify), else `software`. NULL for a bearer token and for tokens
-- issued before these columns.
ALTER TABLE tokens ADD COLUMN jkt TEXT;
ALTER TABLE tokens ADD COLUMN dpop_key TEXT;

-- Every DPoP proof's `jti` is recorded in used_assertions until it expires (RFC 9449 §11.1), and
-- each insert first forgets the expired ones: by this index, not by reading the whole table.
CREATE INDEX used_assertions_by_expiry ON used_assertions (expires_at);
