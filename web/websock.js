// websock.js: a WebSocket with websockify's conveniences, as an ES module without
// dependencies. The names follow websockify 0.6.1's websock.js (the client library noVNC
// was built on): a receive queue with typed reads (rQshift8/16/32, rQshiftStr,
// rQshiftBytes, rQwait), a send queue (sQpush*, flush, send), events (open, message, close,
// error), and the `binary` or `base64` subprotocol. The API is in web/README.md.
//
// Part of websockify-rs (LGPL-3.0, as websockify).

/** The subprotocols websockify speaks: raw bytes in binary frames, or base64 in text frames. */
export const PROTOCOLS = Object.freeze(['binary', 'base64']);

// The receive buffer starts at 4 KiB and doubles as needed; consumed bytes are dropped
// before it grows, so it holds at most what has arrived and not yet been read.
const INITIAL_RQ_SIZE = 4096;

// Above this many bytes waiting in the browser's own send buffer, flush() holds the send
// queue back and retries, so a fast producer cannot make the page buffer without bound.
const MAX_BUFFERED_AMOUNT = 1 << 20;
const FLUSH_RETRY_MS = 50;

/**
 * The URL of a websockify endpoint: `ws[s]://host:port/path?token=...`.
 * `secure` defaults to the page's own scheme (https -> wss), `host`/`port` to the page's.
 */
export function websockifyUrl({ host, port, path = 'websockify', secure, token } = {}) {
    const loc = globalThis.location;
    if (secure === undefined) secure = loc ? loc.protocol === 'https:' : false;
    if (host === undefined) host = loc ? loc.hostname : 'localhost';
    if (port === undefined || port === '') port = loc ? loc.port : '';
    // An IPv6 literal needs its brackets in a URL.
    if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
    const authority = port ? `${host}:${port}` : host;
    const url = new URL(`${secure ? 'wss' : 'ws'}://${authority}/${path.replace(/^\/+/, '')}`);
    if (token) url.searchParams.set('token', token);
    return url.href;
}

