//! The HyBi handshake (RFC 6455 version 13, and the HyBi-07/08 drafts whose framing is the
//! same): validate the upgrade request, negotiate the subprotocol, write the 101.

use base64::Engine;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, Request, StatusCode, Version};

use crate::ws::deflate::{self, Agreed, Policy};
use crate::ws::{Refusal, Subprotocol, has_token, header_str};

/// The versions we speak, as a 426 answer lists them.
pub const SUPPORTED_VERSIONS: &str = "13, 8, 7";

/// An accepted HyBi upgrade, ready to be answered with 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybiHandshake {
    /// `Sec-WebSocket-Version`: 13, 8 or 7.
    pub version: u8,
    /// `Sec-WebSocket-Accept`, derived from the client's key.
    pub accept: String,
    /// The chosen subprotocol, `None` when the client offered none (then frames are binary).
    pub protocol: Option<Subprotocol>,
    /// permessage-deflate's parameters when it is agreed (see [`compression`]).
    pub deflate: Option<Agreed>,
}

impl HybiHandshake {
    /// Checks an upgrade request as RFC 6455 section 4.2.1 requires.
    pub fn from_request(req: &Request<()>) -> Result<HybiHandshake, Refusal> {
        let headers = req.headers();
        if req.method() != Method::GET {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade must use GET",
            )
            .with_header("Allow", "GET"));
        }
        if req.version() < Version::HTTP_11 {
            return Err(Refusal::bad_request("a WebSocket upgrade needs HTTP/1.1"));
        }
        if !has_token(headers, UPGRADE, "websocket") {
            return Err(Refusal::bad_request(
                "missing or bad Upgrade header: expected `Upgrade: websocket`",
            ));
        }
        if !has_token(headers, CONNECTION, "upgrade") {
            return Err(Refusal::bad_request(
                "missing or bad Connection header: expected `Connection: Upgrade`",
            ));
        }
        let version = match header_str(headers, SEC_WEBSOCKET_VERSION).map(str::trim) {
            Some("13") => 13,
            Some("8") => 8,
            Some("7") => 7,
            other => {
                let why = match other {
                    Some(v) => format!("unsupported Sec-WebSocket-Version `{v}`"),
                    None => "no Sec-WebSocket-Version".to_string(),
                };
                return Err(Refusal::new(
                    StatusCode::UPGRADE_REQUIRED,
                    format!("{why}: this server speaks {SUPPORTED_VERSIONS}"),
                )
                .with_header("Sec-WebSocket-Version", SUPPORTED_VERSIONS));
            }
        };
        // Two keys are two answers to choose from: refused rather than one taken at random.
        if headers.get_all(SEC_WEBSOCKET_KEY).iter().count() > 1 {
            return Err(Refusal::bad_request(
                "more than one Sec-WebSocket-Key: expected exactly one",
            ));
        }
        let key = header_str(headers, SEC_WEBSOCKET_KEY).map(str::trim);
        let key_ok = key.is_some_and(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|raw| raw.len() == 16)
        });
        let Some(key) = key.filter(|_| key_ok) else {
            return Err(Refusal::bad_request(
                "missing or bad Sec-WebSocket-Key: expected 16 bytes in base64",
            ));
        };
        let protocol = negotiate(headers)?;
        Ok(HybiHandshake {
            version,
            accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
            protocol,
            deflate: None,
        })
    }

    /// The 101 answer.
    pub fn response(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(p) = self.protocol {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", p.name()));
        }
        if let Some(agreed) = &self.deflate {
            out.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                agreed.header_value()
            ));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// An accepted WebSocket over HTTP/2 (RFC 8441): an extended CONNECT whose `:protocol` is
/// `websocket`, answered `200`. There is no key to answer (the stream is the proof of
/// intent), and the framing after it is RFC 6455's, masks included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectHandshake {
    /// The chosen subprotocol, `None` when the client offered none (then frames are binary).
    pub protocol: Option<Subprotocol>,
    /// permessage-deflate's parameters when it is agreed (the same extension header as over
    /// HTTP/1.1, RFC 8441 section 5).
    pub deflate: Option<Agreed>,
}

impl ConnectHandshake {
    /// Checks an extended CONNECT's headers (RFC 8441 section 5: version 13 only).
    pub fn from_request(req: &Request<()>) -> Result<ConnectHandshake, Refusal> {
        let headers = req.headers();
        match header_str(headers, SEC_WEBSOCKET_VERSION).map(str::trim) {
            Some("13") => {}
            other => {
                let why = match other {
                    Some(v) => format!("unsupported Sec-WebSocket-Version `{v}`"),
                    None => "no Sec-WebSocket-Version".to_string(),
                };
                return Err(Refusal::new(
                    StatusCode::UPGRADE_REQUIRED,
                    format!("{why}: a WebSocket over HTTP/2 speaks 13"),
                )
                .with_header("sec-websocket-version", "13"));
            }
        }
        Ok(ConnectHandshake {
            protocol: negotiate(headers)?,
            deflate: None,
        })
    }

