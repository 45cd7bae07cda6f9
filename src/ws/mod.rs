//! WebSocket: deciding whether a request is an upgrade and which protocol version it speaks,
//! the handshake per version, and the framing per version behind [`crate::session`].
//!
//! - `handshake`: HyBi (RFC 6455 version 13, drafts 7 and 8) request checks and the 101.
//! - `hybi`: HyBi framing through tokio-tungstenite, as a [`crate::session`] pair.
//! - `hixie`: Hixie-75 and Hixie-76, handshake and framing, written here.

pub mod handshake;
pub mod hixie;
pub mod hybi;

use http::{Request, StatusCode};

pub use handshake::HybiHandshake;
pub use hixie::HixieHandshake;

/// The subprotocols websockify speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// Binary frames carry the bytes as they are.
    Binary,
    /// Text frames carry the bytes in base64, both ways (old noVNC, websock.js).
    Base64,
}

impl Subprotocol {
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::Binary => "binary",
            Subprotocol::Base64 => "base64",
        }
    }
}

/// A request refused before the upgrade, with the status and one-line reason to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    pub fn new(status: StatusCode, reason: &str) -> Rejection {
        Rejection {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(reason: &str) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Rejection {
        self.headers.push((name, value.to_string()));
        self
    }

    /// The HTTP answer.
    pub fn response(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::http::response(self.status, &headers, &self.reason)
    }
}

/// What a request head asks for.
#[derive(Debug)]
pub enum Decision {
    /// A HyBi / RFC 6455 upgrade that we accept.
    Hybi(HybiHandshake),
    /// A Hixie-75 or Hixie-76 upgrade that we accept.
    Hixie(HixieHandshake),
    /// A WebSocket upgrade that we refuse.
    Refuse(Rejection),
    /// Plain HTTP, no upgrade.
    Http,
}

/// Classifies a request: any of `Upgrade` or a `Sec-WebSocket-*` handshake header makes it a
/// WebSocket attempt, which is then accepted or refused with the reason; anything else is
/// plain HTTP.
///
/// The version decides the protocol: HyBi clients send `Sec-WebSocket-Version` (and a
/// `Sec-WebSocket-Key`); a request with neither, or with Hixie-76's `Key1`/`Key2`, is Hixie.
pub fn decide(req: &Request<()>) -> Decision {
    let h = req.headers();
    let attempt = [
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-key1",
        "sec-websocket-key2",
    ]
    .iter()
    .any(|name| h.contains_key(*name));
    if !attempt {
        return Decision::Http;
    }
    let hybi = h.contains_key("sec-websocket-version") || h.contains_key("sec-websocket-key");
    let hixie76 = h.contains_key("sec-websocket-key1") || h.contains_key("sec-websocket-key2");
    let result = if hybi && !hixie76 {
        HybiHandshake::from_request(req).map(Decision::Hybi)
    } else {
        HixieHandshake::from_request(req).map(Decision::Hixie)
    };
    result.unwrap_or_else(Decision::Refuse)
}
