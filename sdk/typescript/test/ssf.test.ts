// The SSF receiver (RFC 8935 push of RFC 8417 SETs, CAEP 1.0 session-revoked) in the
// resource-server middleware, against a real mandate that pushes to it: a revoked token is
// refused at once by a JWT-mode Verifier behind Hono and Express (no introspection) and
// dropped from the introspection cache; the attacks a push endpoint faces are refused with
// RFC 8935 §2.3 errors and revoke nothing; the revocation list stays bounded without
// forgetting silently (the eviction watermark).
//
// The world: a mandate with a client_credentials client and five streams: `hono-jwt`,
// `express-jwt` and `hono-introspection` pushing to the receivers below, `orders-poll` and
// `other-poll` polled by the tests to hold genuine SETs. The two resource servers listen on
// port 0 before mandate starts (their URLs are in its config).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import express from 'express';
import { Hono } from 'hono';
import { getRequestListener } from '@hono/node-server';
import { CompactSign, base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import { RevocationList, SESSION_REVOKED, TokenError, VERIFICATION, Verifier, type SsfReceiver } from '@mandate/sdk/resource';
import * as honoMw from '@mandate/sdk/hono';
import * as expressMw from '@mandate/sdk/express';
import { humanTokens } from './browser.ts';
import { CLIENT_ID, CLIENT_SECRET, PASSWORD, RS_ID, RS_SECRET, USER, freePort, startMandate, type Mandate } from './harness.ts';

const CREDENTIAL = `Bearer ${randomBytes(18).toString('base64url')}`;
const POLL_CREDENTIAL = `Bearer ${randomBytes(18).toString('base64url')}`;
const CC = { id: 'cc-client', secret: 'cc-secret' };

/** A server on port 0 whose handler is set later (its URL must be in mandate's config first). */
async function lateServer(): Promise<{ url: string; server: http.Server; set(h: http.RequestListener): void }> {
  let handler: http.RequestListener = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, set: (h) => (handler = h) };
}

let m: Mandate;
let env: Record<string, string>;
let honoServer: Awaited<ReturnType<typeof lateServer>>;
let expressServer: Awaited<ReturnType<typeof lateServer>>;
const verifiers: Record<'hono-jwt' | 'express-jwt' | 'hono-introspection' | 'express-api', Verifier> = {} as never;
const receivers: Record<keyof typeof verifiers, SsfReceiver> = {} as never;
const urls: Record<keyof typeof verifiers, string> = {} as never;

/** The path of every request this process sends with fetch (the Verifiers' included). */
const fetched: string[] = [];
const realFetch = globalThis.fetch;

