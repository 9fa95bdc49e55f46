import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { Jid, JidError } from '../xml/jid.js';

/**
 * The configuration schema is the single source of truth for every key, its type, default and
 * documentation: docs/configuration.md is generated from it (`npm run docs`) and a test
 * checks the two have not drifted.
 */

const port = z.number().int().min(0).max(65535);
const seconds = z.number().int().min(0);

const domainName = z.string().superRefine((value, ctx) => {
  try {
    const jid = Jid.parse(value);
    if (jid.local || jid.resource)
      ctx.addIssue({ code: 'custom', message: 'must be a bare domain name, without @ or /' });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: err instanceof JidError ? err.message : String(err) });
  }
});

const c2sSchema = z
  .strictObject({
    host: z.string().default('0.0.0.0').describe('Address the client listeners bind to.'),
    port: port.default(5222).describe('Client port with STARTTLS (RFC 6120). 0 picks a free port.'),
    directTlsPort: port
      .nullable()
      .default(5223)
      .describe('Client port with TLS from the first byte (XEP-0368). null disables it; 0 picks a free port.'),
    requireEncryption: z
      .boolean()
      .default(true)
      .describe('Refuse to authenticate clients before TLS. Turn off only for tests on loopback.'),
    resourceConflict: z
      .enum(['kick-old', 'refuse', 'random'])
      .default('kick-old')
      .describe(
        'What happens when a client binds a resource that is in use (RFC 6120 §7.7.2.2): `kick-old` closes the old session with a `conflict` error, `refuse` answers the new one with `conflict`, `random` gives the new one a generated resource.',
      ),
    authTimeout: seconds
      .default(60)
      .describe('Seconds a new connection has to authenticate and bind before it is closed with `connection-timeout`.'),
    idleTimeout: seconds
      .default(3600)
      .describe(
        'Seconds without any data from an authenticated client before the stream is closed with `connection-timeout`. 0 disables.',
      ),
    keepaliveInterval: seconds
      .default(300)
      .describe(
        'Seconds of silence after which the server sends a whitespace keepalive, so dead peers are noticed. 0 disables.',
      ),
  })
  .prefault({});

const httpSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Serve HTTPS (with the certificate of `tls`), which self-service features use, such as the download links of data exports. Off: those features are not offered.',
      ),
    host: z.string().default('0.0.0.0').describe('Address the HTTPS listener binds to.'),
    port: port.default(5443).describe('HTTPS port. 0 picks a free port.'),
    publicUrl: z
      .string()
      .superRefine((value, ctx) => {
        const url = URL.canParse(value) ? new URL(value) : undefined;
        if (url?.protocol !== 'https:' || url.search || url.hash)
          ctx.addIssue({
            code: 'custom',
            message: `${JSON.stringify(value)} is not an https: URL without query or fragment, e.g. https://xmpp.example.org:5443`,
          });
      })
      .nullable()
      .default(null)
      .describe(
        'Base URL of the HTTPS listener as users reach it, used in the links the server hands out; set it when a reverse proxy or another port faces users. null means `https://<first domain>:<port>`.',
      ),
    requestTimeout: seconds
      .min(1)
      .default(30)
      .describe('Seconds a client has to send a whole request (headers and body) before the connection is closed.'),
    maxBodyBytes: z
      .number()
      .int()
      .min(0)
      .default(65_536)
      .describe('Largest request body accepted, in bytes; a larger one is refused with 413.'),
  })
  .prefault({});

