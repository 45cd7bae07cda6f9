//! Targets: where a session's bytes go, and how we connect there.
//!
//! A [`Target`] is named by the configuration or by a token plugin. Before anything is
//! answered, the gate clears it ([`Target::clear`]) against `--allow-target`: a TCP target
//! is resolved and only the addresses a rule covers are kept, a unix socket's path must be
//! in normal form under an allowed directory, its symlinks resolved included. The
//! [`Cleared`] target is then connected to exactly what was checked, so a second resolution
//! or a path written another way cannot lead elsewhere.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// A target the gate let through, and what connecting it dials.
#[derive(Debug)]
pub struct Cleared {
    /// As it was named: what the logs and TLS's name check see.
    pub target: Target,
    dial: Dial,
}

/// What a cleared target's connection dials.
#[derive(Debug)]
enum Dial {
    /// The target as named, resolved when connected: without `--allow-target`, for a name a
    /// rule allows wherever it resolves, and for the operator's wrapped program.
    AsNamed,
    /// The addresses `--allow-target` let through, in the order to try.
    Addresses(Vec<SocketAddr>),
    /// The socket whose path `--allow-target` checked, symlinks resolved.
    Unix(PathBuf),
    /// The name did not resolve when it was checked: connecting reports it (close `1011`,
    /// as any unreachable target), and never resolves it again unchecked.
    Unresolved { host: String, error: io::Error },
}

impl fmt::Display for Cleared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.target.fmt(f)
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
    /// Checks the target against `allow` (`None`: every target is allowed), resolving a TCP
    /// target's name now (IPv6 first with `prefer_ipv6`) when a network rule must cover its
    /// addresses. The operator's own wrapped program is not checked: the list is for targets
    /// that come from requests.
    pub async fn clear(
        &self,
        allow: Option<&AllowList>,
        prefer_ipv6: bool,
    ) -> Result<Cleared, ConnectError> {
        let not_allowed = |detail: String| ConnectError::NotAllowed {
            target: self.to_string(),
            detail,
        };
        let dial = match (self, allow) {
            (_, None) | (Target::Loopback(_), _) => Dial::AsNamed,
            (Target::Unix(path), Some(allow)) => {
                Dial::Unix(clear_unix(path, allow).await.map_err(not_allowed)?)
            }
            // A rule naming the target allows it wherever it resolves.
            (Target::Tcp(hp), Some(allow)) if allow.names(&hp.host, hp.port) => Dial::AsNamed,
            // Otherwise only the addresses a network rule covers are tried, so a name that
            // resolves to a forbidden address (the cloud metadata service, say) gets nowhere.
            (Target::Tcp(hp), Some(allow)) => match resolve(hp, prefer_ipv6).await {
                Ok(resolved) => {
                    let addrs: Vec<SocketAddr> = resolved
                        .iter()
                        .copied()
                        .filter(|a| allow.covers(*a))
                        .collect();
                    if addrs.is_empty() {
                        let list: Vec<String> = resolved.iter().map(ToString::to_string).collect();
                        return Err(not_allowed(format!(": resolves to {}", list.join(", "))));
                    }
                    Dial::Addresses(addrs)
                }
                Err(ConnectError::Resolve { host, source }) => Dial::Unresolved {
                    host,
                    error: source,
                },
                Err(e) => Dial::Unresolved {
                    host: hp.host.clone(),
                    error: io::Error::other(e.to_string()),
                },
            },
        };
        Ok(Cleared {
            target: self.clone(),
            dial,
        })
    }
}

/// A unix socket path `allow` covers, in the form to connect: normal (absolute, no `.` or
/// `..`: `DIR/../evil.sock` passed a lexical test for `unix:DIR/`) and, where the socket
/// exists, with its symlinks resolved, which must lie under an allowed directory too (as
/// written, or as its own symlinks resolve). `Err` says why not, for the log.
async fn clear_unix(path: &Path, allow: &AllowList) -> Result<PathBuf, String> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if !allow.covers_unix(&path) {
        return Err(String::new());
    }
    let Ok(real) = tokio::fs::canonicalize(&path).await else {
        // No such socket (yet): connecting fails as it would, with 1011.
        return Ok(path);
    };
    if allow.covers_unix(&real) {
        return Ok(real);
    }
    for rule in allow.unix_rules() {
        if let Ok(rule) = tokio::fs::canonicalize(rule).await
            && real.starts_with(&rule)
        {
            return Ok(real);
        }
    }
    Err(format!(": leads to {}", real.display()))
}

impl Cleared {
    /// Connects within the options' timeout, trying each address in turn (IPv6 first with
    /// `prefer_ipv6`), with TCP_NODELAY and SO_KEEPALIVE set as websockify sets them; with
    /// `tls`, completes a TLS handshake that verifies the target's certificate for its name.
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
                Some(config) => self.target.tls_handshake(stream, config).await,
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

