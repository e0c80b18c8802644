// A headless person at mandate's pages, with fetch: keeps cookies, follows redirects on
// mandate's origin, reads forms (hidden inputs, CSRF token included) and submits them as a
// browser would. Used to sign alice in (authorization code + PKCE) and to press Approve/Deny on
// /approvals. (The same idea as tests/mcp/lib/signin.ts, written for these tests.)

import * as oauth from 'oauth4webapi';

export interface Form {
  method: string;
  action: string;
  hidden: [string, string][];
  inputs: [string, string][];
  buttons: { name: string; value: string; text: string }[];
  /** The HTML of the <section> around the form, to pick one of several. */
  context: string;
}

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? decode(m[1] ?? m[2] ?? m[3] ?? '') : undefined;
}

function decode(s: string): string {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

export function forms(html: string): Form[] {
  const out: Form[] = [];
  const re = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const head = m[1] ?? '';
    const body = m[2] ?? '';
    const sectionStart = html.lastIndexOf('<section', m.index);
    const form: Form = {
      method: (attr(head, 'method') ?? 'get').toLowerCase(),
      action: attr(head, 'action') ?? '',
      hidden: [],
      inputs: [],
      buttons: [],
      context: decode(html.slice(sectionStart >= 0 ? sectionStart : m.index, m.index).replace(/<[^>]*>/g, ' ')),
    };
    for (const i of body.matchAll(/<input\b[^>]*>/gi)) {
      const name = attr(i[0], 'name');
      if (!name) continue;
      const type = (attr(i[0], 'type') ?? 'text').toLowerCase();
      const value = attr(i[0], 'value') ?? '';
      if (type === 'hidden') form.hidden.push([name, value]);
      else if (type === 'checkbox') {
        if (/\schecked\b/i.test(i[0])) form.inputs.push([name, value || 'on']);
      } else form.inputs.push([name, value]);
    }
    for (const b of body.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)) {
      form.buttons.push({ name: attr(b[1] ?? '', 'name') ?? '', value: attr(b[1] ?? '', 'value') ?? '', text: decode((b[2] ?? '').replace(/<[^>]*>/g, '')).trim() });
    }
    out.push(form);
  }
  return out;
}

export class Browser {
  #cookies = new Map<string, string>();
  constructor(readonly origin: string) {}

  /** Loads `url`, following redirects on this origin; stops at one that leaves it. */
  async go(url: string | URL, init: RequestInit = {}): Promise<{ url: URL; status: number; html: string; left?: URL }> {
    let at = new URL(url, this.origin);
    let req: RequestInit = init;
    for (let i = 0; i < 10; i++) {
      const headers = new Headers(req.headers);
      headers.set('accept', 'text/html');
      if (this.#cookies.size) headers.set('cookie', [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; '));
      const resp = await fetch(at, { ...req, headers, redirect: 'manual' });
      for (const sc of resp.headers.getSetCookie()) {
        const pair = sc.split(';')[0] ?? '';
        const eq = pair.indexOf('=');
        if (eq <= 0) continue;
        const [k, v] = [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
        if (v === '' || /max-age=0\b/i.test(sc)) this.#cookies.delete(k);
        else this.#cookies.set(k, v);
      }
      const html = await resp.text();
      if (resp.status >= 300 && resp.status < 400) {
        const next = new URL(resp.headers.get('location') ?? '', at);
        if (next.origin !== this.origin) return { url: at, status: resp.status, html, left: next };
        at = next;
        req = {};
        continue;
      }
      return { url: at, status: resp.status, html };
    }
    throw new Error('too many redirects');
  }

  /** Submits `form` with its hidden fields, its filled inputs, `extra`, and the button pressed. */
  submit(from: URL, form: Form, extra: [string, string][] = [], button?: { name: string; value: string }) {
    const fields = new URLSearchParams([...form.hidden, ...form.inputs.filter(([k]) => !extra.some(([e]) => e === k)), ...extra]);
    if (button?.name) fields.append(button.name, button.value);
    return this.go(new URL(form.action, from), {
      method: 'POST',
      body: fields,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }

  /** Signs in if the page is the login form. */
  async signInIfAsked(page: { url: URL; html: string; status: number; left?: URL }, username: string, password: string) {
    const login = forms(page.html).find((f) => f.method === 'post' && f.inputs.some(([k]) => k === 'password'));
    if (!login) return page;
    const next = await this.submit(page.url, login, [['username', username], ['password', password]]);
    if (forms(next.html).some((f) => f.inputs.some(([k]) => k === 'password'))) throw new Error(`sign-in as ${username} failed`);
    return next;
  }
}

/**
 * A human's access token: the authorization code flow with PKCE (RFC 7636, S256) through the
 * public client `clientId`, signing in and approving consent as a person would.
 */
export async function humanToken(issuer: string, opts: HumanTokenOptions): Promise<string> {
  return (await humanTokens(issuer, opts)).access_token;
}

export interface HumanTokenOptions {
  clientId: string;
  redirectUri: string;
  username: string;
  password: string;
  scope: string;
  /** RFC 8707 `resource`, e.g. a resource server's audience. */
  resource?: string;
}

/** The whole token response of {@link humanToken} (with its refresh token). */
export async function humanTokens(issuer: string, opts: HumanTokenOptions): Promise<oauth.TokenEndpointResponse> {
  const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true }));
  const client: oauth.Client = { client_id: opts.clientId };
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint!);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: opts.clientId,
    redirect_uri: opts.redirectUri,
    scope: opts.scope,
    state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...(opts.resource ? { resource: opts.resource } : {}),
  }).toString();
  const left = await followSignIn(url, opts.username, opts.password);
  const params = oauth.validateAuthResponse(as, client, left.searchParams, state);
  const resp = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, opts.redirectUri, verifier, { [oauth.allowInsecureRequests]: true });
  return oauth.processAuthorizationCodeResponse(as, client, resp);
}

/**
 * What a person's browser does with an authorization URL: sign in, press Approve on the consent
 * page, and stop at the redirect that leaves mandate (returned, not loaded).
 */
export async function followSignIn(url: URL, username: string, password: string): Promise<URL> {
  const browser = new Browser(url.origin);
  let page = await browser.signInIfAsked(await browser.go(url), username, password);
  if (!page.left) {
    const consent = forms(page.html).find((f) => f.buttons.some((b) => b.text === 'Approve'));
    if (!consent) throw new Error(`no consent page: HTTP ${page.status} ${page.html.replace(/<[^>]*>/g, ' ').slice(0, 300)}`);
    page = await browser.submit(page.url, consent, [], consent.buttons.find((b) => b.text === 'Approve'));
  }
  if (!page.left) throw new Error(`no redirect back: HTTP ${page.status}`);
  return page.left;
}

/** Signs in at /approvals and presses `decision` on the request whose binding message is `message`. */
export async function answerApproval(issuer: string, opts: { username: string; password: string; bindingMessage: string; decision: 'Approve' | 'Deny' }) {
  const browser = new Browser(new URL(issuer).origin);
  const page = await browser.signInIfAsked(await browser.go('/approvals'), opts.username, opts.password);
  const all = forms(page.html);
  const form = all.find((f) => f.context.includes(opts.bindingMessage) && f.buttons.some((b) => b.text === opts.decision));
  if (!form) throw new Error(`no request "${opts.bindingMessage}" on /approvals: ${page.html.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').slice(0, 400)}`);
  const after = await browser.submit(page.url, form, [], form.buttons.find((b) => b.text === opts.decision));
  if (after.status >= 400) throw new Error(`pressing ${opts.decision}: HTTP ${after.status}`);
}
