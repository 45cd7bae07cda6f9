//! Byte streams that are one of several socket kinds (TCP, unix, TLS over either), behind one
//! type so that the code above them is written once. The `io_enum!` macro forwards
//! `AsyncRead`/`AsyncWrite` to whichever variant is inside.
//!
//! A [`ClientStream`] also replays the bytes the sniffer read to decide what the client speaks,
//! so that the protocol chosen (TLS, HTTP) reads them as if nothing had been taken.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UnixStream};

/// Declares an enum of I/O types and forwards the tokio I/O traits (`read`, `write` or both)
/// to its variants.
macro_rules! io_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident: $($io:ident)+ { $($variant:ident($ty:ty)),+ $(,)? }) => {
        $(#[$meta])*
        $vis enum $name { $($variant($ty)),+ }
        io_enum!(@each $name [$($variant)+] $($io)+);
    };
    (@each $name:ident $variants:tt $io:ident $($rest:ident)*) => {
        io_enum!(@$io $name $variants);
        io_enum!(@each $name $variants $($rest)*);
    };
    (@each $name:ident $variants:tt) => {};
    (@read $name:ident [$($variant:ident)+]) => {
        impl AsyncRead for $name {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() { $($name::$variant(s) => Pin::new(s).poll_read(cx, buf)),+ }
            }
        }
    };
    (@write $name:ident [$($variant:ident)+]) => {
        impl AsyncWrite for $name {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() { $($name::$variant(s) => Pin::new(s).poll_write(cx, buf)),+ }
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($name::$variant(s) => Pin::new(s).poll_write_vectored(cx, bufs)),+
                }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $($name::$variant(s) => s.is_write_vectored()),+ }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $($name::$variant(s) => Pin::new(s).poll_flush(cx)),+ }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $($name::$variant(s) => Pin::new(s).poll_shutdown(cx)),+ }
            }
        }
    };
}

io_enum! {
    /// The transport under a client connection; `H2` is a WebSocket on a stream of an
    /// HTTP/2 connection (RFC 8441).
    #[derive(Debug)]
    pub enum ClientIo: read write {
        Tcp(TcpStream),
        Unix(UnixStream),
        Tls(Box<tokio_rustls::server::TlsStream<ClientStream>>),
        H2(Box<crate::edge::h2::H2Stream>),
    }
}

/// A client connection: its transport, and bytes already read from it that are read again
/// first (what the sniffer looked at).
#[derive(Debug)]
pub struct ClientStream {
    replay: Bytes,
    io: ClientIo,
}

impl ClientStream {
    pub fn new(io: ClientIo) -> ClientStream {
        ClientStream {
            replay: Bytes::new(),
            io,
        }
    }

    /// The address the client connected to (TCP only; before TLS is set up).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.io {
            ClientIo::Tcp(s) => s.local_addr().ok(),
            _ => None,
        }
    }

    /// A connection just accepted, taken off this runtime's I/O driver so that another
    /// runtime can take it ([`Detached::attach`]); a TLS or HTTP/2 one cannot be moved.
    pub fn detach(self) -> io::Result<Detached> {
        match self.io {
            ClientIo::Tcp(s) if self.replay.is_empty() => s.into_std().map(Detached::Tcp),
            ClientIo::Unix(s) if self.replay.is_empty() => s.into_std().map(Detached::Unix),
            _ => Err(io::Error::other(
                "only a connection just accepted can be moved",
            )),
        }
    }

    /// Puts `bytes` in front of what is read next.
    pub fn unread(&mut self, bytes: Bytes) {
        if self.replay.is_empty() {
            self.replay = bytes;
        } else {
            let mut joined = BytesMut::from(&bytes[..]);
            joined.extend_from_slice(&self.replay);
            self.replay = joined.freeze();
        }
    }
}

