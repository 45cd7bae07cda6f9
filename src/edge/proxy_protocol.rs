//! The PROXY protocol (HAProxy's, versions 1 and 2): how a load balancer in front of us tells
//! the real client's address (`--proxy-protocol`), and how we tell it to a target behind us
//! (`--target-proxy-protocol`). Parsing and encoding are the `ppp` crate's; this module reads
//! a header off a connection with bounds on size and time, and turns it into addresses.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ppp::{HeaderResult, PartialResult, v1, v2};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::bounded::{Bound, ReadError, read_until};

/// The longest header accepted: a v1 line is at most 107 bytes; a v2 header is 16 bytes and
/// its addresses, plus TLVs that balancers add (TLS facts, a connection id, a VPC endpoint),
/// which stay far below this.
pub const MAX_PROXY_HEADER: usize = 4096;

/// How long the header may take: a balancer sends it at once, before anything else.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// `--target-proxy-protocol`: which version we send to targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(Version::V1),
            "v2" | "2" => Ok(Version::V2),
            _ => Err(format!(
                "`{s}` is not a PROXY protocol version: expected v1 or v2"
            )),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    /// The client and the address it connected to; `None` for `UNKNOWN` (v1), `LOCAL` (v2,
    /// a balancer's own health check) and families other than TCP over IPv4/IPv6, where the
    /// connection's own addresses stand.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Why no header could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header (--proxy-protocol): the connection began with {0:?}")]
    Missing(String),
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header longer than {MAX_PROXY_HEADER} bytes")]
    TooLong,
    #[error("no complete PROXY protocol header within {}s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    #[error("connection closed before its PROXY protocol header was complete")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The v2 signature, and the start of every v1 line.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line the specification allows, `\r\n` included.
const V1_MAX: usize = 107;

/// Parses a header at the start of `buf`: the header and its length, `None` if more bytes
/// are needed, or why these bytes can never be one.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    let could_be_v2 = buf[..n] == V2_SIGNATURE[..n];
    let n = buf.len().min(V1_PREFIX.len());
    let could_be_v1 = buf[..n] == V1_PREFIX[..n];
    if !could_be_v1 && !could_be_v2 {
        let start = String::from_utf8_lossy(&buf[..buf.len().min(16)]).into_owned();
        return Err(HeaderError::Missing(start));
    }
    // A v1 line is judged whole: a cut just after its `\r` would otherwise look like a bad
    // port rather than an incomplete line.
    if could_be_v1 && !buf.windows(2).any(|w| w == b"\r\n") {
        return if buf.len() > V1_MAX {
            Err(HeaderError::Malformed(format!(
                "no end of line within {V1_MAX} bytes"
            )))
        } else {
            Ok(None)
        };
    }
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_PROXY_HEADER {
            Err(HeaderError::TooLong)
        } else {
            Ok(None)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let addresses = match h.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                v1::Addresses::Unknown => None,
            };
            let header = Header {
                version: Version::V1,
                addresses,
            };
            Ok(Some((header, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let addresses = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                (v2::Command::Proxy, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            };
            let header = Header {
                version: Version::V2,
                addresses,
            };
            Ok(Some((header, h.len())))
        }
        HeaderResult::V1(Err(e)) => Err(HeaderError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Malformed(e.to_string())),
    }
}

/// Reads one header from the start of `stream`; also returns the bytes read past it, which
/// belong to what follows (a TLS ClientHello, an HTTP request).
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Header, BytesMut), HeaderError> {
    let mut buf = BytesMut::with_capacity(256);
    let bound = Bound {
        limit: MAX_PROXY_HEADER,
        step: 512,
        timeout: Some(HEADER_TIMEOUT),
    };
    let read = read_until(stream, &mut buf, bound, |buf| {
        Ok(parse(buf)?.map(|(header, len)| (header, buf.split_off(len))))
    })
    .await;
    read.map_err(|e| match e {
        ReadError::Invalid(e) => e,
        ReadError::TooLarge => HeaderError::TooLong,
        ReadError::Timeout(_) => HeaderError::Timeout,
        ReadError::Closed => HeaderError::Closed,
        ReadError::Io(e) => HeaderError::Io(e),
    })
}

