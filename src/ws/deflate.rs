//! permessage-deflate (RFC 7692): the negotiation, and the compression of the messages a HyBi
//! session sends and the inflation of those it receives.
//!
//! The deflate itself is `flate2` on the `zlib-rs` backend; what is here is the glue the RFC
//! asks for: the offer's parameters, the trailing `00 00 ff ff` of a sync flush, when a message
//! is worth compressing, and where the compressor and inflater state lives.
//!
//! Memory is the design's constraint: a zlib compressor with a 32 KiB window is about 270 KiB
//! and an inflater about 40 KiB, far more than the 6 to 8 KiB an idle session costs. So by
//! default neither side keeps context between messages (`server_no_context_takeover` and
//! `client_no_context_takeover` in our answer): a message is compressed by the worker thread's
//! compressor, reset after each message, and inflated by an inflater lent from a pool for the
//! time the message takes to arrive. An idle session holds neither. `--compression-context`
//! keeps both per session instead (better ratios for streams of small similar messages, such
//! as a terminal's), at the cost measured in `docs/performance.md`.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderMap;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// What a sync flush ends with, which the RFC has the sender remove and the receiver put back
/// (RFC 7692 7.2.1 and 7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window (32 KiB), and the smallest zlib compresses with: zlib refuses a raw
/// deflate window of 8 bits, but with 9 its matches reach back at most 250 bytes (the window
/// less its lookahead), within what an inflater with a 256-byte window holds.
const MAX_WINDOW_BITS: u8 = 15;
const MIN_ZLIB_WINDOW_BITS: u8 = 9;

/// How the proxy compresses (`--compression` and its companions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Messages to the client shorter than this go uncompressed (`--compression-min-size`).
    pub min_size: usize,
    /// zlib's level, 1 (fastest) to 9 (`--compression-level`).
    pub level: u32,
    /// Keep compressor and inflater state between messages (`--compression-context`).
    pub context_takeover: bool,
}

/// The parameters agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// We start each message with an empty window (`server_no_context_takeover`).
    pub server_no_context_takeover: bool,
    /// The client starts each of its messages with an empty window
    /// (`client_no_context_takeover`), so an inflater serves one message at a time.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` when the client asked for it: our window's bound, answered.
    pub server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The value of `Sec-WebSocket-Extensions` in our answer.
    pub fn header_value(&self) -> String {
        let mut v = NAME.to_string();
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={bits}"));
        }
        v
    }

    /// How the session's log line names it: `deflate` when neither side keeps context
    /// between messages, `deflate-context` when one does.
    pub fn mode(&self) -> &'static str {
        if self.server_no_context_takeover && self.client_no_context_takeover {
            "deflate"
        } else {
            "deflate-context"
        }
    }

    /// The window our compressor uses: what the client allowed, and never less than zlib can
    /// make (see [`MIN_ZLIB_WINDOW_BITS`]).
    fn compress_window_bits(&self) -> u8 {
        self.server_max_window_bits
            .unwrap_or(MAX_WINDOW_BITS)
            .max(MIN_ZLIB_WINDOW_BITS)
    }
}

/// One permessage-deflate offer's parameters, as RFC 7692 section 7.1 defines them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, with or without a value: the client can take our answer's.
    client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer cannot be accepted (it is then skipped, never the handshake failed).
#[derive(Debug, PartialEq, Eq)]
struct Unacceptable;

