import type { LetheModule } from '../core/module.js';
import { requestErasure, restorePageUrl } from '../privacy/erasure.js';
import { buildForm } from '../xml/dataform.js';
import { adhocCommands } from './adhoc.js';

/**
 * "Delete my account": an ad-hoc command (XEP-0050) for the erasure XEP-0077 `<remove/>` also
 * requests (src/privacy/erasure.ts). The form lists what will go, per data category, and asks for
 * the password again and an explicit confirmation; the request is made only after the completion has
 * been sent, since it locks the account and ends the requester's session.
 */

export const SELF_ERASE_NODE = 'urn:lethe:privacy:delete-account';

const DAY_MS = 86_400_000;

export const selfEraseModule: LetheModule = {
  name: 'self-erase',
  load(server) {
    if (!server.config.register.allowRemove) return;
    adhocCommands(server).register({
      node: SELF_ERASE_NODE,
      name: 'Delete my account',
      access: 'user',
      stages: [
        {
          async form({ requester }) {
            const { graceDays } = server.config.erasure;
            const kept = (await server.privacy.countAll(requester.bare)).filter((c) => c.count > 0);
            const list = kept.map(({ category, count }) => `- ${category.id} (${count}): ${category.description}`);
            const when =
              graceDays > 0
                ? `The account is locked at once and erased after ${graceDays} days; until then you can cancel on the web page you will be given, or ask the operator.`
                : 'The account is erased at once; this cannot be undone.';
            return buildForm(
              'form',
              [
                { var: 'password', type: 'text-private', label: 'Your password', required: true },
                { var: 'confirm', type: 'boolean', label: 'Yes, delete my account and all its data', required: true },
              ],
              {
                title: 'Delete my account',
                instructions: [when, 'What will be deleted:', ...list].join('\n'),
              },
            );
          },
          async check(values, { requester }) {
            const confirmed = ['1', 'true'].includes(values.get('confirm')?.[0] ?? '');
            if (!confirmed) return 'tick the confirmation to delete the account';
            const password = values.get('password')?.[0] ?? '';
            if (!(await server.accounts.checkPassword(requester.bare, password))) return 'wrong password';
            return undefined;
          },
        },
      ],
      execute({ requester }) {
        const account = requester.bare;
        const { graceDays } = server.config.erasure;
        const date = new Date(Date.now() + graceDays * DAY_MS).toISOString().slice(0, 10);
        return {
          notes: [
            {
              type: 'info',
              text:
                graceDays > 0
                  ? `Your account will be erased on ${date}. It is locked from now on; if you change your mind, ${
                      restorePageUrl(server) ? `log in at ${restorePageUrl(server)}` : 'ask the operator to restore it'
                    } before then.`
                  : 'Your account is being erased now.',
            },
          ],
          afterReply: () =>
            requestErasure(server, account, { by: account.bareString(), reason: 'asked with the ad-hoc command' }),
        };
      },
    });
  },
};
