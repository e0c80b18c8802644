// DPoP (RFC 9449) through the SDK against a real mandate: agents with their own keys get tokens
// bound to them hop by hop (human → planner → payments-bot, CIBA), call resource servers with
// fresh proofs (delegatedFetch), and the SDK's Verifier behind Hono and Express accepts the
// sub-agent's call and refuses the same token without its key: as Bearer, without a proof, with
// a proof by another key, for another URL or method, replayed, stale, for another token. Also
// mandate's nonces (RFC 9449 §8), answered once by the SDK.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { Hono } from 'hono';
import { SignJWT, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose';
import {
  AgentSession,
  DelegatedToken,
  DelegatedTokenSource,
  DpopKey,
  MandateClient,
  MandateError,
  OAuthError,
  athOf,
  delegatedFetch,
} from '@mandate/sdk';
import { Verifier } from '@mandate/sdk/resource';
import * as honoMw from '@mandate/sdk/hono';
import { answerApproval } from './browser.ts';
import { CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, freePort, startMandate, type Mandate } from './harness.ts';
import { startExpress, startHono, verifiers, type ResourceServer } from './servers.ts';

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

/** A P-256 key pair whose private half never leaves WebCrypto. */
function keyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

async function thumbprint(kp: CryptoKeyPair): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(kp.publicKey), 'sha256');
}

/** A proof signed by hand (to break one rule at a time): RFC 9449 §4.2 claims, overridable. */
async function handProof(kp: CryptoKeyPair, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const { kty, crv, x, y } = await exportJWK(kp.publicKey);
  return new SignJWT({ jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty, crv, x, y }, ...header })
    .sign(kp.privateKey);
}

