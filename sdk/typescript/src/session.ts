// An agent's session with mandate: its agent token, attested again before it expires (callers
// that ask at the same time share one attestation), and the delegations it makes with it.

import { ApprovalCancelled, ApprovalTimeout, MandateError, OAuthError } from './errors.js';
import type { MandateClient } from './client.js';
import type { Attester } from './software-key.js';
import type { AgentTokenSource } from './command-attester.js';
import { decodeJwt } from 'jose';
import type { ApprovalRequest, DelegatedToken } from './tokens.js';
import { DpopKey } from './dpop.js';

/** What a delegation asks for; `scope` and `audience` only narrow the subject token's. */
export interface DelegationOptions {
  scope?: string | readonly string[];
  audience?: string | readonly string[];
  /** RFC 8707 resource URIs (mandate treats them as audiences). */
  resource?: string | readonly string[];
  signal?: AbortSignal;
}

export interface DelegateOptions extends DelegationOptions {
  /**
   * The SUB-AGENT's DPoP key, when `subAgent` is a token bound to it (RFC 9449: the exchange is
   * signed by the actor's key and the new token bound to it). Not needed when `subAgent` is an
   * AgentSession (its own key is used).
   */
  dpop?: DpopKey | CryptoKeyPair;
}

export interface AgentSessionOptions {
  /**
   * Opt in to DPoP (RFC 9449): a WebCrypto P-256 key pair (best non-extractable), a DpopKey, or
   * `true` to generate one. The agent token (/attest), the delegated tokens (exchange, CIBA) are
   * then bound to it, and `delegatedFetch` proves possession on each request.
   */
  dpop?: DpopKey | CryptoKeyPair | true;
}

export interface ApprovalOptions extends DelegationOptions {
  /** Shown to the human with the request (CIBA Core §7.1). */
  bindingMessage?: string;
  /** Seconds the request may wait for the human. */
  requestedExpiry?: number;
}

export interface WaitOptions {
  /** Give up after this many milliseconds (ApprovalTimeout). Default: until the request expires. */
  timeoutMs?: number;
  /** Cancels the wait (ApprovalCancelled). */
  signal?: AbortSignal;
}

interface Current {
  token: string;
  expiresAt: number;
  lifetimeMs: number;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** An agent: its name, how it attests, and the client it uses at mandate. */
export class AgentSession {
  readonly client: MandateClient;
  readonly agent: string;
  readonly #attester: Attester | AgentTokenSource;
  #current: Current | undefined;
  #pending: Promise<string> | undefined;
  readonly #dpop: Promise<DpopKey> | undefined;

  /**
   * `attester`: evidence over the server's nonce (a `SoftwareKey`), or something that attests by
   * itself and hands over the agent token (a `CommandAttester` running `mandate-agent` for a TPM;
   * that token is not DPoP-bound, but with `options.dpop` the delegated tokens still are).
   */
  constructor(client: MandateClient, agent: string, attester: Attester | AgentTokenSource, options: AgentSessionOptions = {}) {
    this.client = client;
    this.agent = agent;
    this.#attester = attester;
    const { dpop } = options;
    if (dpop === true) {
      this.#dpop = DpopKey.generate();
    } else if (dpop !== undefined) {
      this.#dpop = Promise.resolve(DpopKey.from(dpop)); // throws now for a key of the wrong kind
    }
  }

  /** Whether this session uses DPoP (its tokens are bound to its key). */
  get usesDpop(): boolean {
    return this.#dpop !== undefined;
  }

  /** This agent's DPoP key, or undefined without DPoP. */
  dpopKey(): Promise<DpopKey | undefined> {
    return this.#dpop ?? Promise.resolve(undefined);
  }

  /** Challenge, evidence, `/attest`: a fresh agent token, whatever the current one. */
  attest(): Promise<string> {
    if (!this.#pending) {
      this.#pending = (async () => {
        const a = this.#attester;
        if ('agentToken' in a) {
          // It attested by itself: the token's own `exp` says how long it lives.
          const token = await a.agentToken();
          const exp = decodeJwt(token).exp;
          const lifetimeMs = typeof exp === 'number' ? Math.max(0, exp * 1000 - Date.now()) : 0;
          this.#current = { token, expiresAt: Date.now() + lifetimeMs, lifetimeMs };
          return token;
        }
        const dpop = await this.dpopKey();
        const once = async () => {
          const { nonce } = await this.client.challenge(this.agent);
          const evidence = await a.evidence(this.agent, this.client.issuer, nonce);
          return this.client.attest(this.agent, nonce, evidence, dpop);
        };
        let t: Awaited<ReturnType<typeof once>>;
        try {
          t = await once();
        } catch (e) {
          // RFC 9449 §8: the server wants its DPoP nonce (now remembered by the key). mandate
          // used up the attestation challenge with the refused request: a fresh one, once.
          if (!dpop || !(e instanceof MandateError) || e.error !== 'use_dpop_nonce') throw e;
          t = await once();
        }
        this.#current = { token: t.agentToken, expiresAt: Date.now() + t.expiresIn * 1000, lifetimeMs: t.expiresIn * 1000 };
        return t.agentToken;
      })();
      const clear = () => (this.#pending = undefined);
      this.#pending.then(clear, clear);
    }
    return this.#pending;
  }