const tlsSchema = z
  .strictObject({
    cert: z
      .string()
      .nullable()
      .default(null)
      .describe(
        'PEM certificate chain. null generates a self-signed certificate for the domains under `<dataDir>/tls/` on first start.',
      ),
    key: z.string().nullable().default(null).describe('PEM private key for `cert`. Required when `cert` is set.'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('Lowest TLS version accepted.'),
  })
  .prefault({});

const limitsSchema = z
  .strictObject({
    maxStanzaBytes: z
      .number()
      .int()
      .min(10_000)
      .default(262_144)
      .describe('Largest stanza accepted, in bytes; a larger one closes the stream with `policy-violation`.'),
    maxDepth: z.number().int().min(4).max(1000).default(32).describe('Deepest element nesting accepted in a stanza.'),
    maxAttributes: z.number().int().min(4).max(1000).default(64).describe('Most attributes accepted on one element.'),
  })
  .prefault({});

export const saslMechanisms = [
  'SCRAM-SHA-256-PLUS',
  'SCRAM-SHA-1-PLUS',
  'SCRAM-SHA-256',
  'SCRAM-SHA-1',
  'PLAIN',
] as const;

const authSchema = z
  .strictObject({
    mechanisms: z
      .array(z.enum(saslMechanisms))
      .min(1)
      .default([...saslMechanisms])
      .describe(
        'SASL mechanisms offered. PLAIN is only ever offered over TLS; -PLUS only where channel binding works.',
      ),
    channelBindingDowngrade: z
      .enum(['allow', 'refuse'])
      .default('allow')
      .describe(
        "A client that supports channel binding but uses none although -PLUS was offered sends SCRAM's `y` flag. `refuse` fails it as RFC 5802 §6 says (it detects an attacker stripping -PLUS); `allow` admits it, because clients whose only binding type is tls-unique (slixmpp 1.8, for one) cannot bind over TLS 1.3 and have no other way in.",
      ),
    scramIterations: z
      .number()
      .int()
      .min(4096)
      .max(10_000_000)
      .default(10_000)
      .describe('PBKDF2 iteration count for newly set passwords (stored as SCRAM keys only, never as passwords).'),
  })
  .prefault({});

const storageSchema = z
  .strictObject({
    engine: z.enum(['sqlite']).default('sqlite').describe('Storage engine. `sqlite` is embedded and needs no set-up.'),
    path: z.string().nullable().default(null).describe('SQLite database file. null means `<dataDir>/lethe.sqlite`.'),
  })
  .prefault({});

const encryptionSchema = z
  .strictObject({
    serverKeyFile: z
      .string()
      .nullable()
      .default(null)
      .describe(
        'File holding the server key (32 random bytes, base64) that wraps every user’s data key (encryption at rest, crypto-shredding). null means `<dataDir>/server.key`, created with mode 0600 on first start. The environment variable `LETHE_SERVER_KEY` (base64), when set, is used instead of any file. Back it up apart from the database: without it no encrypted message can be read. With an in-memory database (`storage.path` `:memory:`) and no file set, a key is generated in memory for each start.',
      ),
    keyStore: z
      .string()
      .nullable()
      .default(null)
      .describe(
        'SQLite file holding the users’ data keys, wrapped by the server key. It is kept apart from the database so that erasing a user destroys their key in one small file, which makes their messages unreadable in every copy of the database, backups included. null means `<dataDir>/keys.sqlite` (in memory with an in-memory database).',
      ),
  })
  .prefault({});

const logSchema = z
  .strictObject({
    level: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('Log level. Message content is never logged at `info` or above.'),
    ip: z
      .enum(['none', 'truncated', 'full'])
      .default('none')
      .describe(
        'How client IP addresses appear in logs: `none` (default), `truncated` (IPv4 /24, IPv6 /48) or `full`. They are never written to the database.',
      ),
  })
  .prefault({});

const rosterSchema = z
  .strictObject({
    maxItems: z.number().int().min(1).default(1000).describe('Most contacts one roster may hold.'),
  })
  .prefault({});

const blockingSchema = z
  .strictObject({
    maxItems: z
      .number()
      .int()
      .min(1)
      .default(1000)
      .describe(
        'Most addresses one user may block (XEP-0191); a block command that would go beyond it is refused with `not-acceptable`.',
      ),
  })
  .prefault({});

const vcardSchema = z
  .strictObject({
    maxBytes: z
      .number()
      .int()
      .min(1024)
      .default(196_608)
      .describe(
        'Largest vCard accepted, in bytes of XML; a larger one is refused with `not-acceptable`. The avatar photo makes up most of a vCard, so the default leaves room for a small one. A vCard travels in one stanza, so `limits.maxStanzaBytes` caps this too.',
      ),
  })
  .prefault({});

const privateSchema = z
  .strictObject({
    maxBytesPerUser: z
      .number()
      .int()
      .min(1024)
      .default(1_048_576)
      .describe('Most bytes of XML one user may keep in private storage, all namespaces together.'),
    maxEntries: z
      .number()
      .int()
      .min(1)
      .default(100)
      .describe('Most namespaces (bookmarks, notes, app settings, ...) one user may keep in private storage.'),
  })
  .prefault({});

const discoSchema = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .nullable()
      .default(null)
      .describe(
        'Name of the server in its service discovery identity (XEP-0030), e.g. the service’s name. null gives none, so the software is not named.',
      ),
  })
  .prefault({});