before(async () => {
  globalThis.fetch = (input, init) => {
    fetched.push(new URL(input instanceof Request ? input.url : String(input)).pathname);
    return realFetch(input, init);
  };
  honoServer = await lateServer();
  expressServer = await lateServer();
  // The issuer is named, not derived from the bound listener: the CLI (another process) stamps
  // its SETs with the configured issuer, or `http://{listen}` without one, which for port 0 is
  // not the server's (reported as a server bug).
  const port = await freePort();
  env = { MANDATE_LISTEN: `127.0.0.1:${port}`, MANDATE_ISSUER: `http://127.0.0.1:${port}` };
  const stream = (name: string, url: string) => `
[[ssf.streams]]
name = "${name}"
endpoint_url = "${url}"
audience = "${RS_ID}"
authorization_header_file = "orders.credential"
`;
  const poll = (name: string, audience: string) => `
[[ssf.streams]]
name = "${name}"
delivery = "poll"
audience = "${audience}"
authorization_header_file = "poll.credential"
`;
  m = await startMandate({
    env,
    extra: `
[[clients]]
client_id = "${CC.id}"
client_secret = "${CC.secret}"
grant_types = ["client_credentials"]
scopes = ["orders:read"]

[notifications]
timeout = "1s"
retry_initial = "1s"
retry_max = "2s"
${stream('hono-jwt', `${honoServer.url}/ssf/jwt`)}
${stream('express-jwt', `${expressServer.url}/ssf/jwt`)}
${stream('hono-introspection', `${honoServer.url}/ssf/introspection`)}
${stream('express-api', `${expressServer.url}/ssf/api`)}
${poll('orders-poll', RS_ID)}
${poll('other-poll', 'billing-api')}

[registration]
enabled = true
grant_types = ["client_credentials"]
confidential = true
scopes = ["orders:read"]

[[resources]]
uri = "${expressServer.url}/api"
scopes = ["orders:read"]
`,
    files: { 'orders.credential': `${CREDENTIAL}\n`, 'poll.credential': `${POLL_CREDENTIAL}\n` },
  });
  assert.equal(m.issuer, env.MANDATE_ISSUER);

  verifiers['hono-jwt'] = new Verifier({ issuer: m.issuer, audience: RS_ID });
  verifiers['express-jwt'] = new Verifier({ issuer: m.issuer, audience: RS_ID });
  verifiers['hono-introspection'] = new Verifier({ issuer: m.issuer, audience: RS_ID, mode: 'introspection', clientId: RS_ID, clientSecret: RS_SECRET });
  // A resource server named by its URL (where registered clients' tokens go); its stream's SETs
  // still say `aud` orders-api, so its receiver is told that audience.
  verifiers['express-api'] = new Verifier({ issuer: m.issuer, audience: `${expressServer.url}/api` });
  for (const k of Object.keys(verifiers) as (keyof typeof verifiers)[]) receivers[k] = verifiers[k].ssfReceiver({ authorization: CREDENTIAL, audience: RS_ID });

  const hono = new Hono<honoMw.MandateEnv>();
  hono.get('/jwt/orders', honoMw.requireToken(verifiers['hono-jwt'], { scopes: ['orders:read'] }), (c) => c.json(c.var.principal));
  hono.get('/introspection/orders', honoMw.requireToken(verifiers['hono-introspection'], { scopes: ['orders:read'] }), (c) => c.json(c.var.principal));
  hono.post('/ssf/jwt', honoMw.ssfEvents(receivers['hono-jwt']));
  hono.post('/ssf/introspection', honoMw.ssfEvents(receivers['hono-introspection']));
  honoServer.set(getRequestListener(hono.fetch));

  const app = express();
  app.get('/jwt/orders', expressMw.requireToken(verifiers['express-jwt'], { scopes: ['orders:read'] }), (req, res) => {
    res.json(expressMw.principalOf(req));
  });
  app.post('/ssf/jwt', expressMw.ssfEvents(receivers['express-jwt']));
  app.get('/api/orders', expressMw.requireToken(verifiers['express-api'], { scopes: ['orders:read'] }), (req, res) => {
    res.json(expressMw.principalOf(req));
  });
  app.post('/ssf/api', expressMw.ssfEvents(receivers['express-api']));
  expressServer.set(app);

  urls['hono-jwt'] = `${honoServer.url}/jwt`;
  urls['hono-introspection'] = `${honoServer.url}/introspection`;
  urls['express-jwt'] = `${expressServer.url}/jwt`;
  urls['express-api'] = `${expressServer.url}/api`;
});

after(async () => {
  globalThis.fetch = realFetch;
  for (const s of [honoServer, expressServer]) if (s) await new Promise((r) => s.server.close(r));
  await m?.stop();
});

// --- helpers ----------------------------------------------------------------------------------

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