    /// The `200` that opens the stream as a WebSocket.
    pub fn response(&self) -> http::Response<()> {
        let mut response = http::Response::new(());
        if let Some(p) = self.protocol {
            response.headers_mut().insert(
                SEC_WEBSOCKET_PROTOCOL,
                http::HeaderValue::from_static(p.name()),
            );
        }
        if let Some(agreed) = &self.deflate
            && let Ok(value) = http::HeaderValue::from_str(&agreed.header_value())
        {
            response
                .headers_mut()
                .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
        response
    }
}

/// permessage-deflate for a request's offer under `policy` (`--compression`; `None`: off):
/// the parameters agreed, if any.
pub fn compression(req: &Request<()>, policy: Option<&Policy>) -> Option<Agreed> {
    policy.and_then(|p| deflate::negotiate(req.headers(), p))
}

/// `binary` if offered, else `base64` if offered; nothing offered means no subprotocol (binary
/// frames); offers that are all unknown are refused, as websockify refuses them.
fn negotiate(headers: &HeaderMap) -> Result<Option<Subprotocol>, Refusal> {
    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // A bearer token riding in the list is not a protocol offer (see `crate::request`).
        .filter(|p| !p.is_empty() && !p.starts_with(crate::request::BEARER_PROTOCOL_PREFIX))
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    for wanted in [Subprotocol::Binary, Subprotocol::Base64] {
        if offered.contains(&wanted.name()) {
            return Ok(Some(wanted));
        }
    }
    Err(Refusal::bad_request(format!(
        "no supported subprotocol in `{}`: this server speaks binary, base64",
        offered.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri("/websockify");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const BASE: &[(&str, &str)] = &[
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h: Vec<_> = BASE.to_vec();
        for (k, v) in extra {
            h.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            if !v.is_empty() {
                h.push((k, v));
            }
        }
        h
    }

    #[test]
    fn rfc_example_accept_key() {
        let hs = HybiHandshake::from_request(&request(BASE)).unwrap();
        assert_eq!(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(hs.protocol, None);
        let text = String::from_utf8(hs.response()).unwrap();
        assert!(!text.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn subprotocols() {
        let pick = |offer: &'static str| {
            HybiHandshake::from_request(&request(&with(&[("Sec-WebSocket-Protocol", offer)])))
                .map(|h| h.protocol)
        };
        assert_eq!(pick("binary"), Ok(Some(Subprotocol::Binary)));
        assert_eq!(pick("base64"), Ok(Some(Subprotocol::Base64)));
        assert_eq!(pick("base64, binary"), Ok(Some(Subprotocol::Binary)));
        assert_eq!(pick(" base64 ,foo"), Ok(Some(Subprotocol::Base64)));
        assert_eq!(pick("foo").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(pick("base64url.bearer.authorization.k8s.io.dG9r"), Ok(None));
        assert_eq!(
            pick("base64url.bearer.authorization.k8s.io.dG9r, base64"),
            Ok(Some(Subprotocol::Base64))
        );
    }

    #[test]
    fn versions() {
        for v in ["7", "8", "13"] {
            let hs = HybiHandshake::from_request(&request(&with(&[("Sec-WebSocket-Version", v)])));
            assert_eq!(hs.unwrap().version.to_string(), v);
        }
        let err = HybiHandshake::from_request(&request(&with(&[("Sec-WebSocket-Version", "99")])))
            .unwrap_err();
        assert_eq!(err.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(
            err.headers,
            [("Sec-WebSocket-Version".into(), "13, 8, 7".to_string())]
        );
    }

    #[test]
    fn bad_requests() {
        for (name, value) in [
            ("Upgrade", ""),
            ("Upgrade", "h2c"),
            ("Connection", ""),
            ("Connection", "close"),
            ("Sec-WebSocket-Key", ""),
            ("Sec-WebSocket-Key", "c2hvcnQ="),
        ] {
            let err = HybiHandshake::from_request(&request(&with(&[(name, value)]))).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        }
        // Security review, hygiene: a second key was ignored and the first answered.
        let mut twice = BASE.to_vec();
        twice.push(("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="));
        let err = HybiHandshake::from_request(&request(&twice)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.reason.contains("more than one"), "{}", err.reason);
    }
}
