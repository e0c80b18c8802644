-- How a token's current actor proved itself at /attest (`software` or `tpm`): the `att` claim of
-- a delegated access token and of its introspection, so a resource server can require a
-- TPM-attested agent. NULL for tokens without an actor and for tokens issued before this column.
ALTER TABLE tokens ADD COLUMN att TEXT;
