// An agent's DPoP key (RFC 9449): a WebCrypto P-256 key pair whose private half need not (and by
// default cannot) leave WebCrypto. Token-endpoint requests sign their proofs through
// oauth4webapi's own DPoP handle (`handle()`, which also keeps the server's nonces); the other
// requests (/attest, /bc-authorize, resource servers) get proofs from `proof()`, signed with jose,
// with the nonces this key has seen (`DPoP-Nonce`, RFC 9449 §8, §9) kept per origin.

import { randomUUID } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { SignJWT, calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

/** What one proof is for (RFC 9449 §4.2). */
export interface ProofParams {
  /** `htm`: the HTTP method of the request. */
  method: string;
  /** The request URL; `htu` is it without query and fragment. */
  url: string | URL;
  /** The access token the request carries (`ath` is its SHA-256 hash, RFC 9449 §4.2). */
  accessToken?: string;
  /** A server-provided nonce; default: the latest this key saw from the URL's origin. */
  nonce?: string;
}

/** `htu` (RFC 9449 §4.2): the URL without query and fragment. */
export function htuOf(url: string | URL): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

/** `ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII. */
export async function athOf(accessToken: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken));
  return Buffer.from(digest).toString('base64url');
}

/** A DPoP key pair (ES256): proves possession for the tokens bound to it (`cnf.jkt`). */
export class DpopKey {
  readonly #keyPair: CryptoKeyPair;
  #publicJwk: Promise<JWK> | undefined;
  #jkt: Promise<string> | undefined;
  #handle: oauth.DPoPHandle | undefined;
  readonly #nonces = new Map<string, string>();

  private constructor(keyPair: CryptoKeyPair) {
    this.#keyPair = keyPair;
  }

  /** A new P-256 key pair; its private key is not extractable. */
  static async generate(): Promise<DpopKey> {
    const kp = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
    return new DpopKey(kp);
  }

  /** Wraps a WebCrypto ECDSA P-256 key pair (the private key may, and should, be non-extractable). */
  static fromKeyPair(keyPair: CryptoKeyPair): DpopKey {
    const { privateKey, publicKey } = keyPair ?? {};
    const ok = (k: CryptoKey | undefined, type: KeyType) =>
      k?.type === type && k.algorithm.name === 'ECDSA' && (k.algorithm as EcKeyAlgorithm).namedCurve === 'P-256';
    if (!ok(privateKey, 'private') || !ok(publicKey, 'public') || !privateKey!.usages.includes('sign')) {
      throw new TypeError('a DPoP key must be a WebCrypto ECDSA P-256 key pair whose private key can sign');
    }
    return new DpopKey(keyPair);
  }

  /** `from(x)`: x itself when it is a DpopKey, else `fromKeyPair(x)`. */
  static from(key: DpopKey | CryptoKeyPair): DpopKey {
    return key instanceof DpopKey ? key : DpopKey.fromKeyPair(key);
  }

  /** The public key as a JWK `{kty, crv, x, y}` (the proof's `jwk` header). */
  publicJwk(): Promise<JWK> {
    this.#publicJwk ??= exportJWK(this.#keyPair.publicKey).then(({ kty, crv, x, y }) => ({ kty, crv, x, y }));
    return this.#publicJwk;
  }

  /** The RFC 7638 SHA-256 thumbprint of the public key: the `cnf.jkt` of tokens bound to it. */
  jkt(): Promise<string> {
    this.#jkt ??= this.publicJwk().then((jwk) => calculateJwkThumbprint(jwk, 'sha256'));
    return this.#jkt;
  }

  /** oauth4webapi's DPoP handle for this key (one per key: it caches the servers' nonces). */
  handle(): oauth.DPoPHandle {
    this.#handle ??= oauth.DPoP({}, this.#keyPair);
    return this.#handle;
  }

  /** A fresh proof (RFC 9449 §4.2): ES256, typ dpop+jwt, jwk; jti, htm, htu, iat, ath and nonce when given or known. */
  async proof(p: ProofParams): Promise<string> {
    const htu = htuOf(p.url);
    const nonce = p.nonce ?? this.#nonces.get(new URL(htu).origin);
    const claims: Record<string, unknown> = { htm: p.method.toUpperCase(), htu };
    if (p.accessToken !== undefined) claims.ath = await athOf(p.accessToken);
    if (nonce !== undefined) claims.nonce = nonce;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await this.publicJwk() })
      .setJti(randomUUID())
      .setIssuedAt()
      .sign(this.#keyPair.privateKey);
  }

  /**
   * Remembers the `DPoP-Nonce` of a response from `url`'s origin (RFC 9449 §8.2: the latest wins).
   * Returns whether the response carried one.
   */
  rememberNonce(url: string | URL, response: Response): boolean {
    const nonce = response.headers.get('dpop-nonce');
    if (!nonce) return false;
    const origin = new URL(url).origin;
    this.#nonces.delete(origin);
    if (this.#nonces.size >= 100) this.#nonces.delete(this.#nonces.keys().next().value!);
    this.#nonces.set(origin, nonce);
    return true;
  }

  toString(): string {
    return 'DpopKey(..)';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}
