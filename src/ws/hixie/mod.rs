//! Hixie-75 and Hixie-76, the WebSocket drafts of 2010 that websockify 0.4 spoke and no crate
//! implements: the handshake (76's MD5 challenge over two key numbers and eight body bytes),
//! and the framing (`0x00` base64 text `0xFF`; `0xFF 0x00` closes), behind the same
//! [`ClientRx`]/[`ClientTx`] pair as HyBi so the relay does not know which it carries.
//!
//! base64 is the only encoding on Hixie: the drafts have text frames only.

use std::io;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::handshake::has_token;
use super::{Rejection, Subprotocol};
use crate::session::{ClientRx, ClientTx, Close, Inbound, RecvError, SendError, close_code};

/// The longest frame we accept, counted in base64 text: the same bound as a HyBi message,
/// so a frame that never ends cannot make us buffer more than that.
pub const MAX_FRAME: usize = super::hybi::MAX_MESSAGE_SIZE;

/// Draft 76 sends this many bytes after its head (the third key).
const KEY3_LEN: usize = 8;

/// How much is read from the client at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Which draft a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    Hixie75,
    Hixie76,
}

impl Draft {
    pub fn name(self) -> &'static str {
        match self {
            Draft::Hixie75 => "hixie-75",
            Draft::Hixie76 => "hixie-76",
        }
    }
}

/// An accepted Hixie upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HixieHandshake {
    draft: Draft,
    origin: String,
    host: String,
    /// Path and query, for the `Location` header.
    resource: String,
    /// The client offered a subprotocol (which then includes `base64`).
    protocol_offered: bool,
    /// Draft 76's two key numbers.
    keys: Option<(u32, u32)>,
}

fn header<'a>(req: &'a Request<()>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A Hixie-76 key's number: its digits read as one integer, divided by its count of spaces.
/// The draft requires a whole quotient and at least one space; anything else is refused.
pub fn key_number(key: &str) -> Option<u32> {
    let digits: String = key.chars().filter(char::is_ascii_digit).collect();
    let spaces = key.chars().filter(|&c| c == ' ').count() as u64;
    if spaces == 0 || digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if n % spaces != 0 {
        return None;
    }
    u32::try_from(n / spaces).ok()
}

/// Draft 76's answer: MD5 of the two key numbers (big-endian) and the eight body bytes.
pub fn challenge_answer(n1: u32, n2: u32, key3: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(n1.to_be_bytes());
    md5.update(n2.to_be_bytes());
    md5.update(key3);
    md5.finalize().into()
}

