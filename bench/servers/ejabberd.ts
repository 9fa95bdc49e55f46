// ejabberd (Debian package) in a directory of its own, with its own Erlang
// node and ctl config. It runs as the `ejabberd` user, so the directory is
// handed over to that user.

import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { scramCredentials } from '../loadgen/scram.js';
import {
  type BenchServer,
  type BenchSetup,
  commandExists,
  debVersion,
  processAlive,
  render,
  run,
  SCRAM_ITERATIONS,
  ServerUnavailable,
  terminate,
  waitForStream,
} from './common.js';

export class EjabberdServer implements BenchServer {
  readonly name = 'ejabberd';
  private readonly node = `ejabberd_bench_${randomBytes(3).toString('hex')}@localhost`;
  private domain = '';
  private pid: number | undefined;

  constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly directTlsPort: number,
  ) {}

  /** Runs ejabberdctl against this server's own node and directories (also used by test/import-real.test.ts). */
  ctl(args: string[], timeoutMs = 90_000) {
    const d = this.dir;
    const ctlArgs = [
      '--ctl-config',
      `${d}/ejabberdctl.cfg`,
      '--config-dir',
      d,
      '--logs',
      `${d}/log`,
      '--spool',
      `${d}/spool`,
      ...args,
    ];
    if (process.getuid?.() !== 0) return run('ejabberdctl', ctlArgs, { timeoutMs, cwd: d });
    // As root, ejabberdctl would `su ejabberd`, and PAM resets the open-file limit to 1024:
    // too few for 10 000 connections. Switching user ourselves keeps the limit we were given.
    return run('setpriv', ['--reuid=ejabberd', '--regid=ejabberd', '--init-groups', 'ejabberdctl', ...ctlArgs], {
      timeoutMs,
      cwd: d,
      env: { ...process.env, HOME: '/var/lib/ejabberd', USER: 'ejabberd', LOGNAME: 'ejabberd' },
    });
  }

  async prepare(setup: BenchSetup): Promise<number> {
    if (!(await commandExists('ejabberdctl')))
      throw new ServerUnavailable('ejabberd is not installed (apt-get install -y ejabberd)');
    this.domain = setup.domain;
    const d = this.dir;
    for (const sub of ['log', 'spool', 'modules.d']) mkdirSync(`${d}/${sub}`, { recursive: true });
    copyFileSync('/etc/ejabberd/inetrc', `${d}/inetrc`); // else ejabberdctl complains every 2 s
    writeFileSync(`${d}/server.pem`, readFileSync(setup.certFile, 'utf8') + readFileSync(setup.keyFile, 'utf8'));
    writeFileSync(
      `${d}/ejabberd.yml`,
      render('ejabberd.yml.tmpl', {
        DIR: d,
        DOMAIN: setup.domain,
        C2S_PORT: this.port,
        DIRECT_TLS_PORT: this.directTlsPort,
      }),
    );
    writeFileSync(`${d}/ejabberdctl.cfg`, render('ejabberdctl.cfg.tmpl', { DIR: d, NODE: this.node }));

    // Accounts: one XEP-0227 import instead of one ejabberdctl call (~0.25 s) per account.
    // ejabberd's PIE export base64-encodes its base64 SCRAM values, and import expects the same.
    const t0 = performance.now();
    const salt = randomBytes(16);
    const { storedKey, serverKey } = await scramCredentials(setup.password, salt, SCRAM_ITERATIONS);
    const b64twice = (b: Buffer) => Buffer.from(b.toString('base64')).toString('base64');
    const creds =
      `<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>${SCRAM_ITERATIONS}</iter-count>` +
      `<salt>${b64twice(salt)}</salt><server-key>${b64twice(serverKey)}</server-key><stored-key>${b64twice(storedKey)}</stored-key></scram-credentials>`;
    const users: string[] = [];
    for (let i = 1; i <= setup.accounts; i++) users.push(`<user name='${setup.userPrefix}${i}'>${creds}</user>`);
    writeFileSync(
      `${d}/accounts.xml`,
      `<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='urn:xmpp:pie:0'><host jid='${setup.domain}'>${users.join('')}</host></server-data>`,
    );
    const genS = (performance.now() - t0) / 1000;
    await run('chown', ['-R', 'ejabberd:ejabberd', d]);

    await this.start();
    try {
      const t1 = performance.now();
      const imp = await this.ctl(['import_piefxis', `${d}/accounts.xml`], 600_000);
      const importS = (performance.now() - t1) / 1000;
      if (imp.code !== 0) throw new ServerUnavailable(`ejabberd import_piefxis failed: ${imp.stdout}${imp.stderr}`);
      const list = await this.ctl(['registered_users', setup.domain]);
      const n = list.stdout.split('\n').filter((l) => l.startsWith(setup.userPrefix)).length;
      if (n < setup.accounts)
        throw new ServerUnavailable(`ejabberd has ${n} of ${setup.accounts} accounts after import`);
      return genS + importS;
    } finally {
      await this.stop();
    }
  }

  async start(): Promise<number> {
    const pidFile = `${this.dir}/ejabberd.pid`;
    rmSync(pidFile, { force: true }); // a stale one would name the wrong process
    const st = await this.ctl(['start']);
    if (st.code !== 0) throw new ServerUnavailable(`ejabberdctl start failed: ${st.stdout}${st.stderr}`);
    const ok = await this.ctl(['started']);
    if (ok.code !== 0 || !existsSync(pidFile)) {
      await this.stop();
      throw new ServerUnavailable(`ejabberd did not start (see ${this.dir}/log/ejabberd.log)`);
    }
    this.pid = Number(readFileSync(pidFile, 'utf8').trim());
    try {
      await waitForStream(this.port, this.domain, 30_000, () => processAlive(this.pid as number));
    } catch (err) {
      await this.stop();
      throw new ServerUnavailable(`ejabberd c2s not answering: ${(err as Error).message}`);
    }
    return this.pid;
  }

  async stop(): Promise<void> {
    await this.ctl(['stop'], 30_000);
    await this.ctl(['stopped'], 60_000);
    // Our own node only: fall back to its PID if the ctl path did not bring it down.
    if (this.pid !== undefined && processAlive(this.pid)) await terminate(this.pid);
    this.pid = undefined;
  }

  async version(): Promise<string> {
    return `ejabberd ${await debVersion('ejabberd')}`;
  }
}
