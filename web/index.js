// index.js: the start page's live numbers, from the proxy's status endpoint
// (/websockify/status.json, served on this port whenever --web is on).
//
// Part of websockify-rs (LGPL-3.0, as websockify).

// Relative, so the page also works behind a reverse proxy that mounts it under a prefix.
const STATUS_URL = 'websockify/status.json';
const EVERY_MS = 2000;

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat('en');

function duration(seconds) {
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s} s`;
    return `${s} s`;
}

async function refresh() {
    try {
        const response = await fetch(STATUS_URL, { cache: 'no-store' });
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
        const s = await response.json();
        $('version').textContent = s.version;
        $('uptime').textContent = duration(s.uptime_seconds);
        $('sessions-active').textContent = number.format(s.sessions_active);
        $('sessions-total').textContent = number.format(s.sessions_total);
        $('bytes-from-client').textContent = number.format(s.bytes_from_client);
        $('bytes-to-client').textContent = number.format(s.bytes_to_client);
        const el = $('status');
        el.textContent = `Live: updated ${new Date().toLocaleTimeString()}, every ${EVERY_MS / 1000} s.`;
        el.className = 'status ok';
    } catch (e) {
        const el = $('status');
        el.textContent = `The status is unavailable (${e.message}); retrying.`;
        el.className = 'status bad';
    }
}

refresh();
setInterval(refresh, EVERY_MS);
