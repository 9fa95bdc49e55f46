import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { after, before } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';

/**
 * The harness of the browser tests (test/*-browser.test.ts): Debian's Chromium driven by
 * playwright-core, headless, on a fresh temporary profile that Playwright makes and removes itself.
 * The tests skip loudly when Chromium is missing; they never pass without a browser. A real browser
 * is what enforces the pages' Content-Security-Policy (form-action included), which plain HTTPS
 * requests never check.
 */

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
/** Bound on every page action, wait and navigation. */
export const PAGE_TIMEOUT_MS = 15_000;
const LAUNCH_TIMEOUT_MS = 30_000;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Chromium to drive: $LETHE_TEST_CHROMIUM when set (the only candidate then; a path that does not
 * exist shows the skip), else /usr/bin/chromium, else `command -v chromium`; undefined when there is none.
 */
export function findChromium(): string | undefined {
  const chosen = process.env.LETHE_TEST_CHROMIUM;
  if (chosen) return executable(chosen) ? chosen : undefined;
  if (executable('/usr/bin/chromium')) return '/usr/bin/chromium';
  const r = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' });
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path && executable(path) ? path : undefined;
}

export const CHROMIUM: string | undefined = findChromium();

/**
 * The `skip` option of every browser test: false with Chromium, else the reason, which the test runner
 * prints (`# SKIP <reason>`, counted in `# skipped`) and which is also written to standard error when
 * this module loads: `test('...', { skip: skipWithoutBrowser }, async () => { ... })`. Hooks are not
 * skipped with their tests: guard them (`if (skipWithoutBrowser) return;`) or use `useBrowser`.
 */
export const skipWithoutBrowser: string | false = CHROMIUM
  ? false
  : 'Chromium is not installed (apt-get install -y chromium): this browser test did not run';
if (skipWithoutBrowser) console.warn(`SKIPPED browser tests: ${skipWithoutBrowser}`);

/** The same check in the style of skipWithoutSlixmpp, inside a test: true (and skipped, loudly) without Chromium. */
export function skipUnlessBrowser(t: { skip(message: string): void }): boolean {
  if (!skipWithoutBrowser) return false;
  console.warn(`SKIPPED browser test: ${skipWithoutBrowser}`);
  t.skip(skipWithoutBrowser);
  return true;
}

export interface LaunchOptions {
  /** Chromium flags added to the fixed ones, e.g. `--host-resolver-rules=MAP lethe.test 127.0.0.1`. */
  args?: string[];
}

/** Launches headless Chromium; throws when it is missing (check skipWithoutBrowser first). Close it in an `after` hook, or use `useBrowser`. */
export async function launchBrowser(options: LaunchOptions = {}): Promise<Browser> {
  if (!CHROMIUM) throw new Error(skipWithoutBrowser || 'Chromium is not installed');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...ARGS, ...(options.args ?? [])],
    // Playwright also kills the browser if the test process exits or is interrupted without closing it.
    timeout: LAUNCH_TIMEOUT_MS,
  });
}

/** A page in a fresh context that accepts the test server's self-signed certificate, every wait bounded by `timeoutMs`. */
export async function newPage(browser: Browser, timeoutMs = PAGE_TIMEOUT_MS): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: true });
  context.setDefaultTimeout(timeoutMs);
  context.setDefaultNavigationTimeout(timeoutMs);
  const page = await context.newPage();
  // Closing the page closes its context too, so nothing of it outlives the test.
  page.once('close', () => void context.close().catch(() => {}));
  return page;
}

export interface BrowserSession {
  /** The browser of the current suite; launched by the `before` hook. */
  readonly browser: Browser;
  /** A new page (see `newPage`), closed by the `after` hook at the latest. */
  page(timeoutMs?: number): Promise<Page>;
}

/**
 * Registers, in the current suite (or file), a `before` hook that launches Chromium and an `after`
 * hook that closes every page and the browser, whatever the tests did. Both do nothing without
 * Chromium; give the tests `{ skip: skipWithoutBrowser }`.
 */
export function useBrowser(options: LaunchOptions = {}): BrowserSession {
  let browser: Browser | undefined;
  const pages: Page[] = [];
  before(async () => {
    if (!skipWithoutBrowser) browser = await launchBrowser(options);
  });
  after(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
  });
  return {
    get browser() {
      if (!browser) throw new Error(skipWithoutBrowser || 'the browser is launched by the before hook');
      return browser;
    },
    async page(timeoutMs = PAGE_TIMEOUT_MS) {
      const page = await newPage(this.browser, timeoutMs);
      pages.push(page);
      return page;
    },
  };
}

/** What a page complained about: console errors and warnings, uncaught exceptions, and CSP violation events. */
export interface PageProblems {
  /** Every console error or warning and every uncaught exception, in order. */
  all: string[];
  /** Those that are Content-Security-Policy violations, from the console or the `securitypolicyviolation` event. */
  csp(): string[];
}

/**
 * Records what `page` reports from now on. Call before the first navigation: the `securitypolicyviolation`
 * listener is an init script, which the page's own CSP does not govern.
 */
export async function watchPage(page: Page): Promise<PageProblems> {
  const all: string[] = [];
  const cspEvents: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning')
      all.push(`console.${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => all.push(`pageerror: ${error.message}`));
  await page.exposeFunction('__letheCspViolation', (text: string) => {
    cspEvents.push(text);
    all.push(`securitypolicyviolation: ${text}`);
  });
  // A string, not a function: the tests compile without the DOM's types.
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (e) =>
    globalThis.__letheCspViolation(
      e.effectiveDirective + ' blocked ' + (e.blockedURI || '(inline)') + ' (policy: ' + e.originalPolicy + ')'));`);
  return {
    all,
    csp: () => [...cspEvents, ...all.filter((p) => /Content[- ]Security[- ]Policy/i.test(p))],
  };
}
