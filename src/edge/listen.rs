//! Binding the listening socket: TCP (every interface for a bare port, dual-stack where the
//! system has IPv6), a unix socket with its mode, or the socket inetd hands us on stdin.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::config::{FileMode, Listen};
use crate::edge::stream::{ClientIo, ClientStream};
use crate::request::ClientAddr;

/// websockify's listen backlog.
const BACKLOG: i32 = 100;

/// The proxy's listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener, Tuning),
    Unix(UnixSocket),
}

/// Where accepted TCP connections get their options ([`tune_client`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Set on the listening socket, whose accepted sockets inherit them (Linux copies a
    /// listener's socket options into each connection it accepts): system calls fewer per
    /// connection.
    Inherited,
    /// The listener would not take them: set on each accepted socket.
    PerConnection(Option<Duration>),
}

impl Tuning {
    /// Sets the options on a listening socket and says whether that worked.
    fn of_listener(socket: &Socket, user_timeout: Option<Duration>) -> Tuning {
        if cfg!(target_os = "linux") && tune_client(socket, user_timeout).is_ok() {
            Tuning::Inherited
        } else {
            Tuning::PerConnection(user_timeout)
        }
    }
}

/// A client socket's options: TCP_NODELAY (interactive protocols cannot wait for Nagle),
/// keepalive probes after a minute of silence (a client that vanished without a reset is
/// noticed within two), and TCP_USER_TIMEOUT: bytes sent that stay unacknowledged for
/// `user_timeout` (`--send-timeout`) abort the connection in the kernel, so a dead client
/// cannot keep a send pending.
fn tune_client(socket: &Socket, user_timeout: Option<Duration>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&crate::session::target::keepalive())?;
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(user_timeout)?;
    let _ = user_timeout;
    Ok(())
}

/// A unix listening socket whose file is removed when it closes.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    /// `None` for a socket we did not create (inetd), whose file is not ours to remove.
    path: Option<PathBuf>,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Listener {
    /// Binds what the configuration names; accepted TCP clients get `user_timeout` as
    /// TCP_USER_TIMEOUT ([`tune_client`]).
    pub async fn bind(
        spec: &Listen,
        prefer_ipv6: bool,
        user_timeout: Option<Duration>,
    ) -> anyhow::Result<Listener> {
        match spec {
            Listen::Tcp(addr) => {
                let candidates: Vec<SocketAddr> = match &addr.host {
                    None => vec![
                        SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port)),
                        SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port)),
                    ],
                    Some(host) => {
                        let hp = crate::config::addr::HostPort {
                            host: host.clone(),
                            port: addr.port,
                        };
                        crate::session::target::resolve(&hp, prefer_ipv6)
                            .await
                            .with_context(|| format!("cannot listen on {addr}"))?
                    }
                };
                let mut last = None;
                for candidate in candidates {
                    match bind_tcp(candidate, user_timeout) {
                        Ok(l) => return Ok(l),
                        Err(e) => last = Some(e),
                    }
                }
                let e = last.unwrap_or_else(|| io::Error::other("no address"));
                Err(e).with_context(|| format!("cannot listen on {addr}"))
            }
            Listen::Unix { path, mode } => bind_unix(path, *mode)
                .with_context(|| format!("cannot listen on unix socket {}", path.display())),
            Listen::Inetd => from_stdin(user_timeout)
                .context("--inetd: standard input is not a listening socket"),
        }
    }

    /// The TCP port we listen on (the one the kernel chose for port 0), if TCP.
    pub fn tcp_port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(l, _) => l.local_addr().ok().map(|a| a.port()),
            Listener::Unix(_) => None,
        }
    }

    /// Where we listen, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l, _) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".to_string()),
            Listener::Unix(u) => match &u.path {
                Some(p) => format!("unix:{}", p.display()),
                None => "unix socket from inetd".to_string(),
            },
        }
    }

    pub async fn accept(&self) -> io::Result<(ClientStream, ClientAddr)> {
        match self {
            Listener::Tcp(l, tuning) => {
                let (stream, peer) = l.accept().await?;
                if let Tuning::PerConnection(user_timeout) = *tuning
                    && let Err(e) = tune_client(&socket2::SockRef::from(&stream), user_timeout)
                {
                    tracing::debug!("tuning a client socket: {e}");
                }
                Ok((
                    ClientStream::new(ClientIo::Tcp(stream)),
                    ClientAddr::Tcp(peer),
                ))
            }
            Listener::Unix(u) => {
                let (stream, _) = u.listener.accept().await?;
                Ok((ClientStream::new(ClientIo::Unix(stream)), ClientAddr::Unix))
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr, user_timeout: Option<Duration>) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // One socket for both families: a bare port means every interface.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    let tuning = Tuning::of_listener(&socket, user_timeout);
    Ok(Listener::Tcp(TcpListener::from_std(socket.into())?, tuning))
}

/// Binds under a temporary name, sets the mode, then renames into place, so that the socket
/// is never reachable with looser permissions than asked for.
fn bind_unix(path: &Path, mode: FileMode) -> io::Result<Listener> {
    remove_stale(path)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let std_listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode.0))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std_listener.set_nonblocking(true)?;
    Ok(Listener::Unix(UnixSocket {
        listener: UnixListener::from_std(std_listener)?,
        path: Some(path.to_path_buf()),
    }))
}

/// A socket file left by a process that is gone is removed; a live one is an error, and so
/// is a file that is not a socket (we never delete someone's data).
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// inetd's `wait` mode: the listening socket is file descriptor 0.
fn from_stdin(user_timeout: Option<Duration>) -> anyhow::Result<Listener> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let socket = Socket::from(fd);
    let local = socket.local_addr()?;
    if !socket.is_listener()? {
        bail!("the socket on standard input is not listening");
    }
    socket.set_nonblocking(true)?;
    if local.is_unix() {
        let std_listener =
            std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket));
        Ok(Listener::Unix(UnixSocket {
            listener: UnixListener::from_std(std_listener)?,
            path: None,
        }))
    } else {
        let tuning = Tuning::of_listener(&socket, user_timeout);
        Ok(Listener::Tcp(TcpListener::from_std(socket.into())?, tuning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system calls saved per connection rest on the kernel copying the listener's
    /// options into each accepted socket: check it does.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_keepalive_and_the_user_timeout() {
        let user_timeout = Some(Duration::from_secs(7));
        let listener = bind_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), user_timeout).unwrap();
        let Listener::Tcp(tcp, tuning) = &listener else {
            panic!("a TCP address gives a TCP listener");
        };
        assert_eq!(*tuning, Tuning::Inherited);
        let port = tcp.local_addr().unwrap().port();
        let _client = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (accepted, _) = tcp.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(sock.tcp_user_timeout().unwrap(), user_timeout);
    }
}
