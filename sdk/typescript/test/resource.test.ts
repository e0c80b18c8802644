// The resource-server side against a real mandate: the Verifier in both modes (RFC 9068 JWT
// with the JWKS, RFC 7662 introspection) behind the Hono and the Express middleware, with
// tokens mandate issued, forged ones, ones for another audience, missing and malformed ones,
// insufficient scope (RFC 6750 §3), RFC 9728 metadata, the introspection cache, and a JWKS
// key rotation.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { DelegatedToken, MandateClient } from '@mandate/sdk';
import { TokenError, Verifier, metadataUrlFor } from '@mandate/sdk/resource';
import { PASSWORD, freePort, startMandate, type Mandate } from './harness.ts';
import { SCOPES_SUPPORTED, startExpress, startHono, verifiers, type ResourceServer } from './servers.ts';

let m: Mandate;
let servers: ResourceServer[] = [];
let alice: string;
void PASSWORD;

before(async () => {
  const [honoPort, expressPort] = [await freePort(), await freePort()];
  const resourceToml = (port: number, id: string) => `
[[resources]]
uri = "http://127.0.0.1:${port}/api"
name = "Orders (${id})"
scopes = ["orders:read", "orders:write"]

[[clients]]
client_id = "${id}"
client_secret = "${id}-secret"
introspect = true
audience = "http://127.0.0.1:${port}/api"
`;
  m = await startMandate({
    extra: `${resourceToml(honoPort, 'hono-rs')}${resourceToml(expressPort, 'express-rs')}
[keys]
check_interval = "1s"
`,
  });
  alice = await m.humanToken();
  servers = [
    await startHono(honoPort, (r) => verifiers(m.issuer, r, { clientId: 'hono-rs', clientSecret: 'hono-rs-secret' })),
    await startExpress(expressPort, (r) => verifiers(m.issuer, r, { clientId: 'express-rs', clientSecret: 'express-rs-secret' })),
  ];
});
after(async () => {
  for (const s of servers) await s.close();
  await m?.stop();
});

/** alice → planner → payments-bot, for `resource` with `scope`. */
async function chainToken(resource: string, scope = 'orders:read'): Promise<DelegatedToken> {
  const planner = m.session('planner');
  const mine = await planner.actFor(alice, { scope: 'orders:read orders:write', resource });
  return planner.delegate(mine, await m.session('payments-bot').token(), { scope });
}

function challengeOf(resp: Response) {
  const www = resp.headers.get('www-authenticate') ?? '';
  const params = Object.fromEntries([...www.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
  return { www, params };
}

async function forged(real: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  const kid = decodeProtectedHeader(real).kid;
  return new SignJWT(decodeJwt(real)).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid }).sign(privateKey);
}

function algNone(real: string): string {
  const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt' }));
  return `${header}.${real.split('.')[1]}.`;
}

