import { createHmac, hkdfSync } from 'node:crypto';
import type { Config } from '../core/config.js';
import type { Jid } from '../xml/jid.js';
import { loadServerKey } from './keys.js';

const keys = new Map<string, Buffer>();

/** Derived from the server key (src/privacy/keys.ts), so that there is one secret to keep and back up. */
function hashKey(config: Config): Buffer {
  const serverKey = loadServerKey(config);
  // Before the key store has written a newly generated key, a key read now would not be the one kept.
  if (serverKey.createAt) throw new Error('the server key is used before the server was opened');
  return Buffer.from(hkdfSync('sha256', serverKey.key, Buffer.alloc(0), 'lethe address hash v1', 32));
}

/**
 * The keyed hash (HMAC-SHA-256, hex) of a normalised bare address: what tombstones, erasure receipts
 * and pseudonymised audit entries keep instead of the address. Without the server key nobody can
 * test a guessed address against it; with it, the operator can still answer "was this address erased?".
 */
export function addressHash(config: Config, jid: Jid): string {
  // Per data directory: tests run several servers in one process. An in-memory server's key lives as long as the process.
  let key = keys.get(config.dataDir);
  if (!key) {
    key = hashKey(config);
    keys.set(config.dataDir, key);
  }
  return createHmac('sha256', key).update(jid.bareString()).digest('hex');
}
