import type { Server } from '../core/server.js';
import { adhocCommands } from '../modules/adhoc.js';
import { PRIVACY_SUMMARY_NODE } from '../modules/privacy-summary.js';
import { privacyCapabilities } from './capabilities.js';
import { type DataCategory, type LegalBasis, legalBasisText } from './registry.js';

/**
 * The operator's record of processing activities (GDPR art. 30(1)) and a starting point for a data
 * protection impact assessment (art. 35(7)), generated from the privacy registry and the live
 * configuration, as JSON and Markdown. What only the operator can know is never made up: it is
 * listed under `toComplete` (JSON) and in marked sections (Markdown).
 */

export const TO_COMPLETE = 'TO BE COMPLETED BY THE OPERATOR';

export interface SecurityMeasure {
  measure: string;
  inPlace: boolean;
  details: string;
}

export interface RopaCategory {
  id: string;
  description: string;
  purpose: string;
  legalBasis: { code: LegalBasis; text: string };
  dataSubjects: string[];
  recipients: string[];
  retention: { description: string; maxAgeSeconds: number | null };
  content: boolean;
  tables: string[];
}

export interface Ropa {
  report: 'record-of-processing';
  reference: 'GDPR art. 30(1)';
  generatedAt: string;
  service: { domains: string[]; name: string | null };
  controller: {
    privacyContacts: string[];
    adminContacts: string[];
    securityContacts: string[];
    abuseContacts: string[];
  };
  categories: RopaCategory[];
  dataSubjects: string[];
  recipients: string[];
  transfers: { federation: boolean; text: string };
  dataSubjectRights: string[];
  securityMeasures: SecurityMeasure[];
  toComplete: string[];
}

export interface DpiaRisk {
  category: string;
  risk: string;
  measuresInPlace: string[];
}

export interface Dpia {
  report: 'dpia-starting-point';
  reference: 'GDPR art. 35(7)';
  generatedAt: string;
  service: Ropa['service'];
  processingOperations: { category: string; operations: string[] }[];
  necessityAndProportionality: { category: string; legalBasis: string; retention: string }[];
  minimisation: string[];
  dataSubjectRights: string[];
  risks: DpiaRisk[];
  securityMeasures: SecurityMeasure[];
  toComplete: string[];
}

const USERS = 'users with an account on this server';
const OTHERS = 'people who exchange messages or presence with users, also on other servers, without an account here';

function subjectsOf(c: DataCategory): string[] {
  // A category that declares other people's addresses in its rows (mentions) holds their data too.
  return c.mentions?.length ? [USERS, OTHERS] : [USERS];
}

function describeCategory(c: DataCategory): RopaCategory {
  return {
    id: c.id,
    description: c.description,
    purpose: c.purpose,
    legalBasis: { code: c.legalBasis, text: legalBasisText[c.legalBasis] },
    dataSubjects: subjectsOf(c),
    recipients: c.recipients,
    retention: { description: c.retention.description, maxAgeSeconds: c.retention.maxAgeSeconds ?? null },
    content: c.content === true,
    tables: c.tables,
  };
}

function transfers(server: Server): Ropa['transfers'] {
  const federation = privacyCapabilities(server).federation;
  return {
    federation,
    text: federation
      ? 'Messages, presence and profiles go to the other XMPP servers users talk to, which may be outside the EU/EEA; there is no adequacy decision or safeguard per server: users choose whom they talk to.'
      : 'None. This build does not connect to other XMPP servers: stanzas for other domains are refused with remote-server-not-found, so no personal data leaves this server. Recipients "on other servers" above apply once federation is enabled.',
  };
}

function rights(server: Server): string[] {
  const can = privacyCapabilities(server);
  const adhoc = adhocCommands(server);
  const summary = adhoc.get(PRIVACY_SUMMARY_NODE);
  const out = [
    'Information (art. 13, 15): `lethe privacy categories` lists every category with purpose, legal basis, retention and recipients.',
  ];
  if (summary)
    out.push(
      `Access, self-service: the ad-hoc command "${summary.name}" (${summary.node}) shows a user every category with purpose, legal basis, retention and their item count.`,
    );
  out.push(
    can.selfServiceExport
      ? 'Access and portability (art. 15, 20): users export their data themselves (ad-hoc command "Export my data", a download link valid 24 hours); the operator runs `lethe user export JID --out FILE.zip --reason R`.'
      : 'Access and portability (art. 15, 20): the operator exports a user’s data with `lethe user export JID --out FILE.zip --reason R` (self-service export needs the HTTP listener, `http.enabled`).',
    can.selfServiceErasure
      ? `Erasure (art. 17): users delete their account in-band (XEP-0077 <remove/> or the ad-hoc command "Delete my account", with their password); the operator runs \`lethe user erase JID --reason R\`. The account is locked at once and erased after ${server.config.erasure.graceDays} days (\`lethe user restore\` cancels; \`--now\` skips the wait); a keyed hash keeps the address from being registered again.`
      : `Erasure (art. 17): in-band account removal is off (register.allowRemove); the operator runs \`lethe user erase JID --reason R\`, locking the account at once and erasing every category after ${server.config.erasure.graceDays} days (\`--now\` skips the wait).`,
  );
  return out;
}

