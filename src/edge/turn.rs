//! A bound on what an HTTP/2 connection's task reads in one turn, so that the sessions its
//! streams feed take their bytes while they are still in the CPU's caches.
//!
//! h2 reads every frame the socket has before it returns, and tokio lets a task make up to
//! 128 reads before it must yield: with 64 busy streams that was megabytes per turn, queued
//! in the streams' buffers until their sessions ran, by which time the first of them had left
//! the caches. Copying them into the sessions' buffers, unmasking them and writing them to the
//! targets then cost twice as much per byte as over HTTP/1.1, where each session reads its
//! own socket when it runs (docs/performance.md, step 43). [`ReadTurn`] ends the turn after
//! [`READ_TURN`] bytes: the connection's task yields (waking itself), the sessions that have
//! data run, and the task reads on after them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most read in one turn of the connection's task: a stream's window
/// ([`crate::edge::h2::STREAM_WINDOW`]). 64 KiB turns gained less (docs/performance.md,
/// step 43).
pub const READ_TURN: usize = 256 * 1024;

/// `S`, whose reads yield after [`READ_TURN`] bytes in one turn; writes pass through.
#[derive(Debug)]
pub struct ReadTurn<S> {
    inner: S,
    /// Read since the task last waited for the socket or yielded.
    read: usize,
}

impl<S> ReadTurn<S> {
    pub fn new(inner: S) -> ReadTurn<S> {
        ReadTurn { inner, read: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadTurn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read >= READ_TURN {
            // The turn is over: the task runs again after the tasks that are ready (the
            // sessions with bytes to take), and reads on then.
            this.read = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => this.read += buf.filled().len() - before,
            // The task waits for the socket: a new turn when it comes back.
            Poll::Pending => this.read = 0,
            Poll::Ready(Err(_)) => {}
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadTurn<S> {
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
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A socket that always has `chunk` more bytes (counting up).
    struct Endless {
        chunk: usize,
        next: u8,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            for _ in 0..this.chunk.min(buf.remaining()) {
                buf.put_slice(&[this.next]);
                this.next = this.next.wrapping_add(1);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn read(r: &mut ReadTurn<Endless>, cx: &mut Context<'_>, into: &mut Vec<u8>) -> Poll<()> {
        let mut space = [0u8; 16 * 1024];
        let mut buf = ReadBuf::new(&mut space);
        match Pin::new(r).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                into.extend_from_slice(buf.filled());
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => Poll::Pending,
        }
    }

    #[test]
    fn a_turn_ends_after_read_turn_bytes_and_the_next_reads_on() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut r = ReadTurn::new(Endless {
            chunk: 10_000,
            next: 0,
        });
        let mut got = Vec::new();
        // (Bounded, so that a turn that never ends fails here rather than hangs.)
        let reads = (0..1000)
            .take_while(|_| read(&mut r, &mut cx, &mut got).is_ready())
            .count();
        // Reads of 10,000 bytes until the turn's 256 KiB were reached, then it yields, and
        // asks to run again (the socket, which did not wait, would not wake it).
        assert_eq!(reads, READ_TURN.div_ceil(10_000));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        // The next turn reads on where the last one stopped.
        assert!(read(&mut r, &mut cx, &mut got).is_ready());
        let expected: Vec<u8> = (0..got.len()).map(|i| i as u8).collect();
        assert!(got == expected);
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_unchanged() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut a = ReadTurn::new(a);
        let mut b = b;
        let sent: Vec<u8> = (0..3 * READ_TURN).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                b.write_all(&sent).await.unwrap();
                b.shutdown().await.unwrap();
                let mut back = Vec::new();
                b.read_to_end(&mut back).await.unwrap();
                back
            })
        };
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert!(got == sent);
        a.write_all(b"and back").await.unwrap();
        a.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"and back");
    }
}
