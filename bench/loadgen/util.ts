// Small helpers shared by the scenarios: statistics, bounded worker pools,
// server memory, source addresses, progress output.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles, in ms rounded to 0.01. */
export function summarize(values: ArrayLike<number>): LatencySummary | null {
  const n = values.length;
  if (n === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const rank = (p: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i] as number;
  return {
    count: n,
    p50: round2(rank(50)),
    p99: round2(rank(99)),
    min: round2(sorted[0] as number),
    max: round2(sorted[n - 1] as number),
    mean: round2(sum / n),
  };
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Growable Float64 sample buffer (avoids boxing millions of latencies). */
export class Samples {
  private data = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

/**
 * Runs fn(0..count-1) with at most `concurrency` in flight; stops starting new
 * work once `deadline` (performance.now() ms) has passed. Returns how many ran.
 */
export async function runPool(
  count: number,
  concurrency: number,
  deadline: number,
  fn: (i: number) => Promise<void>,
): Promise<number> {
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < count && performance.now() < deadline) {
      await fn(nextIndex++);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  return nextIndex;
}

/** VmRSS and VmHWM of a process in KiB, from /proc/PID/status. */
export function readRss(pid: number): { rssKiB: number; hwmKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/**
 * CPU time (user + system, all threads) a process has used, in ms, from
 * /proc/PID/stat. Server CPU per operation is much less sensitive to a noisy
 * machine than wall-clock rates, so scenarios report both.
 */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": state is field 3, utime 14, stime 15; USER_HZ is 100 on Linux.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** "127.0.0.2-127.0.0.9" or "127.0.0.2,127.0.0.5" -> list; loopback only. */
export function parseSourceAddrs(spec: string | undefined): (string | undefined)[] {
  if (!spec) return [undefined];
  const out: string[] = [];
  for (const part of spec.split(',')) {
    const [from, to] = part.trim().split('-');
    if (!from) continue;
    if (to === undefined) {
      out.push(from);
      continue;
    }
    const a = from.split('.').map(Number);
    const b = to.split('.').map(Number);
    if (a.length !== 4 || b.length !== 4 || a.slice(0, 3).join('.') !== b.slice(0, 3).join('.')) {
      throw new Error(`source range must stay within one /24: ${part}`);
    }
    for (let x = a[3] as number; x <= (b[3] as number); x++) out.push(`${a.slice(0, 3).join('.')}.${x}`);
  }
  for (const addr of out) assertLoopback(addr);
  return out.length ? out : [undefined];
}

/** The load generator must never talk to anything but loopback. */
export function assertLoopback(addr: string): void {
  if (addr === 'localhost') return;
  if (isIP(addr) === 4 && addr.startsWith('127.')) return;
  if (addr === '::1') return;
  throw new Error(`refusing non-loopback address ${addr}`);
}

let lastProgress = 0;
/** Progress goes to stderr, at most every 2 s unless forced; stdout is reserved for the JSON line. */
export function progress(msg: string, force = false): void {
  const now = performance.now();
  if (!force && now - lastProgress < 2000) return;
  lastProgress = now;
  process.stderr.write(`[loadgen] ${msg}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Records the first few distinct error messages and counts all of them. */
export class ErrorLog {
  count = 0;
  readonly samples: string[] = [];
  add(err: unknown): void {
    this.count++;
    const msg = err instanceof Error ? err.message : String(err);
    if (this.samples.length < 5 && !this.samples.includes(msg)) this.samples.push(msg);
  }
}

/** CPU time this process used between two cpuUsage() snapshots, as % of one core. */
export function cpuPercent(start: NodeJS.CpuUsage, wallMs: number): number {
  const d = process.cpuUsage(start);
  return wallMs > 0 ? round2(((d.user + d.system) / 1000 / wallMs) * 100) : 0;
}
