//! Fuzz targets: one function per parser that reads bytes from outside, each taking arbitrary
//! bytes and asserting the parser's invariants. A panic is a finding.
//!
//! They live in the library (not in `fuzz/`) so that two callers share them and they can reach
//! the crate's internals: the cargo-fuzz binaries in `fuzz/fuzz_targets/` (one line each,
//! nightly, libFuzzer), which build the library with the `fuzzing` feature, and the corpus
//! replay (`replay`, unit tests in a plain `cargo test` on stable). A default build has none
//! of it. See `docs/fuzzing.md`.
//!
//! The assertions here are the point: every `assert!` states something the proxy relies on,
//! and libFuzzer reports the input that breaks it. Nothing here runs in the server.
//!
//! Where a target needs a choice the input should make (where to split it, which subprotocol),
//! the first byte is that choice and the rest is the input proper, so the corpus files of
//! `request_head`, `sniff`, `token_file` and `config_file` stay readable as they are.

#[cfg(test)]
mod replay;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::edge::http::{HeadError, MAX_HEAD_BYTES};
use crate::edge::sniff::{self, FLASH_POLICY_REQUEST, SniffError, Sniffed};
use crate::edge::stream::{ClientIo, ClientStream};
use crate::request::{Channel, ClientAddr, Facts};
use crate::session::{ClientRx, ClientTx, Inbound, RecvError, close_code};
use crate::ws::hixie::framing::{self as hixie_framing, Decoded, Decoder};
use crate::ws::hixie::handshake::{challenge_answer, key_number};
use crate::ws::hixie::{self, HixieHandshake};
use crate::ws::hybi::frame::{self, HeaderBytes, OpCode};
use crate::ws::hybi::session::PIECE;
use crate::ws::hybi::{self, MAX_MESSAGE_SIZE};
use crate::ws::{Decision, HybiHandshake, Subprotocol};

/// The longest HyBi frame header a client sends: 2 bytes, 8 of extended length, 4 of mask.
const MAX_FRAME_HEADER: usize = 14;

/// Inputs larger than this skip the parts of a target that go through a socket pair: the
/// bytes are written before they are read, and must fit in the socket's buffer. libFuzzer's
/// inputs are far smaller (`-max_len` defaults to 4 KiB).
const SOCKET_INPUT_LIMIT: usize = 64 * 1024;

/// Runs a future on this thread's current-thread runtime (created once: a runtime per input
/// would dominate the time of every run).
fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz targets");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// A session's bounds for a fuzz target: `max_message`, no send deadline, no clocks.
fn bounds(max_message: usize) -> crate::session::Bounds {
    crate::session::Bounds {
        max_message,
        send_timeout: None,
        activity: Arc::new(crate::session::activity::Activity::new(None, None)),
    }
}

/// An in-memory client: reads give the input at most `chunk` bytes at a time (so parsers see
/// it split), then end of file; writes are collected.
struct Mock<'a> {
    input: &'a [u8],
    chunk: usize,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<'a> Mock<'a> {
    fn new(input: &'a [u8], chunk: usize) -> (Mock<'a>, Arc<Mutex<Vec<u8>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let mock = Mock {
            input,
            chunk: chunk.max(1),
            written: written.clone(),
        };
        (mock, written)
    }
}

impl AsyncRead for Mock<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.input.len().min(this.chunk).min(buf.remaining());
        buf.put_slice(&this.input[..n]);
        this.input = &this.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mock<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn written(sink: &Mutex<Vec<u8>>) -> Vec<u8> {
    sink.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// What a client session's receiving half delivered, in a form two runs can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Data(Vec<u8>),
    Part(Vec<u8>),
    Close(Option<(u16, String)>),
    /// Closed by us with this code (the reason text is not compared).
    Protocol(u16),
    /// The connection ended without a close.
    Gone,
}

