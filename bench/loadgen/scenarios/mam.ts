// mam: archive query latency on a filled archive (XEP-0313, urn:xmpp:mam:2,
// RSM paging). One account logs in and runs, one at a time and interleaved,
// Q queries of each kind: the latest page (`<before/>` empty), the latest page
// with one peer (`with`), and the first page of a random date range (`start`,
// `end`) within the archive's span. The peers and the span come from flags or
// are discovered from the first and the latest page. Each page is checked
// against what the server says about it: as many `<result>`s as the page
// should hold (given `<count>`, when sent), `<first>`/`<last>` naming the
// first and last result, `complete` consistent with the count, results in
// chronological order, and each result within the filter (peer, time window).
// A query counts only when its page passes these checks.

import { seededRandom } from '../../random.js';
import type { XmppConn } from '../connection.js';
import { loginAccount, type Options } from '../options.js';
import { cpuPercent, ErrorLog, progress, readCpuMs, round2, Samples, summarize } from '../util.js';
import { attr, childText, escapeXml } from '../xml.js';

const NS_MAM = 'urn:xmpp:mam:2';
const NS_RSM = 'http://jabber.org/protocol/rsm';
const QUERY_TIMEOUT_MS = 30_000;

type Kind = 'latest' | 'with' | 'range';
const KINDS: Kind[] = ['latest', 'with', 'range'];

interface Item {
  id: string;
  /** ms since the epoch, from the forwarded `<delay stamp>`; NaN if missing. */
  stamp: number;
  /** Bare JID of the other party of the archived message (owner on both sides: the owner). */
  peer: string;
}

interface Spec {
  with?: string;
  start?: number;
  end?: number;
  /** Latest page (RSM `<before/>`) rather than the first page. */
  latest: boolean;
}

interface Page {
  items: Item[];
  complete: boolean;
  count: number | undefined;
  first: string | undefined;
  last: string | undefined;
}

interface KindStats {
  latencies: Samples;
  pages: number;
  results: number;
  minResults: number;
  maxResults: number;
  completePages: number;
  /** `<count>` of the last page, the size of the whole result set the server reported. */
  lastCount: number | null;
  mismatches: number;
}

const bare = (jid: string | undefined) => (jid ?? '').split('/')[0]?.toLowerCase() ?? '';

function parseResult(el: string, owner: string): { queryid: string | undefined; item: Item } | undefined {
  const r = el.indexOf('<result');
  if (r < 0 || !el.includes(NS_MAM)) return undefined;
  const resultTag = el.slice(r);
  const id = attr(resultTag, 'id');
  if (id === undefined) return undefined;
  const fwd = el.indexOf('<forwarded', r);
  const delay = fwd < 0 ? -1 : el.indexOf('<delay', fwd);
  const stamp = delay < 0 ? undefined : attr(el.slice(delay), 'stamp');
  const inner = fwd < 0 ? -1 : el.indexOf('<message', fwd);
  const innerTag = inner < 0 ? '' : el.slice(inner);
  const from = bare(attr(innerTag, 'from'));
  const to = bare(attr(innerTag, 'to'));
  return {
    queryid: attr(resultTag, 'queryid'),
    item: { id, stamp: stamp === undefined ? Number.NaN : Date.parse(stamp), peer: from === owner ? to : from },
  };
}

function queryXml(queryid: string, spec: Spec, max: number): string {
  const fields: string[] = [];
  if (spec.with !== undefined) fields.push(`<field var='with'><value>${escapeXml(spec.with)}</value></field>`);
  if (spec.start !== undefined)
    fields.push(`<field var='start'><value>${new Date(spec.start).toISOString()}</value></field>`);
  if (spec.end !== undefined)
    fields.push(`<field var='end'><value>${new Date(spec.end).toISOString()}</value></field>`);
  const form = fields.length
    ? `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${NS_MAM}</value></field>${fields.join('')}</x>`
    : '';
  const rsm = `<set xmlns='${NS_RSM}'><max>${max}</max>${spec.latest ? '<before/>' : ''}</set>`;
  return `<iq type='set' id='ID'><query xmlns='${NS_MAM}' queryid='${queryid}'>${form}${rsm}</query></iq>`;
}

