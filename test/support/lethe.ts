import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, type Config, type ConfigInput } from '../../src/core/config.js';
import { createLogger } from '../../src/core/log.js';
import { type RunningLethe, startLethe } from '../../src/lethe.js';
import { Jid } from '../../src/xml/jid.js';

// The test server's certificate is self-signed; test clients accept it, as the clients do.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
// Node warns once about the setting above; that warning is expected in tests.
process.removeAllListeners('warning');

export const DOMAIN = 'lethe.test';

export interface TestServer {
  running: RunningLethe;
  config: Config;
  domain: string;
  /** STARTTLS port. */
  port: number;
  directTlsPort: number;
  dataDir: string;
  addUser(name: string, password?: string): Promise<Jid>;
  stop(): Promise<void>;
}

export const PASSWORD = 'correct horse battery staple';

/** Starts Lethe in this process on ephemeral loopback ports with a fresh data directory. */
export async function startTestServer(overrides: ConfigInput = {}, dataDir?: string): Promise<TestServer> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'lethe-test-'));
  const config = buildConfig(
    {
      domain: DOMAIN,
      dataDir: dir,
      ...overrides,
      c2s: { host: '127.0.0.1', port: 0, directTlsPort: 0, ...overrides.c2s },
      http: { host: '127.0.0.1', port: 0, ...overrides.http },
      log: { level: (process.env.LETHE_TEST_LOG as 'debug' | undefined) ?? 'silent', ...overrides.log },
      auth: { scramIterations: 4096, ...overrides.auth },
    },
    dir,
  );
  const running = await startLethe(config, createLogger(config));
  return {
    running,
    config,
    domain: config.domains[0] as string,
    port: running.ports.starttls,
    directTlsPort: running.ports.directTls as number,
    dataDir: dir,
    async addUser(name, password = PASSWORD) {
      const jid = new Jid(name, config.domains[0] as string);
      await running.server.accounts.create(jid, password);
      return jid;
    },
    async stop() {
      await running.stop();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
