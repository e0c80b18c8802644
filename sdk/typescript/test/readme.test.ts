// The README's quick start is true to the code: its ```ts blocks, in order, make one module
// that runs against a real mandate (the ```typescript blocks are illustrations, not run).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CLIENT_SECRET, startMandate, type Mandate } from './harness.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SCRIPT = path.join(ROOT, 'test', '.readme-quickstart.ts');
let m: Mandate;

before(async () => {
  m = await startMandate();
});
after(async () => {
  rmSync(SCRIPT, { force: true });
  await m?.stop();
});

test('README quick start: register a key, act for alice, delegate, protect a Hono route', async () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((x) => x[1]);
  assert.ok(blocks.length >= 3, 'the quick start has its ts blocks');
  writeFileSync(SCRIPT, blocks.join('\n'));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', SCRIPT], {
    cwd: ROOT,
    env: {
      ...process.env,
      MANDATE_ISSUER: m.issuer,
      CLIENT_SECRET,
      PLANNER_KEY: await m.keys.planner!.toPem(),
      BOT_KEY: await m.keys['payments-bot']!.toPem(),
      ALICE_TOKEN: await m.humanToken(),
    },
    timeout: 60_000,
  });
  const lines = stdout.trim().split('\n');
  assert.deepEqual(Object.keys(JSON.parse(lines[0]!)).sort(), ['crv', 'kty', 'x', 'y']);
  assert.equal(lines[1], 'alice → planner → payments-bot');
  assert.equal(lines[2], 'orders of alice, asked by alice → planner → payments-bot');
});
