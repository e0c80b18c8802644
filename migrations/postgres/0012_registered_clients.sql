-- RFC 7591 dynamic client registration: clients that registered themselves at /register.
-- `data` is the client as the server uses it (a secret only as its argon2id hash), `metadata`
-- what the registration answered; `token_hash` the SHA-256 of the RFC 7592 registration access
-- token. A removed registration keeps its row (`removed_at`) until it no longer counts against
-- its address's cap, so deleting and registering again does not get around the cap.
CREATE TABLE registered_clients (
    client_id    TEXT PRIMARY KEY,
    data         TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    token_hash   BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    last_used_at BIGINT NOT NULL,
    removed_at   BIGINT
);
CREATE INDEX registered_clients_by_address ON registered_clients (created_by, created_at);
CREATE INDEX registered_clients_unused ON registered_clients (last_used_at)
    WHERE removed_at IS NULL;
