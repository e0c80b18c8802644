// The MCP end-to-end suite: a real mandate (the built binary, on port 0, with a generated
// config), a real MCP server on the official TypeScript SDK protected by it, the official MCP SDK
// clients signing in through it, the MCP conformance tool's authorization-server scenarios, and a
// browser-style CORS preflight. Run by tests/mcp/run.sh (see docs/mcp.md).
//
//   harness.ts --mandate PATH [--modes preregistered,dcr,cimd] [--clients ts-sdk1,ts-client2,python]
//              [--no-conformance] [--no-feature-config] [--database postgres://...]
//
// mandate keeps its data in a SQLite file of the run's folder, or, with --database, in a fresh
// schema of that PostgreSQL database (made and dropped with psql).
//
// Prints one line per check (PASS/FAIL/XFAIL/WARN) and closes with `N passed, N failed`.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { startMcpServer, SCOPE, type McpServerHandle } from './lib/mcp-server.ts';
import { startCimdHost, type CimdHost } from './lib/cimd-host.ts';
import { cimdConfig, cimdEnv, dcrConfig } from './lib/feature-config.ts';
import { runConformance } from './lib/conformance.ts';
import { EXPECTED_FAILURES, KNOWN_WARNINGS } from './lib/expected.ts';
import type { ClientConfig, Mode } from './lib/client-common.ts';

const ROOT = path.dirname(new URL(import.meta.url).pathname);
const MODES: Mode[] = ['preregistered', 'dcr', 'cimd'];
const USER = 'alice';
const PASSWORD = 'alice-mcp-password';
const RS_ID = 'mcp-server';
const RS_SECRET = 'mcp-server-secret';
const CONFORMANCE_CLIENT = 'mcp-conformance';
const OTHER_AUDIENCE = 'http://127.0.0.1:9/other-api';
const PROBE_ID = 'mcp-probe';
const PROBE_SECRET = 'mcp-probe-secret';

interface ClientKind {
  name: string;
  label: string;
  command: (config: string) => [string, string[]];
}

const tsx = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const CLIENTS: ClientKind[] = [
  {
    name: 'ts-sdk1',
    label: 'TypeScript @modelcontextprotocol/sdk 1.x',
    command: (c) => [tsx, [path.join(ROOT, 'clients', 'ts-sdk1.ts'), c]],
  },
  {
    name: 'ts-client2',
    label: 'TypeScript @modelcontextprotocol/client 2.x',
    command: (c) => [tsx, [path.join(ROOT, 'clients', 'ts-client2.ts'), c]],
  },
  {
    name: 'python',
    label: 'Python mcp 2.x (mcp.client.auth)',
    command: (c) => [path.join(ROOT, '.venv', 'bin', 'python'), [path.join(ROOT, 'clients', 'python_client.py'), c]],
  },
];

