// The agent side against a real mandate: attestation, RFC 8693 token exchange and its refusals,
// sub-agent delegation, CIBA approval (approved, denied, slow_down, timeout, cancelled),
// RFC 7009 revocation of a subtree, RFC 7662 introspection, and chains.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import {
  AgentSession,
  ApprovalCancelled,
  ApprovalDenied,
  ApprovalRequest,
  ApprovalTimeout,
  MandateClient,
  MandateError,
  OAuthError,
  SoftwareKey,
  Chain,
  readChain,
  type Attester,
} from '@mandate/sdk';
import { Principal } from '@mandate/sdk/resource';
import { answerApproval } from './browser.ts';
import { CLIENT_ID, CLIENT_SECRET, PASSWORD, RS_ID, RS_SECRET, USER, startMandate, type Mandate } from './harness.ts';

const RESOURCE = 'https://orders.example/api';
let m: Mandate;
let alice: string;

before(async () => {
  m = await startMandate({
    extra: `[[resources]]\nuri = "${RESOURCE}"\nname = "Orders by URL"\n`,
  });
  alice = await m.humanToken();
});
after(() => m?.stop());

/** Asserts that no string of `secrets` appears in what a log would print of `value`. */
function assertHides(value: unknown, secrets: string[]) {
  const shown = [String(value), inspect(value, { depth: 10 }), JSON.stringify(value) ?? '', value instanceof Error ? (value.stack ?? '') : ''].join('\n');
  for (const s of secrets) assert.ok(!shown.includes(s), `printed output shows a secret: ${shown.slice(0, 200)}`);
}

async function refused(p: Promise<unknown>): Promise<MandateError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MandateError, `expected a MandateError, got ${e}`);
    return e;
  }
  assert.fail('expected a refusal');
}

describe('SoftwareKey', () => {
  test('PEM round trip keeps the key; the public JWK is a P-256 {kty, crv, x, y}', async () => {
    const k = await SoftwareKey.generate();
    const again = await SoftwareKey.fromPem(await k.toPem());
    assert.deepEqual(await again.publicJwk(), await k.publicJwk());
    assert.deepEqual(Object.keys(await k.publicJwk()).sort(), ['crv', 'kty', 'x', 'y']);
    assert.equal(String(k), 'SoftwareKey(..)');
    assert.ok(!inspect(k).includes('PRIVATE'));
    await assert.rejects(SoftwareKey.fromPem('not a key'), /not a P-256 private key/);
  });

  test('proof: ES256 JWT, typ JWT, iss = sub = agent, aud = issuer, nonce, exp = iat + 60, unique jti (docs/attestation.md)', async () => {
    const k = await SoftwareKey.generate();
    const [a, b] = [await k.proof('planner', 'https://as.example', 'n1'), await k.proof('planner', 'https://as.example', 'n1')];
    assert.deepEqual(decodeProtectedHeader(a), { alg: 'ES256', typ: 'JWT' });
    const c = decodeJwt(a);
    assert.equal(c.iss, 'planner');
    assert.equal(c.sub, 'planner');
    assert.equal(c.aud, 'https://as.example');
    assert.equal(c.nonce, 'n1');
    assert.equal(c.exp! - c.iat!, 60);
    assert.notEqual(c.jti, decodeJwt(b).jti);
  });
});

describe('Chain', () => {
  test('RFC 8693 §4.1: act nests the newest actor outermost; the chain lists the first agent first; att is the current actor\'s', () => {
    const claims = {
      sub: 'alice',
      att: 'software',
      act: { sub: 'agent:payments-bot', act: { sub: 'agent:planner' } },
      scope: 'orders:read',
      sid: 's1',
    };
    const chain = Chain.fromClaims(claims);
    assert.equal(chain.toString(), 'alice → planner → payments-bot');
    assert.deepEqual(chain.actors.map((a) => a.name), ['planner', 'payments-bot']);
    assert.equal(chain.attestation, 'software');
    const p = new Principal(claims);
    assert.equal(p.agent?.name, 'payments-bot');
    assert.equal(p.attestation, 'software');
    assert.equal(String(p), 'alice → planner → payments-bot');
    // A human's own token: no agent, so no attestation (an `att` without an actor speaks of nobody).
    assert.equal(new Principal({ sub: 'alice' }).agent, undefined);
    assert.equal(new Principal({ sub: 'alice', att: 'tpm' }).attestation, undefined);
    assert.equal(Chain.fromClaims({ sub: 'alice' }).toString(), 'alice');
  });

  test('readChain decodes without verifying, and refuses what is not a JWT', () => {
    assert.throws(() => readChain('nope'), /not a JWT/);
  });
});