/** The security measures this configuration actually enables, read from it and from the database. */
export async function securityMeasures(server: Server): Promise<SecurityMeasure[]> {
  const { config, db } = server;
  const can = privacyCapabilities(server);
  const plain = config.auth.mechanisms.includes('PLAIN');
  const secureDelete =
    db.engine === 'sqlite' &&
    Number(Object.values((await db.get<Record<string, number>>('PRAGMA secure_delete')) ?? {})[0]) === 1;
  const { backupFrequencyHours: every, backupRetentionHours: kept } = config.dataPolicy;
  return [
    {
      measure: 'TLS required before authentication (STARTTLS)',
      inPlace: config.c2s.requireEncryption,
      details: config.c2s.requireEncryption
        ? `clients must start TLS on port ${config.c2s.port} before they may log in`
        : 'c2s.requireEncryption is off: clients may log in without TLS',
    },
    {
      measure: 'Direct TLS (XEP-0368)',
      inPlace: config.c2s.directTlsPort !== null,
      details: config.c2s.directTlsPort !== null ? `port ${config.c2s.directTlsPort}` : 'disabled',
    },
    { measure: 'Lowest TLS version', inPlace: true, details: config.tls.minVersion },
    {
      measure: 'Certificate from a certificate authority',
      inPlace: config.tls.cert !== null,
      details: config.tls.cert ?? 'self-signed, generated on first start: clients cannot verify the server',
    },
    {
      measure: 'Passwords never stored',
      inPlace: true,
      details: `only salted SCRAM keys, ${config.auth.scramIterations} PBKDF2 iterations for newly set passwords`,
    },
    {
      measure: 'Password not sent to the server (SASL SCRAM only)',
      inPlace: !plain,
      details: `mechanisms: ${config.auth.mechanisms.join(', ')}${plain ? '; PLAIN is offered, over TLS only' : ''}`,
    },
    {
      measure: 'Channel-binding downgrade refused',
      inPlace: config.auth.channelBindingDowngrade === 'refuse',
      details: `auth.channelBindingDowngrade: ${config.auth.channelBindingDowngrade}`,
    },
    {
      measure: 'IP addresses kept out of logs',
      inPlace: config.log.ip === 'none',
      details: `log.ip: ${config.log.ip}; IP addresses are never written to the database`,
    },
    {
      measure: 'Deleted data overwritten in the database file',
      inPlace: secureDelete,
      details: secureDelete ? 'SQLite secure_delete is on' : 'secure_delete is off',
    },
    {
      measure: 'Encryption at rest',
      inPlace: can.encryptionAtRest,
      details: can.encryptionAtRest ? 'per-user keys, destroyed on erasure' : 'not built yet: use disk encryption',
    },
    {
      measure: 'Software version hidden',
      inPlace: !config.version.disclose,
      details: `version.disclose: ${config.version.disclose}`,
    },
    {
      measure: 'Registration limited',
      inPlace: !config.register.enabled,
      details: config.register.enabled
        ? `open in-band registration, ${config.register.attemptsPerAddress} attempts per address per ${config.register.windowSeconds} s`
        : 'in-band registration is off: the operator creates accounts',
    },
    {
      measure: 'Backups',
      inPlace: every !== null && every > 0,
      details:
        every === null
          ? 'not stated (dataPolicy.backupFrequencyHours)'
          : every === 0
            ? 'no backups'
            : `at least every ${every} h, kept ${kept === null ? 'for an unstated time' : kept === 'infinite' ? 'indefinitely' : `${kept} h`}`,
    },
  ];
}

function service(server: Server): Ropa['service'] {
  return { domains: server.config.domains, name: server.config.disco.name };
}

export async function buildRopa(server: Server, now = new Date()): Promise<Ropa> {
  const categories = server.privacy.all().map(describeCategory);
  const contacts = server.config.contactAddresses;
  const toComplete = [
    'Name and address of the controller, and of its representative in the EU where applicable (art. 30(1)(a)).',
    'Technical and organisational measures outside the server: hosting, disk encryption, access to the machine, staff.',
  ];
  if (contacts.privacy.length === 0)
    toComplete.push('Contact of the data protection officer: set contactAddresses.privacy (also shown to users).');
  if (server.config.dataPolicy.backupFrequencyHours === null)
    toComplete.push('Backups: how often and for how long (dataPolicy.backupFrequencyHours, backupRetentionHours).');
  return {
    report: 'record-of-processing',
    reference: 'GDPR art. 30(1)',
    generatedAt: now.toISOString(),
    service: service(server),
    controller: {
      privacyContacts: contacts.privacy,
      adminContacts: contacts.admin,
      securityContacts: contacts.security,
      abuseContacts: contacts.abuse,
    },
    categories,
    dataSubjects: [...new Set(categories.flatMap((c) => c.dataSubjects))],
    recipients: [...new Set(categories.flatMap((c) => c.recipients))],
    transfers: transfers(server),
    dataSubjectRights: rights(server),
    securityMeasures: await securityMeasures(server),
    toComplete,
  };
}