for (const framework of ['hono', 'express'] as const) {
  for (const mode of ['jwt', 'introspection'] as const) {
    describe(`${framework} middleware, ${mode} verifier`, () => {
      const rs = () => servers.find((s) => s.framework === framework)!;
      const call = (token: string | undefined, init: RequestInit & { path?: string; authorization?: string } = {}) => {
        const headers = new Headers(init.headers);
        if (init.authorization !== undefined) headers.set('authorization', init.authorization);
        else if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
        return fetch(`${rs().url}/api/${mode}${init.path ?? '/orders'}`, { ...init, headers });
      };

      test('a token mandate issued for this resource: 200, the handler gets the principal (human, chain, session, attestation)', async () => {
        const t = await chainToken(rs().resource);
        const resp = await call(t.accessToken);
        assert.equal(resp.status, 200);
        const body = (await resp.json()) as Record<string, unknown>;
        assert.equal(body.subject, 'alice');
        assert.equal(body.chain, 'alice → planner → payments-bot');
        assert.equal(body.agent, 'payments-bot');
        assert.equal(body.sessionId, t.sessionId);
        assert.deepEqual(body.scopes, ['orders:read']);
        assert.deepEqual(body.audience, [rs().resource]);
        assert.equal(body.attestation, 'software'); // mandate's `att`: how payments-bot proved itself
        assert.deepEqual((body.actors as { subject: string }[]).map((a) => a.subject), ['agent:planner', 'agent:payments-bot']);
        const who = await call(t.accessToken, { path: '/whoami' });
        assert.equal(await who.text(), 'alice → planner → payments-bot');
      });

      test('alice\'s own token (no act claim): the principal has no agent', async () => {
        const resp = await call(alice);
        assert.equal(resp.status, 200);
        const body = (await resp.json()) as Record<string, unknown>;
        assert.equal(body.subject, 'alice');
        assert.equal(body.agent, undefined);
        assert.deepEqual(body.actors, []);
        assert.equal(body.chain, 'alice');
      });

      test('RFC 6750 §3.1: no token is 401 with a Bearer challenge without an error attribute, and resource_metadata (RFC 9728 §5.1)', async () => {
        const resp = await call(undefined);
        assert.equal(resp.status, 401);
        const { www, params } = challengeOf(resp);
        assert.match(www, /^Bearer /);
        assert.equal(params.error, undefined);
        assert.equal(params.realm, 'orders');
        assert.equal(params.resource_metadata, metadataUrlFor(rs().resource));
        assert.equal(((await resp.json()) as { error?: string }).error, undefined);
      });

      test('RFC 6750 §3.1: a malformed Authorization header is 400 invalid_request', async () => {
        const resp = await call(undefined, { authorization: 'Bearer two tokens' });
        assert.equal(resp.status, 400);
        assert.equal(challengeOf(resp).params.error, 'invalid_request');
      });

      test('RFC 6750 §3.1: insufficient scope is 403 insufficient_scope naming the scope needed', async () => {
        const t = await chainToken(rs().resource, 'orders:read');
        const resp = await call(t.accessToken, { method: 'POST' });
        assert.equal(resp.status, 403);
        const { params } = challengeOf(resp);
        assert.equal(params.error, 'insufficient_scope');
        assert.equal(params.scope, 'orders:write');
        const ok = await call((await chainToken(rs().resource, 'orders:write')).accessToken, { method: 'POST' });
        assert.equal(ok.status, 200);
      });

      test('RFC 8707 / RFC 9068 §4: a token for another audience is 401 invalid_token', async () => {
        const t = await m.session('planner').actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
        const resp = await call(t.accessToken);
        assert.equal(resp.status, 401);
        const { params } = challengeOf(resp);
        assert.equal(params.error, 'invalid_token');
        assert.ok(params.error_description);
      });

      test('RFC 9068 §4: a forged token (same claims and kid, another key) is 401 invalid_token', async () => {
        const t = await chainToken(rs().resource);
        const resp = await call(await forged(t.accessToken));
        assert.equal(resp.status, 401);
        assert.equal(challengeOf(resp).params.error, 'invalid_token');
      });

      test('RFC 8725 §3.1: an unsigned token (alg none) is 401 invalid_token', async () => {
        const t = await chainToken(rs().resource);
        const resp = await call(algNone(t.accessToken));
        assert.equal(resp.status, 401);
        assert.equal(challengeOf(resp).params.error, 'invalid_token');
      });

      test('RFC 9068 §4: mandate\'s own agent token (signed by mandate, typ JWT, not an access token) is 401 invalid_token', async () => {
        const resp = await call(await m.session('planner').token());
        assert.equal(resp.status, 401);
        const { params } = challengeOf(resp);
        assert.equal(params.error, 'invalid_token');
        if (mode === 'jwt') assert.match(params.error_description ?? '', /typ/);
      });

      test('a token that is not a JWT at all is 401 invalid_token', async () => {
        const resp = await call('not-a-token');
        assert.equal(resp.status, 401);
        assert.equal(challengeOf(resp).params.error, 'invalid_token');
      });
    });
  }

  test(`${framework}: RFC 9728 §3.1: the metadata is served at /.well-known/oauth-protected-resource/api and names mandate`, async () => {
    const rs = servers.find((s) => s.framework === framework)!;
    const resp = await fetch(metadataUrlFor(rs.resource));
    assert.equal(resp.status, 200);
    assert.deepEqual(await resp.json(), {
      resource: rs.resource,
      authorization_servers: [m.issuer],
      bearer_methods_supported: ['header'],
      scopes_supported: SCOPES_SUPPORTED,
      resource_name: 'Orders',
      // RFC 9728 §2 / RFC 9449: the DPoP proof algorithms the Verifier accepts.
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'],
    });
  });
}

