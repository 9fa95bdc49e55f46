// Minimal typings for the parts of xmpp.js the tests use; the library ships none.
declare module '@xmpp/xml' {
  export class Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: (Element | string)[];
    constructor(name: string, attrs?: Record<string, string | undefined>);
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getChildElements(): Element[];
    getText(): string;
    text(): string;
    attr(name: string): string | undefined;
    c(name: string, attrs?: Record<string, string | undefined>): Element;
    t(text: string): Element;
    up(): Element;
    append(...children: (Element | string)[]): Element;
    toString(): string;
  }
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: (Element | string | undefined)[]
  ): Element;
  export default xml;
}

declare module '@xmpp/client' {
  import type { Element } from '@xmpp/xml';

  export { xml } from '@xmpp/xml';
  export interface Jid {
    toString(): string;
    bare(): Jid;
    local: string;
    domain: string;
    resource: string;
  }
  export interface Client {
    jid: Jid | null;
    status: string;
    socket: { socket?: unknown } | null;
    start(): Promise<Jid>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    sendReceive?(el: Element): Promise<Element>;
    write(data: string): Promise<void>;
    on(event: string, fn: (...args: never[]) => void): void;
    once(event: string, fn: (...args: never[]) => void): void;
    reconnect: { stop(): void };
    iqCaller: { request(el: Element, timeout?: number): Promise<Element> };
    iqCallee: {
      get(
        ns: string,
        name: string,
        fn: (ctx: { stanza: Element; element: Element }) => Element | boolean | undefined,
      ): void;
      set(
        ns: string,
        name: string,
        fn: (ctx: { stanza: Element; element: Element }) => Element | boolean | undefined,
      ): void;
    };
    saslFactory: { use(name: string, mechanism: unknown): void; use(mechanism: unknown): void };
    streamManagement?: unknown;
  }
  export function client(options: Record<string, unknown>): Client;
}
