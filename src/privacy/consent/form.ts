import type { Server } from '../../core/server.js';
import type { FieldSpec } from '../../xml/dataform.js';
import type { PolicyVersion } from './policies.js';
import { consent } from './service.js';

/**
 * The data-form fields that ask for acceptance of the current terms, in urn:xmpp:tos:0's shape, shared
 * by in-band registration (XEP-0077) and the in-band terms command: the version (hidden, so a stale form
 * is noticed), the documents' URLs, and the required boolean `urn:xmpp:tos:0#accept`.
 */

const NS_TOS = 'urn:xmpp:tos:0';
export const VERSION_FIELD = `${NS_TOS}#version`;
export const ACCEPT_FIELD = `${NS_TOS}#accept`;

export function termsFields(server: Server, policy: PolicyVersion): FieldSpec[] {
  const service = consent(server);
  const where = policy.documents.map((d) => service.documentUrl(policy.version, d.id) ?? d.title);
  const titles = policy.documents.map((d) => d.title).join(' and the ');
  return [
    { var: VERSION_FIELD, type: 'hidden', values: [policy.version] },
    { var: `${NS_TOS}#documents-header`, type: 'fixed', values: ['Terms of Use'] },
    {
      var: `${NS_TOS}#documents`,
      type: 'text-multi',
      desc: 'The terms of use of this service are these documents. Please read them carefully.',
      values: where,
    },
    {
      var: ACCEPT_FIELD,
      type: 'boolean',
      label: `I have read and accept the ${titles} (version ${policy.version})`,
      required: true,
      values: ['false'],
    },
  ];
}

const TRUE = new Set(['1', 'true']);

/**
 * Why submitted values do not accept `policy`, or undefined when they do. A form filled for another
 * version (published meanwhile) is refused, so nobody accepts what they were not shown.
 */
export function acceptanceProblem(values: Map<string, string[]>, policy: PolicyVersion): string | undefined {
  const version = values.get(VERSION_FIELD)?.[0];
  if (version !== undefined && version !== policy.version)
    return `the terms changed while you were reading them (now version ${policy.version}); read them again and accept the new version`;
  if (!TRUE.has(values.get(ACCEPT_FIELD)?.[0] ?? ''))
    return `you have to accept the terms of service and the privacy policy (version ${policy.version}) to use this service`;
  return undefined;
}