function operationsOf(c: DataCategory): string[] {
  const ops = [`collected and stored: ${c.description}`, `used for: ${c.purpose}`];
  if (c.recipients.length) ops.push(`disclosed to: ${c.recipients.join('; ')}`);
  const age = c.retention.maxAgeSeconds;
  if (age !== undefined)
    ops.push(age === 0 ? 'not stored in this configuration' : `deleted automatically after ${age / 86_400} day(s)`);
  ops.push(
    c.keeps
      ? `when the account is erased, kept pseudonymised: ${c.keeps.what} (${c.keeps.why})`
      : 'erased with the account, through the privacy registry',
  );
  return ops;
}

function risksOf(c: DataCategory, measures: SecurityMeasure[]): DpiaRisk[] {
  const inPlace = measures.filter((m) => m.inPlace).map((m) => m.measure);
  const risks: DpiaRisk[] = [
    {
      category: c.id,
      risk: 'Unauthorised access to the server, its database or its backups discloses this data',
      measuresInPlace: inPlace,
    },
  ];
  if (c.recipients.length)
    risks.push({
      category: c.id,
      risk: `Disclosure beyond what the user expects: ${c.recipients.join('; ')}`,
      measuresInPlace: ['the user decides what to publish and to whom (presence subscriptions, blocking)'],
    });
  if (c.retention.maxAgeSeconds === undefined)
    risks.push({
      category: c.id,
      risk: 'Kept until the account is deleted: it accumulates, also for accounts nobody uses any more',
      measuresInPlace: ['erasure of the account removes it'],
    });
  if (c.content)
    risks.push({
      category: c.id,
      risk: 'Message content can reveal special categories of data (art. 9) about users and the people they write about',
      measuresInPlace: [
        c.retention.maxAgeSeconds !== undefined ? `kept at most: ${c.retention.description}` : 'no maximum age',
        ...measures.filter((m) => m.measure === 'Encryption at rest' && m.inPlace).map((m) => m.measure),
      ],
    });
  if (c.mentions?.length)
    risks.push({
      category: c.id,
      risk: 'Holds addresses of people without an account here, who cannot ask this server about it themselves',
      measuresInPlace: ['the data belongs to the user who received it (email model) and goes with their account'],
    });
  return risks;
}