impl Offer {
    /// Parses one offer's parameters (after the extension's name); a parameter that is
    /// unknown, repeated or has a value out of its range makes the offer unacceptable (RFC 7692
    /// 7.1: "the server MUST decline" such an offer).
    fn parse<'a>(params: impl Iterator<Item = &'a str>) -> Result<Offer, Unacceptable> {
        let mut offer = Offer::default();
        let mut seen = [false; 4];
        for param in params {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
                None => (param.trim(), None),
            };
            let index = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => {
                    value.map_or(Ok(()), |_| Err(Unacceptable))?;
                    offer.server_no_context_takeover = true;
                    0
                }
                "client_no_context_takeover" => {
                    value.map_or(Ok(()), |_| Err(Unacceptable))?;
                    offer.client_no_context_takeover = true;
                    1
                }
                "server_max_window_bits" => {
                    offer.server_max_window_bits = Some(window_bits(value.ok_or(Unacceptable)?)?);
                    2
                }
                "client_max_window_bits" => {
                    offer.client_max_window_bits = Some(value.map(window_bits).transpose()?);
                    3
                }
                _ => return Err(Unacceptable),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(Unacceptable);
            }
        }
        Ok(offer)
    }
}

/// A window size's base-2 logarithm: 8 to 15, written without leading zeros.
fn window_bits(value: &str) -> Result<u8, Unacceptable> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Unacceptable);
    }
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(Unacceptable),
    }
}

/// A parameter's value as a token or a quoted string (RFC 6455 9.1, RFC 7692 7.1).
fn unquote(value: &str) -> Result<&str, Unacceptable> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').ok_or(Unacceptable),
        None => Ok(value),
    }
}

/// Splits a header value at `sep`, but not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// Takes the first permessage-deflate offer in the request's `Sec-WebSocket-Extensions` that
/// the proxy can honour, and the parameters answered to it; `None` leaves the extension off
/// (no offer, or none acceptable), which is never a reason to refuse the handshake.
pub fn negotiate(headers: &HeaderMap, policy: &Policy) -> Option<Agreed> {
    let values = headers
        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for value in values {
        for extension in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(extension, ';');
            let name = parts.next().unwrap_or_default().trim();
            if !name.eq_ignore_ascii_case(NAME) {
                continue;
            }
            let params = parts.filter(|p| !p.trim().is_empty());
            let Ok(offer) = Offer::parse(params) else {
                continue;
            };
            return Some(Agreed {
                server_no_context_takeover: offer.server_no_context_takeover
                    || !policy.context_takeover,
                // Asked of the client even when it did not offer it (RFC 7692 7.1.1.2).
                client_no_context_takeover: offer.client_no_context_takeover
                    || !policy.context_takeover,
                server_max_window_bits: offer.server_max_window_bits,
            });
        }
    }
    None
}

/// A session's side of the extension: its compressor for what goes to the client and its
/// inflater for what comes from it.
pub struct Deflate {
    pub deflater: Box<Deflater>,
    pub inflater: Box<Inflater>,
}

impl Deflate {
    pub fn new(agreed: Agreed, policy: &Policy) -> Deflate {
        let window_bits = agreed.compress_window_bits();
        Deflate {
            deflater: Box::new(Deflater {
                min_size: policy.min_size,
                level: policy.level,
                window_bits,
                keep_context: !agreed.server_no_context_takeover,
                own: None,
            }),
            inflater: Box::new(Inflater {
                keep_context: !agreed.client_no_context_takeover,
                own: None,
                lent: None,
                input: BytesMut::new(),
                ended: false,
                out: 0,
                full: false,
            }),
        }
    }
}

fn new_compressor(level: u32, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits)
}

fn new_inflater() -> Decompress {
    // The largest window inflates what any smaller one compressed.
    Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)
}

/// Compresses messages to the client.
pub struct Deflater {
    min_size: usize,
    level: u32,
    window_bits: u8,
    /// Context takeover: the session keeps its own compressor (made at its first message, so
    /// a session that never sends costs nothing); otherwise the thread's is lent per message.
    keep_context: bool,
    own: Option<Compress>,
}

