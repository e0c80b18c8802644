-- OpenID Connect Core 1.0 §3.1.2.1: the client's `nonce`, carried from the authorization request
-- to the ID Token the code yields.
ALTER TABLE auth_codes ADD COLUMN nonce TEXT;
