// Entry point of `npm run bench:mam`: the message archive on a large archive.
// 1. Fill: a temporary Lethe (own data directory and configuration, HTTP off,
//    loopback only) gets one owner account and P peer accounts; the owner
//    turns archiving on (XEP-0441 preferences, default "always", recorded as
//    consent like a client would); N messages are written to the owner's
//    archive through the archive's own insert path (ArchiveWriter: seal with
//    the owner's data key via server.keys.sealFor, then one transaction per
//    batch), in batches of B as a burst of routed messages would give.
//    Timestamps are spread over D days (within mam.maxAgeDays, which the
//    bench raises together with mam.maxPerUser so the sweeper keeps them).
//    Sealing alone is timed on a sample too, to show its share.
// 2. Query: Lethe is started on that data directory and the load generator's
//    `mam` scenario measures latest-page, with-filtered and date-range queries.
// Prints one JSON line and a Markdown table on stdout; progress on stderr.
// Sizes: --messages N (1 000 000; BENCH_MAM_MESSAGES), --peers P (100),
// --days D (30), --batch B (100), --queries Q (200), --page M (50); --quick is
// --messages 20000 --queries 50. --fill-timeout S (1800) bounds the fill: the
// run goes on with what was written by then, and says so. --keep keeps the
// directory.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/log.js';
import { openServer } from '../../src/lethe.js';
import { ArchiveWriter, PURPOSE } from '../../src/modules/mam/archiver.js';
import { messageArchive } from '../../src/modules/mam/index.js';
import { Jid } from '../../src/xml/jid.js';
import { seededRandom } from '../random.js';
import { freePort, processAlive, spawnServer, terminate, waitForStream } from '../servers/common.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../loadgen/main.js', import.meta.url));
const DOMAIN = 'mam.localhost';
const PREFIX = 'mambench';
const PASSWORD = 'mam-bench-pass';
const DAY_MS = 86_400_000;

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    messages: { type: 'string', default: process.env.BENCH_MAM_MESSAGES ?? '1000000' },
    peers: { type: 'string', default: '100' },
    days: { type: 'string', default: '30' },
    batch: { type: 'string', default: '100' },
    queries: { type: 'string', default: '200' },
    page: { type: 'string', default: '50' },
    'fill-timeout': { type: 'string', default: '1800' },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer >= ${min}\n`);
    process.exit(2);
  }
  return n;
};
const quick = values.quick === true;
const N = int('messages', quick && !process.argv.includes('--messages') ? '20000' : values.messages, 1);
const PEERS = int('peers', values.peers, 1);
const DAYS = int('days', values.days, 1);
const BATCH = int('batch', values.batch, 1);
const QUERIES = int('queries', quick && !process.argv.includes('--queries') ? '50' : values.queries, 1);
const PAGE = int('page', values.page, 1);
const FILL_TIMEOUT_MS = int('fill-timeout', values['fill-timeout'], 1) * 1000;

const log = (msg: string) => process.stderr.write(`[bench:mam] ${msg}\n`);
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

const WORDS = 'the a to and of in is it you that we on for have this with be are not at see will can just meet'.split(
  ' ',
);

function body(rand: () => number): string {
  const words: string[] = [];
  const n = 4 + Math.floor(rand() * 16);
  for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(rand() * WORDS.length)] as string);
  return words.join(' ');
}

async function fill(dir: string, configPath: string) {
  const config = loadConfig(configPath);
  const server = await openServer(config, createLogger({ log: { ...config.log, level: 'warn' } }));
  try {
    const owner = Jid.parse(`${PREFIX}1@${DOMAIN}`);
    const t0 = performance.now();
    const peers: Jid[] = [];
    for (let i = 0; i <= PEERS; i++) {
      const jid = Jid.parse(`${PREFIX}${i + 1}@${DOMAIN}`);
      await server.accounts.create(jid, PASSWORD);
      if (i > 0) peers.push(jid);
    }
    log(`created ${PEERS + 1} accounts in ${round((performance.now() - t0) / 1000)} s`);
    const archive = messageArchive(server);
    await archive.apply(
      owner.bareString(),
      { default: 'always', always: [], never: [], retentionDays: null },
      'xep-0441',
    );

    const rand = seededRandom(1);
    const now = Date.now();
    const first = now - DAYS * DAY_MS + 60_000;
    const step = (now - 60_000 - first) / N;
    const ownerFull = `${owner.bareString()}/phone`;
    const stanzaFor = (i: number) => {
      const peer = peers[Math.floor(rand() * peers.length)] as Jid;
      const direction = rand() < 0.5 ? ('in' as const) : ('out' as const);
      const peerFull = `${peer.bareString()}/laptop`;
      const id = randomUUID();
      const from = direction === 'in' ? peerFull : ownerFull;
      const to = direction === 'in' ? ownerFull : peerFull;
      const stanza =
        `<message xmlns="jabber:client" from="${from}" to="${to}" type="chat" id="${randomUUID()}">` +
        `<body>${body(rand)}</body><active xmlns="http://jabber.org/protocol/chatstates"/>` +
        `<stanza-id xmlns="urn:xmpp:sid:0" by="${direction === 'in' ? owner.bareString() : peer.bareString()}" id="${id}"/></message>`;
      return {
        owner,
        id,
        ts: Math.floor(first + i * step + rand() * step * 0.5),
        peer: Jid.parse(peerFull),
        direction,
        stanza,
        ifInRoster: false,
      };
    };

    // Sealing alone, on a sample: its share of the insert path.
    const sample = Math.min(N, 20_000);
    const sealStart = performance.now();
    for (let i = 0; i < sample; i++) await server.keys.sealFor(owner, stanzaFor(i).stanza, PURPOSE);
    const sealPerSec = sample / ((performance.now() - sealStart) / 1000);
    log(`sealing alone: ${Math.round(sealPerSec)} messages/s (${sample} messages)`);

    // The archive's own writer: everything pushed in one turn is sealed and written as one batch.
    const writer = new ArchiveWriter(server, archive.store);
    const fillStart = performance.now();
    let written = 0;
    let lastLog = fillStart;
    let timedOut = false;
    while (written < N) {
      if (performance.now() - fillStart > FILL_TIMEOUT_MS) {
        timedOut = true;
        log(`fill time limit reached after ${written} messages`);
        break;
      }
      const n = Math.min(BATCH, N - written);
      for (let k = 0; k < n; k++) writer.push(stanzaFor(written + k));
      await writer.settled();
      written += n;
      if (performance.now() - lastLog > 5000) {
        lastLog = performance.now();
        const rate = written / ((lastLog - fillStart) / 1000);
        log(`filled ${written}/${N} (${Math.round(rate)} messages/s, ETA ${Math.round((N - written) / rate)} s)`);
      }
    }
    const fillS = (performance.now() - fillStart) / 1000;
    const stored = await archive.store.count(owner.bareString(), { after: [], before: [] });
    if (stored !== written) throw new Error(`wrote ${written} messages but the archive holds ${stored}`);
    log(`filled ${stored} messages in ${round(fillS)} s (${Math.round(stored / fillS)} messages/s)`);
    return {
      requested: N,
      messages: stored,
      fillTimedOut: timedOut,
      fillSeconds: round(fillS),
      insertPerSec: Math.round(stored / fillS),
      sealOnlyPerSec: Math.round(sealPerSec),
      sealShare: round(stored / fillS / sealPerSec, 3),
      batch: BATCH,
      peers: PEERS,
      days: DAYS,
      archiveStart: new Date(first).toISOString(),
      archiveEnd: new Date(first + N * step).toISOString(),
      dbMiB: 0,
      dir,
    };
  } finally {
    await server.close();
  }
}

function runLoadgen(args: string[], timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOADGEN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as Record<string, unknown>);
      } catch {
        reject(new Error(`the load generator printed no JSON line: ${out.slice(0, 500)}`));
      }
    });
  });
}

interface KindResult {
  pages: number;
  latencyMs: { p50: number; p99: number; max: number } | null;
  resultsPerPage: { mean: number } | null;
}

function table(fillResult: Awaited<ReturnType<typeof fill>>, q: Record<string, unknown>): string {
  const rows = [
    '| Figure | Value |',
    '|---|---:|',
    `| archive size (messages) | ${fillResult.messages.toLocaleString('en')} |`,
    `| insert throughput, sealed, batches of ${fillResult.batch} (messages/s) | ${fillResult.insertPerSec.toLocaleString('en')} |`,
    `| sealing alone (messages/s) | ${fillResult.sealOnlyPerSec.toLocaleString('en')} |`,
    `| database size (MiB) | ${fillResult.dbMiB} |`,
  ];
  const names: Record<string, string> = {
    latest: 'latest page',
    with: '`with` one peer, latest page',
    range: 'date range, first page',
  };
  for (const kind of ['latest', 'with', 'range']) {
    const k = q[kind] as KindResult | undefined;
    const lat = k?.latencyMs;
    rows.push(
      `| ${names[kind]}: p50 / p99 / max ms (${k?.pages ?? 0} queries, ${k?.resultsPerPage?.mean ?? 0} results each) | ${lat ? `${lat.p50} / ${lat.p99} / ${lat.max}` : 'n/a'} |`,
    );
  }
  return rows.join('\n');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(`${os.tmpdir()}/lethe-mam-bench-`);
  let pid: number | undefined;
  try {
    const port = await freePort();
    const configPath = `${dir}/lethe.yaml`;
    writeFileSync(
      configPath,
      `# bench:mam (bench/mam/fill-and-query.ts)
