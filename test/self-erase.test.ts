import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

const SELF_ERASE_NODE = 'urn:lethe:privacy:delete-account';

import { Jid } from '../src/xml/jid.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** The "Delete my account" ad-hoc command: re-authentication, confirmation, then erasure through the registry. */

const NS = 'http://jabber.org/protocol/commands';

function submit(pairs: Record<string, string>): Element {
  return xml(
    'x',
    { xmlns: 'jabber:x:data', type: 'submit' },
    ...Object.entries(pairs).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
  );
}

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

for (const graceDays of [30, 0]) {
  describe(`Delete my account, grace period ${graceDays} days`, () => {
    let server: TestServer;
    let alice: TestClient;
    const command = (attrs: Record<string, string>, ...payload: Element[]) =>
      alice.iq(
        xml(
          'iq',
          { type: 'set', to: server.domain },
          xml('command', { xmlns: NS, node: SELF_ERASE_NODE, ...attrs }, ...payload),
        ),
      );

    before(async () => {
      server = await startTestServer({ erasure: { graceDays } });
      await server.addUser('alice');
      alice = await connect(server, 'alice');
    });
    after(async () => {
      await alice.stop();
      await server.stop();
    });

    test('the form lists what goes; a wrong password or no confirmation is refused; then the account goes', async () => {
      const first = (await command({ action: 'execute' })).getChild('command', NS) as Element;
      assert.equal(first.attrs.status, 'executing');
      const form = first.getChild('x', 'jabber:x:data') as Element;
      assert.match(form.getChildText('instructions') ?? '', /account \(1\)/, 'the account itself is listed');
      const sessionid = first.attrs.sessionid as string;
      assert.equal(
        await condition(command({ sessionid, action: 'complete' }, submit({ password: 'wrong', confirm: 'true' }))),
        'bad-request',
      );
      assert.equal(
        await condition(command({ sessionid, action: 'complete' }, submit({ password: PASSWORD, confirm: 'false' }))),
        'bad-request',
      );
      const gone = new Promise<void>((resolve) => alice.xmpp.once('disconnect', () => resolve()));
      const done = (
        await command({ sessionid, action: 'complete' }, submit({ password: PASSWORD, confirm: '1' }))
      ).getChild('command', NS) as Element;
      assert.equal(done.attrs.status, 'completed');
      assert.match(done.getChildText('note') ?? '', graceDays ? /will be erased on \d{4}-\d\d-\d\d/ : /erased now/);
      await gone;
      const accounts = server.running.server.accounts;
      const jid = new Jid('alice', server.domain);
      if (graceDays) {
        assert.ok(await accounts.get(jid), 'kept until the grace period ends');
        await assert.rejects(connect(server, 'alice'), /account-disabled/);
      } else {
        assert.equal(await accounts.get(jid), undefined, 'erased at once');
        await assert.rejects(connect(server, 'alice'), /not-authorized/);
      }
    });
  });
}
