-- The last TPM clock an agent's accepted quote showed (TPMS_CLOCK_INFO, TPM 2.0 Part 2 §10.11.1).
-- A quote is accepted only if (reset_count, restart_count, clock) is strictly greater than the row's,
-- so a replayed or older quote is refused; the check and the update are one upsert statement.
-- firmware is the TPM's firmwareVersion (hex) at the last quote, prev_firmware the one before it,
-- so a firmware change can be audited. Enrollment itself lives in `agents` (ak_public, pcr_policy).
CREATE TABLE tpm_counters (
    agent         TEXT PRIMARY KEY,
    reset_count   BIGINT NOT NULL,
    restart_count BIGINT NOT NULL,
    clock         BIGINT NOT NULL,
    firmware      TEXT NOT NULL,
    prev_firmware TEXT,
    updated_at    BIGINT NOT NULL
);
