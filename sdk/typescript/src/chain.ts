// Who a token is for and who acts with it, read from its `sub` and `act` claims (RFC 8693 §4.1:
// the newest actor outermost). `readChain` does NOT verify the token: it is for an agent reading
// its own tokens. A resource server verifies first (`@mandate/sdk/resource`).

import { decodeJwt, type JWTPayload } from 'jose';

/** One agent in a delegation chain. */
export interface Actor {
  /** The `sub` of the `act` entry, e.g. `agent:planner`. */
  subject: string;
  /** The agent's name: `subject` without the `agent:` prefix. */
  name: string;
}

/** A human and the agents acting for them, first agent first. */
export class Chain {
  /** The human (`sub`). */
  readonly subject: string;
  /** The agents in delegation order: the first agent the human delegated to first. */
  readonly actors: readonly Actor[];
  /**
   * How the current actor proved itself at mandate (the token's `att` claim: `software` or
   * `tpm`); undefined for a token without an actor or one that does not say.
   */
  readonly attestation: string | undefined;

  constructor(subject: string, actors: readonly Actor[], attestation?: string) {
    this.subject = subject;
    this.actors = actors;
    this.attestation = actors.length > 0 ? attestation : undefined;
  }

  /** The human (`sub`). */
  get human(): string {
    return this.subject;
  }

  /** The agent acting now (the outermost `act`), if any. */
  get agent(): Actor | undefined {
    return this.actors[this.actors.length - 1];
  }

  /** How many agents stand between the human and the token (0 for the human's own token). */
  get depth(): number {
    return this.actors.length;
  }

  /** `alice → planner → payments-bot`. */
  toString(): string {
    return [this.subject, ...this.actors.map((a) => a.name)].join(' → ');
  }

  /** Reads the chain from JWT claims (`sub` and nested `act`). */
  static fromClaims(claims: JWTPayload): Chain {
    const newestFirst: Actor[] = [];
    let act = claims.act as Record<string, unknown> | undefined;
    for (let i = 0; act && typeof act === 'object' && i < 64; i++) {
      const subject = typeof act.sub === 'string' ? act.sub : '';
      newestFirst.push({
        subject,
        name: subject.startsWith('agent:') ? subject.slice('agent:'.length) : subject,
      });
      act = act.act as Record<string, unknown> | undefined;
    }
    // mandate's `att` speaks of the current actor (the constructor drops it without one).
    const att = typeof claims.att === 'string' ? claims.att : undefined;
    return new Chain(typeof claims.sub === 'string' ? claims.sub : '', newestFirst.reverse(), att);
  }
}

/**
 * The delegation chain of a JWT access token, decoded WITHOUT verifying its signature: for an
 * agent reading tokens it got from mandate itself. Never use it to decide whom to trust.
 */
export function readChain(token: string): Chain {
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch {
    throw new TypeError('not a JWT');
  }
  return Chain.fromClaims(claims);
}
