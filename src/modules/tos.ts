import { randomUUID } from 'node:crypto';
import type { StreamFeaturesEvent, UnauthenticatedIqEvent } from '../c2s/stream.js';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import { acceptanceProblem, termsFields } from '../privacy/consent/form.js';
import { tosElement } from '../privacy/consent/notices.js';
import { consent } from '../privacy/consent/service.js';
import { buildForm, type FieldSpec, readSubmittedForm } from '../xml/dataform.js';
import { type XmlElement, x } from '../xml/element.js';
import { adhocCommands, type CommandContext, type FormValues, NS_COMMANDS } from './adhoc.js';
import { messageArchive } from './mam/index.js';

/**
 * In-band terms (urn:xmpp:tos:0, ../shared/specs/protoxeps/tos.xml): the ad-hoc command of that node
 * shows the current terms and privacy policy and records their acceptance in the consent ledger, with
 * the separate opt-ins (the message archive) as further fields, so withdrawing is as easy as giving.
 * Before authentication the same command only shows the terms (there is nobody to record it for).
 */

const NS_TOS = 'urn:xmpp:tos:0';
const ARCHIVE_FIELD = 'urn:lethe:consent#archive';
/** Per-stream state: the version accepted with the command before authentication. */
export const ACCEPTED_BEFORE_LOGIN = 'tos';

function fields(server: Server, archiveOn: boolean | undefined): FieldSpec[] {
  const policy = consent(server).current;
  const out: FieldSpec[] = [{ var: 'FORM_TYPE', type: 'hidden', values: [NS_TOS] }];
  if (policy) out.push(...termsFields(server, policy));
  else out.push({ type: 'fixed', values: ['This server has published no terms of service.'] });
  if (archiveOn !== undefined)
    out.push(
      { type: 'fixed', values: ['Opt-ins: each is your consent, which you can withdraw here at any time'] },
      {
        var: ARCHIVE_FIELD,
        type: 'boolean',
        label: 'Keep an archive of my messages on the server (XEP-0313), so my apps show my history on every device',
        desc: 'Turning it off deletes the archive.',
        values: [archiveOn ? 'true' : 'false'],
      },
    );
  return out;
}

/** `<tos/>` with the required flags, sent next to the form. */
function tosPayload(server: Server): XmlElement[] {
  const policy = consent(server).current;
  if (!policy) return [];
  const tos = tosElement(server, policy);
  tos.c('required-flags').c('required-flag', { var: `${NS_TOS}#accept` });
  return [tos];
}

const TRUE = new Set(['1', 'true']);

async function complete(ctx: CommandContext) {
  const { server, requester } = ctx;
  const values = ctx.submitted[0] as FormValues;
  const service = consent(server);
  const policy = service.current;
  const notes: { type: 'info'; text: string }[] = [];
  if (policy) {
    if (await service.mustAccept(requester.bare)) {
      await service.accept(requester.bare, 'ad-hoc', policy.version);
      notes.push({ type: 'info', text: `You accepted version ${policy.version} of the terms. Thank you.` });
    } else notes.push({ type: 'info', text: `You had accepted version ${policy.version} already.` });
  }
  const archive = values.get(ARCHIVE_FIELD)?.[0];
  if (archive !== undefined) {
    const owner = requester.bareString();
    const want = TRUE.has(archive);
    const { purged } = await messageArchive(server).setArchiving(owner, want, 'ad-hoc');
    notes.push({
      type: 'info',
      text: want
        ? 'Your message archive is on.'
        : `Your message archive is off${purged ? `; ${purged} archived messages were deleted` : ''}.`,
    });
  }
  return { notes };
}

export const tosModule: LetheModule = {
  name: 'tos',
  features: [NS_TOS],
  load(server) {
    const encryptionOk = (secure: boolean) => secure || !server.config.c2s.requireEncryption;
    server.hooks.on('stream-features', (ev: StreamFeaturesEvent) => {
      if (ev.authenticated || encryptionOk(ev.secure)) ev.features.c('tos', { xmlns: NS_TOS });
    });

    adhocCommands(server).register({
      node: NS_TOS,
      name: 'Terms of Service',
      access: 'user',
      stages: [
        {
          form: (ctx) =>
            buildForm('form', fields(server, messageArchive(server).archiving(ctx.requester.bareString())), {
              title: 'Terms of Use',
            }),
          extra: () => tosPayload(server),
          check: (values) => {
            const policy = consent(server).current;
            return policy ? acceptanceProblem(values, policy) : undefined;
          },
          showAgainWhenRefused: true,
        },
      ],
      execute: complete,
    });

    // tos.xml §3: the terms can be read before authentication (to decide whether to register).
    server.hooks.on(`c2s/unauthenticated-iq/${NS_COMMANDS}:command`, (ev: UnauthenticatedIqEvent) => {
      const command = ev.stanza.getChild('command', NS_COMMANDS) as XmlElement;
      const answer = (payload: XmlElement) =>
        ev.reply(x('iq', { type: 'result', id: ev.stanza.attrs.id, from: ev.host }, payload));
      if (command.attrs.node !== NS_TOS || ev.stanza.attrs.type !== 'set' || !encryptionOk(ev.secure)) return false;
      const reply = x('command', {
        xmlns: NS_COMMANDS,
        node: NS_TOS,
        sessionid: command.attrs.sessionid ?? randomUUID(),
      });
      const action = command.attrs.action ?? 'execute';
      if (command.attrs.sessionid === undefined && action === 'execute') {
        reply.setAttr('status', 'executing');
        reply.c('actions', { execute: 'complete' }).c('complete');
        reply.append(buildForm('form', fields(server, undefined), { title: 'Terms of Use' }));
        for (const el of tosPayload(server)) reply.append(el);
        answer(reply);
        return true;
      }
      // Before authentication there is nobody to record it for: an acceptance is remembered for this
      // stream, and in-band registration on it counts it (for clients that register with the legacy fields).
      reply.setAttr('status', action === 'cancel' ? 'canceled' : 'completed');
      const values = action === 'cancel' ? undefined : readSubmittedForm(command);
      const policy = consent(server).current;
      if (values && policy) {
        const problem = acceptanceProblem(values, policy);
        if (!problem) ev.state.set(ACCEPTED_BEFORE_LOGIN, policy.version);
        reply
          .c('note', { type: problem ? 'error' : 'info' })
          .t(
            problem ??
              `Noted for this connection: register now and your acceptance of version ${policy.version} is recorded with your account. Nothing is recorded if you log in to an existing account instead; accept again then.`,
          );
      }
      answer(reply);
      return true;
    });
  },
};
