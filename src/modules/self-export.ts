import { rm } from 'node:fs/promises';
import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import { downloads } from '../privacy/downloads.js';
import { exportUser } from '../privacy/export.js';
import { NS_DATA } from '../xml/dataform.js';
import { x } from '../xml/element.js';
import { adhocCommands } from './adhoc.js';

/**
 * "Export my data": an ad-hoc command (XEP-0050) that builds the user's export archive (the same as
 * `lethe user export`, src/privacy/export.ts) and answers with a download link that only they can use,
 * once, within a day (src/privacy/downloads.ts). GDPR art. 15 and 20, self-service.
 */

export const SELF_EXPORT_NODE = 'urn:lethe:privacy:export';

export const selfExportModule: LetheModule = {
  name: 'self-export',
  load(server) {
    // The link is the only way the archive reaches the user.
    if (!server.config.http.enabled) return;
    const service = downloads(server);
    // One export at a time per user: each one reads every store and writes a file.
    const running = new Set<string>();
    adhocCommands(server).register({
      node: SELF_EXPORT_NODE,
      name: 'Export my data',
      access: 'user',
      async execute({ requester }) {
        const user = requester.bare;
        const key = user.bareString();
        if (running.has(key))
          throw new StanzaError(
            'resource-constraint',
            'your export is being prepared already; wait for its link',
            'wait',
          );
        running.add(key);
        const file = await service.newFile();
        try {
          // No reason: the archive's summary then says the user asked for it; exportUser records it in the audit log.
          await exportUser(server, user, { out: file, actor: key });
          // The newest link replaces older ones, so repeated exports do not pile up on disk.
          await service.withdraw(user);
          const date = new Date().toISOString().slice(0, 10);
          const link = service.offer(user, file, {
            filename: `${user.domain}-export-${date}.zip`,
            contentType: 'application/zip',
          });
          const expires = link.expiresAt.toISOString();
          const form = x('x', { xmlns: NS_DATA, type: 'result' });
          form.c('title').t('Your data export');
          form.c('field', { var: 'url', type: 'text-single', label: 'Download link' }).c('value').t(link.url);
          form.c('field', { var: 'expires', type: 'text-single', label: 'Valid until' }).c('value').t(expires);
          return {
            notes: [
              {
                type: 'info',
                text:
                  `Your data is ready: ${link.url} (valid until ${expires}). ` +
                  `Open it in a browser and log in as ${key} with your password. The link works for one ` +
                  'browser session only and replaces any earlier link; the file is deleted when it expires.',
              },
            ],
            form,
          };
        } catch (err) {
          await rm(file, { force: true });
          throw err;
        } finally {
          running.delete(key);
        }
      },
    });
  },
};
