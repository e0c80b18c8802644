-- RFC 9449 DPoP: the RFC 7638 thumbprint (base64url SHA-256) of the key a token is bound to, its
-- `cnf.jkt`. NULL for a bearer token and for tokens issued before this column.
ALTER TABLE tokens ADD COLUMN jkt TEXT;