/** What is wrong with a page (given the query that asked for it), or undefined if it is consistent. */
export function checkPage(page: Page, spec: Spec, max: number): string | undefined {
  const n = page.items.length;
  if (n > max) return `${n} results for max ${max}`;
  if (n > 0 && (page.first !== page.items[0]?.id || page.last !== page.items[n - 1]?.id))
    return `first/last ${page.first}/${page.last} do not name the first/last result ${page.items[0]?.id}/${page.items[n - 1]?.id}`;
  if (n === 0 && (page.first !== undefined || page.last !== undefined)) return 'first/last on an empty page';
  if (n < max && !page.complete) return `a short page (${n} of ${max}) not marked complete`;
  if (page.count !== undefined) {
    // Every query here asks for the first page in its direction: it holds min(count, max) results.
    if (n !== Math.min(page.count, max)) return `${n} results, but count ${page.count} and max ${max}`;
    if (page.complete !== page.count <= max) return `complete=${page.complete} with count ${page.count}, max ${max}`;
  }
  const ids = new Set<string>();
  let previous = Number.NEGATIVE_INFINITY;
  for (const item of page.items) {
    if (ids.has(item.id)) return `result ${item.id} twice in one page`;
    ids.add(item.id);
    if (Number.isNaN(item.stamp)) return `result ${item.id} without a delay stamp`;
    if (item.stamp < previous) return `result ${item.id} out of chronological order`;
    previous = item.stamp;
    if (spec.with !== undefined && item.peer !== bare(spec.with))
      return `result ${item.id} is with ${item.peer}, not ${spec.with}`;
    // Stamps may be truncated to the second by the server.
    if (spec.start !== undefined && item.stamp < Math.floor(spec.start / 1000) * 1000)
      return `result ${item.id} before the window's start`;
    if (spec.end !== undefined && item.stamp > spec.end) return `result ${item.id} after the window's end`;
  }
  return undefined;
}

