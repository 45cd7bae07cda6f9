//! HyBi: RFC 6455 (version 13) and the drafts 7 and 8, whose framing is the same.
//!
//! - `handshake`: the request checks, the subprotocol, the 101.
//! - `frame`: frame headers and masking.
//! - `session`: the framing on the relay's hot path, as a [`crate::session`] pair.

pub mod frame;
pub mod handshake;
pub(crate) mod session;

pub use handshake::{ConnectHandshake, HybiHandshake};
pub use session::{HybiRx, HybiTx, MAX_MESSAGE_SIZE, session};
