// The package as a user installs it: `npm pack`, then `npm install` of the tarball into an
// empty ESM project WITHOUT the optional peers (hono, express, @modelcontextprotocol/sdk):
// every subpath export loads, with its type declarations next to it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const run = promisify(execFile);

test('npm pack installs alone: @mandate/sdk, /resource, /hono, /express, /mcp load without the optional peers', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mandate-ts-pack-'));
  try {
    await run('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: ROOT });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', `./${tgz}`], { cwd: dir, timeout: 90_000 });
    const installed = readdirSync(path.join(dir, 'node_modules'));
    for (const peer of ['hono', 'express']) assert.ok(!installed.includes(peer), `${peer} is not installed with the SDK`);
    const script = `
      const out = {};
      for (const m of ['@mandate/sdk', '@mandate/sdk/resource', '@mandate/sdk/hono', '@mandate/sdk/express', '@mandate/sdk/mcp']) {
        out[m] = Object.keys(await import(m)).sort();
      }
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    const exportsOf = JSON.parse(stdout) as Record<string, string[]>;
    assert.ok(exportsOf['@mandate/sdk']!.includes('AgentSession'));
    assert.ok(exportsOf['@mandate/sdk/resource']!.includes('Verifier'));
    assert.ok(exportsOf['@mandate/sdk/hono']!.includes('requireToken'));
    assert.ok(exportsOf['@mandate/sdk/express']!.includes('principalOf'));
    assert.ok(exportsOf['@mandate/sdk/mcp']!.includes('MandateOAuthProvider'));
    for (const d of ['index', 'resource', 'hono', 'express', 'mcp']) {
      assert.ok(existsSync(path.join(dir, 'node_modules', '@mandate', 'sdk', 'dist', `${d}.d.ts`)), `${d}.d.ts ships`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