function challengeOf(resp: Response) {
  const www = resp.headers.get('www-authenticate') ?? '';
  const params = Object.fromEntries([...www.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
  return { www, params };
}

/** A 401 with a DPoP challenge (RFC 9449 §7.1) naming `error` and the accepted algorithms. */
async function assertDpopRefusal(resp: Response, error: 'invalid_token' | 'invalid_dpop_proof', why: string) {
  const { www, params } = challengeOf(resp);
  assert.equal(resp.status, 401, `${why}: status ${resp.status}, ${www}`);
  assert.match(www, /^DPoP /, why);
  assert.equal(params.error, error, `${why}: ${www}`);
  assert.ok(params.algs?.split(' ').includes('ES256'), `${why}: algs in ${www}`);
  assert.equal(((await resp.json()) as { error?: string }).error, error, why);
}

let m: Mandate;
let alice: string;
let hono: ResourceServer;
let express: ResourceServer;
let plannerKp: CryptoKeyPair;
let botKp: CryptoKeyPair;
let planner: AgentSession;
let bot: AgentSession;

before(async () => {
  const [honoPort, expressPort] = [await freePort(), await freePort()];
  m = await startMandate({ extra: `${resourceToml(honoPort, 'hono-rs')}${resourceToml(expressPort, 'express-rs')}` });
  alice = await m.humanToken();
  hono = await startHono(honoPort, (r) => verifiers(m.issuer, r, { clientId: 'hono-rs', clientSecret: 'hono-rs-secret' }));
  express = await startExpress(expressPort, (r) => verifiers(m.issuer, r, { clientId: 'express-rs', clientSecret: 'express-rs-secret' }));
  [plannerKp, botKp] = [await keyPair(), await keyPair()];
  planner = new AgentSession(m.client(), 'planner', m.keys.planner!, { dpop: plannerKp });
  bot = new AgentSession(m.client(), 'payments-bot', m.keys['payments-bot']!, { dpop: botKp });
});
after(async () => {
  await hono?.close();
  await express?.close();
  await m?.stop();
});

/** alice → planner → payments-bot for `resource`: the planner's token and the bot's. */
async function chain(resource: string, scope = 'orders:read'): Promise<{ mine: DelegatedToken; sub: DelegatedToken }> {
  const mine = await planner.actFor(alice, { scope: 'orders:read orders:write', resource });
  const sub = await planner.delegate(mine, bot, { scope });
  return { mine, sub };
}

describe('agent side: each hop is bound to its own key', () => {
  test('RFC 9449 §6.1 via /attest: the agent token carries cnf.jkt of the session\'s DPoP key', async () => {
    const token = await planner.token();
    assert.deepEqual(decodeJwt(token).cnf, { jkt: await thumbprint(plannerKp) });
    assert.equal(await (await planner.dpopKey())!.jkt(), await thumbprint(plannerKp));
    // A session without DPoP keeps unbound tokens (binding is opt-in, RFC 9449 §5).
    assert.equal(decodeJwt(await m.session('auditor').token()).cnf, undefined);
  });

  test('RFC 9449 §5, §6.1: human → planner → payments-bot: each token is DPoP, bound to the key of the agent that acts with it', async () => {
    const { mine, sub } = await chain(hono.resource);
    const [pj, bj] = [await thumbprint(plannerKp), await thumbprint(botKp)];
    assert.notEqual(pj, bj);
    assert.equal(mine.tokenType, 'dpop');
    assert.ok(mine.dpopBound);
    assert.equal(mine.jkt, pj);
    assert.deepEqual(decodeJwt(mine.accessToken).cnf, { jkt: pj });
    assert.equal(sub.chain.toString(), 'alice → planner → payments-bot');
    assert.equal(sub.tokenType, 'dpop');
    assert.equal(sub.jkt, bj, 'the sub-agent\'s token is bound to the sub-agent\'s own key, not the planner\'s');
    assert.deepEqual(decodeJwt(sub.accessToken).cnf, { jkt: bj });
    assert.equal(await sub.dpopKey!.jkt(), bj);
    // RFC 9449 §6.2: introspection says so too.
    const info = await new MandateClient(m.issuer, 'hono-rs', 'hono-rs-secret').introspect(sub.accessToken);
    assert.equal(info.token_type, 'DPoP');
    assert.deepEqual(info.cnf, { jkt: bj });
    // The key and the token stay out of logs.
    for (const shown of [inspect(sub), String(sub), JSON.stringify(sub), inspect(sub.dpopKey)]) {
      assert.ok(!shown.includes(sub.accessToken));
      assert.ok(!shown.includes('"d"'));
    }
  });

  test('RFC 9449 §4.3 / mandate chain rule: a bound sub-agent token with another key\'s proof is refused (invalid_grant); without its key the SDK refuses to try', async () => {
    const mine = await planner.actFor(alice, { scope: 'orders:read', resource: hono.resource });
    const botToken = await bot.token();
    const e = await planner.delegate(mine, botToken, { dpop: plannerKp }).then(() => assert.fail('accepted'), (x: unknown) => x);
    assert.ok(e instanceof OAuthError, String(e));
    assert.equal(e.error, 'invalid_grant');
    await assert.rejects(planner.delegate(mine, botToken), /DPoP-bound: pass the sub-agent's key/);
    // With the sub-agent's own key (given as a key pair) the same exchange works.
    const sub = await planner.delegate(mine, botToken, { dpop: botKp });
    assert.equal(sub.jkt, await thumbprint(botKp));
  });

  test('RFC 9449 §6.1 with CIBA: /bc-authorize and the polls are signed by the planner\'s key; the approved token is bound to it', async () => {
    const req = await planner.requestApproval(alice, { scope: 'orders:write', resource: hono.resource, bindingMessage: 'DPoP order 42' });
    const [token] = await Promise.all([
      planner.waitForApproval(req, { timeoutMs: 20_000 }),
      answerApproval(m.issuer, { username: USER, password: PASSWORD, bindingMessage: 'DPoP order 42', decision: 'Approve' }),
    ]);
    assert.equal(token.tokenType, 'dpop');
    assert.equal(token.jkt, await thumbprint(plannerKp));
    // …and it works at the resource server with the planner's proofs.
    const resp = await delegatedFetch(new DelegatedTokenSource(async () => token))(`${hono.url}/api/jwt/orders`, { method: 'POST' });
    assert.equal(resp.status, 200, await resp.clone().text());
  });
});

describe('resource side: the sub-agent\'s call is accepted with its proof, the copied token is not', () => {
  let sub: DelegatedToken;
  let mine: DelegatedToken;
  before(async () => {
    ({ mine, sub } = await chain(hono.resource, 'orders:read orders:write'));
  });

  for (const mode of ['jwt', 'introspection'] as const) {
    const url = () => `${hono.url}/api/${mode}/orders`;
    const send = (headers: Record<string, string>, method = 'GET') => fetch(url(), { method, headers });

    test(`${mode}: RFC 9449 §7.1: delegatedFetch sends "Authorization: DPoP" and a fresh proof (htm, htu, ath, jwk of the bot's key); Hono accepts GET and POST`, async () => {
      const seen: Request[] = [];
      const spy: typeof fetch = async (input, init) => {
        const r = new Request(input, init);
        seen.push(r.clone());
        return fetch(r);
      };
      const f = delegatedFetch(new DelegatedTokenSource(async () => sub), { fetch: spy });
      const got = await f(`${url()}?page=2`);
      assert.equal(got.status, 200, await got.clone().text());
      const body = (await got.json()) as Record<string, unknown>;
      assert.equal(body.chain, 'alice → planner → payments-bot');
      assert.equal(body.jkt, await thumbprint(botKp));
      const posted = await f(url(), { method: 'POST', body: '{}' });
      assert.equal(posted.status, 200);

      const [a, b] = seen;
      assert.equal(a!.headers.get('authorization'), `DPoP ${sub.accessToken}`);
      const proof = a!.headers.get('dpop')!;
      const h = decodeProtectedHeader(proof);
      assert.equal(h.typ, 'dpop+jwt');
      assert.equal(h.alg, 'ES256');
      assert.equal(await calculateJwkThumbprint(h.jwk!, 'sha256'), await thumbprint(botKp));
      const c = decodeJwt(proof);
      assert.equal(c.htm, 'GET');
      assert.equal(c.htu, url(), 'htu without the query (RFC 9449 §4.2)');
      assert.equal(c.ath, await athOf(sub.accessToken));
      assert.equal(decodeJwt(b!.headers.get('dpop')!).htm, 'POST');
      assert.notEqual(decodeJwt(b!.headers.get('dpop')!).jti, c.jti, 'a fresh proof per request');
    });

    test(`${mode}: RFC 9449 §7.1: the bound token copied and sent as Bearer is refused (401 invalid_token, DPoP challenge)`, async () => {
      await assertDpopRefusal(await send({ authorization: `Bearer ${sub.accessToken}` }), 'invalid_token', 'as Bearer');
    });

    test(`${mode}: RFC 9449 §7.1: DPoP scheme without a proof is refused (invalid_token)`, async () => {
      await assertDpopRefusal(await send({ authorization: `DPoP ${sub.accessToken}` }), 'invalid_token', 'no proof');
    });

    test(`${mode}: RFC 9449 §4.3 item 12, §6.1: a well-formed proof by another key is refused (invalid_token: not the key of cnf.jkt)`, async () => {
      const thief = await DpopKey.generate();
      const proof = await thief.proof({ method: 'GET', url: url(), accessToken: sub.accessToken });
      await assertDpopRefusal(await send({ authorization: `DPoP ${sub.accessToken}`, dpop: proof }), 'invalid_token', 'another key');
      // The planner's key is "another key" too: the bot's token is not the planner's.
      const plannerProof = await handProof(plannerKp, { htm: 'GET', htu: url(), ath: await athOf(sub.accessToken) });
      await assertDpopRefusal(await send({ authorization: `DPoP ${sub.accessToken}`, dpop: plannerProof }), 'invalid_token', 'planner key');
    });

    test(`${mode}: RFC 9449 §4.3 items 8-9: a proof for another URL or another method is refused (invalid_dpop_proof)`, async () => {
      const ath = await athOf(sub.accessToken);
      const auth = `DPoP ${sub.accessToken}`;
      const otherUrl = await handProof(botKp, { htm: 'GET', htu: `${hono.url}/api/${mode}/whoami`, ath });
      await assertDpopRefusal(await send({ authorization: auth, dpop: otherUrl }), 'invalid_dpop_proof', 'other path');
      const otherHost = await handProof(botKp, { htm: 'GET', htu: url().replace('127.0.0.1', 'localhost'), ath });
      await assertDpopRefusal(await send({ authorization: auth, dpop: otherHost }), 'invalid_dpop_proof', 'other host');
      const otherMethod = await handProof(botKp, { htm: 'POST', htu: url(), ath });
      await assertDpopRefusal(await send({ authorization: auth, dpop: otherMethod }), 'invalid_dpop_proof', 'POST proof on GET');
      // The control: the same hand-made proof for the right method and URL passes.
      const right = await handProof(botKp, { htm: 'GET', htu: url(), ath });
      assert.equal((await send({ authorization: auth, dpop: right })).status, 200);
    });

    test(`${mode}: RFC 9449 §11.1, §4.3 item 11: a replayed proof is refused (invalid_dpop_proof)`, async () => {
      const headers = await sub.authorizationHeaders('GET', url());
      assert.equal((await send(headers)).status, 200);
      await assertDpopRefusal(await send(headers), 'invalid_dpop_proof', 'replay');
    });

    test(`${mode}: RFC 9449 §4.3 item 12: a proof whose ath is another token's hash is refused (invalid_dpop_proof)`, async () => {
      const wrongAth = await handProof(botKp, { htm: 'GET', htu: url(), ath: await athOf(mine.accessToken) });
      await assertDpopRefusal(await send({ authorization: `DPoP ${sub.accessToken}`, dpop: wrongAth }), 'invalid_dpop_proof', 'wrong ath');
      const noAth = await handProof(botKp, { htm: 'GET', htu: url() });
      await assertDpopRefusal(await send({ authorization: `DPoP ${sub.accessToken}`, dpop: noAth }), 'invalid_dpop_proof', 'no ath');
    });

    test(`${mode}: RFC 9449 §4.3 items 1-7, 10: malformed, two proofs, wrong typ, private jwk, unsupported alg, stale or future iat are refused (invalid_dpop_proof)`, async () => {
      const ath = await athOf(sub.accessToken);
      const auth = `DPoP ${sub.accessToken}`;
      const good = { htm: 'GET', htu: url(), ath };
      const now = Math.floor(Date.now() / 1000);
      await assertDpopRefusal(await send({ authorization: auth, dpop: 'not-a-jwt' }), 'invalid_dpop_proof', 'not a JWT');
      const h = new Headers({ authorization: auth });
      h.append('dpop', await handProof(botKp, good));
      h.append('dpop', await handProof(botKp, good));
      await assertDpopRefusal(await fetch(url(), { headers: h }), 'invalid_dpop_proof', 'two DPoP headers');
      await assertDpopRefusal(await send({ authorization: auth, dpop: await handProof(botKp, good, { typ: 'JWT' }) }), 'invalid_dpop_proof', 'typ JWT');
      const extractable = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
      const priv = await exportJWK(extractable.privateKey);
      await assertDpopRefusal(
        await send({ authorization: auth, dpop: await handProof(extractable, good, { jwk: priv }) }),
        'invalid_dpop_proof',
        'private jwk',
      );
      const hs = await new SignJWT({ ...good, jti: 'x', iat: now }).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'AAAA' } as never }).sign(new Uint8Array(32));
      await assertDpopRefusal(await send({ authorization: auth, dpop: hs }), 'invalid_dpop_proof', 'HS256');
      await assertDpopRefusal(await send({ authorization: auth, dpop: await handProof(botKp, { ...good, iat: now - 300 }) }), 'invalid_dpop_proof', 'stale');
      await assertDpopRefusal(await send({ authorization: auth, dpop: await handProof(botKp, { ...good, iat: now + 300 }) }), 'invalid_dpop_proof', 'future');
      await assertDpopRefusal(await send({ authorization: auth, dpop: await handProof(botKp, { ...good, jti: undefined }) }), 'invalid_dpop_proof', 'no jti');
    });

    test(`${mode}: RFC 9449 §7.2: an unbound token keeps working as Bearer, and is refused with the DPoP scheme`, async () => {
      const unbound = await m.session('auditor').actFor(alice, { scope: 'orders:read', resource: hono.resource });
      assert.equal(unbound.dpopBound, false);
      assert.equal((await send({ authorization: `Bearer ${unbound.accessToken}` })).status, 200);
      const proof = await handProof(botKp, { htm: 'GET', htu: url(), ath: await athOf(unbound.accessToken) });
      await assertDpopRefusal(await send({ authorization: `DPoP ${unbound.accessToken}`, dpop: proof }), 'invalid_token', 'unbound as DPoP');
    });

    test(`${mode}: RFC 6750 §3.1 under DPoP: missing scope is 403 insufficient_scope with a DPoP challenge`, async () => {
      const readOnly = (await chain(hono.resource, 'orders:read')).sub;
      const resp = await delegatedFetch(new DelegatedTokenSource(async () => readOnly))(url(), { method: 'POST' });
      const { www, params } = challengeOf(resp);
      assert.equal(resp.status, 403, www);
      assert.match(www, /^DPoP /);
      assert.equal(params.error, 'insufficient_scope');
    });
  }

  test('Express: RFC 9449 §7.1: the sub-agent\'s proof is accepted; as Bearer, or with a proof for another URL, it is refused', async () => {
    const { sub: t } = await chain(express.resource);
    const url = `${express.url}/api/jwt/orders`;
    const ok = await delegatedFetch(new DelegatedTokenSource(async () => t))(url);
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(((await ok.json()) as { chain: string }).chain, 'alice → planner → payments-bot');
    await assertDpopRefusal(await fetch(url, { headers: { authorization: `Bearer ${t.accessToken}` } }), 'invalid_token', 'as Bearer');
    const wrong = await t.authorizationHeaders('GET', `${express.url}/api/introspection/orders`);
    await assertDpopRefusal(await fetch(url, { headers: wrong }), 'invalid_dpop_proof', 'other URL');
  });

  test('delegatedFetch answers a resource server\'s use_dpop_nonce once (RFC 9449 §9), and a DPoP invalid_token with a new token (RFC 9449 §7.1)', async () => {
    // A resource server that asks for a nonce first, then refuses the first token it sees.
    const calls: { auth: string; nonce: unknown; ath: unknown }[] = [];
    const rs: typeof fetch = async (input, init) => {
      const r = new Request(input, init);
      const proof = r.headers.get('dpop')!;
      const c = decodeJwt(proof);
      calls.push({ auth: r.headers.get('authorization')!, nonce: c.nonce, ath: c.ath });
      if (c.nonce !== 'rs-nonce-1') {
        return new Response(null, { status: 401, headers: { 'www-authenticate': 'DPoP error="use_dpop_nonce", algs="ES256"', 'dpop-nonce': 'rs-nonce-1' } });
      }
      if (calls.length === 2) return new Response(null, { status: 401, headers: { 'www-authenticate': 'DPoP error="invalid_token", algs="ES256"' } });
      return new Response('ok');
    };
    const fresh = (await chain(hono.resource)).sub;
    let n = 0;
    const source = new DelegatedTokenSource(async () => (n++ === 0 ? sub : fresh));
    const resp = await delegatedFetch(source, { fetch: rs })('https://rs.example/orders');
    assert.equal(await resp.text(), 'ok');
    assert.equal(calls.length, 3);
    assert.equal(calls[0]!.nonce, undefined);
    assert.equal(calls[1]!.nonce, 'rs-nonce-1', 'the retry carries the nonce the resource server asked for');
    assert.equal(calls[1]!.auth, `DPoP ${sub.accessToken}`);
    assert.equal(calls[2]!.auth, `DPoP ${fresh.accessToken}`, 'after invalid_token: a new token');
    assert.equal(calls[2]!.ath, await athOf(fresh.accessToken));
    assert.equal(calls[2]!.nonce, 'rs-nonce-1', 'the same key remembers the nonce for that origin');
    assert.equal(source.exchanges, 2);
  });

  test('RFC 9449 §4.3 item 9 behind a proxy: with externalUrl the proof must name the external URL, not the one the server saw', async () => {
    const external = 'https://orders.example.com/svc';
    const v = new Verifier({ issuer: m.issuer, audience: hono.resource, externalUrl: external });
    const app = new Hono<honoMw.MandateEnv>();
    app.get('/api/orders', honoMw.requireToken(v), (c) => c.text(String(c.var.principal)));
    const viaProxy = await app.request('/api/orders', { headers: await sub.authorizationHeaders('GET', `${external}/api/orders`) });
    assert.equal(viaProxy.status, 200, await viaProxy.clone().text());
    assert.equal(await viaProxy.text(), 'alice → planner → payments-bot');
    const internal = await app.request('/api/orders', { headers: await sub.authorizationHeaders('GET', 'http://localhost/api/orders') });
    await assertDpopRefusal(internal, 'invalid_dpop_proof', 'internal URL');
  });

  test('Verifier.authenticate without the request refuses a bound token (the proof cannot be checked)', async () => {
    const v = hono.verifiers.jwt;
    const e = await v.authenticate(`DPoP ${sub.accessToken}`).then(() => assert.fail('accepted'), (x: unknown) => x);
    assert.ok(e instanceof MandateError);
    assert.equal(e.status, 401);
    assert.match(v.challenge(e as never), /^DPoP .*error="invalid_token"/);
  });
});

