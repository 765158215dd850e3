// What the browser tests share: a headless Chromium with a fresh profile, pages that record
// every console error, page error and request to another origin, and waits on conditions with
// deadlines (never sleeps).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const WAIT_MS = 30000;
// The whole script's deadline: a hang fails instead of blocking the test.
const SCRIPT_MS = 240000;

// Every problem the pages reported, and what to remove on exit.
const problems = [];
const profiles = [];

export function fail(message) {
  console.error(`FAILED: ${message}`);
  if (problems.length) console.error(`the pages also reported:\n${problems.join('\n')}`);
  for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}

setTimeout(() => fail(`the script did not finish within ${SCRIPT_MS} ms`), SCRIPT_MS).unref();

/** Chromium from Debian's package, headless, with a profile of its own. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'chatsdk-chromium-'));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: WAIT_MS,
  });
  context.setDefaultTimeout(WAIT_MS);
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, problems, close };
}

/**
 * A new page that records into `problems` every console error, uncaught error and request (or
 * WebSocket) to an origin other than `base`'s.
 */
export async function openPage({ context, problems }, base, name) {
  const page = await context.newPage();
  const origin = new URL(base);
  const foreign = (url) => {
    const u = new URL(url);
    if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return false;
    return u.host !== origin.host;
  };
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: uncaught: ${e.message}`));
  page.on('request', (r) => {
    if (foreign(r.url())) problems.push(`${name}: request to another origin: ${r.url()}`);
  });
  page.on('websocket', (ws) => {
    if (foreign(ws.url())) problems.push(`${name}: WebSocket to another origin: ${ws.url()}`);
  });
  page.on('dialog', (d) => d.accept());
  return page;
}

/** Loads `path` and checks that the server sent its content security policy. */
export async function visit(page, base, path) {
  const res = await page.goto(new URL(path, base).href, { waitUntil: 'load' });
  if (!res || res.status() !== 200) fail(`GET ${path}: ${res && res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  if (!csp.includes("script-src 'self'")) fail(`GET ${path}: no content security policy (${csp})`);
}

/** Waits until `fn(arg)` holds in the page, failing with `what` at the deadline. */
export async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (e) {
    const shot = join(tmpdir(), `chatsdk-browser-${Date.now()}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    fail(`${what} (not within ${WAIT_MS} ms; screenshot ${shot}): ${e.message.split('\n')[0]}`);
  }
}

/** Fails when any page reported a problem (`fail` lists them). */
export function check(reported) {
  if (reported.length) fail(`the pages reported ${reported.length} problem(s)`);
}

/**
 * Runs a script's `work` with its browser and prints what it returns as one JSON line; an error,
 * or anything a page reported (see `openPage`), fails the script instead.
 */
export async function report(browser, work) {
  try {
    const result = await work();
    check(browser.problems);
    console.log(JSON.stringify(result));
  } catch (e) {
    fail(e.stack || String(e));
  } finally {
    await browser.close();
  }
  process.exit(0);
}
