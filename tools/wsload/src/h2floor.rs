//! `wsload relay --ws --h2`: the WebSocket floor over HTTP/2, what the `h2` crate costs a
//! bridge whose sessions are streams of one connection (RFC 8441), measured beside ours over
//! HTTP/2 as the WebSocket floor (`wsfloor.rs`) is beside ours over HTTP/1.1.
//!
//! The least such a bridge must do, with nothing else: the `h2` crate's server on one
//! current-thread runtime (as ours runs pinned to one CPU), with extended CONNECT on and the
//! windows, frame size and send buffer ours uses (256 KiB per stream, room for every
//! stream's window on the connection, 64 KiB frames from the client, 64 KiB given to a stream
//! at once); each CONNECT stream answered 200 and joined to a TCP connection to the target;
//! the client's RFC 6455 frames unmasked into the target (the DATA frames' bytes copied
//! once into the stream's buffer, since h2 shares them with its read buffer); what the target
//! sends framed with the header written into room left in front of the payload and given to
//! h2 as one buffer, without a copy; a close answered with a close. Like ours, the
//! connection's task yields after 256 KiB read in one turn, which ours found to halve the
//! CPU per byte of 64 busy streams (docs/performance.md, step 43). No pings, no limits, no
//! checks, no logging: a floor for the bench's own client, not a server.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::floorframe::{ClientFrames, HEAD_ROOM, Next, frame_header};

/// Ours' settings (src/edge/h2.rs): a stream's window, the largest frame a client may send,
/// the most given to a stream at once, the most the connection's task reads in one turn.
const STREAM_WINDOW: u32 = 256 * 1024;
const MAX_FRAME: u32 = 64 * 1024;
const MAX_WRITE: usize = 64 * 1024;
const READ_TURN: usize = 256 * 1024;
/// The streams one connection may carry, ours' default.
const MAX_STREAMS: u32 = 256;
/// websockify's read size, ours and the other floors'.
const BUF: usize = 64 * 1024;

pub fn run(port: u16, target: SocketAddr) -> anyhow::Result<()> {
    crate::tokiorelay::serve(port, target, |client, target| {
        let _ = client.set_nodelay(true);
        connection(client, target)
    })
}

async fn connection(client: TcpStream, target: SocketAddr) {
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(MAX_STREAMS * STREAM_WINDOW)
        .max_send_buffer_size(MAX_WRITE)
        .max_frame_size(MAX_FRAME);
    let Ok(mut conn) = builder
        .handshake::<_, Bytes>(Turn {
            inner: client,
            read: 0,
        })
        .await
    else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let mut response = http::Response::builder().status(200);
        if let Some(protocol) = request.headers().get("sec-websocket-protocol") {
            response = response.header("sec-websocket-protocol", protocol);
        }
        let Ok(response) = response.body(()) else {
            continue;
        };
        let Ok(send) = respond.send_response(response, false) else {
            continue;
        };
        let recv = request.into_body();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let (from_target, to_target) = upstream.into_split();
            let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
            tokio::join!(
                up(recv, to_target, closed_tx),
                down(from_target, send, closed_rx)
            );
        });
    }
}

/// The client's frames, unmasked, into the target; a close ends it and has `down` answer.
async fn up(
    mut recv: RecvStream,
    mut target: tokio::net::tcp::OwnedWriteHalf,
    closed: tokio::sync::oneshot::Sender<()>,
) {
    let (mut frames, mut buf) = (ClientFrames::default(), BytesMut::with_capacity(BUF));
    while let Some(Ok(data)) = recv.data().await {
        let _ = recv.flow_control().release_capacity(data.len());
        buf.extend_from_slice(&data);
        loop {
            match frames.next(&mut buf) {
                Next::Payload(payload) => {
                    if target.write_all(&payload).await.is_err() {
                        return;
                    }
                }
                Next::Close => {
                    let _ = closed.send(());
                    return;
                }
                Next::More => break,
            }
        }
        if buf.is_empty() {
            // Start again at the front of the allocation rather than grow it.
            buf.clear();
        }
    }
}

/// What the target sends, framed, to the client; a close after the client's.
async fn down(
    mut target: tokio::net::tcp::OwnedReadHalf,
    mut send: SendStream<Bytes>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let mut buf = BytesMut::with_capacity(HEAD_ROOM + BUF);
        buf.resize(HEAD_ROOM, 0);
        let n = tokio::select! {
            read = target.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = &mut closed => break,
        };
        let head = frame_header(&mut buf[..HEAD_ROOM], n);
        let mut frame = buf.freeze();
        frame.advance(HEAD_ROOM - head);
        while !frame.is_empty() {
            send.reserve_capacity(frame.len().min(MAX_WRITE));
            let room = loop {
                let room = send.capacity();
                if room > 0 {
                    break room;
                }
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
            };
            if send
                .send_data(frame.split_to(room.min(frame.len())), false)
                .is_err()
            {
                return;
            }
        }
    }
    let _ = send.send_data(Bytes::from_static(&[0x88, 0x00]), true);
}

/// The client's socket, whose reads end the connection task's turn after [`READ_TURN`]
/// bytes (as ours' `edge::turn::ReadTurn`).
struct Turn {
    inner: TcpStream,
    read: usize,
}

impl AsyncRead for Turn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read >= READ_TURN {
            this.read = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                this.read = 0;
                Poll::Pending
            }
            Poll::Ready(r) => {
                this.read += buf.filled().len() - before;
                Poll::Ready(r)
            }
        }
    }
}

impl AsyncWrite for Turn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.get_mut().inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}
