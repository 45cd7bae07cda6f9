// index.js: the start page's live numbers and charts, from the proxy's status endpoint
// (/websockify/status.json, served on this port whenever --web is on).
//
// The charts are drawn here into the page's two SVGs, by hand: no library, nothing from
// another site, no inline script or style (a strict Content-Security-Policy allows them).
// The status answer carries the server's samples of the last five minutes (`history`, one
// every 5 s) so a page opened now draws those minutes at once; after that the page adds a
// point for each answer it polls. Every point is on the server's clock (`uptime_ms`), so
// rates are bytes over the server's own milliseconds, whatever the browser's clock says.
//
// Part of websockify-rs (LGPL-3.0, as websockify).

// Relative, so the page also works behind a reverse proxy that mounts it under a prefix.
const STATUS_URL = 'websockify/status.json';
const EVERY_MS = 2000;

// The charts' time span; the SVGs are 300 units wide, one per second.
const WINDOW_MS = 5 * 60 * 1000;
const WIDTH = 300;
// Where 0 and the top of the scale are drawn (the SVGs are 80 units high).
const BOTTOM = 78;
const TOP = 4;
// Points closer than this are not kept: a rate over a few milliseconds says little.
const MIN_GAP_MS = 1000;

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat('en');
const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

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

function perSecond(bytes) {
    const units = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'];
    let i = 0;
    while (bytes >= 1024 && i < units.length - 1) {
        bytes /= 1024;
        i += 1;
    }
    return `${i ? decimal.format(bytes) : Math.round(bytes)} ${units[i]}`;
}

// The points charted, oldest first: { t (the server's uptime_ms), sessions, from, to }.
let points = [];

/** Adds the answer's history and its own moment to `points`, and forgets what is too old. */
function take(s) {
    const now = {
        t: s.uptime_ms,
        sessions: s.sessions_active,
        from: s.bytes_from_client,
        to: s.bytes_to_client,
    };
    // A server that restarted has a clock and counters of its own: start again.
    if (points.length && now.t < points[points.length - 1].t) points = [];
    const history = Array.isArray(s.history) ? s.history : [];
    const incoming = history.map((h) => ({
        t: h.uptime_ms,
        sessions: h.sessions_active,
        from: h.bytes_from_client,
        to: h.bytes_to_client,
    }));
    incoming.push(now);
    for (const p of incoming) {
        if (!Number.isFinite(p.t)) continue;
        const last = points[points.length - 1];
        if (!last || p.t >= last.t + MIN_GAP_MS) points.push(p);
    }
    // Keep one point left of the window, so that the lines run to its edge.
    const start = now.t - WINDOW_MS;
    while (points.length > 1 && points[1].t <= start) points.shift();
}

/** Bytes per second each way over each step from one point to the next. */
function rates() {
    const out = [];
    for (let i = 1; i < points.length; i++) {
        const a = points[i - 1];
        const b = points[i];
        const seconds = (b.t - a.t) / 1000;
        out.push({
            start: a.t,
            end: b.t,
            from: Math.max(0, b.from - a.from) / seconds,
            to: Math.max(0, b.to - a.to) / seconds,
        });
    }
    return out;
}

/** A round number at or above `value`: 1, 2 or 5 times a power of ten (at least 1). */
function roundUp(value) {
    if (!(value > 1)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5]) {
        if (value <= step * power) return step * power;
    }
    return 10 * power;
}

/** The top of the throughput scale: round in the unit `perSecond` shows it in. */
function rateScale(peak) {
    let unit = 1;
    while (peak >= 1024 * unit && unit < 1024 ** 3) unit *= 1024;
    return roundUp(peak / unit) * unit;
}

/** Maps server times and values to the SVG's units: `end` at the right edge, 0..`top`. */
function scales(top, end) {
    return {
        x: (t) => (WIDTH - (end - t) / 1000).toFixed(1),
        y: (v) => (BOTTOM - (Math.min(v, top) / top) * (BOTTOM - TOP)).toFixed(1),
    };
}

/** SVG path data: a line through `series` ({t, value}). */
function line(series, top, end) {
    const { x, y } = scales(top, end);
    return series.map((p, i) => `${i ? 'L' : 'M'}${x(p.t)} ${y(p.value)}`).join('');
}

/** SVG path data: each step's rate held level from its start to its end (an average). */
function stairs(steps, way, top, end) {
    const { x, y } = scales(top, end);
    return steps
        .map((r, i) => `${i ? 'V' : `M${x(r.start)} `}${y(r[way])}H${x(r.end)}`)
        .join('');
}

function drawSessions(end) {
    const chart = $('sessions-chart');
    const series = points.map((p) => ({ t: p.t, value: p.sessions }));
    const peak = Math.max(0, ...series.map((p) => p.value));
    const top = Math.max(1, peak);
    const d = series.length > 1 ? line(series, top, end) : '';
    chart.querySelector('.line').setAttribute('d', d);
    // The area under the line: down to 0 at its last point, back, and up at its first.
    const area = d ? `${d}V${BOTTOM}H${(WIDTH - (end - series[0].t) / 1000).toFixed(1)}Z` : '';
    chart.querySelector('.area').setAttribute('d', area);
    $('sessions-peak').textContent = `scale 0–${number.format(top)}`;
    const latest = series.length ? series[series.length - 1].value : 0;
    chart.setAttribute(
        'aria-label',
        `Sessions open over the last 5 minutes: ${number.format(latest)} now, at most ${number.format(peak)}.`,
    );
}

function drawThroughput(end) {
    const chart = $('throughput-chart');
    const steps = rates();
    const peak = Math.max(0, ...steps.map((r) => Math.max(r.from, r.to)));
    const top = rateScale(peak);
    for (const way of ['from', 'to']) {
        chart.querySelector(`.line.${way}`).setAttribute('d', stairs(steps, way, top, end));
    }
    $('throughput-peak').textContent = `scale 0–${perSecond(top)}`;
    const latest = steps[steps.length - 1];
    chart.setAttribute(
        'aria-label',
        latest
            ? `Throughput over the last 5 minutes: now ${perSecond(latest.from)} from clients and ` +
                  `${perSecond(latest.to)} to clients, at most ${perSecond(peak)}.`
            : 'Throughput over the last 5 minutes: waiting for a second sample.',
    );
}

function draw() {
    if (!points.length) return;
    const end = points[points.length - 1].t;
    drawSessions(end);
    drawThroughput(end);
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
        take(s);
        draw();
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
