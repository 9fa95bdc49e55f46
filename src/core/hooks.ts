/**
 * Prosody-style named events. A handler returns true when it has dealt with the event, which stops
 * handlers of lower priority. Handlers may be async; `fire` stays synchronous while they are not,
 * which keeps the routing path free of needless promise allocation.
 */
export type HookResult = boolean | undefined;
export type Handler<E> = (event: E) => HookResult | Promise<HookResult> | void | Promise<void>;

interface Entry {
  handler: Handler<never>;
  priority: number;
}

export class Hooks {
  private readonly table = new Map<string, Entry[]>();

  /** Higher priority runs first; equal priorities run in registration order. */
  on<E>(name: string, handler: Handler<E>, priority = 0): () => void {
    const list = this.table.get(name) ?? [];
    const entry = { handler: handler as Handler<never>, priority };
    const at = list.findIndex((e) => e.priority < priority);
    if (at === -1) list.push(entry);
    else list.splice(at, 0, entry);
    this.table.set(name, list);
    return () => {
      const current = this.table.get(name);
      if (!current) return;
      const i = current.indexOf(entry);
      if (i !== -1) current.splice(i, 1);
    };
  }

  has(name: string): boolean {
    return (this.table.get(name)?.length ?? 0) > 0;
  }

  fire<E>(name: string, event: E): boolean | Promise<boolean> {
    const list = this.table.get(name);
    if (!list) return false;
    return runFrom(list.slice(), 0, event);
  }

  /** Runs every handler regardless of results (notifications such as `session/closed`). */
  async notify<E>(name: string, event: E): Promise<void> {
    const list = this.table.get(name);
    if (!list) return;
    for (const { handler } of list.slice()) await (handler as Handler<E>)(event);
  }
}

function runFrom<E>(list: Entry[], start: number, event: E): boolean | Promise<boolean> {
  for (let i = start; i < list.length; i++) {
    const result = (list[i] as Entry).handler(event as never);
    if (result === true) return true;
    if (result instanceof Promise) {
      return result.then((r) => (r === true ? true : runFrom(list, i + 1, event)));
    }
  }
  return false;
}