impl HixieHandshake {
    /// Checks a request without `Sec-WebSocket-Version`: 76 when it has both
    /// `Sec-WebSocket-Key1` and `Key2`, else 75.
    pub fn from_request(req: &Request<()>) -> Result<HixieHandshake, Rejection> {
        if req.method() != Method::GET {
            return Err(Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade must use GET",
            )
            .with_header("Allow", "GET"));
        }
        let headers = req.headers();
        if !has_token(headers, http::header::UPGRADE, "websocket") {
            return Err(Rejection::bad_request(
                "missing or bad Upgrade header: expected `Upgrade: WebSocket`",
            ));
        }
        if !has_token(headers, http::header::CONNECTION, "upgrade") {
            return Err(Rejection::bad_request(
                "missing or bad Connection header: expected `Connection: Upgrade`",
            ));
        }
        let Some(host) = header(req, "host").filter(|h| !h.is_empty()) else {
            return Err(Rejection::bad_request(
                "a Hixie upgrade needs a Host header",
            ));
        };
        // Presence decides the draft, readability is checked after: a key that is not
        // visible ASCII must be refused, not make the request look like draft 75.
        let keys = match (
            headers.get("sec-websocket-key1"),
            headers.get("sec-websocket-key2"),
        ) {
            (Some(k1), Some(k2)) => {
                let number = |k: &http::HeaderValue| k.to_str().ok().and_then(key_number);
                match (number(k1), number(k2)) {
                    (Some(n1), Some(n2)) => Some((n1, n2)),
                    _ => {
                        return Err(Rejection::bad_request(
                            "bad Sec-WebSocket-Key1/Key2: no spaces, not a whole multiple of \
                             them, or a number over 32 bits",
                        ));
                    }
                }
            }
            (None, None) => None,
            _ => {
                return Err(Rejection::bad_request(
                    "Hixie-76 needs both Sec-WebSocket-Key1 and Sec-WebSocket-Key2",
                ));
            }
        };
        let draft = if keys.is_some() {
            Draft::Hixie76
        } else {
            Draft::Hixie75
        };
        // Each draft names the header its own way; websockify 0.4 read either under both,
        // so a client that mixes them up still works. The answer uses the draft's name.
        let (own, other) = match draft {
            Draft::Hixie76 => ("sec-websocket-protocol", "websocket-protocol"),
            Draft::Hixie75 => ("websocket-protocol", "sec-websocket-protocol"),
        };
        let offer = header(req, own)
            .or_else(|| header(req, other))
            .unwrap_or("");
        let offered: Vec<&str> = offer
            .split([',', ' '])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let protocol_offered = !offered.is_empty();
        if protocol_offered && !offered.contains(&Subprotocol::Base64.name()) {
            return Err(Rejection::bad_request(&format!(
                "no supported subprotocol in `{offer}`: Hixie speaks base64 only"
            )));
        }
        let resource = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        Ok(HixieHandshake {
            draft,
            // The drafts require Origin; a client without one gets "null", the origin of
            // an opaque context.
            origin: header(req, "origin").unwrap_or("null").to_string(),
            host: host.to_string(),
            resource,
            protocol_offered,
            keys,
        })
    }

    pub fn draft(&self) -> Draft {
        self.draft
    }

    /// The 101 head (without 76's answer bytes); `secure` chooses `wss` in the location.
    pub fn response_head(&self, secure: bool) -> String {
        let prefix = match self.draft {
            Draft::Hixie76 => "Sec-",
            Draft::Hixie75 => "",
        };
        let scheme = if secure { "wss" } else { "ws" };
        let mut head = format!(
            "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
             Connection: Upgrade\r\n{prefix}WebSocket-Origin: {}\r\n\
             {prefix}WebSocket-Location: {scheme}://{}{}\r\n",
            self.origin, self.host, self.resource
        );
        if self.protocol_offered {
            head.push_str(&format!("{prefix}WebSocket-Protocol: base64\r\n"));
        }
        head.push_str("\r\n");
        head
    }
}

/// Completes the handshake: reads 76's eight key bytes (some may be in `rest` already), writes
/// the answer, and returns the session halves. Bytes in `rest` after the key are the first
/// frames and are kept.
pub async fn accept<S>(
    hs: &HixieHandshake,
    mut stream: S,
    mut rest: BytesMut,
    secure: bool,
    max_message: usize,
) -> io::Result<(HixieRx<S>, HixieTx<S>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut answer = hs.response_head(secure).into_bytes();
    if let Some((n1, n2)) = hs.keys {
        let read_key = async {
            while rest.len() < KEY3_LEN {
                rest.reserve(KEY3_LEN);
                if stream.read_buf(&mut rest).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed before the 8 key bytes of Hixie-76",
                    ));
                }
            }
            Ok(())
        };
        tokio::time::timeout(crate::edge::http::HEAD_TIMEOUT, read_key)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no Hixie-76 key bytes"))??;
        let key3 = rest.split_to(KEY3_LEN);
        answer.extend_from_slice(&challenge_answer(n1, n2, &key3));
    }
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let (reader, writer) = tokio::io::split(stream);
    let mut decoder = Decoder::with_limit(max_message);
    decoder.feed(&rest);
    Ok((
        HixieRx { reader, decoder },
        HixieTx {
            writer,
            draft: hs.draft,
            closed: false,
        },
    ))
}

