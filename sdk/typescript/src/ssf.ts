// Receiving mandate's security events: an OpenID Shared Signals (SSF 1.0) push receiver. mandate
// pushes a Security Event Token (RFC 8417) for every revocation to each `[[ssf.streams]]`
// receiver (RFC 8935); a Verifier with an SsfReceiver then refuses the revoked tokens at once,
// in JWT mode without introspecting, and drops them from its introspection cache. The
// receiver is made by `verifier.ssfReceiver({...})` and mounted with `ssfEvents` from
// `@mandate/sdk/hono` or `@mandate/sdk/express`, or called as a fetch-style handler.

import { timingSafeEqual, createHash } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, errors as joseErrors, type JWTVerifyGetKey } from 'jose';

/** CAEP 1.0 §3.1: the event mandate sends for every revocation. */
export const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
/** SSF 1.0 §8.1.4.2: the verification event (accepted; nothing to do). */
export const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
/** RFC 8935 §2: the media type of a pushed SET. */
export const SET_CONTENT_TYPE = 'application/secevent+jwt';
/** The largest push accepted by default, in bytes (mandate's SETs are well under 2 KiB). */
export const MAX_SET_BYTES = 64 * 1024;
/**
 * How long a revocation is remembered by default, in seconds: an hour, longer than the tokens
 * mandate issues by default (access tokens 10 minutes, agent tokens 5).
 */
export const DEFAULT_RETENTION_SECONDS = 3600;
/** How many revocations (and, apart, SET `jti`s) are remembered at most by default. */
export const DEFAULT_MAX_ENTRIES = 10_000;

/** What a revocation names: a session (`sid`, or a sessionless token's `jti`), a subject (`sub` or an actor in `act`), or a client (`client_id`). */
export type RevocationKind = 'session' | 'subject' | 'client';

