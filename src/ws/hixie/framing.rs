//! Hixie framing: a data frame is `0x00`, the payload in base64, `0xFF`; draft 76 closes
//! with `0xFF 0x00`. The decoder is incremental (input may arrive split anywhere) and
//! bounded (a frame that never ends is refused at [`MAX_FRAME`]).

use base64::Engine;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::Draft;
use crate::edge::deadline::Deadline;
use crate::session::{
    Bounds, ClientRx, ClientTx, Close, Inbound, RecvError, SendError, close_code,
};

/// The longest frame we accept, counted in base64 text: the same bound as a HyBi message,
/// so a frame that never ends cannot make us buffer more than that.
pub const MAX_FRAME: usize = crate::ws::hybi::MAX_MESSAGE_SIZE;

/// The most read from the client at a time: an unterminated frame is refused with at most
/// [`MAX_FRAME`] + this held.
const READ_AT_MOST: usize = 16 * 1024;

/// The session's two halves over `stream`, once the handshake is answered; `rest` holds the
/// bytes the client sent after it (its first frames).
pub(super) fn halves<S>(
    stream: S,
    rest: &[u8],
    draft: Draft,
    bounds: &Bounds,
) -> (HixieRx<S>, HixieTx<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut decoder = Decoder::with_limit(bounds.max_message);
    decoder.feed(rest);
    let writer = Deadline::new(writer, bounds.send_timeout).watched(bounds.activity.clone());
    (
        HixieRx { reader, decoder },
        HixieTx {
            writer,
            draft,
            closed: false,
            partial: false,
        },
    )
}

/// One data frame: `0x00`, the payload in base64, `0xFF`.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(2 + data.len().div_ceil(3) * 4);
    out.push(0x00);
    out.extend_from_slice(engine.encode(data).as_bytes());
    out.push(0xFF);
    out
}

/// The close frame (76 only).
pub const CLOSE_FRAME: [u8; 2] = [0xFF, 0x00];

/// A frame decoded from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Message(Vec<u8>),
    Close,
}

/// Why the client's bytes are not Hixie frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported Hixie frame type 0x{0:02x}")]
    BadType(u8),
    #[error("Hixie frame longer than {0} bytes")]
    TooLong(usize),
    #[error("invalid base64 in a Hixie frame")]
    BadBase64,
}

impl FrameError {
    fn close(&self) -> Close {
        let code = match self {
            FrameError::BadType(_) => close_code::PROTOCOL_ERROR,
            FrameError::TooLong(_) => close_code::MESSAGE_TOO_BIG,
            FrameError::BadBase64 => close_code::INVALID_PAYLOAD,
        };
        Close {
            code,
            reason: self.to_string().into(),
        }
    }
}

