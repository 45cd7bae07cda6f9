// telnet.js: the client side of telnet's option negotiation (RFC 854, 855, with RFC 1143's
// rules so that no exchange can loop), for wstelnet.html. A real telnetd opens with a volley
// of WILL and DO; a client that does not answer leaves it waiting before its login prompt.
//
// What we agree to: the server echoing (ECHO) and not sending go-aheads (SGA), which is
// character-at-a-time mode; and, when asked, to tell our terminal type (TTYPE) and window
// size (NAWS). Everything else (authentication, encryption, linemode, environment, ...) is
// refused with DONT or WONT. We ask for one thing ourselves, once the server has shown it
// speaks telnet: BINARY both ways, since a telnet session is 7-bit without it (telnetd
// strips the eighth bit of what we type) and the terminal speaks UTF-8.
//
// Part of websockify-rs (LGPL-3.0, as websockify).

export const IAC = 255;
export const DONT = 254;
export const DO = 253;
export const WONT = 252;
export const WILL = 251;
export const SB = 250;
export const SE = 240;

export const OPT_BINARY = 0;
export const OPT_ECHO = 1;
export const OPT_SGA = 3;
export const OPT_TTYPE = 24;
export const OPT_NAWS = 31;

const TTYPE_IS = 0;
const TTYPE_SEND = 1;

// Subnegotiations are short (a terminal type request); a longer one is not ours to keep.
const MAX_SB = 1024;

// Options we let the server enable on its side (its WILL gets our DO).
const HIM_ACCEPTS = new Set([OPT_BINARY, OPT_ECHO, OPT_SGA]);
// Options we enable on our side when asked (its DO gets our WILL).
const US_ACCEPTS = new Set([OPT_BINARY, OPT_SGA, OPT_TTYPE, OPT_NAWS]);

// An option's state on one side (RFC 1143's, without the queue bits: we ask only once).
const NO = undefined;
const YES = 'yes';
const WANT_YES = 'wantyes'; // we asked, no answer yet

/**
 * Splits the server's bytes into what the terminal shows and what to answer. Feed every
 * received chunk to receive(); commands split across chunks are kept until they complete.
 */
export class TelnetClient {
    constructor({ terminalType = 'XTERM', cols = 80, rows = 24 } = {}) {
        this.terminalType = terminalType;
        this.cols = cols;
        this.rows = rows;
        this._state = 'data'; // data, iac, option, sb, sb-iac
        this._verb = 0;
        this._sb = [];
        this._him = new Map(); // option -> state of the server's side
        this._us = new Map(); // option -> state of our side
        this._asked = false; // whether our own requests (BINARY) went out
    }

    /**
     * Returns { data, reply }: the bytes for the terminal and the bytes to send back
     * (possibly empty), both Uint8Array.
     */
    receive(bytes) {
        const data = [];
        const reply = [];
        for (const b of bytes) {
            switch (this._state) {
                case 'data':
                    if (b === IAC) this._state = 'iac';
                    else data.push(b);
                    break;
                case 'iac':
                    if (b === IAC) {
                        data.push(IAC); // an escaped 0xff is data
                        this._state = 'data';
                    } else if (b === WILL || b === WONT || b === DO || b === DONT) {
                        this._verb = b;
                        this._state = 'option';
                    } else if (b === SB) {
                        this._sb = [];
                        this._state = 'sb';
                    } else {
                        // NOP, GA, AYT, ...: nothing for a terminal to show or answer.
                        this._state = 'data';
                    }
                    break;
                case 'option':
                    this._negotiate(this._verb, b, reply);
                    if (!this._asked) {
                        // The server negotiates, so it is a telnet server: ask for BINARY.
                        this._asked = true;
                        for (const [side, verb] of [[this._us, WILL], [this._him, DO]]) {
                            if (side.get(OPT_BINARY) === NO) {
                                side.set(OPT_BINARY, WANT_YES);
                                reply.push(IAC, verb, OPT_BINARY);
                            }
                        }
                    }
                    this._state = 'data';
                    break;
                case 'sb':
                    if (b === IAC) this._state = 'sb-iac';
                    else if (this._sb.length < MAX_SB) this._sb.push(b);
                    break;
                case 'sb-iac':
                    if (b === SE) {
                        this._subnegotiation(this._sb, reply);
                        this._state = 'data';
                    } else {
                        if (b === IAC && this._sb.length < MAX_SB) this._sb.push(IAC);
                        this._state = 'sb';
                    }
                    break;
            }
        }
        return { data: Uint8Array.from(data), reply: Uint8Array.from(reply) };
    }

    /**
     * The user's bytes as telnet carries them: 0xff doubled; Enter (CR) as telnet's end of
     * line, CR LF, except in binary mode, where bytes go as they are.
     */
    encode(bytes) {
        const binary = this._us.get(OPT_BINARY) === YES;
        const out = [];
        for (const b of bytes) {
            if (b === IAC) out.push(IAC, IAC);
            else if (b === 13 && !binary) out.push(13, 10);
            else out.push(b);
        }
        return Uint8Array.from(out);
    }

    /** A new window size; sent at once if the server asked for NAWS. */
    resize(cols, rows) {
        this.cols = cols;
        this.rows = rows;
        return this._us.get(OPT_NAWS) === YES ? this._naws() : new Uint8Array(0);
    }

    /** Whether the server echoes what we type (else the terminal should). */
    get serverEchoes() {
        return this._him.get(OPT_ECHO) === YES;
    }

    _negotiate(verb, option, reply) {
        const him = verb === WILL || verb === WONT;
        const side = him ? this._him : this._us;
        const state = side.get(option);
        if (verb === WILL || verb === DO) {
            // The answer to our own request, or a request for what is already on: no
            // reply, or the two ends would echo each other forever.
            if (state === WANT_YES || state === YES) {
                side.set(option, YES);
                return;
            }
            const accepts = (him ? HIM_ACCEPTS : US_ACCEPTS).has(option);
            if (accepts) side.set(option, YES);
            const yes = him ? DO : WILL;
            const no = him ? DONT : WONT;
            reply.push(IAC, accepts ? yes : no, option);
            if (accepts && !him && option === OPT_NAWS) reply.push(...this._naws());
            return;
        }
        // WONT or DONT: a refusal of our request needs no reply; turning off what was on
        // is acknowledged; what is already off is left alone.
        side.delete(option);
        if (state === YES) reply.push(IAC, him ? DONT : WONT, option);
    }

    _subnegotiation(sb, reply) {
        if (sb[0] === OPT_TTYPE && sb[1] === TTYPE_SEND && this._us.get(OPT_TTYPE) === YES) {
            const name = Array.from(this.terminalType, (c) => c.charCodeAt(0) & 0x7f);
            reply.push(IAC, SB, OPT_TTYPE, TTYPE_IS, ...name, IAC, SE);
        }
    }

    _naws() {
        const out = [IAC, SB, OPT_NAWS];
        for (const n of [this.cols, this.rows]) {
            for (const b of [(n >> 8) & 0xff, n & 0xff]) {
                out.push(b);
                if (b === IAC) out.push(IAC);
            }
        }
        out.push(IAC, SE);
        return Uint8Array.from(out);
    }
}
