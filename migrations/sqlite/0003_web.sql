-- Authorization codes (RFC 6749 §4.1.2), by SHA-256 of the code; never the code itself.
-- used_at makes them single use; replayed_at records a second redemption (RFC 6749 §4.1.2:
-- revoke what the first one issued). Rows are kept an hour past expiry for that detection.
CREATE TABLE auth_codes (
    code_hash      BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    username       TEXT NOT NULL,
    scope          TEXT NOT NULL,
    aud            TEXT NOT NULL,
    sid            TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    replayed_at    INTEGER
);
CREATE INDEX auth_codes_expiry ON auth_codes (expires_at);

-- What a human agreed a client may have: the union of every approved scope set.
CREATE TABLE consents (
    username   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (username, client_id)
);

-- Signed-in browsers, by SHA-256 of the session cookie's value.
CREATE TABLE browser_sessions (
    id_hash    BLOB PRIMARY KEY,
    username   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);
