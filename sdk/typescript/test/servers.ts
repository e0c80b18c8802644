// Two small resource servers guarded by the SDK's middleware, one on Hono and one on Express,
// each with the same routes under /api/jwt and /api/introspection (one Verifier per mode, both
// with the server's resource URI as audience).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import { Hono } from 'hono';
import { Verifier, type VerifierOptions } from '@mandate/sdk/resource';
import * as honoMw from '@mandate/sdk/hono';
import * as expressMw from '@mandate/sdk/express';

export interface ResourceServer {
  framework: 'hono' | 'express';
  url: string;
  /** The resource URI: `${url}/api`. */
  resource: string;
  verifiers: Record<'jwt' | 'introspection', Verifier>;
  close(): Promise<void>;
}

export const SCOPES_SUPPORTED = ['orders:read', 'orders:write'];

export function verifiers(issuer: string, resource: string, introspection: { clientId: string; clientSecret: string }, extra: Partial<VerifierOptions> = {}) {
  const common = { issuer, audience: resource, scopesSupported: SCOPES_SUPPORTED, resourceName: 'Orders', realm: 'orders', ...extra };
  return {
    jwt: new Verifier({ ...common, mode: 'jwt' }),
    introspection: new Verifier({ ...common, mode: 'introspection', ...introspection }),
  };
}

export async function startHono(port: number, make: (resource: string) => Record<'jwt' | 'introspection', Verifier>): Promise<ResourceServer> {
  const url = `http://127.0.0.1:${port}`;
  const resource = `${url}/api`;
  const vs = make(resource);
  const app = new Hono<honoMw.MandateEnv>();
  app.get(vs.jwt.metadataPath, honoMw.protectedResourceMetadata(vs.jwt));
  for (const [mode, v] of Object.entries(vs)) {
    app.get(`/api/${mode}/orders`, honoMw.requireToken(v, { scopes: ['orders:read'] }), (c) => c.json(c.var.principal));
    app.post(`/api/${mode}/orders`, honoMw.requireToken(v, { scopes: ['orders:write'] }), (c) => c.json({ created: true, by: `${c.var.principal}` }));
    app.get(`/api/${mode}/whoami`, honoMw.requireToken(v), (c) => c.text(String(c.get('principal'))));
  }
  const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }) as http.Server;
  await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
  return { framework: 'hono', url, resource, verifiers: vs, close: () => new Promise((r) => server.close(() => r())) };
}

export async function startExpress(port: number, make: (resource: string) => Record<'jwt' | 'introspection', Verifier>): Promise<ResourceServer> {
  const url = `http://127.0.0.1:${port}`;
  const resource = `${url}/api`;
  const vs = make(resource);
  const app = express();
  app.get(vs.jwt.metadataPath, expressMw.protectedResourceMetadata(vs.jwt));
  for (const [mode, v] of Object.entries(vs)) {
    app.get(`/api/${mode}/orders`, expressMw.requireToken(v, { scopes: ['orders:read'] }), (req, res) => {
      res.json(expressMw.principalOf(req));
    });
    app.post(`/api/${mode}/orders`, expressMw.requireToken(v, { scopes: ['orders:write'] }), (req, res) => {
      res.json({ created: true, by: `${expressMw.principalOf(req)}` });
    });
    app.get(`/api/${mode}/whoami`, expressMw.requireToken(v), (_req, res) => {
      res.type('text/plain').send(String(res.locals.principal));
    });
  }
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return { framework: 'express', url: `http://127.0.0.1:${actual}`, resource, verifiers: vs, close: () => new Promise((r) => server.close(() => r())) };
}
