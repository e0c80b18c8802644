-- OpenID CIBA (poll mode) requests: a delegation waiting for the human's decision.
CREATE TABLE ciba_requests (
    id_hash         BYTEA PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    client_id       TEXT NOT NULL,
    username        TEXT NOT NULL,
    agent           TEXT NOT NULL,
    attestation     TEXT NOT NULL,
    parent_hash     BYTEA NOT NULL,
    act             TEXT NOT NULL,
    scope           TEXT NOT NULL,
    aud             TEXT NOT NULL,
    token_exp       BIGINT NOT NULL,
    depth           BIGINT NOT NULL,
    binding_message TEXT,
    policies        TEXT NOT NULL,
    high_risk       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    interval_secs   BIGINT NOT NULL,
    last_polled_at  BIGINT,
    status          TEXT NOT NULL,
    approved_scope  TEXT,
    approved_exp    BIGINT,
    decided_at      BIGINT
);
CREATE INDEX ciba_user ON ciba_requests (username, status);
