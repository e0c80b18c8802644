// For the `cimd` mode: each client's Client ID Metadata Document served over https on a loopback
// port, with a certificate from a test CA made here (openssl), so that mandate can be told to
// trust exactly that CA. The client_id is the document's https URL (both SDKs require https and
// a path that is not `/`).

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface CimdHost {
  /** The test CA's certificate (PEM). */
  caFile: string;
  /** The system's CA bundle plus the test CA (for an HTTP client that reads SSL_CERT_FILE). */
  bundleFile: string;
  origin: string;
  /** How often each document URL was fetched (by mandate: nothing else asks). */
  fetches: Map<string, number>;
  /** Publishes `doc` (its client_id set to the URL) and returns the URL. */
  publish(name: string, doc: Record<string, unknown>): string;
  close(): Promise<void>;
}

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function startCimdHost(dir: string): Promise<CimdHost> {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=mandate MCP test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'host.key',
    '-out', 'host.csr', '-subj', '/CN=127.0.0.1'], dir);
  writeFileSync(path.join(dir, 'host.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n');
  openssl(['x509', '-req', '-in', 'host.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'host.pem', '-days', '2', '-extfile', 'host.ext'], dir);
  const caFile = path.join(dir, 'ca.pem');
  const bundleFile = path.join(dir, 'bundle.pem');
  const system = '/etc/ssl/certs/ca-certificates.crt';
  writeFileSync(bundleFile, (existsSync(system) ? readFileSync(system, 'utf8') : '') + readFileSync(caFile, 'utf8'));

  const docs = new Map<string, string>();
  const fetches = new Map<string, number>();
  let origin = '';
  const server = https.createServer(
    { key: readFileSync(path.join(dir, 'host.key')), cert: readFileSync(path.join(dir, 'host.pem')) },
    (req, res) => {
      const doc = docs.get(req.url ?? '');
      if (req.method !== 'GET' || !doc) {
        res.writeHead(404).end();
        return;
      }
      fetches.set(origin + req.url, (fetches.get(origin + req.url) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
      res.end(doc);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    caFile,
    bundleFile,
    origin,
    fetches,
    publish(name, doc) {
      const p = `/clients/${name}.json`;
      const url = origin + p;
      docs.set(p, JSON.stringify({ ...doc, client_id: url }));
      return url;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
