// websock.js in Chromium, through the proxy to an echo target: binary and base64 sessions
// echo every byte value and a quarter megabyte of random bytes exactly; the typed reads and
// writes agree; the token parameter reaches a token proxy; a wrong token never opens.
//
// Config: { url: the proxy serving web/ (echo target), tokenUrl: a token proxy serving
// web/, token: its echo token }

import { randomBytes } from 'node:crypto';
import { check, ok, run, newPage } from './lib.mjs';

// Every byte value twice over, then random bytes: a quarter megabyte crosses several of the
// proxy's reads and the browser's frames.
const payload = Buffer.concat([
    Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256)),
    randomBytes(256 * 1024),
]);

// Runs in the page: imports websock.js from the proxy (as a module, so a wrong MIME type
// fails here), echoes typed values and the payload, returns what came back.
async function echoInPage({ url, protocols, token, payloadB64 }) {
    const { Websock } = await import('/websock.js');
    const sock = new Websock();
    const events = [];
    const opened = new Promise((resolve, reject) => {
        sock.on('open', resolve);
        sock.on('close', (e) => reject(new Error(`closed before open: ${e.code}`)));
    });
    sock.open(url, protocols, token ? { token } : {});
    await opened;
    events.push('open');
    let waiting = null;
    sock.on('message', () => waiting && waiting());
    const until = (n) =>
        new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`echo stalled at ${sock.rQlen()} of ${n} bytes`)), 20000);
            waiting = () => {
                if (!sock.rQwait('echo', n)) {
                    clearTimeout(timer);
                    waiting = null;
                    resolve();
                }
            };
            waiting();
        });

    // Typed writes in one message, typed reads of the echo.
    sock.sQpush8(0xfe);
    sock.sQpush16(0xbeef);
    sock.sQpush32(0xdeadbeef);
    sock.sQpushString('h\u00e9llo');
    sock.sQpushBytes([0, 255, 128]);
    const queued = sock.sQlen();
    sock.flush();
    await until(queued);
    const typed = {
        queued,
        u8: sock.rQshift8(),
        u16: sock.rQshift16(),
        peek: sock.rQpeek8(),
        u32: sock.rQshift32(),
        str: sock.rQshiftStr(5),
        slice: Array.from(sock.rQslice(0, 3)),
        rest: Array.from(sock.rQshiftBytes(3)),
        left: sock.rQlen(),
    };
    // rQwait: with too few bytes it asks to wait, and steps back over what was read.
    sock.send([1, 2, 3, 4]);
    await until(4);
    typed.shifted = sock.rQshift16();
    typed.waitBack = sock.rQwait('more', 4, 2);
    typed.afterBack = sock.rQlen();
    typed.waitEnough = sock.rQwait('enough', 4);
    sock.rQshiftBytes();

    // The payload in pieces of many sizes, some through send(), some pushed and flushed.
    const data = Uint8Array.from(atob(payloadB64), (c) => c.charCodeAt(0));
    const sizes = [1, 2, 100, 4096, 65535, 65536, 70000];
    let at = 0;
    let i = 0;
    while (at < data.length) {
        const n = Math.min(sizes[i % sizes.length], data.length - at);
        const piece = data.subarray(at, at + n);
        if (i % 2) sock.send(piece);
        else {
            sock.sQpushBytes(piece);
            sock.flush();
        }
        at += n;
        i++;
    }
    await until(data.length);
    const echoed = sock.rQshiftBytes(data.length);
    let s = '';
    for (let j = 0; j < echoed.length; j += 0x8000) s += String.fromCharCode.apply(null, echoed.subarray(j, j + 0x8000));
    const closed = new Promise((resolve) => sock.on('close', (e) => resolve({ code: e.code, wasClean: e.wasClean })));
    sock.close(1000, 'done');
    return { mode: sock.mode, typed, echoedB64: btoa(s), close: await closed };
}

// Runs in the page: a session the proxy refuses (unknown token) closes without opening.
async function refusedInPage({ url, token }) {
    const { Websock } = await import('/websock.js');
    const sock = new Websock();
    return new Promise((resolve) => {
        let opened = false;
        sock.on('open', () => (opened = true));
        sock.on('close', (e) => resolve({ opened, code: e.code }));
        sock.open(url, 'binary', { token });
    });
}

