import { ClientListener } from './c2s/listener.js';
import type { Config } from './core/config.js';
import { createLogger, type Logger } from './core/log.js';
import { Server } from './core/server.js';
import { defaultModules } from './modules/index.js';
import { ensureCertificate } from './transport/certs.js';
import { HttpListener } from './transport/http.js';

/** The composition root: opens storage, loads every module and attaches the transports. */
export interface RunningLethe {
  server: Server;
  /** `http` is null when `http.enabled` is off. */
  ports: { starttls: number; directTls: number | null; http: number | null };
  certPath: string;
  selfSigned: boolean;
  stop(): Promise<void>;
}

/** Opens the database and loads modules without listening: what CLI commands need. */
export async function openServer(config: Config, log: Logger = createLogger(config)): Promise<Server> {
  const server = Server.create(config, log);
  try {
    await server.open(defaultModules());
  } catch (err) {
    await server.keys.close().catch(() => {});
    await server.db.close().catch(() => {});
    throw err;
  }
  return server;
}

export async function startLethe(config: Config, log: Logger = createLogger(config)): Promise<RunningLethe> {
  const server = await openServer(config, log);
  const certificate = await ensureCertificate(config, log);
  const c2s = new ClientListener(server, certificate);
  const http = config.http.enabled ? new HttpListener({ routes: server.http, config, log, certificate }) : undefined;
  try {
    await c2s.start();
    await http?.start();
  } catch (err) {
    await http?.stop().catch(() => {});
    await c2s.stop().catch(() => {});
    await server.close();
    throw err;
  }
  await server.hooks.notify('server/started', { server });
  let stopping: Promise<void> | undefined;
  return {
    server,
    ports: { ...c2s.ports, http: http?.port ?? null },
    certPath: certificate.certPath,
    selfSigned: certificate.selfSigned,
    stop() {
      stopping ??= (async () => {
        await http?.stop();
        await c2s.stop();
        await server.close();
      })();
      return stopping;
    },
  };
}
