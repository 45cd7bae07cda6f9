//! Byte streams that are one of several socket kinds (TCP or unix), behind one type so that the
//! code above them is written once. The `io_enum!` macro forwards `AsyncRead`/`AsyncWrite` to
//! whichever variant is inside.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

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
    /// A client connection as accepted, before any protocol is spoken on it.
    #[derive(Debug)]
    pub enum ClientStream: read write { Tcp(TcpStream), Unix(UnixStream) }
}

io_enum! {
    /// A connection to the target.
    #[derive(Debug)]
    pub enum TargetStream: read write { Tcp(TcpStream), Unix(UnixStream) }
}

io_enum! {
    /// The reading half of a [`TargetStream`], owned by the client-bound direction of the relay.
    #[derive(Debug)]
    pub enum TargetReader: read { Tcp(tcp::OwnedReadHalf), Unix(unix::OwnedReadHalf) }
}

io_enum! {
    /// The writing half of a [`TargetStream`], owned by the target-bound direction of the relay.
    #[derive(Debug)]
    pub enum TargetWriter: write { Tcp(tcp::OwnedWriteHalf), Unix(unix::OwnedWriteHalf) }
}

impl TargetStream {
    /// Splits into halves that the two directions of the relay own without a lock.
    pub fn into_split(self) -> (TargetReader, TargetWriter) {
        match self {
            TargetStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (TargetReader::Tcp(r), TargetWriter::Tcp(w))
            }
            TargetStream::Unix(s) => {
                let (r, w) = s.into_split();
                (TargetReader::Unix(r), TargetWriter::Unix(w))
            }
        }
    }
}
