-- How each audit entry's hash was computed. 0: SHA-256 over the previous hash and the fields
-- (every entry written before this migration). 1: HMAC-SHA-256 under a key derived from the
-- key-encryption key, which the database never holds. Version 0 entries may only form a prefix
-- of the log; the first version 1 entry's MAC covers the last of them (see docs/audit.md).
-- A constant default: no table rewrite (PostgreSQL 11+).
-- Numbered 0009 like its SQLite twin (PostgreSQL has no 0008).
ALTER TABLE audit_log ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 0;
