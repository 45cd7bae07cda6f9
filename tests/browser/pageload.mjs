// noVNC's page load, timed: from navigation start to noVNC's RFB `connect` event, in loads
// that each start from nothing (the benchmark of HTTP/2 against HTTP/1.1 in tests/browser.rs,
// `novnc_page_load_h2_against_http1`; benches/pageload.sh runs it).
//
// Every load has a browser context of its own, made for it and closed after it. In Chromium a
// context is an off-the-record profile with its own network context: its own (empty, in
// memory) HTTP cache, its own socket pools and TLS session cache. So a load finds nothing
// cached and no connection to reuse or TLS session to resume: it opens its connections and
// fetches every file, as a first visit does. The browser itself stays up between loads (as a
// user's does); `warmup` loads, made first and not counted, take its own start-up (its
// network service, its first renderer) out of the loads that count. Each counted load
// checks that no file came from a cache (every transferSize > 0); that its connections were
// new ones the test checks on the proxy's side (their client ports).
//
// The time is taken in the page, at the event: an init script (run before any of the page's
// scripts) wraps `CustomEvent`, and the moment noVNC's core/rfb.js makes its "connect" event,
// the one it dispatches right away when the RFB handshake is done, it notes performance.now():
// milliseconds since the navigation started (the document's time origin, the navigation
// entry's startTime 0). The page's own handler must then show "Connected" in #status.
//
// Config: { name, pageUrl: vnc.html with autoconnect (and the token),
//           count: loads that count (10), warmup: loads first that do not (0),
//           trustCert: the server's certificate (PEM), trusted as if a trusted CA had signed
//             it (lib.mjs, trustFlag); or ignoreHTTPSErrors: true (Playwright's: certificate
//             errors ignored, the page not a secure one),
//           chromiumArgs: further Chromium flags, expectProtocol: when set, every load's
//             document and resources must have come over it ('h2', 'http/1.1'),
//           loadTimeoutMs: one load's limit (20000) }
// Prints `ok - ...` lines, then one line that is the result, a JSON object:
//   { name, chromium, protocol, loads_ms, median_ms, resources, next_hop_protocols, loads }
// chromium: the browser's version; protocol: the documents' nextHopProtocol; loads_ms: the counted loads in order;
// median_ms: their median (the mean of the middle two of an even count); resources: the
// resources (files the page fetched, the document not counted) per load;
// next_hop_protocols: how many of all counted loads' documents and resources came over each
// protocol; loads: each load's details (see `timings` below).

import { check, ok, run } from './lib.mjs';

/** Runs in the page before its scripts: notes when noVNC makes its "connect" event. */
function hook() {
    const noted = { connectMs: null };
    Object.defineProperty(window, '__pageload', { value: noted });
    const Native = window.CustomEvent;
    window.CustomEvent = class extends Native {
        constructor(type, init) {
            super(type, init);
            if (type === 'connect' && noted.connectMs === null) noted.connectMs = performance.now();
        }
    };
}

/** What the page's Performance Timeline says of the load, read once noVNC connected. */
function timings() {
    const nav = performance.getEntriesByType('navigation')[0];
    const round = (v) => Math.round(v * 10) / 10;
    return {
        connect_ms: round(window.__pageload.connectMs),
        status: document.getElementById('status').textContent,
        document: {
            protocol: nav.nextHopProtocol,
            // TCP and TLS, as the entry tells them: 0 when Chromium had opened the
            // connection before the request (it preconnects as the navigation starts), though
            // the connection is still this load's own (the test sees each load's connections
            // come from new client ports).
            connection_ms: round(nav.connectEnd - nav.connectStart),
            response_end_ms: round(nav.responseEnd),
            dom_content_loaded_ms: round(nav.domContentLoadedEventEnd),
            load_event_ms: round(nav.loadEventEnd),
            transfer_size: nav.transferSize,
        },
        resources: performance.getEntriesByType('resource').map((r) => ({
            path: new URL(r.name).pathname,
            protocol: r.nextHopProtocol,
            transfer_size: r.transferSize,
            response_end_ms: round(r.responseEnd),
        })),
    };
}

