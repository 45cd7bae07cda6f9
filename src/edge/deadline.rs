//! `--send-timeout`: a writer that gives up on a peer that takes no byte for too long.
//!
//! A client whose receive window stays shut (it stopped reading, or vanished without a reset)
//! would hold a write, and with it the connection and its place under `--max-connections`,
//! forever. Wrapped in [`Deadline`], a write (or flush, or shutdown) that makes no progress
//! for the deadline fails with `TimedOut`. Any progress starts the clock again, so a slow but
//! live client downloading a large file is not cut off: only one that stalls is. A
//! [`Watch`] hears of every write that made progress (a session's idle clock and heartbeat:
//! a client that takes bytes is not idle, one that takes none is).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Told of every write that made progress.
pub trait Watch: Send + Sync {
    fn progressed(&self);
}

/// `S` with a deadline on every write that waits.
pub struct Deadline<S> {
    inner: S,
    /// `None`: no deadline.
    after: Option<Duration>,
    /// Armed when a write first has to wait; dropped once one makes progress.
    stall: Option<Pin<Box<Sleep>>>,
    watch: Option<Arc<dyn Watch>>,
}

impl<S> std::fmt::Debug for Deadline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("after", &self.after)
            .finish()
    }
}

impl<S> Deadline<S> {
    pub fn new(inner: S, after: Option<Duration>) -> Deadline<S> {
        Deadline {
            inner,
            after,
            stall: None,
            watch: None,
        }
    }

    /// Also tells `watch` of every write that made progress.
    pub fn watched(mut self, watch: Arc<dyn Watch>) -> Deadline<S> {
        self.watch = Some(watch);
        self
    }

    /// What a write that is not ready answers: still pending, or the error once the peer has
    /// taken nothing for the whole deadline.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(after) = self.after else {
            return Poll::Pending;
        };
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client took no byte for {}s (--send-timeout)",
                after.as_secs()
            ),
        )))
    }

    /// A write that finished (or failed): the clock stops.
    fn done<T>(&mut self, result: io::Result<T>) -> Poll<io::Result<T>> {
        self.stall = None;
        Poll::Ready(result)
    }

    /// A write that `write` makes on the inner writer, under the deadline as any other: for
    /// writes the `AsyncWrite` methods cannot express (a frame handed over without a copy).
    pub fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match write(&mut self.inner, cx) {
            Poll::Ready(result) => self.wrote(result),
            Poll::Pending => self.waiting(cx),
        }
    }

    /// A write of bytes that finished: the watch hears of bytes taken.
    fn wrote(&mut self, result: io::Result<usize>) -> Poll<io::Result<usize>> {
        if let (Some(watch), Ok(1..)) = (&self.watch, &result) {
            watch.progressed();
        }
        self.done(result)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |inner, cx| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |inner, cx| {
            Pin::new(inner).poll_write_vectored(cx, bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => this.done(result),
            Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => this.done(result),
            Poll::Pending => this.waiting(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_fails_the_write_after_the_deadline() {
        let (client, _server) = tokio::io::duplex(16);
        let mut out = Deadline::new(client, Some(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        let err = out.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("--send-timeout"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_is_never_cut_off() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut out = Deadline::new(client, Some(Duration::from_secs(5)));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0; 16];
            while got < 160 {
                // Each 16 bytes after 4 s: slower than the deadline in all, never stalled
                // for it.
                tokio::time::sleep(Duration::from_secs(4)).await;
                got += server.read(&mut buf).await.unwrap();
            }
            got
        });
        out.write_all(&[1; 160]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 160);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_a_write_waits() {
        let (client, _server) = tokio::io::duplex(16);
        let mut out = Deadline::new(client, None);
        let write = tokio::time::timeout(Duration::from_secs(3600), out.write_all(&[0; 64]));
        assert!(write.await.is_err(), "still waiting after an hour");
    }
}
