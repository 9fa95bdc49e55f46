// Runs every scenario against Lethe, Prosody and ejabberd on loopback, each
// server in its own temporary directory with equivalent settings, and writes
// a Markdown table (medians with ranges, ratios) plus the raw JSON lines.
// Run through bench/compare.sh, which raises the file-descriptor limit.

import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type BenchServer, type BenchSetup, portInUse, ServerUnavailable, selfSignedCert } from './servers/common.js';
import { EjabberdServer } from './servers/ejabberd.js';
import { LetheServer } from './servers/lethe.js';
import { ProsodyServer } from './servers/prosody.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LOADGEN = fileURLToPath(new URL('./loadgen/main.js', import.meta.url));
const SERVER_NAMES = ['lethe', 'prosody', 'ejabberd'] as const;
type ServerName = (typeof SERVER_NAMES)[number];
const SOURCE_ADDRS = '127.0.0.2-127.0.0.9';

// Own high ports below the ephemeral range (32768+), so client sockets never collide with them.
const PORTS: Record<ServerName, [number, number]> = {
  lethe: [15222, 15223],
  prosody: [16222, 16223],
  ejabberd: [17222, 17223],
};

type Json = Record<string, unknown>;

interface Scale {
  reps: number;
  logins: number;
  idle: number;
  holdS: number;
  pairs: number;
  window: number;
  durationS: number;
  warmupS: number;
}

interface Figure {
  label: string;
  pick: (r: Json) => number | null;
  decimals: number;
}

interface Job {
  id: string;
  scenario: 'logins' | 'idle' | 'throughput';
  title: string;
  args: (s: Scale) => string[];
  timeoutS: (s: Scale) => number;
  figures: Figure[];
}

const num = (path: string) => (r: Json) => {
  let v: unknown = r;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Json)[k] : undefined;
  return typeof v === 'number' ? v : null;
};

const loginJob = (id: string, mech: string, tls: string, title: string): Job => ({
  id,
  scenario: 'logins',
  title,
  args: (s) => ['--mech', mech, '--tls', tls, '--count', String(s.logins), '--concurrency', '20'],
  timeoutS: () => 600,
  figures: [
    { label: 'logins/s', pick: num('loginsPerSec'), decimals: 0 },
    { label: 'login p50 ms', pick: num('latencyMs.p50'), decimals: 1 },
    { label: 'login p99 ms', pick: num('latencyMs.p99'), decimals: 1 },
    { label: 'server CPU ms per login', pick: num('serverCpuMsPerLogin'), decimals: 2 },
  ],
});

const idleJob = (id: string, tls: string, title: string): Job => ({
  id,
  scenario: 'idle',
  title,
  args: (s) => ['--tls', tls, '--count', String(s.idle), '--duration', String(s.holdS), '--concurrency', '200'],
  timeoutS: () => 900,
  figures: [
    { label: 'KiB per connection', pick: num('kibPerConn'), decimals: 1 },
    { label: 'connections held', pick: num('alive'), decimals: 0 },
    { label: 'errors', pick: num('errors'), decimals: 0 },
  ],
});

const JOBS: Job[] = [
  loginJob('logins-scram-none', 'SCRAM-SHA-1', 'none', 'logins, SCRAM-SHA-1, no TLS'),
  loginJob('logins-scram-tls', 'SCRAM-SHA-1', 'starttls', 'logins, SCRAM-SHA-1, STARTTLS'),
  loginJob('logins-plain-tls', 'PLAIN', 'starttls', 'logins, PLAIN, STARTTLS'),
  idleJob('idle-tls', 'starttls', 'idle, STARTTLS'),
  idleJob('idle-none', 'none', 'idle, no TLS'),
  {
    id: 'throughput',
    scenario: 'throughput',
    title: 'throughput, no TLS',
    args: (s) => [
      '--pairs',
      String(s.pairs),
      '--window',
      String(s.window),
      '--duration',
      String(s.durationS),
      '--warmup-time',
      String(s.warmupS),
    ],
    timeoutS: (s) => s.durationS + s.warmupS + 300,
    figures: [
      { label: 'msg/s', pick: num('msgsPerSec'), decimals: 0 },
      { label: 'latency p50 ms', pick: num('latencyMs.p50'), decimals: 1 },
      { label: 'latency p99 ms', pick: num('latencyMs.p99'), decimals: 1 },
      { label: 'server CPU µs per message', pick: num('serverCpuUsPerMsg'), decimals: 1 },
      { label: 'server CPU % of one core', pick: num('serverCpuPct'), decimals: 0 },
      { label: 'lost', pick: num('lost'), decimals: 0 },
    ],
  },
];

