// index.html in Chromium: it says what this server is, links the telnet page, and shows the
// server's live numbers and its last minutes as two charts (sessions open, throughput each
// way), which move while a session runs in another tab, without a reload. A page opened
// while the server has history draws those minutes from its first answer.
//
// Config: { url: the proxy serving web/ (echo target), version: the binary's version }

import { check, ok, run, newPage, screenshot, waitFor } from './lib.mjs';

// index.js's drawing: the SVGs are 300 units wide (one per second of the five minutes shown)
// and 80 high, with 0 drawn at y = 78.
const BASELINE = 78;

/** The numbers the page shows, as integers (it formats them with separators). */
async function numbers(page) {
    return page.evaluate(() => {
        const n = (id) => Number(document.getElementById(id).textContent.replace(/[^0-9]/g, ''));
        return {
            version: document.getElementById('version').textContent,
            active: n('sessions-active'),
            total: n('sessions-total'),
            fromClient: n('bytes-from-client'),
            toClient: n('bytes-to-client'),
            status: document.getElementById('status').textContent,
        };
    });
}

/**
 * What the charts show: for each drawn path its data, its vertices ([x, y]) and its drawn
 * length and colour; for each chart its text alternative and the panel's background.
 */
async function charts(page) {
    return page.evaluate(() => {
        const path = (selector) => {
            const el = document.querySelector(selector);
            const d = el.getAttribute('d') || '';
            // Absolute M, L, H, V, Z only: what index.js writes.
            const vertices = [];
            let x = 0;
            let y = 0;
            for (const [, op, args] of d.matchAll(/([MLHVZ])([^MLHVZ]*)/g)) {
                const n = args.trim().split(/[\s,]+/).filter(Boolean).map(Number);
                if (op === 'M' || op === 'L') [x, y] = n;
                else if (op === 'H') [x] = n;
                else if (op === 'V') [y] = n;
                else continue;
                vertices.push([x, y]);
            }
            const style = getComputedStyle(el);
            return { d, vertices, length: el.getTotalLength(), stroke: style.stroke, fill: style.fill };
        };
        return {
            sessions: path('#sessions-chart .line'),
            area: path('#sessions-chart .area'),
            from: path('#throughput-chart .line.from'),
            to: path('#throughput-chart .line.to'),
            sessionsLabel: document.getElementById('sessions-chart').getAttribute('aria-label'),
            throughputLabel: document.getElementById('throughput-chart').getAttribute('aria-label'),
            background: getComputedStyle(document.querySelector('.panel.now')).backgroundColor,
            width: document.getElementById('throughput-chart').getBoundingClientRect().width,
        };
    });
}

const above = (line) => line.vertices.filter(([, y]) => y < BASELINE - 0.5);
const flat = (line) => line.vertices.length >= 2 && above(line).length === 0;

