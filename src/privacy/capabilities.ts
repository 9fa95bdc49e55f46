import type { Server } from '../core/server.js';
import { adhocCommands } from '../modules/adhoc.js';
import { SELF_EXPORT_NODE } from '../modules/self-export.js';

/**
 * What the privacy features of this build actually offer, as the data-policy form (XEP-0504) and the
 * operator's reports announce it. A feature's author turns its answer on here when the code does it
 * (the keystore for encryption at rest, self-service export), so that no announcement runs ahead of
 * the code.
 */
export interface PrivacyCapabilities {
  /** Every store of what people send (categories with `content`) is sealed with per-user keys. */
  encryptionAtRest: boolean;
  /** Users can download all their data themselves: the ad-hoc command "Export my data" is loaded (it needs `http.enabled`). */
  selfServiceExport: boolean;
  /** The operator can export one user's data from the command line (`lethe user export`). */
  operatorExport: boolean;
  /** Users can delete their account, and with it everything in the registry, themselves (XEP-0077 `<remove/>`). */
  selfServiceErasure: boolean;
  /** Stanzas go to and come from other XMPP servers (server-to-server). Not built yet: remote addresses are refused. */
  federation: boolean;
}

export function privacyCapabilities(server: Server): PrivacyCapabilities {
  const content = server.privacy.all().filter((c) => c.content);
  return {
    encryptionAtRest: content.length > 0 && content.every((c) => c.encryptedAtRest),
    selfServiceExport: adhocCommands(server).get(SELF_EXPORT_NODE) !== undefined,
    operatorExport: true,
    selfServiceErasure: server.config.register.allowRemove,
    federation: false,
  };
}