export async function buildDpia(server: Server, now = new Date()): Promise<Dpia> {
  const categories = server.privacy.all();
  const measures = await securityMeasures(server);
  const { config } = server;
  return {
    report: 'dpia-starting-point',
    reference: 'GDPR art. 35(7)',
    generatedAt: now.toISOString(),
    service: service(server),
    processingOperations: categories.map((c) => ({ category: c.id, operations: operationsOf(c) })),
    necessityAndProportionality: categories.map((c) => ({
      category: c.id,
      legalBasis: legalBasisText[c.legalBasis],
      retention: c.retention.description,
    })),
    minimisation: [
      'Passwords are never stored, only salted SCRAM keys.',
      `IP addresses are never written to the database; in logs: log.ip is ${config.log.ip}.`,
      `The software version is ${config.version.disclose ? 'disclosed' : 'not disclosed'} to other entities.`,
      `In-band registration is ${config.register.enabled ? 'open' : 'closed'}.`,
      `Offline messages: ${server.privacy.get('offline')?.retention.description ?? 'not stored'}.`,
      `Federation: ${transfers(server).text}`,
    ],
    dataSubjectRights: rights(server),
    risks: categories.flatMap((c) => risksOf(c, measures)),
    securityMeasures: measures,
    toComplete: [
      'Context: who the users are, how many, whether children or vulnerable people use the service (art. 35(7)(a)).',
      'Likelihood and severity of each risk above, and the residual risk after the measures (art. 35(7)(c)).',
      'Further measures planned, with owner and date (art. 35(7)(d)).',
      'Advice of the data protection officer and views of users or their representatives (art. 35(2), 35(9)).',
      'Whether the residual risk is high, so that the supervisory authority must be consulted first (art. 36).',
      'Sign-off: who approved this assessment and when it is reviewed next.',
    ],
  };
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const list = (items: string[]) => (items.length ? items.map((i) => `- ${i}`).join('\n') : '- none');
const contactsLine = (items: string[], key: string) => (items.length ? items.join(', ') : `none (${key})`);

function measuresTable(measures: SecurityMeasure[]): string {
  return [
    '| measure | in place | details |',
    '|---|---|---|',
    ...measures.map((m) => `| ${cell(m.measure)} | ${m.inPlace ? 'yes' : '**no**'} | ${cell(m.details)} |`),
  ].join('\n');
}

function toCompleteSection(items: string[]): string {
  return `## ${TO_COMPLETE}\n\n${list(items.map((i) => `[ ] ${i}`))}`;
}

function serviceLine(s: Ropa['service']): string {
  return `Service: ${s.name ?? '(no name configured)'}, domains ${s.domains.join(', ')}.`;
}

export function renderRopaMarkdown(r: Ropa): string {
  const rows = r.categories.map(
    (c) =>
      `| \`${c.id}\` | ${cell(c.description)} | ${cell(c.purpose)} | ${cell(c.legalBasis.text)} | ${cell(
        c.dataSubjects.join('; '),
      )} | ${cell(c.recipients.join('; ') || 'nobody else')} | ${cell(c.retention.description)} |`,
  );
  return [
    '# Record of processing activities (GDPR art. 30(1))',
    `Generated by Lethe on ${r.generatedAt} from the privacy registry and the configuration. ${serviceLine(r.service)}`,
    '## Controller',
    [
      `- Name and address: *${TO_COMPLETE}*`,
      `- Data protection contact: ${r.controller.privacyContacts.join(', ') || `*${TO_COMPLETE}* (contactAddresses.privacy)`}`,
      `- Administrators: ${contactsLine(r.controller.adminContacts, 'contactAddresses.admin')}`,
      `- Security: ${contactsLine(r.controller.securityContacts, 'contactAddresses.security')}`,
      `- Abuse: ${contactsLine(r.controller.abuseContacts, 'contactAddresses.abuse')}`,
    ].join('\n'),
    '## Categories of personal data, purposes, legal bases and time limits',
    [
      '| category | personal data | purpose | legal basis | data subjects | recipients | kept |',
      '|---|---|---|---|---|---|---|',
      ...rows,
    ].join('\n'),
    '## Categories of data subjects',
    list(r.dataSubjects),
    '## Recipients',
    list(r.recipients),
    '## Transfers to third countries',
    r.transfers.text,
    '## Data subjects’ rights',
    list(r.dataSubjectRights),
    '## Security measures (art. 32) enabled in this configuration',
    measuresTable(r.securityMeasures),
    toCompleteSection(r.toComplete),
  ].join('\n\n');
}

export function renderDpiaMarkdown(d: Dpia): string {
  return [
    '# Data protection impact assessment: starting point (GDPR art. 35)',
    `Generated by Lethe on ${d.generatedAt} from the privacy registry and the configuration. ${serviceLine(d.service)} It states the facts the server knows; the assessment itself is the operator's.`,
    '## 1. Processing operations (art. 35(7)(a))',
    d.processingOperations.map((p) => `### \`${p.category}\`\n\n${list(p.operations)}`).join('\n\n'),
    '## 2. Necessity and proportionality (art. 35(7)(b))',
    [
      '| category | legal basis | kept |',
      '|---|---|---|',
      ...d.necessityAndProportionality.map(
        (n) => `| \`${n.category}\` | ${cell(n.legalBasis)} | ${cell(n.retention)} |`,
      ),
    ].join('\n'),
    '### Data minimisation',
    list(d.minimisation),
    '### Data subjects’ rights',
    list(d.dataSubjectRights),
    '## 3. Risks to the rights and freedoms of data subjects (art. 35(7)(c))',
    [
      '| category | risk | measures in place | likelihood | severity |',
      '|---|---|---|---|---|',
      ...d.risks.map(
        (r) =>
          `| \`${r.category}\` | ${cell(r.risk)} | ${cell(r.measuresInPlace.join('; '))} | *to assess* | *to assess* |`,
      ),
    ].join('\n'),
    '## 4. Security measures in place (art. 35(7)(d))',
    measuresTable(d.securityMeasures),
    toCompleteSection(d.toComplete),
  ].join('\n\n');
}

export type ReportKind = 'ropa' | 'dpia';

/** One report as the `lethe report` command prints it. */
export async function renderReport(server: Server, kind: ReportKind, format: 'md' | 'json'): Promise<string> {
  if (kind === 'ropa') {
    const ropa = await buildRopa(server);
    return format === 'json' ? JSON.stringify(ropa, null, 2) : renderRopaMarkdown(ropa);
  }
  const dpia = await buildDpia(server);
  return format === 'json' ? JSON.stringify(dpia, null, 2) : renderDpiaMarkdown(dpia);
}
