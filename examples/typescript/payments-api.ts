// A small resource server protected by mandate: Hono with the SDK's `requireToken`. Every call
// prints who it acts for, e.g. `payments-api: GET /payments for alice → planner → payments-bot
// (software)`.

import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { Verifier } from '@mandate/sdk/resource';
import { protectedResourceMetadata, requireToken, type MandateEnv } from '@mandate/sdk/hono';

export function startPaymentsApi(issuer: string, port: number): Promise<{ url: string; close: () => void }> {
  const url = `http://127.0.0.1:${port}`;
  // Checked against mandate's JWKS; mode 'introspection' with the client payments-api /
  // payments-secret would see revocations at once instead.
  const verifier = new Verifier({
    issuer,
    audience: 'payments-api',
    resource: url,
    scopesSupported: ['payments:read', 'payments:write'],
    resourceName: 'Payments API (mandate example)',
  });
  const app = new Hono<MandateEnv>();
  app.get(verifier.metadataPath, protectedResourceMetadata(verifier)); // RFC 9728
  app.get('/payments', requireToken(verifier, { scopes: ['payments:read'] }), (c) => {
    const who = c.var.principal;
    console.log(`payments-api: GET /payments for ${who} (${who.attestation ?? 'no agent'})`);
    return c.json({ for: who.subject, chain: `${who}`, payments: [{ id: 4711, amount: '42.00 EUR' }] });
  });
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port }, () => resolve({ url, close: () => server.close() }));
  });
}
