// Shared by the browser test scripts that tests/browser.rs runs: Chromium through Playwright,
// checks that fail loudly, bounded waits, screenshots.
//
// Each script is `node tests/browser/NAME.mjs '<json config>'` and exits 0 only when every
// check passed; it prints one `ok - ...` line per check and, on failure, `FAILED: ...` and
// exits 1. The environment names the installed packages (BROWSER_DIR, with node_modules)
// and where screenshots go (SCREENSHOT_DIR).

import { createRequire } from 'node:module';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const browserDir = process.env.BROWSER_DIR;
if (!browserDir) throw new Error('BROWSER_DIR is not set: run these scripts from tests/browser.rs');
const require = createRequire(path.resolve(browserDir, 'package.json'));
const { chromium } = require('playwright-core');

/** Every script's whole run, the browser's start included, ends within this. */
const SCRIPT_TIMEOUT_MS = 150_000;

export class CheckFailed extends Error {}

export function check(condition, message) {
    if (!condition) throw new CheckFailed(message);
}

export function ok(message) {
    console.log(`ok - ${message}`);
}

/** Polls `probe` (sync or async) until it returns a truthy value; fails after `ms`. */
export async function waitFor(what, probe, ms = 15_000, every = 100) {
    const end = Date.now() + ms;
    let last;
    for (;;) {
        try {
            last = await probe();
            if (last) return last;
        } catch (e) {
            last = e;
        }
        if (Date.now() > end) {
            throw new CheckFailed(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
        }
        await new Promise((r) => setTimeout(r, every));
    }
}

export async function screenshot(page, name) {
    const dir = process.env.SCREENSHOT_DIR;
    check(dir, 'SCREENSHOT_DIR is not set');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    ok(`screenshot ${file}`);
    return file;
}

/**
 * Debian's Chromium, headless. Playwright's own browser builds are never used (they cannot
 * be downloaded here). The flags keep Chromium off the network it does not have: no
 * background fetches, updates or sync, which this machine's closed network refuses.
 * `extraArgs` are further flags of the script's (its config's `chromiumArgs`).
 */
export async function launch(extraArgs = []) {
    return chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        timeout: 60_000,
        args: [
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--disable-dev-shm-usage',
            ...extraArgs,
        ],
    });
}

/**
 * A page that fails the run on what a person would see as broken: a script error, a
 * module that does not load, or a request the server answers with an error.
 */
export async function newPage(browser, { ignoreHTTPSErrors = false, allowFailedRequests = [] } = {}) {
    const context = await browser.newContext({
        viewport: { width: 1000, height: 760 },
        ignoreHTTPSErrors,
    });
    const page = await context.newPage();
    pages.push(page);
    const problems = [];
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error' && !allowFailedRequests.some((a) => m.text().includes(a))) {
            problems.push(`console error: ${m.text()}`);
        }
    });
    page.on('response', (r) => {
        const url = r.url();
        if (r.status() >= 400 && !allowFailedRequests.some((a) => url.includes(a))) {
            problems.push(`${r.status()} for ${url}`);
        }
    });
    page.on('requestfailed', (r) => {
        // A WebSocket refused on purpose is reported by the test itself, not here.
        if (!allowFailedRequests.some((a) => r.url().includes(a))) {
            problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`);
        }
    });
    page.problems = () => {
        check(problems.length === 0, `the page had problems:\n  ${problems.join('\n  ')}`);
    };
    return page;
}

// Every page opened, for the screenshots taken when a check fails.
const pages = [];

/**
 * The Chromium flag that trusts the certificate in `pemFile` (a PEM file) as if a CA the
 * browser trusts had signed it: the base64 SHA-256 of its SubjectPublicKeyInfo. Unlike
 * `ignoreHTTPSErrors` the page is then a secure one with no certificate error. (Chromium
 * honours the flag only beside a --user-data-dir, which Playwright always gives.)
 */
export function trustFlag(pemFile) {
    const cert = new X509Certificate(readFileSync(pemFile));
    const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
    return `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`;
}

/**
 * Runs `main(config, browser)` with a browser, a deadline, and the exit status. The browser
 * gets the config's `chromiumArgs`, if any, and trusts its `trustCert` (see trustFlag), if any.
 */
export async function run(main) {
    const config = JSON.parse(process.argv[2] || '{}');
    let browser;
    const deadline = setTimeout(() => {
        console.log(`FAILED: the script did not finish within ${SCRIPT_TIMEOUT_MS / 1000} s`);
        process.exit(1);
    }, SCRIPT_TIMEOUT_MS);
    try {
        browser = await launch([
            ...(config.chromiumArgs ?? []),
            ...(config.trustCert ? [trustFlag(config.trustCert)] : []),
        ]);
        ok(`Chromium ${browser.version()} started`);
        await main(config, browser);
        console.log('all checks passed');
        process.exitCode = 0;
    } catch (e) {
        console.log(`FAILED: ${e instanceof CheckFailed ? e.message : e.stack || e}`);
        process.exitCode = 1;
        // What the pages showed when it failed, beside the screenshots of passing runs.
        const script = path.basename(process.argv[1], '.mjs');
        for (const [i, page] of pages.entries()) {
            const file = path.join(process.env.SCREENSHOT_DIR || '.', `FAILED-${script}-${i}.png`);
            await page
                .screenshot({ path: file, fullPage: true, timeout: 5000 })
                .then(() => console.log(`screenshot of the failure: ${file}`))
                .catch(() => {});
        }
    } finally {
        clearTimeout(deadline);
        if (browser) await browser.close().catch(() => {});
    }
}
