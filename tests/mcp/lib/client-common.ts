// What the TypeScript client scripts share: their settings (one JSON argument from the harness),
// a fetch that records the token requests the SDK makes, and the checks on a tool's answer.

import { randomBytes } from 'node:crypto';
import { signIn, type Callback } from './signin.ts';

export type Mode = 'preregistered' | 'dcr' | 'cimd';

export interface ClientConfig {
  /** The MCP server's endpoint, which is also its RFC 8707 resource identifier. */
  serverUrl: string;
  mode: Mode;
  /** mandate's issuer: the redirect's `iss` must be exactly this (RFC 9207). */
  issuer: string;
  /** preregistered: the client_id configured in mandate.toml (a public client). */
  clientId?: string;
  /** The loopback redirect URI (registered in mandate, or sent at registration, or in the CIMD). */
  redirectUri: string;
  /** cimd: the https URL of this client's metadata document, its client_id. */
  clientMetadataUrl?: string;
  username: string;
  password: string;
}

export function readConfig(): ClientConfig {
  const raw = process.argv[2];
  if (!raw) throw new Error('usage: CLIENT \'{"serverUrl": ..., "mode": ..., ...}\'');
  return JSON.parse(raw) as ClientConfig;
}

export function log(msg: string) {
  process.stderr.write(`  ${msg}\n`);
}

export function fail(msg: string): never {
  throw new Error(msg);
}

/** A fetch that notes every token request's grant_type, then does the request. */
export class RecordingFetch {
  grants: string[] = [];
  fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    if (method === 'POST' && new URL(url).pathname === '/token') {
      const body = init?.body instanceof URLSearchParams ? init.body : new URLSearchParams(String(init?.body ?? ''));
      // grant_type, and whether the RFC 8707 resource (the MCP server's URL) came along.
      this.grants.push(`${body.get('grant_type') ?? '?'}${body.get('resource') ? ' +resource' : ''}`);
    }
    return fetch(input, init);
  };
}

/** The browser step: sign in at mandate and approve; the state must come back unchanged. */
export class Person {
  signIns = 0;
  last: Callback | null = null;
  constructor(private cfg: ClientConfig) {}
  async authorize(url: URL, expectedState: string | undefined): Promise<Callback> {
    this.signIns++;
    const u = new URL(url);
    if (u.searchParams.get('resource') !== this.cfg.serverUrl)
      fail(`the authorization request's resource is ${u.searchParams.get('resource')}, not ${this.cfg.serverUrl}`);
    if (u.searchParams.get('code_challenge_method') !== 'S256') fail('the authorization request does not use PKCE S256');
    log(`sign-in: ${u.origin}${u.pathname} client_id=${u.searchParams.get('client_id')} scope=${u.searchParams.get('scope')}`);
    const cb = await signIn(u, this.cfg.username, this.cfg.password);
    if (cb.error) fail(`mandate redirected back with error=${cb.error}: ${cb.url}`);
    if (!cb.code) fail(`no code in the redirect back: ${cb.url}`);
    if (`${cb.url.origin}${cb.url.pathname}` !== this.cfg.redirectUri) fail(`redirected to ${cb.url}, not ${this.cfg.redirectUri}`);
    if (expectedState !== undefined && cb.state !== expectedState) fail(`state came back as ${cb.state}, not ${expectedState}`);
    if (cb.iss !== this.cfg.issuer) fail(`iss came back as ${cb.iss}, not ${this.cfg.issuer} (RFC 9207)`);
    this.last = cb;
    return cb;
  }
}

export function randomState(): string {
  return randomBytes(24).toString('base64url');
}

export interface WhoAmI {
  sub: string;
  client_id: string;
  jti: string;
  scopes: string[];
}

/** The `whoami` tool's answer (its text content is the same JSON as its structured content). */
export function whoami(result: unknown): WhoAmI {
  const r = result as { content?: { type: string; text?: string }[]; isError?: boolean };
  if (r.isError) fail(`whoami answered an error: ${JSON.stringify(r)}`);
  const text = r.content?.find((c) => c.type === 'text')?.text;
  if (!text) fail(`whoami answered no text: ${JSON.stringify(r)}`);
  return JSON.parse(text) as WhoAmI;
}

export function checkWhoami(me: WhoAmI, cfg: ClientConfig, clientId: string) {
  if (me.sub !== cfg.username) fail(`whoami says sub=${me.sub}, not ${cfg.username}`);
  if (me.client_id !== clientId) fail(`whoami says client_id=${me.client_id}, not ${clientId}`);
  if (!me.jti) fail('whoami says no jti');
}

export function checkAdd(result: unknown) {
  const r = result as { content?: { type: string; text?: string }[] };
  const text = r.content?.find((c) => c.type === 'text')?.text;
  if (text !== '5') fail(`add(2, 3) answered ${JSON.stringify(r)}`);
}

/**
 * The client identity the SDK ended up with matches the mode: the configured id
 * (preregistered), the metadata document's URL (cimd), or an id mandate issued when the SDK
 * registered (dcr).
 */
export function checkIdentity(cfg: ClientConfig, clientId: string, registered: boolean) {
  if (cfg.mode === 'preregistered' && clientId !== cfg.clientId) fail(`client_id ${clientId}, not the configured ${cfg.clientId}`);
  if (cfg.mode === 'cimd' && clientId !== cfg.clientMetadataUrl) fail(`client_id ${clientId}, not the metadata document URL ${cfg.clientMetadataUrl}`);
  if (cfg.mode === 'dcr' && (!registered || clientId === cfg.clientMetadataUrl)) fail(`client_id ${clientId} did not come from a registration`);
  if (cfg.mode !== 'dcr' && registered) fail(`the SDK registered itself in mode ${cfg.mode}`);
}

export function report(result: Record<string, unknown>) {
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}