describe('RFC 9449 §8: mandate asks for nonces, the SDK answers once', () => {
  let n: Mandate;
  let human: string;
  before(async () => {
    n = await startMandate({ extra: `[dpop]\nrequire_nonce = true\n` });
    human = await n.humanToken();
  });
  after(() => n?.stop());

  test('attest, exchange and delegation with DPoP succeed through use_dpop_nonce retries; the tokens are bound', async () => {
    const seen: { path: string; status: number; nonce: unknown }[] = [];
    const spy: typeof fetch = async (input, init) => {
      const r = new Request(input, init);
      const proof = r.headers.get('dpop');
      const resp = await fetch(r);
      seen.push({ path: new URL(r.url).pathname, status: resp.status, nonce: proof ? decodeJwt(proof).nonce : 'no proof' });
      return resp;
    };
    const client = () => new MandateClient(n.issuer, CLIENT_ID, CLIENT_SECRET, { fetch: spy });
    const p = new AgentSession(client(), 'planner', n.keys.planner!, { dpop: true });
    const b = new AgentSession(client(), 'payments-bot', n.keys['payments-bot']!, { dpop: true });
    const agentToken = await p.token();
    assert.deepEqual(decodeJwt(agentToken).cnf, { jkt: await (await p.dpopKey())!.jkt() });
    const mine = await p.actFor(human, { scope: 'orders:read', audience: 'orders-api' });
    const sub = await p.delegate(mine, b, { scope: 'orders:read' });
    assert.equal(mine.jkt, await (await p.dpopKey())!.jkt());
    assert.equal(sub.jkt, await (await b.dpopKey())!.jkt());
    // Each endpoint first refused the proof without a nonce (400), then took the retry with one.
    // mandate uses up the attestation challenge with the refused /attest, so the SDK asks a
    // fresh one for the retry: two challenges and two /attest per agent (planner, then the bot).
    assert.equal(seen.filter((s) => s.path === '/attest/challenge').length, 4);
    const attest = seen.filter((s) => s.path === '/attest');
    assert.deepEqual(attest.map((s) => s.status), [400, 200, 400, 200]);
    assert.equal(attest[0]?.nonce, undefined);
    assert.equal(typeof attest[1]?.nonce, 'string');
    const token = seen.filter((s) => s.path === '/token');
    assert.ok(token.some((s) => s.status === 400 && s.nonce === undefined), JSON.stringify(token));
    assert.ok(token.every((s) => s.status !== 400 || s.nonce === undefined), `a proof with the server's nonce was refused: ${JSON.stringify(token)}`);
  });

  test('CIBA with nonces: /bc-authorize and the poll carry the server\'s nonce; the approved token is bound to the agent\'s key', async () => {
    const p = new AgentSession(n.client(), 'planner', n.keys.planner!, { dpop: true });
    const req = await p.requestApproval(human, { scope: 'orders:read', audience: 'orders-api', bindingMessage: 'nonce order 7' });
    const [token] = await Promise.all([
      p.waitForApproval(req, { timeoutMs: 20_000 }),
      answerApproval(n.issuer, { username: USER, password: PASSWORD, bindingMessage: 'nonce order 7', decision: 'Approve' }),
    ]);
    assert.equal(token.jkt, await (await p.dpopKey())!.jkt());
  });
});
