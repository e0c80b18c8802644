// Interoperability: a third-party client, panva's oauth4webapi, gets DPoP-bound access tokens
// (RFC 9449) from a real mandate with client_credentials, and a resource server checks them by
// introspection and as RFC 9068 JWTs. Only oauth4webapi's public API and WebCrypto are used on
// the client side, so whatever passes here is what mandate says on the wire, not what our SDK
// expects of it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oauth from 'oauth4webapi';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from 'jose';
import { startMandate, type Mandate } from './harness.ts';

const RESOURCE = 'https://orders.example/api';
const M2M_ID = 'dpop-m2m';
const M2M_SECRET = 'dpop-m2m-secret';
const RS_ID = 'dpop-orders-rs';
const RS_SECRET = 'dpop-orders-rs-secret';

/** A confidential client allowed client_credentials, and a resource server that introspects. */
const EXTRA = `
[[resources]]
uri = "${RESOURCE}"
name = "Orders (DPoP interop)"
scopes = ["orders:read", "orders:write"]

[[clients]]
client_id = "${M2M_ID}"
client_secret = "${M2M_SECRET}"
grant_types = ["client_credentials"]
scopes = ["orders:read"]

[[clients]]
client_id = "${RS_ID}"
client_secret = "${RS_SECRET}"
introspect = true
audience = "${RESOURCE}"
`;

// mandate listens on plain http on loopback: oauth4webapi refuses that unless told.
const insecure = { [oauth.allowInsecureRequests]: true } as const;
const client: oauth.Client = { client_id: M2M_ID };
const rs: oauth.Client = { client_id: RS_ID };

async function discover(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer);
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure }));
}

/** A P-256 key pair whose private half never leaves WebCrypto (the public half always may). */
async function keyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
}

async function thumbprint(kp: CryptoKeyPair): Promise<string> {
  return calculateJwkThumbprint(await crypto.subtle.exportKey('jwk', kp.publicKey), 'sha256');
}

async function tokenWith(as: oauth.AuthorizationServer, dpop: oauth.DPoPHandle): Promise<oauth.TokenEndpointResponse> {
  const resp = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.ClientSecretBasic(M2M_SECRET),
    { scope: 'orders:read', resource: RESOURCE },
    { DPoP: dpop, ...insecure },
  );
  return oauth.processClientCredentialsResponse(as, client, resp);
}

async function introspect(as: oauth.AuthorizationServer, token: string): Promise<oauth.IntrospectionResponse> {
  const resp = await oauth.introspectionRequest(as, rs, oauth.ClientSecretBasic(RS_SECRET), token, insecure);
  return oauth.processIntrospectionResponse(as, rs, resp);
}

