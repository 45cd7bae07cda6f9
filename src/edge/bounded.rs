//! Reading what a peer sends before anything is decided, with bounds on its size and time:
//! the first bytes (sniffing), a PROXY protocol header, an HTTP request head, Hixie-76's key
//! bytes. A client that sends slowly, endlessly or never costs at most [`Bound::limit`] bytes
//! of buffer for at most [`Bound::timeout`].

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much may be read, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The most bytes the buffer may hold in all; nothing past it is ever read, so what
    /// follows cannot lend room to what came first.
    pub limit: usize,
    /// The most room asked for at once (a silent client then holds no more than this).
    pub step: usize,
    /// `None`: no deadline.
    pub timeout: Option<Duration>,
}

/// Why [`read_until`] gave up.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The bytes can never be what was expected; the decider said why.
    Invalid(E),
    /// [`Bound::limit`] bytes came without a decision.
    TooLarge,
    /// [`Bound::timeout`] passed without a decision.
    Timeout(Duration),
    /// The peer closed before a decision.
    Closed,
    Io(io::Error),
}

impl<E> From<io::Error> for ReadError<E> {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads into `buf` until `decide` answers: it is asked first about what `buf` already holds,
/// then after every read, and says `Ok(None)` while it needs more bytes.
pub async fn read_until<S, T, E>(
    stream: &mut S,
    buf: &mut BytesMut,
    bound: Bound,
    mut decide: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> Result<T, ReadError<E>>
where
    S: AsyncRead + Unpin,
{
    let read = async {
        loop {
            if let Some(decided) = decide(buf).map_err(ReadError::Invalid)? {
                return Ok(decided);
            }
            if buf.len() >= bound.limit {
                return Err(ReadError::TooLarge);
            }
            let room = bound.limit - buf.len();
            buf.reserve(room.min(bound.step));
            let mut limited = (&mut *stream).take(room as u64);
            if limited.read_buf(buf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    };
    match bound.timeout {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .unwrap_or(Err(ReadError::Timeout(limit))),
        None => read.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(limit: usize) -> Bound {
        Bound {
            limit,
            step: 4,
            timeout: Some(Duration::from_secs(5)),
        }
    }

    /// Ends at the first newline.
    fn line(buf: &mut BytesMut) -> Result<Option<usize>, &'static str> {
        if buf.first() == Some(&b'!') {
            return Err("starts with !");
        }
        Ok(buf.iter().position(|&b| b == b'\n'))
    }

    #[tokio::test]
    async fn decides_reads_no_further_than_the_limit_and_reports_why_not() {
        let mut input = &b"abc\ndef"[..];
        let mut buf = BytesMut::new();
        assert_eq!(
            read_until(&mut input, &mut buf, bound(100), line)
                .await
                .unwrap(),
            3
        );
        let mut input = &b"abcdefgh\n"[..];
        let mut buf = BytesMut::new();
        let err = read_until(&mut input, &mut buf, bound(5), line).await;
        assert!(matches!(err, Err(ReadError::TooLarge)));
        assert_eq!(&buf[..], b"abcde", "not a byte past the limit");
        assert_eq!(input, b"fgh\n");
        let mut input = &b"abc"[..];
        let err = read_until(&mut input, &mut BytesMut::new(), bound(100), line).await;
        assert!(matches!(err, Err(ReadError::Closed)));
        let mut input = &b"!x\n"[..];
        let err = read_until(&mut input, &mut BytesMut::new(), bound(100), line).await;
        assert!(matches!(err, Err(ReadError::Invalid("starts with !"))));
        // What the buffer already holds is decided on before any read.
        let mut buf = BytesMut::from(&b"held\n"[..]);
        let mut nothing = &b""[..];
        assert_eq!(
            read_until(&mut nothing, &mut buf, bound(100), line)
                .await
                .unwrap(),
            4
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let err = read_until(&mut server, &mut BytesMut::new(), bound(100), line).await;
        assert!(matches!(err, Err(ReadError::Timeout(t)) if t == Duration::from_secs(5)));
    }
}
