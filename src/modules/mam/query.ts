import { StanzaError } from '../../core/errors.js';
import { buildForm, NS_DATA } from '../../xml/dataform.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import { NS_MAM } from './prefs.js';
import type { ArchiveStore, Cursor, Filter, StoredRow } from './store.js';

/**
 * Archive queries (XEP-0313 §4, with the `#extended` fields, flipped pages and metadata) and their
 * result set management (XEP-0059). A page is read from an index in the direction the client pages
 * (forwards from the start or an `after`, backwards from the end or a `before`), one row more than
 * asked for, which tells whether the page is the last one in that direction (`complete`).
 */

export const NS_RSM = 'http://jabber.org/protocol/rsm';
const KNOWN_FIELDS = new Set(['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
/** XEP-0082 date-time, which `Date.parse` alone would accept far too loosely. */
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export interface Query {
  queryid: string | undefined;
  with: Jid | undefined;
  start: number | undefined;
  end: number | undefined;
  afterId: string | undefined;
  beforeId: string | undefined;
  ids: string[] | undefined;
  max: number;
  /** RSM `after`. */
  after: string | undefined;
  /** RSM `before`: '' asks for the last page. */
  before: string | undefined;
  flip: boolean;
}

export interface Page {
  /** In chronological order. */
  rows: StoredRow[];
  complete: boolean;
  count: number;
}

/** The form a client gets when it asks which fields queries take (§4.1.6). */
export function queryForm(): XmlElement {
  const form = buildForm('form', [
    { var: 'FORM_TYPE', type: 'hidden', values: [NS_MAM] },
    { var: 'with', type: 'jid-single' },
    { var: 'start', type: 'text-single' },
    { var: 'end', type: 'text-single' },
    { var: 'before-id', type: 'text-single' },
    { var: 'after-id', type: 'text-single' },
    { var: 'ids', type: 'list-multi' },
  ]);
  // §4.1.6: the list of ids is open, never enumerated.
  form
    .getChildren('field')
    .find((f) => f.attrs.var === 'ids')
    ?.c('validate', { xmlns: 'http://jabber.org/protocol/xdata-validate', datatype: 'xs:string' })
    .c('open');
  return x('query', { xmlns: NS_MAM }, form);
}

function time(value: string, field: string): number {
  const ms = DATETIME.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new StanzaError('bad-request', `${field} is not an XEP-0082 date-time`);
  return ms;
}

export function parseQuery(el: XmlElement, maxPage: number): Query {
  const values = new Map<string, string[]>();
  const form = el.getChild('x', NS_DATA);
  if (form) {
    for (const field of form.getChildren('field')) {
      const name = field.attrs.var;
      if (!name) continue;
      // §4.1.6: a field the server does not know is refused.
      if (!KNOWN_FIELDS.has(name)) throw new StanzaError('feature-not-implemented', `unknown field ${name}`);
      values.set(
        name,
        field.getChildren('value').map((v) => v.text().trim()),
      );
    }
    const type = values.get('FORM_TYPE')?.[0];
    if (type !== undefined && type !== NS_MAM) throw new StanzaError('bad-request', `FORM_TYPE must be ${NS_MAM}`);
  }
  const one = (name: string) => {
    const v = values.get(name)?.[0];
    return v === undefined || v === '' ? undefined : v;
  };
  const withText = one('with');
  const withJid = withText === undefined ? undefined : Jid.tryParse(withText);
  if (withText !== undefined && !withJid) throw new StanzaError('jid-malformed', 'with is not a JID');
  const start = one('start');
  const end = one('end');
  const ids = values.get('ids')?.filter((v) => v !== '');
  if (ids && ids.length > maxPage) throw new StanzaError('policy-violation', `ask for at most ${maxPage} ids at once`);

  const set = el.getChild('set', NS_RSM);
  if (set?.getChild('index')) throw new StanzaError('feature-not-implemented', 'paging by index is not supported');
  const maxText = set?.getChildText('max')?.trim();
  let max = maxPage;
  if (maxText !== undefined) {
    if (!/^\d+$/.test(maxText)) throw new StanzaError('bad-request', 'max must be a non-negative integer');
    max = Math.min(Number(maxText), maxPage);
  }
  const before = set?.getChild('before');
  const after = set?.getChildText('after')?.trim();
  return {
    queryid: el.attrs.queryid,
    with: withJid,
    start: start === undefined ? undefined : time(start, 'start'),
    end: end === undefined ? undefined : time(end, 'end'),
    afterId: one('after-id'),
    beforeId: one('before-id'),
    ids: ids?.length ? [...new Set(ids)] : undefined,
    max,
    after: after === '' ? undefined : after,
    before: before ? before.text().trim() : undefined,
    flip: el.getChild('flip-page', NS_MAM) !== undefined,
  };
}

async function cursorOf(store: ArchiveStore, owner: string, id: string): Promise<Cursor> {
  const cursor = await store.cursor(owner, id);
  // §4.1.5 and §4.3.2: an id that is not in the archive.
  if (!cursor) throw new StanzaError('item-not-found', `no message ${id} in the archive`);
  return cursor;
}

export async function runQuery(store: ArchiveStore, owner: string, q: Query): Promise<Page> {
  const filter: Filter = { after: [], before: [] };
  if (q.with) {
    filter.peer = q.with.bareString();
    if (q.with.resource) filter.peerResource = q.with.resource;
  }
  filter.start = q.start;
  filter.end = q.end;
  if (q.afterId !== undefined) filter.after.push(await cursorOf(store, owner, q.afterId));
  if (q.beforeId !== undefined) filter.before.push(await cursorOf(store, owner, q.beforeId));
  if (q.ids) {
    filter.ids = q.ids;
    if ((await store.count(owner, { after: [], before: [], ids: q.ids })) !== q.ids.length)
      throw new StanzaError('item-not-found', 'some of the ids are not in the archive');
  }
  // RSM narrows the page, not the result set that `count` describes.
  const paged: Filter = { ...filter, after: [...filter.after], before: [...filter.before] };
  if (q.after !== undefined) paged.after.push(await cursorOf(store, owner, q.after));
  if (q.before) paged.before.push(await cursorOf(store, owner, q.before));
  const backward = q.before !== undefined;
  const count = await store.count(owner, filter);
  if (q.max === 0) return { rows: [], complete: count === 0, count };
  const rows = await store.page(owner, paged, q.max + 1, backward);
  const complete = rows.length <= q.max;
  const page = rows.slice(0, q.max);
  if (backward) page.reverse();
  return { rows: page, complete, count };
}

/** The iq result's `<fin/>`: first and last of the page in chronological order, whatever the flip. */
export function fin(page: Page): XmlElement {
  const el = x('fin', { xmlns: NS_MAM, complete: page.complete ? 'true' : undefined });
  const set = el.c('set', { xmlns: NS_RSM });
  const first = page.rows[0];
  const last = page.rows[page.rows.length - 1];
  if (first && last) {
    set.c('first').t(first.id);
    set.c('last').t(last.id);
  }
  set.c('count').t(String(page.count));
  return el;
}
