import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCerts {
  dir: string;
  /** PEM files in `dir`. */
  caFile: string;
  otherCaFile: string;
  /** Server certificate and key (PEM text), signed by the CA, for the names given. */
  serverCert: string;
  serverKey: string;
  remove(): Promise<void>;
}

/** True when the `openssl` command is on the PATH (Node's crypto cannot issue X.509 certificates). */
export async function hasOpenssl(): Promise<boolean> {
  try {
    await run('openssl', ['version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A throwaway CA, a server certificate it signs for `altNames` (e.g. `IP:127.0.0.1`), and a second,
 * unrelated CA to show that trust in the wrong CA is refused. EC keys: fast to generate.
 */
export async function makeTestCerts(altNames: readonly string[]): Promise<TestCerts> {
  const dir = await mkdtemp(path.join(tmpdir(), 'shardline-certs-'));
  const f = (name: string) => path.join(dir, name);
  const openssl = (args: string[]) => run('openssl', args, { cwd: dir, timeout: 30_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  try {
    await openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=shardline test CA', ...ca]);
    await openssl(['req', '-x509', ...ec, '-keyout', f('other-ca.key'), '-out', f('other-ca.crt'), '-days', '2', '-subj', '/CN=shardline other CA', ...ca]);
    await openssl(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=shardline test server']);
    await writeFile(
      f('server.ext'),
      [
        `subjectAltName=${altNames.join(',')}`,
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
      ].join('\n'),
    );
    await openssl([
      'x509',
      '-req',
      '-in',
      f('server.csr'),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f('server.crt'),
      '-days',
      '2',
      '-extfile',
      f('server.ext'),
    ]);
    return {
      dir,
      caFile: f('ca.crt'),
      otherCaFile: f('other-ca.crt'),
      serverCert: await readFile(f('server.crt'), 'utf8'),
      serverKey: await readFile(f('server.key'), 'utf8'),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