/** Jobs sharing a server start: login variants together; idle and throughput each on a fresh server (clean RSS baseline). */
const GROUPS: string[][] = [
  ['logins-scram-none', 'logins-scram-tls', 'logins-plain-tls'],
  ['idle-tls'],
  ['idle-none'],
  ['throughput'],
];

interface RunRecord {
  server: ServerName;
  rep: number;
  job: string;
  result: Json;
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      servers: { type: 'string', default: SERVER_NAMES.join(',') },
      scenarios: { type: 'string', default: 'logins,idle,throughput' },
      logins: { type: 'string' },
      idle: { type: 'string' },
      hold: { type: 'string' },
      pairs: { type: 'string' },
      window: { type: 'string' },
      duration: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: npm run bench:compare -- [--quick] [--reps N] [--servers lethe,prosody,ejabberd]
  [--scenarios logins,idle,throughput] [--logins N] [--idle N] [--hold S] [--pairs P] [--window W] [--duration S] [--keep]
Defaults (full): 3 reps, 1000 logins per variant, 10000 idle connections held 5 s, 50 pairs, window 10, 10 s.
--quick: 1 rep, 150 logins, 300 idle held 1 s, 50 pairs for 3 s (a smoke test: too small for verdicts). Env BENCH_REPS, BENCH_IDLE, BENCH_LOGINS override too.
--keep leaves the temporary run directory (configs, logs) in place.\n`);
    process.exit(0);
  }
  const q = values.quick;
  const pick = (flag: string | undefined, env: string | undefined, full: number, quick: number) => {
    const v = Number(flag ?? env ?? (q ? quick : full));
    if (!Number.isFinite(v) || v <= 0) throw new Error(`bad scale value ${flag ?? env}`);
    return v;
  };
  const scale: Scale = {
    reps: pick(values.reps, process.env.BENCH_REPS, 3, 1),
    logins: pick(values.logins, process.env.BENCH_LOGINS, 1000, 150),
    idle: pick(values.idle, process.env.BENCH_IDLE, 10_000, 300),
    holdS: pick(values.hold, undefined, 5, 1),
    pairs: pick(values.pairs, undefined, 50, 50),
    window: pick(values.window, undefined, 10, 10),
    durationS: pick(values.duration, undefined, 10, 3),
    warmupS: q ? 1 : 2,
  };
  const servers = (values.servers as string).split(',').map((s) => s.trim());
  for (const s of servers) if (!SERVER_NAMES.includes(s as ServerName)) throw new Error(`unknown server ${s}`);
  const scenarios = new Set((values.scenarios as string).split(',').map((s) => s.trim()));
  return { quick: q, scale, servers: servers as ServerName[], scenarios, keep: values.keep };
}

function fdLimit(pid: number | 'self'): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return !m || m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

/** Runs the load generator; returns its JSON line (or a synthetic failure record). */
function loadgen(
  job: Job,
  scale: Scale,
  setup: BenchSetup,
  server: BenchServer,
  pid: number,
  label: string,
): Promise<Json> {
  const args = [
    LOADGEN,
    job.scenario,
    '--host',
    '127.0.0.1',
    '--port',
    String(server.port),
    '--domain',
    setup.domain,
    '--user-prefix',
    setup.userPrefix,
    '--password',
    setup.password,
    '--source-addrs',
    SOURCE_ADDRS,
    '--server-pid',
    String(pid),
    '--timeout',
    String(job.timeoutS(scale)),
    '--label',
    label,
    ...job.args(scale),
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as Json);
      } catch {
        resolve({ scenario: job.scenario, ok: false, error: `loadgen exited ${code} without a JSON line` });
      }
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function fmt(x: number, decimals: number): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

async function main(): Promise<void> {
  const cli = parseCli();
  const { scale } = cli;
  const jobs = JOBS.filter((j) => cli.scenarios.has(j.scenario));
  const accounts = Math.max(scale.logins, scale.idle, 2 * scale.pairs);
  const needFds = scale.idle + 1000;
  if (cli.scenarios.has('idle') && fdLimit('self') < needFds) {
    throw new Error(
      `open-file limit ${fdLimit('self')} < ${needFds}: run through bench/compare.sh (it sets ulimit -n 65536)`,
    );
  }

  const startedAt = new Date();
  const stamp = startedAt.toISOString().slice(0, 16).replace(':', '-') + (cli.quick ? '-quick' : '');
  const runDir = mkdtempSync(`${os.tmpdir()}/lethe-bench-`);
  chmodSync(runDir, 0o755); // ejabberd runs as its own user and must traverse it
  process.stderr.write(`[compare] run directory ${runDir}\n`);
  const setup: BenchSetup = {
    domain: 'bench.localhost',
    userPrefix: 'bench',
    password: 'bench-pass-2026',
    accounts,
    certFile: `${runDir}/cert.pem`,
    keyFile: `${runDir}/key.pem`,
  };
  await selfSignedCert(setup.domain, setup.certFile, setup.keyFile);

  const makers: Record<ServerName, (dir: string) => BenchServer> = {
    lethe: (d) => new LetheServer(d, ...PORTS.lethe),
    prosody: (d) => new ProsodyServer(d, ...PORTS.prosody),
    ejabberd: (d) => new EjabberdServer(d, ...PORTS.ejabberd),
  };
  const skipped = new Map<ServerName, string>();
  const active = new Map<ServerName, BenchServer>();
  const accountTimes = new Map<ServerName, number>();
  const versions = new Map<ServerName, string>();
  const fdWarnings: string[] = [];
  let running: BenchServer | undefined;
  const onSignal = async (sig: string) => {
    process.stderr.write(`[compare] ${sig}: stopping ${running?.name ?? 'nothing'}\n`);
    await running?.stop().catch(() => {});
    process.exit(130);
  };
  process.once('SIGINT', () => void onSignal('SIGINT'));
  process.once('SIGTERM', () => void onSignal('SIGTERM'));

  for (const name of cli.servers) {
    const dir = `${runDir}/${name}`;
    mkdirSync(dir, { recursive: true });
    const server = makers[name](dir);
    try {
      for (const p of PORTS[name]) {
        if (await portInUse(p))
          throw new ServerUnavailable(`port ${p} is already in use by another process (left alone)`);
      }
      process.stderr.write(`[compare] ${name}: preparing ${accounts} accounts\n`);
      running = server;
      accountTimes.set(name, await server.prepare(setup));
      running = undefined;
      versions.set(name, await server.version());
      active.set(name, server);
    } catch (err) {
      running = undefined;
      if (!(err instanceof ServerUnavailable)) throw err;
      const hint = name === 'lethe' ? '' : ' — install with: apt-get update && apt-get install -y prosody ejabberd';
      skipped.set(name, err.message + (err.message.includes('not installed') ? hint : ''));
      process.stderr.write(`[compare] SKIPPING ${name}: ${err.message}\n`);
    }
  }
  if (active.size === 0) throw new Error('no server could be prepared');

  const records: RunRecord[] = [];
  for (let rep = 1; rep <= scale.reps; rep++) {
    for (const [name, server] of active) {
      for (const group of GROUPS) {
        const groupJobs = jobs.filter((j) => group.includes(j.id));
        if (groupJobs.length === 0 || skipped.has(name)) continue;
        let pid: number;
        try {
          running = server;
          pid = await server.start();
        } catch (err) {
          running = undefined;
          if (!(err instanceof ServerUnavailable)) throw err;
          skipped.set(name, err.message);
          process.stderr.write(`[compare] SKIPPING ${name} from now on: ${err.message}\n`);
          continue;
        }
        try {
          if (group.some((id) => id.startsWith('idle')) && fdLimit(pid) < needFds) {
            fdWarnings.push(`${name}: server process open-file limit ${fdLimit(pid)} < ${needFds}`);
          }
          await new Promise((r) => setTimeout(r, 1000)); // let start-up allocations settle before any RSS baseline
          for (const job of groupJobs) {
            process.stderr.write(`[compare] rep ${rep}/${scale.reps} ${name} ${job.id}\n`);
            const result = await loadgen(job, scale, setup, server, pid, `${name}/${job.id}/${rep}`);
            records.push({ server: name, rep, job: job.id, result });
            if (result.ok !== true) {
              process.stderr.write(
                `[compare] ${name} ${job.id} rep ${rep} not clean: ${JSON.stringify(result.errorSamples ?? result.error ?? '')}\n`,
              );
            }
          }
        } finally {
          await server.stop();
          running = undefined;
        }
      }
    }
  }

  const report = buildReport(startedAt, cli, scale, jobs, records, setup, skipped, accountTimes, versions, fdWarnings);
  const outDir = `${REPO}bench/results`;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${outDir}/${stamp}.md`, report);
  writeFileSync(
    `${outDir}/${stamp}.jsonl`,
    `${records.map((r) => JSON.stringify({ server: r.server, rep: r.rep, job: r.job, ...r.result })).join('\n')}\n`,
  );
  process.stdout.write(report);
  process.stderr.write(`[compare] wrote bench/results/${stamp}.md and .jsonl\n`);
  if (!cli.keep) rmSync(runDir, { recursive: true, force: true });
  else process.stderr.write(`[compare] kept ${runDir}\n`);
}

