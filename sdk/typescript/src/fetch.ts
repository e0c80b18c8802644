// A delegated token kept fresh, and a fetch that attaches it: re-exchanged before it expires,
// and once more when the resource server answers 401 invalid_token (RFC 6750 §3.1: revoked,
// expired early), then the request is sent again.

import type { AgentSession, DelegationOptions } from './session.js';
import type { DelegatedToken } from './tokens.js';

export interface TokenSourceOptions {
  /**
   * Re-exchange when fewer than this many seconds are left. Default: a fifth of the token's
   * lifetime, at most 30 s.
   */
  marginSeconds?: number;
}

/**
 * Holds one delegated token and gets a new one (through `obtain`) when it is close to expiry or
 * was refused. Concurrent callers share one exchange.
 */
export class DelegatedTokenSource {
  readonly #obtain: () => Promise<DelegatedToken>;
  readonly #marginSeconds: number | undefined;
  #current: { token: DelegatedToken; lifetime: number } | undefined;
  #pending: Promise<DelegatedToken> | undefined;
  /** How many tokens were obtained so far. */
  exchanges = 0;

  constructor(obtain: () => Promise<DelegatedToken>, options: TokenSourceOptions = {}) {
    this.#obtain = obtain;
    this.#marginSeconds = options.marginSeconds;
  }

  /** For an agent acting for `subjectToken`: `session.actFor(subjectToken, options)` each time. */
  static actingFor(
    session: AgentSession,
    subjectToken: string | DelegatedToken | (() => Promise<string | DelegatedToken>),
    options: DelegationOptions & TokenSourceOptions = {},
  ): DelegatedTokenSource {
    const { marginSeconds, ...delegation } = options;
    return new DelegatedTokenSource(async () => {
      const subject = typeof subjectToken === 'function' ? await subjectToken() : subjectToken;
      return session.actFor(subject, delegation);
    }, { marginSeconds });
  }

  /** The current token, or a new one when it is missing or fewer than the margin's seconds are left. */
  async get(): Promise<DelegatedToken> {
    const c = this.#current;
    if (c) {
      const margin = this.#marginSeconds ?? Math.min(30, c.lifetime / 5);
      if (!c.token.expiresWithin(margin)) return c.token;
    }
    return this.refresh();
  }

  /** A new token now (shared with callers already waiting for one). */
  refresh(): Promise<DelegatedToken> {
    if (!this.#pending) {
      this.#pending = (async () => {
        const token = await this.#obtain();
        this.exchanges++;
        this.#current = { token, lifetime: Math.max(token.expiresIn(), 0) };
        return token;
      })();
      const clear = () => (this.#pending = undefined);
      this.#pending.then(clear, clear);
    }
    return this.#pending;
  }

  /** Forgets the current token if it is `token` (or any, without an argument). */
  invalidate(token?: DelegatedToken): void {
    if (!token || this.#current?.token === token) this.#current = undefined;
  }

  /** Stores a token obtained elsewhere (by the MCP SDK's own token request). */
  set(token: DelegatedToken): void {
    this.#current = { token, lifetime: Math.max(token.expiresIn(), 0) };
  }

  toString(): string {
    return 'DelegatedTokenSource(..)';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/**
 * Whether a response is `invalid_token`: a 401 whose Bearer (RFC 6750 §3.1) or DPoP (RFC 9449
 * §7.1) challenge says so.
 */
export function isInvalidToken(resp: Response): boolean {
  if (resp.status !== 401) return false;
  const www = resp.headers.get('www-authenticate') ?? '';
  return /^\s*(Bearer|DPoP)\b/i.test(www) && /\berror\s*=\s*"?invalid_token"?/i.test(www);
}

/**
 * The nonce a resource server asks for (RFC 9449 §9: 401 with a DPoP challenge
 * `error="use_dpop_nonce"` and a `DPoP-Nonce` header), or undefined.
 */
export function dpopNonceRequested(resp: Response): string | undefined {
  if (resp.status !== 401) return undefined;
  const www = resp.headers.get('www-authenticate') ?? '';
  if (!/^\s*DPoP\b/i.test(www) || !/\berror\s*=\s*"?use_dpop_nonce"?/i.test(www)) return undefined;
  return resp.headers.get('dpop-nonce') ?? undefined;
}

export interface DelegatedFetchOptions {
  /** The fetch to wrap (default: the global fetch). */
  fetch?: typeof fetch;
}

/**
 * A `fetch` that sends the delegated token from `source` — `Authorization: Bearer <token>`, or for
 * a DPoP-bound token `Authorization: DPoP <token>` with a fresh `DPoP` proof of its key for this
 * request's method and URL (RFC 9449 §7.1) — gets a new token before the current one expires,
 * and on a 401 `invalid_token` gets a new one and sends the request once more. A resource
 * server's `use_dpop_nonce` (RFC 9449 §9) is answered once with a proof carrying its nonce. An
 * `Authorization` or `DPoP` header already set by the caller is replaced.
 */
export function delegatedFetch(source: DelegatedTokenSource, options: DelegatedFetchOptions = {}): typeof fetch {
  const base = options.fetch ?? fetch;
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    // Copies for the retries, taken before the body is read.
    const copies = [request.clone(), request.clone()];
    const send = async (req: Request, token: DelegatedToken, nonce?: string) => {
      const headers = new Headers(req.headers);
      headers.delete('dpop');
      for (const [k, v] of Object.entries(await token.authorizationHeaders(req.method, req.url, nonce))) headers.set(k, v);
      return base(new Request(req, { headers }));
    };
    let token = await source.get();
    let resp = await send(request, token);
    const nonce = token.dpopBound ? dpopNonceRequested(resp) : undefined;
    if (nonce !== undefined) {
      token.dpopKey?.rememberNonce(request.url, resp);
      await resp.body?.cancel().catch(() => undefined);
      resp = await send(copies.pop()!, token, nonce);
    }
    if (!isInvalidToken(resp)) return resp;
    source.invalidate(token);
    await resp.body?.cancel().catch(() => undefined);
    token = await source.refresh();
    return send(copies.pop()!, token);
  };
}
