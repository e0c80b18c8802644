-- Shared Signals streams that receivers manage themselves (SSF 1.0 §8.1): a client the
-- operator marked `ssf_receiver` creates, reads, changes and deletes its own streams. Streams
-- the operator configures (`[[ssf.streams]]`) are not stored here. A stream's SETs are outbox
-- messages of the stream `ssf:<id>` (pushed) or `ssfpoll:<id>` (polled); the id starts with
-- `~`, which no configured stream's name may, so the two kinds never share an outbox stream.
CREATE TABLE ssf_streams (
    -- The `stream_id`: `~` and a random id.
    id TEXT PRIMARY KEY,
    -- The receiver that owns the stream, and the `aud` of its SETs.
    client_id TEXT NOT NULL,
    -- `push` (RFC 8935) or `poll` (RFC 8936).
    method TEXT NOT NULL,
    -- Push only: the receiver's https URL.
    endpoint_url TEXT,
    -- Push only: the Authorization header value the receiver asked for, AES-256-GCM sealed
    -- under the key-encryption key with the stream id as associated data. Never returned.
    authorization_header BLOB,
    -- JSON arrays of event-type URIs: what the receiver asked for, what is delivered.
    events_requested TEXT NOT NULL,
    events_delivered TEXT NOT NULL,
    description TEXT,
    -- `enabled`, `paused` (SETs are held) or `disabled` (none are kept).
    status TEXT NOT NULL,
    status_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- When the receiver last had a verification SET sent (`min_verification_interval`).
    verified_at BIGINT
);

CREATE INDEX ssf_streams_client ON ssf_streams (client_id);
