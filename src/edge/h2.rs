//! HTTP/2 on the one port: the connection's settings, and an HTTP/2 stream as a byte stream.
//!
//! A WebSocket over HTTP/2 (RFC 8441) is a `CONNECT` stream whose DATA frames carry the same
//! RFC 6455 frames a socket would. [`H2Reader`] and [`H2Writer`] make a stream's two halves
//! the `AsyncRead` and `AsyncWrite` the HyBi codec already runs on, so the session and the
//! relay do not know they are on a stream: the glue is here and nowhere else. A WebSocket
//! frame whose payload the session holds as [`Bytes`] (a read from the target) goes to h2
//! without a copy: [`H2Writer::poll_write_parts`] hands h2 a [`Chunk`] of the frame's
//! header and a slice of the payload, and h2 writes them with one vectored write.
//!
//! Flow control: a stream's receive window is [`STREAM_WINDOW`], and what the client sent is
//! given back to the window only once the session has taken it, so a session whose target
//! does not read holds at most that much and stops its client, not the connection. The
//! connection's window is large enough for every stream's at once
//! ([`connection_window`]), so no stream that stalls can stall the others.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The preface a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Each stream's receive window: what a client may send a stream before the proxy has
/// passed it on. 64 KiB (HTTP/2's default) held one stream at half the throughput of an
/// HTTP/1.1 session, a window update per message; 256 KiB reaches 0.7x (see
/// docs/performance.md), and is still less than the kernel buffers one HTTP/1.1 connection
/// may fill.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// The largest DATA frame a client may send (`SETTINGS_MAX_FRAME_SIZE`), and so the most
/// one frame makes h2 hold in its read buffer. HTTP/2's default, 16 KiB, has h2 read the
/// connection in 8 KiB steps and grow its buffer for each frame: 64 sessions on one
/// connection reached 0.7x of 64 HTTP/1.1 connections. With 64 KiB (a 64 KiB WebSocket
/// message in one frame, where a client sends frames as large as it is allowed, as h2 and
/// Envoy do) 0.8x, and 256 KiB gained nothing more (docs/performance.md, step 38).
/// Browsers send 16 KiB frames whatever the server allows.
pub const MAX_FRAME: u32 = 64 * 1024;

/// The most a single write gives the stream at once: as a read from the target.
const MAX_WRITE: usize = 64 * 1024;

/// The largest window HTTP/2 allows (RFC 9113 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The connection's receive window for `max_streams` streams: room for all their windows, so
/// streams that stall with full windows leave the others theirs (HTTP/2's head-of-line
/// blocking, at the price of a bound of `max_streams` × [`STREAM_WINDOW`] per connection).
pub fn connection_window(max_streams: u32) -> u32 {
    max_streams
        .saturating_mul(STREAM_WINDOW)
        .clamp(STREAM_WINDOW, MAX_WINDOW)
}

/// What a stream sends, in one DATA frame: a WebSocket frame's header (or a part of it) and
/// a slice of its payload, which is never copied; or bytes alone.
#[derive(Debug)]
pub struct Chunk {
    /// The header's bytes not yet sent: `head[at..len]`.
    head: [u8; MAX_HEAD],
    at: u8,
    len: u8,
    body: Bytes,
}

/// The longest header a [`Chunk`] carries: a server's frame header (2 + 8 bytes, unmasked).
const MAX_HEAD: usize = 10;

impl Chunk {
    /// `head` (at most [`MAX_HEAD`] bytes; the rest is left to the caller) and `body`.
    fn new(head: &[u8], body: Bytes) -> (Chunk, usize) {
        let n = head.len().min(MAX_HEAD);
        let mut chunk = Chunk {
            head: [0; MAX_HEAD],
            at: 0,
            len: n as u8,
            body,
        };
        chunk.head[..n].copy_from_slice(&head[..n]);
        (chunk, n)
    }

    fn head(&self) -> &[u8] {
        &self.head[self.at as usize..self.len as usize]
    }
}

impl From<Bytes> for Chunk {
    fn from(body: Bytes) -> Chunk {
        Chunk::new(&[], body).0
    }
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        self.head().len() + self.body.len()
    }

    fn chunk(&self) -> &[u8] {
        let head = self.head();
        if head.is_empty() { &self.body } else { head }
    }

    fn advance(&mut self, mut cnt: usize) {
        let from_head = cnt.min(self.head().len());
        self.at += from_head as u8;
        cnt -= from_head;
        self.body.advance(cnt);
    }

    /// The header and the payload as two slices, for one `writev` of the DATA frame.
    fn chunks_vectored<'a>(&'a self, dst: &mut [io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for part in [self.head(), &self.body[..]] {
            if n < dst.len() && !part.is_empty() {
                dst[n] = io::IoSlice::new(part);
                n += 1;
            }
        }
        n
    }
}

/// The receiving half of a stream.
#[derive(Debug)]
pub struct H2Reader {
    recv: RecvStream,
    /// A DATA frame's bytes not yet read; its window is given back as they are.
    pending: Bytes,
}

