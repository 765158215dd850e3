// The demo page's session over time, on a dev node whose tokens live a few seconds: the
// realtime connection renews its token in place (no reconnect) and REST calls renew theirs
// before they expire; when the server removes Bob from the channel his page says so and stops
// receiving it; when his tokens are revoked the server disconnects him for good.
// Usage: node session.mjs <base url> <server API key>. Prints one JSON line with what it saw.
import { launch, until, fail, report } from './common.mjs';
import { signIn, send, hasMessage, shown } from './demo-page.mjs';

const [base, serverKey] = process.argv.slice(2);
const browser = await launch();

const badge = (page, attr) => page.getAttribute('[data-testid="conn-state"]', attr);

async function serverCall(method, path) {
  const res = await fetch(`${base}${path}`, { method, headers: { 'X-API-Key': serverKey } });
  if (!res.ok) fail(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
}

await report(browser, async () => {
  const alice = await signIn(browser, base, 'alice', '1');
  const bob = await signIn(browser, base, 'bob', '2');

  // Several token lifetimes pass: both connections renew their tokens without reconnecting.
  for (const [name, page] of [['alice', alice.page], ['bob', bob.page]]) {
    await until(page, `${name}'s connection renewed its token twice`, () =>
      Number(document.querySelector('[data-testid="conn-state"]').dataset.refreshes || 0) >= 2);
  }
  // Alice's access token has expired by now: her page renews it and the send goes through.
  await send(alice.page, 'after the tokens expired');
  await hasMessage(bob.page, 'after the tokens expired', 'Bob sees it live', 'live');
  const renewed = {
    aliceConnects: await badge(alice.page, 'data-connects'),
    bobConnects: await badge(bob.page, 'data-connects'),
    bobState: await badge(bob.page, 'data-state'),
  };

  // The server removes Bob from the channel: his subscription ends and his page says so.
  const channelId = await bob.page.getAttribute('#channels button.open', 'data-channel-id');
  await serverCall('DELETE', `/api/channels/${encodeURIComponent(channelId)}/members/user-2`);
  await until(bob.page, "Bob's page reports the server ended his subscription", () =>
    document.querySelector('[data-testid="error"]').textContent.includes('unsubscribed by the server'));
  await send(alice.page, 'after Bob left');

  // Bob's tokens are revoked: the server disconnects him and his page does not come back.
  await serverCall('POST', '/api/users/user-2/revoke-tokens');
  await until(bob.page, "Bob's page is disconnected by the server", () =>
    document.querySelector('[data-testid="conn-state"]').dataset.state === 'disconnected');
  const result = {
    renewed,
    unsubscribed: await bob.page.textContent('[data-testid="error"]'),
    bobShows: await shown(bob.page),
    disconnected: await bob.page.textContent('[data-testid="conn-state"]'),
    bobConnects: await badge(bob.page, 'data-connects'),
    aliceState: await badge(alice.page, 'data-state'),
  };
  return result;
});
