-- Clients declared in the config (upserted at start) or created by the admin CLI.
CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- ES256 signing keys; private keys sealed under the KEK.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_sealed BYTEA NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    activated_at   BIGINT,
    retired_at     BIGINT,
    publish_until  BIGINT
);

-- Rows whose update serialises a critical section across replicas (key rotation).
CREATE TABLE locks (
    name     TEXT PRIMARY KEY,
    taken_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO locks (name) VALUES ('keys');

-- Every token issued, keyed by the SHA-256 of the token string; never the token itself.
CREATE TABLE tokens (
    token_hash   BYTEA PRIMARY KEY,
    jti          TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    sub          TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    scope        TEXT NOT NULL,
    aud          TEXT NOT NULL,
    iat          BIGINT NOT NULL,
    exp          BIGINT NOT NULL,
    sid          TEXT,
    parent_hash  BYTEA,
    act          TEXT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    last_used_by TEXT
);
CREATE INDEX tokens_parent ON tokens (parent_hash) WHERE parent_hash IS NOT NULL;
CREATE INDEX tokens_sid ON tokens (sid) WHERE sid IS NOT NULL;

-- Client assertion `jti`s already accepted (RFC 7523 §3 replay protection).
CREATE TABLE used_assertions (
    jti_key    TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Append-only, hash-chained audit log.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    ts        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT,
    actors    TEXT NOT NULL,
    client_id TEXT,
    session   TEXT,
    token_jti TEXT,
    detail    TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL
);
CREATE INDEX audit_session ON audit_log (session) WHERE session IS NOT NULL;

-- The chain head: the last sequence number and hash, so removing the newest entries shows.
CREATE TABLE audit_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
