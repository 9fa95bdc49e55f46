import type { Server } from './server.js';

/**
 * A service modules share, one per server (tests run several in one process), made on first use:
 * `export const invitations = perServer((server) => new Invitations(server));`.
 */
export function perServer<T>(create: (server: Server) => T): (server: Server) => T {
  const made = new WeakMap<Server, T>();
  return (server) => {
    let service = made.get(server);
    if (service === undefined) {
      service = create(server);
      made.set(server, service);
    }
    return service;
  };
}
