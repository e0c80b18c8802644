// The TypeScript example (examples/typescript/) runs as a newcomer runs it: against mandate
// serving the repository's demo config (mandate.toml, unchanged but for where it listens and
// keeps its data), as `npm run delegate`, with this test playing alice — following the sign-in
// link the example prints to the example's own loopback redirect (RFC 8252 §7.3).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { followSignIn } from './browser.ts';
import { freePort } from './harness.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..', '..');
const EXAMPLES = path.join(REPO, 'examples', 'typescript');

let issuer = '';
let server: ChildProcess | undefined;

/** Lines a child prints, and a way to wait for one. */
function lines(child: ChildProcess) {
  const seen: string[] = [];
  const waiting: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    seen.push(l);
    for (const w of waiting.splice(0)) {
      if (w.match(l)) w.resolve(l);
      else waiting.push(w);
    }
  });
  return {
    seen,
    waitFor(match: (l: string) => boolean, ms = 60_000): Promise<string> {
      const found = seen.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`waited ${ms} ms; printed:\n${seen.join('\n')}`)), ms);
        waiting.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
  };
}

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mandate-demo-ts-'));
  writeFileSync(path.join(dir, 'kek'), Buffer.alloc(32, 5).toString('base64'));
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  server = spawn(process.env.MANDATE_BIN || '/work/bin/mandate', ['serve', '--config', path.join(REPO, 'mandate.toml')], {
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_'))),
      MANDATE_LOG: 'warn',
      MANDATE_LISTEN: `127.0.0.1:${port}`,
      MANDATE_ISSUER: issuer,
      MANDATE_DATABASE_URL: `sqlite://${path.join(dir, 'demo.db')}`,
      MANDATE_KEK_FILE: path.join(dir, 'kek'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.once('exit', () => server?.kill('SIGKILL'));
  const listening = await lines(server).waitFor((l) => l.startsWith('listening on '), 30_000);
  assert.equal(listening, `listening on ${issuer}`);
});

after(() => {
  server?.kill('SIGTERM');
});

test('examples/typescript/delegate.ts: the Hono resource server prints alice → planner → payments-bot', async () => {
  const example = spawn(path.join(EXAMPLES, 'node_modules', '.bin', 'tsx'), ['delegate.ts'], {
    cwd: EXAMPLES,
    env: { ...process.env, MANDATE_ISSUER: issuer, EXAMPLE_BROWSER: 'none', PAYMENTS_API_PORT: String(await freePort()) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  example.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const out = lines(example);
  const exited = new Promise<number | null>((resolve) => example.on('exit', resolve));

  const link = (await out.waitFor((l) => l.includes('/authorize?'))).trim();
  const back = await followSignIn(new URL(link), 'alice', 'alice-password');
  assert.equal(back.origin + back.pathname, 'http://127.0.0.1:9902/callback');
  assert.equal((await fetch(back)).status, 200, 'the example took the code at its loopback redirect');

  assert.equal(await exited, 0, `the example failed:\n${out.seen.join('\n')}\n${stderr}`);
  const printed = out.seen.join('\n');
  // RFC 8693 §4.1: the resource server saw the whole chain, and the acting agent's attestation.
  assert.match(printed, /payments-api: GET \/payments for alice → planner → payments-bot \(software\)/);
  assert.match(printed, /"chain":"alice → planner → payments-bot"/);
  assert.match(printed, /revoked/);
});
