-- Tokens are keyed by their jti, which is time-ordered (crypto::time_ordered_id), instead of by
-- the SHA-256 of the token string. Keyed by a hash, each new token went into a random leaf of
-- the table's B-tree: a whole page rewritten in the log and again by the checkpoint for every
-- ~350-byte row (about 32 KB written per token exchange). Keyed by jti, the tokens of a batch
-- are appended to the same few pages; the hash stays as a unique index (small entries) for
-- lookups by the presented token. PostgreSQL stores rows in a heap in insertion order already,
-- so it has no counterpart of this migration.
CREATE TABLE tokens_by_jti (
    token_hash   BLOB NOT NULL UNIQUE,
    jti          TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    sub          TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    scope        TEXT NOT NULL,
    aud          TEXT NOT NULL,
    iat          INTEGER NOT NULL,
    exp          INTEGER NOT NULL,
    sid          TEXT,
    parent_hash  BLOB,
    act          TEXT,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    last_used_by TEXT,
    consumed_at  INTEGER,
    may_act      TEXT
) WITHOUT ROWID;
INSERT INTO tokens_by_jti (token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid,
                           parent_hash, act, revoked_at, last_used_at, last_used_by, consumed_at,
                           may_act)
    SELECT token_hash, jti, kind, sub, client_id, scope, aud, iat, exp, sid, parent_hash, act,
           revoked_at, last_used_at, last_used_by, consumed_at, may_act
    FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_by_jti RENAME TO tokens;
CREATE INDEX tokens_parent ON tokens (parent_hash) WHERE parent_hash IS NOT NULL;
CREATE INDEX tokens_sid ON tokens (sid) WHERE sid IS NOT NULL;
CREATE INDEX tokens_sub ON tokens (sub, exp);
