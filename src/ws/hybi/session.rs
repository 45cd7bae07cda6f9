//! HyBi framing (RFC 6455, and drafts 7/8 whose frames are the same) as the [`ClientRx`] /
//! [`ClientTx`] pair the relay drives. The handshake was already answered by us.
//!
//! This is the hot path, written for a relay rather than as a general WebSocket library (see
//! `docs/performance.md` for the measurements that led here):
//! - the client's bytes are read into one buffer that exists only while data flows (it is
//!   given back after [`IDLE_RELEASE`] without traffic), each data frame's payload is unmasked
//!   where it lies and handed to the relay as a slice of that buffer, without a copy;
//! - a frame larger than [`PIECE`] is passed on in pieces as it arrives, so a 16 MiB message
//!   needs no 16 MiB buffer and reaches the target while it is still being received;
//! - a message to the client is its header on the stack and the payload as read from the
//!   target, in one vectored write.
//!
//! With permessage-deflate ([`crate::ws::deflate`]), a message to the client is compressed
//! when that pays (RSV1 on its frame), and a compressed message from the client is inflated a
//! piece at a time, each piece handed on as the uncompressed ones are.
//!
//! Pings are answered and the client's close is echoed here, as the RFC requires; protocol
//! errors map to websockify's close codes. The sending half is the only writer: the receiving
//! half records what it owes the client (a pong, the echo of a close) in [`Control`] and
//! wakes the sender, so reading the client never waits behind a message the client does not
//! take. Every write is under `--send-timeout` and tells the session's [`Activity`] of the
//! bytes the client took.
//!
//! [`IDLE_RELEASE`]: crate::edge::stream::IDLE_RELEASE

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::frame::{self, HeaderBytes, HeaderError, OpCode};
use crate::edge::deadline::Deadline;
use crate::edge::stream::{BULK_READ, ClientReader, ClientStream, ClientWriter};
use crate::session::{
    Bounds, ClientRx, ClientTx, Close, Inbound, RecvError, SendError, close_code,
};
use crate::telemetry::metrics::{self, Direction};
use crate::ws::Subprotocol;
use crate::ws::deflate::{Deflate, Deflater, InflateError, Inflater};

/// The largest message a client may send unless `--max-message-size` says otherwise.
/// websockify has no limit; 64 MiB bounds what one `base64` session can make us hold (binary
/// messages are passed on in pieces) while staying far above any VNC update.
pub const MAX_MESSAGE_SIZE: usize = crate::config::limits::DEFAULT_MAX_MESSAGE_SIZE as usize;

/// A data frame's payload is passed on whole when it is at most this large, else in pieces of
/// about this size as they arrive.
pub const PIECE: usize = 256 * 1024;

/// Takes over an upgraded connection; `rest` holds the bytes the client sent after its head,
/// `deflate` the compression state when permessage-deflate was negotiated. A message
/// announced larger than `max_message` is answered with 1009 from its frame header, before any
/// of its payload is read (and a compressed one as soon as its inflated bytes exceed it).
pub fn session(
    stream: ClientStream,
    rest: BytesMut,
    protocol: Option<Subprotocol>,
    bounds: &Bounds,
    deflate: Option<Deflate>,
) -> (HybiRx, HybiTx) {
    let (replay, reader, writer) = stream.into_split();
    let mut buf = BytesMut::new();
    if !replay.is_empty() || !rest.is_empty() {
        buf.extend_from_slice(&rest);
        buf.extend_from_slice(&replay);
    }
    let control = Arc::new(Control::default());
    let writer = Writer {
        io: Deadline::new(writer, bounds.send_timeout).watched(bounds.activity.clone()),
        closed: false,
        partial: false,
    };
    let encoding = protocol.unwrap_or(Subprotocol::Binary);
    let (deflater, inflater) = match deflate {
        Some(d) => (Some(d.deflater), Some(d.inflater)),
        None => (None, None),
    };
    let rx = HybiRx {
        reader,
        buf,
        encoding,
        frame: None,
        message: None,
        max_message: bounds.max_message as u64,
        control: control.clone(),
        inflater,
    };
    let tx = HybiTx {
        writer,
        encoding,
        control,
        ping_unanswered: false,
        deflater,
    };
    (rx, tx)
}

