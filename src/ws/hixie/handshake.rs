//! The Hixie handshake: a request without `Sec-WebSocket-Version` is draft 76 when it has
//! both `Sec-WebSocket-Key1` and `Key2`, else 75; the 101 names the origin and location, and
//! 76 appends the MD5 answer to its key numbers and the eight bytes after the head.

use std::convert::Infallible;
use std::io;

use bytes::BytesMut;
use http::{Method, Request, StatusCode};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Draft;
use super::framing::{self, HixieRx, HixieTx};
use crate::edge::bounded::{Bound, ReadError, read_until};
use crate::session::Bounds;
use crate::ws::{Refusal, Subprotocol, has_token};

/// Draft 76 sends this many bytes after its head (the third key).
const KEY3_LEN: usize = 8;

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
    pub fn from_request(req: &Request<()>) -> Result<HixieHandshake, Refusal> {
        if req.method() != Method::GET {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade must use GET",
            )
            .with_header("Allow", "GET"));
        }
        let headers = req.headers();
        if !has_token(headers, http::header::UPGRADE, "websocket") {
            return Err(Refusal::bad_request(
                "missing or bad Upgrade header: expected `Upgrade: WebSocket`",
            ));
        }
        if !has_token(headers, http::header::CONNECTION, "upgrade") {
            return Err(Refusal::bad_request(
                "missing or bad Connection header: expected `Connection: Upgrade`",
            ));
        }
        let Some(host) = header(req, "host").filter(|h| !h.is_empty()) else {
            return Err(Refusal::bad_request("a Hixie upgrade needs a Host header"));
        };
        for name in ["sec-websocket-key1", "sec-websocket-key2"] {
            if headers.get_all(name).iter().count() > 1 {
                return Err(Refusal::bad_request(
                    "a Hixie-76 key given twice: expected one Sec-WebSocket-Key1 and one Key2",
                ));
            }
        }
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
                        return Err(Refusal::bad_request(
                            "bad Sec-WebSocket-Key1/Key2: no spaces, not a whole multiple of \
                             them, or a number over 32 bits",
                        ));
                    }
                }
            }
            (None, None) => None,
            _ => {
                return Err(Refusal::bad_request(
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
            return Err(Refusal::bad_request(format!(
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
    bounds: &Bounds,
) -> io::Result<(HixieRx<S>, HixieTx<S>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut answer = hs.response_head(secure).into_bytes();
    if let Some((n1, n2)) = hs.keys {
        let bound = Bound {
            limit: KEY3_LEN,
            step: KEY3_LEN,
            timeout: Some(crate::edge::http::HEAD_TIMEOUT),
        };
        let whole = |buf: &mut BytesMut| Ok::<_, Infallible>((buf.len() >= KEY3_LEN).then_some(()));
        read_until(&mut stream, &mut rest, bound, whole)
            .await
            .map_err(|e| match e {
                ReadError::Io(e) => e,
                ReadError::Timeout(_) => {
                    io::Error::new(io::ErrorKind::TimedOut, "no Hixie-76 key bytes")
                }
                // Eight bytes always decide, so only the end of the connection is left.
                ReadError::Closed | ReadError::TooLarge | ReadError::Invalid(_) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the 8 key bytes of Hixie-76",
                ),
            })?;
        let key3 = rest.split_to(KEY3_LEN);
        answer.extend_from_slice(&challenge_answer(n1, n2, &key3));
    }
    stream.write_all(&answer).await?;
    stream.flush().await?;
    Ok(framing::halves(stream, &rest, hs.draft, bounds))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
