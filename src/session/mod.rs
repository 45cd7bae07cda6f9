//! The client side of a session as the relay sees it, whatever protocol carries it: receive a
//! message's bytes, send bytes, ping, close with a code. HyBi/RFC 6455 implements it in
//! [`crate::ws::hybi`]; Hixie plugs in the same way, and the relay never knows which it runs.

pub mod activity;
pub mod record;
pub mod registry;
pub mod relay;
pub mod stop;
pub mod target;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use bytes::Bytes;

/// WebSocket close codes the proxy sends or reports (RFC 6455, section 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Never sent: what a session that ended without a close frame is reported as.
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Sent when an operator ends a session (`DELETE /sessions/{id}`).
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

impl Close {
    pub const fn new(code: u16, reason: &'static str) -> Close {
        Close {
            code,
            reason: Cow::Borrowed(reason),
        }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} \"{}\"", self.code, self.reason)
        }
    }
}

/// What the client sent, as the relay needs it.
#[derive(Debug)]
pub enum Inbound {
    /// A message's payload, or its last piece, decoded (a `base64` session's text already
    /// decoded).
    Data(Bytes),
    /// A piece of a message too large to hold at once; more of it follows.
    Part(Bytes),
    /// The client began the closing handshake, with its close frame if it had a body; the
    /// answer is [`ClientTx::finish`].
    Close(Option<Close>),
}

/// Why receiving from the client failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The client broke the protocol or a limit; the session is closed with this frame.
    #[error("client error: {0}")]
    Protocol(Close),
    /// The connection ended without a closing handshake (reset, EOF, I/O error).
    #[error("client connection lost: {0}")]
    Gone(String),
}

/// Why sending to the client failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is gone (reset, closed, or a message was cut off).
    #[error("sending to client: {0}")]
    Gone(String),
    /// The client is there but does not respond: it took no byte for `--send-timeout`, or
    /// did not answer our last ping.
    #[error("{0}")]
    Unresponsive(String),
}

impl From<std::io::Error> for SendError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::TimedOut => SendError::Unresponsive(e.to_string()),
            _ => SendError::Gone(e.to_string()),
        }
    }
}

/// The receiving half of a client session.
pub trait ClientRx: Send {
    /// The next message, skipping control frames (which the protocol layer answers itself).
    fn recv(&mut self) -> impl Future<Output = Result<Inbound, RecvError>> + Send;
    /// After the closing handshake: reads and drops whatever the client still sends until it
    /// closes its side or `deadline` passes. Closing our socket with the client's bytes unread
    /// would reset the connection, and a reset can destroy the close frame we just sent.
    fn linger(&mut self, deadline: tokio::time::Instant) -> impl Future<Output = ()> + Send;
}

/// What a client session is held to, whatever its protocol.
#[derive(Clone)]
pub struct Bounds {
    /// `--max-message-size` (on Hixie, a frame as sent).
    pub max_message: usize,
    /// `--send-timeout`: how long a write to the client may wait for it to take a byte.
    pub send_timeout: Option<std::time::Duration>,
    /// The session's clock, which the bytes the client takes advance.
    pub activity: std::sync::Arc<activity::Activity>,
}

/// The sending half of a client session: the only writer to the client, so that a message the
/// client does not take holds up nothing but itself. Every write is under `--send-timeout`.
pub trait ClientTx: Send {
    /// Sends one message carrying `data`, encoded as the session's subprotocol requires.
    fn send(&mut self, data: Bytes) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Sends a keep-alive ping (a no-op for protocols that have none); fails if the client
    /// did not answer the previous one, since a client that stops answering is gone whatever
    /// its connection says.
    fn ping(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Completes when the receiving half owes the client an answer (a pong), which
    /// [`ClientTx::answer`] then writes: the receiving half never writes itself, so that
    /// reading the client never waits behind a message the client does not take.
    fn owed(&self) -> impl Future<Output = ()> + Send;
    /// Writes what the receiving half owes the client.
    fn answer(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Begins the closing handshake from our side with `close`.
    fn close(&mut self, close: &Close) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Completes a closing handshake the client began (sends the answer the protocol wants).
    fn finish(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;
}
