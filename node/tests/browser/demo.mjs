// The demo chat page in two browser pages, Alice and Bob, on one dev node: each sees what the
// other sends in realtime; Bob goes offline while Alice sends two messages and reconnects: his
// page recovers exactly those, once each; Bob reconnects again while Alice sends: every message
// is shown once. No page logs an error or loads anything from another origin.
// Usage: node demo.mjs <base url>. Prints one JSON line with what the pages showed.
import { launch, until, fail, report } from './common.mjs';
import { shown, signIn, send, hasMessage } from './demo-page.mjs';

const [base] = process.argv.slice(2);
const browser = await launch();

await report(browser, async () => {
  const alice = await signIn(browser, base, 'alice', '1');
  const bob = await signIn(browser, base, 'bob', '2');

  // Live, both ways.
  await send(alice.page, 'Hello Bob <b>not bold</b>');
  await hasMessage(bob.page, 'Hello Bob <b>not bold</b>', 'Bob sees Alice\'s message live', 'live');
  await send(bob.page, 'Hi Alice');
  await hasMessage(alice.page, 'Hi Alice', 'Alice sees Bob\'s message live', 'live');

  // Bob goes offline; Alice sends two; Bob reconnects and recovers them.
  await bob.page.bringToFront();
  await bob.page.click('[data-testid="disconnect"]');
  await until(bob.page, 'Bob is offline', () =>
    document.querySelector('[data-testid="conn-state"]').dataset.state === 'disconnected');
  await send(alice.page, 'missed 1');
  await send(alice.page, 'missed 2');
  await bob.page.bringToFront();
  await bob.page.click('[data-testid="reconnect"]');
  await until(bob.page, 'Bob\'s page reports recovering the two missed messages', () => {
    const box = document.querySelector('[data-testid="recovery"]');
    return !box.classList.contains('hidden') && box.dataset.recovered !== undefined;
  });
  const recovery = {
    text: await bob.page.textContent('[data-testid="recovery"]'),
    count: await bob.page.getAttribute('[data-testid="recovery"]', 'data-recovered'),
  };
  await hasMessage(bob.page, 'missed 2', 'Bob shows the second missed message', 'recovered');
  const afterRecovery = await shown(bob.page);

  // Bob reconnects while Alice sends: whether they come live or recovered, each shows once.
  await bob.page.bringToFront();
  await bob.page.click('[data-testid="reconnect"]');
  await send(alice.page, 'during reconnect 1');
  await send(alice.page, 'during reconnect 2');
  await until(bob.page, 'Bob is subscribed again', () =>
    document.querySelector('[data-testid="messages"]').dataset.subscribed === 'yes');
  await hasMessage(bob.page, 'during reconnect 2', 'Bob shows the messages sent while he reconnected');
  await hasMessage(bob.page, 'during reconnect 1', 'Bob shows the messages sent while he reconnected');
  // A message Alice sends now still reaches Bob live.
  await send(alice.page, 'after reconnect');
  await hasMessage(bob.page, 'after reconnect', 'Bob sees live messages after reconnecting', 'live');
  await hasMessage(alice.page, 'after reconnect', 'Alice shows her own message');

  // The pages show their own errors (never as uncaught ones): none may show any.
  for (const [name, page] of [['alice', alice.page], ['bob', bob.page]]) {
    const shownError = await page.textContent('[data-testid="error"]');
    if (shownError) fail(`${name}'s page shows an error: ${shownError}`);
  }
  const result = {
    alice: alice.me,
    bob: bob.me,
    recovery,
    afterRecovery,
    bobFinal: await shown(bob.page),
    aliceFinal: await shown(alice.page),
    bobConnState: await bob.page.getAttribute('[data-testid="conn-state"]', 'data-state'),
  };
  return result;
});
