// The TypeScript SDK 1.x client (@modelcontextprotocol/sdk): sign in through mandate, list the
// tools, call them, refresh, call again. The registration mode decides what the SDK is given:
// preregistered: client information already stored (so it does not register); dcr: nothing
// stored (it registers at the metadata's registration_endpoint); cimd: a clientMetadataUrl
// (used when mandate's metadata says client_id_metadata_document_supported).

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import {
  type ClientConfig,
  Person,
  RecordingFetch,
  checkAdd,
  checkIdentity,
  checkWhoami,
  fail,
  log,
  randomState,
  readConfig,
  report,
  whoami,
} from '../lib/client-common.ts';

class Provider implements OAuthClientProvider {
  info: OAuthClientInformationMixed | undefined;
  stored: OAuthTokens | undefined;
  verifier = '';
  currentState: string | undefined;
  clientMetadataUrl: string | undefined;
  /** Whether client information was saved from nothing with a new id (a registration). */
  registered = false;
  constructor(private cfg: ClientConfig, private person: Person) {
    if (cfg.mode === 'preregistered') this.info = { client_id: cfg.clientId ?? fail('preregistered needs clientId') };
    if (cfg.mode === 'cimd') this.clientMetadataUrl = cfg.clientMetadataUrl;
  }
  get redirectUrl() {
    return this.cfg.redirectUri;
  }
  // What a registration (dcr) sends. A loopback redirect makes this a native app (RFC 8252,
  // OIDC Registration's application_type); said outright, as the 1.x SDK does not derive it.
  get clientMetadata(): OAuthClientMetadata & { application_type?: string } {
    return {
      application_type: 'native',
      client_name: 'mandate test: TypeScript SDK 1.x',
      redirect_uris: [this.cfg.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this.currentState = randomState();
    return this.currentState;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    if (!this.info && info.client_id !== this.clientMetadataUrl) this.registered = true;
    this.info = info;
  }
  tokens() {
    return this.stored;
  }
  saveTokens(tokens: OAuthTokens) {
    this.stored = tokens;
  }
  async redirectToAuthorization(url: URL) {
    await this.person.authorize(url, this.currentState);
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

async function main() {
  const cfg = readConfig();
  const person = new Person(cfg);
  const provider = new Provider(cfg, person);
  const rec = new RecordingFetch();
  const transport = () => new StreamableHTTPClientTransport(new URL(cfg.serverUrl), { authProvider: provider, fetch: rec.fetch });

  let client = new Client({ name: 'mandate-test-ts-sdk1', version: '1.0.0' });
  const first = transport();
  try {
    await client.connect(first);
    fail('the MCP server let an unauthenticated client in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    const cb = person.last ?? fail('the SDK asked for authorization but never opened the browser');
    // The 1.x SDK does not check the redirect's iss (RFC 9207); Person did.
    await first.finishAuth(cb.code!);
    const t = transport();
    client = new Client({ name: 'mandate-test-ts-sdk1', version: '1.0.0' });
    await client.connect(t);
  }
  log(`signed in (grants so far: ${rec.grants.join(', ')})`);
  const clientId = provider.info?.client_id ?? fail('no client_id after sign-in');
  checkIdentity(cfg, clientId, provider.registered);
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  if (!tools.includes('whoami') || !tools.includes('add')) fail(`tools/list gave ${tools}`);
  const me1 = whoami(await client.callTool({ name: 'whoami', arguments: {} }));
  checkWhoami(me1, cfg, clientId);
  checkAdd(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }));
  log(`whoami: ${JSON.stringify(me1)}`);

  // Refresh: the stored access token stops working (as when it expires; mandate's introspection
  // says inactive, the MCP server answers 401), and the SDK must refresh, not sign in again.
  const before = provider.stored ?? fail('no tokens stored');
  if (!before.refresh_token) fail('mandate issued no refresh token');
  provider.stored = { ...before, access_token: `expired-${randomState()}` };
  const second = whoami(await client.callTool({ name: 'whoami', arguments: {} }));
  checkWhoami(second, cfg, clientId);
  if (second.jti === me1.jti) fail('the call after refresh carried the same token');
  if (person.signIns !== 1) fail(`signed in ${person.signIns} times, not once`);
  if (!rec.grants.some((g) => g.startsWith('refresh_token'))) fail(`no refresh_token grant; token requests: ${rec.grants}`);
  await client.close();
  report({ client_id: clientId, tools, sub: me1.sub, grants: rec.grants, registered: provider.registered, signIns: person.signIns });
}

main().catch((e) => {
  process.stderr.write(`FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
