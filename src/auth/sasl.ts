/** Which SASL mechanisms a stream offers, and the factory the stream uses when a client picks one. */

import { PlainServer } from './plain.js';
import { isScramMechanism, SCRAM_MECHANISMS, ScramServer } from './scram.js';
import type { SaslContext, SaslMechanism } from './types.js';

/** Strongest first: channel-bound SCRAM, plain SCRAM, then PLAIN. */
const ALL_MECHANISMS = [...SCRAM_MECHANISMS, 'PLAIN'] as const;

export function offeredMechanisms(ctx: SaslContext, enabled: string[]): string[] {
  return ALL_MECHANISMS.filter((name) => {
    if (!enabled.includes(name)) return false;
    if (name.endsWith('-PLUS')) return ctx.channelBindingTypes.length > 0;
    if (name === 'PLAIN') return ctx.secure;
    return true;
  });
}

/** Undefined when `name` is not offered on this stream: the caller answers invalid-mechanism. */
export function createMechanism(name: string, ctx: SaslContext, enabled: string[]): SaslMechanism | undefined {
  const offered = offeredMechanisms(ctx, enabled);
  if (!offered.includes(name)) return undefined;
  if (name === 'PLAIN') return new PlainServer(ctx);
  if (!isScramMechanism(name)) return undefined;
  // A 'y' flag is a downgrade only if -PLUS was really advertised, which `enabled` may have prevented,
  // and only refused when the operator chose strict RFC 5802 behaviour (see auth.channelBindingDowngrade).
  const plusOffered = offered.some((m) => m.endsWith('-PLUS'));
  return new ScramServer(name, ctx, { refuseDowngrade: plusOffered && ctx.channelBindingDowngrade !== 'allow' });
}
