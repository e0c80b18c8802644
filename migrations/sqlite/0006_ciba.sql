-- OpenID CIBA (poll mode) requests: a delegation waiting for the human's decision.
CREATE TABLE ciba_requests (
    id_hash         BLOB PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    client_id       TEXT NOT NULL,
    username        TEXT NOT NULL,
    agent           TEXT NOT NULL,
    attestation     TEXT NOT NULL,
    parent_hash     BLOB NOT NULL,
    act             TEXT NOT NULL,
    scope           TEXT NOT NULL,
    aud             TEXT NOT NULL,
    token_exp       INTEGER NOT NULL,
    depth           INTEGER NOT NULL,
    binding_message TEXT,
    policies        TEXT NOT NULL,
    high_risk       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    interval_secs   INTEGER NOT NULL,
    last_polled_at  INTEGER,
    status          TEXT NOT NULL,
    approved_scope  TEXT,
    approved_exp    INTEGER,
    decided_at      INTEGER
);
CREATE INDEX ciba_user ON ciba_requests (username, status);