/** Bytes as base64 (what a `base64` session sends in its text frames). */
export function encodeBase64(bytes) {
    let s = '';
    // In pieces: String.fromCharCode takes its arguments on the stack.
    for (let i = 0; i < bytes.length; i += 0x8000) {
        s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
}

/** base64 as bytes; throws on anything that is not base64. */
export function decodeBase64(text) {
    const s = atob(text);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes;
}

export class Websock {
    constructor() {
        this._websocket = null;
        this._mode = 'binary';
        this._rQ = new Uint8Array(INITIAL_RQ_SIZE);
        this._rQstart = 0; // the next byte to read
        this._rQend = 0; // one past the last byte received
        this._sQ = [];
        this._sQlen = 0;
        this._flushTimer = null;
        this._handlers = {
            open: () => {},
            message: () => {},
            close: () => {},
            error: () => {},
        };
        /** flush() waits while the browser holds more than this many bytes unsent. */
        this.maxBufferedAmount = MAX_BUFFERED_AMOUNT;
    }

    // ---- connection ----

    /**
     * Connects. `protocols`: 'binary', 'base64', or a list in order of preference
     * (default: both, binary first; the server picks). `options.token` adds websockify's
     * `token` query parameter to `uri`.
     */
    open(uri, protocols = PROTOCOLS, options = {}) {
        this.close();
        this._rQstart = this._rQend = 0;
        this._sQ = [];
        this._sQlen = 0;
        if (typeof protocols === 'string') protocols = [protocols];
        for (const p of protocols) {
            if (!PROTOCOLS.includes(p)) throw new Error(`unknown subprotocol ${p}: binary or base64`);
        }
        if (options.token) {
            const url = new URL(uri);
            url.searchParams.set('token', options.token);
            uri = url.href;
        }
        const ws = new WebSocket(uri, protocols);
        ws.binaryType = 'arraybuffer';
        ws.onopen = () => {
            // No subprotocol chosen means binary frames, as websockify 0.13 and ours answer.
            this._mode = ws.protocol === 'base64' ? 'base64' : 'binary';
            this._handlers.open();
        };
        ws.onmessage = (e) => this._receive(e);
        ws.onclose = (e) => {
            clearTimeout(this._flushTimer);
            this._flushTimer = null;
            this._handlers.close(e);
        };
        ws.onerror = (e) => this._handlers.error(e);
        this._websocket = ws;
    }

    /** Closes (code and reason as WebSocket.close takes them); harmless when not open. */
    close(code, reason) {
        const ws = this._websocket;
        if (!ws) return;
        clearTimeout(this._flushTimer);
        this._flushTimer = null;
        if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
            ws.close(code, reason);
        }
        // Late data belongs to no one once the caller has closed.
        ws.onmessage = () => {};
    }

    /** Sets the handler of 'open', 'message', 'close' (gets the CloseEvent) or 'error'. */
    on(event, handler) {
        if (!(event in this._handlers)) throw new Error(`unknown event ${event}`);
        this._handlers[event] = handler;
    }

    /** 'binary' or 'base64': what the session speaks (known once open). */
    get mode() {
        return this._mode;
    }

    /** The underlying WebSocket's readyState, or WebSocket.CLOSED before open(). */
    get readyState() {
        return this._websocket ? this._websocket.readyState : WebSocket.CLOSED;
    }

    // ---- receive queue ----

    /** Bytes received and not yet read. */
    rQlen() {
        return this._rQend - this._rQstart;
    }

    rQpeek8() {
        return this._rQ[this._rQstart];
    }

    rQshift8() {
        this._need(1);
        return this._rQ[this._rQstart++];
    }

    /** Big-endian, as RFB and most wire formats. */
    rQshift16() {
        this._need(2);
        const q = this._rQ;
        const i = this._rQstart;
        this._rQstart += 2;
        return (q[i] << 8) | q[i + 1];
    }

    rQshift32() {
        this._need(4);
        const q = this._rQ;
        const i = this._rQstart;
        this._rQstart += 4;
        // >>> 0: unsigned, so 0xffffffff is not -1.
        return ((q[i] << 24) | (q[i + 1] << 16) | (q[i + 2] << 8) | q[i + 3]) >>> 0;
    }

    /** `len` bytes (default: all) as a string, one character per byte (Latin-1). */
    rQshiftStr(len = this.rQlen()) {
        const bytes = this.rQshiftBytes(len, false);
        let s = '';
        for (let i = 0; i < bytes.length; i += 0x8000) {
            s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
        }
        return s;
    }

    /**
     * `len` bytes (default: all) as a Uint8Array: a copy, or with `copy` false a view that
     * is only valid until the next message arrives.
     */
    rQshiftBytes(len = this.rQlen(), copy = true) {
        this._need(len);
        const view = this._rQ.subarray(this._rQstart, this._rQstart + len);
        this._rQstart += len;
        return copy ? view.slice() : view;
    }

    /** Bytes at `start`..`end` from the read position, without consuming them (a copy). */
    rQslice(start, end = this.rQlen()) {
        return this._rQ.slice(this._rQstart + start, this._rQstart + end);
    }

    /**
     * True when fewer than `num` bytes are waiting: the caller should return and try again
     * at the next 'message'. With `goback`, also steps back that many bytes already read, so
     * a half-parsed message can be parsed again from its start. `msg` names what is awaited,
     * for the error when stepping back is impossible.
     */
    rQwait(msg, num, goback) {
        if (this.rQlen() < num) {
            if (goback) {
                if (this._rQstart < goback) {
                    throw new Error(`rQwait cannot step back ${goback} bytes (${msg})`);
                }
                this._rQstart -= goback;
            }
            return true;
        }
        return false;
    }

    _need(len) {
        if (len > this.rQlen()) {
            throw new RangeError(`receive queue has ${this.rQlen()} bytes, ${len} wanted`);
        }
    }

    _receive(e) {
        let bytes;
        try {
            if (typeof e.data === 'string') {
                // Text frames only come on base64 sessions.
                bytes = decodeBase64(e.data);
            } else {
                bytes = new Uint8Array(e.data);
            }
        } catch (err) {
            this._handlers.error(err);
            return;
        }
        if (bytes.length === 0) return;
        this._append(bytes);
        this._handlers.message();
    }

    _append(bytes) {
        const unread = this.rQlen();
        if (this._rQend + bytes.length > this._rQ.length) {
            // Compact first; grow only if the unread bytes and the new ones do not fit.
            let size = this._rQ.length;
            while (unread + bytes.length > size) size *= 2;
            if (size === this._rQ.length) {
                this._rQ.copyWithin(0, this._rQstart, this._rQend);
            } else {
                const q = new Uint8Array(size);
                q.set(this._rQ.subarray(this._rQstart, this._rQend));
                this._rQ = q;
            }
            this._rQstart = 0;
            this._rQend = unread;
        }
        this._rQ.set(bytes, this._rQend);
        this._rQend += bytes.length;
    }

    // ---- send queue ----

    sQpush8(n) {
        this._sQpush(Uint8Array.of(n & 0xff));
    }

    sQpush16(n) {
        this._sQpush(Uint8Array.of((n >> 8) & 0xff, n & 0xff));
    }

    sQpush32(n) {
        this._sQpush(Uint8Array.of((n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff));
    }

    /** A string of one byte per character (Latin-1), as websockify's send_string. */
    sQpushString(s) {
        const bytes = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i) & 0xff;
        this._sQpush(bytes);
    }

    /** Bytes: a Uint8Array, an ArrayBuffer or an array of numbers. */
    sQpushBytes(bytes) {
        this._sQpush(bytes instanceof Uint8Array ? bytes.slice() : new Uint8Array(bytes));
    }

    _sQpush(bytes) {
        this._sQ.push(bytes);
        this._sQlen += bytes.length;
    }

    /** Bytes queued and not yet handed to the WebSocket. */
    sQlen() {
        return this._sQlen;
    }

    /**
     * Sends the queue as one message. Returns false when the browser is already holding
     * more than maxBufferedAmount: the queue is kept and sent by a retry a little later.
     */
    flush() {
        const ws = this._websocket;
        if (!ws || ws.readyState !== WebSocket.OPEN) return false;
        if (this._sQlen === 0) return true;
        if (ws.bufferedAmount > this.maxBufferedAmount) {
            if (!this._flushTimer) {
                this._flushTimer = setTimeout(() => {
                    this._flushTimer = null;
                    this.flush();
                }, FLUSH_RETRY_MS);
            }
            return false;
        }
        const message = new Uint8Array(this._sQlen);
        let at = 0;
        for (const part of this._sQ) {
            message.set(part, at);
            at += part.length;
        }
        this._sQ = [];
        this._sQlen = 0;
        ws.send(this._mode === 'base64' ? encodeBase64(message) : message);
        return true;
    }

    /** Queues bytes (as sQpushBytes) and flushes. */
    send(bytes) {
        this.sQpushBytes(bytes);
        return this.flush();
    }

    /** Queues a Latin-1 string (as sQpushString) and flushes; websockify 0.6.1's name. */
    send_string(s) {
        this.sQpushString(s);
        return this.flush();
    }
}

export default Websock;
