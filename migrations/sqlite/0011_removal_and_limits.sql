-- Security review (issue "Trust under attack").
-- Item 4: who exists. An operator can disable an agent (its row stays, it gets nothing); the
-- token's current actor is a column, so an agent's delegations can be found and revoked; and
-- the humans of the config are remembered, so one taken out of it is noticed at the next start.
ALTER TABLE agents ADD COLUMN disabled_at INTEGER;
ALTER TABLE tokens ADD COLUMN actor TEXT;
UPDATE tokens SET actor = json_extract(act, '$.sub') WHERE act IS NOT NULL AND json_valid(act);
CREATE INDEX tokens_actor ON tokens (actor) WHERE actor IS NOT NULL;
CREATE INDEX tokens_client ON tokens (client_id);
CREATE TABLE known_users (
    username   TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
-- Item 6: the actor token an approved CIBA request was asked with, checked again at issuance.
ALTER TABLE ciba_requests ADD COLUMN actor_hash BLOB;
-- Item 9: expired nonces are deleted as new ones are made.
CREATE INDEX attest_nonces_expiry ON attest_nonces (expires_at);