  /**
   * The agent token, attesting again first when it is missing or when less than a fifth of its
   * lifetime or 30 s is left. Concurrent callers share one attestation.
   */
  async token(): Promise<string> {
    const c = this.#current;
    if (c) {
      const margin = Math.max(c.lifetimeMs / 5, 30_000);
      if (c.expiresAt - Date.now() > margin) return c.token;
    }
    return this.attest();
  }

  /**
   * RFC 8693 delegation to this agent: `subjectToken` (a human's token, or one delegated to this
   * agent) in, a token this agent acts with out.
   */
  async actFor(subjectToken: string | DelegatedToken, options: DelegationOptions = {}): Promise<DelegatedToken> {
    const actorToken = await this.token();
    const dpop = await this.dpopKey();
    return this.client.exchange({ ...options, subjectToken: tokenValue(subjectToken), actorToken, dpop }, options.signal);
  }

  /**
   * A narrower token for a sub-agent: `myToken` (delegated to this agent) is the subject, the
   * sub-agent's own agent token the actor. The sub-agent acts with the result. `subAgent`: its
   * session (its agent token and, with DPoP, its own key sign the exchange), or its agent token
   * (then a DPoP-bound one needs the sub-agent's key as `options.dpop`). This agent's own DPoP
   * key is never used: the result is bound to the sub-agent's key.
   */
  async delegate(myToken: string | DelegatedToken, subAgent: string | AgentSession, options: DelegateOptions = {}): Promise<DelegatedToken> {
    const { dpop: given, ...rest } = options;
    let actorToken: string;
    let dpop: DpopKey | undefined = given === undefined ? undefined : DpopKey.from(given);
    if (typeof subAgent === 'string') {
      actorToken = subAgent;
      if (!dpop && boundKeyOf(actorToken)) {
        throw new TypeError(`the sub-agent's token is DPoP-bound: pass the sub-agent's key as options.dpop`);
      }
    } else {
      actorToken = await subAgent.token();
      dpop ??= await subAgent.dpopKey();
    }
    return this.client.exchange({ ...rest, subjectToken: tokenValue(myToken), actorToken, dpop }, options.signal);
  }

  /** Asks the human to approve a delegation (CIBA poll mode); wait with `waitForApproval`. */
  async requestApproval(subjectToken: string | DelegatedToken, options: ApprovalOptions = {}): Promise<ApprovalRequest> {
    const actorToken = await this.token();
    const dpop = await this.dpopKey();
    return this.client.backchannelAuthorize({ ...options, subjectToken: tokenValue(subjectToken), actorToken, dpop }, options.signal);
  }

  /**
   * Polls until the human answers: the token once approved; ApprovalDenied, ApprovalExpired,
   * ApprovalTimeout (after `timeoutMs`) or ApprovalCancelled (the signal). Polls every
   * `interval` seconds, 5 s more after each `slow_down` (CIBA Core §7.3, §11).
   */
  async waitForApproval(request: ApprovalRequest, options: WaitOptions = {}): Promise<DelegatedToken> {
    const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
    const { signal } = options;
    const cancelled = () => new ApprovalCancelled('cancelled', 'the wait for approval was cancelled');
    for (;;) {
      const wait = request.interval * 1000;
      if (Date.now() + wait > deadline) {
        const left = deadline - Date.now();
        if (left > 0) await sleep(left, signal).catch(() => { throw cancelled(); });
        throw new ApprovalTimeout('timeout', `no answer from the human within ${options.timeoutMs} ms`);
      }
      try {
        await sleep(wait, signal);
      } catch {
        throw cancelled();
      }
      try {
        return await this.client.poll(request, signal);
      } catch (e) {
        if (signal?.aborted) throw cancelled();
        if (e instanceof OAuthError && e.error === 'authorization_pending') continue;
        if (e instanceof OAuthError && e.error === 'slow_down') {
          request.interval += 5;
          continue;
        }
        throw e;
      }
    }
  }

  /** RFC 7009: revokes a token and everything derived from it. */
  revoke(token: string | DelegatedToken, signal?: AbortSignal): Promise<void> {
    return this.client.revoke(token, signal);
  }

  toString(): string {
    return `AgentSession(${this.agent} at ${this.client.issuer})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** The `cnf.jkt` of a JWT (decoded, not verified), if any. */
function boundKeyOf(token: string): string | undefined {
  try {
    const cnf = decodeJwt(token).cnf as { jkt?: unknown } | undefined;
    return typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
  } catch {
    return undefined;
  }
}

function tokenValue(t: string | DelegatedToken): string {
  return typeof t === 'string' ? t : t.accessToken;
}
