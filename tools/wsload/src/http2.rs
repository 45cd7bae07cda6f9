//! `--h2 STREAMS`: WebSockets as RFC 8441 extended CONNECT streams, STREAMS of them on each
//! cleartext HTTP/2 connection (prior knowledge, as Envoy or HAProxy speak to a backend).
//!
//! A stream's two halves become one byte stream ([`Io::H2`]) that tungstenite's client
//! framing runs on, exactly as on a TCP socket, so every figure measures HTTP/2 with the
//! same code that measures HTTP/1.1. The client's windows are large (1 MiB per stream, the
//! most HTTP/2 allows per connection), so only the proxy's windows can hold data back.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much one write of a stream takes at once (see `poll_write`): more than h2 ever
/// offers as room (its send buffer is 400 KiB), so in effect the bound of a write.
const ACCEPT: usize = 4 << 20;

/// The connection new streams go on, and how many it carries.
static CURRENT: Mutex<Option<(SendRequest<Bytes>, usize)>> = Mutex::new(None);

/// What a WebSocket runs on: a TCP socket (HTTP/1.1's upgrade) or an HTTP/2 stream.
pub enum Io {
    Tcp(TcpStream),
    H2(Stream),
}

/// An HTTP/2 stream as a byte stream: what came and was not read yet, then the stream.
pub struct Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    ended: bool,
}

/// Opens a WebSocket stream to `authority` (`host:port`) for `path`, offering `protocol`, on
/// the current connection, or on a new one once the current carries `per_conn` streams.
pub async fn open(
    authority: &str,
    path: &str,
    protocol: &str,
    per_conn: usize,
) -> anyhow::Result<Io> {
    let client = connection(authority, per_conn).await?;
    let mut client = client.ready().await.context("HTTP/2 connection")?;
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{authority}{path}"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", protocol)
        .extension(h2::ext::Protocol::from_static("websocket"))
        .body(())?;
    let (response, send) = client.send_request(request, false)?;
    let response = response.await.context("extended CONNECT")?;
    if response.status() != http::StatusCode::OK {
        bail!("extended CONNECT answered {}", response.status());
    }
    Ok(Io::H2(Stream {
        send,
        recv: response.into_body(),
        pending: Bytes::new(),
        ended: false,
    }))
}

/// The connection to put the next stream on.
async fn connection(authority: &str, per_conn: usize) -> anyhow::Result<SendRequest<Bytes>> {
    {
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((client, streams)) = current.as_mut()
            && *streams < per_conn
        {
            *streams += 1;
            return Ok(client.clone());
        }
    }
    let tcp = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting {authority}"))?;
    tcp.set_nodelay(true)?;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(i32::MAX as u32)
        .handshake::<_, Bytes>(tcp)
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // Extended CONNECT only once the proxy's SETTINGS said it takes it.
    let mut client = client.ready().await?;
    let mut waited = 0;
    while !client.is_extended_connect_protocol_enabled() {
        if waited == 500 {
            bail!("{authority} does not enable extended CONNECT (--http2 off?)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
        client = client.ready().await?;
    }
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    *current = Some((client.clone(), 1));
    Ok(client)
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() && !self.ended {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => self.ended = true,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let data = self.pending.split_to(n);
        buf.put_slice(&data);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(room)) => {
                    // Up to ACCEPT at once, as a loopback socket's send buffer takes megabytes
                    // in one write: h2 holds what the window does not allow yet, and the next
                    // write waits until it went. Taking only the window's room made
                    // tungstenite shift the rest of a 16 MiB frame down its buffer after every
                    // write (64 shifts of 8 MiB on average per message), and the load
                    // generator, not the proxy, set the 16 MiB figure over HTTP/2.
                    let n = room.max(ACCEPT).min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(io::Error::other)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what was sent.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::H2(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::H2(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::H2(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::H2(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