function parseArgs(argv: string[]) {
  const out = {
    mandate: process.env.MCP_MANDATE_BIN ?? '',
    modes: (process.env.MCP_MODES ?? 'preregistered,dcr,cimd').split(',').map((s) => s.trim()).filter(Boolean),
    clients: CLIENTS.map((c) => c.name),
    conformance: true,
    featureConfig: true,
    database: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? '';
    if (a === '--mandate') out.mandate = value();
    else if (a === '--modes') out.modes = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--clients') out.clients = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--no-conformance') out.conformance = false;
    // Runs dcr/cimd without their mandate settings: shows what the SDKs do against a mandate
    // that lacks the feature (they must fail).
    else if (a === '--no-feature-config') out.featureConfig = false;
    else if (a === '--database') out.database = value();
    else throw new Error(`unknown argument ${a}`);
  }
  for (const m of out.modes) if (!MODES.includes(m as Mode)) throw new Error(`unknown mode ${m}; modes: ${MODES.join(', ')}`);
  for (const c of out.clients) if (!CLIENTS.some((k) => k.name === c)) throw new Error(`unknown client ${c}`);
  if (!out.mandate) throw new Error('--mandate PATH (or MCP_MANDATE_BIN) is required');
  if (out.database && !/^postgres(ql)?:\/\//.test(out.database)) throw new Error('--database takes a postgres:// URL');
  return out as { mandate: string; modes: Mode[]; clients: string[]; conformance: boolean; featureConfig: boolean; database: string };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function mandateConfig(dir: string, databaseUrl: string, mcpUrl: string, redirects: Record<string, string>, conformanceRedirect: string, extra: string) {
  const client = (id: string, redirect: string) => `
[[clients]]
client_id = "${id}"
public = true
redirect_uris = ["${redirect}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["${SCOPE}"]
`;
  return `# Written by tests/mcp/harness.ts for one run.
listen = "127.0.0.1:0"
database_url = "${databaseUrl}"
kek_file = "${path.join(dir, 'kek')}"

[[users]]
username = "${USER}"
password = "${PASSWORD}"
scopes = ["${SCOPE}"]

# The MCP server, named by its URL (RFC 8707 resource; aud of its tokens), with its scope and
# tools for the consent page.
[[resources]]
uri = "${mcpUrl}"
name = "mandate test MCP server"
scopes = ["${SCOPE}"]
tools = [
  { name = "whoami", scope = "${SCOPE}", description = "Say who the token was issued to" },
  { name = "add", scope = "${SCOPE}", description = "Add two numbers" },
]

# ... and as the client it introspects with (RFC 7662), whose audience is that URL.
[[clients]]
client_id = "${RS_ID}"
client_secret = "${RS_SECRET}"
introspect = true
audience = "${mcpUrl}"
${Object.entries(redirects)
  .map(([name, uri]) => client(`mcp-${name}`, uri))
  .join('')}
# For the audience check: another resource server, and a confidential client that can get
# tokens for either (client_credentials).
[[clients]]
client_id = "other-api"
client_secret = "other-api-secret"
introspect = true
audience = "${OTHER_AUDIENCE}"

[[clients]]
client_id = "${PROBE_ID}"
client_secret = "${PROBE_SECRET}"
grant_types = ["client_credentials"]
scopes = ["${SCOPE}"]

# The conformance tool's client: it listens on this loopback port for the redirect.
${client(CONFORMANCE_CLIENT, conformanceRedirect)}
${extra}`;
}

async function startMandate(bin: string, configPath: string, env: Record<string, string>, log: (s: string) => void) {
  const child = spawn(bin, ['serve', '--config', configPath], {
    // mandate reads every MANDATE_* variable as a config override: pass none but its log filter.
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_'))),
      MANDATE_LOG: process.env.MANDATE_LOG ?? 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (c: Buffer) => log(`mandate: ${c.toString().trimEnd()}`));
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('mandate did not print its address within 30s')), 30_000);
    child.on('exit', (code) => reject(new Error(`mandate exited with ${code} before listening (its log is above)`)));
    lines.on('line', (line) => {
      const m = /^listening on (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return { child, url };
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs / 1000}s)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mandate-mcp-'));
  const results: { status: 'PASS' | 'FAIL' | 'XFAIL' | 'WARN'; name: string; detail?: string }[] = [];
  const record = (status: 'PASS' | 'FAIL' | 'XFAIL' | 'WARN', name: string, detail?: string) => {
    results.push({ status, name, detail });
    console.log(`${status} ${name}${detail ? ` — ${detail}` : ''}`);
  };
  /** A check that may be listed in lib/expected.ts under `id`. */
  const check = (id: string, name: string, ok: boolean, detail?: string) => {
    const expected = EXPECTED_FAILURES[id];
    if (ok && expected) record('FAIL', name, `passes but lib/expected.ts lists ${id} as failing (${expected}): remove the entry`);
    else if (ok) record('PASS', name);
    else if (expected) record('XFAIL', name, `${detail} (expected: ${expected})`);
    else record('FAIL', name, detail);
  };
  const log = (s: string) => process.stderr.write(`${s}\n`);
  let mandate: ChildProcess | null = null;
  let mcp: McpServerHandle | null = null;
  let cimd: CimdHost | null = null;
  let schema = '';
  try {
    let databaseUrl = `sqlite://${path.join(dir, 'mandate.db')}`;
    if (opts.database) {
      schema = `t_mcp_${randomBytes(6).toString('hex')}`;
      execFileSync('psql', [opts.database, '-qAt', '-c', `CREATE SCHEMA ${schema}`], { stdio: ['ignore', 'ignore', 'inherit'] });
      databaseUrl = `${opts.database}${opts.database.includes('?') ? '&' : '?'}options=-c%20search_path%3D${schema}`;
    }
    writeFileSync(path.join(dir, 'kek'), Buffer.alloc(32, 7).toString('base64'));
    mcp = await startMcpServer();
    const redirects: Record<string, string> = {};
    for (const c of opts.clients) redirects[c] = `http://127.0.0.1:${await freePort()}/callback`;
    const conformancePort = await freePort();
    let extra = '';
    let env: Record<string, string> = {};
    if (opts.modes.includes('dcr') && opts.featureConfig) extra += dcrConfig();
    if (opts.modes.includes('cimd')) {
      cimd = await startCimdHost(dir);
      if (opts.featureConfig) {
        extra += cimdConfig(cimd.caFile);
        env = { ...env, ...cimdEnv(cimd.bundleFile) };
      }
    }
    const configPath = path.join(dir, 'mandate.toml');
    writeFileSync(configPath, mandateConfig(dir, databaseUrl, mcp.url, redirects, `http://127.0.0.1:${conformancePort}/callback`, extra));
    const m = await startMandate(opts.mandate, configPath, env, log);
    mandate = m.child;
    const issuer = m.url;
    mcp.configure(issuer, RS_ID, RS_SECRET);
    log(`mandate at ${issuer} on ${opts.database ? `PostgreSQL (schema ${schema})` : 'SQLite'}, MCP server at ${mcp.url}, modes ${opts.modes.join(',')}, work dir ${dir}`);

    // A browser-based client (the MCP Inspector runs at http://127.0.0.1:6274) preflights /token.
    {
      const origin = 'http://127.0.0.1:6274';
      const resp = await fetch(`${issuer}/token`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      const allow = resp.headers.get('access-control-allow-origin');
      const methods = resp.headers.get('access-control-allow-methods') ?? '';
      const ok = resp.status >= 200 && resp.status < 300 && allow === origin && /\bPOST\b/i.test(methods);
      record(ok ? 'PASS' : 'FAIL', 'CORS: OPTIONS /token from http://127.0.0.1:6274 is allowed (Fetch standard preflight)',
        ok ? undefined : `HTTP ${resp.status}, Access-Control-Allow-Origin ${allow}, Access-Control-Allow-Methods ${methods}`);
      if (opts.modes.includes('dcr')) {
        const reg = await fetch(`${issuer}/register`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
        });
        const regAllow = reg.headers.get('access-control-allow-origin');
        const regOk = reg.status >= 200 && reg.status < 300 && regAllow === origin;
        record(regOk ? 'PASS' : 'FAIL', 'CORS: OPTIONS /register from http://127.0.0.1:6274 is allowed (a browser-based client registers itself)',
          regOk ? undefined : `HTTP ${reg.status}, Access-Control-Allow-Origin ${regAllow}`);
      }
      const meta = await fetch(`${issuer}/.well-known/oauth-authorization-server`, { headers: { origin } });
      const metaAllow = meta.headers.get('access-control-allow-origin');
      record(meta.status === 200 && metaAllow === origin ? 'PASS' : 'FAIL',
        'CORS: the metadata answers a cross-origin GET from http://127.0.0.1:6274 with its origin',
        meta.status === 200 && metaAllow === origin ? undefined : `HTTP ${meta.status}, Access-Control-Allow-Origin ${metaAllow}`);
    }

    // Discovery documents as clients read them.
    {
      const oidc = await fetch(`${issuer}/.well-known/openid-configuration`);
      const doc = (await oidc.json().catch(() => ({}))) as Record<string, unknown>;
      const missing = ['issuer', 'authorization_endpoint', 'jwks_uri', 'response_types_supported', 'subject_types_supported',
        'id_token_signing_alg_values_supported'].filter((k) => doc[k] === undefined);
      check('oidc-discovery-required-fields',
        'discovery: /.well-known/openid-configuration has every field OpenID Connect Discovery 1.0 §3 requires',
        oidc.status === 200 && missing.length === 0, `HTTP ${oidc.status}, missing ${missing.join(', ')}`);
    }

    // The MCP server refuses a request without a token the way the MCP spec says.
    {
      const resp = await fetch(mcp.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      const www = resp.headers.get('www-authenticate') ?? '';
      const ok = resp.status === 401 && www.includes(`resource_metadata="${mcp.metadataUrl}"`);
      record(ok ? 'PASS' : 'FAIL', 'MCP server: no token gets 401 with WWW-Authenticate: Bearer resource_metadata (RFC 9728 §5.1)',
        ok ? undefined : `HTTP ${resp.status}, WWW-Authenticate ${www}`);
    }

    // The MCP server takes a token for itself and refuses one for another resource (RFC 8707).
    {
      const tokenFor = async (target: string) => {
        const resp = await fetch(`${issuer}/token`, {
          method: 'POST',
          headers: {
            authorization: `Basic ${Buffer.from(`${PROBE_ID}:${PROBE_SECRET}`).toString('base64')}`,
            'content-type': 'application/x-www-form-urlencoded',
          },
          body: new URLSearchParams({ grant_type: 'client_credentials', scope: SCOPE, resource: target }),
        });
        const body = (await resp.json()) as { access_token?: string };
        if (!body.access_token) throw new Error(`client_credentials for ${target}: HTTP ${resp.status} ${JSON.stringify(body)}`);
        return body.access_token;
      };
      const list = (token: string) =>
        fetch(mcp!.url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2025-06-18',
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
        });
      // The resource is matched by canonical form (scheme and host without case, MCP
      // authorization spec; RFC 3986 §6.2.2.1); the token carries the URI as configured.
      const shouted = mcp.url.replace('http://127.0.0.1', 'HTTP://127.0.0.1');
      const loud = await list(await tokenFor(shouted));
      record(loud.status === 200 ? 'PASS' : 'FAIL',
        'MCP server: a token asked for with the resource spelled in another case (HTTP://...) is for it (canonical resource)',
        loud.status === 200 ? undefined : `HTTP ${loud.status}, WWW-Authenticate ${loud.headers.get('www-authenticate')}`);
      const mine = await list(await tokenFor(mcp.url));
      const mineBody = await mine.text();
      const mineOk = mine.status === 200 && mineBody.includes('whoami');
      record(mineOk ? 'PASS' : 'FAIL', 'MCP server: a token with resource = its URL (aud) is accepted',
        mineOk ? undefined : `HTTP ${mine.status}: ${mineBody.slice(0, 200)}`);
      const other = await list(await tokenFor(OTHER_AUDIENCE));
      const www = other.headers.get('www-authenticate') ?? '';
      record(other.status === 401 && www.includes('error="invalid_token"') ? 'PASS' : 'FAIL',
        'MCP server: a token for another resource gets 401 invalid_token (RFC 8707, RFC 6750 §3.1)',
        other.status === 401 ? undefined : `HTTP ${other.status}, WWW-Authenticate ${www}`);
    }

    for (const mode of opts.modes) {
      for (const name of opts.clients) {
        const kind = CLIENTS.find((k) => k.name === name)!;
        const cfg: ClientConfig = {
          serverUrl: mcp.url,
          mode,
          issuer,
          redirectUri: redirects[name],
          username: USER,
          password: PASSWORD,
        };
        if (mode === 'preregistered') cfg.clientId = `mcp-${name}`;
        if (mode === 'cimd') {
          cfg.clientMetadataUrl = cimd!.publish(name, {
            client_name: `mandate test: ${kind.label}`,
            redirect_uris: [redirects[name]],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
          });
        }
        const t0 = Date.now();
        const [cmd, args] = kind.command(JSON.stringify(cfg));
        const r = await run(cmd, args, 60_000);
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        const title = `${kind.label} [${mode}]: discovery, sign-in (code + PKCE, resource, iss), tools/list, tools/call, refresh, call again (${secs}s)`;
        const unfetched = mode === 'cimd' && !cimd!.fetches.get(cfg.clientMetadataUrl!);
        if (r.code === 0 && line && unfetched) {
          record('FAIL', title, `mandate never fetched ${cfg.clientMetadataUrl}`);
        } else if (r.code === 0 && line) {
          record('PASS', title);
          log(`  ${line}`);
        } else {
          record('FAIL', title, `exit ${r.code}`);
          log(r.stderr.trimEnd().split('\n').map((l) => `    ${l}`).join('\n'));
        }
      }
    }

    if (opts.conformance) {
      const t0 = Date.now();
      const c = await runConformance({
        dir,
        issuer,
        clientId: CONFORMANCE_CLIENT,
        resource: mcp.url,
        port: conformancePort,
        username: USER,
        password: PASSWORD,
        log,
      });
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (c.checks.length === 0) {
        record('FAIL', `conformance: no results (exit ${c.exitCode}, ${secs}s)`);
        log(c.output);
      }
      for (const x of c.checks) {
        const name = `conformance ${x.scenario}: ${x.id}`;
        if (x.status === 'SUCCESS' || x.status === 'FAILURE') check(x.id, name, x.status === 'SUCCESS', x.errorMessage);
        else record('WARN', name, `${x.status}: ${x.errorMessage ?? ''}${KNOWN_WARNINGS[x.id] ? ` (known: ${KNOWN_WARNINGS[x.id]})` : ''}`);
      }
      log(`conformance tool: exit ${c.exitCode}, ${c.checks.length} checks, ${secs}s`);
      if (c.checks.some((x) => x.status === 'FAILURE' && !EXPECTED_FAILURES[x.id])) log(c.output);
    }
    const disabled = MODES.filter((m) => !opts.modes.includes(m));
    if (disabled.length) log(`not run (see tests/mcp/lib/feature-config.ts): modes ${disabled.join(', ')}`);
  } catch (e) {
    record('FAIL', 'harness', e instanceof Error ? (e.stack ?? e.message) : String(e));
  } finally {
    mandate?.kill('SIGTERM');
    await mcp?.close();
    await cimd?.close();
    if (!process.env.MCP_KEEP_DIR) rmSync(dir, { recursive: true, force: true });
    if (schema) {
      await new Promise((resolve) => mandate?.exitCode !== null ? resolve(null) : mandate?.once('exit', resolve));
      try {
        execFileSync('psql', [opts.database, '-qAt', '-c', `DROP SCHEMA ${schema} CASCADE`], { stdio: ['ignore', 'ignore', 'inherit'] });
      } catch {
        log(`could not drop schema ${schema}`);
      }
    }
  }
  const passed = results.filter((r) => r.status === 'PASS').length;
  const failed = results.filter((r) => r.status === 'FAIL').length;
  const xfail = results.filter((r) => r.status === 'XFAIL').length;
  const warn = results.filter((r) => r.status === 'WARN').length;
  console.log(`${opts.database ? 'PostgreSQL' : 'SQLite'}: ${xfail} expected failures, ${warn} warnings, ${((Date.now() - started) / 1000).toFixed(1)}s`);
  console.log(`mcp: ${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

void main();
