// The MCP adapter end to end: the MCP TypeScript SDK's client (StreamableHTTPClientTransport,
// @modelcontextprotocol/sdk 1.32.2) with MandateOAuthProvider calls a small MCP server (that
// SDK's McpServer, stateless Streamable HTTP) guarded by the SDK's Express middleware with an
// introspection Verifier (no cache, so a revocation shows at once). MCP authorization spec:
// the server answers 401 with resource_metadata (RFC 9728 §5.1), the client's auth() discovers
// mandate from it, and the provider's grant is RFC 8693 token exchange with the RFC 8707
// resource the metadata names.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import express from 'express';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { decodeJwt } from 'jose';
import type { AgentSession } from '@mandate/sdk';
import { MandateOAuthProvider } from '@mandate/sdk/mcp';
import { Verifier } from '@mandate/sdk/resource';
import { principalOf, protectedResourceMetadata, requireToken } from '@mandate/sdk/express';
import { freePort, startMandate, type Mandate } from './harness.ts';

const SCOPE = 'mcp:tools';
let m: Mandate;
let alice: string;
let planner: AgentSession;
let server: http.Server;
let mcpUrl: string;

function buildMcpServer(chain: string) {
  const s = new McpServer({ name: 'mandate-sdk-test', version: '1.0.0' });
  s.registerTool('whoami', { description: 'Who the delegated token is for and who acts with it', inputSchema: {} }, async () => ({
    content: [{ type: 'text', text: chain }],
  }));
  return s;
}

before(async () => {
  const port = await freePort();
  mcpUrl = `http://127.0.0.1:${port}/mcp`;
  m = await startMandate({
    extra: `
[[resources]]
uri = "${mcpUrl}"
name = "SDK test MCP server"
scopes = ["${SCOPE}"]

[[clients]]
client_id = "mcp-rs"
client_secret = "mcp-rs-secret"
introspect = true
audience = "${mcpUrl}"
`,
  });
  alice = await m.humanToken();
  planner = m.session('planner');
  const verifier = new Verifier({
    issuer: m.issuer,
    audience: mcpUrl,
    mode: 'introspection',
    clientId: 'mcp-rs',
    clientSecret: 'mcp-rs-secret',
    introspectionCacheSeconds: 0,
    scopesSupported: [SCOPE],
    resourceName: 'SDK test MCP server',
  });
  const app = express();
  app.use(express.json());
  app.get(verifier.metadataPath, protectedResourceMetadata(verifier));
  app.post('/mcp', requireToken(verifier, { scopes: [SCOPE] }), async (req, res) => {
    const mcp = buildMcpServer(String(principalOf(req)));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  app.all('/mcp', (_req, res) => {
    res.set('allow', 'POST').status(405).end();
  });
  server = http.createServer(app);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
});
after(async () => {
  await new Promise((r) => server?.close(r));
  await m?.stop();
});

async function whoami(provider: MandateOAuthProvider): Promise<string> {
  const client = new Client({ name: 'mandate-sdk-test-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  try {
    const tools = await client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'whoami'));
    const r = await client.callTool({ name: 'whoami', arguments: {} });
    return (r.content as { type: string; text: string }[])[0]!.text;
  } finally {
    await client.close();
  }
}

test('an MCP client acts for alice with a delegated token for the MCP server (resource = its URL, RFC 8707)', async () => {
  const provider = new MandateOAuthProvider({ session: planner, subjectToken: alice, scope: SCOPE, resource: mcpUrl });
  assert.equal(await whoami(provider), 'alice → planner');
  const tokens = await provider.tokens();
  assert.equal(decodeJwt(tokens.access_token).aud, mcpUrl);
  assert.equal(tokens.scope, SCOPE);
  assert.equal(provider.source.exchanges, 1, 'one exchange for the whole session');
  assert.ok(!String(provider).includes(tokens.access_token));
});

test('without a resource configured: after a 401 the MCP SDK\'s auth() discovers the resource (RFC 9728 §3) and later exchanges name it', async () => {
  const provider = new MandateOAuthProvider({ session: planner, subjectToken: alice, scope: SCOPE });
  assert.equal(await whoami(provider), 'alice → planner');
  // alice's own token is for every resource she may use; the token exchanged without a resource keeps them.
  const first = decodeJwt((await provider.tokens()).access_token).aud;
  assert.ok(Array.isArray(first) ? first.includes(mcpUrl) : first === mcpUrl);
  assert.equal(provider.discoveryState(), undefined);
  await planner.revoke((await provider.tokens()).access_token);
  assert.equal(await whoami(provider), 'alice → planner');
  assert.equal(provider.discoveryState()?.resourceMetadata?.resource, mcpUrl);
  // The SDK's own token request sent resource = the MCP server (RFC 8707 §2).
  assert.equal(decodeJwt((await provider.tokens()).access_token).aud, mcpUrl);
  // And so does the provider's next exchange.
  provider.invalidateCredentials('tokens');
  assert.equal(decodeJwt((await provider.tokens()).access_token).aud, mcpUrl);
});

test('a sub-agent calls the MCP server with the narrower token its parent delegated: alice → planner → payments-bot', async () => {
  const bot = m.session('payments-bot');
  const mine = await planner.actFor(alice, { scope: SCOPE, resource: mcpUrl });
  const provider = new MandateOAuthProvider({ session: bot, subjectToken: mine, scope: SCOPE, resource: mcpUrl });
  assert.equal(await whoami(provider), 'alice → planner → payments-bot');
});

test('a revoked token (RFC 7009) is replaced: the server answers 401 invalid_token and the client gets a new delegated token', async () => {
  const provider = new MandateOAuthProvider({ session: planner, subjectToken: alice, scope: SCOPE, resource: mcpUrl });
  assert.equal(await whoami(provider), 'alice → planner');
  const before = (await provider.tokens()).access_token;
  await planner.revoke(before);
  assert.equal(await whoami(provider), 'alice → planner');
  assert.notEqual((await provider.tokens()).access_token, before);
  // The MCP SDK's auth() ran: RFC 9728 discovery, then the grant prepareTokenRequest gave.
  assert.equal(provider.discoveryState()?.authorizationServerUrl?.replace(/\/$/, ''), m.issuer);
});

test('a refused delegation surfaces as the SDK error: a scope alice never had is invalid_scope', async () => {
  const provider = new MandateOAuthProvider({ session: planner, subjectToken: alice, scope: 'admin:everything', resource: mcpUrl });
  await assert.rejects(whoami(provider), /invalid_scope/);
});
