import { isIPv4, isIPv6 } from 'node:net';
import { type Logger, pino } from 'pino';
import type { Config } from './config.js';

export type { Logger };

export function createLogger(config: Pick<Config, 'log'>, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level: config.log.level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    // Logs go to stderr so that stdout stays for what a command prints for the user.
    (destination ?? process.stderr) as pino.DestinationStream,
  );
}

/**
 * The form of a client address allowed in logs by `log.ip`. IP addresses are personal data:
 * by default they are not logged at all.
 */
export function formatIp(ip: string | undefined, mode: Config['log']['ip']): string | undefined {
  if (mode === 'none' || !ip) return undefined;
  if (mode === 'full') return ip;
  const v4 = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  if (isIPv4(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`;
  if (isIPv6(ip)) return `${expandIPv6(ip).slice(0, 3).join(':')}::/48`;
  return undefined;
}

function expandIPv6(ip: string): string[] {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  return [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
}