/// Receives until the session ends (a close, or an error).
async fn drain<R: ClientRx>(rx: &mut R) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = match rx.recv().await {
            Ok(Inbound::Data(data)) => Event::Data(data.to_vec()),
            Ok(Inbound::Part(data)) => Event::Part(data.to_vec()),
            Ok(Inbound::Close(close)) => Event::Close(close.map(|c| (c.code, c.reason.into()))),
            Err(RecvError::Protocol(close)) => Event::Protocol(close.code),
            Err(RecvError::Gone(_)) => Event::Gone,
        };
        let end = !matches!(event, Event::Data(_) | Event::Part(_));
        events.push(event);
        if end {
            return events;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// request_head

/// The HTTP request head reader (`http::read_head`) over the input as a client's bytes, then
/// everything that looks at the parsed request before a session starts: the upgrade decision
/// (`ws::decide`), the HyBi checks and 101, the Hixie checks, 101 and (for draft 76) the key
/// bytes and challenge answer, the first Hixie frames, and the token and facts a plugin sees.
pub fn request_head(data: &[u8]) {
    block_on(async {
        let mut input = data;
        let read = crate::edge::http::read_head(&mut input).await;
        let consumed = data.len() - input.len();
        assert!(
            consumed <= MAX_HEAD_BYTES,
            "read {consumed} bytes for a head"
        );
        let head = match read {
            Ok(head) => head,
            Err(e) => {
                match &e {
                    HeadError::Closed => assert!(input.is_empty(), "closed with input left"),
                    HeadError::TooLarge | HeadError::TooManyHeaders | HeadError::Malformed(_) => {}
                    HeadError::Timeout(_) | HeadError::Io(_) => panic!("{e} from memory"),
                }
                if let Some(status) = e.status() {
                    check_answer(
                        &crate::edge::http::Refusal::new(status, e.to_string()).response(),
                    );
                }
                return;
            }
        };
        // What follows the head is kept byte for byte, and the head ends with its blank line.
        assert!(head.rest.len() <= consumed);
        let head_len = consumed - head.rest.len();
        assert_eq!(
            &data[head_len..consumed],
            &head.rest[..],
            "bytes after the head"
        );
        assert!(data[..head_len].ends_with(b"\n"), "head without its end");
        let facts = Facts {
            client: ClientAddr::Unix,
            channel: Channel::default(),
            head: head.request,
        };
        check_facts(&facts);
        let request = &facts.head;
        match crate::ws::decide(request) {
            Decision::Http => {
                for name in ["upgrade", "sec-websocket-key", "sec-websocket-version"] {
                    assert!(
                        !request.headers().contains_key(name),
                        "{name} taken for HTTP"
                    );
                }
            }
            Decision::Refuse(rejection) => {
                assert!(rejection.status.is_client_error(), "{rejection:?}");
                check_answer(&rejection.response());
            }
            Decision::Hybi(hs) => check_hybi(request, &hs),
            Decision::Hixie(hs) => {
                let mut after = head.rest.to_vec();
                after.extend_from_slice(input);
                check_hixie(request, &hs, head.rest, input, &after).await;
            }
        }
    })
}

/// An answer we write parses as one complete HTTP response whose body is its Content-Length.
fn check_answer(answer: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(answer) else {
        panic!(
            "our answer is not HTTP: {:?}",
            String::from_utf8_lossy(answer)
        );
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
    assert_eq!(
        length,
        Some(answer.len() - len),
        "Content-Length of our answer"
    );
}

/// A 101 head we write is one complete head and nothing more: no header of the client's can
/// add a line to it.
fn check_101(head: &[u8], headers: usize) {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut slots);
    let parsed = response.parse(head);
    assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(head.len())),
        "101 head: {:?}",
        String::from_utf8_lossy(head)
    );
    assert_eq!(response.code, Some(101));
    assert_eq!(response.headers.len(), headers, "header lines of the 101");
}

fn check_hybi(request: &Request<()>, hs: &HybiHandshake) {
    assert!(matches!(hs.version, 7 | 8 | 13), "version {}", hs.version);
    let key = request
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some(key) = key else {
        panic!("HyBi accepted without a key");
    };
    assert_eq!(
        hs.accept,
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    if let Some(p) = hs.protocol {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|o| o.trim() == p.name());
        assert!(offered, "{} chosen without an offer", p.name());
    }
    check_101(&hs.response(), 3 + usize::from(hs.protocol.is_some()));
}