thread_local! {
    /// This worker's compressors by (level, window bits), lent to one message at a time: the
    /// compression of a message runs without an await, so no other session can be using it.
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

impl Deflater {
    /// `data` as the payload of a compressed message (RSV1), or `None` when it goes as it is:
    /// shorter than `--compression-min-size`, likely incompressible, or not smaller deflated.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < self.min_size || looks_incompressible(data) {
            return None;
        }
        if self.keep_context {
            let (level, window_bits) = (self.level, self.window_bits);
            let own = self
                .own
                .get_or_insert_with(|| new_compressor(level, window_bits));
            let out = deflate_message(own, data);
            if out.is_none() {
                // What the client never saw must not be referred to: start afresh.
                own.reset();
            }
            return out;
        }
        COMPRESSORS.with(|cell| {
            let Ok(mut compressors) = cell.try_borrow_mut() else {
                // Not reachable (no await inside), but a fresh compressor is always correct.
                return deflate_message(&mut new_compressor(self.level, self.window_bits), data);
            };
            let at = match compressors
                .iter()
                .position(|(l, w, _)| (*l, *w) == (self.level, self.window_bits))
            {
                Some(at) => at,
                None => {
                    let c = new_compressor(self.level, self.window_bits);
                    compressors.push((self.level, self.window_bits, c));
                    compressors.len() - 1
                }
            };
            let compressor = &mut compressors[at].2;
            let out = deflate_message(compressor, data);
            compressor.reset();
            out
        })
    }
}

/// Deflates one message with a sync flush and drops the flush's `00 00 ff ff`; `None` as soon
/// as the output reaches the input's size.
fn deflate_message(c: &mut Compress, data: &[u8]) -> Option<Vec<u8>> {
    // A message worth sending compressed fits in its own size (the tail is removed after).
    let mut out = Vec::with_capacity(data.len() + SYNC_TAIL.len());
    let start_in = c.total_in();
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .ok()?;
        let done = (c.total_in() - start_in) as usize == data.len();
        // zlib's sync flush is complete when it returns with output room to spare.
        if done && out.len() < out.capacity() {
            break;
        }
        // Out of room: deflated, the message is no smaller.
        if out.len() == out.capacity() || status == Status::StreamEnd {
            return None;
        }
    }
    if !out.ends_with(&SYNC_TAIL) {
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    (out.len() < data.len()).then_some(out)
}

/// Whether a large message is likely random (already compressed, encrypted): its bytes, by a
/// sample, spread almost evenly over all 256 values. Deflating such data costs a hundred times
/// what relaying it does and saves nothing.
fn looks_incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 1024;
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let mut counts = [0u16; 256];
    let step = data.len() / SAMPLE;
    for i in 0..SAMPLE {
        counts[usize::from(data[i * step])] += 1;
    }
    // Order-0 entropy of the sample in bits per byte; 1,024 random bytes give about 7.8.
    let n = SAMPLE as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.5
}

/// Inflaters waiting to be lent to a message (context takeover off); a few per worker are kept,
/// the rest freed.
static INFLATERS: Mutex<Vec<Decompress>> = Mutex::new(Vec::new());
const INFLATERS_KEPT: usize = 64;

fn borrow_inflater() -> Decompress {
    let pooled = INFLATERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    pooled.unwrap_or_else(new_inflater)
}

fn give_back(mut inflater: Decompress) {
    inflater.reset(false);
    let mut pool = INFLATERS.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < INFLATERS_KEPT {
        pool.push(inflater);
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Inflated, the message exceeds `--max-message-size` (close 1009).
    TooBig,
    /// Not a valid deflate stream (close 1007).
    Invalid(String),
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig => f.write_str("inflated message too big"),
            InflateError::Invalid(e) => write!(f, "invalid compressed data: {e}"),
        }
    }
}

/// Inflates the messages the client sent compressed, a piece at a time and never more than the
/// message's allowance at once, so that a small message that inflates to gigabytes (a
/// decompression bomb) costs at most `--max-message-size`.
pub struct Inflater {
    /// Context takeover from the client: the session keeps its own inflater (made at its
    /// first compressed message); otherwise one is lent from the pool per message.
    keep_context: bool,
    own: Option<Decompress>,
    /// Without: the pool's, lent for the message being received.
    lent: Option<Decompress>,
    /// Compressed bytes of the current message not inflated yet.
    input: BytesMut,
    /// The message's last compressed bytes are in `input` (with the sync tail put back).
    ended: bool,
    /// Inflated bytes of the current message so far.
    out: u64,
    /// The last call filled its buffer: the inflater may hold more output.
    full: bool,
}