/// The sending half of a stream.
#[derive(Debug)]
pub struct H2Writer {
    send: SendStream<Chunk>,
    /// The end of the stream was sent.
    ended: bool,
}

/// Both halves of a stream, as one byte stream (tokio's `Join` forwards to each).
pub type H2Stream = tokio::io::Join<H2Reader, H2Writer>;

/// A stream's halves, once its response head is sent.
pub fn stream(recv: RecvStream, send: SendStream<Chunk>) -> H2Stream {
    tokio::io::join(
        H2Reader {
            recv,
            pending: Bytes::new(),
        },
        H2Writer::new(send),
    )
}

fn h2_error(e: h2::Error) -> io::Error {
    let kind = if e.is_reset() || e.is_go_away() {
        io::ErrorKind::ConnectionReset
    } else if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

impl AsyncRead for H2Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                // The client ended its side of the stream: the end of what it sends.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // Taken by the session: the client may send that much more.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl H2Writer {
    /// The sending half of a stream whose response head is sent.
    pub fn new(send: SendStream<Chunk>) -> H2Writer {
        H2Writer { send, ended: false }
    }

    /// Writes as much of `head` and then `body` as the windows allow, as one DATA frame,
    /// without copying `body`; how many bytes that was (as `writev` answers).
    pub fn poll_write_parts(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        body: &Bytes,
    ) -> Poll<io::Result<usize>> {
        let total = head.len() + body.len();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = ready!(self.poll_room(cx, total))?.min(total);
        let (mut chunk, from_head) = Chunk::new(&head[..head.len().min(room)], Bytes::new());
        if from_head == head.len() {
            chunk.body = body.slice(..room - from_head);
        }
        let n = chunk.remaining();
        self.send(chunk)?;
        Poll::Ready(Ok(n))
    }

    /// Waits for room in the stream's (and the connection's) send window for up to `want`
    /// bytes; how much there is.
    fn poll_room(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        self.send.reserve_capacity(want.min(MAX_WRITE));
        loop {
            let room = self.send.capacity();
            if room > 0 {
                return Poll::Ready(Ok(room));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn send(&mut self, data: Chunk) -> io::Result<()> {
        self.send.send_data(data, false).map_err(h2_error)
    }
}

impl AsyncWrite for H2Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_room(cx, buf.len()))?.min(buf.len());
        this.send(Bytes::copy_from_slice(&buf[..n]).into())?;
        Poll::Ready(Ok(n))
    }

    /// A frame's header and its payload in one DATA frame, as one `writev` would send them.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = ready!(this.poll_room(cx, total))?.min(total);
        let mut data = BytesMut::with_capacity(room);
        for b in bufs {
            let take = (room - data.len()).min(b.len());
            data.extend_from_slice(&b[..take]);
            if data.len() == room {
                break;
            }
        }
        this.send(data.freeze().into())?;
        Poll::Ready(Ok(room))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Data given to the stream is sent by the connection's task as the windows allow.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends our side of the stream (END_STREAM), as a socket's shutdown ends its sending half.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            this.send
                .send_data(Bytes::new().into(), true)
                .map_err(h2_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// The server side of an HTTP/2 connection with the proxy's settings: extended CONNECT on
/// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), at most `max_streams` streams at once, the windows
/// above, header lists within the request head limit, and h2's bounds on resets (rapid reset,
/// CVE-2023-44487) and on what waits to be sent.
pub fn server(max_streams: u32, max_head: u32) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(max_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(connection_window(max_streams))
        .max_header_list_size(max_head)
        .max_send_buffer_size(MAX_WRITE)
        .max_frame_size(MAX_FRAME)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(256));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_its_head_then_its_body_without_a_copy() {
        let body = Bytes::from(vec![7u8; 100]);
        let (mut chunk, taken) = Chunk::new(&[0x82, 100], body.slice(..60));
        assert_eq!((taken, chunk.remaining()), (2, 62));
        let mut slices = [io::IoSlice::new(&[]); 4];
        assert_eq!(chunk.chunks_vectored(&mut slices), 2);
        assert_eq!((&*slices[0], slices[1].len()), (&[0x82, 100][..], 60));
        // The body is the caller's buffer, not a copy of it.
        assert_eq!(chunk.body.as_ptr(), body.as_ptr());
        chunk.advance(1);
        assert_eq!(chunk.chunk(), &[100]);
        chunk.advance(11);
        assert_eq!((chunk.remaining(), chunk.chunk().len()), (50, 50));
        let mut again = [io::IoSlice::new(&[]); 4];
        assert_eq!(chunk.chunks_vectored(&mut again), 1);
        let whole = Chunk::from(Bytes::from_static(b"abc"));
        assert_eq!((whole.remaining(), whole.chunk()), (3, &b"abc"[..]));
    }

    #[test]
    fn the_connection_window_holds_every_streams() {
        assert_eq!(connection_window(256), 256 * 256 * 1024);
        assert_eq!(connection_window(0), STREAM_WINDOW);
        assert_eq!(connection_window(u32::MAX), MAX_WINDOW);
    }
}
