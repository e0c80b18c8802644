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
const MORE = path.join(ROOT, 'test', '.readme-more.ts');
let m: Mandate;

before(async () => {
  m = await startMandate();
});
after(async () => {
  rmSync(SCRIPT, { force: true });
  rmSync(MORE, { force: true });
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

test('README: the quick start and the other snippets type-check against the package\'s declarations', async () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const quick = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((x) => x[1]).join('\n');
  const more = [...readme.matchAll(/^```typescript\n([\s\S]*?)^```$/gm)].map((x) => x[1]).join('\n');
  // The snippets after the quick start use its `planner` and an `aliceToken` and `signal` of the reader's.
  writeFileSync(MORE, `${quick}\ndeclare const aliceToken: string;\ndeclare const signal: AbortSignal;\n${more}\nexport {};\n`);
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--lib', 'es2023,dom', MORE];
  const r = await promisify(execFile)(process.execPath, [tsc, ...args], { cwd: ROOT }).then(
    () => '',
    (e: { stdout?: string }) => e.stdout ?? String(e),
  );
  assert.equal(r, '', r);
});