/// What the receiving half owes the client, and what it saw of our pings: shared with the
/// sending half, which alone writes. Never held across an await.
#[derive(Debug, Default)]
struct Control {
    owed: Mutex<Owed>,
    /// Wakes the sender when something is owed.
    wake: Notify,
}

/// The most pongs owed at once: a client that pings faster than it reads has the oldest
/// dropped (RFC 6455 5.5.3 asks a pong for the latest ping only), so its pings cost at most
/// this many 125-byte payloads.
const MAX_OWED_PONGS: usize = 16;

#[derive(Debug, Default)]
struct Owed {
    /// The payloads of the client's pings not answered yet, oldest first.
    pongs: std::collections::VecDeque<Bytes>,
    /// The echo owed to the client's close frame, sent by [`ClientTx::finish`].
    reply: Option<Option<Close>>,
    /// A pong came since our last ping.
    pong_seen: bool,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Owed> {
        // Every update is a single step: a poisoned lock is consistent.
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection's writing side, owned by the sending half.
struct Writer {
    io: Deadline<ClientWriter>,
    /// Our close frame (or the echo of the client's) was sent: nothing may follow it.
    closed: bool,
    /// A frame is on its way out, or was cut off when its write was given up (a clock of the
    /// session ran out while the client took nothing): no other frame may follow its start.
    partial: bool,
}

impl Writer {
    /// One frame: header and payload in one vectored write, then a flush (which only TLS
    /// needs). The payload is never copied (over HTTP/2 h2 is handed a slice of it).
    fn frame(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
    ) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.frame_rsv1(opcode, payload, false)
    }

    /// The same, with RSV1 set when `compressed` (a permessage-deflate message).
    ///
    /// Not an `async fn`, which would keep `payload` twice (the argument, and the local it
    /// is moved into) in every session's future: the block writes from the one it captured.
    fn frame_rsv1(
        &mut self,
        opcode: OpCode,
        mut payload: Bytes,
        compressed: bool,
    ) -> impl Future<Output = io::Result<()>> + Send + '_ {
        let header = HeaderBytes::with_rsv1(opcode, payload.len(), compressed);
        async move {
            if self.partial {
                return Err(io::Error::other(
                    "a message to the client was cut off: nothing can follow it",
                ));
            }
            self.partial = true;
            let mut head = header.as_slice();
            while !head.is_empty() || !payload.is_empty() {
                let io = &mut self.io;
                let n = std::future::poll_fn(|cx| {
                    io.poll_write_with(cx, |w, cx| w.poll_write_parts(cx, head, &payload))
                })
                .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                let from_head = n.min(head.len());
                head = &head[from_head..];
                payload.advance(n - from_head);
            }
            self.io.flush().await?;
            self.partial = false;
            Ok(())
        }
    }

    async fn close(&mut self, close: Option<&Close>) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut payload = Vec::new();
        if let Some(close) = close {
            payload.extend_from_slice(&close.code.to_be_bytes());
            payload.extend_from_slice(close.reason.as_bytes());
            payload.truncate(frame::MAX_CONTROL_PAYLOAD);
        }
        self.frame(OpCode::Close, payload.into()).await
    }
}

/// The data frame whose payload is being received.
#[derive(Debug)]
struct InFrame {
    mask: [u8; 4],
    /// Payload bytes not yet passed on.
    remaining: u64,
    /// Payload bytes already passed on (where the mask continues).
    offset: usize,
    /// The last frame of its message.
    fin: bool,
}

/// The message being received, from its first frame to the one with FIN (and, compressed,
/// until its last byte is inflated).
#[derive(Debug, Default)]
struct InMessage {
    len: u64,
    /// Its first frame had RSV1: its payload is deflated.
    compressed: bool,
    /// `base64` sessions: the text so far, decoded when the message is whole.
    text: BytesMut,
}

/// Receiving half of a HyBi session.
pub struct HybiRx {
    reader: ClientReader,
    /// Bytes read and not yet consumed: never more than a frame header and [`PIECE`] bytes.
    buf: BytesMut,
    encoding: Subprotocol,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    /// `--max-message-size`.
    max_message: u64,
    control: Arc<Control>,
    /// With permessage-deflate: inflates compressed messages (boxed: a session without it
    /// pays a pointer).
    inflater: Option<Box<Inflater>>,
}

