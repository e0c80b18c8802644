// @mandate/sdk/express: Express middleware. `requireToken(verifier, { scopes })` guards a route
// and hands the handler the principal (`principalOf(req)`, also `res.locals.principal`);
// `protectedResourceMetadata(verifier)` serves RFC 9728's document.
//
//   app.get(verifier.metadataPath, protectedResourceMetadata(verifier));
//   app.get('/orders', requireToken(verifier, { scopes: ['orders:read'] }), (req, res) => res.send(`${principalOf(req)}`));

import type { Request, RequestHandler, Response } from 'express';
import { Principal, TokenError, type Verifier } from './resource.js';

export { Principal, TokenError, Verifier, type RequestInfo } from './resource.js';

export interface RequireTokenOptions {
  /** Scopes the route needs (all of them). */
  scopes?: readonly string[];
}

const principals = new WeakMap<Request, Principal>();

/** The principal `requireToken` verified for this request (throws on an unguarded route). */
export function principalOf(req: Request): Principal {
  const p = principals.get(req);
  if (!p) throw new Error('no principal: the route is not guarded by requireToken');
  return p;
}

/** Sends a refusal with its WWW-Authenticate header (RFC 6750 §3). */
export function refuse(res: Response, verifier: Verifier, e: TokenError): void {
  res.set(verifier.responseHeaders(e));
  res.status(e.status).json(e.body());
}

/**
 * Guards a route: a valid token with `scopes` (a DPoP-bound one with its proof, RFC 9449), or a
 * 400/401/403 with WWW-Authenticate. Behind a proxy, set the Verifier's `externalUrl`.
 */
export function requireToken(verifier: Verifier, options: RequireTokenOptions = {}): RequestHandler {
  const scopes = options.scopes ?? [];
  return (req, res, next) => {
    // Method, URL and DPoP header: what a DPoP-bound token's proof is checked against (RFC 9449
    // §4.3). The URL from req.protocol and Host (Express's `trust proxy` decides what they say);
    // the Verifier's `externalUrl` overrides it.
    const request = { method: req.method, url: `${req.protocol}://${req.get('host') ?? 'localhost'}${req.originalUrl}`, dpop: req.headers['dpop'] };
    verifier.authenticate(req.get('authorization'), scopes, request).then(
      (principal) => {
        principals.set(req, principal);
        res.locals.principal = principal;
        next();
      },
      (e: unknown) => (e instanceof TokenError ? refuse(res, verifier, e) : next(e)),
    );
  };
}

/** Serves the RFC 9728 protected-resource metadata (mount it at `verifier.metadataPath`). */
export function protectedResourceMetadata(verifier: Verifier): RequestHandler {
  verifier.metadata(); // throws now, at setup, when the verifier has no resource URL
  return (_req, res) => {
    res.set('access-control-allow-origin', '*');
    res.json(verifier.metadata());
  };
}
