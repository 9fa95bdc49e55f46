import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate as PeculiarX509 } from '@peculiar/x509';
import { generate } from 'selfsigned';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';

export interface CertificatePair {
  cert: string;
  key: string;
  /** Where they came from, for start-up messages. */
  certPath: string;
  selfSigned: boolean;
}

/**
 * The configured certificate, or a self-signed one for all hosted domains, generated on first start
 * under `<dataDir>/tls/` so that a fresh checkout can serve TLS at once. It is regenerated when the
 * configured domains are no longer all covered by it.
 */
export async function ensureCertificate(config: Config, log: Logger): Promise<CertificatePair> {
  if (config.tls.cert && config.tls.key) {
    return {
      cert: readPem(config.tls.cert, 'tls.cert'),
      key: readPem(config.tls.key, 'tls.key'),
      certPath: config.tls.cert,
      selfSigned: false,
    };
  }
  const dir = join(config.dataDir, 'tls');
  const certPath = join(dir, 'self-signed.crt');
  const keyPath = join(dir, 'self-signed.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = readFileSync(certPath, 'utf8');
    const x509 = new X509Certificate(cert);
    const valid = new Date(x509.validTo).getTime() > Date.now() + 86_400_000;
    if (valid && config.domains.every((d) => x509.checkHost(d) !== undefined))
      return { cert, key: readFileSync(keyPath, 'utf8'), certPath, selfSigned: true };
  }
  const now = new Date();
  const pems = await generate([{ name: 'commonName', value: config.domains[0] as string }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 3_600_000),
    notAfterDate: new Date(now.getTime() + 10 * 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: config.domains.map((d) => ({ type: 2 as const, value: d })) },
    ],
  });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(certPath, pems.cert);
  log.info({ certPath, domains: config.domains }, 'generated a self-signed certificate');
  return { cert: pems.cert, key: pems.private, certPath, selfSigned: true };
}

function readPem(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(
      `${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code}); fix the path or remove ${key} to use a self-signed certificate`,
    );
  }
}

/**
 * RFC 5929 §4.1 tls-server-end-point: the hash of the certificate with the hash of its signature
 * algorithm, except that MD5 and SHA-1 become SHA-256. Node's X509Certificate does not expose the
 * signature algorithm, @peculiar/x509 does.
 */
export function serverEndPoint(certPem: string): Buffer {
  const cert = new PeculiarX509(certPem);
  const signatureHash = (cert.signatureAlgorithm as { hash?: { name?: string } }).hash?.name ?? 'SHA-256';
  const hash = { 'SHA-384': 'sha384', 'SHA-512': 'sha512' }[signatureHash] ?? 'sha256';
  return createHash(hash).update(new X509Certificate(certPem).raw).digest();
}