export async function mam(o: Options, deadline: number): Promise<Record<string, unknown>> {
  const owner = `${o.userPrefix}${o.account}@${o.domain}`.toLowerCase();
  const errors = new ErrorLog();
  const mismatchSamples: string[] = [];
  const conn: XmppConn = await loginAccount(o, o.account, 0);
  conn.onFail = (err) => errors.add(err);

  let current: { queryid: string; items: Item[] } | undefined;
  let strays = 0;
  conn.onStanza = (el) => {
    if (!el.startsWith('<message')) return;
    const r = parseResult(el, owner);
    if (!r) return;
    if (current && r.queryid === current.queryid) current.items.push(r.item);
    else strays++;
  };

  let queries = 0;
  const ask = async (spec: Spec): Promise<{ page: Page; ms: number }> => {
    const queryid = `mq${++queries}`;
    current = { queryid, items: [] };
    const t = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        conn.iq(queryXml(queryid, spec, o.page)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`query timed out after ${QUERY_TIMEOUT_MS} ms`)), QUERY_TIMEOUT_MS);
        }),
      ]);
      const ms = performance.now() - t;
      if (attr(reply, 'type') !== 'result') throw new Error(`query refused: ${reply.slice(0, 300)}`);
      const fin = reply.indexOf('<fin');
      if (fin < 0) throw new Error(`no <fin/> in the reply: ${reply.slice(0, 300)}`);
      const finEl = reply.slice(fin);
      const count = childText(finEl, 'count');
      return {
        page: {
          items: current.items,
          complete: attr(finEl, 'complete') === 'true',
          count: count === undefined ? undefined : Number(count),
          first: childText(finEl, 'first'),
          last: childText(finEl, 'last'),
        },
        ms,
      };
    } finally {
      clearTimeout(timer);
      current = undefined;
    }
  };

  // Discovery (untimed): the latest and the first page give the span and some peers.
  const peers = new Set<string>();
  const latest = await ask({ latest: true });
  const oldest = await ask({ latest: false });
  for (const item of [...latest.page.items, ...oldest.page.items]) if (item.peer !== owner) peers.add(item.peer);
  const peerList = o.with !== undefined ? [o.with] : [...peers].sort();
  const spanStart = o.rangeStart ?? oldest.page.items[0]?.stamp;
  const spanEnd = o.rangeEnd ?? latest.page.items[latest.page.items.length - 1]?.stamp;
  const archiveCount = latest.page.count ?? null;
  if (spanStart === undefined || spanEnd === undefined || peerList.length === 0) {
    conn.close();
    return {
      ok: false,
      error: 'the archive is empty (no results on the latest page): nothing to measure',
      account: owner,
      archiveCount,
    };
  }
  const span = Math.max(0, spanEnd - spanStart);
  const windowMs = o.rangeWindowMs ?? Math.max(1000, span / 30);
  const rand = seededRandom(o.seed);
  const specFor = (kind: Kind): Spec => {
    if (kind === 'latest') return { latest: true };
    if (kind === 'with') return { latest: true, with: peerList[Math.floor(rand() * peerList.length)] as string };
    const start = spanStart + rand() * Math.max(0, span - windowMs);
    return { latest: false, start: Math.floor(start), end: Math.floor(start + windowMs) };
  };

  const stats = new Map<Kind, KindStats>(
    KINDS.map((k) => [
      k,
      {
        latencies: new Samples(),
        pages: 0,
        results: 0,
        minResults: Number.POSITIVE_INFINITY,
        maxResults: 0,
        completePages: 0,
        lastCount: null,
        mismatches: 0,
      },
    ]),
  );
  let cpu = process.cpuUsage();
  let serverCpu0: number | undefined;
  let t0 = performance.now();
  let timedQueries = 0;
  const total = o.warmup + o.count;
  progress(`mam: ${owner}, ${o.warmup} warm-up + ${o.count} timed queries of each kind, page ${o.page}`, true);
  outer: for (let i = 0; i < total; i++) {
    const timed = i >= o.warmup;
    if (i === o.warmup) {
      cpu = process.cpuUsage();
      serverCpu0 = o.serverPid === undefined ? undefined : readCpuMs(o.serverPid);
      t0 = performance.now();
    }
    for (const kind of KINDS) {
      if (performance.now() > deadline || conn.closed) break outer;
      const spec = specFor(kind);
      let result: { page: Page; ms: number };
      try {
        result = await ask(spec);
      } catch (err) {
        errors.add(err);
        if (conn.closed) break outer;
        continue;
      }
      const problem = checkPage(result.page, spec, o.page);
      if (!timed) {
        if (problem) errors.add(new Error(`warm-up ${kind} query: ${problem}`));
        continue;
      }
      const s = stats.get(kind) as KindStats;
      if (problem) {
        s.mismatches++;
        if (mismatchSamples.length < 5) mismatchSamples.push(`${kind}: ${problem}`);
        continue;
      }
      const n = result.page.items.length;
      s.latencies.push(result.ms);
      s.pages++;
      s.results += n;
      s.minResults = Math.min(s.minResults, n);
      s.maxResults = Math.max(s.maxResults, n);
      if (result.page.complete) s.completePages++;
      if (result.page.count !== undefined) s.lastCount = result.page.count;
      timedQueries++;
    }
    progress(`mam: ${i + 1}/${total} rounds`);
  }
  const elapsedMs = performance.now() - t0;
  const serverCpuMs =
    serverCpu0 === undefined || o.serverPid === undefined ? undefined : readCpuMs(o.serverPid) - serverCpu0;
  conn.close();

  const kinds: Record<string, unknown> = {};
  let mismatches = 0;
  let allPages = true;
  for (const [kind, s] of stats) {
    mismatches += s.mismatches;
    if (s.pages !== o.count || s.results === 0) allPages = false;
    kinds[kind] = {
      pages: s.pages,
      mismatches: s.mismatches,
      latencyMs: summarize(s.latencies.view()),
      resultsPerPage:
        s.pages === 0
          ? null
          : { min: s.minResults, mean: round2(s.results / s.pages), max: s.maxResults, total: s.results },
      completePages: s.completePages,
      lastCount: s.lastCount,
    };
  }
  return {
    ok: errors.count === 0 && mismatches === 0 && strays === 0 && allPages,
    account: owner,
    page: o.page,
    queriesPerKind: o.count,
    warmupPerKind: o.warmup,
    archiveCount,
    archiveStart: new Date(spanStart).toISOString(),
    archiveEnd: new Date(spanEnd).toISOString(),
    rangeWindowMs: Math.round(windowMs),
    peers: peerList.length,
    withPeers: o.with !== undefined ? [o.with] : peerList.slice(0, 5),
    ...kinds,
    timedQueries,
    mismatches,
    mismatchSamples,
    strayResults: strays,
    errors: errors.count,
    errorSamples: errors.samples,
    elapsedMs: round2(elapsedMs),
    queriesPerSec: round2((timedQueries / elapsedMs) * 1000),
    clientCpuPct: cpuPercent(cpu, elapsedMs),
    serverCpuMsPerQuery: serverCpuMs === undefined || timedQueries === 0 ? null : round2(serverCpuMs / timedQueries),
  };
}
