// Summarises a V8 heap snapshot (node --heapsnapshot-signal): retained-by-type
// is too costly to compute here, so this reports self sizes grouped by
// constructor/type, which is enough to see what an idle connection costs.
// Usage: node dist/bench/profile/heap-summary.js FILE.heapsnapshot [--per N] [--top N]

import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const args = process.argv.slice(2);
const file = args[0];
if (!file) {
  process.stderr.write('usage: heap-summary FILE.heapsnapshot [--per CONNECTIONS] [--top N]\n');
  process.exit(2);
}
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i > 0 ? Number(args[i + 1]) : fallback;
};
const per = flag('--per', 0);
const top = flag('--top', 15);

const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
const fields = snap.snapshot.meta.node_fields;
const types = snap.snapshot.meta.node_types[0];
const width = fields.length;
const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [
  number,
  number,
  number,
];

const groups = new Map<string, { bytes: number; count: number }>();
let total = 0;
for (let i = 0; i < snap.nodes.length; i += width) {
  const type = types[snap.nodes[i + typeAt] as number] as string;
  const size = snap.nodes[i + sizeAt] as number;
  // Objects by constructor; strings, arrays, code etc. by their type.
  const key =
    type === 'object' || type === 'native' ? `${snap.strings[snap.nodes[i + nameAt] as number]}` : `(${type})`;
  const g = groups.get(key) ?? { bytes: 0, count: 0 };
  g.bytes += size;
  g.count += 1;
  groups.set(key, g);
  total += size;
}

const kib = (b: number) => (b / 1024).toFixed(1);
process.stdout.write(`JS heap (self sizes): ${(total / 1048576).toFixed(1)} MiB`);
process.stdout.write(per ? `, ${kib(total / per)} KiB per connection over ${per}\n\n` : '\n\n');
process.stdout.write(
  `| type | MiB | objects${per ? ' | per connection (bytes, count)' : ''} |\n|---|---:|---:|${per ? '---:|' : ''}\n`,
);
for (const [k, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) {
  const perConn = per ? ` ${Math.round(g.bytes / per)}, ${(g.count / per).toFixed(1)} |` : '';
  process.stdout.write(`| \`${k}\` | ${(g.bytes / 1048576).toFixed(2)} | ${g.count} |${perConn}\n`);
}
