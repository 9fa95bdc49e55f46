import type { LetheModule } from '../core/module.js';
import { consentModule } from '../privacy/consent/index.js';
import { consentPageModule } from '../privacy/consent/page.js';
import { policyPagesModule } from '../privacy/consent/policy-pages.js';
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
import { inviteModule } from './invite/index.js';
import { lastModule } from './last.js';
import { mamModule } from './mam/index.js';
import { messageModule } from './message.js';
import { offlineModule } from './offline.js';
import { pingModule } from './ping.js';
import { presenceModule } from './presence.js';
import { privacySummaryModule } from './privacy-summary.js';
import { privateModule } from './private.js';
import { registerModule } from './register.js';
import { registerWebModule } from './register-web.js';
import { rosterModule } from './roster/index.js';
import { selfEraseModule } from './self-erase.js';
import { selfExportModule } from './self-export.js';
import { smModule } from './sm.js';
import { stanzaIdModule } from './stanza-id.js';
import { timeModule } from './time.js';
import { tosModule } from './tos.js';
import { vcardModule } from './vcard.js';
import { versionModule } from './version.js';

/** Every protocol feature, in load order: a module comes after those whose tables or hooks it uses. */
export function defaultModules(): LetheModule[] {
  return [
    // First: its ledger records the consent other modules ask for (the archive's opt-in).
    consentModule,
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
    inviteModule,
    registerModule,
    stanzaIdModule,
    mamModule,
    smModule,
    csiModule,
    adhocModule,
    tosModule,
    privacySummaryModule,
    downloadsModule,
    restorePageModule,
    consentPageModule,
    policyPagesModule,
    registerWebModule,
    selfExportModule,
    selfEraseModule,
    // Last: its categories are erased first, and its sweeper needs every other category registered.
    erasureModule,
  ];
}
