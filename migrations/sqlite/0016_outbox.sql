-- The outbox: messages to deliver outside (approval notifications now; later the Security Event
-- Tokens of OpenID Shared Signals). A message is written in the same transaction as the audit
-- entry of the event that causes it, then delivered by a worker: at least once, in `id` order
-- within its `stream` (one receiver: a webhook, a human's mailbox), each under its stable
-- `event_id` that a receiver deduplicates on.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stable across retries: the `webhook-id` of a webhook, the `Message-ID` of a mail.
    event_id TEXT NOT NULL UNIQUE,
    -- Delivered in order within a stream: `webhook:<name>`, `email:<username>`.
    stream TEXT NOT NULL,
    -- The audit event that caused it (`ciba.requested`).
    kind TEXT NOT NULL,
    -- JSON: what the channel renders; never a token or secret.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Past this, the message is pointless (the request it announces expired): dropped unsent.
    expires_at BIGINT,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- Who is sending it (a worker's id) and until when; another worker may take it after.
    lease TEXT,
    leased_until BIGINT,
    last_error TEXT,
    -- Set once: `delivered`, `failed` (gave up) or `expired`; settled rows are purged later.
    settled_at BIGINT,
    outcome TEXT
);

-- The unsettled messages of a stream, oldest first: the head is the one to send.
CREATE INDEX outbox_pending ON outbox (stream, id) WHERE settled_at IS NULL;
CREATE INDEX outbox_settled ON outbox (settled_at) WHERE settled_at IS NOT NULL;
