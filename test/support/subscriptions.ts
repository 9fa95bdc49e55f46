import type { TestClient } from './xmpp.js';
import { xml } from './xmpp.js';

/**
 * `viewer` subscribes to `owner`'s presence and `owner` approves (RFC 6121 §3.1): afterwards the
 * owner's roster has the viewer with subscription `from`, the viewer's has the owner with `to`.
 * Both clients must have sent initial presence. Resolves once the viewer has the approval.
 */
export async function sharePresence(owner: TestClient, viewer: TestClient): Promise<void> {
  const ownerBare = owner.jid.split('/')[0] as string;
  const viewerBare = viewer.jid.split('/')[0] as string;
  await viewer.send(xml('presence', { to: ownerBare, type: 'subscribe' }));
  await owner.waitFor(
    (el) => el.is('presence') && el.attrs.type === 'subscribe' && el.attrs.from === viewerBare,
    5000,
    `a subscription request from ${viewerBare}`,
  );
  await owner.send(xml('presence', { to: viewerBare, type: 'subscribed' }));
  await viewer.waitFor(
    (el) => el.is('presence') && el.attrs.type === 'subscribed' && el.attrs.from === ownerBare,
    5000,
    `the approval from ${ownerBare}`,
  );
}
