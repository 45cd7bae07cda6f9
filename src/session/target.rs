//! Targets: where a session's bytes go, and how we connect there.
//!
//! Today a target is static (`target_addr:target_port` or `--unix-target`); token resolvers
//! will produce the same [`Target`] per request.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};

use crate::config::addr::HostPort;
use crate::config::limits::AllowList;
use crate::edge::stream::TargetStream;

/// How sessions connect their targets: the settings they all share.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions<'a> {
    /// `-6`: IPv6 addresses first.
    pub prefer_ipv6: bool,
    /// `--connect-timeout` (`None`: the operating system's).
    pub timeout: Option<Duration>,
    /// `--ssl-target`: TLS toward the target, verified for its name.
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// `--allow-target` (`None`: any target).
    pub allow: Option<&'a AllowList>,
    /// `--target-proxy-protocol`: a PROXY protocol header sent first (before TLS).
    pub proxy_header: Option<&'a [u8]>,
}

/// A place the proxy relays a session to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(HostPort),
    Unix(PathBuf),
    /// A wrapped program's port on loopback: `127.0.0.1`, then `::1` (the other way round with
    /// `-6`), since the rebind shim keeps the family the program bound.
    Loopback(u16),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(hp) => write!(f, "{hp}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Loopback(port) => write!(f, "localhost:{port}"),
        }
    }
}

/// Why a target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connecting to {target} timed out after {}s", after.as_secs())]
    Timeout { target: String, after: Duration },
    #[error("{target} is not an allowed target (--allow-target){detail}")]
    NotAllowed { target: String, detail: String },
    #[error("connecting to {target}: {source}")]
    Io { target: String, source: io::Error },
    #[error("TLS to {target}: {reason}")]
    Tls { target: String, reason: String },
}

impl Target {
    /// Connects within the options' timeout, trying each resolved address in turn (IPv6 first
    /// with `prefer_ipv6`) that the allow-list permits, with TCP_NODELAY and SO_KEEPALIVE set
    /// as websockify sets them; with `tls`, completes a TLS handshake that verifies the
    /// target's certificate for its name.
    pub async fn connect(
        &self,
        options: &ConnectOptions<'_>,
    ) -> Result<TargetStream, ConnectError> {
        let connect = async {
            let mut stream = self.connect_inner(options).await?;
            if let Some(header) = options.proxy_header {
                use tokio::io::AsyncWriteExt;
                stream
                    .write_all(header)
                    .await
                    .map_err(|source| ConnectError::Io {
                        target: self.to_string(),
                        source,
                    })?;
            }
            match options.tls {
                Some(config) => self.tls_handshake(stream, config).await,
                None => Ok(stream),
            }
        };
        let Some(after) = options.timeout else {
            return connect.await;
        };
        match tokio::time::timeout(after, connect).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout {
                target: self.to_string(),
                after,
            }),
        }
    }

    async fn tls_handshake(
        &self,
        stream: TargetStream,
        config: &Arc<rustls::ClientConfig>,
    ) -> Result<TargetStream, ConnectError> {
        let host = match self {
            Target::Tcp(hp) => hp.host.clone(),
            // A unix socket has no name; its certificate is checked for localhost.
            Target::Unix(_) | Target::Loopback(_) => "localhost".to_string(),
        };
        let tls_error = |e: String| ConnectError::Tls {
            target: self.to_string(),
            reason: e,
        };
        let name = ServerName::try_from(host).map_err(|e| tls_error(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_error(e.to_string()))?;
        Ok(TargetStream::Tls(Box::new(tls)))
    }

    async fn connect_inner(
        &self,
        options: &ConnectOptions<'_>,
    ) -> Result<TargetStream, ConnectError> {
        let prefer_ipv6 = options.prefer_ipv6;
        let not_allowed = |detail: String| ConnectError::NotAllowed {
            target: self.to_string(),
            detail,
        };
        match self {
            Target::Unix(path) if options.allow.is_some_and(|a| !a.covers_unix(path)) => {
                Err(not_allowed(String::new()))
            }
            Target::Unix(path) => UnixStream::connect(path)
                .await
                .map(TargetStream::Unix)
                .map_err(|source| ConnectError::Io {
                    target: self.to_string(),
                    source,
                }),
            // The operator's own wrapped program: the allow-list is for targets that come
            // from requests.
            Target::Loopback(port) => {
                let mut addrs = vec![
                    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, *port)),
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, *port)),
                ];
                prefer_family(&mut addrs, prefer_ipv6);
                self.connect_any(addrs).await
            }
            Target::Tcp(hp) => {
                let mut addrs = resolve(hp, prefer_ipv6).await?;
                // A rule naming the target allows it wherever it resolves; otherwise only the
                // addresses a network rule covers are tried, so a name that resolves to a
                // forbidden address (the cloud metadata service, say) gets nowhere.
                if let Some(allow) = options.allow
                    && !allow.names(&hp.host, hp.port)
                {
                    let resolved = addrs.clone();
                    addrs.retain(|a| allow.covers(*a));
                    if addrs.is_empty() {
                        let list: Vec<String> = resolved.iter().map(ToString::to_string).collect();
                        return Err(not_allowed(format!(": resolves to {}", list.join(", "))));
                    }
                }
                self.connect_any(addrs).await
            }
        }
    }

    /// The first of `addrs` that accepts, tuned; else the last error.
    async fn connect_any(&self, addrs: Vec<SocketAddr>) -> Result<TargetStream, ConnectError> {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tune_tcp(&stream);
                    return Ok(TargetStream::Tcp(stream));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Io {
            target: self.to_string(),
            source: last.unwrap_or_else(|| io::Error::other("no address to try")),
        })
    }
}

