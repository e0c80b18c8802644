// @mandate/sdk/hono: Hono middleware. `requireToken(verifier, { scopes })` guards a route and
// sets `c.var.principal`; `protectedResourceMetadata(verifier)` serves RFC 9728's document.
//
//   const app = new Hono<MandateEnv>();
//   app.get(verifier.metadataPath, protectedResourceMetadata(verifier));
//   app.get('/orders', requireToken(verifier, { scopes: ['orders:read'] }), (c) => c.text(`${c.var.principal}`));
//   app.post('/ssf/events', ssfEvents(verifier.ssfReceiver({ authorization })));   // SSF push (RFC 8935)

import type { Context, Handler, MiddlewareHandler } from 'hono';
import { Principal, TokenError, type SsfReceiver, type Verifier } from './resource.js';

export { Principal, SsfReceiver, TokenError, Verifier, type RequestInfo } from './resource.js';

/** The Hono environment whose handlers read `c.var.principal`. */
export type MandateEnv = { Variables: { principal: Principal } };

export interface RequireTokenOptions {
  /** Scopes the route needs (all of them). */
  scopes?: readonly string[];
}

/** Sends a refusal with its WWW-Authenticate header (RFC 6750 §3). */
export function refuse(c: Context, verifier: Verifier, e: TokenError): Response {
  for (const [k, v] of Object.entries(verifier.responseHeaders(e))) c.header(k, v);
  return c.json(e.body(), e.status);
}

/**
 * Guards a route: a valid token with `scopes` (a DPoP-bound one with its proof, RFC 9449), or a
 * 400/401/403 with WWW-Authenticate. Behind a proxy, set the Verifier's `externalUrl`.
 */
export function requireToken(verifier: Verifier, options: RequireTokenOptions = {}): MiddlewareHandler<MandateEnv> {
  const scopes = options.scopes ?? [];
  return async (c, next) => {
    let principal: Principal;
    try {
      // Method, URL and DPoP header: what a DPoP-bound token's proof is checked against (RFC 9449 §4.3).
      principal = await verifier.authenticate(c.req.header('authorization'), scopes, {
        method: c.req.method,
        url: c.req.url,
        dpop: c.req.raw.headers.get('dpop'),
      });
    } catch (e) {
      if (e instanceof TokenError) return refuse(c, verifier, e);
      throw e;
    }
    c.set('principal', principal);
    await next();
  };
}

/** Serves the RFC 9728 protected-resource metadata (mount it at `verifier.metadataPath`). */
export function protectedResourceMetadata(verifier: Verifier): Handler {
  verifier.metadata(); // throws now, at setup, when the verifier has no resource URL
  return (c) => {
    c.header('access-control-allow-origin', '*');
    return c.json(verifier.metadata());
  };
}

/**
 * Receives mandate's pushed security events (RFC 8935) for `receiver`: mount it with
 * `app.post(path, ...)` at the stream's `endpoint_url`, outside `requireToken` (mandate
 * authenticates with the stream's credential). 202, 400 `{"err": ...}`, 401.
 */
export function ssfEvents(receiver: SsfReceiver): Handler {
  return (c) => receiver.fetch(c.req.raw);
}
