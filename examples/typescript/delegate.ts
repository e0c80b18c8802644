// Delegation in four steps: alice signs in, the planner agent acts for her, hands a narrower
// token to its sub-agent payments-bot, and payments-bot calls the payments API (Hono), which
// prints who acts for whom: `alice → planner → payments-bot`.
//
//   cargo run --release                          # mandate with the demo config, in one terminal
//   cd examples/typescript && npm install        # once (builds nothing: the SDK is sdk/typescript)
//   npm run delegate                             # sign in as alice when the browser opens

import { readFile } from 'node:fs/promises';
import { AgentSession, DelegatedTokenSource, MandateClient, SoftwareKey, delegatedFetch } from '@mandate/sdk';
import { signIn } from './signin.ts';
import { startPaymentsApi } from './payments-api.ts';

const issuer = process.env.MANDATE_ISSUER ?? 'http://127.0.0.1:8080';
const port = Number(process.env.PAYMENTS_API_PORT ?? 8002);
const keys = new URL('../keys/', import.meta.url); // the demo agents' keys (development only)

async function agent(client: MandateClient, name: string): Promise<AgentSession> {
  const key = await SoftwareKey.fromPem(await readFile(new URL(`${name}.pem`, keys), 'utf8'));
  return new AgentSession(client, name, key);
}

const api = await startPaymentsApi(issuer, port);
try {
  const aliceToken = await signIn(issuer, 'payments:read');
  const client = new MandateClient(issuer, 'agent-runtime', 's3cret');
  const planner = await agent(client, 'planner');
  const paymentsBot = await agent(client, 'payments-bot');

  // The planner proves what it is (attestation) and acts for alice (RFC 8693).
  const mine = await planner.actFor(aliceToken, { scope: 'payments:read', audience: 'payments-api' });
  console.log(`planner holds ${mine}`);

  // payments-bot calls the API with a token handed down from the planner's: exchanged with
  // payments-bot's own agent token as the actor, and again before it expires.
  const call = delegatedFetch(DelegatedTokenSource.actingFor(paymentsBot, mine, { scope: 'payments:read', audience: 'payments-api' }));
  const resp = await call(`${api.url}/payments`);
  if (!resp.ok) throw new Error(`the payments API answered ${resp.status}`);
  console.log(`payments-bot got ${JSON.stringify(await resp.json())}`);

  // Revoking the planner's token revokes everything delegated from it.
  await planner.revoke(mine);
  console.log("planner's session revoked: payments-bot's token is dead too");
} finally {
  api.close();
}