function median(values) {
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function load(browser, config, trusted, label) {
    // A context of its own: see the top of this file.
    const context = await browser.newContext({
        viewport: { width: 1000, height: 760 },
        ignoreHTTPSErrors: !trusted && Boolean(config.ignoreHTTPSErrors),
    });
    try {
        await context.addInitScript(hook);
        const page = await context.newPage();
        const problems = [];
        page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
        page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
        page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()} for ${r.url()}`));
        page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
        const limit = config.loadTimeoutMs ?? 20_000;
        await page.goto(config.pageUrl, { waitUntil: 'commit', timeout: limit });
        try {
            // Polled from here, at a leisurely pace: the time itself was taken in the page.
            await page.waitForFunction(() => window.__pageload?.connectMs != null, null, {
                polling: 50,
                timeout: limit,
            });
        } catch (e) {
            const status = await page.textContent('#status').catch(() => '?');
            throw new Error(`${label}: noVNC did not connect within ${limit} ms (status: ${status}; ${problems.join('; ')}): ${e.message}`);
        }
        // The page's own connect handler ran: the event was noVNC's RFB connecting.
        await page.waitForFunction(() => /^Connected/.test(document.getElementById('status').textContent), null, {
            polling: 50,
            timeout: 5_000,
        });
        const t = await page.evaluate(timings);
        check(problems.length === 0, `${label}: the page had problems:\n  ${problems.join('\n  ')}`);
        check(t.resources.length > 0, `${label}: the page fetched no resources`);
        const cached = [t.document, ...t.resources].filter((r) => !(r.transfer_size > 0));
        check(cached.length === 0, `${label}: served from a cache: ${cached.map((r) => r.path ?? 'the document').join(', ')}`);
        if (config.expectProtocol) {
            const other = [t.document, ...t.resources].filter((r) => r.protocol !== config.expectProtocol);
            check(other.length === 0, `${label}: not over ${config.expectProtocol}: ${other.map((r) => `${r.path ?? 'the document'} (${r.protocol})`).join(', ')}`);
        }
        return t;
    } finally {
        await context.close();
    }
}

await run(async (config, browser) => {
    const name = config.name ?? 'pageload';
    const count = config.count ?? 10;
    const warmup = config.warmup ?? 0;
    check(Number.isInteger(count) && count > 0, `count must be a positive whole number, not ${count}`);
    check(config.pageUrl, 'no pageUrl in the config');
    // run() launched the browser trusting it.
    const trusted = Boolean(config.trustCert);
    for (let i = 0; i < warmup; i++) {
        const t = await load(browser, config, trusted, `${name} warm-up ${i + 1}`);
        ok(`${name}: warm-up load ${i + 1}: connected at ${t.connect_ms} ms (not counted)`);
    }
    const loads = [];
    for (let i = 0; i < count; i++) {
        const t = await load(browser, config, trusted, `${name} load ${i + 1}`);
        loads.push(t);
        ok(`${name}: load ${i + 1}: RFB connected ${t.connect_ms} ms after navigation start; document and ${t.resources.length} resources over ${t.document.protocol}, none from a cache`);
    }
    const nextHop = {};
    for (const t of loads) {
        for (const r of [t.document, ...t.resources]) nextHop[r.protocol] = (nextHop[r.protocol] ?? 0) + 1;
    }
    const counts = [...new Set(loads.map((t) => t.resources.length))];
    const protocols = [...new Set(loads.map((t) => t.document.protocol))];
    const loadsMs = loads.map((t) => t.connect_ms);
    const result = {
        name,
        chromium: browser.version(),
        protocol: protocols.length === 1 ? protocols[0] : protocols,
        loads_ms: loadsMs,
        median_ms: median(loadsMs),
        resources: counts.length === 1 ? counts[0] : counts,
        next_hop_protocols: nextHop,
        loads: loads.map((t) => ({
            connect_ms: t.connect_ms,
            resources: t.resources.length,
            ...t.document,
            last_resource_end_ms: Math.max(...t.resources.map((r) => r.response_end_ms)),
        })),
    };
    console.log(JSON.stringify(result));
});
