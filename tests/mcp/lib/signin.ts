// A headless person at mandate's web pages: what an MCP client's "open the browser" step does,
// done with fetch. From the authorization URL the SDK hands to its redirect callback it follows
// redirects on mandate's origin, signs in on the login page (the form's hidden inputs, CSRF
// token included, plus username and password), presses Approve on the consent page, and stops
// at the redirect that leaves mandate: the client's loopback redirect URI, which is returned,
// not fetched. Cookies are kept per origin, as a browser would.

export interface Callback {
  /** The absolute redirect URI mandate sent the browser to, with its query. */
  url: URL;
  code: string | null;
  state: string | null;
  iss: string | null;
  error: string | null;
}

interface Form {
  method: string;
  action: string | null;
  hidden: [string, string][];
  inputs: string[];
  buttons: { name: string; value: string; text: string }[];
}

function attr(tag: string, name: string): string | null {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  if (!m) return null;
  return decodeEntities(m[1] ?? m[2] ?? m[3] ?? '');
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Every `<form>` of a page: method, action, hidden inputs, input names and buttons. */
export function forms(html: string): Form[] {
  const out: Form[] = [];
  const re = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const [, head, body] = m;
    const form: Form = {
      method: (attr(head, 'method') ?? 'get').toLowerCase(),
      action: attr(head, 'action'),
      hidden: [],
      inputs: [],
      buttons: [],
    };
    for (const i of body.matchAll(/<input\b[^>]*>/gi)) {
      const name = attr(i[0], 'name');
      if (!name) continue;
      form.inputs.push(name);
      if ((attr(i[0], 'type') ?? '').toLowerCase() === 'hidden') form.hidden.push([name, attr(i[0], 'value') ?? '']);
    }
    for (const b of body.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)) {
      form.buttons.push({
        name: attr(b[1], 'name') ?? '',
        value: attr(b[1], 'value') ?? '',
        text: decodeEntities(b[2].replace(/<[^>]*>/g, '')).trim(),
      });
    }
    out.push(form);
  }
  return out;
}

class Jar {
  private byOrigin = new Map<string, Map<string, string>>();
  store(url: URL, setCookies: string[]) {
    const jar = this.byOrigin.get(url.origin) ?? new Map<string, string>();
    for (const sc of setCookies) {
      const [pair] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/;\s*max-age=0\b/i.test(sc) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    this.byOrigin.set(url.origin, jar);
  }
  header(url: URL): string | undefined {
    const jar = this.byOrigin.get(url.origin);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/**
 * Signs `username` in at the authorization URL and approves; returns where mandate sent the
 * browser back. Throws with what was seen when a page is not what a person would expect.
 */
export async function signIn(authorizationUrl: string | URL, username: string, password: string): Promise<Callback> {
  const jar = new Jar();
  let url = new URL(authorizationUrl);
  const origin = url.origin;
  let init: RequestInit = { method: 'GET' };
  let signedIn = false;
  let approved = false;
  for (let step = 0; step < 12; step++) {
    const headers = new Headers(init.headers);
    headers.set('accept', 'text/html');
    const cookie = jar.header(url);
    if (cookie) headers.set('cookie', cookie);
    const resp = await fetch(url, { ...init, headers, redirect: 'manual' });
    jar.store(url, resp.headers.getSetCookie());
    const body = await resp.text();
    if (resp.status >= 300 && resp.status < 400) {
      const loc = resp.headers.get('location');
      if (!loc) throw new Error(`HTTP ${resp.status} without Location at ${url}`);
      const next = new URL(loc, url);
      if (next.origin !== origin) {
        const q = next.searchParams;
        return { url: next, code: q.get('code'), state: q.get('state'), iss: q.get('iss'), error: q.get('error') };
      }
      url = next;
      init = { method: 'GET' };
      continue;
    }
    const summary = `HTTP ${resp.status} at ${url.pathname}: ${body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').slice(0, 300)}`;
    const all = forms(body);
    const login = all.find((f) => f.method === 'post' && f.inputs.includes('password'));
    if (login) {
      if (signedIn) throw new Error(`signing in as ${username} failed: ${summary}`);
      signedIn = true;
      const fields = new URLSearchParams([...login.hidden, ['username', username], ['password', password]]);
      url = new URL(login.action ?? '', url);
      init = { method: 'POST', body: fields, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
      continue;
    }
    const consent = all.find((f) => f.buttons.some((b) => b.text === 'Approve'));
    if (consent) {
      if (approved) throw new Error(`the consent page came back after Approve: ${summary}`);
      approved = true;
      const approve = consent.buttons.find((b) => b.text === 'Approve')!;
      const fields = new URLSearchParams(consent.hidden);
      if (approve.name) fields.append(approve.name, approve.value);
      url = new URL(consent.action ?? '', url);
      init = { method: 'POST', body: fields, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
      continue;
    }
    throw new Error(`neither a login nor a consent page, nor a redirect: ${summary}`);
  }
  throw new Error('no redirect back to the client after 12 steps');
}
