import { type Client, client, xml } from '@xmpp/client';
import type { Element } from '@xmpp/xml';
import { PASSWORD, type TestServer } from './lethe.js';

export type { Element };
export { xml };

export interface TestClient {
  xmpp: Client;
  jid: string;
  /** Every stanza received since start, in order. */
  received: Element[];
  /** Resolves with the first stanza (already received or future) matching `match`; rejects after `timeoutMs`. */
  waitFor(match: (el: Element) => boolean, timeoutMs?: number, description?: string): Promise<Element>;
  /** Resolves after `ms` if nothing matching arrived, rejects if something did: for asserting absence. */
  expectNothing(match: (el: Element) => boolean, ms?: number): Promise<void>;
  send(el: Element): Promise<void>;
  iq(el: Element, timeoutMs?: number): Promise<Element>;
  stop(): Promise<void>;
}

export interface ClientOptions {
  resource?: string;
  password?: string;
  /** `starttls` (default) or `direct` (XEP-0368 port). */
  transport?: 'starttls' | 'direct';
  /** Choose the SASL mechanism (by default xmpp.js picks). */
  mechanism?: string;
  /** Extra set-up before start (e.g. registering a mechanism on the SASL factory). */
  setup?: (xmpp: Client) => void;
  /** Send initial presence after login (default true). */
  presence?: boolean;
}

/** Connects an @xmpp/client to the test server as `username` and waits until it is online. */
export async function connect(server: TestServer, username: string, options: ClientOptions = {}): Promise<TestClient> {
  const password = options.password ?? PASSWORD;
  const direct = options.transport === 'direct';
  const xmpp = client({
    service: direct ? `xmpps://127.0.0.1:${server.directTlsPort}` : `xmpp://127.0.0.1:${server.port}`,
    domain: server.domain,
    resource: options.resource,
    // xmpp.js waits 2 s by default for the stream to open; a loaded CI machine can take longer.
    timeout: 15_000,
    credentials: options.mechanism
      ? async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
          if (!mechanisms.includes(options.mechanism as string))
            throw new Error(`server did not offer ${options.mechanism}; offered ${mechanisms.join(' ')}`);
          await authenticate({ username, password }, options.mechanism as string);
        }
      : { username, password },
  } as Parameters<typeof client>[0]);
  xmpp.reconnect.stop();
  options.setup?.(xmpp);
  const received: Element[] = [];
  const waiters = new Set<{ match: (el: Element) => boolean; resolve: (el: Element) => void }>();
  xmpp.on('stanza', (el: Element) => {
    received.push(el);
    for (const w of waiters)
      if (w.match(el)) {
        waiters.delete(w);
        w.resolve(el);
      }
  });
  xmpp.on('error', () => {});
  const address = await xmpp.start();
  if (options.presence !== false) await xmpp.send(xml('presence'));
  return {
    xmpp,
    jid: address.toString(),
    received,
    waitFor(match, timeoutMs = 5000, description = 'a matching stanza') {
      const seen = received.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description} at ${address}`));
        }, timeoutMs);
        waiter.resolve = (el) => {
          clearTimeout(timer);
          resolve(el);
        };
        waiters.add(waiter);
      });
    },
    async expectNothing(match, ms = 300) {
      const start = received.length;
      await new Promise((r) => setTimeout(r, ms));
      const hit = received.slice(start).find(match);
      if (hit) throw new Error(`unexpected stanza: ${hit.toString()}`);
    },
    send: (el) => xmpp.send(el),
    iq: (el, timeoutMs = 5000) => xmpp.iqCaller.request(el, timeoutMs),
    async stop() {
      await xmpp.stop().catch(() => {});
    },
  };
}

/**
 * Sends a chat message with `body` (also its id) and resolves with the error that answers it, or
 * undefined when none comes within `ms`: for asserting that a message is, or no longer is, refused.
 */
export async function messageRefused(from: TestClient, to: { toString(): string }, body: string, ms = 1500) {
  await from.send(xml('message', { to: to.toString(), type: 'chat', id: body }, xml('body', {}, body)));
  return from
    .waitFor((el) => el.is('message') && el.attrs.id === body && el.attrs.type === 'error', ms)
    .catch(() => undefined);
}
