//! The facts of a request, whatever carried it: who asked (the client's address as the proxy
//! believes it), over what (TLS, the client certificate's name), and what was asked (method,
//! path and query, headers).
//!
//! The gate decides on these and plugins see them; the WebSocket handshakes read the same
//! head. This module is a leaf: it knows no socket, session or server, so that the protocol
//! code and the gate can both depend on it without depending on each other.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Who connected, as the proxy believes it: the peer, or the address a trusted PROXY header
/// or forwarded header named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Tcp(SocketAddr),
    /// A client of a unix listening socket, which has no address.
    Unix,
}

impl ClientAddr {
    /// The client's IP address (none for a unix socket client).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Tcp(a) => Some(a.ip()),
            ClientAddr::Unix => None,
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Port 0: an address learned from X-Forwarded-For, which carries none.
            ClientAddr::Tcp(a) if a.port() == 0 => write!(f, "{}", a.ip()),
            ClientAddr::Tcp(a) => write!(f, "{a}"),
            ClientAddr::Unix => f.write_str("unix-socket"),
        }
    }
}

/// What the connection under a request tells about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    /// The client came through TLS (`wss://`), or a trusted proxy says it did.
    pub secure: bool,
    /// The common name of the client's verified certificate (`--verify-client`).
    pub client_cert_cn: Option<String>,
    /// The HTTP the request came in.
    pub transport: Transport,
}

/// The HTTP a request came in: its own connection (HTTP/1.1, and Hixie's handshakes, which
/// look like it) or a stream of an HTTP/2 connection. A label in the logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Http1,
    H2,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Http1 => "http1",
            Transport::H2 => "h2",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A request as the gate and the plugins see it.
#[derive(Debug)]
pub struct Facts {
    pub client: ClientAddr,
    pub channel: Channel,
    /// Method, path and query, headers; the body is not part of a decision.
    pub head: http::Request<()>,
}

impl Facts {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.head.uri().path()
    }
}

/// The prefix of a `Sec-WebSocket-Protocol` entry that carries a bearer token (base64url,
/// unpadded) rather than naming a subprotocol: how Kubernetes and KubeVirt consoles pass a
/// token from a browser, which cannot set headers on a WebSocket.
pub const BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";
