//! WebSocket: deciding whether a request is an upgrade and which protocol version it speaks,
//! the handshake per version, and the framing per version behind [`crate::session`].
//!
//! - `hybi`: RFC 6455 (version 13) and drafts 7 and 8: `hybi::handshake` (request checks
//!   and the 101), `hybi::frame` (headers and masking), and the framing on the relay's hot
//!   path as a [`crate::session`] pair.
//! - `deflate`: permessage-deflate (RFC 7692) for HyBi sessions: the negotiation, and where
//!   compressor and inflater state lives.
//! - `hixie`: Hixie-75 and Hixie-76: `hixie::handshake` and `hixie::framing`, written here.

pub mod deflate;
pub mod hixie;
pub mod hybi;

use http::header::AsHeaderName;
use http::{HeaderMap, Request};

pub use crate::edge::http::Refusal;

pub use hixie::HixieHandshake;
pub use hybi::HybiHandshake;

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

/// What a request head asks for.
#[derive(Debug)]
pub enum Decision {
    /// A HyBi / RFC 6455 upgrade that we accept.
    Hybi(HybiHandshake),
    /// A Hixie-75 or Hixie-76 upgrade that we accept.
    Hixie(HixieHandshake),
    /// A WebSocket upgrade that we refuse.
    Refuse(Refusal),
    /// Plain HTTP, no upgrade.
    Http,
}

/// What a request on an HTTP/2 stream asks for.
#[derive(Debug)]
pub enum StreamDecision {
    /// An extended CONNECT for a WebSocket (RFC 8441) that we accept.
    Connect(hybi::ConnectHandshake),
    /// A CONNECT that we refuse: another protocol, or a bad WebSocket header.
    Refuse(Refusal),
    /// Anything else: a request for the web directory.
    Http,
}

/// Classifies a request of an HTTP/2 stream, whose extended CONNECT's `:protocol` is
/// `protocol`. A plain CONNECT (a TCP tunnel) and other protocols are refused: only
/// WebSockets go through this port.
pub fn decide_stream(req: &Request<()>, protocol: Option<&str>) -> StreamDecision {
    if req.method() != http::Method::CONNECT {
        return StreamDecision::Http;
    }
    match protocol {
        Some(p) if p.eq_ignore_ascii_case("websocket") => {
            match hybi::ConnectHandshake::from_request(req) {
                Ok(hs) => StreamDecision::Connect(hs),
                Err(refusal) => StreamDecision::Refuse(refusal),
            }
        }
        Some(p) => StreamDecision::Refuse(Refusal::bad_request(format!(
            "extended CONNECT for `{p}`: this server speaks websocket only"
        ))),
        None => StreamDecision::Refuse(
            Refusal::new(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT tunnels are not served here: WebSockets only (RFC 8441)",
            )
            .with_header("allow", "GET, HEAD"),
        ),
    }
}

/// Classifies a request: any of `Upgrade` or a `Sec-WebSocket-*` handshake header makes it a
/// WebSocket attempt, which is then accepted or refused with the reason; anything else is
/// plain HTTP.
///
/// The version decides the protocol: HyBi clients send `Sec-WebSocket-Version` and a
/// `Sec-WebSocket-Key`, so a request with either is HyBi (without the version it gets 426 with
/// the list, which is what a HyBi client can act on). A request with neither is Hixie: 76 when
/// it has `Key1`/`Key2`, else 75; the drafts never sent the HyBi headers.
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
    let result = if hybi {
        HybiHandshake::from_request(req).map(Decision::Hybi)
    } else {
        HixieHandshake::from_request(req).map(Decision::Hixie)
    };
    result.unwrap_or_else(Decision::Refuse)
}

// Names are taken as `http`'s constants where there are some: a `&str` is parsed into a
// header name on every lookup (callgrind: a tenth of a handshake's instructions).
pub(crate) fn header_str(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a comma-separated header (possibly repeated) holds `token`, ignoring case.
pub fn has_token(headers: &HeaderMap, name: impl AsHeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hixie::Draft;

    fn decide_with(headers: &[(&str, &str)]) -> Decision {
        let mut b = Request::builder().method("GET").uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        decide(&b.body(()).unwrap())
    }

    const KEY1: &str = "18x 6]8vM;54 *(5:  {   U1]8  z [  8";
    const KEY2: &str = "1_ tx7X d  <  nw  334J702) 7]o}` 0";
    const UPGRADE: [(&str, &str); 3] = [
        ("Upgrade", "WebSocket"),
        ("Connection", "Upgrade"),
        ("Host", "h"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = UPGRADE.to_vec();
        h.extend_from_slice(extra);
        h
    }

    fn hixie_draft(d: Decision) -> Option<Draft> {
        match d {
            Decision::Hixie(hs) => Some(hs.draft()),
            _ => None,
        }
    }

    fn refused_with(d: Decision) -> Option<u16> {
        match d {
            Decision::Refuse(r) => Some(r.status.as_u16()),
            _ => None,
        }
    }

    #[test]
    fn which_protocol() {
        assert!(matches!(decide_with(&[("Host", "h")]), Decision::Http));
        // Any case of `websocket`, no HyBi headers: the drafts.
        for upgrade in ["WebSocket", "websocket", "WEBSOCKET"] {
            let mut h = with(&[]);
            h[0].1 = upgrade;
            assert_eq!(
                hixie_draft(decide_with(&h)),
                Some(Draft::Hixie75),
                "{upgrade}"
            );
        }
        assert_eq!(
            hixie_draft(decide_with(&with(&[
                ("Sec-WebSocket-Key1", KEY1),
                ("Sec-WebSocket-Key2", KEY2)
            ]))),
            Some(Draft::Hixie76)
        );
        let hybi = with(&[
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(matches!(decide_with(&hybi), Decision::Hybi(_)));
        // A HyBi key without the version is a HyBi client that gets the list of versions.
        assert_eq!(
            refused_with(decide_with(&with(&[(
                "Sec-WebSocket-Key",
                "dGhlIHNhbXBsZSBub25jZQ=="
            )]))),
            Some(426)
        );
        // The version makes it HyBi even with the draft's keys (then without a HyBi key: 400).
        assert_eq!(
            refused_with(decide_with(&with(&[
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key1", KEY1),
                ("Sec-WebSocket-Key2", KEY2)
            ]))),
            Some(400)
        );
        // Draft keys without an upgrade are a broken attempt, not plain HTTP.
        assert_eq!(
            refused_with(decide_with(&[("Host", "h"), ("Sec-WebSocket-Key1", KEY1)])),
            Some(400)
        );
    }
}