/// An accepted connection on its way to the runtime that will serve it: registered with no
/// I/O driver (see `server::workers`).
#[derive(Debug)]
pub enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Detached {
    /// Registers the connection with the I/O driver of the runtime this is called on.
    pub fn attach(self) -> io::Result<ClientStream> {
        Ok(ClientStream::new(match self {
            Detached::Tcp(s) => ClientIo::Tcp(TcpStream::from_std(s)?),
            Detached::Unix(s) => ClientIo::Unix(UnixStream::from_std(s)?),
        }))
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// TLS toward the target (`--ssl-target`).
pub type TargetTls = tokio_rustls::client::TlsStream<TargetStream>;

io_enum! {
    /// A connection to the target.
    #[derive(Debug)]
    pub enum TargetStream: read write {
        Tcp(TcpStream),
        Unix(UnixStream),
        Tls(Box<TargetTls>),
    }
}

/// One socket shared by the two directions of the relay: each direction owns a `Half` and
/// uses it only for reading or only for writing, so neither needs a lock.
///
/// Unlike tokio's own split halves, a `Half` can tell the reactor that a read found the
/// socket drained (see [`Socket::try_read_drain`]), which saves a failing read per message.
#[derive(Debug)]
pub struct Half<S>(Arc<S>);

/// The socket operations a [`Half`] needs, for TCP and unix sockets alike.
pub trait Socket: AsFd + Send + Sync {
    /// Ready when the socket has something to read. Only one task reads each socket, so the
    /// reader's own waker slot does (no list of waiters to join and leave per wait).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is there into `buf`'s room. A read that leaves room has drained the
    /// socket, so it also clears the read readiness the reactor reported, as a read that
    /// would block does: the next read waits instead of failing first.
    fn try_read_drain(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;
}

macro_rules! socket {
    ($($ty:ty),+) => {$(
        impl Socket for $ty {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$ty>::poll_read_ready(self, cx)
            }
            fn try_read_drain(&self, buf: &mut BytesMut) -> io::Result<usize> {
                let room = buf.capacity() - buf.len();
                let mut read = 0;
                // `try_io` clears the readiness when the closure reports WouldBlock, and only
                // if no new readiness arrived since it was called (the socket is
                // edge-triggered: bytes that come after the read are reported anew).
                let result = self.try_io(Interest::READABLE, || {
                    read = <$ty>::try_read_buf(self, buf)?;
                    if read > 0 && read < room {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(read)
                });
                match result {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
                    other => other,
                }
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$ty>::poll_write_ready(self, cx)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$ty>::try_write(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
                <$ty>::try_write_vectored(self, bufs)
            }
        }
    )+};
}

socket!(TcpStream, UnixStream);

/// Splits a socket into a reading [`Lazy`] and a writing [`Half`].
fn halves<S: Socket>(socket: S) -> (Lazy<S>, Half<S>) {
    let socket = Arc::new(socket);
    let reader = Lazy {
        socket: socket.clone(),
        release: None,
        read: false,
        bulk: false,
    };
    (reader, Half(socket))
}

/// How long a direction in bulk (see [`FIRST_READ`]) waits for data while holding its read
/// buffer; after that (and at most twice that) the buffer is given back and the next read
/// borrows a new one, so an idle session holds none.
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// The room a direction's reads ask for on a plain socket (TLS reads go through rustls's own
/// buffers) until one fills it; the first read that fills it moves the direction to bulk,
/// with reads of its full chunk.
///
/// Until then, a direction of small messages (keystrokes, pointer moves, pings) borrows a
/// buffer this large per read and gives it back when it waits for the next one: no timer,
/// and the allocator serves it from its per-thread cache on its fast path, which jemalloc
/// takes only up to 4 KiB (callgrind: 8 KiB buffers went through `malloc_default`, and two
/// 64 KiB buffers per connection cost 6,500 instructions in `malloc` and `free` alone).
const FIRST_READ: usize = 4 * 1024;

/// The room a direction's reads ask for in bulk, on either side: as websockify's reads, one
/// read from the target fills one WebSocket message.
pub const BULK_READ: usize = 64 * 1024;

/// The reading half of a socket shared with a writing [`Half`], which lends its caller's
/// buffer to the socket only while data flows (see [`Lazy::read_when_ready`]).
#[derive(Debug)]
pub struct Lazy<S> {
    socket: Arc<S>,
    /// While a buffer is held in bulk: the clock that gives it back, ticking every
    /// [`IDLE_RELEASE`]. One timer per direction, re-armed once a tick at most, rather than
    /// one per wait for data (a timer wheel insertion and removal per message).
    release: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Something was read since the clock last ticked.
    read: bool,
    /// A read filled its room since the buffer was last given back: reads ask for their
    /// full chunk, not [`FIRST_READ`].
    bulk: bool,
}

impl<S: Socket> Lazy<S> {
    /// Reads what is there into `buf` (with at least `chunk` bytes of room), waiting for
    /// readiness without a buffer: room is reserved once the socket is readable, and given
    /// back when `buf` holds nothing unconsumed and, in bulk, nothing came for a whole tick
    /// of the release clock (between one and two [`IDLE_RELEASE`]s); before bulk, at once.
    async fn read_when_ready(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        let socket = &*self.socket;
        if buf.is_empty() && !self.bulk {
            // Small messages: the buffer goes back to the allocator now, and the wait holds
            // none. A small buffer from the allocator's per-thread cache per message costs
            // less than keeping it on the release clock, whose timer the runtime's time
            // driver would look at on every park (docs/performance.md, step 21).
            self.release = None;
            *buf = BytesMut::new();
        }
        loop {
            if buf.capacity() > 0 || !buf.is_empty() {
                buf.reserve(self.room_for(chunk));
                match socket.try_read_drain(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => {
                        self.read = true;
                        // No room left: the read filled all it was given.
                        self.bulk |= buf.len() == buf.capacity();
                        return done;
                    }
                }
                if buf.is_empty() && !self.bulk {
                    // Readiness without data: wait as at the start, without a buffer.
                    *buf = BytesMut::new();
                } else if buf.is_empty() {
                    let release = self
                        .release
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(IDLE_RELEASE)));
                    let ready = std::future::poll_fn(|cx| {
                        if let Poll::Ready(r) = socket.poll_read_ready(cx) {
                            return Poll::Ready(Some(r));
                        }
                        release.as_mut().poll(cx).map(|()| None)
                    })
                    .await;
                    match ready {
                        Some(ready) => {
                            ready?;
                            continue;
                        }
                        None if std::mem::take(&mut self.read) => {
                            let next = tokio::time::Instant::now() + IDLE_RELEASE;
                            release.as_mut().reset(next);
                            continue;
                        }
                        None => {
                            self.release = None;
                            self.bulk = false;
                            *buf = BytesMut::new();
                        }
                    }
                }
            }
            std::future::poll_fn(|cx| socket.poll_read_ready(cx)).await?;
            buf.reserve(self.room_for(chunk));
        }
    }

    /// The room to ask for: `chunk` once a read filled its room, else [`FIRST_READ`].
    fn room_for(&self, chunk: usize) -> usize {
        if self.bulk {
            chunk
        } else {
            FIRST_READ.min(chunk)
        }
    }
}

impl<S: Socket> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// Reads into `buf` (at least `chunk` bytes of room) for a half that cannot wait without a
/// buffer (TLS keeps its own).
async fn read_buffered<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    chunk: usize,
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    buf.reserve(chunk);
    r.read_buf(buf).await
}

type ServerTls = Box<tokio_rustls::server::TlsStream<ClientStream>>;

/// The reading half of a [`ClientStream`], owned by the target-bound direction.
#[derive(Debug)]
pub enum ClientReader {
    Tcp(Lazy<TcpStream>),
    Unix(Lazy<UnixStream>),
    Tls(ReadHalf<ServerTls>),
    H2(crate::edge::h2::H2Reader),
}

io_enum! {
    /// The writing half of a [`ClientStream`], owned by the client-bound direction.
    #[derive(Debug)]
    pub enum ClientWriter: write {
        Tcp(Half<TcpStream>),
        Unix(Half<UnixStream>),
        Tls(WriteHalf<ServerTls>),
        H2(crate::edge::h2::H2Writer),
    }
}

impl ClientWriter {
    /// Writes `head` then `body` as one `writev` would, as much as the peer takes; how many
    /// bytes that was. Over HTTP/2, `body` is handed to h2 without a copy.
    pub fn poll_write_parts(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        body: &Bytes,
    ) -> Poll<io::Result<usize>> {
        match self {
            ClientWriter::H2(w) => w.poll_write_parts(cx, head, body),
            other => Pin::new(other)
                .poll_write_vectored(cx, &[io::IoSlice::new(head), io::IoSlice::new(body)]),
        }
    }
}

impl ClientStream {
    /// Splits into halves, with the bytes still to be replayed (the caller reads them first).
    pub fn into_split(self) -> (Bytes, ClientReader, ClientWriter) {
        let (r, w) = match self.io {
            ClientIo::Tcp(s) => {
                let (r, w) = halves(s);
                (ClientReader::Tcp(r), ClientWriter::Tcp(w))
            }
            ClientIo::Unix(s) => {
                let (r, w) = halves(s);
                (ClientReader::Unix(r), ClientWriter::Unix(w))
            }
            ClientIo::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (ClientReader::Tls(r), ClientWriter::Tls(w))
            }
            // A stream's halves are separate already.
            ClientIo::H2(s) => {
                let (reader, writer) = s.into_inner();
                (ClientReader::H2(reader), ClientWriter::H2(writer))
            }
        };
        (self.replay, r, w)
    }
}