/// What one call to [`Inflater::inflate`] gave.
pub struct Inflated {
    pub data: Vec<u8>,
    /// The message is complete with `data`.
    pub last: bool,
}

impl Inflater {
    /// Takes the next compressed piece of the message; `last` when the message ends with it.
    pub fn push(&mut self, piece: &[u8], last: bool) {
        self.input.extend_from_slice(piece);
        if last {
            self.input.extend_from_slice(&SYNC_TAIL);
            self.ended = true;
        }
    }

    /// Whether inflated bytes are still to be taken before more input is read.
    pub fn has_pending(&self) -> bool {
        !self.input.is_empty() || self.full
    }

    /// Inflates what was pushed, giving at most `chunk` bytes at once; the message's inflated
    /// size may not exceed `limit`.
    pub fn inflate(&mut self, chunk: usize, limit: u64) -> Result<Inflated, InflateError> {
        let d: &mut Decompress = match (self.keep_context, &mut self.lent) {
            (true, _) => self.own.get_or_insert_with(new_inflater),
            (false, Some(lent)) => lent,
            (false, lent @ None) => lent.insert(borrow_inflater()),
        };
        let allowance = limit.saturating_sub(self.out);
        // One byte more than allowed tells a message over the limit from one at it.
        let room = (chunk as u64).min(allowance.saturating_add(1)).max(1) as usize;
        let mut data = Vec::with_capacity(room);
        let result = loop {
            let (in_before, out_before) = (d.total_in(), data.len());
            let status = match d.decompress_vec(&self.input, &mut data, FlushDecompress::Sync) {
                Ok(status) => status,
                Err(e) => break Err(InflateError::Invalid(e.to_string())),
            };
            let used = (d.total_in() - in_before) as usize;
            self.input.advance(used);
            if data.len() as u64 > allowance {
                break Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): what follows it in the message is ignored, and the
                // next message starts a new stream.
                d.reset(false);
                self.input.clear();
                break Ok(());
            }
            if self.input.is_empty() || data.len() == data.capacity() {
                break Ok(());
            }
            if used == 0 && data.len() == out_before {
                break Err(InflateError::Invalid("inflating made no progress".into()));
            }
        };
        if let Err(e) = result {
            self.abandon();
            return Err(e);
        }
        // A full buffer may leave output inside the inflater, even with all input taken.
        self.full = data.len() == data.capacity();
        self.out += data.len() as u64;
        let last = self.ended && !self.has_pending();
        if last {
            self.finish_message();
        }
        Ok(Inflated { data, last })
    }

    fn finish_message(&mut self) {
        self.out = 0;
        self.ended = false;
        self.full = false;
        if let Some(lent) = self.lent.take() {
            give_back(lent);
        }
    }

    /// Drops the message (the session ends with an error).
    fn abandon(&mut self) {
        self.input.clear();
        self.finish_message();
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if let Some(lent) = self.lent.take() {
            give_back(lent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        min_size: 0,
        level: 6,
        context_takeover: false,
    };

    fn offer(value: &str, policy: &Policy) -> Option<Agreed> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::SEC_WEBSOCKET_EXTENSIONS,
            value.parse().unwrap(),
        );
        negotiate(&headers, policy)
    }

    #[test]
    fn a_browsers_offer_is_answered_without_context_by_default() {
        let agreed = offer("permessage-deflate; client_max_window_bits", &POLICY).unwrap();
        assert_eq!(
            agreed.header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let keep = Policy {
            context_takeover: true,
            ..POLICY
        };
        let agreed = offer("permessage-deflate; client_max_window_bits", &keep).unwrap();
        assert_eq!(agreed.header_value(), "permessage-deflate");
        // What the client asked is answered even when we would keep context.
        let agreed = offer(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            &keep,
        )
        .unwrap();
        assert_eq!(
            agreed.header_value(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
    }

    #[test]
    fn unacceptable_offers_are_skipped_for_the_next() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; foo",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(bad, &POLICY), None, "{bad}");
            let both = format!("{bad}, permessage-deflate; server_max_window_bits=\"12\"");
            assert_eq!(
                offer(&both, &POLICY).and_then(|a| a.server_max_window_bits),
                Some(12),
                "{both}"
            );
        }
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits=\"9\"", &POLICY)
                .map(|a| a.server_max_window_bits),
            Some(None)
        );
    }

    fn roundtrip(data: &[u8], window: u8) {
        let agreed = Agreed {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(window),
        };
        let mut deflate = Deflate::new(agreed, &POLICY);
        let compressed = deflate.deflater.compress(data).expect("compressible");
        assert!(compressed.len() < data.len());
        // The client's side, with the window it allowed us.
        let mut client = Decompress::new_with_window_bits(false, window.max(9));
        let mut input = compressed.clone();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(data.len() + 16);
        client
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, data);
        // And ours, given the pieces one byte at a time.
        let inflater = &mut deflate.inflater;
        let mut got = Vec::new();
        for (i, b) in compressed.iter().enumerate() {
            inflater.push(&[*b], i + 1 == compressed.len());
            loop {
                let r = inflater.inflate(1000, 1 << 20).unwrap();
                got.extend_from_slice(&r.data);
                if r.last || !inflater.has_pending() {
                    break;
                }
            }
        }
        assert_eq!(got, data);
    }

    #[test]
    fn messages_survive_compression_at_every_window() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {} of the terminal\n", i % 97).into_bytes())
            .collect();
        for window in 8..=15 {
            roundtrip(&text, window);
        }
    }

    #[test]
    fn random_data_is_sent_as_it_is() {
        let mut x = 0x1234_5678_u32;
        let random: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let agreed = offer("permessage-deflate", &POLICY).unwrap();
        let mut deflate = Deflate::new(agreed, &POLICY);
        assert!(looks_incompressible(&random));
        assert_eq!(deflate.deflater.compress(&random), None);
        // Small random messages get past the sample and are tried, and still go as they are.
        assert_eq!(deflate.deflater.compress(&random[..1000]), None);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut c = new_compressor(9, 15);
        let bomb = deflate_message(&mut c, &zeros).unwrap();
        assert!(bomb.len() < 12 * 1024, "{}", bomb.len());
        let agreed = offer("permessage-deflate", &POLICY).unwrap();
        let mut inflater = Deflate::new(agreed, &POLICY).inflater;
        inflater.push(&bomb, true);
        let limit = 1 << 20;
        let mut total = 0;
        let err = loop {
            match inflater.inflate(256 * 1024, limit) {
                Ok(r) => {
                    assert!(r.data.capacity() <= 256 * 1024 + 1);
                    total += r.data.len();
                    assert!(!r.last);
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, InflateError::TooBig);
        assert!(total <= limit as usize);
        // Garbage is refused as invalid.
        inflater.push(&[0xff; 16], true);
        assert!(matches!(
            inflater.inflate(1024, limit),
            Err(InflateError::Invalid(_))
        ));
    }

    #[test]
    fn context_takeover_keeps_the_window_between_messages() {
        let keep = Policy {
            context_takeover: true,
            ..POLICY
        };
        let agreed = offer("permessage-deflate", &keep).unwrap();
        let mut deflate = Deflate::new(agreed, &keep);
        let line = b"user@host:~$ ls -la /var/log/some/long/path/name\n".repeat(2);
        let first = deflate.deflater.compress(&line).unwrap();
        let second = deflate.deflater.compress(&line).unwrap();
        assert!(second.len() < first.len() / 2, "{first:?} {second:?}");
        for message in [first, second] {
            deflate.inflater.push(&message, true);
            let r = deflate.inflater.inflate(1 << 16, 1 << 20).unwrap();
            assert!(r.last);
            assert_eq!(r.data, line);
        }
    }
}
