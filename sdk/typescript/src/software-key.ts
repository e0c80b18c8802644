// The software attestation path: the agent proves it holds the P-256 key registered for it
// (`[[agents]] public_jwk`) by signing a short ES256 JWT over the server's nonce, with jose.

import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, importJWK, type JWK, type CryptoKey } from 'jose';

/** How an agent proves what it is at `/attest`: the evidence fields of the body for a nonce. */
export interface Attester {
  evidence(agent: string, issuer: string, nonce: string): Promise<Record<string, unknown>>;
}

/** A P-256 key pair whose public half is registered for the agent. */
export class SoftwareKey implements Attester {
  readonly #privateKey: CryptoKey;
  readonly #publicKey: CryptoKey;

  private constructor(privateKey: CryptoKey, publicKey: CryptoKey) {
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
  }

  /** A new random key (extractable, so it can be saved with `toPem()`). */
  static async generate(): Promise<SoftwareKey> {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    return new SoftwareKey(privateKey, publicKey);
  }

  /** A key from PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`). */
  static async fromPem(pem: string): Promise<SoftwareKey> {
    let privateKey: CryptoKey;
    try {
      privateKey = await importPKCS8(pem, 'ES256', { extractable: true });
    } catch {
      throw new TypeError('the key is not a P-256 private key in PKCS#8 PEM');
    }
    // The public half, from the private JWK without `d`.
    const { d: _d, ...pub } = await exportJWK(privateKey);
    const publicKey = (await importJWK({ ...pub, alg: 'ES256' }, 'ES256')) as CryptoKey;
    return new SoftwareKey(privateKey, publicKey);
  }

  /** The private key as PKCS#8 PEM, to store (it is a secret). */
  toPem(): Promise<string> {
    return exportPKCS8(this.#privateKey);
  }

  /** The public JWK to register as `[[agents]] public_jwk`: `{kty, crv, x, y}`. */
  async publicJwk(): Promise<{ kty: 'EC'; crv: 'P-256'; x: string; y: string }> {
    const jwk: JWK = await exportJWK(this.#publicKey);
    return { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y! };
  }

  /**
   * The attestation proof for `nonce`: an ES256 JWT with `iss` = `sub` = the agent's name,
   * `aud` = the issuer, the nonce, `iat`, `exp` = `iat` + 60 s and a unique `jti`.
   */
  proof(agent: string, issuer: string, nonce: string): Promise<string> {
    return new SignJWT({ nonce })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(agent)
      .setSubject(agent)
      .setAudience(issuer)
      .setIssuedAt()
      .setExpirationTime('60s')
      .setJti(randomUUID())
      .sign(this.#privateKey);
  }

  async evidence(agent: string, issuer: string, nonce: string): Promise<Record<string, unknown>> {
    return { proof: await this.proof(agent, issuer, nonce) };
  }

  toString(): string {
    return 'SoftwareKey(..)';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}
