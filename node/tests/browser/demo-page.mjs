// The demo chat page as the browser tests drive it: sign in as a demo user, send, and wait until
// a message is shown.
import { openPage, visit, until } from './common.mjs';

// What a page shows: every message with its text, how it arrived and how often realtime
// delivered it.
export const shown = (page) =>
  page.$$eval('[data-testid="message"]', (items) =>
    items.map((li) => ({
      text: li.querySelector('.text').textContent,
      author: li.querySelector('.author').textContent,
      via: li.dataset.via,
      deliveries: Number(li.dataset.deliveries),
    })),
  );

export async function signIn(browser, base, name, n) {
  const page = await openPage(browser, base, name);
  await visit(page, base, '/demo');
  await page.click(`[data-testid="login-user-${n}"]`);
  await until(page, `${name} signed in with the demo channel open and subscribed`, () => {
    const state = document.querySelector('[data-testid="conn-state"]').dataset.state;
    const list = document.querySelector('[data-testid="messages"]');
    return (
      state === 'connected' &&
      list.dataset.subscribed === 'yes' &&
      document.querySelector('[data-testid="channel-name"]').textContent === 'Demo' &&
      !document.querySelector('[data-testid="message-input"]').disabled
    );
  });
  const me = await page.textContent('[data-testid="me"]');
  return { page, me };
}

// A page acts in front: the tab in the background has its animation frames paused, which
// slows Playwright's actions down to a second or more.
export async function send(page, text) {
  await page.bringToFront();
  await page.fill('[data-testid="message-input"]', text);
  await page.click('[data-testid="send"]');
  await until(page, `the sender shows ${JSON.stringify(text)}`, (t) =>
    [...document.querySelectorAll('[data-testid="message"] .text')].some((e) => e.textContent === t), text);
}

export const hasMessage = (page, text, what, via) =>
  until(page, what, ([t, v]) =>
    [...document.querySelectorAll('[data-testid="message"]')].some(
      (li) => li.querySelector('.text').textContent === t && (!v || li.dataset.via === v),
    ), [text, via]);