describe('Verifier', () => {
  test('RFC 9068 §4: typ must be at+jwt: mandate\'s own agent token (typ JWT, iss and aud right) is refused', async () => {
    const agentToken = await m.session('planner').token();
    assert.equal(decodeProtectedHeader(agentToken).typ, 'JWT');
    assert.equal(decodeJwt(agentToken).aud, m.issuer);
    const v = new Verifier({ issuer: m.issuer, audience: m.issuer });
    const e = await v.verify(agentToken).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof TokenError);
    assert.equal(e.code, 'invalid_token');
    assert.match(e.description ?? '', /typ/);
  });

  test('RFC 9068 §4: a token from another issuer is refused', async () => {
    const rs = servers[0]!;
    const t = await chainToken(rs.resource);
    const v = new Verifier({ issuer: m.issuer, audience: rs.resource });
    assert.ok(await v.verify(t.accessToken));
    const wrongIss = await new SignJWT({ ...decodeJwt(t.accessToken), iss: 'https://evil.example' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: decodeProtectedHeader(t.accessToken).kid })
      .sign((await generateKeyPair('ES256')).privateKey);
    await assert.rejects(v.verify(wrongIss), (e: unknown) => e instanceof TokenError && e.code === 'invalid_token');
  });

  test('RFC 7662 §4: introspection refuses a revoked token; an active answer is cached at most introspectionCacheSeconds', async () => {
    const rs = servers[0]!;
    const v = new Verifier({ issuer: m.issuer, audience: rs.resource, mode: 'introspection', clientId: 'hono-rs', clientSecret: 'hono-rs-secret', introspectionCacheSeconds: 3 });
    const planner = m.session('planner');
    const t = await chainToken(rs.resource);
    const t0 = Date.now();
    assert.equal((await v.verify(t.accessToken)).subject, 'alice');
    await planner.revoke(t);
    // Within the cache time the answer is the cached one (checked only if the revocation was
    // quick enough on a loaded machine); after it, mandate says inactive.
    if (Date.now() - t0 < 2500) assert.equal((await v.verify(t.accessToken)).subject, 'alice');
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 3100 - Date.now())));
    await assert.rejects(v.verify(t.accessToken), (e: unknown) => e instanceof TokenError && e.description === 'the token is not active');
    // A token revoked before its first use is refused at once.
    const u = await chainToken(rs.resource);
    await planner.revoke(u);
    await assert.rejects(v.verify(u.accessToken), TokenError);
  });

  test('key rotation: a token signed by a key the cached JWKS does not hold makes the verifier fetch the JWKS again (RFC 7517, RFC 8414 jwks_uri)', async () => {
    const rs = servers[0]!;
    const v = new Verifier({ issuer: m.issuer, audience: rs.resource, jwksCooldownSeconds: 0.5 });
    // The default: an unknown kid fetches the JWKS again at most once per 30 s.
    const patient = new Verifier({ issuer: m.issuer, audience: rs.resource });
    const before = await chainToken(rs.resource);
    await v.verify(before.accessToken);
    await patient.verify(before.accessToken);
    const oldKid = decodeProtectedHeader(before.accessToken).kid;
    const jwksUri = (await m.client().metadata()).jwks_uri!;
    const kidsBefore = ((await (await fetch(jwksUri)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    // Rotate twice: the signing key is then one that was not yet published when the verifier
    // fetched the JWKS (mandate publishes only the next key ahead).
    const bin = process.env.MANDATE_BIN || '/work/bin/mandate';
    const config = path.join(m.dir, 'mandate.toml');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_')));
    for (let i = 0; i < 2; i++) await promisify(execFile)(bin, ['keys', 'rotate', '--config', config], { env });
    // The server may pick up the first rotation before the second one: wait for a key that
    // was not in the JWKS before (not just any key other than the old one).
    let after: DelegatedToken | undefined;
    for (let i = 0; i < 40; i++) {
      const t = await chainToken(rs.resource);
      if (!kidsBefore.includes(decodeProtectedHeader(t.accessToken).kid!)) {
        after = t;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(after, 'within 10 s of `mandate keys rotate` (twice), mandate signs with a key the verifier never saw');
    assert.notEqual(decodeProtectedHeader(after.accessToken).kid, oldKid);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await v.verify(after.accessToken)).subject, 'alice');
    // Within 30 s of its last fetch the default verifier does not fetch again: the new key is unknown to it.
    await assert.rejects(patient.verify(after.accessToken), (e: unknown) => e instanceof TokenError && /not signed by a key of the issuer/.test(e.description ?? ''));
    // The old key is still published for tokens signed before the rotation.
    assert.equal((await v.verify(before.accessToken)).subject, 'alice');
  });

  test('RFC 9728 §2: the metadata needs the resource URL; a verifier with only an audience name refuses to serve it', async () => {
    const v = new Verifier({ issuer: m.issuer, audience: 'orders-api' });
    assert.throws(() => v.metadata(), /resource/);
    const hono = await import('@mandate/sdk/hono');
    const exp = await import('@mandate/sdk/express');
    assert.throws(() => hono.protectedResourceMetadata(v), /resource/);
    assert.throws(() => exp.protectedResourceMetadata(v), /resource/);
    const named = new Verifier({ issuer: m.issuer, audience: 'orders-api', resource: 'https://api.example/orders' });
    assert.equal(named.metadata().resource, 'https://api.example/orders');
    assert.equal(named.metadataPath, '/.well-known/oauth-protected-resource/orders');
    assert.equal(named.challenge(new TokenError(401, undefined)), 'Bearer resource_metadata="https://api.example/.well-known/oauth-protected-resource/orders"');
  });

  test('refuses an introspection config without credentials', () => {
    assert.throws(() => new Verifier({ issuer: m.issuer, audience: 'x', mode: 'introspection' }), /clientId/);
  });

  test('mandate unreachable, or refusing the introspection credentials: 503 with Retry-After, never invalid_token (RFC 9110 §10.2.3)', async () => {
    // The token may be fine: calling it invalid would make a client throw it away and ask the
    // same unreachable server for another.
    const rs = servers[0]!;
    const t = await chainToken(rs.resource);
    const nowhere = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const cases = [
      new Verifier({ issuer: m.issuer, audience: rs.resource, mode: 'introspection', clientId: 'hono-rs', clientSecret: 'nope' }),
      new Verifier({ issuer: nowhere, audience: rs.resource }),
      new Verifier({ issuer: nowhere, audience: rs.resource, mode: 'introspection', clientId: 'hono-rs', clientSecret: 'x' }),
    ];
    const { Hono } = await import('hono');
    const { requireToken: honoRequire } = await import('@mandate/sdk/hono');
    const express = (await import('express')).default;
    const { requireToken: expressRequire } = await import('@mandate/sdk/express');
    for (const v of cases) {
      await assert.rejects(v.verify(t.accessToken), (e: unknown) => e instanceof TokenError && e.status === 503 && e.code === 'temporarily_unavailable');
      const app = new Hono();
      app.get('/x', honoRequire(v), (c) => c.text('reached'));
      const viaHono = await app.request('/x', { headers: { authorization: `Bearer ${t.accessToken}` } });
      const e = express();
      e.get('/x', expressRequire(v), (_req, res) => void res.send('reached'));
      const server = e.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const port = (server.address() as { port: number }).port;
      const viaExpress = await fetch(`http://127.0.0.1:${port}/x`, { headers: { authorization: `Bearer ${t.accessToken}` } });
      server.close();
      for (const resp of [viaHono, viaExpress]) {
        assert.equal(resp.status, 503, String(v));
        assert.equal(resp.headers.get('retry-after'), '5');
        assert.equal(resp.headers.get('www-authenticate'), null, 'no challenge: the token was not judged');
        assert.ok(!(await resp.text()).includes(t.accessToken));
      }
    }
    void MandateClient;
  });
});