/// Sending half of a HyBi session.
pub struct HybiTx {
    writer: Writer,
    encoding: Subprotocol,
    control: Arc<Control>,
    /// Our last ping has had no pong yet.
    ping_unanswered: bool,
    /// With permessage-deflate: compresses the messages that pay.
    deflater: Option<Box<Deflater>>,
}

fn protocol_error(code: u16, reason: &'static str) -> RecvError {
    RecvError::Protocol(Close::new(code, reason))
}

fn frame_error(e: HeaderError) -> RecvError {
    RecvError::Protocol(Close {
        code: close_code::PROTOCOL_ERROR,
        reason: format!("Protocol error: {e}").into(),
    })
}

fn too_big() -> RecvError {
    protocol_error(close_code::MESSAGE_TOO_BIG, "Message too big")
}

/// What handling a frame header came to.
enum Step {
    /// The buffer holds too little: read more.
    NeedMore,
    /// Something was consumed: look at the buffer again.
    Again,
    /// The relay gets this.
    Deliver(Inbound),
}

/// What a data frame's payload (or a piece of it) amounts to for the relay.
enum Payload {
    /// Bytes to pass on; `last` when the message ends with them.
    Bytes(Bytes, bool),
    /// Nothing yet (an empty frame, or `base64` text still incomplete).
    Nothing,
}

impl HybiRx {
    /// Passes on the payload of the current data frame that is in the buffer, when it is the
    /// rest of the frame or at least a [`PIECE`].
    fn take_payload(&mut self) -> Result<Option<Payload>, RecvError> {
        let Some(f) = &mut self.frame else {
            return Ok(None);
        };
        let available = (self.buf.len() as u64).min(f.remaining) as usize;
        if (available as u64) < f.remaining && available < PIECE {
            return Ok(None);
        }
        let mut piece = self.buf.split_to(available);
        frame::apply_mask(&mut piece, f.mask, f.offset);
        f.offset += available;
        f.remaining -= available as u64;
        let last = f.remaining == 0 && f.fin;
        if f.remaining == 0 {
            self.frame = None;
        }
        if let Some(inflater) = &mut self.inflater {
            let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
            let compression = &metrics::get().compression;
            if compressed {
                compression.message(Direction::FromClient, 0, piece.len());
                inflater.push(&piece, last);
                return self.inflated().map(Some);
            }
            compression.message(Direction::FromClient, piece.len(), piece.len());
        }
        self.deliver(piece, last).map(Some)
    }

    /// Inflates what the current compressed message has pushed, up to a [`PIECE`] at a time
    /// and within `--max-message-size`.
    fn inflated(&mut self) -> Result<Payload, RecvError> {
        let Some(inflater) = &mut self.inflater else {
            return Ok(Payload::Nothing);
        };
        let inflated = inflater
            .inflate(PIECE, self.max_message)
            .map_err(|e| match e {
                InflateError::TooBig => too_big(),
                InflateError::Invalid(_) => {
                    protocol_error(close_code::INVALID_PAYLOAD, "Invalid compressed payload")
                }
            })?;
        metrics::get()
            .compression
            .message(Direction::FromClient, inflated.data.len(), 0);
        if self.encoding == Subprotocol::Binary {
            // Handed on as inflated, without a copy.
            if inflated.last {
                self.message = None;
            }
            return Ok(match inflated.data.is_empty() {
                true => Payload::Nothing,
                false => Payload::Bytes(inflated.data.into(), inflated.last),
            });
        }
        self.deliver(BytesMut::from(&inflated.data[..]), inflated.last)
    }

    /// What a message's (uncompressed) bytes amount to for the relay; `last` when the message
    /// ends with them.
    fn deliver(&mut self, piece: BytesMut, last: bool) -> Result<Payload, RecvError> {
        let message = self.message.get_or_insert_with(InMessage::default);
        let payload = match self.encoding {
            Subprotocol::Binary if piece.is_empty() => Payload::Nothing,
            Subprotocol::Binary => Payload::Bytes(piece.freeze(), last),
            Subprotocol::Base64 => {
                message.text.unsplit(piece);
                if last {
                    let decoded =
                        base64_simd::STANDARD
                            .decode_to_vec(&message.text)
                            .map_err(|_| {
                                protocol_error(
                                    close_code::INVALID_PAYLOAD,
                                    "Invalid base64 payload",
                                )
                            })?;
                    Payload::Bytes(decoded.into(), true)
                } else {
                    Payload::Nothing
                }
            }
        };
        if last {
            self.message = None;
        }
        Ok(payload)
    }