impl ClientReader {
    /// Reads what the client sent into `buf`; see [`Lazy::read_when_ready`].
    pub async fn read_lazily(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            ClientReader::Tcp(r) => r.read_when_ready(buf, chunk).await,
            ClientReader::Unix(r) => r.read_when_ready(buf, chunk).await,
            ClientReader::Tls(r) => read_buffered(r, buf, chunk).await,
            ClientReader::H2(r) => read_buffered(r, buf, chunk).await,
        }
    }
}

/// The reading half of a [`TargetStream`], owned by the client-bound direction of the relay.
#[derive(Debug)]
pub enum TargetReader {
    Tcp(Lazy<TcpStream>),
    Unix(Lazy<UnixStream>),
    Tls(ReadHalf<Box<TargetTls>>),
}

io_enum! {
    /// The writing half of a [`TargetStream`], owned by the target-bound direction of the relay.
    #[derive(Debug)]
    pub enum TargetWriter: write {
        Tcp(Half<TcpStream>),
        Unix(Half<UnixStream>),
        Tls(WriteHalf<Box<TargetTls>>),
    }
}

impl TargetStream {
    /// Splits into halves that the two directions of the relay own without a lock.
    pub fn into_split(self) -> (TargetReader, TargetWriter) {
        match self {
            TargetStream::Tcp(s) => {
                let (r, w) = halves(s);
                (TargetReader::Tcp(r), TargetWriter::Tcp(w))
            }
            TargetStream::Unix(s) => {
                let (r, w) = halves(s);
                (TargetReader::Unix(r), TargetWriter::Unix(w))
            }
            // A TLS session's state is shared by both directions, so its halves take turns
            // (tokio's split holds a lock only for the duration of each poll).
            TargetStream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (TargetReader::Tls(r), TargetWriter::Tls(w))
            }
        }
    }
}

