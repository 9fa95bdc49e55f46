import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import { x } from '../xml/element.js';

/**
 * Entity Time (XEP-0202) for the server. Always UTC with offset +00:00: the server's own time zone
 * says where it runs, which is nobody's business, and UTC is what clients need to check clocks.
 */

export const NS_TIME = 'urn:xmpp:time';

export const timeModule: LetheModule = {
  name: 'time',
  features: [NS_TIME],
  load(server) {
    server.hooks.on(`iq-get/host/${NS_TIME}:time`, (e: StanzaEvent) => {
      // XEP-0082 DateTime, in UTC and to the second.
      const utc = `${new Date().toISOString().slice(0, 19)}Z`;
      server.router.reply(e.stanza, x('time', { xmlns: NS_TIME }, x('tzo', {}, '+00:00'), x('utc', {}, utc)));
      return true;
    });
  },
};