domain: ${DOMAIN}
dataDir: ${dir}/data
c2s: { port: ${port}, directTlsPort: null, requireEncryption: false, host: 127.0.0.1 }
http: { enabled: false }
auth: { scramIterations: 4096 }
log: { level: warn }
mam: { maxAgeDays: ${DAYS + 30}, maxPerUser: ${Math.max(N * 2, 10_000)}, sweepInterval: 86400 }
`,
    );
    log(`filling ${N} messages (${PEERS} peers, ${DAYS} days, batches of ${BATCH}) in ${dir}`);
    const filled = await fill(dir, configPath);
    filled.dbMiB = round(statSync(`${dir}/data/lethe.sqlite`).size / 2 ** 20, 1);

    const logFile = `${dir}/lethe.log`;
    const logFd = openSync(logFile, 'a');
    const child = spawnServer(process.execPath, [CLI, '--config', configPath, 'start'], logFd);
    closeSync(logFd);
    let exited = false;
    child.on('exit', () => {
      exited = true;
    });
    pid = child.pid;
    if (pid === undefined) throw new Error('lethe failed to spawn');
    await waitForStream(port, DOMAIN, 60_000, () => !exited).catch((err: Error) => {
      throw new Error(`lethe did not start: ${err.message}\n${readFileSync(logFile, 'utf8').slice(-500)}`);
    });
    const timeoutS = 600;
    log(`querying: ${QUERIES} queries of each kind, page ${PAGE}`);
    const queried = await runLoadgen(
      [
        'mam',
        '--port',
        String(port),
        '--domain',
        DOMAIN,
        '--user-prefix',
        PREFIX,
        '--password',
        PASSWORD,
        '--account',
        '1',
        '--count',
        String(QUERIES),
        '--page',
        String(PAGE),
        '--server-pid',
        String(pid),
        '--timeout',
        String(timeoutS),
        '--label',
        `lethe-mam-${filled.messages}`,
      ],
      (timeoutS + 120) * 1000,
    );
    const ok = queried.ok === true && !filled.fillTimedOut;
    process.stdout.write(
      `${JSON.stringify({ bench: 'mam', ok, node: process.version, date: new Date().toISOString(), fill: { ...filled, dir: undefined }, query: queried })}\n`,
    );
    process.stdout.write(`\n${table(filled, queried)}\n`);
    process.exitCode = ok ? 0 : 1;
  } finally {
    if (pid !== undefined && processAlive(pid)) await terminate(pid);
    if (values.keep) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