    /// Handles the next frame header in the buffer: a data frame becomes the current frame,
    /// a whole control frame is answered.
    fn next_header(&mut self) -> Result<Step, RecvError> {
        let Some(h) = frame::parse_header(&self.buf).map_err(frame_error)? else {
            return Ok(Step::NeedMore);
        };
        let Some(mask) = h.mask else {
            return Err(protocol_error(
                close_code::PROTOCOL_ERROR,
                "Protocol error: unmasked frame",
            ));
        };
        // RSV1 marks a compressed message, on its first frame only (RFC 7692 6.1).
        if h.rsv1
            && (self.inflater.is_none()
                || h.opcode.is_control()
                || h.opcode == OpCode::Continuation)
        {
            return Err(frame_error(HeaderError::ReservedBits));
        }
        if h.opcode.is_control() {
            // At most 125 bytes (checked by the parser): wait for all of it.
            let total = h.len + h.payload_len as usize;
            if self.buf.len() < total {
                return Ok(Step::NeedMore);
            }
            self.buf.advance(h.len);
            let mut payload = self.buf.split_to(h.payload_len as usize);
            frame::apply_mask(&mut payload, mask, 0);
            return self.control(h.opcode, &payload);
        }
        match (h.opcode, &self.message) {
            (OpCode::Continuation, None) => {
                return Err(protocol_error(
                    close_code::PROTOCOL_ERROR,
                    "Protocol error: continuation frame without a message",
                ));
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(protocol_error(
                    close_code::PROTOCOL_ERROR,
                    "Protocol error: new message inside a fragmented one",
                ));
            }
            (OpCode::Text, None) if self.encoding == Subprotocol::Binary => {
                return Err(protocol_error(
                    close_code::UNSUPPORTED_DATA,
                    "Unsupported: Text frames are not supported",
                ));
            }
            _ => {}
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.len);
        let len = so_far.saturating_add(h.payload_len);
        if len > self.max_message {
            return Err(too_big());
        }
        let message = self.message.get_or_insert_with(InMessage::default);
        message.len = len;
        if h.opcode != OpCode::Continuation {
            message.compressed = h.rsv1;
        }
        self.buf.advance(h.len);
        self.frame = Some(InFrame {
            mask,
            remaining: h.payload_len,
            offset: 0,
            fin: h.fin,
        });
        Ok(Step::Again)
    }

    /// Takes in a control frame: a ping is owed its pong (the sender writes it), a pong
    /// proves the client alive, a close ends receiving.
    fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<Step, RecvError> {
        match opcode {
            OpCode::Ping => {
                let mut owed = self.control.lock();
                if owed.pongs.len() == MAX_OWED_PONGS {
                    owed.pongs.pop_front();
                }
                owed.pongs.push_back(Bytes::copy_from_slice(payload));
                drop(owed);
                self.control.wake.notify_one();
                Ok(Step::Again)
            }
            OpCode::Pong => {
                self.control.lock().pong_seen = true;
                Ok(Step::Again)
            }
            OpCode::Close => {
                let close = parse_close(payload)?;
                self.control.lock().reply = Some(close.clone());
                Ok(Step::Deliver(Inbound::Close(close)))
            }
            // Data opcodes never reach here.
            _ => Ok(Step::Again),
        }
    }
}

/// A close frame's body: empty, or a code websockify accepts and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<Close>, RecvError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
        [_] => {
            return Err(protocol_error(
                close_code::PROTOCOL_ERROR,
                "Protocol error: close frame of one byte",
            ));
        }
    };
    // RFC 6455 7.4: the codes an endpoint may send.
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(protocol_error(
            close_code::PROTOCOL_ERROR,
            "Protocol error: invalid close code",
        ));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| {
        protocol_error(close_code::INVALID_PAYLOAD, "Invalid UTF-8 in close reason")
    })?;
    Ok(Some(Close {
        code,
        reason: reason.to_string().into(),
    }))
}

