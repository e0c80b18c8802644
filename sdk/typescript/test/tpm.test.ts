// The TPM path from TypeScript: an agent whose attestation key lives in a TPM (swtpm) attests
// through the Rust agent's command line (`mandate-agent`, built with its `tpm` feature) with
// CommandAttester. It enrolls zero-touch by its EK certificate (the swtpm's own CA is mandate's
// `ek_roots`), its delegated token says `att: tpm`, and a Hono route that requires a
// TPM-attested agent lets it in and keeps a software-keyed agent out. Needs swtpm and
// MANDATE_AGENT_BIN, which tests/sdk/main.rs gives whenever mandate's `tpm` feature is on
// (scripts/test, CI). The CommandAttester's refusals need neither.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Hono } from 'hono';
import { AgentSession, CommandAttester, MandateError } from '@mandate/sdk';
import { Verifier } from '@mandate/sdk/resource';
import { requireToken, type MandateEnv } from '@mandate/sdk/hono';
import { CLIENT_ID, CLIENT_SECRET, RS_ID, startMandate, type Mandate } from './harness.ts';

const AGENT_BIN = process.env.MANDATE_AGENT_BIN ?? '';
const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const live = AGENT_BIN !== '' && has('swtpm') && has('swtpm_setup');

describe('CommandAttester refusals (no TPM needed)', () => {
  test('a command that fails, cannot run, or prints no token is attestation_failed, without its output', async () => {
    const cases: [string[], RegExp][] = [
      [['sh', '-c', 'echo "no TPM here" >&2; exit 3'], /exited with 3: no TPM here/],
      [['/nonexistent/mandate-agent'], /could not be run/],
      [['sh', '-c', 'echo "{\\"agent_token\\": 7}"'], /printed no agent token/],
      [['sh', '-c', 'echo not-a-jwt'], /printed no agent token/],
    ];
    for (const [argv, why] of cases) {
      await assert.rejects(new CommandAttester(argv).agentToken(), (e: unknown) => e instanceof MandateError && e.error === 'attestation_failed' && why.test(e.message));
    }
    assert.equal(await new CommandAttester(['sh', '-c', 'echo \'{"agent_token": "a.b.c"}\'']).agentToken(), 'a.b.c');
    assert.equal(String(new CommandAttester(['mandate-agent', 'attest'], { env: { MANDATE_AGENT_CLIENT_SECRET: 'hush' } })), 'CommandAttester(mandate-agent)');
  });
});

describe('a TPM-attested agent (swtpm + mandate-agent)', { skip: live ? false : 'needs swtpm and MANDATE_AGENT_BIN' }, () => {
  let dir = '';
  let port = 0;
  let swtpm: ChildProcess | undefined;
  let m: Mandate;

  async function twoFreePorts(): Promise<number> {
    for (let i = 0; i < 50; i++) {
      const p = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const port = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(port));
        });
      });
      const free = await new Promise<boolean>((resolve) => {
        const s = net.createServer().once('error', () => resolve(false)).listen(p + 1, '127.0.0.1', () => s.close(() => resolve(true)));
      });
      if (free) return p;
    }
    throw new Error('no two consecutive free ports');
  }

  before(async () => {
    // A swtpm with an EK certificate from its own local CA (swtpm_setup).
    dir = mkdtempSync(path.join(os.tmpdir(), 'mandate-swtpm-ts-'));
    mkdirSync(path.join(dir, 'state'));
    mkdirSync(path.join(dir, 'ca'));
    writeFileSync(path.join(dir, 'swtpm-localca.conf'), `statedir = ${dir}/ca\nsigningkey = ${dir}/ca/signkey.pem\nissuercert = ${dir}/ca/issuercert.pem\ncertserial = ${dir}/ca/certserial\n`);
    writeFileSync(
      path.join(dir, 'swtpm_setup.conf'),
      `create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${dir}/swtpm-localca.conf\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n`,
    );
    await promisify(execFile)('swtpm_setup', ['--tpm2', '--tpm-state', path.join(dir, 'state'), '--createek', '--create-ek-cert', '--create-platform-cert', '--overwrite', '--config', path.join(dir, 'swtpm_setup.conf')]);
    port = await twoFreePorts();
    swtpm = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${dir}/state`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'], { stdio: 'ignore' });
    process.once('exit', () => swtpm?.kill('SIGKILL'));
    m = await startMandate({ extra: `\n[attestation]\nek_roots = ["${dir}/ca/swtpm-localca-rootca-cert.pem"]\n` });
  });

  after(async () => {
    await m?.stop();
    swtpm?.kill('SIGTERM');
  });

  test('it enrolls by its EK certificate, acts for alice with att tpm, and a TPM-only route lets it in, a software agent not', async () => {
    const common = ['--server', m.issuer, '--name', 'tpm-planner', '--tpm', `swtpm:host=127.0.0.1,port=${port}`, '--state-dir', path.join(dir, 'agent-state'), '--client-id', CLIENT_ID];
    const env = { MANDATE_AGENT_CLIENT_SECRET: CLIENT_SECRET, MANDATE_LOG: 'warn' };
    // Zero-touch enrollment (docs/attestation.md): the EK certificate chains to ek_roots, and
    // TPM2_ActivateCredential proves the AK lives beside that EK.
    await promisify(execFile)(AGENT_BIN, ['enroll', ...common, '--ek-chain', path.join(dir, 'ca', 'issuercert.pem')], { env: { ...process.env, ...env } });

    const tpmAgent = new AgentSession(m.client(), 'tpm-planner', new CommandAttester([AGENT_BIN, 'attest', ...common], { env }));
    const alice = await m.humanToken('orders:read');
    const token = await tpmAgent.actFor(alice, { scope: 'orders:read', audience: RS_ID });
    assert.equal(token.chain.toString(), 'alice → tpm-planner');
    assert.equal(token.chain.attestation, 'tpm', "mandate's att: the agent token came from a TPM quote");
    const soft = await m.session('planner').actFor(alice, { scope: 'orders:read', audience: RS_ID });
    assert.equal(soft.chain.attestation, 'software');

    const verifier = new Verifier({ issuer: m.issuer, audience: RS_ID });
    const app = new Hono<MandateEnv>();
    app.get('/payouts', requireToken(verifier, { scopes: ['orders:read'] }), (c) => {
      const who = c.var.principal;
      // What a resource server does to keep software-keyed agents out.
      if (who.attestation !== 'tpm') return c.json({ error: 'this needs a TPM-attested agent' }, 403);
      return c.json({ who: `${who}`, attestation: who.attestation });
    });
    const ok = await app.request('/payouts', { headers: { authorization: `Bearer ${token.accessToken}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { who: 'alice → tpm-planner', attestation: 'tpm' });
    const refused = await app.request('/payouts', { headers: { authorization: `Bearer ${soft.accessToken}` } });
    assert.equal(refused.status, 403);
  });
});