const versionSchema = z
  .strictObject({
    disclose: z
      .boolean()
      .default(false)
      .describe(
        'Answer software version requests (XEP-0092). Off by default: the exact version tells attackers which flaws to try; when off, the feature is not advertised and requests get `service-unavailable`.',
      ),
    name: z.string().min(1).default('Lethe').describe('Software name given when `disclose` is on.'),
    os: z
      .boolean()
      .default(false)
      .describe(
        'Also give the operating system’s name (e.g. `Linux`, never the kernel release) when `disclose` is on.',
      ),
  })
  .prefault({});

/** xmpp: (RFC 5122), mailto: (RFC 6068) or https: URIs: what a person can use to reach the operator. */
function contactUriProblem(value: string): string | undefined {
  const colon = value.indexOf(':');
  const scheme = value.slice(0, colon + 1).toLowerCase();
  const rest = value.slice(colon + 1).split('?')[0] as string;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    return 'contains an invalid %-escape';
  }
  if (scheme === 'xmpp:')
    return !rest.startsWith('/') && Jid.tryParse(decoded) ? undefined : 'is not an xmpp: URI of a valid JID';
  if (scheme === 'mailto:')
    return /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(decoded) ? undefined : 'is not a mailto: URI of an email address';
  if (scheme === 'https:') return URL.canParse(value) ? undefined : 'is not a valid https: URL';
  return 'must be an xmpp:, mailto: or https: URI';
}

