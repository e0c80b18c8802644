// What the agent side hands back: a delegated token (whose value is never shown by toString,
// JSON.stringify or console.log) and a pending approval request.

import { decodeJwt, type JWTPayload } from 'jose';
import { Chain } from './chain.js';

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
  /** The token type the server named (`bearer`). */
  readonly tokenType: string;

  constructor(accessToken: string, options: { expiresIn?: number; scope?: string; tokenType?: string } = {}) {
    this.#accessToken = accessToken;
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
    this.tokenType = options.tokenType ?? 'bearer';
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

  constructor(authReqId: string, expiresIn: number, interval: number | undefined) {
    this.#authReqId = authReqId;
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
