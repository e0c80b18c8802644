// Starts a REAL mandate for a test file: the binary from MANDATE_BIN (default /work/bin/mandate),
// a config written to a temp dir (SQLite, port 0, no issuer: it becomes http://127.0.0.1:PORT),
// and reads `listening on http://...` from its stdout. Agents get fresh P-256 keys; alice signs
// in through the public client `cli` to get a human token.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { AgentSession, MandateClient, SoftwareKey } from '@mandate/sdk';
import { humanToken } from './browser.ts';

export const USER = 'alice';
export const PASSWORD = 'alice-sdk-password';
export const CLIENT_ID = 'agent-runtime';
export const CLIENT_SECRET = 'agent-runtime-secret';
export const RS_ID = 'orders-api';
export const RS_SECRET = 'orders-api-secret';
export const OTHER_RS = 'billing-api';
export const SCOPES = ['orders:read', 'orders:write', 'payments:write', 'mcp:tools'];
const REDIRECT = 'http://127.0.0.1:9/callback';

export interface Mandate {
  issuer: string;
  dir: string;
  /** The config file the server runs with (for the CLI). */
  configPath: string;
  keys: Record<string, SoftwareKey>;
  /** A client of the agent runtime (token exchange + CIBA). */
  client(): MandateClient;
  session(agent: string): AgentSession;
  /** A fresh token of alice's, from a scripted sign-in (code + PKCE). */
  humanToken(scope?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface MandateOptions {
  agents?: string[];
  /** Lines added to the config (TOML). */
  extra?: string;
  /** Cedar policy text; written to a file the config names. */
  policy?: string;
  /** Lines added to the [tokens] table. */
  tokens?: string;
  /** Lines added to the [ciba] table (interval is 1s). */
  ciba?: string;
  /** MANDATE_* overrides the server runs with (e.g. MANDATE_LISTEN and MANDATE_ISSUER). */
  env?: Record<string, string>;
  /** Files written next to the config before the server starts (name → content). */
  files?: Record<string, string>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startMandate(opts: MandateOptions = {}): Promise<Mandate> {
  const bin = process.env.MANDATE_BIN || '/work/bin/mandate';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mandate-ts-sdk-'));
  const agents = opts.agents ?? ['planner', 'payments-bot', 'auditor'];
  const keys: Record<string, SoftwareKey> = {};
  let agentToml = '';
  for (const a of agents) {
    keys[a] = await SoftwareKey.generate();
    const jwk = await keys[a].publicJwk();
    agentToml += `\n[[agents]]\nname = "${a}"\npublic_jwk = { kty = "EC", crv = "P-256", x = "${jwk.x}", y = "${jwk.y}" }\n`;
  }
  writeFileSync(path.join(dir, 'kek'), Buffer.alloc(32, 9).toString('base64'));
  for (const [name, content] of Object.entries(opts.files ?? {})) writeFileSync(path.join(dir, name), content);
  let policyToml = '';
  if (opts.policy) {
    writeFileSync(path.join(dir, 'policy.cedar'), opts.policy);
    policyToml = 'files = ["policy.cedar"]\n';
  }
  const q = (xs: string[]) => `[${xs.map((s) => `"${s}"`).join(', ')}]`;
  const config = `# Written by sdk/typescript/test/harness.ts for one test file.
listen = "127.0.0.1:0"
database_url = "sqlite://${path.join(dir, 'mandate.db')}"
kek_file = "${path.join(dir, 'kek')}"

[tokens]
max_delegation_depth = 2
${opts.tokens ?? ''}

[policy]
high_risk_scopes = ["payments:write"]
${policyToml}

[ciba]
interval = "1s"
${opts.ciba ?? ''}

[[users]]
username = "${USER}"
password = "${PASSWORD}"
scopes = ${q(SCOPES)}

[[clients]]
client_id = "cli"
public = true
redirect_uris = ["${REDIRECT}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ${q(SCOPES)}

[[clients]]
client_id = "${CLIENT_ID}"
client_secret = "${CLIENT_SECRET}"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange", "urn:openid:params:grant-type:ciba"]

[[clients]]
client_id = "${RS_ID}"
client_secret = "${RS_SECRET}"
introspect = true

[[clients]]
client_id = "${OTHER_RS}"
client_secret = "billing-api-secret"
introspect = true
${agentToml}
${opts.extra ?? ''}
`;
  const configPath = path.join(dir, 'mandate.toml');
  writeFileSync(configPath, config);
  const child: ChildProcess = spawn(bin, ['serve', '--config', configPath], {
    // mandate reads every MANDATE_* variable as a config override: pass none but its log filter.
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_'))),
      MANDATE_LOG: process.env.MANDATE_TEST_LOG ?? 'warn',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Never outlive the test process, even when it ends without its after() hooks.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    if (process.env.MANDATE_TEST_LOG) process.stderr.write(c);
  });
  const lines = createInterface({ input: child.stdout! });
  const issuer = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mandate did not print its address within 30s: ${stderr}`)), 30_000);
    child.on('error', (e) => reject(new Error(`cannot start ${bin} (set MANDATE_BIN): ${e.message}`)));
    child.on('exit', (code) => reject(new Error(`mandate exited with ${code} before listening: ${stderr}`)));
    lines.on('line', (line) => {
      const m = /^listening on (\S+)/.exec(line);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
  });
  const client = () => new MandateClient(issuer, CLIENT_ID, CLIENT_SECRET);
  return {
    issuer,
    dir,
    configPath,
    keys,
    client,
    session: (agent) => new AgentSession(client(), agent, keys[agent]!),
    humanToken: (scope = SCOPES.join(' ')) =>
      humanToken(issuer, { clientId: 'cli', redirectUri: REDIRECT, username: USER, password: PASSWORD, scope }),
    stop: async () => {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