/// Resolves `host:port`, keeping the resolver's order except that `prefer_ipv6` moves IPv6
/// addresses first.
pub async fn resolve(hp: &HostPort, prefer_ipv6: bool) -> Result<Vec<SocketAddr>, ConnectError> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((hp.host.as_str(), hp.port))
        .await
        .map_err(|source| ConnectError::Resolve {
            host: hp.host.clone(),
            source,
        })?
        .collect();
    prefer_family(&mut addrs, prefer_ipv6);
    if addrs.is_empty() {
        return Err(ConnectError::NoAddress {
            host: hp.host.clone(),
        });
    }
    Ok(addrs)
}

/// Moves IPv6 addresses first when asked; a stable sort keeps the resolver's order (RFC 6724
/// preferences) within each family, and without `-6` that order is kept as it is.
fn prefer_family(addrs: &mut [SocketAddr], prefer_ipv6: bool) {
    if prefer_ipv6 {
        addrs.sort_by_key(|a| !a.is_ipv6());
    }
}

/// TCP_NODELAY (interactive protocols like VNC cannot wait for Nagle) and SO_KEEPALIVE (so a
/// peer that vanished is noticed), on both sides, as websockify does. Failures only cost
/// latency or liveness detection, so they are logged, not fatal.
pub fn tune_tcp(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    if let Err(e) = socket2::SockRef::from(stream).set_keepalive(true) {
        tracing::debug!("cannot set SO_KEEPALIVE: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tuned_sockets_have_nodelay_and_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::Tcp(HostPort {
            host: "127.0.0.1".to_string(),
            port: listener.local_addr().unwrap().port(),
        });
        let TargetStream::Tcp(stream) = target.connect(&ConnectOptions::default()).await.unwrap()
        else {
            panic!("a TCP target gives a TCP stream");
        };
        assert!(stream.nodelay().unwrap());
        assert!(socket2::SockRef::from(&stream).keepalive().unwrap());
        // The accepted side, as the listener tunes it.
        let (accepted, _) = listener.accept().await.unwrap();
        tune_tcp(&accepted);
        assert!(accepted.nodelay().unwrap());
        assert!(socket2::SockRef::from(&accepted).keepalive().unwrap());
    }

    #[test]
    fn prefer_ipv6_moves_ipv6_first_keeping_order() {
        let parse = |s: &str| s.parse::<SocketAddr>().unwrap();
        let resolved = ["10.0.0.1:1", "[fe80::1]:1", "10.0.0.2:1", "[::1]:1"].map(parse);
        let mut addrs = resolved;
        prefer_family(&mut addrs, false);
        assert_eq!(addrs, resolved);
        prefer_family(&mut addrs, true);
        assert_eq!(
            addrs,
            ["[fe80::1]:1", "[::1]:1", "10.0.0.1:1", "10.0.0.2:1"].map(parse)
        );
    }

    #[tokio::test]
    async fn the_allow_list_is_checked_on_resolved_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let by_name = Target::Tcp(HostPort {
            host: "localhost".to_string(),
            port,
        });
        let by_ip = Target::Tcp(HostPort {
            host: "127.0.0.1".to_string(),
            port,
        });
        let try_with = |rules: &str, target: &Target| {
            let allow: AllowList = rules.parse().unwrap();
            let target = target.clone();
            async move {
                let options = ConnectOptions {
                    allow: Some(&allow),
                    ..ConnectOptions::default()
                };
                target.connect(&options).await.map(|_| ())
            }
        };
        for (rules, target) in [
            ("127.0.0.0/8", &by_ip),
            ("127.0.0.0/8", &by_name),
            (&format!("127.0.0.1:{port}") as &str, &by_ip),
            (&format!("LOCALHOST:{port}"), &by_name),
            ("localhost:*", &by_name),
        ] {
            try_with(rules, target)
                .await
                .unwrap_or_else(|e| panic!("{rules} should allow {target}: {e}"));
        }
        for (rules, target) in [
            ("10.0.0.0/8", &by_ip),
            ("10.0.0.0/8,localhost:1", &by_name),
            (
                &format!("127.0.0.1:{}", port.wrapping_add(1).max(1)) as &str,
                &by_ip,
            ),
            ("unix:/run/", &by_ip),
        ] {
            let e = try_with(rules, target).await.unwrap_err();
            assert!(matches!(e, ConnectError::NotAllowed { .. }), "{rules}: {e}");
            assert!(e.to_string().contains("--allow-target"), "{e}");
        }
        let unix = Target::Unix("/run/vnc/a.sock".into());
        let e = try_with("10.0.0.0/8", &unix).await.unwrap_err();
        assert!(matches!(e, ConnectError::NotAllowed { .. }), "{e}");
    }

    #[tokio::test]
    async fn unreachable_and_unresolvable_targets_are_errors() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let target = Target::Tcp(HostPort {
            host: "127.0.0.1".to_string(),
            port,
        });
        assert!(matches!(
            target.connect(&ConnectOptions::default()).await,
            Err(ConnectError::Io { .. })
        ));
        let target = Target::Tcp(HostPort {
            host: "no-such-host.invalid".to_string(),
            port: 1,
        });
        assert!(matches!(
            target.connect(&ConnectOptions::default()).await,
            Err(ConnectError::Resolve { .. })
        ));
        let target = Target::Unix("/nonexistent/socket".into());
        assert!(matches!(
            target.connect(&ConnectOptions::default()).await,
            Err(ConnectError::Io { .. })
        ));
    }
}
