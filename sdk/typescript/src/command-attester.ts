// The TPM path: the SDK does not talk to a TPM itself. A CommandAttester runs the Rust agent's
// command line (`mandate-agent attest ... --tpm TCTI`, built with its `tpm` feature), which
// quotes the server's nonce with the TPM's attestation key and prints the agent token.

import { execFile } from 'node:child_process';
import { MandateError } from './errors.js';

/** Something that attests by itself and hands over the agent token (e.g. a command). */
export interface AgentTokenSource {
  agentToken(): Promise<string>;
}

export interface CommandAttesterOptions {
  /** Extra environment, e.g. `MANDATE_AGENT_CLIENT_SECRET` (never put secrets in argv: `ps` shows it). */
  env?: Record<string, string>;
  /** Milliseconds before the command is killed (default 60 000). */
  timeoutMs?: number;
}

/**
 * Attestation by a command that prints the agent token — `{"agent_token": "..."}` as
 * `mandate-agent attest` prints it, or the bare token. Run again whenever the session needs a
 * fresh agent token.
 *
 * ```ts
 * const tpm = new CommandAttester(
 *   ['mandate-agent', 'attest', '--server', issuer, '--name', 'planner', '--tpm', 'device:/dev/tpmrm0'],
 *   { env: { MANDATE_AGENT_CLIENT_SECRET: secret } },
 * );
 * const planner = new AgentSession(client, 'planner', tpm);
 * ```
 */
export class CommandAttester implements AgentTokenSource {
  readonly argv: readonly string[];
  readonly #env: Record<string, string>;
  readonly #timeoutMs: number;

  constructor(argv: readonly string[], options: CommandAttesterOptions = {}) {
    if (argv.length === 0) throw new TypeError('argv names the command to run');
    this.argv = [...argv];
    this.#env = { ...(options.env ?? {}) };
    this.#timeoutMs = options.timeoutMs ?? 60_000;
  }

  agentToken(): Promise<string> {
    const [command, ...args] = this.argv as [string, ...string[]];
    return new Promise((resolve, reject) => {
      execFile(command, args, { env: { ...process.env, ...this.#env }, timeout: this.#timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
          const why = typeof code === 'number'
            ? `exited with ${code}: ${String(stderr).trim().split('\n').pop()?.slice(0, 200) || 'no message'}`
            : `could not be run (${String(code ?? err.name)})`;
          reject(new MandateError('attestation_failed', `${command} ${why}`));
          return;
        }
        const out = String(stdout).trim();
        let token: unknown = out;
        if (out.startsWith('{')) {
          try {
            token = (JSON.parse(out) as { agent_token?: unknown }).agent_token;
          } catch {
            token = undefined;
          }
        }
        if (typeof token !== 'string' || token.split('.').length !== 3) {
          reject(new MandateError('attestation_failed', `${command} printed no agent token`));
          return;
        }
        resolve(token);
      });
    });
  }

  toString(): string {
    return `CommandAttester(${this.argv[0]})`;
  }
}