async function ccToken(): Promise<string> {
  const r = await fetch(`${m.issuer}/token`, {
    method: 'POST',
    headers: { authorization: basic(CC.id, CC.secret) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', audience: RS_ID }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { access_token: string }).access_token;
}

async function revoke(token: string, client: { id: string; secret?: string } = CC): Promise<void> {
  const body = new URLSearchParams({ token });
  const headers: Record<string, string> = {};
  if (client.secret === undefined) body.set('client_id', client.id);
  else headers.authorization = basic(client.id, client.secret);
  const r = await fetch(`${m.issuer}/revoke`, { method: 'POST', headers, body });
  assert.equal(r.status, 200, await r.text());
}

async function getOrders(rs: keyof typeof verifiers, token: string): Promise<number> {
  const r = await fetch(`${urls[rs]}/orders`, { headers: { authorization: `Bearer ${token}` } });
  await r.arrayBuffer();
  return r.status;
}

/** Polls the Verifier until it refuses `token` (then checks its route answers 401); milliseconds it took. */
async function refusedWithin(rs: keyof typeof verifiers, token: string, limitMs = 5000): Promise<number> {
  const start = performance.now();
  let took: number;
  for (;;) {
    try {
      await verifiers[rs].verify(token);
    } catch (e) {
      assert.ok(e instanceof TokenError && e.status === 401, String(e));
      took = performance.now() - start;
      break;
    }
    took = performance.now() - start;
    assert.ok(took < limitMs, `still accepted ${took.toFixed(0)} ms after the revocation`);
    await new Promise((r) => setTimeout(r, 0.5));
  }
  assert.equal(await getOrders(rs, token), 401);
  return took;
}

async function pollSets(stream: string): Promise<string[]> {
  const r = await fetch(`${m.issuer}/ssf/poll/${stream}`, {
    method: 'POST',
    headers: { authorization: POLL_CREDENTIAL, 'content-type': 'application/json' },
    body: JSON.stringify({ maxEvents: 100 }),
  });
  assert.equal(r.status, 200);
  const sets = ((await r.json()) as { sets: Record<string, string> }).sets;
  if (Object.keys(sets).length) {
    await fetch(`${m.issuer}/ssf/poll/${stream}`, {
      method: 'POST',
      headers: { authorization: POLL_CREDENTIAL, 'content-type': 'application/json' },
      body: JSON.stringify({ ack: Object.keys(sets), maxEvents: 0 }),
    }).then((x) => x.arrayBuffer());
  }
  return Object.values(sets);
}

/**
 * A SET mandate signed for `stream`, of a fresh revocation, once the push streams have
 * delivered theirs too (so that the receivers' lists no longer change under a test).
 */
async function genuineSet(stream = 'orders-poll'): Promise<string> {
  const token = await ccToken();
  await revoke(token);
  const claims = decodeJwt(token);
  const deadline = Date.now() + 5000;
  let set: string | undefined;
  while (Date.now() < deadline) {
    set ??= (await pollSets(stream)).at(-1);
    if (set && Object.values(receivers).every((r) => r.revocations.revoked(claims))) return set;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no SET on ${stream}, or not pushed to every receiver`);
}

async function push(body: string, opts: { authorization?: string | null; contentType?: string; to?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/secevent+jwt' };
  if (opts.authorization !== null) headers.authorization = opts.authorization ?? CREDENTIAL;
  return fetch(opts.to ?? `${honoServer.url}/ssf/jwt`, { method: 'POST', headers, body });
}

const sizes = () => Object.values(receivers).map((r) => r.revocations.size);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// --- end to end -------------------------------------------------------------------------------

describe('end to end: mandate pushes, the resource server refuses', () => {
  for (const rs of ['hono-jwt', 'express-jwt'] as const) {
    test(`${rs}: a revoked token is refused well under a second, without introspection (RFC 7009 → RFC 8935)`, async () => {
      const took: number[] = [];
      // The first revocation is timed apart: it also pays for JIT warm-up and, at every
      // receiver, the first fetch of mandate's keys.
      for (let i = 0; i < 6; i++) {
        const token = await ccToken();
        assert.equal(await getOrders(rs, token), 200);
        await revoke(token);
        took.push(await refusedWithin(rs, token));
      }
      const first = took.shift()!;
      console.log(`SSF revocation → ${rs} resource server refusing (typescript, 5 revocations after a first one): median ${median(took).toFixed(1)} ms, max ${Math.max(...took).toFixed(1)} ms; the first ${first.toFixed(1)} ms`);
      assert.ok(first < 1000, String(first));
      assert.ok(Math.max(...took) < 1000, String(took));
      assert.ok(median(took) < 500, String(took));
      // Every request of this process so far (the introspecting Verifier is used only later):
      // the Verifiers' own requests to mandate (its metadata and keys) are there, and none to
      // the introspection endpoint.
      assert.ok(fetched.includes('/jwks.json'), fetched.join(' '));
      assert.ok(!fetched.some((p) => p.endsWith('/introspect')), fetched.join(' '));
    });
  }

  test('introspection mode: the SET drops the cached answer at once', async () => {
    const took: number[] = [];
    for (let i = 0; i < 3; i++) {
      const token = await ccToken();
      assert.equal(await getOrders('hono-introspection', token), 200);
      assert.equal(await getOrders('hono-introspection', token), 200); // cached for 30 s
      await revoke(token);
      took.push(await refusedWithin('hono-introspection', token));
    }
    console.log(`SSF revocation → introspecting resource server refusing (typescript): median ${median(took).toFixed(1)} ms`);
    assert.ok(Math.max(...took) < 1000, String(took));
  });

  test('CAEP session-revoked names what was revoked: a token alone, or its whole session; another session is not', async () => {
    const opts = { clientId: 'cli', redirectUri: 'http://127.0.0.1:9/callback', username: USER, password: PASSWORD, scope: 'orders:read', resource: RS_ID };
    const first = await humanTokens(m.issuer, opts);
    const r = await fetch(`${m.issuer}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', client_id: 'cli', refresh_token: first.refresh_token! }) });
    assert.equal(r.status, 200);
    const second = ((await r.json()) as { access_token: string }).access_token;
    assert.equal(decodeJwt(first.access_token).sid, decodeJwt(second).sid);
    const other = (await humanTokens(m.issuer, opts)).access_token;
    for (const t of [first.access_token, second, other]) assert.equal(await getOrders('hono-jwt', t), 200);
    // One access token revoked alone (RFC 7009 §2.1) is named by its jti: its sibling stays
    // accepted, as mandate accepts it. The refresh token (the grant) names the session's sid.
    await revoke(first.access_token, { id: 'cli' });
    await refusedWithin('hono-jwt', first.access_token);
    assert.equal(await getOrders('hono-jwt', second), 200, 'only the token was revoked');
    await revoke(first.refresh_token!, { id: 'cli' });
    await refusedWithin('hono-jwt', second);
    assert.equal(await getOrders('hono-jwt', other), 200);
  });

  test('a SET naming one sessionless token (its jti) leaves the others alone', async () => {
    const [a, b] = [await ccToken(), await ccToken()];
    await revoke(a);
    await refusedWithin('express-jwt', a);
    assert.equal(await getOrders('express-jwt', b), 200);
  });

  test('iss_sub: an agent disabled from the CLI is cut off wherever its act chain names it', async () => {
    const alice = await m.humanToken('orders:read orders:write');
    const auditor = m.session('auditor');
    const mine = await auditor.actFor(alice, { scope: 'orders:read orders:write', audience: RS_ID });
    const theirs = await auditor.delegate(mine, await m.session('payments-bot').token(), { scope: 'orders:read' });
    assert.equal((decodeJwt(theirs.accessToken).act as { act: { sub: string } }).act.sub, 'agent:auditor');
    for (const t of [mine.accessToken, theirs.accessToken]) assert.equal(await getOrders('hono-jwt', t), 200);
    const childEnv = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_'))), ...env };
    await promisify(execFile)(process.env.MANDATE_BIN || '/work/bin/mandate', ['--config', m.configPath, 'agents', 'disable', 'auditor'], { env: childEnv });
    // The CLI writes the SET to the outbox; the server picks it up within a second or so.
    await refusedWithin('hono-jwt', mine.accessToken, 10_000);
    await refusedWithin('express-jwt', theirs.accessToken, 10_000);
  });
});

test('complex application: a registered client deleted (RFC 7592) is cut off by its client_id', async () => {
  let r = await fetch(`${m.issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'ssf test', grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'orders:read' }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const reg = (await r.json()) as Record<string, string>;
  r = await fetch(`${m.issuer}/token`, {
    method: 'POST',
    headers: { authorization: basic(reg.client_id!, reg.client_secret!) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', resource: urls['express-api'] }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const token = ((await r.json()) as { access_token: string }).access_token;
  assert.equal(await getOrders('express-api', token), 200);
  r = await fetch(reg.registration_client_uri!, { method: 'DELETE', headers: { authorization: `Bearer ${reg.registration_access_token}` } });
  assert.equal(r.status, 204);
  await refusedWithin('express-api', token);
  // By the application entry itself (not only by the token's own jti).
  assert.ok(receivers['express-api'].revocations.revoked({ client_id: reg.client_id, iat: 0 }));
});

test(
  'revoking a delegated token cuts off the sub-agent token derived from it',
  async () => {
    const alice = await m.humanToken('orders:read orders:write');
    const planner = m.session('planner');
    const mine = await planner.actFor(alice, { scope: 'orders:read orders:write', audience: RS_ID });
    const theirs = await planner.delegate(mine, await m.session('payments-bot').token(), { scope: 'orders:read' });
    await revoke(mine.accessToken, { id: CLIENT_ID, secret: CLIENT_SECRET });
    await refusedWithin('hono-jwt', mine.accessToken);
    await refusedWithin('hono-jwt', theirs.accessToken, 2000);
  },
);

// --- attackers (RFC 8935 §2, RFC 8417) ---------------------------------------------------------

describe('attackers at the push endpoint (RFC 8935 §2, RFC 8417)', () => {
  test('RFC 8935 §2: without the credential, or a wrong one: 401, nothing revoked', async () => {
    const set = await genuineSet();
    const before = sizes();
    for (const authorization of [null, 'Bearer wrong', `${CREDENTIAL}x`, CREDENTIAL.slice(0, -1), `Basic ${CREDENTIAL}`]) {
      for (const to of [`${honoServer.url}/ssf/jwt`, `${expressServer.url}/ssf/jwt`]) {
        const r = await push(set, { authorization, to });
        assert.equal(r.status, 401, `${authorization} ${to}`);
        const text = await r.text();
        assert.equal(JSON.parse(text).err, 'authentication_failed');
        assert.ok(!text.includes(CREDENTIAL.split(' ')[1]!));
      }
    }
    assert.deepEqual(sizes(), before);
  });

  test('RFC 8417 / RFC 7515: a SET signed by another key is 400 authentication_failed, nothing revoked', async () => {
    const set = await genuineSet();
    const { privateKey } = await generateKeyPair('ES256');
    const header = decodeProtectedHeader(set);
    const forged = await new CompactSign(base64url.decode(set.split('.')[1]!)).setProtectedHeader(header as never).sign(privateKey);
    const changed = `${set.split('.')[0]}.${base64url.encode(JSON.stringify({ ...decodeJwt(set), jti: 'x' }))}.${set.split('.')[2]}`;
    const before = sizes();
    for (const body of [forged, changed]) {
      for (const to of [`${honoServer.url}/ssf/jwt`, `${expressServer.url}/ssf/jwt`]) {
        const r = await push(body, { to });
        assert.equal(r.status, 400);
        assert.equal(((await r.json()) as { err: string }).err, 'authentication_failed');
      }
    }
    assert.deepEqual(sizes(), before);
  });

  test('RFC 8935 §2.4 invalid_key: a kid mandate does not publish (then 503 while the key set may not be fetched again)', async () => {
    const v = new Verifier({ issuer: m.issuer, audience: RS_ID }); // fresh: its first unknown kid refetches
    const receiver = v.ssfReceiver({ authorization: CREDENTIAL });
    const set = await genuineSet();
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new CompactSign(base64url.decode(set.split('.')[1]!)).setProtectedHeader({ ...decodeProtectedHeader(set), kid: 'not-mandates' } as never).sign(privateKey);
    const a = await receiver.receive(CREDENTIAL, 'application/secevent+jwt', forged);
    assert.deepEqual([a.status, a.body?.err], [400, 'invalid_key']);
    const b = await receiver.receive(CREDENTIAL, 'application/secevent+jwt', forged);
    assert.equal(b.status, 503);
    assert.ok(b.headers['retry-after']);
    const ok = await receiver.receive(CREDENTIAL, 'application/secevent+jwt', set);
    assert.equal(ok.status, 202);
    assert.equal(receiver.revocations.size, 1);
  });

  test('RFC 8725 §3.1: an unsigned SET (alg none) is 400 invalid_key', async () => {
    const set = await genuineSet();
    const header = base64url.encode(JSON.stringify({ ...decodeProtectedHeader(set), alg: 'none' }));
    const before = sizes();
    for (const body of [`${header}.${set.split('.')[1]}.`, `${header}.${set.split('.')[1]}.${set.split('.')[2]}`]) {
      const r = await push(body);
      assert.equal(r.status, 400);
      assert.equal(((await r.json()) as { err: string }).err, 'invalid_key');
    }
    assert.deepEqual(sizes(), before);
  });

  test('RFC 8935 §2.4 invalid_audience: a genuine SET mandate signed for another receiver', async () => {
    const set = await genuineSet('other-poll');
    assert.equal(decodeJwt(set).aud, 'billing-api');
    const before = sizes();
    const r = await push(set);
    assert.deepEqual([r.status, ((await r.json()) as { err: string }).err], [400, 'invalid_audience']);
    assert.deepEqual(sizes(), before);
  });

  test('RFC 8417 §2.2 jti: a replayed SET is accepted (202) and changes nothing', async () => {
    const set = await genuineSet();
    assert.equal((await push(set)).status, 202);
    const after1 = sizes();
    for (let i = 0; i < 3; i++) assert.equal((await push(set)).status, 202);
    assert.deepEqual(sizes(), after1);
  });

  test('an oversized, mistyped or malformed push is refused, nothing revoked', async () => {
    const set = await genuineSet();
    const before = sizes();
    for (const to of [`${honoServer.url}/ssf/jwt`, `${expressServer.url}/ssf/jwt`]) {
      const big = await push(set + 'A'.repeat(64 * 1024), { to });
      assert.equal(big.status, 400, to);
      assert.equal(((await big.json()) as { err: string }).err, 'invalid_request');
      // Without Content-Length (chunked), cut off at the bound all the same.
      const chunks = [new TextEncoder().encode(set), new Uint8Array(70 * 1024).fill(65)];
      const stream = new ReadableStream({ pull(c) { const x = chunks.shift(); if (x) c.enqueue(x); else c.close(); } });
      const chunked = await fetch(to, { method: 'POST', headers: { authorization: CREDENTIAL, 'content-type': 'application/secevent+jwt' }, body: stream, duplex: 'half' } as RequestInit);
      assert.equal(chunked.status, 400, to);
      const json = await push(set, { to, contentType: 'application/json' });
      assert.deepEqual([json.status, ((await json.json()) as { err: string }).err], [400, 'invalid_request']);
      const junk = await push('not a jws', { to });
      assert.deepEqual([junk.status, ((await junk.json()) as { err: string }).err], [400, 'invalid_request']);
    }
    assert.deepEqual(sizes(), before);
  });
});

// --- the claims, against an issuer the test holds the key of ----------------------------------

describe('claims of a SET, from an issuer whose key the test holds', () => {
  let fake: http.Server;
  let issuer: string;
  let key: CryptoKey;

  before(async () => {
    const pair = await generateKeyPair('ES256');
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    fake = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/.well-known/oauth-authorization-server') res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks.json` }));
      else if (req.url === '/jwks.json') res.end(JSON.stringify({ keys: [jwk] }));
      else res.writeHead(404).end('{}');
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    issuer = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => fake.close(() => r())));

  const SESSION = { format: 'complex', session: { format: 'opaque', id: 'sid-1' } };
  const T = 1_800_000_000;
  const claims = (subId: unknown, over: Record<string, unknown> = {}) => ({
    iss: issuer,
    aud: 'orders-api',
    iat: T,
    jti: randomBytes(6).toString('hex'),
    sub_id: subId,
    events: { [SESSION_REVOKED]: { event_timestamp: T, initiating_entity: 'admin' } },
    ...over,
  });
  const signed = async (c: Record<string, unknown>, header: Record<string, unknown> = {}) => {
    const h = { alg: 'ES256', typ: 'secevent+jwt', kid: 'k1', ...header };
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(c))).setProtectedHeader({ ...h, alg: 'ES256' } as never).sign(key);
    return h.alg === 'ES256' ? jws : `${base64url.encode(JSON.stringify(h))}.${jws.split('.')[1]}.${jws.split('.')[2]}`;
  };
  const receiver = () => new Verifier({ issuer, audience: 'orders-api' }).ssfReceiver({ authorization: 'Bearer t' });
  const send = async (r: SsfReceiver, body: string) => {
    const a = await r.receive('Bearer t', 'application/secevent+jwt', body);
    return [a.status, a.body?.err];
  };

  test('RFC 8935 §2.3: each claim check has its err', async () => {
    const r = receiver();
    const omit = (k: string) => Object.fromEntries(Object.entries(claims(SESSION)).filter(([x]) => x !== k));
    const cases: [string, string, string][] = [
      ['iss', await signed(claims(SESSION, { iss: 'https://evil.test' })), 'invalid_issuer'],
      ['aud', await signed(claims(SESSION, { aud: 'billing-api' })), 'invalid_audience'],
      ['typ JWT', await signed(claims(SESSION), { typ: 'JWT' }), 'invalid_request'],
      ['typ at+jwt', await signed(claims(SESSION), { typ: 'at+jwt' }), 'invalid_request'],
      ['no iat', await signed(omit('iat')), 'invalid_request'],
      ['no jti', await signed(omit('jti')), 'invalid_request'],
      ['no events', await signed(claims(SESSION, { events: {} })), 'invalid_request'],
      ['no sub_id', await signed(claims(undefined)), 'invalid_request'],
      ['iss_sub of another issuer', await signed(claims({ format: 'iss_sub', iss: 'https://evil.test', sub: 'alice' })), 'access_denied'],
      ['a subject format it cannot apply', await signed(claims({ format: 'email', email: 'a@b.c' })), 'invalid_request'],
      ['ES384 named', await signed(claims(SESSION), { alg: 'ES384' }), 'invalid_key'],
    ];
    for (const [name, body, err] of cases) assert.deepEqual(await send(r, body), [400, err], name);
    assert.equal(r.revocations.size, 0);
  });

  test('SSF verification and unknown events are accepted (202) and change nothing', async () => {
    const r = receiver();
    assert.deepEqual(await send(r, await signed(claims({ format: 'opaque', id: 'stream' }, { events: { [VERIFICATION]: { state: 'x' } } }))), [202, undefined]);
    // mandate's own `refused` event (docs/ssf.md#refusals) names a session too: it revokes nothing.
    const refused = { 'urn:x-mandate:secevent:event-type:refused': { event_timestamp: T, initiating_entity: 'policy', policies: ['p'] } };
    assert.deepEqual(await send(r, await signed(claims(SESSION, { events: refused }))), [202, undefined]);
    assert.deepEqual(await send(r, await signed(claims(SESSION, { events: { 'https://example.com/unknown': {} } }))), [202, undefined]);
    assert.equal(r.revocations.size, 0);
  });

  test('each subject revokes what it names (session or jti; iss_sub through act chains; application), by event time', async () => {
    const r = receiver();
    await send(r, await signed(claims(SESSION)));
    await send(r, await signed(claims({ format: 'complex', session: { format: 'opaque', id: 'jti-9' } })));
    await send(r, await signed(claims({ format: 'iss_sub', iss: issuer, sub: 'agent:helper' })));
    await send(r, await signed(claims({ format: 'complex', application: { format: 'opaque', id: 'app-1' } })));
    const token = (c: Record<string, unknown> = {}) => ({ sub: 'bob', client_id: 'c0', iat: T - 10, jti: randomBytes(4).toString('hex'), ...c });
    const revoked = (c: Record<string, unknown>) => r.revocations.revoked(token(c)) !== undefined;
    assert.ok(revoked({ sid: 'sid-1' }) && !revoked({ sid: 'sid-2' }));
    assert.ok(revoked({ jti: 'jti-9' }));
    assert.ok(revoked({ act: { sub: 'agent:bot', act: { sub: 'agent:helper' } } }));
    assert.ok(revoked({ sub: 'agent:helper' }));
    assert.ok(revoked({ act: { sub: 'agent:helper' }, iat: T + 5 }), 'issued within CLOCK_SKEW_SECONDS');
    assert.ok(!revoked({ act: { sub: 'agent:helper' }, iat: T + 6 }));
    assert.ok(!revoked({ act: { sub: 'agent:other' } }));
    assert.ok(revoked({ client_id: 'app-1' }) && !revoked({ client_id: 'app-1', iat: T + 6 }));
    assert.ok(!revoked({}));
  });
});

