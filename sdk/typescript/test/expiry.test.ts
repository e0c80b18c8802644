// Expiry against a real mandate configured with short lifetimes (access tokens 6 s, agent
// tokens 20 s, CIBA requests 2 s) instead of long sleeps: an expired subject token is refused,
// the verifier refuses an expired token in both modes, an agent token close to expiry is
// attested again, and a request the human never answered ends in ApprovalExpired.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentSession, ApprovalExpired, MandateError, type Attester, type DelegatedToken } from '@mandate/sdk';
import { TokenError, Verifier } from '@mandate/sdk/resource';
import { RS_ID, RS_SECRET, freePort, startMandate, type Mandate } from './harness.ts';
import { startExpress, startHono, verifiers, type ResourceServer } from './servers.ts';

let m: Mandate;
let alice: string;
let delegated: DelegatedToken;
let servers: ResourceServer[] = [];
const perServer = new Map<string, DelegatedToken>();

before(async () => {
  const [honoPort, expressPort] = [await freePort(), await freePort()];
  const resourceToml = (port: number, id: string) => `
[[resources]]
uri = "http://127.0.0.1:${port}/api"

[[clients]]
client_id = "${id}"
client_secret = "${id}-secret"
introspect = true
audience = "http://127.0.0.1:${port}/api"
`;
  m = await startMandate({
    tokens: 'access_token_ttl = "6s"\nagent_token_ttl = "20s"',
    ciba: 'expiry = "2s"',
    extra: resourceToml(honoPort, 'hono-rs') + resourceToml(expressPort, 'express-rs'),
  });
  const noLeeway = { clockToleranceSeconds: 0, introspectionCacheSeconds: 0 };
  servers = [
    await startHono(honoPort, (r) => verifiers(m.issuer, r, { clientId: 'hono-rs', clientSecret: 'hono-rs-secret' }, noLeeway)),
    await startExpress(expressPort, (r) => verifiers(m.issuer, r, { clientId: 'express-rs', clientSecret: 'express-rs-secret' }, noLeeway)),
  ];
  alice = await m.humanToken();
  const planner = m.session('planner');
  delegated = await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
  for (const s of servers) perServer.set(s.framework, await planner.actFor(alice, { scope: 'orders:read', resource: s.resource }));
});
after(async () => {
  for (const s of servers) await s.close();
  await m?.stop();
});

const until = (d: Date) => new Promise((r) => setTimeout(r, Math.max(0, d.getTime() + 1200 - Date.now())));

test('a delegated token never outlives its parent (RFC 8693 §2.2.1 expires_in; docs/protocol.md)', () => {
  assert.ok(delegated.expiresIn() <= 6.5, `expires in ${delegated.expiresIn()} s`);
});

test('RFC 7519 §4.1.4: once expired, the verifier refuses the token with 401 invalid_token, in both modes', async () => {
  const jwt = new Verifier({ issuer: m.issuer, audience: 'orders-api', clockToleranceSeconds: 0 });
  // Cached for up to 60 s, but never past the token's exp (RFC 7662 §4).
  const intro = new Verifier({ issuer: m.issuer, audience: 'orders-api', mode: 'introspection', clientId: RS_ID, clientSecret: RS_SECRET, clockToleranceSeconds: 0, introspectionCacheSeconds: 60 });
  assert.equal((await jwt.verify(delegated.accessToken)).subject, 'alice');
  assert.equal((await intro.verify(delegated.accessToken)).subject, 'alice');
  // The middleware takes the same tokens while they are fresh.
  for (const s of servers) {
    for (const mode of ['jwt', 'introspection']) {
      const resp = await fetch(`${s.url}/api/${mode}/orders`, { headers: { authorization: `Bearer ${perServer.get(s.framework)!.accessToken}` } });
      assert.equal(resp.status, 200, `${s.framework} ${mode} before expiry`);
    }
  }
  await until(delegated.expiresAt);
  for (const v of [jwt, intro]) {
    const e = await v.authenticate(`Bearer ${delegated.accessToken}`).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof TokenError, `${v.mode}: ${e}`);
    assert.equal(e.status, 401);
    assert.match(v.challenge(e), /error="invalid_token"/);
  }
  const e = await jwt.verify(delegated.accessToken).then(() => undefined, (x: unknown) => x);
  assert.equal((e as TokenError).description, 'the token has expired');
});

test('RFC 6750 §3.1: the Hono and Express middleware answer an expired token with 401 invalid_token, in both modes', async () => {
  const get = (s: ResourceServer, mode: string) =>
    fetch(`${s.url}/api/${mode}/orders`, { headers: { authorization: `Bearer ${perServer.get(s.framework)!.accessToken}` } });
  // These tokens were issued with the others: expired by now (the test above waited).
  await until(perServer.get('express')!.expiresAt);
  for (const s of servers) {
    for (const mode of ['jwt', 'introspection']) {
      const resp = await get(s, mode);
      assert.equal(resp.status, 401, `${s.framework} ${mode}`);
      assert.match(resp.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
  }
});

test('an expired subject token is refused: invalid_grant (RFC 8693 §2.2.2)', async () => {
  await until(delegated.expiresAt);
  const e = await m.session('planner').actFor(alice, { scope: 'orders:read' }).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof MandateError);
  assert.equal(e.error, 'invalid_grant');
});

test('token(): an agent token with less than 30 s left is attested again', async () => {
  let attestations = 0;
  const key = m.keys.planner!;
  const counting: Attester = { evidence: (a, i, n) => (attestations++, key.evidence(a, i, n)) };
  const s = new AgentSession(m.client(), 'planner', counting);
  const first = await s.token();
  const second = await s.token();
  assert.equal(attestations, 2, 'a 20 s agent token is inside the 30 s margin at once');
  assert.notEqual(first, second);
});

test('a request the human never answers ends in ApprovalExpired (expired_token, CIBA Core §11)', async () => {
  const fresh = await m.humanToken();
  const planner = m.session('planner');
  const req = await planner.requestApproval(fresh, { scope: 'payments:write', audience: 'orders-api', bindingMessage: 'nobody answers' });
  // ciba.expiry is 2 s here.
  const e = await planner.waitForApproval(req, { timeoutMs: 20_000 }).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof ApprovalExpired, String(e));
  assert.equal(e.error, 'expired_token');
});
