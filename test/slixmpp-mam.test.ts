import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSlixmppScript, SLIXMPP_PASSWORD, skipWithoutSlixmpp, withLetheForSlixmpp } from './support/slixmpp.js';

/**
 * slixmpp's XEP-0313 and XEP-0441 plugins (Debian's python3-slixmpp) against `lethe start` with the
 * default configuration: archiving is opt-in, a message from before opting in is not archived, and a
 * history of 25 messages both ways with bob (and one from carol halfway) is read back in pages of 10 with
 * slixmpp's XEP-0059 iterator, forwards, backwards and filtered on bob.
 */
const SCRIPT = 'slixmpp_mam.py';
const MESSAGES = 25;
const PAGE = 10;
const CAROL = 'from carol, not bob';
/** Alice's archive as it must be: the 25 with bob, in the order sent, carol's after the 12th. */
const WITH_BOB = Array.from({ length: MESSAGES }, (_, i) => `archived message ${String(i + 1).padStart(2, '0')}`);
const ALL = [...WITH_BOB.slice(0, 12), CAROL, ...WITH_BOB.slice(12)];

interface Archived {
  id: string;
  queryid: string;
  from: string;
  to: string;
  body: string;
  stamp: string | null;
}

interface PageSeen {
  bodies: string[];
  first: string;
  last: string;
  count: string;
  complete: string | null;
}

test('slixmpp: opt in with XEP-0441, then page through a 25-message archive (XEP-0313 + XEP-0059) both ways and by peer', {
  timeout: 150_000,
}, async (t) => {
  if (skipWithoutSlixmpp(t)) return;
  const password = SLIXMPP_PASSWORD;
  await withLetheForSlixmpp(['alice', 'bob', 'carol'], async (port) => {
    const before = Date.now();
    const r = await runSlixmppScript(
      SCRIPT,
      [
        ...['--port', String(port), '--domain', 'cli.test', '--password', password],
        ...['--timeout', '75', '--messages', String(MESSAGES), '--page', String(PAGE)],
      ],
      100_000,
    );
    const after = Date.now();
    const { line } = r;
    assert.equal(r.status, 0, `slixmpp run failed: ${line}\n${r.stderr.slice(-3000)}`);
    const result = JSON.parse(line);

    // Opt-in: nothing archived by default, until alice's client says `always`.
    assert.deepEqual(result.prefs_initial, { default: 'never', always: [], never: [] });
    assert.equal(result.prefs_set_reply, 'always');
    assert.equal(result.prefs_after, 'always');

    assert.deepEqual(result.sent, ALL, 'what the script sent');

    // Message by message with slixmpp's iterate(): the whole history in order, once each.
    const forward: Archived[] = result.forward;
    assert.deepEqual(
      forward.map((m) => m.body),
      ALL,
      'forwards: every message after opting in, in order, and nothing from before',
    );
    assert.ok(!forward.some((m) => m.body.startsWith('before opting in')), 'a message from before opting in');
    const ids = forward.map((m) => m.id);
    assert.ok(
      ids.every((id) => typeof id === 'string' && id.length > 0),
      `archive ids: ${ids}`,
    );
    assert.equal(new Set(ids).size, ALL.length, 'archive ids are unique');
    let previous = before - 1000;
    for (const m of forward) {
      assert.ok(m.queryid, `result without queryid: ${JSON.stringify(m)}`);
      assert.ok(m.stamp, `result without a delay stamp: ${JSON.stringify(m)}`);
      const stamp = Date.parse(m.stamp);
      assert.ok(stamp >= previous && stamp <= after + 1000, `delay stamp ${m.stamp} out of order or range`);
      previous = stamp;
    }
    // Both directions are alice's copies: bob's (odd) came in to her, hers (even) went out to him.
    for (const m of forward) {
      const n = Number(m.body.slice(-2));
      const [from, to] =
        m.body === CAROL
          ? ['carol@cli.test/slix', 'alice@cli.test']
          : n % 2
            ? ['bob@cli.test/slix', 'alice@cli.test']
            : ['alice@cli.test/slix', 'bob@cli.test'];
      assert.deepEqual([m.from, m.to], [from, to], m.body);
    }

    // Backwards (RSM <before/>): the same messages, newest first.
    const backward: Archived[] = result.backward;
    assert.deepEqual(
      backward.map((m) => m.body),
      [...ALL].reverse(),
    );
    assert.deepEqual(
      backward.map((m) => m.id),
      [...ids].reverse(),
    );

    // `with` bob: all of his, not carol's, under the same ids; a stranger's history is empty.
    const withBob: Archived[] = result.with_bob;
    assert.deepEqual(
      withBob.map((m) => m.body),
      WITH_BOB,
    );
    assert.deepEqual(
      withBob.map((m) => m.id),
      forward.filter((m) => m.body !== CAROL).map((m) => m.id),
    );
    assert.deepEqual(result.with_nobody, []);

    // The pages slixmpp's XEP-0059 iterator fetched: 10, 10, 6, with first/last/count and `complete` on
    // the last one in the paging direction.
    const chunks = (list: string[]) => [list.slice(0, PAGE), list.slice(PAGE, 2 * PAGE), list.slice(2 * PAGE)];
    const pagesForward: PageSeen[] = result.pages_forward;
    assert.deepEqual(
      pagesForward.map((p) => p.bodies),
      chunks(ALL),
    );
    const idChunks = chunks(ids);
    pagesForward.forEach((p, i) => {
      assert.equal(p.first, idChunks[i]?.[0]);
      assert.equal(p.last, idChunks[i]?.at(-1));
      assert.equal(p.count, String(ALL.length));
      assert.equal(p.complete, i === 2 ? 'true' : null, `forward page ${i + 1} complete`);
    });
    const pagesBackward: PageSeen[] = result.pages_backward;
    // Each page is chronological inside; the pages go from the newest.
    assert.deepEqual(
      pagesBackward.map((p) => p.bodies),
      [ALL.slice(16), ALL.slice(6, 16), ALL.slice(0, 6)],
    );
    assert.deepEqual(
      pagesBackward.map((p) => p.complete),
      [null, null, 'true'],
    );
    assert.deepEqual(
      pagesBackward.map((p) => [p.first, p.last]),
      [
        [ids[16], ids[25]],
        [ids[6], ids[15]],
        [ids[0], ids[5]],
      ],
    );
  });
});
