import type { ClientSession } from './session.js';

/** Bound client sessions, by bare JID and resource. */
export class SessionManager {
  private readonly byBare = new Map<string, Map<string, ClientSession>>();
  private total = 0;

  get count(): number {
    return this.total;
  }

  add(session: ClientSession): void {
    const bare = session.jid.bareString();
    let resources = this.byBare.get(bare);
    if (!resources) {
      resources = new Map();
      this.byBare.set(bare, resources);
    }
    if (!resources.has(session.jid.resource)) this.total++;
    resources.set(session.jid.resource, session);
  }

  remove(session: ClientSession): boolean {
    const bare = session.jid.bareString();
    const resources = this.byBare.get(bare);
    if (resources?.get(session.jid.resource) !== session) return false;
    resources.delete(session.jid.resource);
    this.total--;
    // Empty maps are dropped so that state never grows with login churn.
    if (resources.size === 0) this.byBare.delete(bare);
    return true;
  }

  get(bare: string, resource: string): ClientSession | undefined {
    return this.byBare.get(bare)?.get(resource);
  }

  /** The account's sessions by resource, without a copy: for per-stanza delivery. Read only. */
  byResource(bare: string): ReadonlyMap<string, ClientSession> | undefined {
    return this.byBare.get(bare);
  }

  /** All bound sessions of an account, available or not. */
  resources(bare: string): ClientSession[] {
    const resources = this.byBare.get(bare);
    return resources ? [...resources.values()] : [];
  }

  /** Sessions that have sent available presence (RFC 6121 "available resources"). */
  available(bare: string): ClientSession[] {
    return this.resources(bare).filter((s) => s.presence !== undefined);
  }

  *all(): IterableIterator<ClientSession> {
    for (const resources of this.byBare.values()) yield* resources.values();
  }
}
