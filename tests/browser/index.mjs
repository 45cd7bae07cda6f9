// index.html in Chromium: it says what this server is, links the telnet page, and shows the
// server's live numbers, which move while a session runs in another tab, without a reload.
//
// Config: { url: the proxy serving web/ (echo target), version: the binary's version }

import { check, ok, run, newPage, screenshot, waitFor } from './lib.mjs';

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

await run(async (config, browser) => {
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

    // The page must update itself: mark it, and check the mark survives.
    await page.evaluate(() => (window.notReloaded = true));

    // A session in another tab: 5000 bytes to the echo, held open.
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
    });
    const during = await waitFor('the numbers to show the open session', async () => {
        const n = await numbers(page);
        return n.active === 1 && n.fromClient >= first.fromClient + 5000 && n.toClient >= first.toClient + 5000 && n;
    });
    check(during.total === first.total + 1, `sessions since start went from ${first.total} to ${during.total}`);
    await screenshot(page, 'index');
    ok(`while a session runs: 1 active, ${during.total} in all, ${during.fromClient} bytes from clients, ${during.toClient} to clients`);

    await other.evaluate(() => window.sock.close());
    await waitFor('the numbers to show the session ended', async () => (await numbers(page)).active === 0);
    check(await page.evaluate(() => window.notReloaded === true), 'the page reloaded instead of updating');
    ok('the session\'s end shows too, without a reload');

    await page.click('#telnet-link');
    await page.waitForURL(/wstelnet\.html$/);
    await page.waitForSelector('#terminal .xterm-rows', { timeout: 10_000 });
    ok('the telnet link opens the terminal page');
    page.problems();
    other.problems();
});
