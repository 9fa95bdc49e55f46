import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Pre-authenticated registration tokens in the format of the preauth-ibr ProtoXEP:
 * `base64url(HMAC-SHA256(key, jids ":" expiration)) ":" base64url(jids) ":" expiration`, where `jids`
 * are the JIDs the holder may register, joined with ":", and `expiration` is in milliseconds since the
 * epoch. Whoever holds the key can issue tokens that any server holding it accepts.
 */

export interface TokenClaims {
  jids: string[];
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

function sign(key: Buffer, jids: string, expiration: string): Buffer {
  return createHmac('sha256', key).update(`${jids}:${expiration}`).digest();
}

export function createToken(key: Buffer, jids: string[], expiresAtMs: number): string {
  if (!jids.length || jids.some((j) => !j || j.includes(':')))
    throw new Error('a token names at least one JID, none empty or containing ":"');
  // The ProtoXEP rounds the expiry up to a whole millisecond.
  const expiration = String(Math.ceil(expiresAtMs));
  const list = jids.join(':');
  return `${sign(key, list, expiration).toString('base64url')}:${Buffer.from(list).toString('base64url')}:${expiration}`;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** The claims of a well-formed token signed with `key` that has not expired at `nowMs`; undefined otherwise. */
export function verifyToken(key: Buffer, token: string, nowMs: number): TokenClaims | undefined {
  const parts = token.split(':');
  if (parts.length !== 3) return undefined;
  const [signature, encodedJids, expiration] = parts as [string, string, string];
  if (!BASE64URL.test(signature) || !BASE64URL.test(encodedJids) || !/^\d{1,16}$/.test(expiration)) return undefined;
  const list = Buffer.from(encodedJids, 'base64url').toString('utf8');
  const given = Buffer.from(signature, 'base64url');
  const expected = sign(key, list, expiration);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const expiresAt = Number(expiration);
  if (expiresAt <= nowMs) return undefined;
  return { jids: list.split(':'), expiresAt };
}
