// SCRAM-SHA-1 client (RFC 5802) without channel binding ("n,,").
//
// PBKDF2 is the expensive part of a SCRAM login and it runs on the *client*;
// on a 2-core box a load generator doing it for every login would measure
// itself. Real clients cache the salted password (XEP-0438 recommends it), so
// derived keys are cached per (password, salt, iterations) and computed on
// libuv's thread pool. Scenarios warm the cache with an untimed pass.

import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

interface DerivedKeys {
  clientKey: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

const keyCache = new Map<string, Promise<DerivedKeys>>();

function deriveKeys(password: string, salt: Buffer, iterations: number): Promise<DerivedKeys> {
  const cacheKey = `${iterations}\0${salt.toString('base64')}\0${password}`;
  let keys = keyCache.get(cacheKey);
  if (!keys) {
    keys = new Promise<DerivedKeys>((resolve, reject) => {
      pbkdf2(password, salt, iterations, 20, 'sha1', (err, salted) => {
        if (err) return reject(err);
        const clientKey = hmac(salted, 'Client Key');
        resolve({
          clientKey,
          storedKey: createHash('sha1').update(clientKey).digest(),
          serverKey: hmac(salted, 'Server Key'),
        });
      });
    });
    keyCache.set(cacheKey, keys);
  }
  return keys;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha1', key).update(data).digest();
}

function saslName(s: string): string {
  return s.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

function parseAttrs(msg: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) m.set(part[0] as string, part.slice(2));
  }
  return m;
}

export class ScramSha1Client {
  private readonly clientFirstBare: string;
  private readonly nonce: string;
  private expectedServerSignature: Buffer | undefined;
  /** Iteration count the server asked for (reported, since it drives PLAIN cost on the server). */
  iterations = 0;

  constructor(
    username: string,
    private readonly password: string,
  ) {
    this.nonce = randomBytes(18).toString('base64');
    this.clientFirstBare = `n=${saslName(username)},r=${this.nonce}`;
  }

  /** Initial response for <auth mechanism='SCRAM-SHA-1'>, base64. */
  first(): string {
    return Buffer.from(`n,,${this.clientFirstBare}`).toString('base64');
  }

  /** Answer to the server-first challenge (base64 in, base64 out). */
  async final(challengeB64: string): Promise<string> {
    const serverFirst = Buffer.from(challengeB64, 'base64').toString();
    const a = parseAttrs(serverFirst);
    const r = a.get('r');
    const s = a.get('s');
    const i = Number(a.get('i'));
    if (!r || !s || !Number.isInteger(i) || i <= 0) throw new Error(`bad SCRAM server-first: ${serverFirst}`);
    if (!r.startsWith(this.nonce)) throw new Error('SCRAM server nonce does not extend ours');
    this.iterations = i;
    const keys = await deriveKeys(this.password, Buffer.from(s, 'base64'), i);
    const finalNoProof = `c=biws,r=${r}`; // biws = base64("n,,")
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalNoProof}`;
    const signature = hmac(keys.storedKey, authMessage);
    const proof = Buffer.alloc(20);
    for (let k = 0; k < 20; k++) proof[k] = (keys.clientKey[k] as number) ^ (signature[k] as number);
    this.expectedServerSignature = hmac(keys.serverKey, authMessage);
    return Buffer.from(`${finalNoProof},p=${proof.toString('base64')}`).toString('base64');
  }

  /** Checks the server's v= in success additional data; proves the server knew our credentials. */
  verify(successB64: string): void {
    const v = parseAttrs(Buffer.from(successB64, 'base64').toString()).get('v');
    const expected = this.expectedServerSignature;
    if (!v || !expected) throw new Error('SCRAM success without server signature');
    const got = Buffer.from(v, 'base64');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
      throw new Error('SCRAM server signature mismatch');
    }
  }
}

/** Pre-computes the SCRAM keys a server would need, e.g. to write account files directly. */
export async function scramCredentials(
  password: string,
  salt: Buffer,
  iterations: number,
): Promise<{ storedKey: Buffer; serverKey: Buffer }> {
  const k = await deriveKeys(password, salt, iterations);
  return { storedKey: k.storedKey, serverKey: k.serverKey };
}
