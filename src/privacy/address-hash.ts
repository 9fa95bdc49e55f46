import { createHmac, hkdfSync } from 'node:crypto';
import type { Config } from '../core/config.js';
import type { Jid } from '../xml/jid.js';
import { loadServerKey } from './keys.js';

const keys = new Map<string, Buffer>();

/**
 * A secret for one purpose (`info` names it), derived from the server key (src/privacy/keys.ts), so
 * that there is one secret to keep and back up. Cached per data directory: tests run several servers
 * in one process, and an in-memory server's key lives as long as the process.
 */
export function serverSecret(config: Config, info: string): Buffer {
  const cacheKey = `${config.dataDir}\0${info}`;
  let key = keys.get(cacheKey);
  if (!key) {
    const serverKey = loadServerKey(config);
    // Before the key store has written a newly generated key, a key read now would not be the one kept.
    if (serverKey.createAt) throw new Error('the server key is used before the server was opened');
    key = Buffer.from(hkdfSync('sha256', serverKey.key, Buffer.alloc(0), info, 32));
    keys.set(cacheKey, key);
  }
  return key;
}

/**
 * The keyed hash (HMAC-SHA-256, hex) of a normalised bare address: what tombstones, erasure receipts
 * and pseudonymised audit entries keep instead of the address. Without the server key nobody can
 * test a guessed address against it; with it, the operator can still answer "was this address erased?".
 */
export function addressHash(config: Config, jid: Jid): string {
  return createHmac('sha256', serverSecret(config, 'lethe address hash v1')).update(jid.bareString()).digest('hex');
}
