//! Hixie-75 and Hixie-76, the WebSocket drafts of 2010 that websockify 0.4 spoke and no crate
//! implements, behind the same [`ClientRx`]/[`ClientTx`] pair as HyBi so the relay does not
//! know which it carries:
//!
//! - `handshake`: the request checks, the 101, and 76's MD5 challenge over two key numbers
//!   and eight body bytes;
//! - `framing`: `0x00` base64 text `0xFF`; `0xFF 0x00` closes (76).
//!
//! base64 is the only encoding on Hixie: the drafts have text frames only.
//!
//! [`ClientRx`]: crate::session::ClientRx
//! [`ClientTx`]: crate::session::ClientTx

pub mod framing;
pub mod handshake;

pub use framing::{HixieRx, HixieTx};
pub use handshake::{HixieHandshake, accept};

/// Which draft a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    Hixie75,
    Hixie76,
}

impl Draft {
    pub fn name(self) -> &'static str {
        match self {
            Draft::Hixie75 => "hixie-75",
            Draft::Hixie76 => "hixie-76",
        }
    }
}
