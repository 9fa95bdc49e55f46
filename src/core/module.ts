import type { Migration } from '../storage/db.js';
import type { Server } from './server.js';

/**
 * A protocol feature. A module declares the tables it owns (migrations), registers its data
 * categories and hooks its events in `load`. It sees the server's services, never a socket.
 */
export interface LetheModule {
  name: string;
  /** XEP-0030 features this module makes true; disco advertises exactly these. */
  features?: string[];
  migrations?: Migration[];
  load(server: Server): void | Promise<void>;
  /** Called on shutdown, after listeners stop accepting. */
  unload?(server: Server): void | Promise<void>;
}
