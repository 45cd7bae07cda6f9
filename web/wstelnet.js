// wstelnet.js: the terminal of wstelnet.html. xterm.js draws it, websock.js carries the
// bytes through the proxy, telnet.js answers a telnet server's negotiation.
//
// The form's fields start from the page's query string, so a link can say where to go:
// wstelnet.html?host=h&port=p&path=websockify&token=t&encrypt=1&telnet=0&autoconnect=1
// (without host and port, the proxy that served the page; telnet=0 for raw TCP).
//
// Part of websockify-rs (LGPL-3.0, as websockify).

import { Terminal } from './vendor/xterm/xterm.mjs';
import { Websock, websockifyUrl } from './websock.js';
import { TelnetClient } from './telnet.js';

const COLS = 80;
const ROWS = 24;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const flag = (name, dflt) => (params.has(name) ? !['0', 'false', 'no', 'off'].includes(params.get(name)) : dflt);

$('host').value = params.get('host') ?? location.hostname;
$('port').value = params.get('port') ?? location.port;
$('path').value = params.get('path') ?? 'websockify';
$('token').value = params.get('token') ?? '';
$('encrypt').checked = flag('encrypt', location.protocol === 'https:');
$('telnet').checked = flag('telnet', true);

const term = new Terminal({ cols: COLS, rows: ROWS, cursorBlink: true, scrollback: 1000 });
term.open($('terminal'));

const encoder = new TextEncoder();
let sock = null;
let telnet = null;

function status(text, kind = '') {
    const el = $('status');
    el.textContent = text;
    el.className = `status ${kind}`;
}

function connected(yes) {
    $('button').textContent = yes ? 'Disconnect' : 'Connect';
    for (const id of ['host', 'port', 'path', 'token', 'encrypt', 'telnet']) $(id).disabled = yes;
}

function connect() {
    const url = websockifyUrl({
        host: $('host').value.trim(),
        port: $('port').value.trim(),
        path: $('path').value.trim(),
        secure: $('encrypt').checked,
        token: $('token').value.trim(),
    });
    telnet = $('telnet').checked ? new TelnetClient({ terminalType: 'XTERM', cols: COLS, rows: ROWS }) : null;
    sock = new Websock();
    sock.on('open', () => {
        status(`Connected (${sock.mode}) to ${url.replace(/token=[^&]*/, 'token=…')}`, 'ok');
        connected(true);
        term.focus();
    });
    sock.on('message', () => {
        const bytes = sock.rQshiftBytes();
        if (!telnet) {
            term.write(bytes);
            return;
        }
        const { data, reply } = telnet.receive(bytes);
        if (reply.length) sock.send(reply);
        if (data.length) term.write(data);
    });
    sock.on('close', (e) => {
        status(`Disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''}).`, e.code === 1000 ? '' : 'bad');
        connected(false);
        sock = null;
    });
    sock.on('error', () => status('Connection error: is the proxy reachable?', 'bad'));
    status(`Connecting to ${url.replace(/token=[^&]*/, 'token=…')} …`);
    sock.open(url, ['binary', 'base64']);
}

term.onData((text) => {
    if (!sock || sock.readyState !== WebSocket.OPEN) return;
    const bytes = encoder.encode(text);
    sock.send(telnet ? telnet.encode(bytes) : bytes);
    // A telnet server that does not echo (it never said WILL ECHO) leaves it to us.
    if (telnet && !telnet.serverEchoes) term.write(text.replace(/\r/g, '\r\n'));
});

$('connect').addEventListener('submit', (e) => {
    e.preventDefault();
    if (sock) sock.close();
    else connect();
});

if (flag('autoconnect', false)) connect();
