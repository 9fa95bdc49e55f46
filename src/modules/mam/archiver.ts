import type { Server } from '../../core/server.js';
import type { XmlElement } from '../../xml/element.js';
import type { Jid } from '../../xml/jid.js';
import { rosterStore } from '../roster/store.js';
import { NS_MAM } from './prefs.js';
import type { ArchiveStore, Direction, NewEntry } from './store.js';

/**
 * What goes into an archive, and the queue that writes it.
 *
 * Archived (XEP-0313 §5.1.1, RFC 6121): chat and normal messages with something to read later: a body
 * or any payload other than chat states, ids, delays, hints and a thread (receipts, markers, encrypted
 * payloads, corrections). Not archived: groupchat (no MUC here yet), headline and error messages,
 * chat-state-only messages, and messages with a `<no-store/>` or `<no-permanent-store/>` hint (XEP-0334);
 * a `<store/>` hint archives a message that would otherwise not be. Messages that carry someone's
 * archive results or carbons are copies of other messages, never archived again.
 *
 * The routing path only decides and serialises; sealing and writing happen off it, in batches, one
 * batch at a time in arrival order. Whoever reads the archive first waits for `settled()`, so a client
 * always finds what it sent or received before its query.
 */

const NS_HINTS = 'urn:xmpp:hints';
const NS_CLIENT = 'jabber:client';
const NS_CARBONS = 'urn:xmpp:carbons:2';
/** Children that do not make a message worth archiving on their own. */
const INCIDENTAL = new Set(['http://jabber.org/protocol/chatstates', 'urn:xmpp:sid:0', 'urn:xmpp:delay', NS_HINTS]);

/** What each archived message is sealed for, bound into its ciphertext with the owner's address. */
export const PURPOSE = 'archive';

export function worthArchiving(stanza: XmlElement): boolean {
  const type = stanza.attrs.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return false;
  let content = false;
  let store = false;
  for (const child of stanza.children) {
    if (typeof child === 'string') continue;
    const ns = child.xmlns;
    const name = child.localName;
    if (ns === NS_HINTS && (name === 'no-store' || name === 'no-permanent-store')) return false;
    if ((ns === NS_MAM && name === 'result') || ns === NS_CARBONS) return false;
    if (ns === NS_HINTS && name === 'store') store = true;
    else if (!INCIDENTAL.has(ns ?? '') && !(name === 'thread' && (ns === NS_CLIENT || ns === undefined)))
      content = true;
  }
  return content || store;
}

export interface Pending {
  owner: Jid;
  id: string;
  ts: number;
  peer: Jid;
  direction: Direction;
  stanza: string;
  /** The owner's default is `roster`: archived only if the peer is in their roster. */
  ifInRoster: boolean;
}

export class ArchiveWriter {
  private pending: Pending[] = [];
  private scheduled = false;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly server: Server,
    private readonly store: ArchiveStore,
  ) {}

  push(entry: Pending): void {
    this.pending.push(entry);
    if (this.scheduled) return;
    this.scheduled = true;
    this.tail = this.tail.then(() => {
      this.scheduled = false;
      const batch = this.pending;
      this.pending = [];
      return this.write(batch).catch((err) => this.server.log.error({ err }, 'could not archive messages'));
    });
  }

  /** Resolves once everything pushed so far is written. */
  settled(): Promise<void> {
    return this.tail;
  }

  private async write(batch: Pending[]): Promise<void> {
    const entries: NewEntry[] = [];
    for (const p of batch) {
      const owner = p.owner.bareString();
      if (p.ifInRoster && !(await rosterStore(this.server).item(owner, p.peer.bareString()))) continue;
      let sealed: Buffer;
      try {
        sealed = await this.server.keys.sealFor(p.owner, p.stanza, PURPOSE);
      } catch (err) {
        // No key can be made for an account that does not exist (any more): nothing to archive for it.
        this.server.log.debug({ err }, 'a message was not archived');
        continue;
      }
      entries.push({
        owner,
        id: p.id,
        ts: p.ts,
        peer: p.peer.bareString(),
        peerResource: p.peer.resource,
        direction: p.direction,
        sealed,
      });
    }
    if (entries.length) await this.store.append(entries);
  }
}