const contactUris = (who: string) =>
  z
    .array(
      z.string().superRefine((value, ctx) => {
        const problem = contactUriProblem(value);
        if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} ${problem}` });
      }),
    )
    .default([])
    .describe(`Addresses (\`xmpp:\`, \`mailto:\` or \`https:\` URIs) for ${who}.`);

const contactAddressesSchema = z
  .strictObject({
    abuse: contactUris('reporting abuse (spam, harassment) coming from this server'),
    admin: contactUris('the server’s administrators'),
    feedback: contactUris('feedback from users'),
    sales: contactUris('sales and marketing'),
    security: contactUris('reporting security problems'),
    status: contactUris('the service’s status page or feed'),
    support: contactUris('user support'),
    privacy: contactUris(
      'the data-protection contact (GDPR art. 13(1)(b)); served as the unregistered field `x-privacy-addresses`',
    ),
  })
  .prefault({});

const smSchema = z
  .strictObject({
    resumeTimeout: seconds
      .default(300)
      .describe(
        'Seconds a session whose connection dropped is kept for resumption (XEP-0198) when the client does not ask for a time (`max`). Meanwhile it stays available and what is sent to it is queued; afterwards it ends, and unacknowledged messages go to another resource, offline storage, or back to the sender as errors.',
      ),
    maxResumeTimeout: seconds
      .default(900)
      .describe(
        'Longest resumption time granted: a client asking for more (`max`) gets this. 0 turns resumption off (acknowledgements still work).',
      ),
    maxQueue: z
      .number()
      .int()
      .min(1)
      .default(500)
      .describe(
        'Most stanzas sent to a session and not yet acknowledged. One more ends the session with the stream error `resource-constraint` (a detached session just ends); its unacknowledged messages are redelivered as on a resumption timeout.',
      ),
    requestAckAfter: z
      .number()
      .int()
      .min(1)
      .default(1)
      .describe(
        'Unacknowledged stanzas after which the server asks the client for an acknowledgement (`<r/>`). One request at a time; stanzas sent together share one.',
      ),
  })
  .prefault({});

const csiSchema = z
  .strictObject({
    holdPresence: z
      .boolean()
      .default(true)
      .describe(
        'While a client says it is inactive (XEP-0352), hold presence updates (only the latest from each address) until it is active again or any other stanza is sent to it.',
      ),
    dropChatStates: z
      .boolean()
      .default(true)
      .describe('While a client is inactive, drop messages that carry only chat states (XEP-0085, e.g. "is typing").'),
    maxHeld: z
      .number()
      .int()
      .min(1)
      .default(500)
      .describe('Most presence updates held for an inactive client; one more sends them all.'),
  })
  .prefault({});

const offlineSchema = z
  .strictObject({
    maxPerUser: z
      .number()
      .int()
      .min(0)
      .default(1000)
      .describe(
        'Most messages kept for one user while they are offline (XEP-0160). One more is refused with `service-unavailable`, as XEP-0160 says for a full queue. 0 turns offline storage off.',
      ),
    retentionDays: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe(
        'Days an offline message is kept when its recipient does not log in; older ones are deleted unread. Delivered messages are deleted at once.',
      ),
    sweepInterval: seconds
      .min(1)
      .default(3600)
      .describe('Seconds between runs of the sweeper that deletes offline messages older than `retentionDays`.'),
  })
  .prefault({});

const mamSchema = z
  .strictObject({
    defaultPolicy: z
      .enum(['never', 'roster', 'always'])
      .default('never')
      .describe(
        'Archiving preference (XEP-0441 `default`) of users who never chose one. `never` keeps archiving opt-in: nothing is archived until a user turns it on, and that choice is recorded as their consent (GDPR art. 6(1)(a)). `roster` or `always` archives everyone’s messages without asking, which needs another legal basis (the archive category then names legitimate interest): changing this is a legal-basis decision for the operator, to be documented in the record of processing, not a technical default.',
      ),
    purgeOnDisable: z
      .boolean()
      .default(true)
      .describe(
        'Delete a user’s whole archive when they turn archiving off (withdraw consent). Off, the messages stay until they expire.',
      ),
    maxAgeDays: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe(
        'Days an archived message is kept; older ones are deleted by a background sweeper. Users may choose fewer days for themselves (ad-hoc command "Archive settings").',
      ),
    maxPerUser: z
      .number()
      .int()
      .min(1)
      .default(10_000)
      .describe('Most messages kept in one user’s archive; the sweeper deletes the oldest beyond it.'),
    maxPageSize: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(250)
      .describe('Most messages one archive query returns (XEP-0059 `max` is capped to this).'),
    sweepInterval: seconds
      .min(1)
      .default(3600)
      .describe(
        'Seconds between runs of the sweeper that deletes archived messages past their retention or count cap.',
      ),
  })
  .prefault({});

const bareJid = z.string().superRefine((value, ctx) => {
  const jid = Jid.tryParse(value);
  if (!jid?.local || jid.resource)
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a bare JID; write it as name@domain` });
});

const adhocSchema = z
  .strictObject({
    sessionTimeout: seconds
      .min(10)
      .default(600)
      .describe(
        'Seconds a multi-stage ad-hoc command (XEP-0050) waits for the next step before its session is forgotten; a later step gets `session-expired`. Sessions are kept in memory only.',
      ),
  })
  .prefault({});

const hours = z.number().int().min(0);

const dataPolicySchema = z
  .strictObject({
    backupFrequencyHours: hours
      .nullable()
      .default(null)
      .describe(
        'Longest time between two backups of user data, in hours (0: no backups), as announced in the data-policy form (XEP-0504) and the record of processing. null states nothing: Lethe does not make backups itself, so only the operator knows.',
      ),
    backupRetentionHours: z
      .union([hours, z.literal('infinite')])
      .nullable()
      .default(null)
      .describe(
        'Longest time a backup is kept, in hours, or `infinite`. Erased users stay in backups until they expire, so say how long that is. null announces `unknown`.',
      ),
  })
  .prefault({});

const erasureSchema = z
  .strictObject({
    graceDays: z
      .number()
      .int()
      .min(0)
      .default(30)
      .describe(
        'Days between an erasure request and the erasure. The account is locked meanwhile (no login, no delivery) and `lethe user restore` cancels. 0 erases at once.',
      ),
    reminderDays: z
      .number()
      .int()
      .min(0)
      .default(3)
      .describe(
        'Days before the erasure date at which the operator is reminded (`lethe user pending`, the log) to tell the user once more. 0: no reminder.',
      ),
    tombstoneDays: z
      .number()
      .int()
      .min(1)
      .nullable()
      .default(null)
      .describe(
        'Days a tombstone (a keyed hash of an erased address, never the address) keeps the address from being registered again. null keeps it forever.',
      ),
    sweepInterval: seconds
      .min(1)
      .default(60)
      .describe(
        'Seconds between runs of the sweeper that erases accounts whose grace period ended, finishes interrupted erasures and closes sessions of accounts locked from the command line.',
      ),
  })
  .prefault({});

const auditSchema = z
  .strictObject({
    retentionDays: z
      .number()
      .int()
      .min(1)
      .default(730)
      .describe(
        'Days audit-log entries and erasure receipts are kept (accountability, GDPR art. 5(2)); older ones are deleted. Two years by default.',
      ),
  })
  .prefault({});

const registerSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe('Let anyone who can reach the server create an account in-band (XEP-0077). Off by default.'),
    minPasswordLength: z
      .number()
      .int()
      .min(1)
      .default(8)
      .describe('Shortest password accepted at in-band registration and password change.'),
    attemptsPerAddress: z
      .number()
      .int()
      .min(1)
      .default(5)
      .describe(
        'In-band registration attempts allowed from one client address per window. Counted in memory only: the address is never stored.',
      ),
    windowSeconds: seconds.default(3600).describe('The window for `register.attemptsPerAddress`, in seconds.'),
    allowPasswordChange: z
      .boolean()
      .default(true)
      .describe('Let logged-in users change their password in-band (XEP-0077 §3.3).'),
    allowRemove: z
      .boolean()
      .default(true)
      .describe(
        'Let logged-in users delete their account in-band (XEP-0077 `<remove/>` with their password): it is locked at once and erased after `erasure.graceDays`.',
      ),
  })
  .prefault({});

const localpart = z.string().superRefine((value, ctx) => {
  try {
    const jid = new Jid(value, 'example.org');
    if (jid.local !== value) ctx.addIssue({ code: 'custom', message: `write it in lower case: ${jid.local}` });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: err instanceof JidError ? err.message : String(err) });
  }
});

const consentSchema = z
  .strictObject({
    policyDir: z
      .string()
      .nullable()
      .default(null)
      .describe(
        'Directory of the Markdown sources of the terms of service (`terms.md`) and the privacy policy (`privacy.md`) that `lethe policy publish` publishes; `lethe policy init` writes editable starting points there. null means `<dataDir>/policies`.',
      ),
    graceDays: z
      .number()
      .int()
      .min(0)
      .default(14)
      .describe(
        'Days after a new version is published (or, for a newer account, after it was created) during which users who have not accepted it may still write to others. Afterwards their messages and subscription requests to anyone but the server are refused with `policy-violation` until they accept. 0 gates at once.',
      ),
    keepProofDays: z
      .number()
      .int()
      .min(0)
      .default(1095)
      .describe(
        'Days the consent history of an erased account is kept, pseudonymised (its address replaced by a keyed hash), as proof that consent was given (GDPR art. 7(1)) should it be disputed. 0 deletes it with the account.',
      ),
    linkValidDays: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe(
        'Days the signed single-use link in a terms notice works; afterwards the user logs in on the consent page with their password.',
      ),
    checkInterval: seconds
      .min(1)
      .default(10)
      .describe(
        'Seconds between the running server’s looks at the database for versions published and notices queued from the command line (`lethe policy publish`, `lethe notice send`).',
      ),
  })
  .prefault({});

const noticesSchema = z
  .strictObject({
    sender: localpart
      .default('notices')
      .describe(
        'User part of the address server notices come from (`<sender>@<domain>`): new terms, `lethe notice send`. Nobody can register it; users may write to it, and it answers with where to read and accept the terms.',
      ),
  })
  .prefault({});

const invitesSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Accept invitation tokens (`lethe invite create`) for registration, in-band (XEP-0401 pre-authenticated registration, `urn:xmpp:invite`) and on the web page, also when open registration (`register.enabled`) is off.',
      ),
    validDays: z
      .number()
      .int()
      .min(1)
      .default(7)
      .describe('Days an invitation is valid when `lethe invite create` is not given `--valid-days`.'),
  })
  .prefault({});

export const configSchema = z.strictObject({
  domain: z
    .union([domainName, z.array(domainName).min(1)])
    .default('localhost')
    .describe('The XMPP domain this server hosts, or a list of them. Users are `name@domain`.'),
  dataDir: z
    .string()
    .default('./data')
    .describe('Directory for the database, generated keys and certificates. Relative to the config file.'),
  c2s: c2sSchema.describe('Client-to-server listeners.'),
  http: httpSchema.describe('The HTTPS listener, for self-service features such as download links.'),
  tls: tlsSchema.describe('TLS certificates and settings.'),
  limits: limitsSchema.describe('Input limits (RFC 6120 §13.12).'),
  auth: authSchema.describe('Authentication.'),
  storage: storageSchema.describe('Where data is stored.'),
  encryption: encryptionSchema.describe(
    'Encryption at rest: message bodies are encrypted with a key per user, wrapped by the server key (see docs/privacy.md).',
  ),
  log: logSchema.describe('Logging.'),
  roster: rosterSchema.describe('Rosters (RFC 6121).'),
  blocking: blockingSchema.describe('Blocking command (XEP-0191): the addresses each user refuses all traffic with.'),
  sm: smSchema.describe('Stream management (XEP-0198): acknowledgements and resumption.'),
  csi: csiSchema.describe('Client state indication (XEP-0352): less traffic to clients in the background.'),
  offline: offlineSchema.describe('Offline messages (XEP-0160): kept for users who are not online.'),
  mam: mamSchema.describe(
    'Message archive (XEP-0313): opt-in, expiring, encrypted at rest with each user’s key (see docs/protocols.md).',
  ),
  vcard: vcardSchema.describe('vCards (XEP-0054), the public profiles that carry avatars (XEP-0153).'),
  private: privateSchema.describe('Private XML storage (XEP-0049), which also holds bookmarks (XEP-0048).'),
  disco: discoSchema.describe('Service discovery (XEP-0030).'),
  version: versionSchema.describe('Software version (XEP-0092).'),
  register: registerSchema.describe('In-band registration and account management (XEP-0077).'),
  erasure: erasureSchema.describe(
    'Erasing accounts (GDPR art. 17): grace period, reminder, tombstones. Tombstones keep a hash keyed with a key derived from the server key (`encryption.serverKeyFile`).',
  ),
  audit: auditSchema.describe('The append-only audit log of operator actions on personal data.'),
  consent: consentSchema.describe(
    'Versioned terms of service and privacy policy, the consent ledger, and the gate for users who have not accepted the current version (see docs/consent.md).',
  ),
  notices: noticesSchema.describe('Server notices: messages from the server to its users.'),
  invites: invitesSchema.describe('Invitations: single-use links and tokens that let someone register an account.'),
  admins: z
    .array(bareJid)
    .default([])
    .describe(
      'Bare JIDs of the server’s administrators: they may run the operator’s ad-hoc commands (XEP-0050). Empty by default: nobody administers the server in-band.',
    ),
  adhoc: adhocSchema.describe('Ad-hoc commands (XEP-0050): the commands users and administrators run in-band.'),
  dataPolicy: dataPolicySchema.describe(
    'Facts about the service that only the operator knows, announced in the data-policy form (XEP-0504) and the record of processing. Everything else there is derived from the configuration and the privacy registry.',
  ),
  contactAddresses: contactAddressesSchema.describe(
    'Contact addresses of the service (XEP-0157), shown in its service discovery information. Empty lists are left out.',
  ),
});

export type ConfigInput = z.input<typeof configSchema>;
type ParsedConfig = z.output<typeof configSchema>;

export interface Config extends Omit<ParsedConfig, 'domain' | 'consent'> {
  consent: ParsedConfig['consent'] & { policyDir: string };
  /** Hosted domains, the first one is the primary. */
  domains: string[];
  /** Absolute paths, resolved against the config file's directory. */
  dataDir: string;
  databasePath: string;
  /** Where the config came from, for messages; undefined when defaults were used. */
  source: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** A hint for each kind of problem, so every error names the key and the fix. */
function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const key = issue.path.join('.') || '(top level)';
  switch (issue.code) {
    case 'unrecognized_keys': {
      const where = issue.path.length ? `${key}.` : '';
      return `${issue.keys.map((k) => `${where}${k}`).join(', ')}: unknown key; remove it or check its spelling against docs/configuration.md`;
    }
    case 'invalid_type':
      return `${key}: expected ${issue.expected}, got ${describeValue(valueAt(raw, issue.path))}; set it to a ${issue.expected} or remove it to use the default`;
    case 'invalid_value':
      return `${key}: ${issue.message}; use one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
    case 'too_big':
      return `${key}: ${issue.message}; change the value or remove it to use the default`;
    default:
      return `${key}: ${issue.message}`;
  }
}

function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let v = raw;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Validates an already parsed configuration object. `baseDir` anchors relative paths. */
export function buildConfig(raw: unknown, baseDir: string, source?: string): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(result.error.issues.map((i) => describeIssue(i, raw)));
  const parsed = result.data;
  const domains = (Array.isArray(parsed.domain) ? parsed.domain : [parsed.domain]).map((d) => Jid.parse(d).domain);
  const problems: string[] = [];
  if (new Set(domains).size !== domains.length) problems.push('domain: lists the same domain twice; remove the repeat');
  if ((parsed.tls.cert === null) !== (parsed.tls.key === null))
    problems.push('tls.cert and tls.key: set both (a certificate and its key) or neither (self-signed)');
  if (
    parsed.c2s.directTlsPort !== null &&
    parsed.c2s.directTlsPort !== 0 &&
    parsed.c2s.directTlsPort === parsed.c2s.port
  )
    problems.push('c2s.directTlsPort: must differ from c2s.port; pick another port or set it to null');
  if (
    parsed.http.enabled &&
    parsed.http.port !== 0 &&
    (parsed.http.port === parsed.c2s.port || parsed.http.port === parsed.c2s.directTlsPort)
  )
    problems.push('http.port: must differ from the client ports (c2s.port, c2s.directTlsPort); pick another port');
  if (problems.length) throw new ConfigError(problems);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const dataDir = abs(parsed.dataDir);
  const { domain: _domain, ...rest } = parsed;
  return {
    ...rest,
    domains,
    dataDir,
    databasePath:
      parsed.storage.path === ':memory:'
        ? ':memory:'
        : parsed.storage.path
          ? abs(parsed.storage.path)
          : resolve(dataDir, 'lethe.sqlite'),
    encryption: {
      serverKeyFile: parsed.encryption.serverKeyFile ? abs(parsed.encryption.serverKeyFile) : null,
      keyStore:
        parsed.encryption.keyStore && parsed.encryption.keyStore !== ':memory:'
          ? abs(parsed.encryption.keyStore)
          : parsed.encryption.keyStore,
    },
    tls: {
      ...parsed.tls,
      cert: parsed.tls.cert ? abs(parsed.tls.cert) : null,
      key: parsed.tls.key ? abs(parsed.tls.key) : null,
    },
    consent: { ...parsed.consent, policyDir: abs(parsed.consent.policyDir ?? resolve(dataDir, 'policies')) },
    source,
  };
}

/**
 * Loads the configuration file. Without a path (and without LETHE_CONFIG) the defaults are used,
 * so a fresh checkout starts with no file at all.
 */
export function loadConfig(path: string | undefined): Config {
  const file = path ?? process.env.LETHE_CONFIG;
  if (!file) return buildConfig({}, process.cwd());
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `cannot read ${abs}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; check --config`,
    ]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([`${abs} is not valid YAML: ${(err as Error).message}`]);
  }
  return buildConfig(raw, dirname(abs), abs);
}