/// An incremental frame decoder: input may arrive split anywhere.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// How far the current frame was already searched for its end, so that a long frame
    /// arriving in pieces is scanned once, not once per piece.
    scanned: usize,
    /// The longest frame accepted, in bytes as sent (base64 text).
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder refusing frames longer than `limit` bytes as sent (`--max-message-size`
    /// applies to Hixie frames so: a frame is one message).
    pub fn with_limit(limit: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` if more input is needed.
    pub fn next_frame(&mut self) -> Result<Option<Decoded>, FrameError> {
        let Some(&kind) = self.buf.first() else {
            return Ok(None);
        };
        match kind {
            0x00 => {
                let from = self.scanned.max(1);
                match self.buf[from..].iter().position(|&b| b == 0xFF) {
                    // The limit holds however the input was split: a frame whose end came
                    // in the same read as its start is no more acceptable than one that
                    // trickled in.
                    Some(i) if from + i - 1 > self.limit => Err(FrameError::TooLong(self.limit)),
                    Some(i) => {
                        let end = from + i;
                        let frame = self.buf.split_to(end + 1);
                        self.scanned = 0;
                        base64::engine::general_purpose::STANDARD
                            .decode(&frame[1..end])
                            .map(|data| Some(Decoded::Message(data)))
                            .map_err(|_| FrameError::BadBase64)
                    }
                    None if self.buf.len() - 1 > self.limit => Err(FrameError::TooLong(self.limit)),
                    None => {
                        self.scanned = self.buf.len();
                        Ok(None)
                    }
                }
            }
            0xFF => match self.buf.get(1) {
                None => Ok(None),
                Some(0x00) => {
                    let _ = self.buf.split_to(2);
                    Ok(Some(Decoded::Close))
                }
                Some(_) => Err(FrameError::BadType(0xFF)),
            },
            other => Err(FrameError::BadType(other)),
        }
    }
}

/// Receiving half of a Hixie session.
pub struct HixieRx<S> {
    reader: ReadHalf<S>,
    decoder: Decoder,
}

/// Sending half of a Hixie session.
pub struct HixieTx<S> {
    writer: Deadline<WriteHalf<S>>,
    draft: Draft,
    /// The close was sent: sending it twice would put bytes after the close frame.
    closed: bool,
    /// A frame is on its way out, or was cut off when its write was given up: nothing may
    /// follow its start, not even the close frame.
    partial: bool,
}

impl<S: AsyncRead + AsyncWrite + Send> ClientRx for HixieRx<S> {
    async fn linger(&mut self, deadline: tokio::time::Instant) {
        let drain = async {
            let mut scratch = [0u8; 4096];
            while let Ok(n) = self.reader.read(&mut scratch).await {
                if n == 0 {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, drain).await;
    }

    async fn recv(&mut self) -> Result<Inbound, RecvError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Decoded::Message(data))) => return Ok(Inbound::Data(Bytes::from(data))),
                Ok(Some(Decoded::Close)) => return Ok(Inbound::Close(None)),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Protocol(e.close())),
            }
            // At most READ_AT_MOST per read (`read_buf` alone would fill all the spare capacity
            // of a grown buffer), so an unterminated frame is refused with at most
            // MAX_FRAME + READ_AT_MOST bytes held.
            self.decoder.buf.reserve(READ_AT_MOST);
            let mut limited = (&mut self.reader).take(READ_AT_MOST as u64);
            match limited.read_buf(&mut self.decoder.buf).await {
                Ok(0) => return Err(RecvError::Gone("connection closed".to_string())),
                Ok(_) => {}
                Err(e) => return Err(RecvError::Gone(e.to_string())),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send> HixieTx<S> {
    /// 76 sends its close frame; both drafts then end our side of the TCP connection.
    async fn end(&mut self) -> Result<(), SendError> {
        if self.closed {
            return Ok(());
        }
        if self.partial {
            return Err(SendError::Gone(
                "a message to the client was cut off: no close can follow it".to_string(),
            ));
        }
        self.closed = true;
        if self.draft == Draft::Hixie76 {
            self.writer.write_all(&CLOSE_FRAME).await?;
        }
        self.writer.flush().await?;
        self.writer.shutdown().await.map_err(SendError::from)
    }
}

impl<S: AsyncRead + AsyncWrite + Send> ClientTx for HixieTx<S> {
    async fn send(&mut self, data: Bytes) -> Result<(), SendError> {
        if self.partial {
            return Err(SendError::Gone(
                "a message to the client was cut off: nothing can follow it".to_string(),
            ));
        }
        self.partial = true;
        self.writer.write_all(&encode(&data)).await?;
        self.writer.flush().await?;
        self.partial = false;
        Ok(())
    }

    /// The drafts have no ping.
    async fn ping(&mut self) -> Result<(), SendError> {
        Ok(())
    }

    /// Hixie has no close codes on the wire; the code only goes to the log.
    async fn close(&mut self, _close: &Close) -> Result<(), SendError> {
        self.end().await
    }

    async fn finish(&mut self) -> Result<(), SendError> {
        self.end().await
    }

    /// The drafts have no control frames: nothing is ever owed.
    fn owed(&self) -> impl std::future::Future<Output = ()> + Send {
        std::future::pending()
    }

    async fn answer(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn framing() {
        assert_eq!(encode(b""), [0x00, 0xFF]);
        assert_eq!(encode(b"hi"), b"\x00aGk=\xff");
        let mut d = Decoder::default();
        d.feed(b"\x00aGk=\xff\x00\xff\xff");
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Message(b"hi".to_vec()))));
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Message(vec![]))));
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(b"\x00");
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Close)));
        d.feed(b"\x80\x05hello");
        assert_eq!(d.next_frame(), Err(FrameError::BadType(0x80)));
        let mut d = Decoder::default();
        d.feed(b"\x00!!\xff");
        assert_eq!(d.next_frame(), Err(FrameError::BadBase64));
    }

    #[test]
    fn an_endless_frame_is_refused_at_the_limit() {
        let mut d = Decoder::default();
        d.feed(&[0x00]);
        let chunk = vec![b'A'; 1 << 20];
        let mut fed = 0;
        loop {
            d.feed(&chunk);
            fed += chunk.len();
            match d.next_frame() {
                Ok(None) => assert!(fed <= MAX_FRAME, "accepted {fed} bytes"),
                Err(FrameError::TooLong(_)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(fed <= MAX_FRAME + chunk.len());
    }

    #[test]
    fn the_limit_does_not_depend_on_how_the_input_was_split() {
        let mut d = Decoder::default();
        let mut frame = vec![0x00];
        frame.resize(MAX_FRAME + 1, b'A');
        frame.extend_from_slice(b"AAA=\xff");
        d.feed(&frame);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(MAX_FRAME)));
        // Exactly at the limit is accepted.
        let mut d = Decoder::default();
        let mut frame = vec![0x00];
        frame.resize(MAX_FRAME + 1, b'A');
        frame.push(0xFF);
        d.feed(&frame);
        match d.next_frame() {
            Ok(Some(Decoded::Message(data))) => assert_eq!(data.len(), MAX_FRAME / 4 * 3),
            other => panic!("a frame of MAX_FRAME bytes: {other:?}"),
        }
    }

    #[test]
    fn frame_errors_map_to_close_codes() {
        assert_eq!(FrameError::BadType(0x80).close().code, 1002);
        assert_eq!(FrameError::BadBase64.close().code, 1007);
        assert_eq!(FrameError::TooLong(MAX_FRAME).close().code, 1009);
    }

    proptest! {
        #[test]
        fn payloads_round_trip_however_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend(encode(p));
            }
            wire.extend(CLOSE_FRAME);
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                d.feed(&wire[at..at + n]);
                at += n;
                while let Some(frame) = d.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            let mut want: Vec<Decoded> = payloads.into_iter().map(Decoded::Message).collect();
            want.push(Decoded::Close);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn split_at_every_byte(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let wire = encode(&payload);
            for split in 0..=wire.len() {
                let mut d = Decoder::default();
                d.feed(&wire[..split]);
                let first = d.next_frame().unwrap();
                d.feed(&wire[split..]);
                let frame = match first {
                    Some(f) => f,
                    None => d.next_frame().unwrap().unwrap(),
                };
                prop_assert_eq!(frame, Decoded::Message(payload.clone()));
            }
        }
    }
}