/// The Hixie 101 for both schemes, then `hixie::accept` over an in-memory client: the key
/// bytes of draft 76 and its answer, and the frames that follow, which must be what a one-shot
/// decoder makes of the same bytes.
async fn check_hixie(
    request: &Request<()>,
    hs: &HixieHandshake,
    rest: BytesMut,
    input: &[u8],
    after: &[u8],
) {
    for secure in [false, true] {
        let head = hs.response_head(secure);
        // The protocol line comes last when there is one; the lines before end in a path.
        let offered = head.ends_with("WebSocket-Protocol: base64\r\n\r\n");
        check_101(head.as_bytes(), 4 + usize::from(offered));
    }
    let keys = match hs.draft() {
        hixie::Draft::Hixie75 => None,
        hixie::Draft::Hixie76 => {
            let number = |name: &str| {
                let value = request.headers().get(name).and_then(|v| v.to_str().ok());
                value.and_then(key_number)
            };
            match (number("sec-websocket-key1"), number("sec-websocket-key2")) {
                (Some(n1), Some(n2)) => Some((n1, n2)),
                _ => panic!("Hixie-76 accepted without two valid keys"),
            }
        }
    };
    let (mock, sink) = Mock::new(input, 7);
    let accepted = hixie::accept(hs, mock, rest, false, &bounds(hixie_framing::MAX_FRAME)).await;
    let mut answer = hs.response_head(false).into_bytes();
    let frames = match keys {
        Some((n1, n2)) if after.len() >= 8 => {
            answer.extend_from_slice(&challenge_answer(n1, n2, &after[..8]));
            &after[8..]
        }
        Some(_) => {
            assert!(
                accepted.is_err(),
                "Hixie-76 accepted without its 8 key bytes"
            );
            return;
        }
        None => after,
    };
    let Ok((mut rx, _tx)) = accepted else {
        panic!("Hixie handshake failed on memory");
    };
    assert_eq!(written(&sink), answer, "the Hixie answer");
    assert_eq!(drain(&mut rx).await, hixie_reference(frames));
}

