// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and
// per area of the code, so docs/performance.md can say where the time goes.
// Usage: node dist/bench/profile/cpu-summary.js FILE.cpuprofile [--top N]

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the system a frame belongs to, from its script URL. */
function area(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'garbage collection';
  if (fn === '(idle)' || fn === '(program)') return fn;
  if (url.includes('/node_modules/saxes/') || url.includes('/node_modules/xmlchars/')) return 'XML parsing (saxes)';
  if (url.includes('/node_modules/better-sqlite3/')) return 'SQLite';
  if (url.includes('/node_modules/pino')) return 'logging';
  if (url.includes('/node_modules/')) return `other libraries`;
  const lethe = /\/dist\/src\/([^/]+)\//.exec(url);
  if (lethe) return `lethe ${lethe[1]}`;
  if (url.startsWith('node:_tls') || url.startsWith('node:tls')) return 'node TLS';
  if (url.startsWith('node:net') || url.startsWith('node:internal/stream') || url.startsWith('node:stream'))
    return 'node sockets and streams';
  if (url.startsWith('node:')) return 'node other';
  return fn ? 'native (crypto, TLS, syscalls)' : 'native';
}

const [file, ...rest] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpu-summary FILE.cpuprofile [--top N]\n');
  process.exit(2);
}
const top = rest[0] === '--top' ? Number(rest[1]) : 15;
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (const [i, id] of profile.samples.entries()) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));

const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
let busy = 0;
for (const [id, us] of selfUs) {
  const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
  const where = area(url, functionName);
  byArea.set(where, (byArea.get(where) ?? 0) + us);
  if (where === '(idle)') continue;
  busy += us;
  const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
}

const pct = (us: number) => `${((100 * us) / busy).toFixed(1)}%`;
const sorted = (m: Map<string, number>) => [...m].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]);
process.stdout.write(
  `busy time: ${(busy / 1e6).toFixed(2)} s (idle excluded)\n\n| area | share of busy time |\n|---|---:|\n`,
);
for (const [k, us] of sorted(byArea)) process.stdout.write(`| ${k} | ${pct(us)} |\n`);
process.stdout.write(`\n| function (self time) | share |\n|---|---:|\n`);
for (const [k, us] of sorted(byFunction).slice(0, top)) process.stdout.write(`| \`${k}\` | ${pct(us)} |\n`);
