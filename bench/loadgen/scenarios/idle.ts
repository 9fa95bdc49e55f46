// idle: hold N authenticated connections; server RSS before and after.

import type { XmppConn } from '../connection.js';
import { loginAccount, type Options } from '../options.js';
import { ErrorLog, progress, readRss, round2, runPool, sleep } from '../util.js';

export async function idle(o: Options, deadline: number): Promise<Record<string, unknown>> {
  const before = o.serverPid === undefined ? undefined : readRss(o.serverPid);
  const conns: XmppConn[] = [];
  const loginErrors = new ErrorLog();
  const drops = new ErrorLog();
  const t0 = performance.now();
  await runPool(o.count, o.concurrency, deadline, async (k) => {
    try {
      const conn = await loginAccount(o, k + 1, k);
      conn.onStanza = () => {}; // idle clients ignore whatever the server pushes
      conn.onFail = (err) => drops.add(err);
      conns.push(conn);
    } catch (err) {
      loginErrors.add(err);
    }
    progress(`idle: ${conns.length}/${o.count} connected, ${loginErrors.count} failed`);
  });
  const connectMs = performance.now() - t0;
  progress(`idle: ${conns.length} connected in ${Math.round(connectMs)} ms; holding ${o.durationS} s`, true);

  await sleep(Math.max(0, Math.min(o.durationS * 1000, deadline - performance.now())));
  const after = o.serverPid === undefined ? undefined : readRss(o.serverPid);

  // Every held connection must still answer, otherwise it is not "held".
  let alive = 0;
  const pingErrors = new ErrorLog();
  await runPool(conns.length, 1000, deadline + 30_000, async (k) => {
    try {
      await (conns[k] as XmppConn).ping(30_000);
      alive++;
    } catch (err) {
      pingErrors.add(err);
    }
  });
  for (const c of conns) c.close();

  const errors = loginErrors.count + (conns.length - alive);
  const kibPerConn = before && after && alive > 0 ? round2((after.rssKiB - before.rssKiB) / alive) : null;
  return {
    ok: errors === 0 && alive === o.count,
    count: o.count,
    connected: conns.length,
    alive,
    errors,
    errorSamples: [...loginErrors.samples, ...drops.samples, ...pingErrors.samples].slice(0, 5),
    connectMs: round2(connectMs),
    connectsPerSec: round2((conns.length / connectMs) * 1000),
    holdS: o.durationS,
    sourceAddrs: o.sourceAddrs.filter((a) => a !== undefined).length || 1,
    serverRssBeforeKiB: before?.rssKiB ?? null,
    serverRssAfterKiB: after?.rssKiB ?? null,
    serverHwmAfterKiB: after?.hwmKiB ?? null,
    kibPerConn,
    tlsProtocol: conns[0]?.tlsProtocol ?? null,
    tlsCipher: conns[0]?.tlsCipher ?? null,
    clientRssKiB: Math.round(process.memoryUsage().rss / 1024),
  };
}
