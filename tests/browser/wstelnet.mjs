// wstelnet.html in Chromium, through the proxy to a real telnetd (inetutils, started by
// tests/browser.rs): the page answers the server's negotiation, the login prompt shows, the
// login goes through without echoing the password, and typed keys reach the shell, whose
// answer shows in the terminal.
//
// Config: { url: the proxy serving web/ with the telnet server as its target,
//           user, password }

import { check, ok, run, newPage, screenshot, waitFor } from './lib.mjs';

const IAC = 255;
const [WILL, WONT, DO, DONT, SB] = [251, 252, 253, 254, 250];

/** What the terminal shows, as a person reads it: xterm.js's rows in the page. */
async function screen(page) {
    return page.evaluate(() => document.querySelector('#terminal .xterm-rows')?.innerText ?? '');
}

/** The telnet commands in a byte stream, as [verb, option] pairs (SB as [SB, option]). */
function commands(bytes) {
    const out = [];
    for (let i = 0; i + 2 < bytes.length; i++) {
        if (bytes[i] === IAC && [WILL, WONT, DO, DONT, SB].includes(bytes[i + 1])) {
            out.push([bytes[i + 1], bytes[i + 2]]);
            i += 2;
        }
    }
    return out;
}

await run(async (config, browser) => {
    const page = await newPage(browser);
    const sent = [];
    const received = [];
    page.on('websocket', (ws) => {
        ws.on('framesent', (f) => sent.push(...Buffer.from(f.payload, typeof f.payload === 'string' ? 'base64' : undefined)));
        ws.on('framereceived', (f) => received.push(...Buffer.from(f.payload, typeof f.payload === 'string' ? 'base64' : undefined)));
    });
    await page.goto(`${config.url}wstelnet.html?autoconnect=1`);
    const login = await waitFor('the login prompt', async () => (await screen(page)).includes('login:') && screen(page));
    ok(`the telnet server's login prompt shows: ${JSON.stringify(login.trim().split('\n').pop())}`);

    // The server opened with WILL and DO; each one got an answer, refusals included.
    const asked = commands(received);
    const answered = commands(sent);
    const answer = { [WILL]: [DO, DONT], [DO]: [WILL, WONT] };
    const unanswered = asked
        .filter(([verb]) => verb === WILL || verb === DO)
        .filter(([verb, opt]) => !answered.some(([v, o]) => o === opt && answer[verb].includes(v)));
    check(asked.length >= 5, `the server negotiated only ${JSON.stringify(asked)}`);
    check(unanswered.length === 0, `unanswered: ${JSON.stringify(unanswered)}`);
    const has = (list, verb, opt) => list.some(([v, o]) => v === verb && o === opt);
    check(has(answered, DONT, 37) || !has(asked, WILL, 37), 'AUTHENTICATION (37) was not refused');
    check(has(answered, WILL, 24) && has(answered, SB, 24), 'TTYPE (24) was not agreed and answered');
    check(has(answered, DO, 1) && has(answered, DO, 3), 'the server\'s ECHO and SGA were not accepted');
    // BINARY, which the page asks for, so that UTF-8 is not cut to 7 bits.
    check(has(answered, WILL, 0) && has(asked, DO, 0), 'BINARY was not agreed (page to server)');
    check(has(answered, DO, 0) && has(asked, WILL, 0), 'BINARY was not agreed (server to page)');
    ok(`negotiation: ${asked.length} commands from the server, each answered; ECHO, SGA, TTYPE, NAWS and BINARY agreed, the rest refused`);

    // A person clicks into the terminal and types.
    await page.click('#terminal');
    await page.keyboard.type(config.user);
    await page.keyboard.press('Enter');
    await waitFor('the password prompt', async () => /Password:\s*$/.test((await screen(page)).trimEnd() + ' '));
    await page.keyboard.type(config.password);
    await page.keyboard.press('Enter');
    const prompt = `${config.user}@wstelnet$`;
    await waitFor(`the shell prompt ${prompt}`, async () => (await screen(page)).includes(prompt));
    check(!(await screen(page)).includes(config.password), 'the password was echoed');
    ok(`logged in as ${config.user}; the password did not show`);

    await page.keyboard.type('echo typed-$((6*7)) "\u00e9t\u00e9"');
    await page.keyboard.press('Enter');
    await waitFor('the shell\'s answer typed-42', async () => {
        const s = await screen(page);
        return s.split('\n').some((l) => l.trim() === 'typed-42 \u00e9t\u00e9') && s;
    });
    ok('typed keys reached the shell (UTF-8 too) and its answer "typed-42 été" shows');
    check(/Connected \(binary\)/.test(await page.textContent('#status')), 'the status line does not say connected');
    await screenshot(page, 'wstelnet');
    page.problems();

    await page.keyboard.type('exit');
    await page.keyboard.press('Enter');
    await waitFor('the page to see the session end', async () => /Disconnected/.test(await page.textContent('#status')));
    ok(`the shell's exit ended the session: ${await page.textContent('#status')}`);
});