/// The header that tells a target about `client`, which connected to `server`; without a
/// client address (a unix socket client), v1 `UNKNOWN` or v2 `LOCAL`, by which the target
/// uses the connection's own addresses.
pub fn encode(version: Version, addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    // Both must be of one family; an IPv4 client of a dual-stack listener arrives mapped.
    let addresses = addresses.map(|(client, server)| {
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let (client, server) = (canonical(client), canonical(server));
        match (client, server) {
            (SocketAddr::V4(_), SocketAddr::V6(s)) => (
                client,
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), s.port()),
            ),
            (SocketAddr::V6(_), SocketAddr::V4(s)) => (
                client,
                SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), s.port()),
            ),
            same => same,
        }
    });
    match version {
        Version::V1 => {
            let addresses = match addresses {
                Some(pair) => v1::Addresses::from(pair),
                None => v1::Addresses::Unknown,
            };
            // Written whole: `PROXY TCP4 src dst sport dport\r\n`.
            addresses.to_string().into_bytes()
        }
        Version::V2 => {
            let (command, addresses) = match addresses {
                Some(pair) => (v2::Command::Proxy, v2::Addresses::from(pair)),
                None => (v2::Command::Local, v2::Addresses::Unspecified),
            };
            let builder = v2::Builder::with_addresses(
                v2::Version::Two | command,
                v2::Protocol::Stream,
                addresses,
            );
            // Building only fails for TLVs or lengths over 64 KiB; ours has neither.
            builder.build().unwrap_or_else(|_| LOCAL_V2.to_vec())
        }
    }
}

/// A v2 `LOCAL` header without addresses.
const LOCAL_V2: [u8; 16] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_and_v2_round_trip_for_both_families() {
        for (client, server) in [
            (at("192.0.2.7:51000"), at("10.0.0.1:6080")),
            (at("[2001:db8::7]:51000"), at("[2001:db8::1]:6080")),
        ] {
            for version in [Version::V1, Version::V2] {
                let mut bytes = encode(version, Some((client, server)));
                let len = bytes.len();
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let (header, used) = parse(&bytes).unwrap().unwrap();
                assert_eq!(used, len);
                assert_eq!(header.version, version);
                assert_eq!(header.addresses, Some((client, server)));
                // Every prefix is incomplete, never an error.
                for cut in 0..len {
                    assert!(
                        parse(&bytes[..cut]).unwrap().is_none(),
                        "{version} cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_and_local_carry_no_address() {
        let (h, n) = parse(b"PROXY UNKNOWN\r\nrest").unwrap().unwrap();
        assert_eq!((h.addresses, n), (None, 15));
        assert_eq!(encode(Version::V1, None), b"PROXY UNKNOWN\r\n");
        let local = encode(Version::V2, None);
        let (h, n) = parse(&local).unwrap().unwrap();
        assert_eq!((h.version, h.addresses, n), (Version::V2, None, 16));
        let (h, _) = parse(&LOCAL_V2).unwrap().unwrap();
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn mixed_families_are_made_one() {
        let bytes = encode(Version::V1, Some((at("192.0.2.7:1"), at("[::]:6080"))));
        assert_eq!(bytes, b"PROXY TCP4 192.0.2.7 0.0.0.0 1 6080\r\n");
        let bytes = encode(
            Version::V1,
            Some((at("[::ffff:192.0.2.7]:1"), at("[::ffff:10.0.0.1]:2"))),
        );
        assert_eq!(bytes, b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\n");
    }

    #[test]
    fn what_is_not_a_header_is_refused() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(HeaderError::Missing(_))
        ));
        assert!(matches!(
            parse(b"\x16\x03\x01"),
            Err(HeaderError::Missing(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n"),
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"PROXY SCTP x\r\n"),
            Err(HeaderError::Malformed(_))
        ));
        // A v1 line that never ends is refused at the limit, not read forever.
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; MAX_PROXY_HEADER]].concat();
        assert!(parse(&endless).is_err());
        // A v2 header announcing more than we accept.
        let mut v2 = LOCAL_V2.to_vec();
        v2[14..16].copy_from_slice(&60000u16.to_be_bytes());
        v2.resize(MAX_PROXY_HEADER + 10, 0);
        assert!(matches!(parse(&v2), Err(HeaderError::TooLong)));
    }

    #[tokio::test]
    async fn read_keeps_what_follows_and_gives_up_on_silence() {
        let mut input: &[u8] = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 6080\r\n\x16\x03\x01";
        let (header, rest) = read(&mut input).await.unwrap();
        assert_eq!(header.addresses.unwrap().0, at("192.0.2.7:51000"));
        assert_eq!(&rest[..], b"\x16\x03\x01");
        let mut closed: &[u8] = b"PROXY TCP4 192.0";
        assert!(matches!(read(&mut closed).await, Err(HeaderError::Closed)));
    }
}