/// One data frame: `0x00`, the payload in base64, `0xFF`.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(2 + data.len().div_ceil(3) * 4);
    out.push(0x00);
    out.extend_from_slice(engine.encode(data).as_bytes());
    out.push(0xFF);
    out
}

/// The close frame (76 only).
pub const CLOSE_FRAME: [u8; 2] = [0xFF, 0x00];

/// A frame decoded from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Message(Vec<u8>),
    Close,
}

/// Why the client's bytes are not Hixie frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported Hixie frame type 0x{0:02x}")]
    BadType(u8),
    #[error("Hixie frame longer than {0} bytes")]
    TooLong(usize),
    #[error("invalid base64 in a Hixie frame")]
    BadBase64,
}

impl FrameError {
    fn close(&self) -> Close {
        let code = match self {
            FrameError::BadType(_) => close_code::PROTOCOL_ERROR,
            FrameError::TooLong(_) => close_code::MESSAGE_TOO_BIG,
            FrameError::BadBase64 => close_code::INVALID_PAYLOAD,
        };
        Close {
            code,
            reason: self.to_string().into(),
        }
    }
}

/// An incremental frame decoder: input may arrive split anywhere.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// How far the current frame was already searched for its end, so that a long frame
    /// arriving in pieces is scanned once, not once per piece.
    scanned: usize,
    /// The longest frame accepted, in bytes as sent (base64 text).
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(MAX_FRAME)
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// A decoder refusing frames longer than `limit` bytes as sent (`--max-message-size`
    /// applies to Hixie frames so: a frame is one message).
    pub fn with_limit(limit: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` if more input is needed.
    pub fn next_frame(&mut self) -> Result<Option<Decoded>, FrameError> {
        let Some(&kind) = self.buf.first() else {
            return Ok(None);
        };
        match kind {
            0x00 => {
                let from = self.scanned.max(1);
                match self.buf[from..].iter().position(|&b| b == 0xFF) {
                    // The limit holds however the input was split: a frame whose end came
                    // in the same read as its start is no more acceptable than one that
                    // trickled in.
                    Some(i) if from + i - 1 > self.limit => Err(FrameError::TooLong(self.limit)),
                    Some(i) => {
                        let end = from + i;
                        let frame = self.buf.split_to(end + 1);
                        self.scanned = 0;
                        base64::engine::general_purpose::STANDARD
                            .decode(&frame[1..end])
                            .map(|data| Some(Decoded::Message(data)))
                            .map_err(|_| FrameError::BadBase64)
                    }
                    None if self.buf.len() - 1 > self.limit => Err(FrameError::TooLong(self.limit)),
                    None => {
                        self.scanned = self.buf.len();
                        Ok(None)
                    }
                }
            }
            0xFF => match self.buf.get(1) {
                None => Ok(None),
                Some(0x00) => {
                    let _ = self.buf.split_to(2);
                    Ok(Some(Decoded::Close))
                }
                Some(_) => Err(FrameError::BadType(0xFF)),
            },
            other => Err(FrameError::BadType(other)),
        }
    }
}

/// Receiving half of a Hixie session.
pub struct HixieRx<S> {
    reader: ReadHalf<S>,
    decoder: Decoder,
}

/// Sending half of a Hixie session.
pub struct HixieTx<S> {
    writer: WriteHalf<S>,
    draft: Draft,
    /// The close was sent: sending it twice would put bytes after the close frame.
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Send> ClientRx for HixieRx<S> {
    async fn linger(&mut self, deadline: tokio::time::Instant) {
        let drain = async {
            let mut scratch = [0u8; 4096];
            while let Ok(n) = self.reader.read(&mut scratch).await {
                if n == 0 {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, drain).await;
    }

    async fn recv(&mut self) -> Result<Inbound, RecvError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Decoded::Message(data))) => return Ok(Inbound::Data(Bytes::from(data))),
                Ok(Some(Decoded::Close)) => return Ok(Inbound::Close(None)),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Protocol(e.close())),
            }
            // At most READ_CHUNK per read (`read_buf` alone would fill all the spare capacity
            // of a grown buffer), so an unterminated frame is refused with at most
            // MAX_FRAME + READ_CHUNK bytes held.
            self.decoder.buf.reserve(READ_CHUNK);
            let mut limited = (&mut self.reader).take(READ_CHUNK as u64);
            match limited.read_buf(&mut self.decoder.buf).await {
                Ok(0) => return Err(RecvError::Gone("connection closed".to_string())),
                Ok(_) => {}
                Err(e) => return Err(RecvError::Gone(e.to_string())),
            }
        }
    }
}

fn send_error(e: io::Error) -> SendError {
    SendError(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Send> HixieTx<S> {
    /// 76 sends its close frame; both drafts then end our side of the TCP connection.
    async fn end(&mut self) -> Result<(), SendError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if self.draft == Draft::Hixie76 {
            self.writer
                .write_all(&CLOSE_FRAME)
                .await
                .map_err(send_error)?;
        }
        self.writer.flush().await.map_err(send_error)?;
        self.writer.shutdown().await.map_err(send_error)
    }
}

impl<S: AsyncRead + AsyncWrite + Send> ClientTx for HixieTx<S> {
    async fn send(&mut self, data: Bytes) -> Result<(), SendError> {
        self.writer
            .write_all(&encode(&data))
            .await
            .map_err(send_error)?;
        self.writer.flush().await.map_err(send_error)
    }

    /// The drafts have no ping.
    async fn ping(&mut self) -> Result<(), SendError> {
        Ok(())
    }

    /// Hixie has no close codes on the wire; the code only goes to the log.
    async fn close(&mut self, _close: &Close) -> Result<(), SendError> {
        self.end().await
    }

    async fn finish(&mut self) -> Result<(), SendError> {
        self.end().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri("/demo?x=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const KEY1: &str = "18x 6]8vM;54 *(5:  {   U1]8  z [  8";
    const KEY2: &str = "1_ tx7X d  <  nw  334J702) 7]o}` 0";

    #[test]
    fn draft_76_example() {
        // The worked example of draft-hixie-thewebsocketprotocol-76, section 1.3.
        assert_eq!(key_number(KEY1), Some(155_712_099));
        assert_eq!(key_number(KEY2), Some(173_347_027));
        assert_eq!(
            &challenge_answer(155_712_099, 173_347_027, b"Tm[K T2u"),
            b"fQJ,fN/4F4!~K~MH"
        );
    }

    #[test]
    fn draft_76_opening_handshake_example() {
        // The example of draft-hixie-thewebsocketprotocol-76, section 1.3: keys whose
        // digits are spread out and spaces counted, a different key3.
        let n1 = key_number("4 @1  46546xW%0l 1 5").unwrap();
        let n2 = key_number("12998 5 Y3 1  .P00").unwrap();
        assert_eq!((n1, n2), (829_309_203, 259_970_620));
        assert_eq!(&challenge_answer(n1, n2, b"^n:ds[4U"), b"8jKS'y:G*Co,Wxa-");
    }

    #[test]
    fn key_numbers_at_32_bits() {
        assert_eq!(
            key_number("8589934590  "),
            Some(u32::MAX),
            "4294967295 fits"
        );
        assert_eq!(key_number("8589934592  "), None, "4294967296 does not");
        assert_eq!(key_number(" 000000000000000000000000000007"), Some(7));
    }

    fn refused(headers: &[(&str, &str)]) -> Option<StatusCode> {
        HixieHandshake::from_request(&request(headers))
            .err()
            .map(|r| r.status)
    }

    #[test]
    fn unreadable_keys_are_refused_not_taken_for_75() {
        let opaque = http::HeaderValue::from_bytes(b"1 2\xff3 ").unwrap();
        let req = Request::builder()
            .method("GET")
            .uri("/")
            .header("Upgrade", "WebSocket")
            .header("Connection", "Upgrade")
            .header("Host", "h")
            .header("Sec-WebSocket-Key1", opaque.clone())
            .header("Sec-WebSocket-Key2", opaque)
            .body(())
            .unwrap();
        let err = HixieHandshake::from_request(&req).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn request_checks() {
        let base = [
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Host", "h"),
        ];
        assert_eq!(refused(&base), None);
        for drop in ["Upgrade", "Connection", "Host"] {
            let h: Vec<_> = base.iter().copied().filter(|(k, _)| *k != drop).collect();
            assert_eq!(refused(&h), Some(StatusCode::BAD_REQUEST), "without {drop}");
        }
        let mut one_key = base.to_vec();
        one_key.push(("Sec-WebSocket-Key1", KEY1));
        assert_eq!(refused(&one_key), Some(StatusCode::BAD_REQUEST));
        let post = Request::builder()
            .method("POST")
            .uri("/")
            .header("Upgrade", "WebSocket")
            .header("Connection", "Upgrade")
            .header("Host", "h")
            .body(())
            .unwrap();
        let err = HixieHandshake::from_request(&post).unwrap_err();
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn protocol_negotiation() {
        let offer = |draft76: bool, name: &'static str, value: &'static str| {
            let mut h = vec![
                ("Upgrade", "WebSocket"),
                ("Connection", "Upgrade"),
                ("Host", "h"),
                (name, value),
            ];
            if draft76 {
                h.extend([("Sec-WebSocket-Key1", KEY1), ("Sec-WebSocket-Key2", KEY2)]);
            }
            HixieHandshake::from_request(&request(&h)).map(|hs| hs.response_head(false))
        };
        for draft76 in [false, true] {
            let prefix = if draft76 { "Sec-" } else { "" };
            let answered = format!("\r\n{prefix}WebSocket-Protocol: base64\r\n");
            for (name, value) in [
                ("Sec-WebSocket-Protocol", "base64"),
                ("WebSocket-Protocol", "base64"),
                ("Sec-WebSocket-Protocol", "chat, base64"),
                ("WebSocket-Protocol", "chat base64"),
            ] {
                let head = offer(draft76, name, value).unwrap();
                assert!(head.contains(&answered), "{name}: {value}: {head}");
            }
            // An empty offer is no offer: no protocol header in the answer.
            let head = offer(draft76, "Sec-WebSocket-Protocol", " ").unwrap();
            assert!(!head.contains("WebSocket-Protocol"), "{head}");
            for value in ["binary", "chat, base64url"] {
                let err = offer(draft76, "Sec-WebSocket-Protocol", value).unwrap_err();
                assert_eq!(err.status, StatusCode::BAD_REQUEST, "{value}");
            }
        }
    }

    #[test]
    fn bad_keys() {
        assert_eq!(key_number("12345"), None, "no spaces");
        assert_eq!(key_number("1 2 3"), None, "123 is not a multiple of 2");
        assert_eq!(key_number("   "), None, "no digits");
        assert_eq!(key_number("99999999999999999999999 "), None, "overflow");
        let err = HixieHandshake::from_request(&request(&[
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Host", "h"),
            ("Sec-WebSocket-Key1", "12345"),
            ("Sec-WebSocket-Key2", KEY2),
        ]))
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn heads_per_draft() {
        let base = [
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Host", "example.com"),
            ("Origin", "http://example.com"),
        ];
        let hs = HixieHandshake::from_request(&request(&base)).unwrap();
        assert_eq!(hs.draft(), Draft::Hixie75);
        assert_eq!(
            hs.response_head(false),
            "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
             Connection: Upgrade\r\nWebSocket-Origin: http://example.com\r\n\
             WebSocket-Location: ws://example.com/demo?x=1\r\n\r\n"
        );
        let mut with_keys = base.to_vec();
        with_keys.extend([
            ("Sec-WebSocket-Key1", KEY1),
            ("Sec-WebSocket-Key2", KEY2),
            ("Sec-WebSocket-Protocol", "base64"),
        ]);
        let hs = HixieHandshake::from_request(&request(&with_keys)).unwrap();
        assert_eq!(hs.draft(), Draft::Hixie76);
        let head = hs.response_head(true);
        assert!(head.contains("Sec-WebSocket-Location: wss://example.com/demo?x=1\r\n"));
        assert!(head.contains("Sec-WebSocket-Origin: http://example.com\r\n"));
        assert!(head.ends_with("Sec-WebSocket-Protocol: base64\r\n\r\n"));

        let mut binary = base.to_vec();
        binary.push(("WebSocket-Protocol", "binary"));
        assert!(HixieHandshake::from_request(&request(&binary)).is_err());
    }

    #[test]
    fn framing() {
        assert_eq!(encode(b""), [0x00, 0xFF]);
        assert_eq!(encode(b"hi"), b"\x00aGk=\xff");
        let mut d = Decoder::new();
        d.feed(b"\x00aGk=\xff\x00\xff\xff");
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Message(b"hi".to_vec()))));
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Message(vec![]))));
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(b"\x00");
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Close)));
        d.feed(b"\x80\x05hello");
        assert_eq!(d.next_frame(), Err(FrameError::BadType(0x80)));
        let mut d = Decoder::new();
        d.feed(b"\x00!!\xff");
        assert_eq!(d.next_frame(), Err(FrameError::BadBase64));
    }

    #[test]
    fn an_endless_frame_is_refused_at_the_limit() {
        let mut d = Decoder::new();
        d.feed(&[0x00]);
        let chunk = vec![b'A'; 1 << 20];
        let mut fed = 0;
        loop {
            d.feed(&chunk);
            fed += chunk.len();
            match d.next_frame() {
                Ok(None) => assert!(fed <= MAX_FRAME, "accepted {fed} bytes"),
                Err(FrameError::TooLong(_)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(fed <= MAX_FRAME + chunk.len());
    }

    #[test]
    fn the_limit_does_not_depend_on_how_the_input_was_split() {
        let mut d = Decoder::new();
        let mut frame = vec![0x00];
        frame.resize(MAX_FRAME + 1, b'A');
        frame.extend_from_slice(b"AAA=\xff");
        d.feed(&frame);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(MAX_FRAME)));
        // Exactly at the limit is accepted.
        let mut d = Decoder::new();
        let mut frame = vec![0x00];
        frame.resize(MAX_FRAME + 1, b'A');
        frame.push(0xFF);
        d.feed(&frame);
        match d.next_frame() {
            Ok(Some(Decoded::Message(data))) => assert_eq!(data.len(), MAX_FRAME / 4 * 3),
            other => panic!("a frame of MAX_FRAME bytes: {other:?}"),
        }
    }

    #[test]
    fn frame_errors_map_to_close_codes() {
        assert_eq!(FrameError::BadType(0x80).close().code, 1002);
        assert_eq!(FrameError::BadBase64.close().code, 1007);
        assert_eq!(FrameError::TooLong(MAX_FRAME).close().code, 1009);
    }

    proptest! {
        #[test]
        fn payloads_round_trip_however_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend(encode(p));
            }
            wire.extend(CLOSE_FRAME);
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                d.feed(&wire[at..at + n]);
                at += n;
                while let Some(frame) = d.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            let mut want: Vec<Decoded> = payloads.into_iter().map(Decoded::Message).collect();
            want.push(Decoded::Close);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn split_at_every_byte(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let wire = encode(&payload);
            for split in 0..=wire.len() {
                let mut d = Decoder::new();
                d.feed(&wire[..split]);
                let first = d.next_frame().unwrap();
                d.feed(&wire[split..]);
                let frame = match first {
                    Some(f) => f,
                    None => d.next_frame().unwrap().unwrap(),
                };
                prop_assert_eq!(frame, Decoded::Message(payload.clone()));
            }
        }
    }
}