describe('oauth4webapi gets DPoP-bound tokens from mandate', () => {
  let m: Mandate;
  let as: oauth.AuthorizationServer;
  before(async () => {
    m = await startMandate({ agents: [], extra: EXTRA });
    as = await discover(m.issuer);
  });
  after(async () => {
    await m?.stop();
  });

  test('metadata advertises DPoP (RFC 9449 §5.1 dpop_signing_alg_values_supported)', () => {
    assert.ok(Array.isArray(as.dpop_signing_alg_values_supported), JSON.stringify(as));
    assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'), `${as.dpop_signing_alg_values_supported}`);
  });

  test('client_credentials with a DPoP proof gets a DPoP token bound by cnf.jkt, and introspection says so (RFC 9449 §5, §6.1, §6.2)', async () => {
    const kp = await keyPair();
    const dpop = oauth.DPoP(client, kp);
    const jkt = await thumbprint(kp);
    assert.equal(await dpop.calculateThumbprint(), jkt, 'oauth4webapi and jose agree on the RFC 7638 thumbprint');

    const tokens = await tokenWith(as, dpop);
    // RFC 9449 §5: token_type "DPoP" (oauth4webapi lowercases it).
    assert.equal(tokens.token_type, 'dpop');
    assert.equal(decodeProtectedHeader(tokens.access_token).typ, 'at+jwt');
    const claims = decodeJwt(tokens.access_token);
    // RFC 9449 §6.1: the JWT carries the SHA-256 thumbprint of the proof's key.
    assert.deepEqual(claims.cnf, { jkt });
    assert.equal(claims.client_id, M2M_ID);
    assert.ok(([] as unknown[]).concat(claims.aud).includes(RESOURCE), `aud: ${JSON.stringify(claims.aud)}`);

    // RFC 9449 §6.2: introspection tells the resource server the token is DPoP-bound and to what.
    const info = await introspect(as, tokens.access_token);
    assert.equal(info.active, true);
    assert.equal(info.token_type, 'DPoP');
    assert.deepEqual(info.cnf, { jkt });
    assert.equal(info.client_id, M2M_ID);
  });

  test('the token is used: oauth4webapi as resource server accepts it with a fresh proof carrying ath (RFC 9449 §4.3, §7.1)', async () => {
    const kp = await keyPair();
    const dpop = oauth.DPoP(client, kp);
    const tokens = await tokenWith(as, dpop);
    // Build the protected-resource request oauth4webapi would send (DPoP scheme, proof with
    // htm/htu/ath), capture it instead of sending it, and check it as a resource server would.
    let sent: Request | undefined;
    const capture = async (url: string, init: { method: string; headers: Record<string, string> }) => {
      sent = new Request(url, { method: init.method, headers: init.headers });
      return new Response(null, { status: 204 });
    };
    await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${RESOURCE}/orders`), undefined, undefined, {
      DPoP: dpop,
      [oauth.customFetch]: capture,
    });
    assert.ok(sent);
    assert.match(sent.headers.get('authorization') ?? '', /^DPoP /);
    const claims = await oauth.validateJwtAccessToken(as, sent, RESOURCE, { requireDPoP: true, ...insecure });
    assert.deepEqual(claims.cnf, { jkt: await thumbprint(kp) });

    // The same token with a proof from another key is refused (RFC 9449 §7.1: key must match cnf.jkt).
    const other = oauth.DPoP(client, await keyPair());
    await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${RESOURCE}/orders`), undefined, undefined, {
      DPoP: other,
      [oauth.customFetch]: capture,
    });
    await assert.rejects(oauth.validateJwtAccessToken(as, sent!, RESOURCE, { requireDPoP: true, ...insecure }), /confirmation mismatch/);
  });

  test('without a DPoP proof the token is a Bearer token with no cnf (RFC 9449 §5: binding is opt-in)', async () => {
    const resp = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      oauth.ClientSecretBasic(M2M_SECRET),
      { scope: 'orders:read', resource: RESOURCE },
      insecure,
    );
    const tokens = await oauth.processClientCredentialsResponse(as, client, resp);
    assert.equal(tokens.token_type, 'bearer');
    assert.equal(decodeJwt(tokens.access_token).cnf, undefined);
    const info = await introspect(as, tokens.access_token);
    assert.equal(info.active, true);
    assert.equal(info.token_type, 'Bearer');
    assert.equal(info.cnf, undefined);
  });
});

describe('oauth4webapi follows mandate\'s DPoP nonce (RFC 9449 §8)', () => {
  let m: Mandate;
  let as: oauth.AuthorizationServer;
  before(async () => {
    m = await startMandate({ agents: [], extra: `${EXTRA}\n[dpop]\nrequire_nonce = true\n` });
    as = await discover(m.issuer);
  });
  after(async () => {
    await m?.stop();
  });

  test('the first request is refused with use_dpop_nonce, the retry with the same handle succeeds (RFC 9449 §8, §8.1)', async () => {
    const kp = await keyPair();
    const dpop = oauth.DPoP(client, kp);
    let first: unknown;
    try {
      await tokenWith(as, dpop);
    } catch (e) {
      first = e;
    }
    assert.ok(first, 'a proof without a nonce must be refused when nonces are required');
    assert.ok(oauth.isDPoPNonceError(first), `expected a DPoP nonce error, got ${String(first)}`);
    assert.ok(first instanceof oauth.ResponseBodyError);
    assert.equal(first.status, 400);
    assert.equal(first.error, 'use_dpop_nonce');
    assert.ok(first.response.headers.get('dpop-nonce'), 'the 400 carries a DPoP-Nonce header');

    // oauth4webapi cached the nonce from the DPoP-Nonce header: the retry carries it.
    const tokens = await tokenWith(as, dpop);
    assert.equal(tokens.token_type, 'dpop');
    const jkt = await thumbprint(kp);
    assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt });
    const info = await introspect(as, tokens.access_token);
    assert.equal(info.active, true);
    assert.equal(info.token_type, 'DPoP');
    assert.deepEqual(info.cnf, { jkt });

    // A later request with the same handle reuses the cached nonce and needs no retry.
    const again = await tokenWith(as, dpop);
    assert.equal(again.token_type, 'dpop');
  });
});
