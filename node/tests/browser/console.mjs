// The operator console against a three-node cluster: sign in with the admin key, see the three
// nodes and the Raft groups, headline metrics, the app with its keys, users, channels and
// moderation queue (the admin key alone), drain a node, and keep
// the key across a reload; the API reference page lists and filters the operations. No page
// logs an error or loads anything from another origin.
// Usage: node console.mjs <base url> <admin key> <app id> <app server key> <http addresses, comma-separated>
import { launch, openPage, visit, until, fail, report } from './common.mjs';

const [base, adminKey, appId, appKey, addrs] = process.argv.slice(2);
const httpAddrs = addrs.split(',').sort();

async function rest(method, path, body) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { 'X-API-Key': appKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) fail(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

// Something for the app's tables to show.
await rest('POST', '/api/users', { user_id: 'console-user', name: 'Console User' });
await rest('POST', '/api/channels', { user_id: 'console-user', type: 'group', name: 'ops room' });

const browser = await launch();
const rows = (page, tbody) =>
  page.$$eval(`#${tbody} tr`, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
const nodeRows = (page) =>
  page.$$eval('[data-testid="node-row"]', (trs) =>
    trs.map((tr) => ({ id: tr.dataset.nodeId, state: tr.dataset.state, http: tr.children[4].textContent })));
const threeActive = (page, what) =>
  until(page, what, (want) => {
    const trs = [...document.querySelectorAll('[data-testid="node-row"]')];
    const http = trs.filter((tr) => tr.dataset.state === 'active').map((tr) => tr.children[4].textContent).sort();
    return JSON.stringify(http) === JSON.stringify(want);
  }, httpAddrs);

await report(browser, async () => {
  const page = await openPage(browser, base, 'console');
  await visit(page, base, '/console');
  await page.fill('[data-testid="admin-key"]', adminKey);
  await page.click('[data-testid="admin-login"]');
  await threeActive(page, 'the console lists the three nodes as active with their HTTP addresses');
  await until(page, 'the Raft groups are listed (the directory and the shards)', () => {
    const kinds = [...document.querySelectorAll('#groups tr td:nth-child(2)')].map((td) => td.textContent);
    return kinds.includes('directory') && kinds.includes('shard');
  });
  await until(page, 'the headline metrics are shown, three nodes among them', () => {
    const v = (id) => document.querySelector(`[data-testid="metric-${id}"] .value`)?.textContent;
    return Number((v('http-requests') || '').replace(/\D/g, '')) > 0 && v('cluster-nodes') === '3';
  });
  const metrics = await page.$$eval('.metric', (boxes) =>
    Object.fromEntries(boxes.map((b) => [b.dataset.testid, b.querySelector('.value').textContent])));

  // The app, its keys, users, channels and moderation queue, with the admin key alone.
  await page.click(`[data-testid="app-row"][data-app-id="${appId}"]`);
  await until(page, 'the app\'s keys are listed', () => document.querySelectorAll('#keys tr').length >= 1);
  await until(page, 'the app\'s users are listed', () =>
    !!document.querySelector('[data-testid="user-row"][data-user-id="console-user"]'));
  await until(page, 'the app\'s channels are listed', () =>
    [...document.querySelectorAll('#channels tr td:nth-child(4)')].some((td) => td.textContent === 'ops room'));
  const channels = await rows(page, 'channels');
  await until(page, 'the moderation queue is read with the admin key', () =>
    /^\d+ pending$/.test(document.getElementById('mod-stats').textContent));
  const keys = await rows(page, 'keys');

  // Drain node 3 (after a confirmation): its row says so.
  const third = (await nodeRows(page)).find((n) => n.id === '3');
  if (!third) fail('no node 3');
  await page.click('[data-testid="drain-3"]');
  await until(page, 'node 3 shows as draining', () =>
    document.querySelector('[data-testid="node-row"][data-node-id="3"]')?.dataset.state === 'draining');

  // The key stays for this tab: a reload opens the console without asking again.
  await page.reload({ waitUntil: 'load' });
  await until(page, 'the console reopens after a reload with the kept key', () =>
    document.querySelectorAll('[data-testid="node-row"]').length === 3 &&
    document.getElementById('login').classList.contains('hidden'));

  // The API reference renders every operation of /api/openapi.json and filters them.
  const docs = await openPage(browser, base, 'api-docs');
  await visit(docs, base, '/api/docs');
  await until(docs, 'the API reference lists the operations', () =>
    document.querySelectorAll('[data-testid="api-op"]').length > 200);
  await docs.fill('[data-testid="api-filter"]', '/api/polls/');
  await until(docs, 'the filter keeps only the poll routes', () => {
    const shown = [...document.querySelectorAll('[data-testid="api-op"]')]
      .filter((op) => !op.classList.contains('api-hidden'));
    return shown.length >= 2 && shown.every((op) => op.textContent.includes('/api/polls/'));
  });
  const apiOps = await docs.$$eval('[data-testid="api-op"]', (ops) => ops.length);

  const result = {
    apiOps,
    nodes: await nodeRows(page),
    groups: (await rows(page, 'groups')).length,
    metrics,
    keys,
    channels,
    error: await page.textContent('[data-testid="error"]'),
  };
  return result;
});