/** WCAG's contrast ratio of two CSS colours `rgb(r, g, b)`. */
function contrast(a, b) {
    const luminance = (css) => {
        const [r, g, b] = css.match(/[\d.]+/g).slice(0, 3).map((v) => {
            const c = Number(v) / 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
}

/** Every line is drawn, in a colour of its own that stands out from the panel (3:1). */
function checkColours(c, scheme) {
    for (const name of ['sessions', 'from', 'to']) {
        const line = c[name];
        check(line.length > 0, `${scheme}: the ${name} line has no length: ${line.d}`);
        check(/^rgb/.test(line.stroke), `${scheme}: the ${name} line's stroke is ${line.stroke}`);
        const ratio = contrast(line.stroke, c.background);
        check(ratio >= 3, `${scheme}: the ${name} line (${line.stroke}) on ${c.background}: contrast ${ratio.toFixed(2)}`);
    }
    check(c.from.stroke !== c.to.stroke, `${scheme}: both throughput lines are ${c.from.stroke}`);
}

await run(async (config, browser) => {
    const statusUrl = new URL('websockify/status.json', config.url).href;
    const page = await newPage(browser);
    await page.goto(config.url);
    check((await page.title()) === 'websockify-rs', `the title is ${await page.title()}`);
    const lead = await page.textContent('.lead');
    check(/WebSocket-to-TCP proxy/.test(lead), `the page does not say what the server is: ${lead}`);
    const telnetHref = await page.getAttribute('#telnet-link', 'href');
    check(telnetHref === 'wstelnet.html', `the telnet link goes to ${telnetHref}`);
    ok('the page says what this server is and links the telnet page');

    const first = await waitFor('the first numbers', async () => {
        const n = await numbers(page);
        return n.version === config.version && n;
    });
    check(first.active === 0, `${first.active} active sessions before any`);
    ok(`live status: version ${first.version}, ${first.total} sessions, ${first.fromClient} bytes from clients`);

    // Before any session: both charts drawn, level at 0.
    const idle = await waitFor('the charts to draw two samples', async () => {
        const c = await charts(page);
        return flat(c.sessions) && flat(c.from) && flat(c.to) && c;
    });
    check(/: 0 now, at most 0\./.test(idle.sessionsLabel), `the sessions chart says: ${idle.sessionsLabel}`);
    check(/now 0 B\/s from clients and 0 B\/s to clients/.test(idle.throughputLabel), `the throughput chart says: ${idle.throughputLabel}`);
    check(idle.width > 100, `the throughput chart is ${idle.width} px wide`);
    checkColours(idle, 'light');
    ok(`the charts draw, level at 0 while idle (${idle.sessions.vertices.length} session samples, ${idle.from.vertices.length} throughput vertices)`);

    // The page must update itself: mark it, and check the mark survives.
    await page.evaluate(() => (window.notReloaded = true));

    // A session in another tab: 5000 bytes to the echo, held open, then a steady trickle
    // (2000 bytes every 200 ms) so that the throughput lasts over several polls.
    const other = await newPage(browser);
    await other.goto(config.url);
    await other.evaluate(async () => {
        const { Websock } = await import('/websock.js');
        const sock = new Websock();
        window.sock = sock;
        await new Promise((resolve) => {
            sock.on('open', resolve);
            sock.open(new URL('websockify', location.href).href.replace(/^http/, 'ws'), 'binary');
        });
        sock.send(new Uint8Array(5000).fill(42));
        await new Promise((resolve) => sock.on('message', () => sock.rQlen() >= 5000 && resolve()));
        sock.on('message', () => sock.rQshiftBytes());
        sock.rQshiftBytes();
        window.trickle = setInterval(() => sock.send(new Uint8Array(2000).fill(7)), 200);
    });
    const during = await waitFor('the numbers to show the open session', async () => {
        const n = await numbers(page);
        return n.active === 1 && n.fromClient >= first.fromClient + 5000 && n.toClient >= first.toClient + 5000 && n;
    });
    check(during.total === first.total + 1, `sessions since start went from ${first.total} to ${during.total}`);
    ok(`while a session runs: 1 active, ${during.total} in all, ${during.fromClient} bytes from clients, ${during.toClient} to clients`);

    // The charts move with it: the session's line rises to 1 at its latest sample, and the
    // throughput's lines leave 0 both ways.
    const busy = await waitFor('the charts to show the session and its traffic', async () => {
        const c = await charts(page);
        const last = c.sessions.vertices[c.sessions.vertices.length - 1];
        return last && last[1] < BASELINE - 0.5 && above(c.from).length && above(c.to).length && c;
    });
    check(busy.from.d !== idle.from.d, 'the throughput chart did not change');
    check(/: 1 now, at most 1\./.test(busy.sessionsLabel), `the sessions chart says: ${busy.sessionsLabel}`);
    check(!/now 0 B\/s from clients/.test(busy.throughputLabel), `the throughput chart says: ${busy.throughputLabel}`);
    check(busy.area.length > 0, 'the area under the sessions line is not drawn');
    ok(`the charts move with traffic: ${busy.sessionsLabel} ${busy.throughputLabel}`);

    // A page opened now draws the last minutes from its first answer: the server's history
    // holds a sample taken while the session ran. The new page gets only that one answer
    // (every poll of its is answered with it), so what it draws came from the history.
    const snapshot = await waitFor('a history sample taken during the session', async () => {
        const response = await fetch(statusUrl);
        const s = await response.json();
        const during = s.history.filter((h) => h.sessions_active === 1 && h.bytes_from_client >= first.fromClient + 5000);
        return during.length > 0 && s;
    }, 20_000);
    check(snapshot.history.length >= 2 && snapshot.history.length <= 60, `${snapshot.history.length} history samples`);
    // The page is served here under a strict Content-Security-Policy, as a site may serve
    // it: nothing inline and nothing from elsewhere, which the drawing must not need.
    const fresh = await newPage(browser);
    const body = JSON.stringify(snapshot);
    await fresh.route('**/websockify/status.json', (route) =>
        route.fulfill({ status: 200, contentType: 'application/json', body }),
    );
    await fresh.route((url) => url.pathname === '/', async (route) => {
        const response = await route.fetch();
        route.fulfill({
            response,
            headers: { ...response.headers(), 'content-security-policy': "default-src 'self'" },
        });
    });
    await fresh.addInitScript(() => {
        window.violations = [];
        document.addEventListener('securitypolicyviolation', (e) => window.violations.push(`${e.violatedDirective}: ${e.blockedURI}`));
    });
    await fresh.goto(config.url);
    const seeded = await waitFor('the new page to draw the history', async () => {
        const c = await charts(fresh);
        return c.sessions.vertices.length >= 2 && c;
    });
    check(above(seeded.sessions).length > 0, `the new page's sessions line stays at 0: ${seeded.sessions.d}`);
    check(above(seeded.from).length > 0, `the new page's throughput stays at 0: ${seeded.from.d}`);
    // Its points span the history: the oldest is the first sample's, seconds before the page,
    // and the newest the answer's own moment (unless that is within a second of the last
    // sample, which index.js then draws at the right edge instead).
    const newest = snapshot.history[snapshot.history.length - 1].uptime_ms;
    const end = snapshot.uptime_ms >= newest + 1000 ? snapshot.uptime_ms : newest;
    const span = (end - snapshot.history[0].uptime_ms) / 1000;
    const leftmost = seeded.sessions.vertices[0][0];
    check(Math.abs(300 - span - leftmost) < 0.2, `the history's ${span} s start at x = ${leftmost}`);
    ok(`a page opened now draws the last ${span.toFixed(0)} s at once: ${seeded.sessionsLabel}`);
    const violations = await fresh.evaluate(() => window.violations);
    check(violations.length === 0, `the page breaks default-src 'self': ${violations.join(', ')}`);
    ok("the page draws under Content-Security-Policy: default-src 'self'");
    fresh.problems();
    await fresh.close();

    // The first page, a few samples into the session, as a person sees it; and readable in
    // the dark too: other colours, as distinct, on the dark panel.
    await screenshot(page, 'index');
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await charts(page);
    checkColours(dark, 'dark');
    check(dark.background !== busy.background, `the panel is ${dark.background} in both schemes`);
    await screenshot(page, 'index-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    ok('the charts are drawn in the dark colour scheme too');

    await other.evaluate(() => {
        clearInterval(window.trickle);
        window.sock.close();
    });
    await waitFor('the numbers to show the session ended', async () => (await numbers(page)).active === 0);
    await waitFor('the sessions chart to show the session ended', async () =>
        /: 0 now, at most 1\./.test((await charts(page)).sessionsLabel),
    );
    check(await page.evaluate(() => window.notReloaded === true), 'the page reloaded instead of updating');
    ok('the session\'s end shows too, in the numbers and the chart, without a reload');

    await page.click('#telnet-link');
    await page.waitForURL(/wstelnet\.html$/);
    await page.waitForSelector('#terminal .xterm-rows', { timeout: 10_000 });
    ok('the telnet link opens the terminal page');
    page.problems();
    other.problems();
});
