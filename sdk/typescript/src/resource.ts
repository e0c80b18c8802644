// @mandate/sdk/resource: the resource-server side. A Verifier checks a bearer token — as an
// RFC 9068 JWT against mandate's JWKS (jose's remote key set: cached, fetched again for an
// unknown kid at most once per cooldown), or by RFC 7662 introspection (oauth4webapi, with a
// short cache) — and answers a Principal (the human, the agents acting for them, the session,
// the attestation), or an RFC 6750 §3 error ready to be sent with its WWW-Authenticate header.
// It also writes the RFC 9728 protected-resource metadata document that points at mandate.
// A DPoP-bound token (RFC 9449: `cnf.jkt` in the JWT or the introspection answer) is accepted
// only as `Authorization: DPoP` with a fresh proof of its key for this request (RFC 9449 §4.3,
// §7.1), each proof once (an in-memory replay cache, bounded).
// With an SsfReceiver (`verifier.ssfReceiver({...})`, SSF 1.0 push), a token that mandate's
// security events say is revoked is refused at once, in both modes.

import { createHash } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  importJWK,
  jwtVerify,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { Chain, type Actor } from './chain.js';
import { MandateClient } from './client.js';
import { MandateError } from './errors.js';
import { RevocationList, SsfReceiver, type SsfReceiverOptions } from './ssf.js';

export { Chain, type Actor } from './chain.js';
export {
  DEFAULT_MAX_ENTRIES,
  DEFAULT_RETENTION_SECONDS,
  MAX_SET_BYTES,
  RevocationList,
  SESSION_REVOKED,
  SET_CONTENT_TYPE,
  SsfReceiver,
  VERIFICATION,
  actorSubjects,
  type RevocationKind,
  type RevocationListOptions,
  type SsfAnswer,
  type SsfHost,
  type SsfReceiverOptions,
} from './ssf.js';

/** Who a verified token is for and who acts with it. */
export class Principal {
  /** The human (`sub`). */
  readonly subject: string;
  /** The agents acting for the human, in delegation order (first agent first), with `att` per hop when the token has it. */
  readonly actors: readonly Actor[];
  /** The session (`sid`): what revoking it ends. */
  readonly sessionId: string | undefined;
  readonly scopes: readonly string[];
  readonly audience: readonly string[];
  readonly clientId: string | undefined;
  readonly expiresAt: Date | undefined;
  /** `jti`. */
  readonly tokenId: string | undefined;
  /** The thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449 §6), if DPoP-bound. */
  readonly jkt: string | undefined;
  /** Every claim, as verified (JWT) or as introspection answered. */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly #chain: Chain;

  constructor(claims: Record<string, unknown>) {
    this.claims = claims;
    this.#chain = Chain.fromClaims(claims as JWTPayload);
    this.subject = this.#chain.subject;
    this.actors = this.#chain.actors;
    this.sessionId = typeof claims.sid === 'string' ? claims.sid : undefined;
    this.scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
    this.audience = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
    this.clientId = typeof claims.client_id === 'string' ? claims.client_id : undefined;
    this.expiresAt = typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : undefined;
    this.tokenId = typeof claims.jti === 'string' ? claims.jti : undefined;
    const cnf = claims.cnf as { jkt?: unknown } | undefined;
    this.jkt = cnf && typeof cnf === 'object' && typeof cnf.jkt === 'string' ? cnf.jkt : undefined;
  }

  /** The agent acting now (the outermost `act`), or undefined for a human's own token. */
  get agent(): Actor | undefined {
    return this.#chain.agent;
  }

  /** How the acting agent proved itself at mandate (`software`, `tpm`: its `att` claim), when the token says. */
  get attestation(): string | undefined {
    return this.#chain.attestation;
  }

  /** Whether every scope of `scopes` was granted. */
  hasScopes(scopes: readonly string[]): boolean {
    return scopes.every((s) => this.scopes.includes(s));
  }

  /** `alice → planner → payments-bot`. */
  toString(): string {
    return this.#chain.toString();
  }

