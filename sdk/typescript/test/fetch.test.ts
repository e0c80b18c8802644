// The fetch wrapper against a real mandate and a Hono resource server that introspects every
// request (no cache): it attaches the delegated token, re-exchanges before expiry (a Cedar
// @max_ttl("4s") keeps delegated tokens short while alice's token lives on), and once more on a
// 401 invalid_token (RFC 6750 §3.1), sending the request again with its body.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { DelegatedTokenSource, delegatedFetch, type AgentSession } from '@mandate/sdk';
import { Verifier } from '@mandate/sdk/resource';
import { requireToken, type MandateEnv } from '@mandate/sdk/hono';
import { freePort, startMandate, type Mandate } from './harness.ts';

let m: Mandate;
let alice: string;
let planner: AgentSession;
let server: http.Server;
let resource: string;
const seen: { jti: string | undefined; body: string }[] = [];

before(async () => {
  const port = await freePort();
  resource = `http://127.0.0.1:${port}/api`;
  m = await startMandate({
    policy: '@id("short-delegations")\n@max_ttl("4s")\npermit (principal, action == Mandate::Action::"delegate", resource);\n',
    extra: `
[[resources]]
uri = "${resource}"
name = "Echo"

[[clients]]
client_id = "echo-rs"
client_secret = "echo-rs-secret"
introspect = true
audience = "${resource}"
`,
  });
  alice = await m.humanToken();
  planner = m.session('planner');
  const verifier = new Verifier({ issuer: m.issuer, audience: resource, mode: 'introspection', clientId: 'echo-rs', clientSecret: 'echo-rs-secret', introspectionCacheSeconds: 0 });
  const app = new Hono<MandateEnv>();
  app.all('/api/echo', requireToken(verifier, { scopes: ['orders:read'] }), async (c) => {
    const body = await c.req.text();
    seen.push({ jti: c.var.principal.tokenId, body });
    return c.json({ jti: c.var.principal.tokenId, body, chain: String(c.var.principal) });
  });
  app.get('/api/admin', requireToken(verifier, { scopes: ['orders:write'] }), (c) => c.text('no'));
  server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }) as http.Server;
  await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
});
after(async () => {
  await new Promise((r) => server?.close(r));
  await m?.stop();
});

test('attaches the delegated token; reuses it while fresh; re-exchanges before it expires', async () => {
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', resource });
  const f = delegatedFetch(source);
  const a = (await (await f(`${resource}/echo`)).json()) as { jti: string; chain: string };
  assert.equal(a.chain, 'alice → planner');
  const b = (await (await f(`${resource}/echo`)).json()) as { jti: string };
  assert.equal(b.jti, a.jti);
  assert.equal(source.exchanges, 1);
  const current = await source.get();
  assert.ok(current.expiresIn() <= 4.5, 'the policy keeps delegated tokens at 4 s');
  // Default margin: a fifth of the lifetime. Wait until inside it, still before expiry.
  await new Promise((r) => setTimeout(r, Math.max(0, current.expiresAt.getTime() - Date.now() - 500)));
  const c = (await (await f(`${resource}/echo`)).json()) as { jti: string };
  assert.notEqual(c.jti, a.jti);
  assert.equal(source.exchanges, 2);
});

test('RFC 6750 §3.1: a 401 invalid_token (the token was revoked) gets a new token and the request is sent once more, body included', async () => {
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', resource });
  const f = delegatedFetch(source);
  const first = (await (await f(`${resource}/echo`, { method: 'POST', body: 'one' })).json()) as { jti: string };
  await planner.revoke(await source.get());
  const resp = await f(`${resource}/echo`, { method: 'POST', body: 'two', headers: { 'content-type': 'text/plain' } });
  assert.equal(resp.status, 200);
  const second = (await resp.json()) as { jti: string; body: string };
  assert.equal(second.body, 'two');
  assert.notEqual(second.jti, first.jti);
  assert.equal(source.exchanges, 2);
});

test('a token still refused after the new exchange is answered as is: one retry, no loop', async () => {
  // A token for another audience: the resource server refuses every one.
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', audience: 'orders-api' });
  const resp = await delegatedFetch(source)(`${resource}/echo`);
  assert.equal(resp.status, 401);
  assert.match(resp.headers.get('www-authenticate') ?? '', /invalid_token/);
  assert.equal(source.exchanges, 2);
});

test('403 insufficient_scope is passed through without a new exchange', async () => {
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', resource });
  const resp = await delegatedFetch(source)(`${resource}/admin`);
  assert.equal(resp.status, 403);
  assert.equal(source.exchanges, 1);
});

test('concurrent requests share one exchange', async () => {
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', resource });
  const f = delegatedFetch(source);
  const all = await Promise.all([1, 2, 3, 4, 5].map(() => f(`${resource}/echo`).then((r) => r.json() as Promise<{ jti: string }>)));
  assert.equal(new Set(all.map((x) => x.jti)).size, 1);
  assert.equal(source.exchanges, 1);
});

test('an Authorization header set by the caller is replaced, never sent alongside', async () => {
  const source = DelegatedTokenSource.actingFor(planner, alice, { scope: 'orders:read', resource });
  const resp = await delegatedFetch(source)(`${resource}/echo`, { headers: { authorization: 'Bearer caller-token' } });
  assert.equal(resp.status, 200);
});
