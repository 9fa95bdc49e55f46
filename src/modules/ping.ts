import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { AccountInfoEvent } from './disco.js';

/**
 * XMPP Ping (XEP-0199): the server answers pings to itself and to the sender's own account, so a
 * client can check its connection. Pings to another user's bare JID are not answered on their
 * behalf (`service-unavailable` from the router); pings to a full JID are delivered to that client.
 */

export const NS_PING = 'urn:xmpp:ping';

export const pingModule: LetheModule = {
  name: 'ping',
  features: [NS_PING],
  load(server) {
    const pong = (e: StanzaEvent) => {
      server.router.reply(e.stanza);
      return true;
    };
    server.hooks.on(`iq-get/host/${NS_PING}:ping`, pong);
    server.hooks.on(`iq-get/self/${NS_PING}:ping`, pong);
    server.hooks.on('disco-info/account', (e: AccountInfoEvent) => {
      if (e.from.bareString() === e.account.bareString()) e.info.features.push(NS_PING);
    });
  },
};