// --- the bounds ---------------------------------------------------------------------------------

describe('RevocationList bounds', () => {
  test('full: the oldest is evicted and every token issued by its event time is refused (watermark), until retention passes', () => {
    let now = 1_000_000;
    const rl = new RevocationList({ retentionSeconds: 600, maxEntries: 2, now: () => now });
    rl.add('session', 's1', 100);
    rl.add('session', 's2', 200);
    assert.equal(rl.watermark, undefined);
    rl.add('session', 's3', 300);
    assert.equal(rl.size, 2);
    assert.equal(rl.evicted, 1);
    assert.equal(rl.watermark, 100);
    assert.ok(rl.revoked({ sid: 's1', iat: 90 }));
    assert.ok(rl.revoked({ sid: 'zz', iat: 100 }));
    assert.ok(rl.revoked({ sid: 'zz' }), 'no iat: fail closed');
    assert.ok(rl.revoked({ sid: 'zz', iat: 105 }), 'issued within CLOCK_SKEW_SECONDS of it');
    assert.ok(!rl.revoked({ sid: 'zz', iat: 106 }));
    assert.ok(rl.revoked({ sid: 's3', iat: 250 }));
    now += 601_000;
    assert.equal(rl.watermark, undefined);
    assert.equal(rl.size, 0);
    assert.ok(!rl.revoked({ sid: 's3', iat: 250 }));
  });

  test('an entry is forgotten after retention; the same one added again keeps the later event time', () => {
    let now = 0;
    const rl = new RevocationList({ retentionSeconds: 60, maxEntries: 10, now: () => now });
    rl.add('subject', 'alice', 100);
    now += 30_000;
    rl.add('subject', 'alice', 50);
    assert.equal(rl.size, 1);
    assert.ok(rl.revoked({ sub: 'alice', iat: 105 }) && !rl.revoked({ sub: 'alice', iat: 106 }));
    now += 59_000;
    assert.equal(rl.size, 1);
    now += 2_000;
    assert.equal(rl.size, 0);
    assert.throws(() => new RevocationList({ retentionSeconds: 0 }));
  });

  test('the receiver never shows its credential and needs one', () => {
    const v = new Verifier({ issuer: 'https://as.test', audience: 'orders-api' });
    const r = v.ssfReceiver({ authorization: 'Bearer sekrit-value' });
    assert.ok(!String(r).includes('sekrit'));
    assert.ok(!JSON.stringify(r).includes('sekrit'));
    assert.throws(() => v.ssfReceiver({ authorization: ' ' }));
    // RFC 7235 §4.1: the challenge to a wrong credential is fixed, even for a configured value
    // that is a bare secret with no scheme.
    const bare = v.ssfReceiver({ authorization: 'sekrit-value' });
    const refused = bare.checkRequest('Bearer guess', 'application/secevent+jwt');
    assert.equal(refused?.status, 401);
    assert.ok(!JSON.stringify(refused?.headers).includes('sekrit'), JSON.stringify(refused?.headers));
  });
});