impl ClientRx for HybiRx {
    async fn linger(&mut self, deadline: tokio::time::Instant) {
        self.buf = BytesMut::new();
        let drain = async {
            let mut scratch = BytesMut::new();
            loop {
                scratch.clear();
                match self.reader.read_lazily(&mut scratch, 4096).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, drain).await;
    }

    async fn recv(&mut self) -> Result<Inbound, RecvError> {
        loop {
            // A compressed message's inflated bytes not taken yet come before more input.
            if self.inflater.as_ref().is_some_and(|i| i.has_pending()) {
                match self.inflated()? {
                    Payload::Bytes(data, true) => return Ok(Inbound::Data(data)),
                    Payload::Bytes(data, false) => return Ok(Inbound::Part(data)),
                    Payload::Nothing => continue,
                }
            }
            if self.frame.is_some() {
                match self.take_payload()? {
                    Some(Payload::Bytes(data, true)) => return Ok(Inbound::Data(data)),
                    Some(Payload::Bytes(data, false)) => return Ok(Inbound::Part(data)),
                    Some(Payload::Nothing) => continue,
                    None => {}
                }
            } else {
                match self.next_header()? {
                    Step::Deliver(inbound) => return Ok(inbound),
                    Step::Again => continue,
                    Step::NeedMore => {}
                }
            }
            match self.reader.read_lazily(&mut self.buf, BULK_READ).await {
                Ok(0) => {
                    return Err(RecvError::Gone(
                        "connection closed without a close frame".to_string(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(RecvError::Gone(e.to_string())),
            }
        }
    }
}

impl HybiTx {
    /// The pongs owed to the client's pings, in order.
    async fn answer_owed(&mut self) -> io::Result<()> {
        loop {
            let pong = self.control.lock().pongs.pop_front();
            match pong {
                Some(payload) if !self.writer.closed => {
                    self.writer.frame(OpCode::Pong, payload).await?
                }
                _ => return Ok(()),
            }
        }
    }
}

impl ClientTx for HybiTx {
    /// The message is made (encoded, compressed) before the future that writes it, which
    /// then holds only what it writes: every session's future has room for this one.
    fn send(&mut self, data: Bytes) -> impl Future<Output = Result<(), SendError>> + Send {
        let (opcode, payload) = match self.encoding {
            Subprotocol::Binary => (OpCode::Binary, data),
            Subprotocol::Base64 => {
                let text = base64_simd::STANDARD.encode_to_string(&data);
                (OpCode::Text, Bytes::from(text))
            }
        };
        let (wire, compressed) = match self.deflater.as_mut() {
            None => (payload, false),
            Some(deflater) => {
                let size = payload.len();
                let (wire, compressed) = match deflater.compress(&payload) {
                    Some(smaller) => (Bytes::from(smaller), true),
                    None => (payload, false),
                };
                metrics::get()
                    .compression
                    .message(Direction::ToClient, size, wire.len());
                (wire, compressed)
            }
        };
        // A ping that came meanwhile is answered right after the message, by the relay
        // (`owed`, which it looks at before reading the target again).
        let write = self.writer.frame_rsv1(opcode, wire, compressed);
        async move { Ok(write.await?) }
    }

    async fn ping(&mut self) -> Result<(), SendError> {
        if self.writer.closed {
            return Ok(());
        }
        let seen = std::mem::take(&mut self.control.lock().pong_seen);
        if self.ping_unanswered && !seen {
            return Err(SendError::Unresponsive(
                "the client did not answer our last ping (--heartbeat)".to_string(),
            ));
        }
        self.writer.frame(OpCode::Ping, Bytes::new()).await?;
        self.ping_unanswered = true;
        Ok(())
    }

    async fn close(&mut self, close: &Close) -> Result<(), SendError> {
        Ok(self.writer.close(Some(close)).await?)
    }

    async fn finish(&mut self) -> Result<(), SendError> {
        // The echo of the client's close frame (RFC 6455 5.5.1), then our side of the stream.
        let echo = self.control.lock().reply.take().flatten();
        self.writer.close(echo.as_ref()).await?;
        Ok(self.writer.io.shutdown().await?)
    }

    fn owed(&self) -> impl std::future::Future<Output = ()> + Send {
        let control = &self.control;
        async move { control.wake.notified().await }
    }

    async fn answer(&mut self) -> Result<(), SendError> {
        Ok(self.answer_owed().await?)
    }
}
