// @mandate/sdk/resource: the resource-server side. A Verifier checks a bearer token — as an
// RFC 9068 JWT against mandate's JWKS (jose's remote key set: cached, fetched again for an
// unknown kid at most once per cooldown), or by RFC 7662 introspection (oauth4webapi, with a
// short cache) — and answers a Principal (the human, the agents acting for them, the session,
// the attestation), or an RFC 6750 §3 error ready to be sent with its WWW-Authenticate header.
// It also writes the RFC 9728 protected-resource metadata document that points at mandate.

import { createHash } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { Chain, type Actor } from './chain.js';
import { MandateClient } from './client.js';
import { MandateError } from './errors.js';

export { Chain, type Actor } from './chain.js';

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

  constructor(status: 400 | 401 | 403 | 503, error: string | undefined, description?: string, scope?: readonly string[]) {
    super(error ?? 'unauthorized', description, status);
    this.status = status;
    this.scope = scope;
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
  #jwks: Promise<JWTVerifyGetKey> | undefined;
  readonly #cache = new Map<string, { principal: Principal; until: number }>();

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
    return doc;
  }

  #keySet(): Promise<JWTVerifyGetKey> {
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

  /** Verifies a bearer token: its Principal, or a TokenError `invalid_token` (401). */
  async verify(token: string): Promise<Principal> {
    return this.mode === 'jwt' ? this.#verifyJwt(token) : this.#introspect(token);
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
   * TokenError — 401 without an error code when no bearer token was sent (RFC 6750 §3.1), 400
   * invalid_request for a malformed header, 401 invalid_token, 403 insufficient_scope.
   */
  async authenticate(authorization: string | null | undefined, requiredScopes: readonly string[] = []): Promise<Principal> {
    if (!authorization || !/^bearer(\s|$)/i.test(authorization.trimStart())) {
      throw new TokenError(401, undefined);
    }
    const value = authorization.trim().slice('bearer'.length).trim();
    if (!value || !TOKEN68.test(value)) {
      throw new TokenError(400, 'invalid_request', 'the Authorization header is not "Bearer" and one token (RFC 6750 §2.1)');
    }
    const principal = await this.verify(value);
    if (!principal.hasScopes(requiredScopes)) {
      throw new TokenError(403, 'insufficient_scope', `this needs the scope ${requiredScopes.join(' ')}`, requiredScopes);
    }
    return principal;
  }

  /**
   * The headers of the answer to a refusal: the RFC 6750 §3 challenge, or for a 503 a
   * `Retry-After` (RFC 9110 §10.2.3) and no challenge.
   */
  responseHeaders(error: TokenError): Record<string, string> {
    if (error.status === 503) return { 'retry-after': String(RETRY_AFTER_SECONDS), 'cache-control': 'no-store' };
    return { 'www-authenticate': this.challenge(error), 'cache-control': 'no-store' };
  }

  /** The WWW-Authenticate value for a refusal (RFC 6750 §3, with RFC 9728 §5.1 resource_metadata). */
  challenge(error: TokenError): string {
    const params: string[] = [];
    if (this.#options.realm) params.push(`realm="${quoted(this.#options.realm)}"`);
    if (error.code) params.push(`error="${error.code}"`);
    if (error.code && error.description) params.push(`error_description="${quoted(error.description)}"`);
    if (error.scope?.length) params.push(`scope="${quoted(error.scope.join(' '))}"`);
    if (this.resourceMetadataUrl) params.push(`resource_metadata="${quoted(this.resourceMetadataUrl)}"`);
    return params.length ? `Bearer ${params.join(', ')}` : 'Bearer';
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