    async fn connect_inner(
        &self,
        options: &ConnectOptions<'_>,
    ) -> Result<TargetStream, ConnectError> {
        match (&self.dial, &self.target) {
            (Dial::Unresolved { host, error }, _) => Err(ConnectError::Resolve {
                host: host.clone(),
                source: io::Error::new(error.kind(), error.to_string()),
            }),
            (Dial::Addresses(addrs), _) => self.connect_any(addrs.clone()).await,
            (Dial::Unix(path), _) | (Dial::AsNamed, Target::Unix(path)) => {
                UnixStream::connect(path)
                    .await
                    .map(TargetStream::Unix)
                    .map_err(|source| ConnectError::Io {
                        target: self.to_string(),
                        source,
                    })
            }
            (Dial::AsNamed, Target::Loopback(port)) => {
                let mut addrs = vec![
                    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, *port)),
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, *port)),
                ];
                prefer_family(&mut addrs, options.prefer_ipv6);
                self.connect_any(addrs).await
            }
            (Dial::AsNamed, Target::Tcp(hp)) => {
                let addrs = resolve(hp, options.prefer_ipv6).await?;
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

impl Target {
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

/// TCP_NODELAY (interactive protocols like VNC cannot wait for Nagle) and keepalive probes
/// (so a peer that vanished is noticed), on both sides, as websockify does. Failures only cost
/// latency or liveness detection, so they are logged, not fatal.
pub fn tune_tcp(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive()) {
        tracing::debug!("cannot set SO_KEEPALIVE: {e}");
    }
}

/// Keepalive probes after a minute of silence, every 10 s, 6 unanswered ones end the
/// connection: a peer that vanished without a reset is noticed within two minutes rather
/// than the system's default two hours.
pub fn keepalive() -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    #[cfg(target_os = "linux")]
    let keepalive = keepalive
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    keepalive
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clears `target` with no allow-list and connects it.
    async fn connect(target: &Target) -> Result<TargetStream, ConnectError> {
        let cleared = target.clear(None, false).await?;
        cleared.connect(&ConnectOptions::default()).await
    }

    #[tokio::test]
    async fn tuned_sockets_have_nodelay_and_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::Tcp(HostPort {
            host: "127.0.0.1".to_string(),
            port: listener.local_addr().unwrap().port(),
        });
        let TargetStream::Tcp(stream) = connect(&target).await.unwrap() else {
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
                let cleared = target.clear(Some(&allow), false).await?;
                cleared
                    .connect(&ConnectOptions::default())
                    .await
                    .map(|_| ())
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

    /// Security review: `unix:DIR/` was checked lexically, so `DIR/../evil.sock` passed and
    /// reached a socket outside; a symlink inside DIR can lead out too.
    #[tokio::test]
    async fn a_unix_rule_covers_only_what_really_lies_under_it() {
        let base =
            std::env::temp_dir().join(format!("websockify-unix-allow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (allowed, outside) = (base.join("vnc"), base.join("other"));
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let evil = outside.join("evil.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&evil).unwrap();
        let good = allowed.join("good.sock");
        let _good = std::os::unix::net::UnixListener::bind(&good).unwrap();
        std::os::unix::fs::symlink(&evil, allowed.join("link.sock")).unwrap();
        let allow: AllowList = format!("unix:{}/", allowed.display()).parse().unwrap();
        let clear = |path: PathBuf| {
            let allow = allow.clone();
            async move { Target::Unix(path).clear(Some(&allow), false).await }
        };
        let dotted = allowed.join("../other/evil.sock");
        assert!(
            dotted.starts_with(&allowed),
            "the lexical test this replaces passes"
        );
        for refused in [
            dotted,
            allowed.join("link.sock"),
            allowed.join("./../other/evil.sock"),
        ] {
            let e = clear(refused.clone()).await.unwrap_err();
            assert!(
                matches!(e, ConnectError::NotAllowed { .. }),
                "{refused:?}: {e}"
            );
        }
        let cleared = clear(good.clone()).await.unwrap();
        assert!(matches!(&cleared.dial, Dial::Unix(p) if *p == good));
        assert!(cleared.connect(&ConnectOptions::default()).await.is_ok());
        // A socket not there yet is allowed by its path and fails to connect as usual.
        let missing = clear(allowed.join("later.sock")).await.unwrap();
        assert!(matches!(
            missing.connect(&ConnectOptions::default()).await,
            Err(ConnectError::Io { .. })
        ));
        std::fs::remove_dir_all(&base).unwrap();
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
            connect(&target).await,
            Err(ConnectError::Io { .. })
        ));
        let target = Target::Tcp(HostPort {
            host: "no-such-host.invalid".to_string(),
            port: 1,
        });
        assert!(matches!(
            connect(&target).await,
            Err(ConnectError::Resolve { .. })
        ));
        let target = Target::Unix("/nonexistent/socket".into());
        assert!(matches!(
            connect(&target).await,
            Err(ConnectError::Io { .. })
        ));
    }
}
