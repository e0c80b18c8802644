// THE ONE PLACE for checks that are known to fail today, each with its reason. A listed check
// that fails is reported XFAIL (it does not fail the run); a listed check that passes fails the
// run, so the entry gets removed when the fix lands; a check not listed here that fails, fails.
// Keys: the harness's own check ids, and the conformance tool's check ids.

export const EXPECTED_FAILURES: Record<string, string> = {
  // None today. (The missing OpenID discovery fields of issue 16 were listed here until main
  // added them; the check `oidc-discovery-required-fields` in harness.ts now passes.)
};

// Conformance checks that answer WARNING today because a feature has not landed (reported, never
// failing; the conformance tool itself calls them warnings).
export const KNOWN_WARNINGS: Record<string, string> = {
  'authorization-server-metadata-cimd':
    'mandate does not advertise client_id_metadata_document_supported until Client ID Metadata Documents land (branch cimd)',
};
