// The human's part: alice signs in at mandate in her browser and the example gets her access
// token (authorization code with PKCE, RFC 6749 §4.1 and RFC 7636, through a loopback redirect,
// RFC 8252 §7.3). This is the app's side of sign-in, not the SDK's: an agent acts for a person
// with whatever token that person handed it. The demo config's public client `example-agent`
// redirects to http://127.0.0.1:9902/callback.
//
// EXAMPLE_BROWSER=none prints the URL instead of opening it (the examples' tests play the person).

import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';

const CLIENT_ID = 'example-agent';
const PORT = 9902;
const REDIRECT_URI = `http://127.0.0.1:${PORT}/callback`;

const b64url = (b: Buffer) => b.toString('base64url');

function openBrowser(url: string): void {
  if (process.env.EXAMPLE_BROWSER === 'none') return;
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  spawn(opener, [url], { stdio: 'ignore', detached: true }).on('error', () => {}).unref();
}

/** Alice's access token for `scope`, after she signs in and consents in her browser. */
export async function signIn(issuer: string, scope: string, timeoutMs = 300_000): Promise<string> {
  const verifier = b64url(randomBytes(48));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const metadata = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, string>;
  const url = new URL(metadata.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  })) {
    url.searchParams.set(k, v);
  }

  const back = await new Promise<URLSearchParams>((resolve, reject) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('Signed in. You can close this tab.\n');
      clearTimeout(timer);
      server.close();
      resolve(new URL(req.url ?? '/', REDIRECT_URI).searchParams);
    });
    const timer = setTimeout(() => {
      server.close();
      reject(new Error('nobody signed in in time'));
    }, timeoutMs);
    server.listen(PORT, '127.0.0.1', () => {
      console.log(`Sign in as alice (password alice-password) at:\n  ${url}`);
      openBrowser(url.href);
    });
  });
  if (back.get('state') !== state) throw new Error('the sign-in came back with another state: refused (RFC 6749 §10.12)');
  const code = back.get('code');
  if (!code) throw new Error(`sign-in refused: ${back.get('error') ?? 'no code'}`);
  const resp = await fetch(metadata.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: verifier }),
  });
  if (!resp.ok) throw new Error(`the token endpoint answered ${resp.status}`);
  return ((await resp.json()) as { access_token: string }).access_token;
}