impl TargetReader {
    /// Reads what the target sent into `buf`; see [`Lazy::read_when_ready`].
    pub async fn read_lazily(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            TargetReader::Tcp(r) => r.read_when_ready(buf, chunk).await,
            TargetReader::Unix(r) => r.read_when_ready(buf, chunk).await,
            TargetReader::Tls(r) => read_buffered(r, buf, chunk).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::time::{Duration, timeout};

    use super::*;

    /// A target-side reader and the peer that writes to it.
    async fn pair() -> (TargetReader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (reader, _writer) = TargetStream::Tcp(ours.unwrap()).into_split();
        (reader, theirs.unwrap().0)
    }

    /// Waits `ms` for data that does not come; true if it did not.
    async fn silent_for(ms: u64, reader: &mut TargetReader, buf: &mut BytesMut) -> bool {
        timeout(Duration::from_millis(ms), reader.read_lazily(buf, 65536))
            .await
            .is_err()
    }

    /// Moves `reader` to bulk reads: one read that fills [`FIRST_READ`].
    async fn into_bulk(reader: &mut TargetReader, peer: &mut TcpStream, buf: &mut BytesMut) {
        peer.write_all(&[1; FIRST_READ]).await.unwrap();
        assert_eq!(reader.read_lazily(buf, 65536).await.unwrap(), FIRST_READ);
        buf.clear();
    }

    /// A direction of small messages gives its buffer back as soon as it waits for more.
    #[tokio::test(start_paused = true)]
    async fn small_messages_hold_no_buffer_while_waiting() {
        let (mut reader, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        peer.write_all(b"hello").await.unwrap();
        let n = reader.read_lazily(&mut buf, 65536).await.unwrap();
        let message = buf.split().freeze();
        assert_eq!(&message[..n], b"hello");

        assert!(silent_for(10, &mut reader, &mut buf).await);
        assert_eq!(buf.capacity(), 0, "held a buffer while waiting");
        assert_eq!(&message[..], b"hello", "the message outlives the buffer");

        peer.write_all(b"again").await.unwrap();
        let n = reader.read_lazily(&mut buf, 65536).await.unwrap();
        assert_eq!(&buf[..n], b"again");
    }

    /// A direction in bulk gives its read buffer back once a whole tick of the release clock
    /// passed without a read, and not while data keeps coming.
    #[tokio::test(start_paused = true)]
    async fn bulk_buffer_is_given_back_when_idle() {
        let (mut reader, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        into_bulk(&mut reader, &mut peer, &mut buf).await;
        peer.write_all(b"hello").await.unwrap();
        let n = reader.read_lazily(&mut buf, 65536).await.unwrap();
        assert_eq!(&buf.split()[..n], b"hello");
        assert!(buf.capacity() > 0, "the room is kept while data flows");

        // The clock starts with the first wait. At its first tick (1 s) there was a read
        // since it was armed: it re-arms instead of releasing.
        assert!(silent_for(1500, &mut reader, &mut buf).await);
        assert!(
            buf.capacity() > 0,
            "released though a read came within the tick"
        );

        // At the second tick (2 s) nothing came in the whole tick: released while waiting.
        assert!(silent_for(1000, &mut reader, &mut buf).await);
        assert_eq!(buf.capacity(), 0, "kept a buffer after a silent tick");

        // The next data borrows a buffer again.
        peer.write_all(b"again").await.unwrap();
        let n = reader.read_lazily(&mut buf, 65536).await.unwrap();
        assert_eq!(&buf[..n], b"again");
    }

    /// Reads ask for [`FIRST_READ`] until one fills it, then for the whole chunk, and start
    /// small again once the buffer was given back.
    #[tokio::test(start_paused = true)]
    async fn reads_start_small_and_grow_when_one_fills_its_room() {
        let (mut reader, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        peer.write_all(b"hello").await.unwrap();
        assert_eq!(reader.read_lazily(&mut buf, 65536).await.unwrap(), 5);
        assert_eq!(
            buf.capacity(),
            FIRST_READ,
            "a small message borrowed a large buffer"
        );

        buf.clear();
        peer.write_all(&[7; 30_000]).await.unwrap();
        // On loopback, all of it is in our socket once written: what one read gets depends
        // only on its room.
        assert_eq!(
            reader.read_lazily(&mut buf, 65536).await.unwrap(),
            FIRST_READ
        );
        buf.clear();
        let rest = 30_000 - FIRST_READ;
        assert_eq!(reader.read_lazily(&mut buf, 65536).await.unwrap(), rest);

        // Given back after two silent ticks; the next read starts small again.
        buf.clear();
        assert!(silent_for(2500, &mut reader, &mut buf).await);
        assert_eq!(buf.capacity(), 0);
        peer.write_all(b"again").await.unwrap();
        assert_eq!(reader.read_lazily(&mut buf, 65536).await.unwrap(), 5);
        assert_eq!(buf.capacity(), FIRST_READ);
    }

    /// In bulk, data that keeps coming more often than the clock ticks keeps the buffer.
    #[tokio::test(start_paused = true)]
    async fn steady_bulk_keeps_the_buffer() {
        let (mut reader, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        into_bulk(&mut reader, &mut peer, &mut buf).await;
        for _ in 0..6 {
            peer.write_all(b"x").await.unwrap();
            reader.read_lazily(&mut buf, 65536).await.unwrap();
            buf.clear();
            assert!(silent_for(700, &mut reader, &mut buf).await);
            assert!(buf.capacity() > 0, "released while data came every 0.7 s");
        }
    }
}
