// vnc.js: a minimal noVNC page. noVNC's library (its core/ and vendor/ directories, from
// the npm package @novnc/novnc) is not part of this project: copy them into novnc/ beside
// this page (see the README, "In the browser"); until then the page says so.
//
// The form's fields start from the query string, as in wstelnet.html:
// vnc.html?host=h&port=p&path=websockify&token=t&encrypt=1&password=pw&autoconnect=1
//
// Part of websockify-rs (LGPL-3.0, as websockify).

import { websockifyUrl } from './websock.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const flag = (name, dflt) => (params.has(name) ? !['0', 'false', 'no', 'off'].includes(params.get(name)) : dflt);

$('host').value = params.get('host') ?? location.hostname;
$('port').value = params.get('port') ?? location.port;
$('path').value = params.get('path') ?? 'websockify';
$('token').value = params.get('token') ?? '';
$('password').value = params.get('password') ?? '';
$('encrypt').checked = flag('encrypt', location.protocol === 'https:');

function status(text, kind = '') {
    const el = $('status');
    el.textContent = text;
    el.className = `status ${kind}`;
}

let RFB;
try {
    ({ default: RFB } = await import('./novnc/core/rfb.js'));
} catch (e) {
    status(`noVNC is not installed beside this page (novnc/core/rfb.js: ${e.message}).`, 'bad');
    $('button').disabled = true;
}

let rfb = null;

function connected(yes) {
    $('button').textContent = yes ? 'Disconnect' : 'Connect';
    for (const id of ['host', 'port', 'path', 'token', 'password', 'encrypt']) $(id).disabled = yes;
}

function connect() {
    const url = websockifyUrl({
        host: $('host').value.trim(),
        port: $('port').value.trim(),
        path: $('path').value.trim(),
        secure: $('encrypt').checked,
        token: $('token').value.trim(),
    });
    const shown = url.replace(/token=[^&]*/, 'token=…');
    status(`Connecting to ${shown} …`);
    rfb = new RFB($('screen'), url, {
        credentials: { password: $('password').value },
        wsProtocols: ['binary'],
    });
    // Pixels one to one: the page shows the desktop at its own size.
    rfb.scaleViewport = false;
    rfb.resizeSession = false;
    rfb.addEventListener('connect', () => {
        status(`Connected to ${shown}`, 'ok');
        connected(true);
        rfb.focus();
    });
    rfb.addEventListener('desktopname', (e) => {
        document.title = `${e.detail.name} - vnc`;
    });
    rfb.addEventListener('credentialsrequired', () => {
        status('The VNC server wants a password: fill it in and connect again.', 'bad');
        rfb.disconnect();
    });
    rfb.addEventListener('securityfailure', (e) => {
        status(`Refused by the VNC server: ${e.detail.reason || e.detail.status}`, 'bad');
    });
    rfb.addEventListener('disconnect', (e) => {
        if (!e.detail.clean) status('Disconnected: the connection failed or was lost.', 'bad');
        else if ($('status').className !== 'status bad') status('Disconnected.');
        connected(false);
        rfb = null;
    });
}

$('connect').addEventListener('submit', (e) => {
    e.preventDefault();
    if (rfb) rfb.disconnect();
    else if (RFB) connect();
});

if (RFB && flag('autoconnect', false)) connect();
