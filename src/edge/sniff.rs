//! Deciding what a client speaks from its first bytes, as websockify does on its one port:
//! `0x16` (a TLS record) or `0x80` (an SSLv2-style hello) is TLS, the Flash policy request is
//! Flash, HTTP/2's connection preface is HTTP/2 with prior knowledge (h2c), anything else is
//! HTTP/1. The bytes read are put back for whoever reads next.

use std::time::Duration;

use bytes::BytesMut;

use super::bounded::{Bound, ReadError, read_until};
use crate::edge::h2::PREFACE;
use crate::edge::stream::ClientStream;

/// How long a client may stay silent after connecting (websockify waits 3 s too).
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(3);

/// What Flash sends first; the trailing NUL is optional, as websockify matches only the tag.
pub const FLASH_POLICY_REQUEST: &[u8] = b"<policy-file-request/>";

/// websockify's answer to it, byte for byte.
pub const FLASH_POLICY: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\" /></cross-domain-policy>\n";

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Tls,
    Flash,
    Http,
    /// HTTP/2's preface (`PRI * HTTP/2.0`): a client that knows it speaks HTTP/2.
    H2,
}

/// Why nothing could be decided.
#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("client sent nothing within {}s", SNIFF_TIMEOUT.as_secs())]
    Silent,
    #[error("client closed the connection before sending anything")]
    Closed,
    #[error("reading the first bytes: {0}")]
    Io(#[from] std::io::Error),
}

/// Classifies bytes seen so far; `None` while they could still be the Flash request.
pub fn classify(seen: &[u8]) -> Option<Sniffed> {
    match seen.first()? {
        0x16 | 0x80 => Some(Sniffed::Tls),
        _ if seen.starts_with(FLASH_POLICY_REQUEST) => Some(Sniffed::Flash),
        _ if FLASH_POLICY_REQUEST.starts_with(seen) => None,
        _ if seen.starts_with(PREFACE) => Some(Sniffed::H2),
        // `P` begins POST, PUT and PATCH too: wait until the bytes part from the preface.
        _ if PREFACE.starts_with(seen) => None,
        _ => Some(Sniffed::Http),
    }
}

/// Reads until the first bytes decide, within [`SNIFF_TIMEOUT`], and puts them back.
pub async fn sniff(stream: &mut ClientStream) -> Result<Sniffed, SniffError> {
    let mut seen = BytesMut::new();
    // Any first read decides but one that could still be the Flash request or HTTP/2's
    // preface; 512 bytes are far more than any decision needs.
    let bound = Bound {
        limit: 512,
        step: 512,
        timeout: Some(SNIFF_TIMEOUT),
    };
    let decided = read_until(stream, &mut seen, bound, |seen| {
        Ok::<_, std::convert::Infallible>(classify(seen))
    })
    .await;
    stream.unread(seen.freeze());
    decided.map_err(|e| match e {
        ReadError::Timeout(_) => SniffError::Silent,
        ReadError::Closed => SniffError::Closed,
        ReadError::Io(e) => SniffError::Io(e),
        ReadError::Invalid(never) => match never {},
        // Cannot happen: `classify` decides by the byte after the Flash request's length,
        // far under the limit.
        ReadError::TooLarge => SniffError::Closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_decide() {
        assert_eq!(classify(b"\x16\x03\x01"), Some(Sniffed::Tls));
        assert_eq!(classify(b"\x80\x2e\x01"), Some(Sniffed::Tls));
        assert_eq!(classify(b"GET / HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(classify(b"<policy-file-request/>\0"), Some(Sniffed::Flash));
        assert_eq!(classify(b"<policy-file-request/>"), Some(Sniffed::Flash));
        assert_eq!(classify(b"<policy-fi"), None);
        assert_eq!(classify(b"<"), None);
        assert_eq!(classify(b"<html>"), Some(Sniffed::Http));
        assert_eq!(classify(b""), None);
        assert_eq!(classify(PREFACE), Some(Sniffed::H2));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(b"PUT /a HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Some(Sniffed::Http));
    }
}
