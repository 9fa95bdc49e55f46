import { randomUUID } from 'node:crypto';
import { errorReply, StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import { perServer } from '../core/per-server.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import { NS_DATA, readSubmittedForm } from '../xml/dataform.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import type { NodeEvent } from './disco.js';

/**
 * Ad-hoc commands (XEP-0050), as a service other modules register commands on:
 *
 * ```ts
 * adhocCommands(server).register({
 *   node: 'urn:lethe:example', name: 'Example', access: 'user',
 *   stages: [{ form: () => buildForm('form', [...]), check: (values) => (ok ? undefined : 'why not') }],
 *   execute: (ctx) => ({ notes: [{ type: 'info', text: 'Done' }] }),
 * });
 * ```
 *
 * Commands are addressed to a hosted domain. The framework runs the stages in order with the actions
 * XEP-0050 §3.4 defines (next, prev, complete, cancel), checks required fields, and keeps each
 * session in memory only, for `adhoc.sessionTimeout` seconds after its last step and never beyond the
 * requester's connection.
 */

export const NS_COMMANDS = 'http://jabber.org/protocol/commands';

/** Who may run a command: any entity, users with an account here, or the configured `admins`. */
export type CommandAccess = 'anyone' | 'user' | 'admin';

export type FormValues = Map<string, string[]>;

export interface CommandContext {
  server: Server;
  /** Who runs the command (a full JID). */
  requester: Jid;
  /** The hosted domain the command was sent to. */
  host: string;
  /** The values submitted at each stage so far, in stage order. */
  submitted: FormValues[];
}

export interface CommandStage {
  /** The form (type `form`) to fill at this stage; it may depend on what earlier stages submitted. */
  form(ctx: CommandContext): XmlElement | Promise<XmlElement>;
  /** Checks what was submitted at this stage; a returned text refuses it with `bad-payload`. */
  check?(values: FormValues, ctx: CommandContext): string | undefined | Promise<string | undefined>;
  /**
   * Instead of `bad-payload`, a refused submission gets the stage's form again with the text as an
   * error note (urn:xmpp:tos:0 §4 answers an unaccepted required flag so).
   */
  showAgainWhenRefused?: boolean;
  /** Elements sent next to the form, such as urn:xmpp:tos:0's `<tos/>`. */
  extra?(ctx: CommandContext): XmlElement[] | Promise<XmlElement[]>;
}

export interface CommandNote {
  type: 'info' | 'warn' | 'error';
  text: string;
}

/** The end of a command. A command that fails completes with a note of type `error` (XEP-0050 §3.5). */
export interface CommandCompletion {
  notes?: CommandNote[];
  /** A result form (type `result`). */
  form?: XmlElement;
  /** Runs once the completion has been sent: for commands that end the requester's session (account deletion). */
  afterReply?: () => Promise<unknown>;
}

export interface AdhocCommand {
  node: string;
  name: string;
  access: CommandAccess;
  /** The forms filled in turn before `execute`; none runs `execute` at once. */
  stages?: CommandStage[];
  /** Runs once the last stage was submitted, with everything submitted in `ctx.submitted`. */
  execute(ctx: CommandContext): CommandCompletion | Promise<CommandCompletion>;
}

type SpecificCondition = 'malformed-action' | 'bad-action' | 'bad-payload' | 'bad-sessionid' | 'session-expired';

/** A stanza error with XEP-0050's application-specific condition (§4.4). */
export class CommandError extends StanzaError {
  constructor(
    readonly specific: SpecificCondition,
    text: string,
  ) {
    super(specific === 'session-expired' ? 'not-allowed' : 'bad-request', text);
  }
}

const ACTIONS = new Set(['execute', 'cancel', 'prev', 'next', 'complete']);
/** Live sessions one requester may keep; starting another forgets the oldest, so memory stays bounded. */
const MAX_SESSIONS_PER_REQUESTER = 5;
/** Ended session ids remembered per requester, to answer `session-expired` rather than `bad-sessionid`. */
const MAX_ENDED_PER_REQUESTER = 20;

interface Session {
  id: string;
  command: AdhocCommand;
  host: string;
  stage: number;
  submitted: FormValues[];
  /** The form of the current stage, whose required fields a submission must fill. */
  form: XmlElement | undefined;
  expires: number;
}

interface RequesterSessions {
  live: Map<string, Session>;
  /** Ended session id → when to forget it. */
  ended: Map<string, number>;
}

export class AdhocRegistry {
  private readonly commands = new Map<string, AdhocCommand>();
  /** By the requester's full JID: a session belongs to one connected client. */
  private readonly requesters = new Map<string, RequesterSessions>();
  private readonly afterReplies = new WeakMap<XmlElement, () => Promise<unknown>>();
  private readonly admins: Set<string>;

  constructor(private readonly server: Server) {
    this.admins = new Set(server.config.admins.map((a) => Jid.parse(a).bareString()));
  }

  private get timeoutMs(): number {
    return this.server.config.adhoc.sessionTimeout * 1000;
  }

  register(command: AdhocCommand): void {
    if (!command.node) throw new Error('an ad-hoc command needs a node');
    if (this.commands.has(command.node)) throw new Error(`ad-hoc command ${command.node} registered twice`);
    this.commands.set(command.node, command);
  }

  get(node: string): AdhocCommand | undefined {
    return this.commands.get(node);
  }

  isAdmin(jid: Jid): boolean {
    return this.admins.has(jid.bareString());
  }

  mayRun(command: AdhocCommand, requester: Jid): boolean {
    if (command.access === 'anyone') return true;
    if (command.access === 'admin') return this.isAdmin(requester);
    return requester.local !== '' && this.server.hosts.has(requester.domain);
  }

  /** The commands `requester` may run, in registration order (what disco#items lists). */
  available(requester: Jid): AdhocCommand[] {
    return [...this.commands.values()].filter((c) => this.mayRun(c, requester));
  }

  /** Runs one step of a command and returns the `<command/>` to answer with. */
  async step(event: StanzaEvent): Promise<XmlElement> {
    const el = event.stanza.getChild('command', NS_COMMANDS) as XmlElement;
    const node = el.attrs.node;
    if (!node) throw new StanzaError('bad-request', 'the command has no node');
    const command = this.commands.get(node);
    if (!command) throw new StanzaError('item-not-found', 'no such command');
    if (!this.mayRun(command, event.from)) throw new StanzaError('forbidden', 'you may not run this command', 'cancel');
    const action = el.attrs.action ?? 'execute';
    if (!ACTIONS.has(action)) throw new CommandError('malformed-action', `unknown action ${action}`);
    const id = el.attrs.sessionid;
    if (id === undefined) {
      if (action !== 'execute') throw new CommandError('bad-action', 'a command starts with execute');
      return this.start(command, event);
    }
    const session = this.find(event.from, id, node);
    if (action === 'cancel') {
      this.end(event.from, session);
      return this.reply(session, 'canceled');
    }
    const stages = command.stages ?? [];
    const last = session.stage === stages.length - 1;
    if (action === 'prev') {
      if (session.stage === 0) throw new CommandError('bad-action', 'this is the first stage');
      session.stage--;
      session.submitted.length = session.stage;
      return this.show(session, event);
    }
    const wanted = action === 'execute' ? (last ? 'complete' : 'next') : action;
    if (wanted === 'next' && last) throw new CommandError('bad-action', 'this is the last stage: complete it');
    if (wanted === 'complete' && !last) throw new CommandError('bad-action', 'more stages follow: use next');
    const values = readSubmittedForm(el);
    if (!values) throw new CommandError('bad-payload', 'submit the form (a jabber:x:data form of type submit)');
    const stage = stages[session.stage];
    const missing = requiredFields(session.form).filter((v) => !(values.get(v) ?? []).some((s) => s !== ''));
    const problem = missing.length
      ? `required field(s) missing: ${missing.join(', ')}`
      : await stage?.check?.(values, this.context(session, event));
    if (problem && stage?.showAgainWhenRefused) return this.show(session, event, problem);
    if (problem) throw new CommandError('bad-payload', problem);
    session.submitted.push(values);
    if (wanted === 'next') {
      session.stage++;
      return this.show(session, event);
    }
    return this.finish(session, event);
  }

  private async start(command: AdhocCommand, event: StanzaEvent): Promise<XmlElement> {
    const session: Session = {
      id: randomUUID(),
      command,
      host: event.to.domain,
      stage: 0,
      submitted: [],
      form: undefined,
      expires: 0,
    };
    if (!command.stages?.length) return this.finish(session, event);
    const mine = this.sessionsOf(event.from);
    if (mine.live.size >= MAX_SESSIONS_PER_REQUESTER) {
      const oldest = mine.live.values().next().value as Session;
      this.end(event.from, oldest);
    }
    mine.live.set(session.id, session);
    return this.show(session, event);
  }

  /** Renders the current stage's form with the actions XEP-0050 §3.4 allows there. */
  private async show(session: Session, event: StanzaEvent, refusal?: string): Promise<XmlElement> {
    const stages = session.command.stages as CommandStage[];
    const stage = stages[session.stage] as CommandStage;
    session.expires = Date.now() + this.timeoutMs;
    const ctx = this.context(session, event);
    session.form = await stage.form(ctx);
    const last = session.stage === stages.length - 1;
    const reply = this.reply(session, 'executing');
    const actions = reply.c('actions', { execute: last ? 'complete' : 'next' });
    if (session.stage > 0) actions.c('prev');
    actions.c(last ? 'complete' : 'next');
    if (refusal) reply.c('note', { type: 'error' }).t(refusal);
    // A command may hand out one prebuilt form for every session; each reply gets its own copy.
    reply.append(session.form.clone());
    for (const el of (await stage.extra?.(ctx)) ?? []) reply.append(el);
    return reply;
  }

  /** Runs what a completed command left for after its reply (see `CommandCompletion.afterReply`). */
  async runAfterReply(reply: XmlElement): Promise<void> {
    const then = this.afterReplies.get(reply);
    this.afterReplies.delete(reply);
    await then?.();
  }

  private async finish(session: Session, event: StanzaEvent): Promise<XmlElement> {
    try {
      const done = await session.command.execute(this.context(session, event));
      const reply = this.reply(session, 'completed');
      for (const note of done.notes ?? []) reply.c('note', { type: note.type }).t(note.text);
      if (done.form) reply.append(done.form);
      if (done.afterReply) this.afterReplies.set(reply, done.afterReply);
      return reply;
    } finally {
      this.end(event.from, session);
    }
  }

  private reply(session: Session, status: 'executing' | 'completed' | 'canceled'): XmlElement {
    return x('command', { xmlns: NS_COMMANDS, node: session.command.node, sessionid: session.id, status });
  }

  private context(session: Session, event: StanzaEvent): CommandContext {
    return { server: this.server, requester: event.from, host: session.host, submitted: session.submitted };
  }

  private sessionsOf(requester: Jid): RequesterSessions {
    const key = requester.toString();
    let mine = this.requesters.get(key);
    if (!mine) {
      mine = { live: new Map(), ended: new Map() };
      this.requesters.set(key, mine);
    }
    return mine;
  }

  /** The requester's live session `id` for `node`; another client's session is as unknown as none (§4.4). */
  private find(requester: Jid, id: string, node: string): Session {
    this.sweep(Date.now());
    const mine = this.requesters.get(requester.toString());
    const session = mine?.live.get(id);
    if (session && session.command.node === node) return session;
    if (mine?.ended.has(id)) throw new CommandError('session-expired', 'this session has ended');
    throw new CommandError('bad-sessionid', 'no such session');
  }

  private end(requester: Jid, session: Session): void {
    const mine = this.requesters.get(requester.toString());
    if (!mine?.live.delete(session.id)) return;
    mine.ended.set(session.id, Date.now() + this.timeoutMs);
    if (mine.ended.size > MAX_ENDED_PER_REQUESTER) mine.ended.delete(mine.ended.keys().next().value as string);
  }

  /** Expires abandoned sessions and forgets old ended ones. */
  sweep(now: number): void {
    for (const [key, mine] of this.requesters) {
      for (const [id, session] of mine.live)
        if (session.expires <= now) {
          mine.live.delete(id);
          mine.ended.set(id, now + this.timeoutMs);
        }
      for (const [id, forgetAt] of mine.ended) if (forgetAt <= now) mine.ended.delete(id);
      if (mine.live.size === 0 && mine.ended.size === 0) this.requesters.delete(key);
    }
  }

  /** A client that went away cannot continue its sessions. */
  forget(requester: Jid): void {
    this.requesters.delete(requester.toString());
  }

  /** Live sessions, for tests that check nothing is left behind. */
  get liveSessions(): number {
    let n = 0;
    for (const mine of this.requesters.values()) n += mine.live.size;
    return n;
  }
}

function requiredFields(form: XmlElement | undefined): string[] {
  if (!form) return [];
  return form
    .getChildren('field', NS_DATA)
    .filter((f) => f.getChild('required', NS_DATA) && f.attrs.var)
    .map((f) => f.attrs.var as string);
}

/** The server's ad-hoc command registry; modules register their commands on it in `load`, in any order. */
export const adhocCommands = perServer((server) => new AdhocRegistry(server));

const sweepers = new WeakMap<Server, NodeJS.Timeout>();

export const adhocModule: LetheModule = {
  name: 'adhoc',
  features: [NS_COMMANDS],
  load(server) {
    const registry = adhocCommands(server);
    const { hooks, router } = server;

    hooks.on(`iq-set/host/${NS_COMMANDS}:command`, async (event: StanzaEvent) => {
      try {
        const payload = await registry.step(event);
        router.reply(event.stanza, payload);
        await registry.runAfterReply(payload);
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        const reply = errorReply(event.stanza, err);
        reply.getChild('error')?.c(err.specific, { xmlns: NS_COMMANDS });
        void router.route(reply);
      }
      return true;
    });

    // §2.2: the command list is the items of the commands node, only those the requester may run.
    hooks.on('disco-items-node/host', (event: NodeEvent) => {
      if (event.node !== NS_COMMANDS) return false;
      for (const c of registry.available(event.from))
        event.query.c('item', { jid: event.to.domain, node: c.node, name: c.name });
      return true;
    });

    // §2.3: each command node is an automation/command-node that takes data forms.
    hooks.on('disco-info-node/host', (event: NodeEvent) => {
      if (event.node === NS_COMMANDS) {
        event.query.c('identity', { category: 'automation', type: 'command-list', name: 'Commands' });
        return true;
      }
      const command = registry.get(event.node);
      if (!command) return false;
      if (!registry.mayRun(command, event.from))
        throw new StanzaError('forbidden', 'you may not run this command', 'cancel');
      event.query.c('identity', { category: 'automation', type: 'command-node', name: command.name });
      event.query.c('feature', { var: NS_COMMANDS });
      event.query.c('feature', { var: NS_DATA });
      return true;
    });

    hooks.on('session/closed', ({ session }: { session: ClientSession }) => registry.forget(session.jid));

    const sweeper = setInterval(
      () => registry.sweep(Date.now()),
      Math.min(server.config.adhoc.sessionTimeout, 60) * 1000,
    );
    sweeper.unref();
    sweepers.set(server, sweeper);
  },
  unload(server) {
    clearInterval(sweepers.get(server));
  },
};
