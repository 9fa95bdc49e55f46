import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import { privacyCapabilities } from '../privacy/capabilities.js';
import type { PrivacyRegistry } from '../privacy/registry.js';
import type { XmlElement } from '../xml/element.js';
import { extensionForm, type HostInfoEvent } from './disco.js';

/**
 * Data policy (XEP-0504): the `urn:xmpp:data-policy:0` form in the server's disco#info, so that a
 * client can show its user how the server handles their data before they rely on it. Every value is
 * derived from the configuration, the privacy registry and what the code offers
 * (src/privacy/capabilities.ts); nothing here is typed in a second time. Fields the server cannot
 * answer truthfully are left out (XEP-0504 makes every field optional): `data_transmission` is about
 * relaying to other networks, which Lethe does not do, and `tos` waits for versioned terms.
 */

export const NS_DATA_POLICY = 'urn:xmpp:data-policy:0';

export interface PolicyField {
  var: string;
  type: 'boolean' | 'list-multi' | 'list-single' | 'text-multi' | 'text-single';
  values: string[];
}

const HOUR = 3600;

/**
 * `data_retention`: the longest time what users send (messages, files) is kept, in hours. A content
 * store without a maximum age keeps it until someone deletes it: `infinite`.
 */
export function contentRetention(registry: PrivacyRegistry): string {
  const content = registry.all().filter((c) => c.content);
  if (content.some((c) => c.retention.maxAgeSeconds === undefined)) return 'infinite';
  const longest = Math.max(0, ...content.map((c) => c.retention.maxAgeSeconds ?? 0));
  return String(Math.ceil(longest / HOUR));
}

const ipInLogs = {
  none: 'are not logged',
  truncated: 'are logged truncated (IPv4 to the /24, IPv6 to the /48)',
  full: 'are logged in full',
} as const;

/** The form's fields for this configuration, in the order XEP-0504 lists them. */
export function dataPolicyFields(server: Server): PolicyField[] {
  const { config, privacy } = server;
  const can = privacyCapabilities(server);
  const bool = (b: boolean) => [b ? 'true' : 'false'];
  const { backupFrequencyHours, backupRetentionHours } = config.dataPolicy;
  const fields: PolicyField[] = [
    // PLAIN hands the password to the server; SCRAM proves knowledge of it without sending it.
    { var: 'auth_data', type: 'list-single', values: [config.auth.mechanisms.includes('PLAIN') ? 'plain' : 'hidden'] },
    { var: 'data_retention', type: 'text-single', values: [contentRetention(privacy)] },
    { var: 'data_deletion', type: 'boolean', values: bool(can.selfServiceErasure) },
    { var: 'encryption_at_rest', type: 'boolean', values: bool(can.encryptionAtRest) },
    { var: 'data_export', type: 'boolean', values: bool(can.selfServiceExport) },
    // Whoever runs the server can read its database; nobody else gets access.
    { var: 'access_policy', type: 'list-multi', values: ['admins'] },
    { var: 'full_erasure', type: 'boolean', values: bool(can.selfServiceErasure) },
  ];
  if (backupFrequencyHours !== null)
    fields.push({ var: 'backup_frequency', type: 'text-single', values: [String(backupFrequencyHours)] });
  const backupRetention = backupFrequencyHours === 0 ? 0 : (backupRetentionHours ?? 'unknown');
  fields.push({ var: 'backup_retention', type: 'text-single', values: [String(backupRetention)] });
  const extra = [
    config.register.enabled
      ? 'Registration is open: anyone can create an account here.'
      : 'Registration is closed: accounts are created by the operator.',
    ...privacy
      .all()
      .filter((c) => c.content)
      .map((c) => `${c.purpose}: ${c.retention.description}.`),
    `IP addresses are never stored; they ${ipInLogs[config.log.ip]}.`,
  ];
  fields.push({ var: 'extra_info', type: 'text-multi', values: extra });
  return fields;
}

export const dataPolicyModule: LetheModule = {
  name: 'data-policy',
  load(server) {
    // Built on first use, when every module has registered its data categories; the configuration
    // does not change while the server runs.
    let form: XmlElement | undefined;
    server.hooks.on('disco-info/host', (e: HostInfoEvent) => {
      form ??= extensionForm(NS_DATA_POLICY, dataPolicyFields(server));
      e.info.forms.push(form);
    });
  },
};