/** The subjects of a token's RFC 8693 §4.1 `act` chain, outermost (newest) first. */
export function actorSubjects(claims: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  let act = claims.act as Record<string, unknown> | undefined;
  for (let i = 0; i < 32 && act && typeof act === 'object'; i++) {
    if (typeof act.sub === 'string') out.push(act.sub);
    act = act.act as Record<string, unknown> | undefined;
  }
  return out;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Options of a {@link RevocationList}. */
export interface RevocationListOptions {
  /** Seconds a revocation is remembered (default 3600; at least the longest lifetime of the tokens accepted). */
  retentionSeconds?: number;
  /** The most revocations held (default 10 000). */
  maxEntries?: number;
  /** A monotonic clock in milliseconds (tests pass their own). */
  now?: () => number;
}

/**
 * What security events said is revoked, bounded in time and size. A `subject` or `client`
 * entry covers only tokens issued (`iat`) at or before the event's time; a `session` entry
 * every token with that `sid` or `jti`. Each entry is kept `retentionSeconds` after it
 * arrived. When `maxEntries` are held the oldest is evicted and the {@link watermark} rises to
 * its event time: every token issued at or before it is refused (fail closed) until
 * `retentionSeconds` have passed, by when those tokens have expired.
 */
/** Seconds after a revocation's `event_timestamp` that a token's `iat` is still covered by it: mandate's replicas (and its CLI) stamp with their own clocks. */
export const CLOCK_SKEW_SECONDS = 5;

export class RevocationList {
  readonly retentionMs: number;
  readonly maxEntries: number;
  /** How many entries were evicted because the list was full. */
  evicted = 0;
  readonly #now: () => number;
  /** `kind id` → event time (seconds, the issuer's clock) and when to forget it (ms, local). */
  readonly #entries = new Map<string, { at: number; until: number }>();
  #watermark: number | undefined;
  #watermarkUntil = 0;

  constructor(options: RevocationListOptions = {}) {
    const retention = options.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
    const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!(retention > 0) || !(max >= 1)) throw new TypeError('retentionSeconds is positive and maxEntries at least 1');
    this.retentionMs = retention * 1000;
    this.maxEntries = Math.floor(max);
    this.#now = options.now ?? (() => performance.now());
  }

  #expire(now: number): void {
    for (const [k, v] of this.#entries) {
      if (v.until > now) break;
      this.#entries.delete(k);
    }
    if (this.#watermark !== undefined && this.#watermarkUntil <= now) this.#watermark = undefined;
  }

  /** How many revocations are held. */
  get size(): number {
    this.#expire(this.#now());
    return this.#entries.size;
  }

  /** Tokens issued at or before this time (seconds) are refused because a revocation was evicted; undefined when none was. */
  get watermark(): number | undefined {
    this.#expire(this.#now());
    return this.#watermark;
  }

  /** Remembers that `kind` `id` was revoked at `eventTime` (seconds, the issuer's clock). */
  add(kind: RevocationKind, id: string, eventTime: number): void {
    const now = this.#now();
    this.#expire(now);
    const key = `${kind} ${id}`;
    const old = this.#entries.get(key);
    if (old) {
      eventTime = Math.max(eventTime, old.at);
      this.#entries.delete(key);
    }
    while (this.#entries.size >= this.maxEntries) {
      const [k, v] = this.#entries.entries().next().value!;
      this.#entries.delete(k);
      // Fail closed: what the evicted entry covered stays refused.
      this.#watermark = Math.max(this.#watermark ?? -Infinity, v.at);
      this.#watermarkUntil = now + this.retentionMs;
      this.evicted++;
    }
    this.#entries.set(key, { at: eventTime, until: now + this.retentionMs });
  }

  /** Why a token with these claims (JWT claims or an introspection answer) is revoked, or undefined. A token without `iat` is refused by any entry naming it. */
  revoked(claims: Readonly<Record<string, unknown>>): string | undefined {
    this.#expire(this.#now());
    const iat = num(claims.iat);
    // Replicas (and the CLI) stamp with their own clocks: a token issued just before the
    // revocation by a replica whose clock runs ahead still counts.
    const covers = (t: number) => iat === undefined || iat <= t + CLOCK_SKEW_SECONDS;
    if (this.#watermark !== undefined && covers(this.#watermark)) return 'the token was issued before revocations this server had to forget';
    for (const c of [claims.sid, claims.jti]) {
      if (typeof c === 'string' && this.#entries.has(`session ${c}`)) return "the token's session was revoked";
    }
    if (typeof claims.client_id === 'string') {
      const hit = this.#entries.get(`client ${claims.client_id}`);
      if (hit && covers(hit.at)) return "the token's client was revoked";
    }
    const subs = [...(typeof claims.sub === 'string' ? [claims.sub] : []), ...actorSubjects(claims)];
    for (const s of subs) {
      const hit = this.#entries.get(`subject ${s}`);
      if (hit && covers(hit.at)) return "the token's subject or one of its agents was revoked";
    }
    return undefined;
  }

  toString(): string {
    return `RevocationList(${this.size} entries)`;
  }
}

/** The answer to a push: status, a JSON body (or none) and headers. */
export interface SsfAnswer {
  status: 202 | 400 | 401 | 503;
  body?: { err: string; description: string };
  headers: Record<string, string>;
}

/** Options of {@link Verifier.ssfReceiver}. */
export interface SsfReceiverOptions {
  /** The whole `Authorization` header value mandate sends (the stream's `authorization_header_file`), e.g. `Bearer 9f1c...`. Required. */
  authorization: string;
  /** The stream's `audience` (a SET's `aud` must be it); default the Verifier's audience. */
  audience?: string;
  /** Seconds each revocation (and SET `jti`) is remembered (default 3600). */
  retentionSeconds?: number;
  /** The most revocations (and SET `jti`s) remembered (default 10 000). */
  maxEntries?: number;
  /** The largest push accepted, in bytes (default 64 KiB). */
  maxBodyBytes?: number;
  /** A monotonic clock in milliseconds (tests). */
  now?: () => number;
}

/** What a receiver needs of its Verifier (the Verifier passes itself). */
export interface SsfHost {
  readonly issuer: string;
  readonly audience: string;
  /** The issuer's key set (jose's remote JWKS: refetched for an unknown kid, at most once per cooldown). */
  ssfKeySet(): Promise<JWTVerifyGetKey & { coolingDown?: boolean }>;
  /** Called after revocations were added: drop cached introspection answers they cover. */
  ssfRevoked(): void;
}

class Refusal extends Error {
  constructor(
    readonly err: string,
    readonly description: string,
    readonly status: 400 | 503 = 400,
  ) {
    super(description);
  }

  answer(): SsfAnswer {
    const headers: Record<string, string> = { 'cache-control': 'no-store' };
    if (this.status === 503) headers['retry-after'] = '5';
    return { status: this.status, body: { err: this.err, description: this.description }, headers };
  }
}

const ACCEPTED: SsfAnswer = { status: 202, headers: {} };
const SET_TYPES = ['secevent+jwt', 'application/secevent+jwt'];

/**
 * An RFC 8935 push receiver of mandate's SETs, bound to a Verifier (make it with
 * `verifier.ssfReceiver({ authorization })`). For each push: the `Authorization` header
 * against the configured value, in constant time (else 401); `Content-Type:
 * application/secevent+jwt`; at most `maxBodyBytes` (else 400); then the SET: `typ`
 * `secevent+jwt`, ES256 under a `kid` of the issuer's JWKS, `iss` the issuer, `aud` the
 * audience, `iat`, `jti` and `events` present. A refused SET is 400 `{"err", "description"}`
 * (RFC 8935 §2.3); an accepted one 202, also when its `jti` was handled already.
 *
 * CAEP `session-revoked` is applied by its `sub_id` (SSF 1.0 §3, RFC 9493): `complex` with a
 * `session` (every token whose `sid`, or `jti`, is that id), `iss_sub` (every token whose
 * `sub` is that subject or whose `act` chain names it, issued at or before `event_timestamp`),
 * `complex` with an `application` (every token of that `client_id` issued at or before it).
 * The verification event and unknown event types are accepted and change nothing; a subject
 * it cannot apply is refused (400) rather than dropped.
 */
export class SsfReceiver {
  readonly audience: string;
  readonly maxBodyBytes: number;
  /** The revocations this receiver was told of; the Verifier refuses what they cover. */
  readonly revocations: RevocationList;
  readonly #host: SsfHost;
  readonly #authorization: Buffer;
  readonly #seen = new Map<string, number>();
  readonly #now: () => number;

  constructor(host: SsfHost, options: SsfReceiverOptions) {
    if (typeof options.authorization !== 'string' || !options.authorization.trim()) {
      throw new TypeError('authorization: the Authorization header value mandate sends is required');
    }
    this.#host = host;
    this.audience = options.audience ?? host.audience;
    this.#authorization = Buffer.from(options.authorization.trim());
    this.maxBodyBytes = options.maxBodyBytes ?? MAX_SET_BYTES;
    if (!(this.maxBodyBytes > 0 && this.maxBodyBytes <= 1024 * 1024)) throw new TypeError('maxBodyBytes is between 1 byte and 1 MiB');
    this.#now = options.now ?? (() => performance.now());
    this.revocations = new RevocationList({ retentionSeconds: options.retentionSeconds, maxEntries: options.maxEntries, now: this.#now });
  }

  /**
   * The answer to a push refused before its body is read (the credential, the media type, a
   * declared length over `maxBodyBytes`), or undefined to go on.
   */
  checkRequest(authorization: string | null | undefined, contentType: string | null | undefined, contentLength?: string | null): SsfAnswer | undefined {
    // RFC 8935 §2 / RFC 7235: the transmitter's credential, compared in constant time (by
    // hashes, so that the lengths need not match).
    const digest = (b: Buffer) => createHash('sha256').update(b).digest();
    const given = Buffer.from((authorization ?? '').trim());
    if (!timingSafeEqual(digest(given), digest(this.#authorization))) {
      // A fixed challenge: the configured value may be a bare secret with no scheme.
      return {
        status: 401,
        body: { err: 'authentication_failed', description: 'the Authorization header is missing or wrong' },
        headers: { 'www-authenticate': 'Bearer realm="ssf"', 'cache-control': 'no-store' },
      };
    }
    const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
    if (media !== SET_CONTENT_TYPE) return new Refusal('invalid_request', `the Content-Type must be ${SET_CONTENT_TYPE} (RFC 8935 §2)`).answer();
    if (contentLength != null && (!/^\d+$/.test(contentLength.trim()) || Number(contentLength) > this.maxBodyBytes)) return this.tooLarge();
    return undefined;
  }

  /** 400 for a body over `maxBodyBytes`: RFC 8935 §2.3's refusal, which mandate gives up at once (a 413 it would retry, holding back every later SET of the stream). */
  tooLarge(): SsfAnswer {
    return new Refusal('invalid_request', `the SET is larger than ${this.maxBodyBytes} bytes`).answer();
  }

  /** Checks and applies one pushed SET; the answer to send. */
  async receive(authorization: string | null | undefined, contentType: string | null | undefined, body: string | Uint8Array): Promise<SsfAnswer> {
    const early = this.checkRequest(authorization, contentType);
    if (early) return early;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (bytes.byteLength > this.maxBodyBytes) return this.tooLarge();
    try {
      return await this.#apply(Buffer.from(bytes).toString('latin1').trim());
    } catch (e) {
      if (e instanceof Refusal) return e.answer();
      throw e;
    }
  }

  /** A fetch-style handler: `Request` in, `Response` out (Hono, Deno, Bun, workers...). */
  async fetch(request: Request): Promise<Response> {
    const h = request.headers;
    const early = this.checkRequest(h.get('authorization'), h.get('content-type'), h.get('content-length'));
    if (early) return toResponse(early);
    const body = await readBounded(request.body, this.maxBodyBytes);
    if (body === undefined) return toResponse(this.tooLarge());
    return toResponse(await this.receive(h.get('authorization'), h.get('content-type'), body));
  }

  async #apply(compact: string): Promise<SsfAnswer> {
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(compact)) throw new Refusal('invalid_request', 'the body is not a compact JWS (RFC 8417 §2.3)');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(compact);
    } catch {
      throw new Refusal('invalid_request', 'the body is not a compact JWS (RFC 8417 §2.3)');
    }
    if (typeof header.typ !== 'string' || !SET_TYPES.includes(header.typ.toLowerCase())) {
      throw new Refusal('invalid_request', 'the token is not a SET (typ secevent+jwt, RFC 8417 §2.3)');
    }
    // RFC 8725 §3.1: only the issuer's algorithm; never "none".
    if (header.alg !== 'ES256') throw new Refusal('invalid_key', 'the SET is not signed with ES256');
    let keys: JWTVerifyGetKey & { coolingDown?: boolean };
    try {
      keys = await this.#host.ssfKeySet();
    } catch {
      throw new Refusal('temporarily_unavailable', "the issuer's keys could not be fetched", 503);
    }
    const cooling = keys.coolingDown === true;
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(compact, keys as never, { algorithms: ['ES256'] }));
    } catch (e) {
      if (e instanceof joseErrors.JWKSNoMatchingKey) {
        // Unknown kid. If the key set could not be fetched again just now (cooldown), it may be
        // a rotation not seen yet: 503 makes mandate send it again later.
        if (cooling) throw new Refusal('temporarily_unavailable', "the SET's key is not known yet; try again", 503);
        throw new Refusal('invalid_key', 'the SET is signed by a key the issuer does not publish');
      }
      if (e instanceof joseErrors.JWKSMultipleMatchingKeys) throw new Refusal('invalid_key', 'the SET names no kid');
      if (e instanceof joseErrors.JWSSignatureVerificationFailed) throw new Refusal('authentication_failed', "the SET's signature does not verify");
      if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JWKSInvalid || !(e instanceof joseErrors.JOSEError)) {
        throw new Refusal('temporarily_unavailable', "the issuer's keys could not be fetched", 503);
      }
      throw new Refusal('invalid_request', 'the SET could not be read');
    }
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
    } catch {
      throw new Refusal('invalid_request', "the SET's payload is not JSON");
    }
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Refusal('invalid_request', "the SET's payload is not a JSON object");
    if (claims.iss !== this.#host.issuer) throw new Refusal('invalid_issuer', 'the SET is from another issuer');
    const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    if (!aud.includes(this.audience)) throw new Refusal('invalid_audience', 'the SET is for another audience');
    const iat = num(claims.iat);
    if (iat === undefined) throw new Refusal('invalid_request', 'the SET has no iat (RFC 8417 §2.2)');
    const jti = claims.jti;
    if (typeof jti !== 'string' || !jti || jti.length > 256) throw new Refusal('invalid_request', 'the SET has no usable jti (RFC 8417 §2.2)');
    const events = claims.events as Record<string, unknown> | undefined;
    if (!events || typeof events !== 'object' || Array.isArray(events) || Object.keys(events).length === 0) {
      throw new Refusal('invalid_request', 'the SET has no events (RFC 8417 §2.2)');
    }
    if (this.#seenBefore(jti)) return ACCEPTED; // mandate may send a SET twice: done already
    // Every event is read before any is applied: a SET is taken whole or not at all.
    const todo: [RevocationKind, string, number][] = [];
    for (const [type, event] of Object.entries(events)) {
      if (type === SESSION_REVOKED) todo.push(this.#sessionRevoked(claims, event, iat));
      // The verification event and types this receiver does not know: accepted, ignored.
    }
    for (const [kind, id, at] of todo) this.revocations.add(kind, id, at);
    this.#remember(jti);
    if (todo.length) this.#host.ssfRevoked();
    return ACCEPTED;
  }

  #sessionRevoked(claims: Record<string, unknown>, event: unknown, iat: number): [RevocationKind, string, number] {
    if (!event || typeof event !== 'object' || Array.isArray(event)) throw new Refusal('invalid_request', 'the session-revoked event is not an object (CAEP 1.0 §3.1)');
    const e = event as Record<string, unknown>;
    const at = e.event_timestamp === undefined ? iat : num(e.event_timestamp);
    if (at === undefined) throw new Refusal('invalid_request', 'the event_timestamp is not a number (CAEP 1.0 §2)');
    // SSF 1.0 §3: the subject is `sub_id`; earlier drafts put a `subject` in the event.
    const subId = (claims.sub_id ?? e.subject) as Record<string, unknown> | undefined;
    if (!subId || typeof subId !== 'object' || Array.isArray(subId)) throw new Refusal('invalid_request', 'the SET has no sub_id (SSF 1.0 §3)');
    if (subId.format === 'complex') {
      if (subId.session !== undefined) return ['session', opaque(subId.session, 'session'), at];
      // With a `user` too it means that user at that client: every token of the client is
      // refused, more than asked, never fewer.
      if (subId.application !== undefined) return ['client', opaque(subId.application, 'application'), at];
      if (subId.user !== undefined) return ['subject', this.#issSub(subId.user), at];
      throw new Refusal('invalid_request', 'the complex subject names no session, application or user');
    }
    if (subId.format === 'iss_sub') return ['subject', this.#issSub(subId), at];
    throw new Refusal('invalid_request', "the subject's format is not one this receiver can apply (RFC 9493)");
  }

  #issSub(v: unknown): string {
    const s = v as Record<string, unknown> | undefined;
    if (!s || typeof s !== 'object' || s.format !== 'iss_sub' || typeof s.sub !== 'string' || !s.sub) {
      throw new Refusal('invalid_request', 'the subject is not an iss_sub identifier (RFC 9493 §3.2.5)');
    }
    if (s.iss !== this.#host.issuer) throw new Refusal('access_denied', 'the subject belongs to another issuer');
    return s.sub;
  }

  #seenBefore(jti: string): boolean {
    const now = this.#now();
    for (const [k, until] of this.#seen) {
      if (until > now) break;
      this.#seen.delete(k);
    }
    return this.#seen.has(jti);
  }

  #remember(jti: string): void {
    // Forgetting a jti early is harmless: applying a revocation again changes nothing.
    while (this.#seen.size >= this.revocations.maxEntries) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(jti, this.#now() + this.revocations.retentionMs);
  }

  /** Never shows the credential. */
  toString(): string {
    return `SsfReceiver(${this.audience} from ${this.#host.issuer})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

function opaque(v: unknown, what: string): string {
  const o = v as Record<string, unknown> | undefined;
  if (!o || typeof o !== 'object' || o.format !== 'opaque' || typeof o.id !== 'string' || !o.id) {
    throw new Refusal('invalid_request', `the ${what} is not an opaque identifier (RFC 9493 §3.2.3)`);
  }
  return o.id;
}

/** An {@link SsfAnswer} as a fetch `Response`. */
export function toResponse(a: SsfAnswer): Response {
  const headers = new Headers(a.headers);
  if (!a.body) return new Response(null, { status: a.status, headers });
  headers.set('content-type', 'application/json');
  return new Response(JSON.stringify(a.body), { status: a.status, headers });
}

/** Reads a body stream up to `max` bytes; undefined once it is longer. */
export async function readBounded(stream: ReadableStream<Uint8Array> | null, max: number): Promise<Uint8Array | undefined> {
  if (!stream) return new Uint8Array();
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
