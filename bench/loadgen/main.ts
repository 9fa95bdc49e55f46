// Load generator CLI: runs one scenario and prints exactly one JSON line on
// stdout (progress goes to stderr). Exit status 0 only if the scenario ran
// clean (no errors, everything counted was really delivered), 2 on bad usage.

import { type Options, parseOptions, USAGE } from './options.js';
import { idle } from './scenarios/idle.js';
import { logins } from './scenarios/logins.js';
import { mam } from './scenarios/mam.js';
import { throughput } from './scenarios/throughput.js';

const RUNNERS = { logins, idle, throughput, mam } satisfies Record<Options['scenario'], unknown>;

let printed = false;
function emit(line: Record<string, unknown>, code: number): void {
  if (printed) return;
  printed = true;
  process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(code));
}

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const common = {
    scenario: o.scenario,
    label: o.label ?? null,
    host: o.host,
    port: o.port,
    domain: o.domain,
    tls: o.tls,
    mech: o.mech,
    startedAt: new Date().toISOString(),
  };
  const start = performance.now();
  // Scenarios stop starting work at the deadline; the watchdog catches anything that still hangs.
  const deadline = start + o.timeoutS * 1000;
  setTimeout(
    () => emit({ ...common, ok: false, error: `watchdog: no result within ${o.timeoutS + 60} s` }, 1),
    (o.timeoutS + 60) * 1000,
  );
  try {
    const result = await RUNNERS[o.scenario](o, deadline);
    const wallMs = Math.round(performance.now() - start);
    emit({ ...common, ...result, timedOut: performance.now() > deadline, wallMs }, result.ok === true ? 0 : 1);
  } catch (err) {
    emit({ ...common, ok: false, error: (err as Error).message }, 1);
  }
}

void main();
