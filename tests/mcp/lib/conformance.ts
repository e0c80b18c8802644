// The MCP conformance tool's authorization-server scenarios (@modelcontextprotocol/conformance,
// its `authorization` command) against mandate. The tool prints an authorization URL and waits
// for the browser to come back to http://127.0.0.1:PORT/callback; here the headless person signs
// in at that URL and the redirect back is delivered to the tool's callback server.
//
// The tool imports `fs.globSync` (Node >= 22) though this command never calls it; on Node 20 the
// preload in ../conformance-shim/ supplies it, without touching node_modules.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { signIn } from './signin.ts';

export interface Check {
  scenario: string;
  id: string;
  status: string;
  errorMessage?: string;
}

export interface ConformanceSettings {
  dir: string;
  issuer: string;
  clientId: string;
  resource: string;
  port: number;
  username: string;
  password: string;
  log: (s: string) => void;
}

function findChecks(dir: string, scenario = ''): Check[] {
  const out: Check[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findChecks(p, name));
    else if (name === 'checks.json') {
      for (const c of JSON.parse(readFileSync(p, 'utf8')) as Check[]) {
        out.push({ scenario: scenario.replace(/^authorization-server-/, '').replace(/-[0-9T:.Z-]+$/, '') || scenario, id: c.id, status: c.status, errorMessage: c.errorMessage });
      }
    }
  }
  return out;
}

export async function runConformance(s: ConformanceSettings): Promise<{ checks: Check[]; exitCode: number; output: string }> {
  const here = path.dirname(new URL(import.meta.url).pathname);
  const root = path.resolve(here, '..');
  const outDir = path.join(s.dir, 'conformance');
  const args = [
    '--import', path.join(root, 'conformance-shim', 'register.mjs'),
    path.join(root, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js'),
    'authorization',
    '--url', s.issuer,
    '--client-id', s.clientId,
    '--resource', s.resource,
    '--port', String(s.port),
    '--output-dir', outDir,
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let signing: Promise<void> | null = null;
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    output += text;
    // The authorization URL is the line that starts with the metadata's authorization_endpoint.
    for (const line of output.split('\n')) {
      if (!signing && line.startsWith(`${s.issuer}/authorize?`)) {
        signing = (async () => {
          try {
            const cb = await signIn(line.trim(), s.username, s.password);
            // Deliver the redirect as the browser would: GET the tool's callback URL.
            const resp = await fetch(cb.url);
            await resp.text();
          } catch (e) {
            s.log(`conformance: the headless sign-in failed: ${e instanceof Error ? e.message : String(e)}`);
            // The tool would wait 5 minutes for a callback that cannot come.
            child.kill('SIGTERM');
          }
        })();
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exitCode = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
  if (signing) await signing;
  let checks: Check[] = [];
  try {
    checks = findChecks(outDir);
  } catch {
    // no results written: the output says why
  }
  return { checks, exitCode, output };
}