describe('MandateClient', () => {
  test('RFC 8414 §3: discovers the endpoints from the metadata, once', async () => {
    const c = m.client();
    const md = await c.metadata();
    assert.equal(md.issuer, m.issuer);
    for (const k of ['token_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'jwks_uri', 'backchannel_authentication_endpoint'] as const) {
      assert.ok(typeof md[k] === 'string', `${k} in the metadata`);
    }
    assert.equal(await c.metadata(), md);
  });

  test('challenge + attest: an agent token with sub agent:NAME and att software', async () => {
    const c = m.client();
    const { nonce, expiresIn } = await c.challenge('planner');
    assert.ok(nonce.length > 10 && expiresIn > 0);
    const t = await c.attest('planner', nonce, await m.keys.planner!.evidence('planner', m.issuer, nonce));
    const claims = decodeJwt(t.agentToken);
    assert.equal(claims.sub, 'agent:planner');
    assert.equal(claims.att, 'software');
    assert.ok(t.expiresIn > 0);
  });

  test('attest with another agent\'s key is refused with the server\'s error', async () => {
    const c = m.client();
    const { nonce } = await c.challenge('planner');
    const e = await refused(c.attest('planner', nonce, await m.keys.auditor!.evidence('planner', m.issuer, nonce)));
    assert.ok(e.status! >= 400 && e.status! < 500);
    assert.ok(e.error.length > 0);
  });

  test('RFC 6749 §5.2: a wrong client secret is invalid_client, and the error never shows the secret or the tokens', async () => {
    const c = new MandateClient(m.issuer, CLIENT_ID, 'wrong-secret-value');
    const actor = await m.session('planner').token();
    const e = await refused(c.exchange({ subjectToken: alice, actorToken: actor }));
    assert.ok(e instanceof OAuthError);
    assert.equal(e.error, 'invalid_client');
    assert.equal(e.status, 401);
    assertHides(e, ['wrong-secret-value', alice, actor]);
    assertHides(c, ['wrong-secret-value']);
  });
});

describe('AgentSession', () => {
  test('token(): concurrent callers share one attestation, later callers get the same token', async () => {
    let attestations = 0;
    const key = m.keys.planner!;
    const counting: Attester = {
      evidence: (agent, issuer, nonce) => {
        attestations++;
        return key.evidence(agent, issuer, nonce);
      },
    };
    const s = new AgentSession(m.client(), 'planner', counting);
    const tokens = await Promise.all([s.token(), s.token(), s.token(), s.token()]);
    assert.equal(attestations, 1);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(await s.token(), tokens[0]);
    assert.equal(attestations, 1);
    assert.ok(!inspect(s).includes(tokens[0]!));
  });

  test('actFor (RFC 8693 §2.1): narrowed scope and audience, a new session, act = the agent', async () => {
    const t = await m.session('planner').actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    assert.deepEqual(t.scope, ['orders:read']);
    assert.deepEqual(t.audience, ['orders-api']);
    assert.ok(t.sessionId);
    assert.equal(t.chain.toString(), 'alice → planner');
    assert.ok(t.expiresIn() > 0);
    const claims = decodeJwt(t.accessToken);
    assert.equal(claims.sub, USER);
    assert.equal((claims.act as { sub: string }).sub, 'agent:planner');
    assertHides(t, [t.accessToken]);
  });

  test('actFor with resource (RFC 8707 §2): aud is the configured resource URI', async () => {
    const t = await m.session('planner').actFor(alice, { scope: ['orders:read'], resource: RESOURCE });
    assert.deepEqual(t.audience, [RESOURCE]);
  });

  test('delegate to a sub-agent: the chain reads alice → planner → payments-bot, newest actor outermost (RFC 8693 §4.1)', async () => {
    const planner = m.session('planner');
    const bot = m.session('payments-bot');
    const mine = await planner.actFor(alice, { scope: 'orders:read orders:write', audience: 'orders-api' });
    const sub = await planner.delegate(mine, await bot.token(), { scope: 'orders:read' });
    assert.equal(sub.chain.toString(), 'alice → planner → payments-bot');
    assert.deepEqual(sub.scope, ['orders:read']);
    const chain = readChain(sub.accessToken);
    assert.equal(chain.human, USER);
    assert.deepEqual(chain.actors.map((a) => a.subject), ['agent:planner', 'agent:payments-bot']);
    assert.equal(chain.agent?.name, 'payments-bot');
    assert.equal(chain.depth, 2);
    const act = decodeJwt(sub.accessToken).act as { sub: string; act: { sub: string } };
    assert.equal(act.sub, 'agent:payments-bot');
    assert.equal(act.act.sub, 'agent:planner');
    // mandate's `att`: how the acting agent proved itself (a software key here).
    assert.equal(chain.attestation, 'software');
  });

  test('refused: a wider scope than the subject token is invalid_scope (RFC 8693 §2.2.2, RFC 6749 §5.2)', async () => {
    const planner = m.session('planner');
    const mine = await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    const e = await refused(planner.delegate(mine, await m.session('payments-bot').token(), { scope: 'orders:read orders:write' }));
    assert.ok(e instanceof OAuthError);
    assert.equal(e.error, 'invalid_scope');
    assert.equal(e.status, 400);
    assertHides(e, [mine.accessToken, alice]);
  });

  test('refused: an unknown audience is invalid_target (RFC 8693 §2.2.2)', async () => {
    const e = await refused(m.session('planner').actFor(alice, { audience: 'nobody-api' }));
    assert.equal(e.error, 'invalid_target');
  });

  test('refused: a chain deeper than tokens.max_delegation_depth (2) is invalid_grant', async () => {
    const planner = m.session('planner');
    const bot = m.session('payments-bot');
    const one = await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    const two = await planner.delegate(one, await bot.token());
    const e = await refused(bot.delegate(two, await m.session('auditor').token()));
    assert.equal(e.error, 'invalid_grant');
  });

  test('revoke (RFC 7009 §2.1): revoking a delegated token revokes what was derived from it; a revoked parent is invalid_grant', async () => {
    const planner = m.session('planner');
    const bot = m.session('payments-bot');
    const parent = await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    const child = await planner.delegate(parent, await bot.token());
    const rs = new MandateClient(m.issuer, RS_ID, RS_SECRET);
    assert.equal((await rs.introspect(child.accessToken)).active, true);
    await planner.revoke(parent);
    assert.equal((await rs.introspect(parent.accessToken)).active, false);
    assert.equal((await rs.introspect(child.accessToken)).active, false, 'the subtree is revoked');
    const e = await refused(planner.delegate(parent, await bot.token()));
    assert.equal(e.error, 'invalid_grant');
    // alice's own token is not below the delegated one: still good.
    assert.ok(await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' }));
  });

  test('introspect (RFC 7662 §2.2): active with the claims for its audience, inactive for another resource server', async () => {
    const t = await m.session('planner').actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    const info = await new MandateClient(m.issuer, RS_ID, RS_SECRET).introspect(t.accessToken);
    assert.equal(info.active, true);
    assert.equal(info.sub, USER);
    assert.equal(info.scope, 'orders:read');
    assert.equal(info.sid, t.sessionId);
    const other = await new MandateClient(m.issuer, 'billing-api', 'billing-api-secret').introspect(t.accessToken);
    assert.equal(other.active, false);
  });

  test('refused: a high-risk scope needs the human: invalid_scope pointing to /bc-authorize', async () => {
    const e = await refused(m.session('planner').actFor(alice, { scope: 'payments:write', audience: 'orders-api' }));
    assert.equal(e.error, 'invalid_scope');
    assert.match(e.description ?? '', /bc-authorize/);
  });
});

describe('CIBA: the human in the loop (OpenID CIBA Core 1.0, poll mode)', () => {
  test('approved on /approvals: waitForApproval returns the token (CIBA Core §10.1)', async () => {
    const planner = m.session('planner');
    const req = await planner.requestApproval(alice, { scope: 'payments:write', audience: 'orders-api', bindingMessage: 'Pay invoice 4711' });
    assert.ok(req instanceof ApprovalRequest);
    assert.ok(req.interval >= 1);
    assert.ok(!inspect(req).includes(req.authReqId));
    const [token] = await Promise.all([
      planner.waitForApproval(req, { timeoutMs: 20_000 }),
      answerApproval(m.issuer, { username: USER, password: PASSWORD, bindingMessage: 'Pay invoice 4711', decision: 'Approve' }),
    ]);
    assert.deepEqual(token.scope, ['payments:write']);
    assert.equal(token.chain.toString(), 'alice → planner');
    // CIBA Core §10.1: the token is handed out exactly once.
    const again = await refused(planner.client.poll(req));
    assert.ok(again.error !== '' && again instanceof MandateError);
  });

  test('denied on /approvals: ApprovalDenied (access_denied, CIBA Core §11)', async () => {
    const planner = m.session('planner');
    const req = await planner.requestApproval(alice, { scope: 'payments:write', audience: 'orders-api', bindingMessage: 'Pay invoice 666' });
    const [outcome] = await Promise.allSettled([
      planner.waitForApproval(req, { timeoutMs: 20_000 }),
      answerApproval(m.issuer, { username: USER, password: PASSWORD, bindingMessage: 'Pay invoice 666', decision: 'Deny' }),
    ]);
    assert.equal(outcome.status, 'rejected');
    const e = (outcome as PromiseRejectedResult).reason;
    assert.ok(e instanceof ApprovalDenied, String(e));
    assert.equal(e.error, 'access_denied');
  });

  test('polling too fast is slow_down: the wait adds 5 s to the interval (CIBA Core §11), then times out (ApprovalTimeout)', async () => {
    const planner = m.session('planner');
    const req = await planner.requestApproval(alice, { scope: 'payments:write', audience: 'orders-api', bindingMessage: 'too fast' });
    // Poll once at once (pending), then make the wait poll again with no pause: slow_down.
    const first = await refused(planner.client.poll(req));
    assert.ok(['authorization_pending', 'slow_down'].includes(first.error));
    req.interval = 0;
    const t0 = Date.now();
    const e = await refused(planner.waitForApproval(req, { timeoutMs: 1500 }));
    assert.ok(e instanceof ApprovalTimeout, String(e));
    assert.equal(req.interval, 5, 'slow_down added 5 s to the interval');
    assert.ok(Date.now() - t0 < 4500, 'the timeout holds even when the next poll would be later');
  });

  test('an AbortSignal cancels the wait (ApprovalCancelled)', async () => {
    const planner = m.session('planner');
    // CIBA Core §7.1 requested_expiry: the server answers expires_in within it.
    const req = await planner.requestApproval(alice, { scope: 'payments:write', audience: 'orders-api', bindingMessage: 'cancel me', requestedExpiry: 30 });
    assert.ok(req.expiresAt.getTime() - Date.now() <= 30_000, `expires at ${req.expiresAt.toISOString()}`);
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 300);
    const e = await refused(planner.waitForApproval(req, { signal: ctl.signal }));
    assert.ok(e instanceof ApprovalCancelled, String(e));
  });

  test('CIBA requests are refused like the exchange would be: a wider scope is invalid_scope at /bc-authorize', async () => {
    const planner = m.session('planner');
    const mine = await planner.actFor(alice, { scope: 'orders:read', audience: 'orders-api' });
    const e = await refused(planner.requestApproval(mine, { scope: 'payments:write', bindingMessage: 'wider' }));
    assert.equal(e.error, 'invalid_scope');
  });
});
