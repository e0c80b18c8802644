// @mandate/sdk/express: Express middleware. `requireToken(verifier, { scopes })` guards a route
// and hands the handler the principal (`principalOf(req)`, also `res.locals.principal`);
// `protectedResourceMetadata(verifier)` serves RFC 9728's document.
//
//   app.get(verifier.metadataPath, protectedResourceMetadata(verifier));
//   app.get('/orders', requireToken(verifier, { scopes: ['orders:read'] }), (req, res) => res.send(`${principalOf(req)}`));
//   app.post('/ssf/events', ssfEvents(verifier.ssfReceiver({ authorization })));   // SSF push (RFC 8935)

import type { Request, RequestHandler, Response } from 'express';
import { Principal, TokenError, type SsfAnswer, type SsfReceiver, type Verifier } from './resource.js';

export { Principal, SsfReceiver, TokenError, Verifier, type RequestInfo } from './resource.js';

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

function send(res: Response, a: SsfAnswer): void {
  res.set(a.headers);
  if (a.body) res.status(a.status).json(a.body);
  else res.status(a.status).end();
}

/**
 * Receives mandate's pushed security events (RFC 8935) for `receiver`: mount it with
 * `app.post(path, ...)` at the stream's `endpoint_url`, outside `requireToken` (mandate
 * authenticates with the stream's credential) and before any body parser that would take
 * `application/secevent+jwt` (a body already read as a Buffer or string is used as it is).
 * 202, 400 `{"err": ...}`, 401; the body is read only up to `receiver.maxBodyBytes`.
 */
export function ssfEvents(receiver: SsfReceiver): RequestHandler {
  return (req, res, next) => {
    const authorization = req.get('authorization');
    const contentType = req.get('content-type');
    const early = receiver.checkRequest(authorization, contentType, req.get('content-length'));
    if (early) {
      send(res, early);
      req.resume();
      return;
    }
    const parsed: unknown = req.body;
    if (Buffer.isBuffer(parsed) || typeof parsed === 'string') {
      receiver.receive(authorization, contentType, parsed).then((a) => send(res, a), next);
      return;
    }
    if (req.readableEnded) {
      // Another middleware read the body and kept nothing we can check: refuse rather than hang.
      send(res, { status: 400, body: { err: 'invalid_request', description: 'the body was consumed before the SSF route' }, headers: {} });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > receiver.maxBodyBytes) {
        done = true;
        send(res, receiver.tooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      receiver.receive(authorization, contentType, Buffer.concat(chunks)).then((a) => send(res, a), next);
    });
    req.on('error', (e) => {
      if (!done) {
        done = true;
        next(e);
      }
    });
  };
}
