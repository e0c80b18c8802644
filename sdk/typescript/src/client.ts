// One OAuth client of one mandate: RFC 8414 discovery, mandate's attestation endpoints, and the
// token, CIBA, revocation and introspection endpoints through oauth4webapi (its requests, its
// client authentication, its response checks).

import * as oauth from 'oauth4webapi';
import { MandateError, ProtocolError, errorOf, toMandateError } from './errors.js';
import { ApprovalRequest, DelegatedToken } from './tokens.js';
import { DpopKey } from './dpop.js';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3 token types. */
export const TT_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TT_JWT = 'urn:ietf:params:oauth:token-type:jwt';
/** CIBA Core §10.1 grant type. */
export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

export interface MandateClientOptions {
  /**
   * Allow `http:` URLs. By default only when the issuer is a loopback address (development);
   * oauth4webapi refuses plain HTTP otherwise.
   */
  allowInsecureRequests?: boolean;
  /** Timeout of each HTTP request, in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

/** What an exchange (or a CIBA request) asks for. `scope` and `audience` only narrow. */
export interface ExchangeParams {
  /** The authority handed down: a human's token, or a token delegated to the acting agent. */
  subjectToken: string;
  /** The agent token of whoever will act with the new token. */
  actorToken: string;
  /** Scopes (a list, or space-separated); none: the subject token's. */
  scope?: string | readonly string[];
  /** `audience` values (RFC 8693 §2.1), each sent as its own parameter. */
  audience?: string | readonly string[];
  /** `resource` values (RFC 8707): absolute URIs of resource servers mandate knows. */
  resource?: string | readonly string[];
  /**
   * Sign the request with this DPoP key (RFC 9449): the token is bound to it (`cnf.jkt`). When the
   * actor token is bound (attested with a proof), this must be the actor's key.
   */
  dpop?: DpopKey;
}

export interface BackchannelParams extends ExchangeParams {
  /** Shown to the human on the approvals page (CIBA Core §7.1). */
  bindingMessage?: string;
  /** Seconds the request may wait for the human, at most the server's `ciba.expiry`. */
  requestedExpiry?: number;
}

/** The agent token `/attest` answered. */
export interface AgentToken {
  agentToken: string;
  expiresIn: number;
}

function list(v: string | readonly string[] | undefined): string[] {
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : [...v];
}

function isLoopback(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || url.hostname.startsWith('127.');
}

/** A client of one mandate server, as one OAuth client (confidential, `client_secret_basic`). */
export class MandateClient {
  /** The issuer (no trailing slash). */
  readonly issuer: string;
  readonly clientId: string;
  readonly #clientSecret: string | undefined;
  readonly #client: oauth.Client;
  readonly #auth: oauth.ClientAuth;
  readonly #options: MandateClientOptions;
  #metadata: Promise<oauth.AuthorizationServer> | undefined;

  constructor(issuer: string, clientId: string, clientSecret?: string, options: MandateClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(issuer);
    } catch {
      throw new TypeError('issuer is not a URL');
    }
    this.issuer = url.href.replace(/\/$/, '');
    this.clientId = clientId;
    this.#clientSecret = clientSecret;
    this.#client = { client_id: clientId };
    this.#auth = clientSecret !== undefined ? oauth.ClientSecretBasic(clientSecret) : oauth.None();
    this.#options = { ...options, allowInsecureRequests: options.allowInsecureRequests ?? isLoopback(url) };
  }

  /**
   * The client secret, for adapters that hand it to another OAuth library (the MCP SDK's
   * token request). A secret: never log it; `toString()` and `console.log` of the client omit it.
   */
  get clientSecret(): string | undefined {
    return this.#clientSecret;
  }

  /** oauth4webapi's request options: timeout, insecure HTTP where allowed, custom fetch. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  #requestOptions(signal?: AbortSignal): oauth.HttpRequestOptions<any, any> {
    const timeout = AbortSignal.timeout(this.#options.timeoutMs ?? 30_000);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const opts: oauth.HttpRequestOptions<any, any> = {
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      [oauth.allowInsecureRequests]: this.#options.allowInsecureRequests,
    };
    if (this.#options.fetch) {
      const f = this.#options.fetch;
      opts[oauth.customFetch] = (url, init) => f(url, init as unknown as RequestInit);
    }
    return opts;
  }

  /** The server's RFC 8414 metadata, fetched once (again after a failure). */
  metadata(): Promise<oauth.AuthorizationServer> {
    if (!this.#metadata) {
      const issuer = new URL(this.issuer);
      this.#metadata = (async () => {
        try {
          const resp = await oauth.discoveryRequest(issuer, { ...this.#requestOptions(), algorithm: 'oauth2' });
          return await oauth.processDiscoveryResponse(issuer, resp);
        } catch (e) {
          throw toMandateError(e, 'discovery (RFC 8414)');
        }
      })();
      this.#metadata.catch(() => (this.#metadata = undefined));
    }
    return this.#metadata;
  }

