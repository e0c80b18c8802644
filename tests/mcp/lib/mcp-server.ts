// A small MCP server on the official TypeScript SDK (@modelcontextprotocol/sdk 1.x, Streamable
// HTTP, stateless), protected by mandate the way the MCP authorization spec says:
//
// - a request without a usable token gets 401 with
//   `WWW-Authenticate: Bearer resource_metadata="<its RFC 9728 document>", scope="..."`;
// - the RFC 9728 protected-resource metadata, at `/.well-known/oauth-protected-resource/mcp`
//   (the well-known name inserted before the resource's path, RFC 9728 §3.1), names mandate as
//   the authorization server and lists the scopes;
// - every bearer token is checked by RFC 7662 introspection at mandate (this server is a mandate
//   client with `introspect = true`), and must be active, carry this server's URL in `aud`
//   (RFC 8707: a token for another resource is refused) and hold the scope.
//
// The tools echo what the token said, so a client proves its token reached the tool.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export const SCOPE = 'mcp:tools';

export interface McpServerHandle {
  /** The MCP endpoint and the RFC 8707 resource identifier: `http://127.0.0.1:PORT/mcp`. */
  url: string;
  metadataUrl: string;
  /** Set once mandate is up: its issuer, and this server's client credentials there. */
  configure(asIssuer: string, clientId: string, clientSecret: string): void;
  /** Every token this server accepted, in order (`jti` and `sub` from introspection). */
  accepted: { jti: string; sub: string; client_id: string }[];
  close(): Promise<void>;
}

interface Introspection {
  active: boolean;
  sub?: string;
  client_id?: string;
  scope?: string;
  aud?: string | string[];
  jti?: string;
  exp?: number;
}

function buildServer() {
  const server = new McpServer({ name: 'mandate-test-mcp-server', version: '1.0.0' });
  server.registerTool(
    'whoami',
    {
      description: 'Says who the bearer token was issued to (from mandate\'s introspection).',
      inputSchema: {},
    },
    async (_args, extra) => {
      const extraInfo = (extra.authInfo?.extra ?? {}) as Record<string, unknown>;
      const me = { sub: extraInfo.sub, client_id: extra.authInfo?.clientId, scopes: extra.authInfo?.scopes, jti: extraInfo.jti };
      return { content: [{ type: 'text', text: JSON.stringify(me) }], structuredContent: me };
    },
  );
  server.registerTool(
    'add',
    {
      description: 'Adds two numbers.',
      inputSchema: { a: z.number(), b: z.number() },
    },
    async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  return server;
}

export async function startMcpServer(): Promise<McpServerHandle> {
  let issuer = '';
  let creds = '';
  const accepted: McpServerHandle['accepted'] = [];
  const httpServer = http.createServer();
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const port = (httpServer.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/mcp`;
  const metadataUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;

  const challenge = (res: http.ServerResponse, error?: string, description?: string) => {
    let value = `Bearer resource_metadata="${metadataUrl}", scope="${SCOPE}"`;
    if (error) value += `, error="${error}"`;
    if (description) value += `, error_description="${description}"`;
    res.writeHead(401, { 'www-authenticate': value, 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: error ?? 'unauthorized', error_description: description ?? 'a bearer token is required' }));
  };

  const introspect = async (token: string): Promise<Introspection> => {
    const resp = await fetch(`${issuer}/introspect`, {
      method: 'POST',
      headers: { authorization: `Basic ${creds}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    if (resp.status !== 200) throw new Error(`introspection answered HTTP ${resp.status}: ${await resp.text()}`);
    return (await resp.json()) as Introspection;
  };

  httpServer.on('request', async (req, res) => {
    try {
      const path = new URL(req.url ?? '/', url).pathname;
      if (req.method === 'GET' && path === '/.well-known/oauth-protected-resource/mcp') {
        res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
        res.end(
          JSON.stringify({
            resource: url,
            authorization_servers: [issuer],
            scopes_supported: [SCOPE],
            bearer_methods_supported: ['header'],
            resource_name: 'mandate test MCP server',
          }),
        );
        return;
      }
      if (path !== '/mcp') {
        res.writeHead(404).end();
        return;
      }
      if (req.method !== 'POST') {
        // Stateless: no standalone SSE stream (GET) and no session to end (DELETE).
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      const auth = req.headers.authorization ?? '';
      const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(auth);
      if (!m) return challenge(res);
      const info = await introspect(m[1]);
      if (!info.active) return challenge(res, 'invalid_token', 'the token is not active');
      const aud = Array.isArray(info.aud) ? info.aud : info.aud ? [info.aud] : [];
      if (!aud.includes(url)) return challenge(res, 'invalid_token', `the token is not for ${url}`);
      const scopes = (info.scope ?? '').split(' ').filter(Boolean);
      if (!scopes.includes(SCOPE)) {
        res.writeHead(403, {
          'www-authenticate': `Bearer error="insufficient_scope", scope="${SCOPE}", resource_metadata="${metadataUrl}"`,
        });
        res.end();
        return;
      }
      accepted.push({ jti: info.jti ?? '', sub: info.sub ?? '', client_id: info.client_id ?? '' });
      (req as http.IncomingMessage & { auth?: unknown }).auth = {
        token: m[1],
        clientId: info.client_id ?? '',
        scopes,
        expiresAt: info.exp,
        extra: { sub: info.sub, jti: info.jti },
      };
      // Stateless Streamable HTTP: a server and a transport per request.
      const server = buildServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res);
    } catch (e) {
      console.error('mcp-server:', e);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    }
  });

  return {
    url,
    metadataUrl,
    accepted,
    configure(asIssuer, clientId, clientSecret) {
      issuer = asIssuer;
      creds = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    },
    close: () => new Promise<void>((resolve) => {
      httpServer.closeAllConnections();
      httpServer.close(() => resolve());
    }),
  };
}