await run(async (config, browser) => {
    const page = await newPage(browser, { allowFailedRequests: ['token=wrong-token'] });
    // Every frame the page sends or receives, to check the subprotocol's frame types.
    const frames = [];
    page.on('websocket', (ws) => {
        ws.on('framesent', (f) => frames.push({ url: ws.url(), dir: 'sent', text: typeof f.payload === 'string' }));
        ws.on('framereceived', (f) => frames.push({ url: ws.url(), dir: 'received', text: typeof f.payload === 'string' }));
    });
    await page.goto(config.url);
    const wsUrl = config.url.replace(/^http/, 'ws') + 'websockify';
    const tokenWsUrl = config.tokenUrl.replace(/^http/, 'ws') + 'websockify';
    const cases = [
        { name: 'binary', url: wsUrl, protocols: 'binary', mode: 'binary', textFrames: false },
        { name: 'base64', url: wsUrl, protocols: 'base64', mode: 'base64', textFrames: true },
        { name: 'binary preferred', url: wsUrl, protocols: ['binary', 'base64'], mode: 'binary', textFrames: false },
    ];
    for (const c of cases) {
        frames.length = 0;
        const r = await page.evaluate(echoInPage, {
            url: c.url,
            protocols: c.protocols,
            payloadB64: payload.toString('base64'),
        });
        check(r.mode === c.mode, `${c.name}: the session speaks ${r.mode}, not ${c.mode}`);
        const t = r.typed;
        check(t.queued === 15, `${c.name}: ${t.queued} bytes queued, 15 pushed`);
        check(t.u8 === 0xfe && t.u16 === 0xbeef && t.u32 === 0xdeadbeef, `${c.name}: typed reads ${JSON.stringify(t)}`);
        check(t.peek === 0xde, `${c.name}: rQpeek8 gave ${t.peek}`);
        check(t.str === 'h\u00e9llo', `${c.name}: rQshiftStr gave ${JSON.stringify(t.str)}`);
        check(JSON.stringify(t.slice) === '[0,255,128]' && JSON.stringify(t.rest) === '[0,255,128]', `${c.name}: bytes ${t.slice} / ${t.rest}`);
        check(t.left === 0, `${c.name}: ${t.left} bytes left over`);
        check(t.shifted === 0x0102 && t.waitBack === true && t.afterBack === 4 && t.waitEnough === false, `${c.name}: rQwait ${JSON.stringify(t)}`);
        const echoed = Buffer.from(r.echoedB64, 'base64');
        check(echoed.length === payload.length, `${c.name}: ${echoed.length} bytes echoed of ${payload.length}`);
        const at = echoed.findIndex((b, i) => b !== payload[i]);
        check(echoed.equals(payload), `${c.name}: the echo differs from byte ${at}`);
        check(r.close.code === 1000, `${c.name}: closed with ${r.close.code}`);
        const mine = frames.filter((f) => f.url.startsWith(c.url));
        check(mine.length > 10, `${c.name}: only ${mine.length} frames seen`);
        check(mine.every((f) => f.text === c.textFrames), `${c.name}: ${c.textFrames ? 'binary' : 'text'} frames in a ${c.mode} session`);
        ok(`${c.name}: typed reads and writes, ${payload.length} bytes echoed byte for byte in ${mine.length} ${c.textFrames ? 'text (base64)' : 'binary'} frames`);
    }

    const r = await page.evaluate(echoInPage, {
        url: tokenWsUrl,
        protocols: 'binary',
        token: config.token,
        payloadB64: payload.toString('base64'),
    });
    check(Buffer.from(r.echoedB64, 'base64').equals(payload), 'token: the echo differs');
    ok(`token: open(uri, 'binary', {token}) reached the echo target through the token proxy`);
    const refused = await page.evaluate(refusedInPage, { url: tokenWsUrl, token: 'wrong-token' });
    check(!refused.opened && refused.code === 1006, `a wrong token: opened=${refused.opened}, code ${refused.code}`);
    ok('a wrong token never opens (the proxy answers 404 before the upgrade)');
    page.problems();
});