  toJSON(): Record<string, unknown> {
    return {
      subject: this.subject,
      actors: this.actors,
      agent: this.agent?.name,
      attestation: this.attestation,
      sessionId: this.sessionId,
      scopes: this.scopes,
      audience: this.audience,
      clientId: this.clientId,
      expiresAt: this.expiresAt?.toISOString(),
      tokenId: this.tokenId,
      ...(this.jkt ? { jkt: this.jkt } : {}),
      chain: this.toString(),
    };
  }
}

/**
 * A refusal per RFC 6750 §3: `status` 401 (no token: `error` undefined, §3.1; or
 * `invalid_token`), 403 `insufficient_scope` with the `scope` needed, or 400 `invalid_request`.
 */
export class TokenError extends MandateError {
  /**
   * 400, 401 or 403 as RFC 6750 §3 says; 503 (`temporarily_unavailable`) when mandate could not
   * be asked — the token may be fine, so it is not called invalid (a client would throw it away
   * and ask the same unreachable server for another).
   */
  override readonly status: 400 | 401 | 403 | 503;
  /** The scopes the request needed (insufficient_scope). */
  readonly scope: readonly string[] | undefined;
  /** Whether the challenge is a DPoP one (RFC 9449 §7.1): the request used DPoP or the token is bound. */
  readonly dpop: boolean;

  constructor(status: 400 | 401 | 403 | 503, error: string | undefined, description?: string, scope?: readonly string[], options: { dpop?: boolean } = {}) {
    super(error ?? 'unauthorized', description, status);
    this.status = status;
    this.scope = scope;
    this.dpop = options.dpop ?? false;
  }

  /** The RFC 6750 error code, undefined when no token was sent. */
  get code(): string | undefined {
    return this.error === 'unauthorized' ? undefined : this.error;
  }

  /** The JSON body sent with the error (no `error` member when no token was sent, like the header). */
  body(): Record<string, string> {
    return this.code
      ? { error: this.code, ...(this.description ? { error_description: this.description } : {}) }
      : { error_description: 'a bearer token is required' };
  }
}

export type VerifierMode = 'jwt' | 'introspection';

export interface VerifierOptions {
  /** mandate's issuer URL. */
  issuer: string;
  /** This resource server's audience: its `audience` string or its resource URI. */
  audience: string;
  /** `jwt` (default): verify against the JWKS. `introspection`: ask mandate (RFC 7662). */
  mode?: VerifierMode;
  /** Introspection: this resource server's client at mandate (`introspect = true`). */
  clientId?: string;
  clientSecret?: string;
  /**
   * The RFC 9728 resource identifier (an https URL; http on loopback). Default: `audience`
   * when it is an http(s) URL.
   */
  resource?: string;
  /** Where the RFC 9728 document is served. Default: derived from `resource` (RFC 9728 §3.1). */
  resourceMetadataUrl?: string;
  /** RFC 9728 `scopes_supported`. */
  scopesSupported?: readonly string[];
  /** RFC 9728 `resource_name`. */
  resourceName?: string;
  /** The `realm` of WWW-Authenticate (RFC 6750 §3). */
  realm?: string;
  /** Leeway for exp/nbf/iat, in seconds (default 30). */
  clockToleranceSeconds?: number;
  /** JWT: an unknown `kid` fetches the JWKS again at most once per this many seconds (default 30). */
  jwksCooldownSeconds?: number;
  /** JWT: the JWKS is fetched again after this many seconds (default 600). */
  jwksMaxAgeSeconds?: number;
  /** Introspection: active answers are kept this many seconds, never past `exp` (default 30; 0: none). */
  introspectionCacheSeconds?: number;
  /** Allow plain http to mandate (default: only on loopback). */
  allowInsecureRequests?: boolean;
  /**
   * DPoP: the URL clients reach this server at (scheme, host, port, and a path prefix a proxy
   * strips), e.g. `https://api.example.com`; a request's path is appended to it to get the `htu`
   * its proof must name (RFC 9449 §4.3). Default: the URL the framework saw, which is wrong
   * behind a TLS-terminating or path-rewriting proxy.
   */
  externalUrl?: string;
  /** DPoP: proof algorithms accepted (default ES256, ES384, PS256, RS256, EdDSA; asymmetric only). */
  dpopAlgorithms?: readonly string[];
  /** DPoP: a proof's `iat` may be this many seconds old (default 60)... */
  dpopMaxAgeSeconds?: number;
  /** ...and this many seconds ahead (default 10). */
  dpopFutureSeconds?: number;
  /** DPoP: how many proof `jti`s the replay cache holds at most (default 10 000; oldest dropped first). */
  dpopReplayCacheSize?: number;
}

