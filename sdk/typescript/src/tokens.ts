// What the agent side hands back: a delegated token (whose value is never shown by toString,
// JSON.stringify or console.log) and a pending approval request.

import { decodeJwt, type JWTPayload } from 'jose';
import { Chain } from './chain.js';
import type { DpopKey } from './dpop.js';

const inspect = Symbol.for('nodejs.util.inspect.custom');

function claimsOf(token: string): JWTPayload {
  try {
    return decodeJwt(token);
  } catch {
    return {};
  }
}

/** A token mandate issued by token exchange (RFC 8693) or CIBA, for an agent to act with. */
export class DelegatedToken {
  readonly #accessToken: string;
  /** When it expires (from `expires_in`, else the token's `exp`). */
  readonly expiresAt: Date;
  /** Its scopes. */
  readonly scope: readonly string[];
  /** Its audiences (`aud`): the resource servers it is for. */
  readonly audience: readonly string[];
  /** The delegated session (`sid`): what a revocation of it ends. */
  readonly sessionId: string | undefined;
  /** The human and the agents acting for them (decoded, not verified: mandate issued it). */
  readonly chain: Chain;
  /** The token type the server named (`bearer`, or `dpop` for a DPoP-bound token; lowercase). */
  readonly tokenType: string;
  /**
   * The RFC 7638 thumbprint of the key the token is bound to (its `cnf.jkt`, RFC 9449 §6.1), or
   * undefined for a bearer token.
   */
  readonly jkt: string | undefined;
  readonly #dpop: DpopKey | undefined;

  constructor(accessToken: string, options: { expiresIn?: number; scope?: string; tokenType?: string; dpop?: DpopKey } = {}) {
    this.#accessToken = accessToken;
    this.#dpop = options.dpop;
    const claims = claimsOf(accessToken);
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
    this.expiresAt = new Date(
      options.expiresIn !== undefined ? Date.now() + options.expiresIn * 1000 : (exp ?? Date.now()),
    );
    const scope = options.scope ?? (typeof claims.scope === 'string' ? claims.scope : '');
    this.scope = scope.split(' ').filter(Boolean);
    this.audience = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? [...claims.aud] : [];
    this.sessionId = typeof claims.sid === 'string' ? claims.sid : undefined;
    this.chain = Chain.fromClaims(claims);
    this.tokenType = (options.tokenType ?? 'bearer').toLowerCase();
    const cnf = claims.cnf as { jkt?: unknown } | undefined;
    this.jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
  }

  /** Whether the token is DPoP-bound (RFC 9449): sent as `Authorization: DPoP` with a proof of its key. */
  get dpopBound(): boolean {
    return this.tokenType === 'dpop' || this.jkt !== undefined;
  }

  /** The key that proves possession of a DPoP-bound token (undefined for a bearer token). */
  get dpopKey(): DpopKey | undefined {
    return this.#dpop;
  }

  /**
   * The headers that present this token on a request to `url` with `method`: `Authorization:
   * Bearer <token>`, or for a DPoP-bound token `Authorization: DPoP <token>` and a fresh `DPoP`
   * proof (htm, htu, ath; RFC 9449 §7.1). `nonce`: one the resource server asked for.
   */
  async authorizationHeaders(method: string, url: string | URL, nonce?: string): Promise<Record<string, string>> {
    if (!this.dpopBound) return { authorization: `Bearer ${this.#accessToken}` };
    if (!this.#dpop) throw new TypeError('the token is DPoP-bound but its key is not known here');
    const proof = await this.#dpop.proof({ method, url, accessToken: this.#accessToken, nonce });
    return { authorization: `DPoP ${this.#accessToken}`, dpop: proof };
  }

  /** The token itself, for an `Authorization: Bearer` header. A secret: never log it. */
  get accessToken(): string {
    return this.#accessToken;
  }

  /** Seconds left before it expires (negative once expired). */
  expiresIn(now: number = Date.now()): number {
    return (this.expiresAt.getTime() - now) / 1000;
  }

  /** Whether fewer than `marginSeconds` are left. */
  expiresWithin(marginSeconds: number, now: number = Date.now()): boolean {
    return this.expiresIn(now) < marginSeconds;
  }

  toString(): string {
    return `DelegatedToken(${this.chain}, scope="${this.scope.join(' ')}", audience=[${this.audience.join(', ')}], expires ${this.expiresAt.toISOString()})`;
  }

  toJSON(): Record<string, unknown> {
    return {
      expiresAt: this.expiresAt.toISOString(),
      scope: this.scope,
      audience: this.audience,
      sessionId: this.sessionId,
      chain: this.chain.toString(),
      tokenType: this.tokenType,
      ...(this.jkt ? { jkt: this.jkt } : {}),
    };
  }

  [inspect](): string {
    return this.toString();
  }
}

/** A CIBA request (poll mode) waiting for the human (CIBA Core §7.3). */
export class ApprovalRequest {
  readonly #authReqId: string;
  /** When the server stops waiting for the human. */
  readonly expiresAt: Date;
  /** The least number of seconds between two polls. */
  interval: number;
  /** The DPoP key the request was made with: the polls are signed with it (RFC 9449). */
  readonly dpop: DpopKey | undefined;

  constructor(authReqId: string, expiresIn: number, interval: number | undefined, dpop?: DpopKey) {
    this.#authReqId = authReqId;
    this.dpop = dpop;
    this.expiresAt = new Date(Date.now() + expiresIn * 1000);
    this.interval = interval ?? 5;
  }

  /** The `auth_req_id` (a secret of the agent's client: never log it). */
  get authReqId(): string {
    return this.#authReqId;
  }

  toString(): string {
    return `ApprovalRequest(interval=${this.interval}s, expires ${this.expiresAt.toISOString()})`;
  }

  [inspect](): string {
    return this.toString();
  }
}