function buildReport(
  startedAt: Date,
  cli: ReturnType<typeof parseCli>,
  scale: Scale,
  jobs: Job[],
  records: RunRecord[],
  setup: BenchSetup,
  skipped: Map<ServerName, string>,
  accountTimes: Map<ServerName, number>,
  versions: Map<ServerName, string>,
  fdWarnings: string[],
): string {
  const values = (server: ServerName, job: Job, f: Figure) =>
    records
      .filter((r) => r.server === server && r.job === job.id)
      .map((r) => f.pick(r.result))
      .filter((v): v is number => v !== null);
  const med = (server: ServerName, job: Job, f: Figure) => {
    const v = values(server, job, f);
    return v.length ? median(v) : null;
  };
  const cell = (server: ServerName, job: Job, f: Figure) => {
    if (!records.some((r) => r.server === server)) return skipped.has(server) ? 'skipped' : 'not run';
    const v = values(server, job, f);
    if (!v.length) return 'n/a';
    const m = fmt(median(v), f.decimals);
    return v.length > 1 ? `${m} (${fmt(Math.min(...v), f.decimals)}–${fmt(Math.max(...v), f.decimals)})` : m;
  };
  const ratio = (a: number | null, b: number | null) =>
    a !== null && b !== null && b !== 0 ? `${(a / b).toFixed(2)}×` : '—';

  const cpu = os.cpus();
  const lines: string[] = [];
  lines.push(
    `# Lethe benchmark, ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC${cli.quick ? ' (quick run)' : ''}`,
  );
  lines.push('');
  lines.push(
    `Machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}; load generator on the same machine.`,
  );
  lines.push(
    `Servers: ${SERVER_NAMES.map((n) => versions.get(n) ?? `${n}: skipped (${skipped.get(n) ?? 'not selected'})`).join('; ')}.`,
  );
  lines.push(
    `Settings: domain ${setup.domain}; c2s on 127.0.0.1 with optional STARTTLS, one self-signed RSA-2048 certificate for all; SCRAM-SHA-1 stored credentials; roster/disco/ping only; no s2s, no archive, no offline storage; listen backlog 1024. ` +
      `${scale.reps} repetition(s): median (min–max). Each scenario group runs on a freshly started server.`,
  );
  lines.push(
    `Scale: logins ${scale.logins} per variant (20 in flight, after an untimed warm-up pass of the same logins); idle ${scale.idle} connections over ${SOURCE_ADDRS}, held ${scale.holdS} s; ` +
      `throughput ${scale.pairs} pairs, window ${scale.window}, ${scale.durationS} s measured after ${scale.warmupS} s warm-up, 64-char padding.`,
  );
  lines.push(
    `Account creation (${setup.accounts} accounts): ${[...accountTimes].map(([n, s]) => `${n} ${s.toFixed(1)} s`).join(', ') || 'none'}.`,
  );
  if (cli.quick) {
    lines.push(
      'Quick run: a smoke test. At these sizes KiB per connection is dominated by heap growth and the rates by start-up effects; use a full run for figures.',
    );
  }
  lines.push('');
  lines.push('| Figure | Lethe | Prosody | ejabberd | Lethe/Prosody | Lethe/ejabberd |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const job of jobs) {
    for (const f of job.figures) {
      lines.push(
        `| ${job.title}: ${f.label} | ${cell('lethe', job, f)} | ${cell('prosody', job, f)} | ${cell('ejabberd', job, f)} | ${ratio(
          med('lethe', job, f),
          med('prosody', job, f),
        )} | ${ratio(med('lethe', job, f), med('ejabberd', job, f))} |`,
      );
    }
  }

  // Targets from the benchmark issue (2 cores).
  const fig = (jobId: string, label: string) => {
    const job = JOBS.find((j) => j.id === jobId) as Job;
    return { job, f: job.figures.find((x) => x.label === label) as Figure };
  };
  const tp = fig('throughput', 'msg/s');
  const mem = fig('idle-tls', 'KiB per connection');
  const verdict = (ok: boolean | null) => (ok === null ? 'not measured' : ok ? 'met' : 'NOT met');
  const thr = (server: ServerName) => (jobs.includes(tp.job) ? med(server, tp.job, tp.f) : null);
  const lt = thr('lethe');
  const pt = thr('prosody');
  const et = thr('ejabberd');
  const lm = jobs.includes(mem.job) ? med('lethe', mem.job, mem.f) : null;
  const pm = jobs.includes(mem.job) ? med('prosody', mem.job, mem.f) : null;
  const letheIdle = records.filter((r) => r.server === 'lethe' && r.job.startsWith('idle'));
  const held =
    letheIdle.length === 0 || scale.idle < 10_000
      ? null
      : letheIdle.every((r) => r.result.ok === true && num('alive')(r.result) === scale.idle);
  lines.push('');
  lines.push('| Target (2 cores) | Measured | Verdict |');
  lines.push('|---|---:|---|');
  lines.push(
    `| Lethe throughput ≥ 1.5× Prosody | ${ratio(lt, pt)} | ${verdict(lt !== null && pt !== null ? lt >= 1.5 * pt : null)} |`,
  );
  lines.push(
    `| Lethe throughput ≥ 0.8× ejabberd | ${ratio(lt, et)} | ${verdict(lt !== null && et !== null ? lt >= 0.8 * et : null)} |`,
  );
  lines.push(
    `| Lethe KiB per idle TLS connection ≤ Prosody | ${lm !== null && pm !== null ? `${fmt(lm, 1)} vs ${fmt(pm, 1)}` : '—'} | ${verdict(lm !== null && pm !== null ? lm <= pm : null)} |`,
  );
  lines.push(
    `| 10 000 idle connections held by Lethe, no errors | ${held === null ? '—' : `${scale.idle} × ${letheIdle.length} runs`} | ${verdict(held)} |`,
  );

  lines.push('');
  lines.push('Notes:');
  for (const name of SERVER_NAMES) {
    const rs = records.filter((r) => r.server === name);
    const tlsLine = rs.find((r) => typeof r.result.tlsCipher === 'string')?.result;
    const iters = rs.find((r) => typeof r.result.scramIterations === 'number')?.result.scramIterations;
    const lgCpu = rs
      .filter((r) => r.job === 'throughput')
      .map((r) => num('clientCpuPct')(r.result))
      .filter((v): v is number => v !== null);
    if (!rs.length) continue;
    lines.push(
      `- ${name}: TLS ${tlsLine ? `${tlsLine.tlsProtocol} ${tlsLine.tlsCipher}` : 'n/a'}; SCRAM iterations ${iters ?? 'n/a'}` +
        (lgCpu.length ? `; load generator CPU during throughput ${fmt(median(lgCpu), 0)}% of one core` : '') +
        '.',
    );
  }
  for (const w of fdWarnings) lines.push(`- WARNING ${w}`);
  const unclean = records.filter((r) => r.result.ok !== true);
  for (const r of unclean) {
    lines.push(
      `- NOT CLEAN: ${r.server} ${r.job} rep ${r.rep}: ${JSON.stringify(r.result.error ?? r.result.errorSamples ?? '')} (errors ${r.result.errors ?? '?'}, lost ${r.result.lost ?? '-'})`,
    );
  }
  for (const [n, why] of skipped) lines.push(`- ${n} skipped: ${why}`);
  lines.push('');
  return lines.join('\n');
}

main().catch((err: Error) => {
  process.stderr.write(`[compare] ${err.stack ?? err.message}\n`);
  process.exit(1);
});
