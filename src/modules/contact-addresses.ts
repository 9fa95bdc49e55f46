import type { LetheModule } from '../core/module.js';
import { extensionForm, type HostInfoEvent } from './disco.js';

/**
 * Contact Addresses for XMPP Services (XEP-0157): the addresses configured under `contactAddresses`,
 * served as the `http://jabber.org/network/serverinfo` form in the server's disco#info.
 *
 * The data-protection contact has no registered field: XEP-0157 and the registry list abuse, admin,
 * feedback, sales, security, status and support only. XEP-0068 keeps unprefixed names in a
 * registered FORM_TYPE for registered fields, so it goes out as `x-privacy-addresses`.
 */

export const SERVERINFO = 'http://jabber.org/network/serverinfo';

const FIELDS = {
  abuse: 'abuse-addresses',
  admin: 'admin-addresses',
  feedback: 'feedback-addresses',
  sales: 'sales-addresses',
  security: 'security-addresses',
  status: 'status-addresses',
  support: 'support-addresses',
  privacy: 'x-privacy-addresses',
} as const;

export const contactAddressesModule: LetheModule = {
  name: 'contact-addresses',
  load(server) {
    const configured = server.config.contactAddresses;
    const fields = Object.entries(FIELDS)
      .map(([key, field]) => ({ var: field, type: 'list-multi', values: configured[key as keyof typeof FIELDS] }))
      .filter((f) => f.values.length > 0);
    if (fields.length === 0) return;
    const form = extensionForm(SERVERINFO, fields);
    server.hooks.on('disco-info/host', (e: HostInfoEvent) => {
      e.info.forms.push(form);
    });
  },
};
