//! The HTTP/1.1 request head, read with bounded size and time and parsed by httparse into an
//! `http::Request<()>`, and the short plain responses the proxy answers with.
//!
//! Everything the WebSocket handshakes and (later) the web directory and plugins decide on is
//! in the typed request; the bytes a client sent past the head are kept for the protocol that
//! follows.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::uri::InvalidUri;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::bounded::{Bound, ReadError, read_until};

/// The largest request head we read. Browsers send 1 to 4 KiB; 16 KiB leaves room for big
/// cookies while keeping a hostile client's cost per connection small.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a client may take to send its whole head by default (`--handshake-timeout`). A
/// slow client that trickles bytes is cut off here, not after a minute (slowloris).
pub const HEAD_TIMEOUT: Duration =
    Duration::from_secs(crate::config::limits::DEFAULT_HANDSHAKE_TIMEOUT);

/// More headers than any browser sends; httparse needs a fixed slot count.
const MAX_HEADERS: usize = 100;

/// How long we keep reading (and discarding) after answering an error, so the client sees our
/// answer rather than a reset caused by its own unread bytes.
const ANSWER_LINGER: Duration = Duration::from_secs(1);

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("request head with more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("no complete request head within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("connection closed before the request head was complete")]
    Closed,
    #[error("reading the request head: {0}")]
    Io(#[from] io::Error),
}

impl HeadError {
    /// The status to answer with, if an answer makes sense at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => {
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            HeadError::Timeout(_) => Some(StatusCode::REQUEST_TIMEOUT),
            HeadError::Malformed(_) => Some(StatusCode::BAD_REQUEST),
            HeadError::Closed | HeadError::Io(_) => None,
        }
    }

    /// The answer, if an answer makes sense at all.
    pub fn refusal(&self) -> Option<Refusal> {
        self.status()
            .map(|status| Refusal::new(status, self.to_string()))
    }
}

/// A parsed request head and the bytes the client sent after it.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub rest: BytesMut,
}

/// Reads one request head, at most [`MAX_HEAD_BYTES`], within [`HEAD_TIMEOUT`].
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, HeadError> {
    read_head_within(stream, Some(HEAD_TIMEOUT)).await
}

/// Reads one request head, at most [`MAX_HEAD_BYTES`], within `timeout` (`None`: no limit).
pub async fn read_head_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Option<Duration>,
) -> Result<Head, HeadError> {
    let mut buf = BytesMut::with_capacity(2048);
    let bound = Bound {
        limit: MAX_HEAD_BYTES,
        step: 4096,
        timeout,
    };
    let parsed = read_until(stream, &mut buf, bound, |buf| {
        Ok(parse(buf)?.map(|(request, len)| Head {
            request,
            rest: buf.split_off(len),
        }))
    })
    .await;
    parsed.map_err(|e| match e {
        ReadError::Invalid(e) => e,
        ReadError::TooLarge => HeadError::TooLarge,
        ReadError::Timeout(limit) => HeadError::Timeout(limit),
        ReadError::Closed => HeadError::Closed,
        ReadError::Io(e) => HeadError::Io(e),
    })
}

/// Parses a complete head from `buf`, or `None` if more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Request<()>, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let malformed = |what: &str| HeadError::Malformed(what.to_string());
    // Filled in place rather than through `Request::builder()`, whose every `header` call
    // moves the whole request under construction (callgrind: 33 copies of it per head).
    let method = req.method.ok_or_else(|| malformed("no method"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| malformed(&e.to_string()))?;
    let uri = req.path.ok_or_else(|| malformed("no request target"))?;
    let uri: Uri = uri
        .parse()
        .map_err(|e: InvalidUri| malformed(&e.to_string()))?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| malformed("bad header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| malformed("bad header value"))?;
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = match req.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    *request.headers_mut() = headers;
    Ok(Some((request, len)))
}

/// A request answered with an error instead of being served: the status, a one-line reason
/// (the answer's body) and the headers the answer needs (`Retry-After`, `Allow`, a Basic
/// challenge). Whoever refuses (the head reader, a handshake, the gate, a plugin, the web
/// directory) says it with this one type, and the transport writes it its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: Cow<'static, str>,
    /// Names as they are written: ours capitalised, a plugin's as `http` spells them.
    pub headers: Vec<(Cow<'static, str>, String)>,
}

impl Refusal {
    pub fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Refusal {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The HTTP/1.1 answer: the headers, the reason as a plain-text body, and the end of the
    /// connection.
    pub fn response(&self) -> Vec<u8> {
        let body = if self.reason.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.reason)
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_bytes()))
            .chain([("Content-Type", TEXT_PLAIN.as_bytes())]);
        let mut out = Vec::with_capacity(160 + body.len());
        write_head(&mut out, self.status, headers, Some(body.len() as u64));
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// The content type of every plain answer.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// An HTTP/1.1 response head as every answer on these ports is written: the status line,
/// `headers` in order, `Content-Length` when the body's length is known here, and
/// `Connection: close` (one request per connection), then the blank line.
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    content_length: Option<u64>,
) {
    let reason = status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
}

/// Writes an answer and closes the connection so that the client can read it: we shut our
/// side down, then discard what the client still sends for a moment, since closing a socket
/// with unread input makes the kernel send a reset that can destroy the answer in flight.
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    if stream.write_all(bytes).await.is_err() {
        return;
    }
    close_gracefully(stream).await;
}

/// Ends a connection whose answer was written: shut our side down, then read and discard for
/// a moment so that unread input does not turn the close into a reset.
pub async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(ANSWER_LINGER, async {
        // On the heap: an array here would sit inside every session's future, used or not.
        let mut sink = vec![0u8; 4096];
        let mut budget = 64 * 1024;
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget -= n.min(budget),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn head_and_rest() {
        let data = b"GET /x?token=a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n\x82\x80abcd"
            .to_vec();
        let mut input = &data[..];
        let head = read_head(&mut input).await.unwrap();
        assert_eq!(head.request.uri().path(), "/x");
        assert_eq!(head.request.uri().query(), Some("token=a"));
        assert_eq!(head.request.headers()["upgrade"], "websocket");
        assert_eq!(&head.rest[..], b"\x82\x80abcd");
    }

    #[tokio::test]
    async fn limits() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        let mut input = &big[..];
        assert!(matches!(
            read_head(&mut input).await,
            Err(HeadError::TooLarge)
        ));
        // More header fields than we parse: 431 too, saying what was exceeded (it said
        // "larger than 16384 bytes" for a head of 2 KB).
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut input = &many[..];
        let err = read_head(&mut input).await.unwrap_err();
        assert!(matches!(err, HeadError::TooManyHeaders), "{err}");
        let refusal = err.refusal().unwrap();
        assert_eq!(refusal.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(
            refusal.reason.contains("more than 100 header fields"),
            "{refusal:?}"
        );
        let mut input = &b"GET / HTTP/1.1\r\nHost"[..];
        assert!(matches!(
            read_head(&mut input).await,
            Err(HeadError::Closed)
        ));
        let mut input = &b"\x01\x02garbage\r\n\r\n"[..];
        assert!(matches!(
            read_head(&mut input).await,
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn response_format() {
        let r = Refusal::bad_request("why")
            .with_header("X-A", "b")
            .response();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\nX-A: b\r\n"));
        assert!(text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nwhy\n"));
    }
}
