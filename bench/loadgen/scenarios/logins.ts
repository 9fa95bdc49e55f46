// logins: N accounts connect, authenticate, bind, send presence; each login
// counts only once the server has answered an iq sent after the presence.

import type { XmppConn } from '../connection.js';
import { loginAccount, type Options } from '../options.js';
import { cpuPercent, ErrorLog, progress, readCpuMs, round2, runPool, Samples, summarize } from '../util.js';

export async function logins(o: Options, deadline: number): Promise<Record<string, unknown>> {
  // Untimed warm-up: fills the SCRAM key cache (see scram.ts) and warms both JITs.
  const warmupStart = performance.now();
  const warmupErrors = new ErrorLog();
  await runPool(Math.min(o.warmup, o.count), o.concurrency, deadline, async (k) => {
    try {
      (await loginAccount(o, k + 1, k)).close();
    } catch (err) {
      warmupErrors.add(err);
    }
    progress(`warm-up: ${k + 1}/${o.warmup}`);
  });
  const warmupMs = performance.now() - warmupStart;

  const latencies = new Samples();
  const errors = new ErrorLog();
  let ok = 0;
  let last: XmppConn | undefined;
  const cpu = process.cpuUsage();
  const serverCpu0 = o.serverPid === undefined ? undefined : readCpuMs(o.serverPid);
  const t0 = performance.now();
  const attempted = await runPool(o.count, o.concurrency, deadline, async (k) => {
    const t = performance.now();
    try {
      const conn = await loginAccount(o, k + 1, k);
      latencies.push(performance.now() - t);
      ok++;
      last = conn;
      conn.close();
    } catch (err) {
      errors.add(err);
    }
    progress(`logins: ${ok}/${o.count}, errors ${errors.count}`);
  });
  const elapsedMs = performance.now() - t0;
  const serverCpuMs =
    serverCpu0 === undefined || o.serverPid === undefined ? undefined : readCpuMs(o.serverPid) - serverCpu0;

  return {
    ok: ok === o.count && errors.count === 0,
    count: o.count,
    attempted,
    succeeded: ok,
    errors: errors.count,
    errorSamples: errors.samples,
    warmupLogins: Math.min(o.warmup, o.count),
    warmupErrors: warmupErrors.count,
    warmupMs: round2(warmupMs),
    concurrency: o.concurrency,
    elapsedMs: round2(elapsedMs),
    loginsPerSec: round2((ok / elapsedMs) * 1000),
    latencyMs: summarize(latencies.view()),
    tlsProtocol: last?.tlsProtocol ?? null,
    tlsCipher: last?.tlsCipher ?? null,
    scramIterations: last?.scramIterations ?? null,
    clientCpuPct: cpuPercent(cpu, elapsedMs),
    serverCpuPct: serverCpuMs === undefined ? null : round2((serverCpuMs / elapsedMs) * 100),
    serverCpuMsPerLogin: serverCpuMs === undefined || ok === 0 ? null : round2(serverCpuMs / ok),
  };
}
