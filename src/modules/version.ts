import { readFileSync } from 'node:fs';
import { type } from 'node:os';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import { x } from '../xml/element.js';
import type { HostInfoEvent } from './disco.js';

/**
 * Software Version (XEP-0092), off by default: naming the software and its exact version tells an
 * attacker which known flaws to try. When `version.disclose` is off the feature is not advertised
 * and requests get `service-unavailable` from the router, as for any unsupported namespace.
 */

export const NS_VERSION = 'jabber:iq:version';

/** The package version, read from package.json at the repository root (three levels above dist/src/modules). */
function lethe(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export const versionModule: LetheModule = {
  name: 'version',
  load(server) {
    const config = server.config.version;
    if (!config.disclose) return;
    const answer = x('query', { xmlns: NS_VERSION }, x('name', {}, config.name), x('version', {}, lethe()));
    // The OS name only (e.g. "Linux"), never the kernel release.
    if (config.os) answer.append(x('os', {}, type()));
    server.hooks.on('disco-info/host', (e: HostInfoEvent) => {
      e.info.features.push(NS_VERSION);
    });
    server.hooks.on(`iq-get/host/${NS_VERSION}:query`, (e: StanzaEvent) => {
      server.router.reply(e.stanza, answer.clone());
      return true;
    });
  },
};