/** What DPoP checks need of the request (RFC 9449 §4.3): the frameworks' middleware passes it. */
export interface RequestInfo {
  /** The HTTP method. */
  method: string;
  /** The request URL (absolute; with `externalUrl` set only its path counts). */
  url: string | URL;
  /** The `DPoP` header(s) as received. */
  dpop?: string | readonly string[] | null;
}

const DPOP_ALGS = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'];
/** JWK members of private or symmetric keys (RFC 7518 §6): never in a proof's `jwk` (RFC 9449 §4.3). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** Proof `jti`s seen recently, each kept until its proof's `iat` is out of the window; bounded. */
class ReplayCache {
  readonly #seen = new Map<string, number>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** Records `key` until `until` (ms); false when it was already there. */
  add(key: string, until: number, now = Date.now()): boolean {
    for (const [k, t] of this.#seen) {
      if (t > now) break;
      this.#seen.delete(k);
    }
    const t = this.#seen.get(key);
    if (t !== undefined && t > now) return false;
    while (this.#seen.size >= this.#max) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(key, until);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }
}

function invalidProof(description: string): TokenError {
  return new TokenError(401, 'invalid_dpop_proof', description, undefined, { dpop: true });
}

function invalidDpopToken(description: string): TokenError {
  return new TokenError(401, 'invalid_token', description, undefined, { dpop: true });
}

/** `htu` comparison form (RFC 9449 §4.3 item 9): scheme, host, port and path; no query or fragment. */
function htuForm(url: string | URL): string | undefined {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return undefined;
  }
}

const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Seconds a client is asked to wait when mandate could not be asked. */
const RETRY_AFTER_SECONDS = 5;

function unavailable(description: string): TokenError {
  return new TokenError(503, 'temporarily_unavailable', description);
}

/** Quoted-string content for a header parameter: no quotes, backslashes or control characters. */
function quoted(s: string): string {
  return s.replace(/["\\\u0000-\u001f\u007f]/g, ' ');
}

function describe(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return 'the token is not for this resource server';
    if (e.claim === 'iss') return 'the token was not issued by the expected issuer';
    if (e.claim === 'typ') return 'the token is not an access token (typ must be at+jwt, RFC 9068 §4)';
    if (e.claim === 'nbf') return 'the token is not valid yet';
    return `the token's ${e.claim} claim is not acceptable`;
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is not signed with ES256';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is not valid';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'the token was not signed by a key of the issuer';
  if (e instanceof joseErrors.JWSInvalid || e instanceof joseErrors.JWTInvalid) return 'the token is not a well-formed JWT';
  return 'the token could not be verified';
}

/** Checks bearer tokens for one resource server. */
export class Verifier {
  readonly issuer: string;
  readonly audience: string;
  readonly mode: VerifierMode;
  readonly resource: string | undefined;
  readonly resourceMetadataUrl: string | undefined;
  readonly #options: VerifierOptions;
  readonly #client: MandateClient;
  #jwks: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;
  #revocations: RevocationList[] = [];
  readonly #cache = new Map<string, { principal: Principal; until: number }>();
  readonly #replay: ReplayCache;
  /** DPoP proof algorithms accepted. */
  readonly dpopAlgorithms: readonly string[];

  constructor(options: VerifierOptions) {
    this.#options = options;
    this.issuer = options.issuer.replace(/\/$/, '');
    this.audience = options.audience;
    this.mode = options.mode ?? 'jwt';
    if (this.mode === 'introspection' && (!options.clientId || options.clientSecret === undefined)) {
      throw new TypeError('introspection needs clientId and clientSecret (a mandate client with introspect = true)');
    }
    this.#client = new MandateClient(this.issuer, options.clientId ?? 'resource-server', options.clientSecret, {
      allowInsecureRequests: options.allowInsecureRequests,
    });
    this.resource = options.resource ?? (/^https?:\/\//i.test(options.audience) ? options.audience : undefined);
    this.resourceMetadataUrl = options.resourceMetadataUrl ?? (this.resource ? metadataUrlFor(this.resource) : undefined);
    this.dpopAlgorithms = [...(options.dpopAlgorithms ?? DPOP_ALGS)];
    if (this.dpopAlgorithms.some((a) => !DPOP_ALGS.includes(a))) {
      throw new TypeError(`DPoP proof algorithms must be among ${DPOP_ALGS.join(', ')}`);
    }
    if (options.externalUrl !== undefined && !/^https?:\/\//i.test(options.externalUrl)) {
      throw new TypeError('externalUrl must be an http(s) URL');
    }
    this.#replay = new ReplayCache(options.dpopReplayCacheSize ?? 10_000);
  }

  /** The path the RFC 9728 document is served at (RFC 9728 §3.1: the well-known name before the resource's path). */
  get metadataPath(): string {
    return this.resourceMetadataUrl ? new URL(this.resourceMetadataUrl).pathname : '/.well-known/oauth-protected-resource';
  }

  /** The RFC 9728 §2 protected-resource metadata, naming mandate as the authorization server. */
  metadata(): Record<string, unknown> {
    if (!this.resource) {
      throw new TypeError('RFC 9728 metadata names the resource by its URL: set `resource` (or use the resource URI as `audience`)');
    }
    const doc: Record<string, unknown> = {
      resource: this.resource,
      authorization_servers: [this.issuer],
      bearer_methods_supported: ['header'],
    };
    if (this.#options.scopesSupported) doc.scopes_supported = [...this.#options.scopesSupported];
    if (this.#options.resourceName) doc.resource_name = this.#options.resourceName;
    // RFC 9728 §2: the algorithms this resource server accepts for DPoP proofs.
    doc.dpop_signing_alg_values_supported = [...this.dpopAlgorithms];
    return doc;
  }

  #keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (!this.#jwks) {
      this.#jwks = (async () => {
        const md = await this.#client.metadata();
        if (!md.jwks_uri) throw new TypeError('the issuer metadata has no jwks_uri');
        return createRemoteJWKSet(new URL(md.jwks_uri), {
          cooldownDuration: (this.#options.jwksCooldownSeconds ?? 30) * 1000,
          cacheMaxAge: (this.#options.jwksMaxAgeSeconds ?? 600) * 1000,
        });
      })();
      this.#jwks.catch(() => (this.#jwks = undefined));
    }
    return this.#jwks;
  }

  /**
   * Verifies a bearer token: its Principal, or a TokenError `invalid_token` (401), also for a
   * token that a security event from an {@link ssfReceiver} revoked.
   */
  async verify(token: string): Promise<Principal> {
    const principal = this.mode === 'jwt' ? await this.#verifyJwt(token) : await this.#introspect(token);
    for (const list of this.#revocations) {
      const why = list.revoked(principal.claims);
      if (why) throw new TokenError(401, 'invalid_token', `${why} (a security event from the authorization server)`);
    }
    return principal;
  }

  /**
   * A receiver of mandate's pushed security events (SSF 1.0, RFC 8935) for this Verifier:
   * from then on a token a SET it accepts names is refused (401 `invalid_token`), in both
   * modes, and dropped from the introspection cache. Mount it with `ssfEvents` (Hono,
   * Express) at the stream's `endpoint_url`, or call its `fetch(request)`.
   */
  ssfReceiver(options: SsfReceiverOptions): SsfReceiver {
    const receiver = new SsfReceiver(
      {
        issuer: this.issuer,
        audience: this.audience,
        ssfKeySet: () => this.#keySet(),
        ssfRevoked: () => this.#forgetRevoked(),
      },
      options,
    );
    this.#revocations.push(receiver.revocations);
    return receiver;
  }

  /** Drops cached introspection answers that a security event revoked. */
  #forgetRevoked(): void {
    for (const [key, { principal }] of this.#cache) {
      if (this.#revocations.some((r) => r.revoked(principal.claims))) this.#cache.delete(key);
    }
  }

  async #verifyJwt(token: string): Promise<Principal> {
    let jwks: JWTVerifyGetKey;
    try {
      jwks = await this.#keySet();
    } catch (e) {
      throw unavailable(`the issuer's keys could not be fetched`);
    }
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: this.issuer,
        audience: this.audience,
        algorithms: ['ES256'],
        typ: 'at+jwt',
        clockTolerance: this.#options.clockToleranceSeconds ?? 30,
        // RFC 9068 §2.2: the claims every JWT access token carries.
        requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id'],
      });
      // jose checks iat only against a maximum age: a token issued in the future is refused here.
      const leeway = this.#options.clockToleranceSeconds ?? 30;
      if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + leeway) {
        throw new TokenError(401, 'invalid_token', 'the token was issued in the future');
      }
      return new Principal(payload as Record<string, unknown>);
    } catch (e) {
      if (e instanceof TokenError) throw e;
      // The key set could not be fetched or read (jose fetches it inside jwtVerify): mandate's
      // side, not the token's.
      if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JWKSInvalid || !(e instanceof joseErrors.JOSEError)) {
        throw unavailable(`the issuer's keys could not be fetched`);
      }
      throw new TokenError(401, 'invalid_token', describe(e));
    }
  }

  async #introspect(token: string): Promise<Principal> {
    const key = createHash('sha256').update(token).digest('base64url');
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && hit.until > now) return hit.principal;
    if (hit) this.#cache.delete(key);
    let info: oauth.IntrospectionResponse;
    try {
      info = await this.#client.introspect(token);
    } catch (e) {
      throw unavailable('the token could not be checked with the issuer');
    }
    if (!info.active) throw new TokenError(401, 'invalid_token', 'the token is not active');
    if (info.iss !== undefined && info.iss !== this.issuer) throw new TokenError(401, 'invalid_token', 'the token was not issued by the expected issuer');
    const aud = typeof info.aud === 'string' ? [info.aud] : (info.aud ?? []);
    if (!aud.includes(this.audience)) throw new TokenError(401, 'invalid_token', 'the token is not for this resource server');
    const leeway = (this.#options.clockToleranceSeconds ?? 30) * 1000;
    if (typeof info.exp === 'number' && info.exp * 1000 + leeway <= now) throw new TokenError(401, 'invalid_token', 'the token has expired');
    const principal = new Principal({ ...info });
    const ttl = (this.#options.introspectionCacheSeconds ?? 30) * 1000;
    if (ttl > 0) {
      const until = Math.min(now + ttl, typeof info.exp === 'number' ? info.exp * 1000 : now + ttl);
      if (this.#cache.size >= 10_000) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(key, { principal, until });
    }
    return principal;
  }

  /**
   * Checks a request's `Authorization` header and the route's scopes: the Principal, or a
   * TokenError — 401 without an error code when no token was sent (RFC 6750 §3.1), 400
   * invalid_request for a malformed header, 401 invalid_token, 403 insufficient_scope.
   *
   * DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) must come as `Authorization: DPoP` with
   * one `DPoP` proof for this request — `request` gives its method, URL and DPoP header (the
   * Hono and Express middleware pass them). Without `request` a bound token is refused. A bound
   * token sent as Bearer, a proof by another key, or none: 401 `invalid_token`; a malformed,
   * stale, replayed proof or one for another method, URL or token: 401 `invalid_dpop_proof`;
   * both with a DPoP challenge (RFC 9449 §7.1). An unbound token sent as DPoP is refused too.
   */
  async authenticate(authorization: string | null | undefined, requiredScopes: readonly string[] = [], request?: RequestInfo): Promise<Principal> {
    const m = /^(bearer|dpop)(?:\s+(.*))?$/is.exec((authorization ?? '').trim());
    if (!m) throw new TokenError(401, undefined);
    const dpop = m[1]!.toLowerCase() === 'dpop';
    const value = (m[2] ?? '').trim();
    if (!value || !TOKEN68.test(value)) {
      const scheme = dpop ? 'DPoP' : 'Bearer';
      throw new TokenError(400, 'invalid_request', `the Authorization header is not "${scheme}" and one token (RFC 6750 §2.1, RFC 9449 §7.1)`, undefined, { dpop });
    }
    let principal: Principal;
    try {
      principal = await this.verify(value);
    } catch (e) {
      // The same refusal, with a DPoP challenge when the request used DPoP.
      if (dpop && e instanceof TokenError && e.status !== 503) throw new TokenError(e.status, e.code, e.description, e.scope, { dpop: true });
      throw e;
    }
    if (principal.jkt !== undefined) {
      if (!dpop) throw invalidDpopToken('the token is DPoP-bound: send it as "Authorization: DPoP" with a DPoP proof (RFC 9449 §7.1)');
      await this.#checkProof(value, principal.jkt, request);
    } else if (dpop) {
      throw invalidDpopToken('the token is not DPoP-bound: send it as "Authorization: Bearer" (RFC 9449 §7.2)');
    }
    if (!principal.hasScopes(requiredScopes)) {
      throw new TokenError(403, 'insufficient_scope', `this needs the scope ${requiredScopes.join(' ')}`, requiredScopes, { dpop });
    }
    return principal;
  }

  /** The `htu` a proof for `url` must name: `externalUrl` + the path, or the URL itself. */
  #expectedHtu(url: string | URL): string | undefined {
    const ext = this.#options.externalUrl;
    if (ext === undefined) return htuForm(url);
    let path: string;
    try {
      path = new URL(url, 'http://relative.invalid').pathname;
    } catch {
      return undefined;
    }
    return htuForm(`${ext.replace(/\/+$/, '')}${path}`);
  }

  /** RFC 9449 §4.3 (and §7.1 ath, key binding): the proof of the request, against the token. */
  async #checkProof(token: string, jkt: string, request: RequestInfo | undefined): Promise<void> {
    if (!request) throw invalidDpopToken('the token is DPoP-bound and the request could not be checked');
    const raw = request.dpop;
    const values = raw === undefined || raw === null ? [] : typeof raw === 'string' ? [raw] : [...raw];
    if (values.length === 0 || values.every((v) => v.trim() === '')) throw invalidDpopToken('a DPoP proof is required with a DPoP-bound token (RFC 9449 §7.1)');
    // Item 1: exactly one DPoP header (two headers reach us as one value joined by a comma).
    const proof = values.length === 1 ? values[0]!.trim() : '';
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) {
      throw invalidProof('there must be exactly one DPoP header holding one JWT (RFC 9449 §4.3)');
    }
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw invalidProof('the DPoP proof is not a well-formed JWT');
    }
    // Items 4-6: typ, an accepted asymmetric alg, a public jwk.
    if (header.typ !== 'dpop+jwt') throw invalidProof('the DPoP proof typ must be dpop+jwt');
    if (typeof header.alg !== 'string' || !this.dpopAlgorithms.includes(header.alg)) {
      throw invalidProof(`the DPoP proof alg must be one of ${this.dpopAlgorithms.join(' ')}`);
    }
    const jwk = header.jwk as JWK | undefined;
    if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk) || typeof jwk.kty !== 'string') {
      throw invalidProof('the DPoP proof has no jwk header');
    }
    if (jwk.kty === 'oct' || PRIVATE_JWK_MEMBERS.some((k) => k in jwk)) throw invalidProof('the DPoP proof jwk must be a public key');
    // Item 7: the signature, by the key in the header.
    let claims: JWTPayload;
    try {
      const key = await importJWK(jwk, header.alg);
      if (!(key instanceof CryptoKey) || key.type !== 'public') throw new TypeError('not a public key');
      ({ payload: claims } = await jwtVerify(proof, key, { algorithms: [header.alg], typ: 'dpop+jwt' }));
    } catch {
      throw invalidProof('the DPoP proof signature does not verify with its jwk');
    }
    // Item 8-11: htm, htu, iat, jti.
    const { jti, htm, htu, iat, ath } = claims as Record<string, unknown>;
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw invalidProof('the DPoP proof needs a jti');
    if (typeof htm !== 'string' || htm !== request.method.toUpperCase()) throw invalidProof('the DPoP proof htm is not the method of this request');
    const expected = this.#expectedHtu(request.url);
    if (expected === undefined) throw new TypeError('DPoP: the request URL is not absolute: set the Verifier\'s externalUrl');
    if (typeof htu !== 'string' || htuForm(htu) !== expected) throw invalidProof('the DPoP proof htu is not the URL of this request');
    const now = Date.now() / 1000;
    const maxAge = this.#options.dpopMaxAgeSeconds ?? 60;
    const ahead = this.#options.dpopFutureSeconds ?? 10;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('the DPoP proof needs an iat');
    if (iat < now - maxAge) throw invalidProof('the DPoP proof is too old');
    if (iat > now + ahead) throw invalidProof('the DPoP proof was issued in the future');
    // §4.3 item 12 / §7.1: ath is the hash of this very token.
    const want = createHash('sha256').update(token, 'ascii').digest('base64url');
    if (typeof ath !== 'string' || ath !== want) throw invalidProof('the DPoP proof ath is not the hash of this access token');
    // §7.1 / §6: the proof's key is the one the token is bound to.
    let thumb: string;
    try {
      thumb = await calculateJwkThumbprint(jwk, 'sha256');
    } catch {
      throw invalidProof('the DPoP proof jwk has no RFC 7638 thumbprint');
    }
    if (thumb !== jkt) throw invalidDpopToken('the DPoP proof is not signed by the key the token is bound to');
    // §11.1: each proof once. Kept until its iat leaves the window.
    if (!this.#replay.add(`${jkt}:${jti}`, (iat + maxAge + 1) * 1000)) throw invalidProof('the DPoP proof was used before');
  }

  /**
   * The headers of the answer to a refusal: the RFC 6750 §3 challenge, or for a 503 a
   * `Retry-After` (RFC 9110 §10.2.3) and no challenge.
   */
  responseHeaders(error: TokenError): Record<string, string> {
    if (error.status === 503) return { 'retry-after': String(RETRY_AFTER_SECONDS), 'cache-control': 'no-store' };
    return { 'www-authenticate': this.challenge(error), 'cache-control': 'no-store' };
  }

  /**
   * The WWW-Authenticate value for a refusal (RFC 6750 §3, with RFC 9728 §5.1 resource_metadata),
   * a `DPoP` challenge with `algs` when the request used DPoP or the token is bound (RFC 9449 §7.1).
   */
  challenge(error: TokenError): string {
    const params: string[] = [];
    const scheme = error.dpop ? 'DPoP' : 'Bearer';
    if (this.#options.realm) params.push(`realm="${quoted(this.#options.realm)}"`);
    if (error.code) params.push(`error="${error.code}"`);
    if (error.code && error.description) params.push(`error_description="${quoted(error.description)}"`);
    if (error.scope?.length) params.push(`scope="${quoted(error.scope.join(' '))}"`);
    if (this.resourceMetadataUrl) params.push(`resource_metadata="${quoted(this.resourceMetadataUrl)}"`);
    // RFC 9449 §7.1: a DPoP challenge names the proof algorithms accepted.
    if (error.dpop) params.push(`algs="${this.dpopAlgorithms.join(' ')}"`);
    return params.length ? `${scheme} ${params.join(', ')}` : scheme;
  }

  toString(): string {
    return `Verifier(${this.mode}, ${this.audience} at ${this.issuer})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** RFC 9728 §3.1: `https://host/.well-known/oauth-protected-resource` + the resource's path. */
export function metadataUrlFor(resource: string): string {
  const u = new URL(resource);
  const path = u.pathname === '/' ? '' : u.pathname;
  return `${u.origin}/.well-known/oauth-protected-resource${path}`;
}
