// @mandate/sdk/mcp: an OAuthClientProvider for the MCP TypeScript SDK
// (@modelcontextprotocol/sdk) that gives an MCP client a token delegated to the agent, not a
// browser sign-in. The MCP client (e.g. StreamableHTTPClientTransport) asks `tokens()` before
// each request: that is a delegated token for the MCP server (RFC 8707 `resource`), obtained by
// RFC 8693 token exchange and exchanged again before it expires. When the server still answers
// 401, the SDK's own `auth()` runs non-interactively: RFC 9728 discovery, then a token request
// whose grant this provider prepares (`prepareTokenRequest`: the same token exchange, with the
// resource the server's metadata names), sent only to the issuer the client is registered at.
//
//   const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
//     authProvider: new MandateOAuthProvider({ session, subjectToken: aliceToken, scope: 'mcp:tools' }),
//   });

import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_JWT } from './client.js';
import { DelegatedTokenSource } from './fetch.js';
import type { AgentSession } from './session.js';
import { DelegatedToken } from './tokens.js';

export interface MandateOAuthProviderOptions {
  /** The agent that acts (its session attests and exchanges). */
  session: AgentSession;
  /** The authority handed down: a human's token, or one delegated to this agent (or a function giving it). */
  subjectToken: string | DelegatedToken | (() => Promise<string | DelegatedToken>);
  /** The MCP server's resource URI (RFC 8707). Default: the `resource` of its RFC 9728 metadata, once discovered. */
  resource?: string;
  /** The scopes to delegate (only narrows the subject token's). */
  scope?: string | readonly string[];
  /** Re-exchange when fewer than this many seconds are left (default: a fifth of the lifetime, at most 30). */
  marginSeconds?: number;
}

/** An MCP OAuthClientProvider whose tokens are delegated to the agent by mandate. */
export class MandateOAuthProvider implements OAuthClientProvider {
  readonly #session: AgentSession;
  readonly #subject: () => Promise<string>;
  readonly #scope: string | undefined;
  #resource: string | undefined;
  #discovery: OAuthDiscoveryState | undefined;
  /** The delegated token source behind `tokens()` (its `exchanges` counts the exchanges made). */
  readonly source: DelegatedTokenSource;

  constructor(options: MandateOAuthProviderOptions) {
    // The MCP SDK sends its tokens as Bearer: a DPoP-bound one would be refused (RFC 9449 §7.1).
    if (options.session.usesDpop) throw new TypeError('MandateOAuthProvider needs an AgentSession without DPoP (the MCP SDK sends Bearer tokens)');
    this.#session = options.session;
    const subject = options.subjectToken;
    this.#subject = async () => {
      const s = typeof subject === 'function' ? await subject() : subject;
      return typeof s === 'string' ? s : s.accessToken;
    };
    this.#scope = options.scope === undefined ? undefined : typeof options.scope === 'string' ? options.scope : options.scope.join(' ');
    this.#resource = options.resource;
    this.source = new DelegatedTokenSource(
      async () => this.#session.actFor(await this.#subject(), { scope: this.#scope, resource: this.#resource }),
      { marginSeconds: options.marginSeconds },
    );
  }

  /** Non-interactive: no redirect, no browser. */
  get redirectUrl(): undefined {
    return undefined;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: `mandate agent ${this.#session.agent}`,
      redirect_uris: [],
      grant_types: [TOKEN_EXCHANGE],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(this.#scope ? { scope: this.#scope } : {}),
    };
  }

  /** The agent runtime's client at mandate, stamped with mandate's issuer: never sent to another server. */
  clientInformation(): OAuthClientInformationMixed {
    const c = this.#session.client;
    return { client_id: c.clientId, ...(c.clientSecret !== undefined ? { client_secret: c.clientSecret } : {}), issuer: c.issuer } as OAuthClientInformationMixed;
  }

  /** A delegated token for the MCP server, exchanged again before it expires. */
  async tokens(): Promise<OAuthTokens> {
    const t = await this.source.get();
    return {
      access_token: t.accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(0, Math.floor(t.expiresIn())),
      ...(t.scope.length ? { scope: t.scope.join(' ') } : {}),
    };
  }

  /** Keeps the token the MCP SDK obtained with `prepareTokenRequest`'s grant. */
  saveTokens(tokens: OAuthTokens): void {
    this.source.set(new DelegatedToken(tokens.access_token, { expiresIn: tokens.expires_in, scope: tokens.scope, tokenType: tokens.token_type }));
  }

  /**
   * The grant of the MCP SDK's non-interactive token request: RFC 8693 token exchange with the
   * subject token and the agent's fresh agent token (the SDK adds `resource` and client auth).
   */
  async prepareTokenRequest(scope?: string): Promise<URLSearchParams> {
    const params = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE,
      subject_token: await this.#subject(),
      subject_token_type: TT_ACCESS_TOKEN,
      actor_token: await this.#session.token(),
      actor_token_type: TT_JWT,
    });
    const s = scope ?? this.#scope;
    if (s) params.set('scope', s);
    return params;
  }

  /** Remembers the RFC 9728 discovery: its `resource` names the MCP server in later exchanges. */
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
    const r = state.resourceMetadata?.resource;
    if (!this.#resource && typeof r === 'string') this.#resource = r;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }

  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): void {
    if (scope === 'all' || scope === 'tokens') this.source.invalidate();
    if (scope === 'all' || scope === 'discovery') this.#discovery = undefined;
  }

  redirectToAuthorization(): never {
    throw new Error('MandateOAuthProvider is non-interactive: the agent acts with a delegated token, no browser sign-in');
  }

  saveCodeVerifier(): void {}

  codeVerifier(): never {
    throw new Error('MandateOAuthProvider uses no authorization code');
  }

  toString(): string {
    return `MandateOAuthProvider(${this.#session.agent})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}