  async #postJson(path: string, body: unknown, dpop?: DpopKey): Promise<Record<string, unknown>> {
    const f = this.#options.fetch ?? fetch;
    const url = `${this.issuer}${path}`;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (dpop) headers.dpop = await dpop.proof({ method: 'POST', url });
    let resp: Response;
    try {
      resp = await f(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw new ProtocolError('network_error', `${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    dpop?.rememberNonce(url, resp);
    const json = (await resp.json().catch(() => undefined)) as Record<string, unknown> | undefined;
    if (!resp.ok || !json || typeof json !== 'object') {
      const error = typeof json?.error === 'string' ? json.error : 'http_error';
      const desc = typeof json?.error_description === 'string' ? json.error_description : `${path} answered HTTP ${resp.status}`;
      throw errorOf(error, desc, resp.status);
    }
    return json;
  }

  /** `POST /attest/challenge` bound to `agent`: a single-use nonce. */
  async challenge(agent: string): Promise<{ nonce: string; expiresIn: number }> {
    const v = await this.#postJson('/attest/challenge', { agent });
    if (typeof v.nonce !== 'string') throw new ProtocolError('protocol_error', '/attest/challenge answered without a nonce');
    return { nonce: v.nonce, expiresIn: typeof v.expires_in === 'number' ? v.expires_in : 0 };
  }

  /**
   * `POST /attest` with the evidence (a software `proof`): an agent token. With `dpop`, the
   * request carries a DPoP proof (htu = issuer + "/attest") and the agent token is bound to that
   * key (`cnf.jkt`). A `use_dpop_nonce` refusal (OAuthError) is not retried here: mandate has
   * used up the challenge by then, so the caller starts again with a fresh challenge (the key
   * remembered the server's DPoP nonce; AgentSession does this).
   */
  async attest(agent: string, nonce: string, evidence: Record<string, unknown>, dpop?: DpopKey): Promise<AgentToken> {
    const v = await this.#postJson('/attest', { ...evidence, agent, nonce }, dpop);
    if (typeof v.agent_token !== 'string' || typeof v.expires_in !== 'number') {
      throw new ProtocolError('protocol_error', '/attest answered without agent_token and expires_in');
    }
    return { agentToken: v.agent_token, expiresIn: v.expires_in };
  }

  #exchangeParams(p: ExchangeParams): URLSearchParams {
    const form = new URLSearchParams({
      subject_token: p.subjectToken,
      subject_token_type: TT_ACCESS_TOKEN,
      actor_token: p.actorToken,
      actor_token_type: TT_JWT,
    });
    const scope = list(p.scope).join(' ');
    if (scope) form.set('scope', scope);
    for (const a of list(p.audience)) form.append('audience', a);
    for (const r of list(p.resource)) form.append('resource', r);
    return form;
  }

  /** RFC 8693 token exchange: a delegated token (errors: invalid_scope, invalid_target, invalid_grant, ...). */
  async exchange(p: ExchangeParams, signal?: AbortSignal): Promise<DelegatedToken> {
    const as = await this.metadata();
    const form = this.#exchangeParams(p);
    try {
      return await retryOnNonce(async () => {
        const resp = await oauth.genericTokenEndpointRequest(as, this.#client, this.#auth, TOKEN_EXCHANGE, form, this.#dpopOptions(p.dpop, signal));
        if (p.dpop && as.token_endpoint) p.dpop.rememberNonce(as.token_endpoint, resp);
        return tokenOf(await oauth.processGenericTokenEndpointResponse(as, this.#client, resp), p.dpop);
      }, p.dpop);
    } catch (e) {
      throw toMandateError(e, 'token exchange (RFC 8693)');
    }
  }

  /** Request options with oauth4webapi's DPoP handle of `dpop` (it signs the proof and keeps nonces). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  #dpopOptions(dpop: DpopKey | undefined, signal?: AbortSignal): oauth.TokenEndpointRequestOptions {
    const opts = this.#requestOptions(signal) as oauth.TokenEndpointRequestOptions;
    if (dpop) opts.DPoP = dpop.handle();
    return opts;
  }

  /** CIBA poll mode: asks the human to approve this exchange (CIBA Core §7.1). */
  async backchannelAuthorize(p: BackchannelParams, signal?: AbortSignal): Promise<ApprovalRequest> {
    const as = await this.metadata();
    const form = this.#exchangeParams(p);
    if (p.bindingMessage !== undefined) form.set('binding_message', p.bindingMessage);
    if (p.requestedExpiry !== undefined) form.set('requested_expiry', String(p.requestedExpiry));
    const { dpop } = p;
    try {
      return await retryOnNonce(async () => {
        const opts = this.#requestOptions(signal);
        const url = as.backchannel_authentication_endpoint;
        // oauth4webapi's CIBA request takes no DPoP handle: the proof is signed here (jose) and
        // sent as a header; the poll at the token endpoint uses the handle.
        if (dpop && url) opts.headers = { dpop: await dpop.proof({ method: 'POST', url }) };
        const resp = await oauth.backchannelAuthenticationRequest(as, this.#client, this.#auth, form, opts);
        if (dpop && url) dpop.rememberNonce(url, resp);
        const r = await oauth.processBackchannelAuthenticationResponse(as, this.#client, resp);
        return new ApprovalRequest(r.auth_req_id, r.expires_in, r.interval, dpop);
      }, dpop);
    } catch (e) {
      throw toMandateError(e, 'backchannel authentication (CIBA)');
    }
  }

  /**
   * One poll of a CIBA request (CIBA Core §10.1): the token once approved; otherwise throws
   * OAuthError `authorization_pending` / `slow_down`, ApprovalDenied or ApprovalExpired. A
   * request made with a DPoP key is polled with a proof of the same key (RFC 9449), and the
   * token is bound to it.
   */
  async poll(request: ApprovalRequest | string, signal?: AbortSignal): Promise<DelegatedToken> {
    const as = await this.metadata();
    const id = typeof request === 'string' ? request : request.authReqId;
    const dpop = typeof request === 'string' ? undefined : request.dpop;
    try {
      return await retryOnNonce(async () => {
        const resp = await oauth.backchannelAuthenticationGrantRequest(as, this.#client, this.#auth, id, this.#dpopOptions(dpop, signal));
        if (dpop && as.token_endpoint) dpop.rememberNonce(as.token_endpoint, resp);
        return tokenOf(await oauth.processBackchannelAuthenticationGrantResponse(as, this.#client, resp), dpop);
      }, dpop);
    } catch (e) {
      throw toMandateError(e, 'CIBA token request');
    }
  }

  /** RFC 7009 revocation: mandate revokes the token and every token derived from it. */
  async revoke(token: string | DelegatedToken, signal?: AbortSignal): Promise<void> {
    const as = await this.metadata();
    const value = typeof token === 'string' ? token : token.accessToken;
    try {
      const resp = await oauth.revocationRequest(as, this.#client, this.#auth, value, this.#requestOptions(signal));
      await oauth.processRevocationResponse(resp);
    } catch (e) {
      throw toMandateError(e, 'revocation (RFC 7009)');
    }
  }

  /** RFC 7662 introspection (the client must be allowed to introspect). */
  async introspect(token: string, signal?: AbortSignal): Promise<oauth.IntrospectionResponse> {
    const as = await this.metadata();
    try {
      const resp = await oauth.introspectionRequest(as, this.#client, this.#auth, token, this.#requestOptions(signal));
      return await oauth.processIntrospectionResponse(as, this.#client, resp);
    } catch (e) {
      throw toMandateError(e, 'introspection (RFC 7662)');
    }
  }

  toString(): string {
    return `MandateClient(${this.issuer}, ${this.clientId})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

function tokenOf(r: oauth.TokenEndpointResponse, dpop: DpopKey | undefined): DelegatedToken {
  // A token the server bound (token_type DPoP, RFC 9449 §5) keeps the key that proves it; an
  // unbound one does not (the server may have ignored the proof for a client with dpop = "off").
  const bound = r.token_type === 'dpop';
  return new DelegatedToken(r.access_token, { expiresIn: r.expires_in, scope: r.scope, tokenType: r.token_type, dpop: bound ? dpop : undefined });
}

/**
 * Runs `f`, and once more when the server answered `use_dpop_nonce` (RFC 9449 §8): the nonce
 * of that answer was remembered (oauth4webapi's handle, or the DpopKey) and goes in the retry.
 */
async function retryOnNonce<T>(f: () => Promise<T>, dpop: DpopKey | undefined): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const nonceError = oauth.isDPoPNonceError(e) || (e instanceof MandateError && e.error === 'use_dpop_nonce');
    if (!dpop || !nonceError) throw e;
    return f();
  }
}
