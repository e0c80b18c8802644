// THE ONE PLACE for the mandate settings of the registration modes other than `preregistered`.
// Every mode is on main and in the default modes (`preregistered,dcr,cimd`). mandate refuses
// unknown keys, so a renamed key stops the server at start, loudly.

import { SCOPE } from './mcp-server.ts';

/**
 * Dynamic client registration (RFC 7591; docs/configuration.md `[registration]`): on, with the
 * MCP server's scope grantable to registered clients (native apps with loopback redirect URIs on
 * any port are allowed by default).
 */
export function dcrConfig(): string {
  return `
[registration]
enabled = true
scopes = ["${SCOPE}"]
grant_types = ["authorization_code", "refresh_token"]
`;
}

/**
 * Client ID Metadata Documents (docs/client-metadata-documents.md). The harness serves each
 * client's document at https://127.0.0.1:PORT/clients/NAME.json, with a certificate from a test
 * CA it creates (`caFile`, PEM). mandate must (1) trust that CA for these fetches and (2) allow
 * fetching from a loopback address, both off by default, and grant the MCP server's scope.
 */
export function cimdConfig(caFile: string): string {
  return `
[cimd]
enabled = true
allow_private_addresses = true
extra_ca_file = "${caFile}"
scopes = ["${SCOPE}"]
`;
}

/**
 * Environment for mandate in cimd mode, in case its HTTP client reads the system's roots (native
 * roots honour SSL_CERT_FILE; webpki roots do not): the test CA is appended to the usual bundle.
 */
export function cimdEnv(bundleWithTestCa: string): Record<string, string> {
  return { SSL_CERT_FILE: bundleWithTestCa };
}
