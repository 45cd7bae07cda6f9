// noVNC end to end, as most users meet the proxy: our vnc.html over noVNC's core/rfb.js
// (from npm), served by the proxy, connecting through it to TigerVNC's Xvnc. The canvas
// must show the desktop the test drew (pixel colours at known places), and a click and keys
// made in the page must reach the X server (xev, watching the root window, reports them).
//
// Config: { name: the screenshot's name, pageUrl: vnc.html with its query, ignoreHTTPSErrors,
//           xevLog: xev's output file, width, height,
//           pattern: { tile, fg: [r, g, b], bg: [r, g, b] } }
// The desktop is tiled with `tile`-pixel squares, its top-left and bottom-right quarters fg.

import { readFileSync } from 'node:fs';
import { check, ok, run, newPage, screenshot, waitFor } from './lib.mjs';

function expected(pattern, x, y) {
    const half = pattern.tile / 2;
    const fg = (x % pattern.tile < half) === (y % pattern.tile < half);
    return fg ? pattern.fg : pattern.bg;
}

/** xev's events so far, one block of lines per event. */
function xevEvents(file) {
    return readFileSync(file, 'utf8')
        .split(/\n\s*\n/)
        .map((block) => block.trim())
        .filter(Boolean);
}

await run(async (config, browser) => {
    const { width, height, pattern } = config;
    const page = await newPage(browser, { ignoreHTTPSErrors: config.ignoreHTTPSErrors });
    await page.goto(config.pageUrl);
    await waitFor('noVNC to connect', async () => /^Connected/.test(await page.textContent('#status')), 20_000);
    ok(`${config.name}: noVNC connected: ${await page.textContent('#status')}`);

    // Sample points over the whole desktop, away from nothing in particular: every pixel
    // of the pattern is exact, so each must be its colour.
    const points = [];
    for (const x of [0, 5, 31, 32, 63, 64, 100, 170, 250, width - 1]) {
        for (const y of [0, 7, 31, 32, 95, 96, 150, height - 1]) points.push([x, y]);
    }
    const seen = await waitFor('the desktop on the canvas', async () => {
        const s = await page.evaluate(([points, width, height]) => {
            const canvas = document.querySelector('#screen canvas');
            if (!canvas || canvas.width !== width || canvas.height !== height) return null;
            const ctx = canvas.getContext('2d');
            return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
        }, [points, width, height]);
        return s && s.every((c, i) => c.join() === expected(pattern, ...points[i]).join()) && s;
    }, 20_000);
    check(seen.length === points.length, 'no pixels read');
    ok(`${config.name}: the ${width}x${height} canvas shows the drawn desktop: ${points.length} pixels exactly the pattern's colours`);
    await screenshot(page, config.name);

    // A click where the pattern is, and keys: a plain one and a shifted one.
    const click = [123, 77];
    // At the whole pixel: the canvas may sit at a fractional offset in the page, and noVNC
    // truncates the pointer's offset into it, so aim at the first client pixel whose offset
    // truncates to the one wanted.
    const box = await page.evaluate(() => {
        const r = document.querySelector('#screen canvas').getBoundingClientRect();
        return { left: r.left, top: r.top };
    });
    await page.mouse.click(Math.ceil(box.left + click[0]), Math.ceil(box.top + click[1]));
    await page.keyboard.press('a');
    await page.keyboard.press('Shift+Z');
    const events = await waitFor('xev to report the click and the keys', () => {
        const ev = xevEvents(config.xevLog);
        const button = ev.some((e) => e.startsWith('ButtonPress') && e.includes(`root:(${click[0]},${click[1]})`) && /button 1\b/.test(e));
        const a = ev.some((e) => e.startsWith('KeyPress') && e.includes('(keysym 0x61, a)'));
        const z = ev.some((e) => e.startsWith('KeyPress') && e.includes('(keysym 0x5a, Z)'));
        return button && a && z && ev;
    }, 15_000);
    ok(`${config.name}: the X server saw button 1 at (${click[0]},${click[1]}), key a and key Z (${events.length} events)`);
    page.problems();

    await page.click('#button');
    await waitFor('the session to end cleanly', async () => (await page.textContent('#status')) === 'Disconnected.');
    ok(`${config.name}: disconnected cleanly`);
});
