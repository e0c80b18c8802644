-- How each audit entry's hash was computed. 0: SHA-256 over the previous hash and the fields
-- (every entry written before this migration). 1: HMAC-SHA-256 under a key derived from the
-- key-encryption key, which the database never holds. Version 0 entries may only form a prefix
-- of the log; the first version 1 entry's MAC covers the last of them (see docs/audit.md).
ALTER TABLE audit_log ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 0;
