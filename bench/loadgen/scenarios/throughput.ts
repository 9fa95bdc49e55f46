// throughput: P sender/receiver pairs, at most W unacknowledged messages per
// pair. Every body carries "<pair> <seq> <send time>"; a message counts only
// when the right receiver gets it from the right sender, and after a drain
// each pair's sequence is checked for loss and duplicates.

import type { XmppConn } from '../connection.js';
import { loginAccount, type Options } from '../options.js';
import { cpuPercent, ErrorLog, progress, readCpuMs, round2, runPool, Samples, sleep, summarize } from '../util.js';
import { attr, childText, escapeXml } from '../xml.js';

interface Pair {
  index: number;
  sender: XmppConn;
  receiver: XmppConn;
  /** Pre-built stanza head up to the body text. */
  head: string;
  sent: number;
  unique: number;
  duplicates: number;
  outOfOrder: number;
  maxSeq: number;
  seen: Uint8Array;
}

type Phase = 'warmup' | 'measure' | 'drain';

export async function throughput(o: Options, deadline: number): Promise<Record<string, unknown>> {
  const loginErrors = new ErrorLog();
  const conns: (XmppConn | undefined)[] = new Array(2 * o.pairs);
  await runPool(2 * o.pairs, o.concurrency, deadline, async (k) => {
    try {
      conns[k] = await loginAccount(o, k + 1, k);
    } catch (err) {
      loginErrors.add(err);
    }
    progress(`throughput: logging in ${k + 1}/${2 * o.pairs}`);
  });

  const pairs: Pair[] = [];
  for (let p = 0; p < o.pairs; p++) {
    const sender = conns[2 * p];
    const receiver = conns[2 * p + 1];
    if (!sender || !receiver) continue;
    pairs.push({
      index: p,
      sender,
      receiver,
      head: `<message to='${escapeXml(receiver.jid)}' type='chat'><body>${p} `,
      sent: 0,
      unique: 0,
      duplicates: 0,
      outOfOrder: 0,
      maxSeq: 0,
      seen: new Uint8Array(4096),
    });
  }

  const padding = 'x'.repeat(o.payload);
  let phase: Phase = 'warmup';
  let delivered = 0;
  let misrouted = 0;
  let bounced = 0;
  const latencies = new Samples();
  const runtimeErrors = new ErrorLog();

  // Refill windows once per event-loop turn so a burst of receipts becomes one write.
  const dirty = new Set<Pair>();
  let flushScheduled = false;
  const flush = () => {
    flushScheduled = false;
    for (const pair of dirty) pump(pair);
    dirty.clear();
  };
  const pump = (pair: Pair) => {
    if (phase === 'drain' || pair.sender.closed) return;
    const n = o.window - (pair.sent - pair.unique);
    if (n <= 0) return;
    let out = '';
    const now = performance.now().toFixed(3);
    for (let i = 0; i < n; i++) out += `${pair.head}${++pair.sent} ${now} ${padding}</body></message>`;
    pair.sender.send(out);
  };

  for (const pair of pairs) {
    pair.receiver.onStanza = (el) => {
      if (!el.startsWith('<message')) return;
      const now = performance.now();
      const body = childText(el, 'body');
      const parts = body?.split(' ');
      const seq = Number(parts?.[1]);
      if (!parts || Number(parts[0]) !== pair.index || !Number.isInteger(seq) || seq < 1 || seq > pair.sent) {
        misrouted++;
        return;
      }
      if (attr(el, 'from') !== pair.sender.jid || attr(el, 'type') === 'error') {
        misrouted++;
        return;
      }
      if (seq >= pair.seen.length) {
        const bigger = new Uint8Array(Math.max(seq + 1, pair.seen.length * 2));
        bigger.set(pair.seen);
        pair.seen = bigger;
      }
      if (pair.seen[seq]) {
        pair.duplicates++;
        return;
      }
      pair.seen[seq] = 1;
      pair.unique++;
      if (seq < pair.maxSeq) pair.outOfOrder++;
      else pair.maxSeq = seq;
      if (phase === 'measure') {
        delivered++;
        latencies.push(now - Number(parts[2]));
      }
      dirty.add(pair);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    };
    // Anything coming back to a sender is an error bounce.
    pair.sender.onStanza = (el) => {
      if (el.startsWith('<message')) bounced++;
    };
    for (const c of [pair.sender, pair.receiver]) c.onFail = (err) => runtimeErrors.add(err);
  }

  progress(
    `throughput: ${pairs.length} pairs, window ${o.window}; warm-up ${o.warmupS} s, measuring ${o.durationS} s`,
    true,
  );
  for (const pair of pairs) pump(pair);
  const bounded = (ms: number) => Math.max(0, Math.min(ms, deadline - performance.now()));
  await sleep(bounded(o.warmupS * 1000));
  phase = 'measure';
  const cpu = process.cpuUsage();
  const serverCpu0 = o.serverPid === undefined ? undefined : readCpuMs(o.serverPid);
  const t0 = performance.now();
  const sentAtStart = pairs.reduce((s, p) => s + p.sent, 0);
  const end = t0 + o.durationS * 1000;
  while (performance.now() < end && performance.now() < deadline) {
    await sleep(Math.min(1000, end - performance.now()));
    progress(`throughput: ${delivered} delivered in window`);
  }
  phase = 'drain';
  const measuredMs = performance.now() - t0;
  const clientCpuPct = cpuPercent(cpu, measuredMs);
  const serverCpuMs =
    serverCpu0 === undefined || o.serverPid === undefined ? undefined : readCpuMs(o.serverPid) - serverCpu0;
  const sentInWindow = pairs.reduce((s, p) => s + p.sent, 0) - sentAtStart;

  // Drain: wait until every sent message has arrived (or 10 s / the deadline pass).
  const drainEnd = performance.now() + 10_000;
  const inFlight = () => pairs.reduce((s, p) => s + (p.sent - p.unique), 0);
  while (inFlight() > 0 && performance.now() < drainEnd && performance.now() < deadline) await sleep(50);

  for (const pair of pairs) {
    pair.sender.close();
    pair.receiver.close();
  }

  const sent = pairs.reduce((s, p) => s + p.sent, 0);
  const received = pairs.reduce((s, p) => s + p.unique, 0);
  const duplicates = pairs.reduce((s, p) => s + p.duplicates, 0);
  const outOfOrder = pairs.reduce((s, p) => s + p.outOfOrder, 0);
  const lost = sent - received;
  const errors = loginErrors.count + runtimeErrors.count;
  return {
    ok:
      errors === 0 &&
      pairs.length === o.pairs &&
      delivered > 0 &&
      lost === 0 &&
      duplicates === 0 &&
      misrouted === 0 &&
      bounced === 0,
    pairs: o.pairs,
    activePairs: pairs.length,
    window: o.window,
    payload: o.payload,
    warmupS: o.warmupS,
    durationS: o.durationS,
    measuredMs: round2(measuredMs),
    sent,
    sentInWindow,
    received,
    delivered,
    lost,
    duplicates,
    outOfOrder,
    misrouted,
    bounced,
    errors,
    errorSamples: [...loginErrors.samples, ...runtimeErrors.samples].slice(0, 5),
    msgsPerSec: round2((delivered / measuredMs) * 1000),
    latencyMs: summarize(latencies.view()),
    tlsProtocol: pairs[0]?.sender.tlsProtocol ?? null,
    clientCpuPct,
    serverCpuPct: serverCpuMs === undefined ? null : round2((serverCpuMs / measuredMs) * 100),
    serverCpuUsPerMsg: serverCpuMs === undefined || delivered === 0 ? null : round2((serverCpuMs * 1000) / delivered),
  };
}
