import { parseArgs } from 'node:util';
import { type LoginOptions, type Mech, type TlsMode, XmppConn } from './connection.js';
import { assertLoopback, parseSourceAddrs } from './util.js';

export const SCENARIOS = ['logins', 'idle', 'throughput', 'mam'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface Options {
  scenario: Scenario;
  host: string;
  port: number;
  domain: string;
  userPrefix: string;
  password: string;
  tls: TlsMode;
  mech: Mech;
  /** logins: accounts logged in; idle: connections held; mam: timed queries of each kind. */
  count: number;
  /** logins: untimed warm-up logins before the timed pass; mam: untimed queries of each kind first. */
  warmup: number;
  concurrency: number;
  pairs: number;
  window: number;
  /** throughput: measured seconds; idle: seconds to hold all connections before measuring. */
  durationS: number;
  /** throughput: unmeasured seconds before the measured window. */
  warmupS: number;
  /** throughput: characters of padding in each message body. */
  payload: number;
  serverPid: number | undefined;
  sourceAddrs: (string | undefined)[];
  /** Hard limit for the whole scenario. */
  timeoutS: number;
  loginTimeoutMs: number;
  label: string | undefined;
  /** mam: number of the account (prefix + N) whose archive is queried. */
  account: number;
  /** mam: RSM max of every query. */
  page: number;
  /** mam: peer of the `with` queries; discovered from the latest page when absent. */
  with: string | undefined;
  /** mam: the archive's span (ms since the epoch) for the date-range windows; discovered when absent. */
  rangeStart: number | undefined;
  rangeEnd: number | undefined;
  /** mam: length of each date-range window (ms); a thirtieth of the span when absent. */
  rangeWindowMs: number | undefined;
  /** mam: seed of the random windows and peers, so runs are repeatable. */
  seed: number;
}

export const USAGE = `usage: node dist/bench/loadgen/main.js <${SCENARIOS.join('|')}> --port N --domain D --password P [options]
  --host H              server address, loopback only (127.0.0.1)
  --user-prefix P       accounts are P1..PN (bench)
  --tls MODE            starttls | none | direct (none)
  --mech M              SCRAM-SHA-1 | PLAIN (SCRAM-SHA-1)
  --count N             logins: accounts to log in (100); idle: connections to hold (1000);
                        mam: timed queries of each kind (200)
  --warmup N            logins: untimed warm-up logins first (= count); mam: untimed queries per kind (20)
  --concurrency C       logins in flight at once (20; idle 200)
  --pairs P             throughput: sender/receiver pairs (50)
  --window W            throughput: max unacknowledged messages per pair (10)
  --duration S          throughput: measured seconds (10); idle: hold seconds before measuring (5)
  --warmup-time S       throughput: unmeasured seconds first (2)
  --payload N           throughput: padding characters per body (64)
  --server-pid PID      server process: RSS (idle) and CPU time (logins, throughput) from /proc
  --source-addrs R      local addresses to spread over, e.g. 127.0.0.2-127.0.0.9
  --timeout S           hard limit for the whole scenario (300)
  --login-timeout S     limit for one login (30)
  --label L             copied into the JSON line
  --account N           mam: query the archive of account <prefix>N (1)
  --page N              mam: RSM max per query (50)
  --with JID            mam: peer of the with-filtered queries (default: peers seen in the latest pages)
  --range-start T       mam: start of the archive span for date-range windows, ISO 8601 (default: discovered)
  --range-end T         mam: end of that span (default: discovered)
  --range-window S      mam: seconds per date-range window (a thirtieth of the span)
  --seed N              mam: seed of the random windows (1)`;

export function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      domain: { type: 'string' },
      'user-prefix': { type: 'string', default: 'bench' },
      password: { type: 'string' },
      tls: { type: 'string', default: 'none' },
      mech: { type: 'string', default: 'SCRAM-SHA-1' },
      count: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      pairs: { type: 'string', default: '50' },
      window: { type: 'string', default: '10' },
      duration: { type: 'string' },
      'warmup-time': { type: 'string', default: '2' },
      payload: { type: 'string', default: '64' },
      'server-pid': { type: 'string' },
      'source-addrs': { type: 'string' },
      timeout: { type: 'string', default: '300' },
      'login-timeout': { type: 'string', default: '30' },
      label: { type: 'string' },
      account: { type: 'string', default: '1' },
      page: { type: 'string', default: '50' },
      with: { type: 'string' },
      'range-start': { type: 'string' },
      'range-end': { type: 'string' },
      'range-window': { type: 'string' },
      seed: { type: 'string', default: '1' },
    },
  });
  const scenario = positionals[0];
  if (positionals.length !== 1 || !SCENARIOS.includes(scenario as Scenario)) {
    throw new Error(`expected exactly one scenario (${SCENARIOS.join(', ')})`);
  }
  const sc = scenario as Scenario;
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const num = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}`);
    return n;
  };
  if (!values.port || !values.domain || values.password === undefined) {
    throw new Error('--port, --domain and --password are required');
  }
  const host = values.host as string;
  assertLoopback(host);
  const tlsMode = values.tls as string;
  if (tlsMode !== 'none' && tlsMode !== 'starttls' && tlsMode !== 'direct')
    throw new Error('--tls must be starttls, none or direct');
  const mech = values.mech as string;
  if (mech !== 'SCRAM-SHA-1' && mech !== 'PLAIN') throw new Error('--mech must be SCRAM-SHA-1 or PLAIN');
  const count = int('count', values.count ?? (sc === 'idle' ? '1000' : sc === 'mam' ? '200' : '100'), 1);
  const date = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const ms = Date.parse(v);
    if (Number.isNaN(ms)) throw new Error(`--${name} must be an ISO 8601 date-time`);
    return ms;
  };
  return {
    scenario: sc,
    host,
    port: int('port', values.port, 1),
    domain: values.domain,
    userPrefix: values['user-prefix'] as string,
    password: values.password,
    tls: tlsMode,
    mech,
    count,
    warmup: int('warmup', values.warmup ?? String(sc === 'mam' ? Math.min(20, count) : count), 0),
    concurrency: int('concurrency', values.concurrency ?? (sc === 'idle' ? '200' : '20'), 1),
    pairs: int('pairs', values.pairs, 1),
    window: int('window', values.window, 1),
    durationS: num('duration', values.duration ?? (sc === 'idle' ? '5' : '10'), 0),
    warmupS: num('warmup-time', values['warmup-time'], 0),
    payload: int('payload', values.payload, 0),
    serverPid: values['server-pid'] === undefined ? undefined : int('server-pid', values['server-pid'], 1),
    sourceAddrs: parseSourceAddrs(values['source-addrs']),
    timeoutS: num('timeout', values.timeout, 1),
    loginTimeoutMs: num('login-timeout', values['login-timeout'], 0.1) * 1000,
    label: values.label,
    account: int('account', values.account, 1),
    page: int('page', values.page, 1),
    with: values.with,
    rangeStart: date('range-start', values['range-start']),
    rangeEnd: date('range-end', values['range-end']),
    rangeWindowMs:
      values['range-window'] === undefined ? undefined : num('range-window', values['range-window'], 0.001) * 1000,
    seed: int('seed', values.seed, 0),
  };
}

/** Logs in account number `n` (1-based) on a fresh connection. */
export async function loginAccount(o: Options, n: number, slot: number): Promise<XmppConn> {
  const conn = new XmppConn();
  const login: LoginOptions = {
    host: o.host,
    port: o.port,
    domain: o.domain,
    username: `${o.userPrefix}${n}`,
    password: o.password,
    resource: `lg${n}`,
    tls: o.tls,
    mech: o.mech,
    localAddress: o.sourceAddrs[slot % o.sourceAddrs.length],
    timeoutMs: o.loginTimeoutMs,
  };
  try {
    await conn.login(login);
  } catch (err) {
    conn.close();
    throw err;
  }
  return conn;
}
