-- The version (hash) of the policy set in force when each audit entry was written.
ALTER TABLE audit_log ADD COLUMN policy_version TEXT;
