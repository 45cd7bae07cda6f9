//! HyBi framing (RFC 6455, and drafts 7/8 whose frames are the same) through tokio-tungstenite,
//! split into the [`ClientRx`]/[`ClientTx`] halves the relay drives. The handshake was already
//! answered by us; tungstenite takes over the socket with the bytes read past the head.
//!
//! tungstenite answers pings and echoes a client's close frame by itself; here we map its
//! messages and errors to the session's terms and its close codes to websockify's.

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Subprotocol;
use crate::session::{ClientRx, ClientTx, Close, Inbound, RecvError, SendError, close_code};
use crate::stream::ClientStream;

/// The largest message a client may send. websockify has no limit; tungstenite's default of
/// 64 MiB bounds what one session can make us hold while staying far above any VNC update.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// tungstenite's read chunk. Its default (128 KiB, allocated eagerly) costs too much per idle
/// session; 16 KiB keeps big messages fast (they are read in chunks) and idle sessions small.
const READ_BUFFER_SIZE: usize = 16 * 1024;

/// Outgoing frames are buffered up to this size before a write; every send is flushed anyway,
/// so this only bounds the copy tungstenite makes of each frame.
const WRITE_BUFFER_SIZE: usize = 16 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(WRITE_BUFFER_SIZE)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        // A single frame may be as large as a whole message: some clients never fragment.
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

/// Takes over an upgraded connection; `rest` holds the bytes the client sent after its head.
pub async fn session(
    stream: ClientStream,
    rest: BytesMut,
    protocol: Option<Subprotocol>,
) -> (HybiRx, HybiTx) {
    let ws =
        WebSocketStream::from_partially_read(stream, rest.to_vec(), Role::Server, Some(config()))
            .await;
    let (sink, stream) = ws.split();
    let encoding = protocol.unwrap_or(Subprotocol::Binary);
    (HybiRx { stream, encoding }, HybiTx { sink, encoding })
}

/// Receiving half of a HyBi session.
pub struct HybiRx {
    stream: SplitStream<WebSocketStream<ClientStream>>,
    encoding: Subprotocol,
}

/// Sending half of a HyBi session.
pub struct HybiTx {
    sink: SplitSink<WebSocketStream<ClientStream>, Message>,
    encoding: Subprotocol,
}

fn protocol_error(code: u16, reason: &'static str) -> RecvError {
    RecvError::Protocol(Close::new(code, reason))
}

/// Maps tungstenite's errors to the close code websockify sends for each.
fn recv_error(e: WsError) -> RecvError {
    match e {
        WsError::Protocol(ProtocolError::UnmaskedFrameFromClient) => {
            protocol_error(close_code::PROTOCOL_ERROR, "Protocol error: unmasked frame")
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            RecvError::Gone("connection closed without a close frame".to_string())
        }
        WsError::Protocol(p) => RecvError::Protocol(Close {
            code: close_code::PROTOCOL_ERROR,
            reason: format!("Protocol error: {p}").into(),
        }),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            protocol_error(close_code::MESSAGE_TOO_BIG, "Message too big")
        }
        WsError::Capacity(_) => protocol_error(close_code::MESSAGE_TOO_BIG, "Frame too big"),
        WsError::Utf8(_) => {
            protocol_error(close_code::INVALID_PAYLOAD, "Invalid UTF-8 in text frame")
        }
        WsError::Io(e) => RecvError::Gone(e.to_string()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            RecvError::Gone("connection closed".to_string())
        }
        other => RecvError::Protocol(Close {
            code: close_code::INTERNAL_ERROR,
            reason: format!("{other}").into(),
        }),
    }
}

impl ClientRx for HybiRx {
    async fn recv(&mut self) -> Result<Inbound, RecvError> {
        loop {
            let message = match self.stream.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(recv_error(e)),
                None => return Err(RecvError::Gone("connection closed".to_string())),
            };
            return match (message, self.encoding) {
                (Message::Binary(data), Subprotocol::Binary) => Ok(Inbound::Data(data)),
                (Message::Text(_), Subprotocol::Binary) => Err(protocol_error(
                    close_code::UNSUPPORTED_DATA,
                    "Unsupported: Text frames are not supported",
                )),
                // websockify 0.6 decoded every data frame of a base64 session.
                (Message::Text(text), Subprotocol::Base64) => decode_base64(text.as_bytes()),
                (Message::Binary(data), Subprotocol::Base64) => decode_base64(&data),
                (Message::Close(frame), _) => Ok(Inbound::Close(frame.map(|f| Close {
                    code: f.code.into(),
                    reason: f.reason.as_str().to_string().into(),
                }))),
                // Pings are answered by tungstenite; pongs only prove liveness.
                (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => continue,
            };
        }
    }
}

fn decode_base64(text: &[u8]) -> Result<Inbound, RecvError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|raw| Inbound::Data(raw.into()))
        .map_err(|_| protocol_error(close_code::INVALID_PAYLOAD, "Invalid base64 payload"))
}

fn send_error(e: WsError) -> SendError {
    SendError(e.to_string())
}

impl ClientTx for HybiTx {
    async fn send(&mut self, data: Bytes) -> Result<(), SendError> {
        let message = match self.encoding {
            Subprotocol::Binary => Message::Binary(data),
            Subprotocol::Base64 => Message::Text(
                base64::engine::general_purpose::STANDARD
                    .encode(&data)
                    .into(),
            ),
        };
        self.sink.send(message).await.map_err(send_error)
    }

    async fn ping(&mut self) -> Result<(), SendError> {
        self.sink
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(send_error)
    }

    async fn close(&mut self, close: &Close) -> Result<(), SendError> {
        let frame = CloseFrame {
            code: close.code.into(),
            reason: close.reason.as_ref().into(),
        };
        match self.sink.send(Message::Close(Some(frame))).await {
            // The client closed first in the meantime: our close is its echo.
            Ok(()) | Err(WsError::Protocol(ProtocolError::SendAfterClosing)) => {
                self.sink.flush().await.map_err(send_error)
            }
            Err(e) => Err(send_error(e)),
        }
    }

    async fn finish(&mut self) -> Result<(), SendError> {
        // tungstenite queued the echo of the client's close frame; closing the sink sends it.
        self.sink.close().await.map_err(send_error)
    }
}
