import type { LetheModule } from '../core/module.js';
import { downloadsModule } from '../privacy/downloads.js';
import { erasureModule } from '../privacy/erasure.js';
import { restorePageModule } from '../privacy/restore-page.js';
import { adhocModule } from './adhoc.js';
import { blockingModule } from './blocking.js';
import { capsModule } from './caps.js';
import { carbonsModule } from './carbons.js';
import { contactAddressesModule } from './contact-addresses.js';
import { csiModule } from './csi.js';
import { dataPolicyModule } from './data-policy.js';
import { discoModule } from './disco.js';
import { lastModule } from './last.js';
import { mamModule } from './mam/index.js';
import { messageModule } from './message.js';
import { offlineModule } from './offline.js';
import { pingModule } from './ping.js';
import { presenceModule } from './presence.js';
import { privacySummaryModule } from './privacy-summary.js';
import { privateModule } from './private.js';
import { registerModule } from './register.js';
import { rosterModule } from './roster/index.js';
import { selfEraseModule } from './self-erase.js';
import { selfExportModule } from './self-export.js';
import { smModule } from './sm.js';
import { stanzaIdModule } from './stanza-id.js';
import { timeModule } from './time.js';
import { vcardModule } from './vcard.js';
import { versionModule } from './version.js';

/** Every protocol feature, in load order: a module comes after those whose tables or hooks it uses. */
export function defaultModules(): LetheModule[] {
  return [
    rosterModule,
    presenceModule,
    messageModule,
    offlineModule,
    carbonsModule,
    blockingModule,
    vcardModule,
    privateModule,
    discoModule,
    capsModule,
    pingModule,
    timeModule,
    versionModule,
    lastModule,
    contactAddressesModule,
    dataPolicyModule,
    registerModule,
    stanzaIdModule,
    mamModule,
    smModule,
    csiModule,
    adhocModule,
    privacySummaryModule,
    downloadsModule,
    restorePageModule,
    selfExportModule,
    selfEraseModule,
    // Last: its categories are erased first, and its sweeper needs every other category registered.
    erasureModule,
  ];
}