/// The token and the facts a plugin is asked with, both ways of finding the token.
fn check_facts(facts: &Facts) {
    for host_token in [false, true] {
        let got = crate::gate::token::query(facts, host_token);
        assert_eq!(got.path, facts.head.uri().path());
        assert_eq!(got.query, facts.head.uri().query().unwrap_or(""));
        if host_token {
            assert!(
                got.host.starts_with(&got.token),
                "host token {:?}",
                got.token
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sniff

/// The first-bytes sniffer: `sniff::classify` decides once and never changes its mind as more
/// bytes arrive, and `sniff::sniff` over a real socket decides the same and puts back every
/// byte it read.
pub fn sniff(data: &[u8]) {
    let full = sniff::classify(data);
    let mut decided: Option<Sniffed> = None;
    for n in 0..=data.len() {
        match (sniff::classify(&data[..n]), decided) {
            (Some(kind), None) => decided = Some(kind),
            (Some(kind), Some(first)) => assert_eq!(kind, first, "changed its mind at {n}"),
            (None, Some(first)) => panic!("undecided at {n} after {first:?}"),
            (None, None) => {}
        }
    }
    assert_eq!(full, decided);
    match full {
        None => assert!(
            FLASH_POLICY_REQUEST.starts_with(data) || crate::edge::h2::PREFACE.starts_with(data),
            "undecided"
        ),
        Some(Sniffed::Tls) => assert!(matches!(data[0], 0x16 | 0x80)),
        Some(Sniffed::Flash) => assert!(data.starts_with(FLASH_POLICY_REQUEST)),
        Some(Sniffed::Http) => {
            assert!(!matches!(data[0], 0x16 | 0x80) && !data.starts_with(FLASH_POLICY_REQUEST))
        }
        Some(Sniffed::H2) => assert!(data.starts_with(crate::edge::h2::PREFACE)),
    }
    if data.len() > SOCKET_INPUT_LIMIT {
        return;
    }
    block_on(async {
        let Ok((ours, mut peer)) = tokio::net::UnixStream::pair() else {
            panic!("no socket pair");
        };
        let sent = async {
            peer.write_all(data).await?;
            peer.shutdown().await
        };
        assert!(sent.await.is_ok(), "writing to the socket pair");
        let mut stream = ClientStream::new(ClientIo::Unix(ours));
        match sniff::sniff(&mut stream).await {
            Ok(kind) => assert_eq!(Some(kind), full),
            Err(SniffError::Closed) => assert_eq!(full, None),
            Err(e) => panic!("sniff: {e}"),
        }
        let mut replayed = Vec::new();
        assert!(stream.read_to_end(&mut replayed).await.is_ok());
        assert_eq!(replayed, data, "the bytes read after sniffing");
    })
}

// ---------------------------------------------------------------------------------------------
// hixie_frames

/// Decodes `pieces` fed one after the other: frames until more input is needed or an error.
fn hixie_decode(pieces: &[&[u8]]) -> Vec<Result<Decoded, hixie_framing::FrameError>> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    for piece in pieces {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// What a Hixie session's receiving half must deliver for these bytes: the one-shot decode,
/// up to the first close or error.
fn hixie_reference(wire: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    for frame in hixie_decode(&[wire]) {
        let event = match frame {
            Ok(Decoded::Message(data)) => Event::Data(data),
            Ok(Decoded::Close) => Event::Close(None),
            Err(hixie_framing::FrameError::BadType(_)) => {
                Event::Protocol(close_code::PROTOCOL_ERROR)
            }
            Err(hixie_framing::FrameError::TooLong(_)) => {
                Event::Protocol(close_code::MESSAGE_TOO_BIG)
            }
            Err(hixie_framing::FrameError::BadBase64) => {
                Event::Protocol(close_code::INVALID_PAYLOAD)
            }
        };
        let end = !matches!(event, Event::Data(_));
        events.push(event);
        if end {
            return events;
        }
    }
    events.push(Event::Gone);
    events
}

/// The Hixie frame decoder: the first byte chooses where the rest is split; decoding it in
/// two pieces gives what a one-shot feed gives; every frame decoded is the canonical encoding
/// of its message; and a Hixie session reading the same bytes in small chunks delivers the
/// same messages.
pub fn hixie_frames(data: &[u8]) {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let one_shot = hixie_decode(&[wire]);
    let split = usize::from(control) * wire.len() / 255;
    let two = hixie_decode(&[&wire[..split], &wire[split..]]);
    assert_eq!(one_shot, two, "split at {split}");
    let mut encoded = Vec::new();
    for frame in one_shot.iter().flatten() {
        match frame {
            Decoded::Message(m) => encoded.extend(hixie_framing::encode(m)),
            Decoded::Close => encoded.extend(hixie_framing::CLOSE_FRAME),
        }
    }
    assert!(wire.starts_with(&encoded), "frames that are not canonical");
    block_on(async {
        let request = Request::builder()
            .method("GET")
            .uri("/")
            .header("Upgrade", "WebSocket")
            .header("Connection", "Upgrade")
            .header("Host", "h")
            .body(())
            .expect("a fixed request");
        let hs = match HixieHandshake::from_request(&request) {
            Ok(hs) => hs,
            Err(r) => panic!("a plain Hixie-75 request refused: {r:?}"),
        };
        let (mock, _) = Mock::new(&wire[split..], usize::from(control % 17) + 1);
        let Ok((mut rx, _tx)) = hixie::accept(
            &hs,
            mock,
            BytesMut::from(&wire[..split]),
            false,
            &bounds(hixie_framing::MAX_FRAME),
        )
        .await
        else {
            panic!("Hixie-75 accept on memory");
        };
        assert_eq!(drain(&mut rx).await, hixie_reference(wire));
    })
}

// ---------------------------------------------------------------------------------------------
// hybi_frames

/// RFC 6455 framing: `frame::parse_header` on every header the input holds (complete headers
/// need no more bytes than they say, their prefixes are incomplete, errors do not depend on
/// how much arrived, the server's own header for the same frame parses back), `apply_mask`
/// (XOR with the key, twice is identity, in pieces is at once), and the HyBi session's
/// receiving half over a socket pair, which must deliver what a simple whole-buffer model of
/// RFC 6455 delivers and answer each ping with its pong.
///
/// The first byte chooses: bit 0 the `base64` subprotocol, bits 1-4 how much of the rest is
/// already read with the head, bits 5-7 the size of the writes that deliver the remainder.
pub fn hybi_frames(data: &[u8]) {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    check_headers(wire);
    check_mask(wire, control);
    if wire.len() > SOCKET_INPUT_LIMIT {
        return;
    }
    let encoding = if control & 1 == 1 {
        Subprotocol::Base64
    } else {
        Subprotocol::Binary
    };
    let split = usize::from((control >> 1) & 0x0F) * wire.len() / 15;
    let chunk = 1 << ((control >> 5) & 7);
    let (want, pongs) = hybi_reference(wire, encoding);
    let (got, answered) = block_on(hybi_session(wire, split, chunk, encoding));
    assert_eq!(got, want, "what the session delivered");
    // The sender answers the latest ping it finds owed (RFC 6455 5.5.3 asks no more), so
    // what it wrote is the pongs of some of the pings, in their order, each exactly once.
    let mut pings = pongs.iter();
    let mut at = 0;
    while at < answered.len() {
        let Ok(Some(h)) = frame::parse_header(&answered[at..]) else {
            panic!("not whole frames: {:?}", &answered[at..]);
        };
        assert_eq!((h.opcode, h.fin, h.mask), (OpCode::Pong, true, None));
        let len = h.payload_len as usize;
        let payload = &answered[at + h.len..at + h.len + len];
        assert!(
            pings.any(|ping| ping == payload),
            "a pong for no later ping: {payload:?} after {pongs:?}"
        );
        at += h.len + len;
    }
}

fn check_headers(wire: &[u8]) {
    let mut at = 0;
    while at <= wire.len() {
        let buf = &wire[at..];
        let parsed = frame::parse_header(buf);
        match parsed {
            Ok(None) => {
                assert!(
                    buf.len() < MAX_FRAME_HEADER,
                    "{} bytes are not a header",
                    buf.len()
                );
                for n in 0..buf.len() {
                    assert_eq!(frame::parse_header(&buf[..n]), Ok(None));
                }
                return;
            }
            Err(e) => {
                for n in 0..buf.len().min(MAX_FRAME_HEADER) {
                    let prefix = frame::parse_header(&buf[..n]);
                    assert!(
                        prefix == Ok(None) || prefix == Err(e),
                        "{n} bytes: {prefix:?}"
                    );
                }
                return;
            }
            Ok(Some(h)) => {
                let extended = match buf[1] & 0x7F {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if h.mask.is_some() { 4 } else { 0 };
                assert_eq!(h.len, 2 + extended + mask, "header length");
                assert_eq!(h.fin, buf[0] & 0x80 != 0);
                assert_eq!(h.mask.is_some(), buf[1] & 0x80 != 0);
                assert_eq!(h.payload_len >> 63, 0, "a length over 63 bits");
                if h.opcode.is_control() {
                    assert!(h.fin && h.payload_len <= frame::MAX_CONTROL_PAYLOAD as u64);
                }
                assert_eq!(frame::parse_header(&buf[..h.len]), Ok(Some(h)));
                for n in 0..h.len {
                    assert_eq!(frame::parse_header(&buf[..n]), Ok(None), "{n} bytes");
                }
                if let Ok(len) = usize::try_from(h.payload_len) {
                    let ours = HeaderBytes::with_rsv1(h.opcode, len, h.rsv1);
                    let back = frame::parse_header(ours.as_slice());
                    let Ok(Some(back)) = back else {
                        panic!("our own header does not parse: {back:?}");
                    };
                    assert!(back.fin && back.mask.is_none() && back.rsv1 == h.rsv1);
                    assert_eq!((back.opcode, back.payload_len), (h.opcode, h.payload_len));
                    assert_eq!(back.len, ours.as_slice().len());
                }
                let next = usize::try_from(h.payload_len)
                    .ok()
                    .and_then(|len| (at + h.len).checked_add(len));
                match next {
                    Some(next) if next <= wire.len() => at = next,
                    _ => return,
                }
            }
        }
    }
}

fn check_mask(wire: &[u8], control: u8) {
    let mut mask = [control; 4];
    for (m, b) in mask.iter_mut().zip(wire) {
        *m ^= b;
    }
    let mut once = wire.to_vec();
    frame::apply_mask(&mut once, mask, 0);
    for (i, (&masked, &plain)) in once.iter().zip(wire).enumerate() {
        assert_eq!(masked, plain ^ mask[i % 4], "byte {i}");
    }
    let cut = usize::from(control) * wire.len() / 255;
    let mut pieces = wire.to_vec();
    frame::apply_mask(&mut pieces[..cut], mask, 0);
    frame::apply_mask(&mut pieces[cut..], mask, cut);
    assert_eq!(pieces, once, "masked in pieces at {cut}");
    frame::apply_mask(&mut once, mask, 0);
    assert_eq!(once, wire, "masked twice");
}

/// Runs `ws::hybi`'s receiving half: `wire[..split]` as the bytes read with the head, the rest
/// written to the other end of a socket pair `chunk` bytes at a time. Returns what it delivered
/// and what it wrote back (pongs).
async fn hybi_session(
    wire: &[u8],
    split: usize,
    chunk: usize,
    encoding: Subprotocol,
) -> (Vec<Event>, Vec<u8>) {
    let Ok((ours, peer)) = tokio::net::UnixStream::pair() else {
        panic!("no socket pair");
    };
    let (mut peer_rx, mut peer_tx) = peer.into_split();
    let stream = ClientStream::new(ClientIo::Unix(ours));
    let (mut rx, mut tx) = hybi::session(
        stream,
        BytesMut::from(&wire[..split]),
        Some(encoding),
        &bounds(hybi::MAX_MESSAGE_SIZE),
        None,
    );
    let sending = async {
        for piece in wire[split..].chunks(chunk) {
            if peer_tx.write_all(piece).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = peer_tx.shutdown().await;
    };
    // Once the session has ended, the rest of the input would never be read: the sender stops
    // (small writes to a unix socket nobody reads fill its buffer long before their bytes
    // do). Our end is closed only after that, so the sender never writes into a closed
    // socket, and closing it ends the reading of what it wrote back.
    let session = async {
        let events = {
            // The sending half answers what the receiving half owes, as the relay does.
            let answering = async {
                loop {
                    tx.owed().await;
                    if tx.answer().await.is_err() {
                        return std::future::pending::<()>().await;
                    }
                }
            };
            let receiving = async {
                let receiving = drain(&mut rx);
                tokio::pin!(receiving, sending);
                tokio::select! {
                    events = &mut receiving => events,
                    () = &mut sending => receiving.await,
                }
            };
            tokio::select! {
                events = receiving => events,
                () = answering => unreachable!("answering never ends"),
            }
        };
        drop(rx);
        drop(tx);
        events
    };
    let reading = async {
        let mut back = Vec::new();
        let _ = peer_rx.read_to_end(&mut back).await;
        back
    };
    tokio::join!(session, reading)
}

/// The close frame rules of RFC 6455 7.4 as websockify applies them.
fn close_event(payload: &[u8]) -> Event {
    match payload {
        [] => Event::Close(None),
        [_] => Event::Protocol(close_code::PROTOCOL_ERROR),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Event::Protocol(close_code::PROTOCOL_ERROR);
            }
            match std::str::from_utf8(reason) {
                Ok(reason) => Event::Close(Some((code, reason.to_string()))),
                Err(_) => Event::Protocol(close_code::INVALID_PAYLOAD),
            }
        }
    }
}

/// A whole-buffer model of what a HyBi session receives from `wire` followed by end of file
/// (valid while `wire` is shorter than [`PIECE`], so no frame is passed on in pieces), and the
/// pings it answers. Written independently of `ws::hybi`; base64 is decoded by another crate.
fn hybi_reference(wire: &[u8], encoding: Subprotocol) -> (Vec<Event>, Vec<Vec<u8>>) {
    use base64::Engine;
    debug_assert!(wire.len() < PIECE);
    let mut events = Vec::new();
    let mut pongs = Vec::new();
    // The message being received: its length so far and (base64) its text.
    let mut message: Option<(u64, Vec<u8>)> = None;
    let mut at = 0;
    let end = loop {
        let h = match frame::parse_header(&wire[at..]) {
            Err(_) => break Event::Protocol(close_code::PROTOCOL_ERROR),
            Ok(None) => break Event::Gone,
            Ok(Some(h)) => h,
        };
        let Some(mask) = h.mask else {
            break Event::Protocol(close_code::PROTOCOL_ERROR);
        };
        // RSV1 means compressed, and no extension is negotiated here.
        if h.rsv1 {
            break Event::Protocol(close_code::PROTOCOL_ERROR);
        }
        let body = at + h.len;
        let available = (wire.len() - body) as u64;
        let payload = |len: u64| {
            let mut p = wire[body..body + len as usize].to_vec();
            frame::apply_mask(&mut p, mask, 0);
            p
        };
        if h.opcode.is_control() {
            if available < h.payload_len {
                break Event::Gone;
            }
            let p = payload(h.payload_len);
            at = body + p.len();
            match h.opcode {
                OpCode::Ping => pongs.push(p),
                OpCode::Close => break close_event(&p),
                _ => {}
            }
            continue;
        }
        match (h.opcode, &message) {
            (OpCode::Continuation, None) | (OpCode::Text | OpCode::Binary, Some(_)) => {
                break Event::Protocol(close_code::PROTOCOL_ERROR);
            }
            (OpCode::Text, None) if encoding == Subprotocol::Binary => {
                break Event::Protocol(close_code::UNSUPPORTED_DATA);
            }
            _ => {}
        }
        let (so_far, mut text) = message.take().unwrap_or_default();
        let len = so_far.saturating_add(h.payload_len);
        if len > MAX_MESSAGE_SIZE as u64 {
            break Event::Protocol(close_code::MESSAGE_TOO_BIG);
        }
        if available < h.payload_len {
            break Event::Gone;
        }
        let p = payload(h.payload_len);
        at = body + p.len();
        match encoding {
            Subprotocol::Binary if p.is_empty() => {}
            Subprotocol::Binary if h.fin => events.push(Event::Data(p)),
            Subprotocol::Binary => events.push(Event::Part(p)),
            Subprotocol::Base64 => text.extend_from_slice(&p),
        }
        if !h.fin {
            message = Some((len, text));
        } else if encoding == Subprotocol::Base64 {
            match base64::engine::general_purpose::STANDARD.decode(&text) {
                Ok(data) => events.push(Event::Data(data)),
                Err(_) => break Event::Protocol(close_code::INVALID_PAYLOAD),
            }
        }
    };
    events.push(end);
    (events, pongs)
}

// ---------------------------------------------------------------------------------------------
// base64_payload

/// The `base64` subprotocol's payload decoding, both implementations: HyBi decodes a message's
/// text with base64-simd (`ws::hybi`), Hixie a frame's with the base64 crate (`ws::hixie`).
/// They must accept the same texts and give the same bytes, and whatever decodes is the
/// canonical encoding of what it decodes to (what we send back is what we accept).
pub fn base64_payload(data: &[u8]) {
    let simd = base64_simd::STANDARD.decode_to_vec(data).ok();
    // Hixie sees the text between 0x00 and 0xFF; a 0xFF inside would end the frame.
    if !data.contains(&0xFF) && data.len() <= hixie_framing::MAX_FRAME {
        let mut decoder = Decoder::default();
        let mut frame = vec![0x00];
        frame.extend_from_slice(data);
        frame.push(0xFF);
        decoder.feed(&frame);
        let hixie = match decoder.next_frame() {
            Ok(Some(Decoded::Message(m))) => Some(m),
            Err(hixie_framing::FrameError::BadBase64) => None,
            other => panic!("one Hixie frame decoded as {other:?}"),
        };
        assert_eq!(simd, hixie, "HyBi and Hixie disagree on the base64 text");
        if let Some(m) = &hixie {
            assert_eq!(hixie_framing::encode(m), frame, "Hixie frame re-encoded");
        }
    }
    if let Some(decoded) = simd {
        let again = base64_simd::STANDARD.encode_to_string(&decoded);
        assert_eq!(again.as_bytes(), data, "decoded text is not canonical");
    }
}

// ---------------------------------------------------------------------------------------------
// token_file

/// websockify's token file format (`websockify_tokenfile::parse`, the `TokenFile` and
/// `ReadOnlyTokenFile` plugins): every line that is not blank or a comment becomes an entry or
/// a problem, entries are well formed, and the entries written back as a token file parse to
/// the same entries without problems.
pub fn token_file(data: &[u8]) {
    use websockify_tokenfile::{Entry, Tokens, parse};
    let text = String::from_utf8_lossy(data);
    let mut tokens = Tokens::default();
    parse(&text, "fuzz", &mut tokens);
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert!(tokens.entries.len() <= lines);
    assert!(tokens.problems.len() <= lines);
    let mut written = String::new();
    for (token, entry) in &tokens.entries {
        match entry {
            Entry::Target(target) => {
                assert_eq!(target.trim(), target);
                let Some((host, port)) = target.rsplit_once(':') else {
                    panic!("target {target:?} without a port");
                };
                assert!(
                    !host.is_empty() && port.parse::<u16>().is_ok(),
                    "{target:?}"
                );
                written.push_str(&format!("{token}: {target}\n"));
            }
            Entry::UnixSocket(path) => {
                assert!(!path.contains(':'), "{path:?}");
                written.push_str(&format!("{token}: unix_socket:{path}\n"));
            }
        }
    }
    let mut again = Tokens::default();
    parse(&written, "again", &mut again);
    assert_eq!(again.problems, Vec::<String>::new(), "{written:?}");
    assert_eq!(again.entries, tokens.entries, "{written:?}");
}

// ---------------------------------------------------------------------------------------------
// config_file

/// The TOML configuration file through `config::load` (the file layer over the defaults, as
/// `--config FILE` gives it) and `Loaded::validate`: errors are fine, panics are not. A file
/// that loads prints (`--print-config`) as a file that loads to the same settings.
pub fn config_file(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "websockify-fuzz-config-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    let load = |bytes: &[u8]| {
        if let Err(e) = std::fs::write(&path, bytes) {
            panic!("writing {}: {e}", path.display());
        }
        let args = [
            std::ffi::OsString::from("websockify"),
            "--config".into(),
            path.clone().into_os_string(),
        ];
        let matches = match crate::cli::Cli::command().try_get_matches_from(args) {
            Ok(matches) => matches,
            Err(e) => panic!("--config {}: {e}", path.display()),
        };
        crate::config::load(&matches, &[])
    };
    let first = load(data);
    if let Ok(loaded) = &first {
        if let Ok(mut config) = loaded.validate() {
            config.make_paths_absolute();
        }
        let printed = loaded.to_toml();
        match load(printed.as_bytes()) {
            Ok(again) => {
                let mut settings = again.settings.clone();
                // Printed as a placeholder, never in clear.
                settings.key_password = loaded.settings.key_password.clone();
                assert_eq!(settings, loaded.settings, "printed as:\n{printed}");
            }
            Err(e) => panic!("--print-config output does not load: {e}\n{printed}"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// `--proxy-protocol`: a connection's first bytes as a PROXY protocol header. Never a panic;
/// a header found is no longer than the input, every shorter prefix of it is "need more",
/// and the addresses it names, written back in the same version, read back the same.
pub fn proxy_header(data: &[u8]) {
    use crate::edge::proxy_protocol::{MAX_PROXY_HEADER, encode, parse};
    let Ok(Some((header, len))) = parse(data) else {
        return;
    };
    assert!(
        len <= data.len() && len <= MAX_PROXY_HEADER,
        "header of {len} bytes"
    );
    for cut in 0..len {
        assert!(
            matches!(parse(&data[..cut]), Ok(None)),
            "a prefix of {cut} bytes of a header is not incomplete"
        );
    }
    let again = encode(header.version, header.addresses);
    let (back, used) = match parse(&again) {
        Ok(Some(found)) => found,
        other => panic!("our own header does not parse: {other:?}"),
    };
    assert_eq!(used, again.len());
    assert_eq!(back.version, header.version);
    if let Some((client, server)) = header.addresses {
        let (c, s) = back.addresses.unwrap_or_else(|| panic!("addresses lost"));
        assert_eq!(
            (c.ip().to_canonical(), c.port()),
            (client.ip().to_canonical(), client.port())
        );
        assert_eq!(s.port(), server.port());
    }
}
