//! The limits a proxy on the edge needs and websockify does not have: how many connections in
//! all and per client address, how large a message, how long a handshake, a target connect or
//! an idle session may take, and which targets may be reached at all.
//!
//! This module holds their types and parsing; the server applies them: admission in
//! `server::admission`, message size in `ws`, timeouts in `http`, `target` and `relay`, the
//! target allow-list in `target`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The default `--max-message-size`: far above any VNC update, and a bound on what one
/// `base64` session can make us hold (binary frames are passed on in pieces).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;
/// The default `--handshake-timeout`: a request head trickled slower than this is cut off.
pub const DEFAULT_HANDSHAKE_TIMEOUT: u64 = 10;
/// The default `--connect-timeout`: long enough for a slow VNC host on a WAN, short enough that
/// a browser is not left waiting on a dead address.
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
/// The default `--max-plugin-calls`: more than a burst of browsers connecting at once has in
/// flight with a plugin answering in milliseconds; a plugin that hangs has at most this many
/// requests waiting on it (each holding its connection for the 5 s call timeout).
pub const DEFAULT_MAX_PLUGIN_CALLS: u64 = 256;
/// The default `--compression-min-size`, in bytes (docs/performance.md: below it, a message
/// rarely shrinks by more than its frame header without context takeover).
pub const DEFAULT_COMPRESSION_MIN_SIZE: u64 = 256;

/// The default `--compression-level` (docs/performance.md: level 1 against 6 and 9).
pub const DEFAULT_COMPRESSION_LEVEL: u64 = 1;

/// The default `--http2-max-streams`: more than a browser opens at once to load noVNC's page
/// (its modules come as one stream each) and the consoles of a dashboard beside it; each
/// stream may hold 64 KiB from its client, so a connection at most 16 MiB.
pub const DEFAULT_HTTP2_MAX_STREAMS: u64 = 256;
/// The default `--send-timeout`: far longer than any pause of a live client's receive window
/// (a browser reads its sockets whatever its page does), short enough that a client that
/// stopped reading gives its place back within a minute.
pub const DEFAULT_SEND_TIMEOUT: u64 = 30;
/// Descriptors kept back from the connection limit that is derived from `RLIMIT_NOFILE`: the
/// listeners, log files, plugin files, the metrics listener and a wrapped program's pipes.
pub const RESERVED_FDS: u64 = 64;
/// What `Retry-After` says when a connection limit refuses a request, in seconds.
pub const RETRY_AFTER: u64 = 5;

/// The limits as the server applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `--max-connections`: requests served at once (WebSocket sessions and web requests);
    /// `None` until the server derives it from the descriptor limit at start.
    pub max_connections: Option<usize>,
    /// `--max-connections-per-ip`: the same per client address (`None`: no limit).
    pub max_connections_per_ip: Option<usize>,
    /// `--max-message-size`: the largest message (and, on Hixie, frame) a client may send.
    pub max_message_size: usize,
    /// `--handshake-timeout`: how long the request head may take (`None`: no limit).
    pub handshake_timeout: Option<Duration>,
    /// `--connect-timeout`: how long the target may take to accept, TLS included (`None`: the
    /// operating system's own, minutes).
    pub connect_timeout: Option<Duration>,
    /// `--session-idle-timeout`: a session with no data either way this long is closed.
    pub session_idle_timeout: Option<Duration>,
    /// `--send-timeout`: a client that accepts no byte of an answer this long is dropped.
    pub send_timeout: Option<Duration>,
    /// `--max-plugin-calls`: calls to one plugin in flight at once (at least 1).
    pub max_plugin_calls: usize,
    /// `--allow-target`: the targets sessions may reach (`None`: any).
    pub allow_target: Option<AllowList>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_connections_per_ip: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE as usize,
            handshake_timeout: Some(Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT)),
            connect_timeout: Some(Duration::from_secs(DEFAULT_CONNECT_TIMEOUT)),
            session_idle_timeout: None,
            send_timeout: Some(Duration::from_secs(DEFAULT_SEND_TIMEOUT)),
            max_plugin_calls: DEFAULT_MAX_PLUGIN_CALLS as usize,
            allow_target: None,
        }
    }
}

/// The connection limit that fits a descriptor limit: each session holds two descriptors
/// (client and target), and [`RESERVED_FDS`] stay free for everything else. (The
/// connections in their handshake beyond the limit, `gate::admission::HANDSHAKE_HEADROOM`,
/// hold one each, from the same reserve: at worst an accept then waits for a descriptor.)
pub fn connections_for_fd_limit(nofile: u64) -> usize {
    let sessions = nofile.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(sessions.max(1)).unwrap_or(usize::MAX)
}

/// A number of bytes, written plainly (`65536`) or with a unit: `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, all powers of 1024 (`64MiB`, `64M`, `1g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        let bad = || {
            format!(
                "`{s}` is not a size: expected bytes, or a number with K, M or G (KiB, MiB, GiB), e.g. 64MiB"
            )
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return Err(bad()),
        };
        n.checked_mul(1 << shift).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1 << shift) == 0 {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'d> Deserialize<'d> for ByteSize {
    fn deserialize<D: serde::Deserializer<'d>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string such as \"64MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The ports a rule allows: one (`5900`), a range (`5900-5999`), or any (`*`, or none given
/// after a network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    fn contains(rule: Option<Ports>, port: u16) -> bool {
        rule.is_none_or(|p| (p.first..=p.last).contains(&port))
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One `--allow-target` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// `10.0.0.0/8`, `192.0.2.7`, `fd00::/8`, with ports (`10.0.0.0/8:5900`,
    /// `10.0.0.0/8:5900-5999`, `[fd00::/8]:5900`) or any port.
    Net { net: IpNet, port: Option<Ports> },
    /// `vnc.internal:5900`, `vnc.internal:5900-5999` or `vnc.internal:*`: a target named so
    /// (before resolution).
    Host { host: String, port: Option<Ports> },
    /// `unix:/run/vnc/` (every socket in that directory) or `unix:/run/vnc/a.sock`.
    Unix(PathBuf),
}

impl FromStr for AllowRule {
    type Err = String;
    fn from_str(s: &str) -> Result<AllowRule, String> {
        let t = s.trim();
        let bad = |why: &str| {
            format!(
                "`{s}` is not a target rule ({why}): expected CIDR (10.0.0.0/8), CIDR:PORT, \
                 [IPV6-CIDR]:PORT, HOST:PORT, HOST:* or unix:PATH"
            )
        };
        if let Some(path) = t.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(bad("a unix path must be absolute"));
            }
            return Ok(AllowRule::Unix(PathBuf::from(path)));
        }
        let port = |p: &str| -> Result<Option<Ports>, String> {
            if p == "*" {
                return Ok(None);
            }
            let one = |n: &str| n.parse::<u16>().ok().filter(|n| *n != 0);
            let (first, last) = match p.split_once('-') {
                Some((a, b)) => (one(a), one(b)),
                None => (one(p), one(p)),
            };
            match (first, last) {
                (Some(first), Some(last)) if first <= last => Ok(Some(Ports { first, last })),
                _ => Err(bad("the port is not 1-65535, a range of them, or *")),
            }
        };
        let net = |n: &str| -> Option<IpNet> {
            n.parse::<IpNet>()
                .ok()
                .or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from))
        };
        if let Some(rest) = t.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
            let net = net(inside).ok_or_else(|| bad("not an address or network"))?;
            let port = match after {
                "" => None,
                _ => port(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected :PORT after ]"))?,
                )?,
            };
            return Ok(AllowRule::Net { net, port });
        }
        if let Some(n) = net(t) {
            return Ok(AllowRule::Net { net: n, port: None });
        }
        let (host, p) = t
            .rsplit_once(':')
            .ok_or_else(|| bad("a host name needs a port"))?;
        let port = port(p)?;
        if let Some(n) = net(host) {
            return Ok(AllowRule::Net { net: n, port });
        }
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(bad("not a host name"));
        }
        Ok(AllowRule::Host {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<Ports>| p.map_or("*".to_string(), |p| p.to_string());
        match self {
            AllowRule::Net { net, port: None } => write!(f, "{net}"),
            AllowRule::Net {
                net: net @ IpNet::V6(_),
                port: p,
            } => write!(f, "[{net}]:{}", port(p)),
            AllowRule::Net { net, port: p } => write!(f, "{net}:{}", port(p)),
            AllowRule::Host { host, port: p } => write!(f, "{host}:{}", port(p)),
            AllowRule::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `--allow-target`: the targets sessions may reach. A TCP target is allowed when a host rule
/// names it, else only at the resolved addresses a network rule covers (checked on the
/// addresses actually connected, so a name that resolves somewhere else cannot get around it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList(pub Vec<AllowRule>);

impl AllowList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A host rule names `host:port` (a name compared without case and trailing dot).
    pub fn names(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.');
        self.0.iter().any(|r| match r {
            AllowRule::Host { host: h, port: p } => {
                h.eq_ignore_ascii_case(host) && Ports::contains(*p, port)
            }
            _ => false,
        })
    }

    /// A network rule covers `addr` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn covers(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.0.iter().any(|r| match r {
            AllowRule::Net { net, port } => {
                net.contains(&ip) && Ports::contains(*port, addr.port())
            }
            _ => false,
        })
    }

    /// A unix rule is this socket or a directory above it. Only a path in normal form can be
    /// covered (absolute, no `.` or `..`), since the test is by components:
    /// `DIR/../evil.sock` starts with `DIR/` as written.
    pub fn covers_unix(&self, path: &Path) -> bool {
        let normal = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        normal && self.unix_rules().any(|rule| path.starts_with(rule))
    }

    /// The unix rules' paths, as written.
    pub fn unix_rules(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().filter_map(|r| match r {
            AllowRule::Unix(rule) => Some(rule.as_path()),
            _ => None,
        })
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&rules.join(","))
    }
}

impl FromStr for AllowList {
    type Err = String;
    /// Rules separated by commas or white space.
    fn from_str(s: &str) -> Result<AllowList, String> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }
}

impl Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64MiB", 64 << 20),
            ("64M", 64 << 20),
            ("64 mb", 64 << 20),
            ("1g", 1 << 30),
            ("16KiB", 16 << 10),
            ("0", 0),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in ["", "MiB", "-1", "1.5M", "1T", "99999999999999999999G"] {
            let e = bad.parse::<ByteSize>().unwrap_err();
            assert!(e.contains("e.g. 64MiB"), "{bad}: {e}");
        }
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert_eq!(ByteSize(3 << 10).to_string(), "3KiB");
    }

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "10.0.0.0/8",
            "192.0.2.7/32",
            "10.0.0.0/8:5900",
            "10.0.0.0/8:5900-5999",
            "fd00::/8",
            "[fd00::/8]:5900",
            "vnc.internal:5900",
            "vnc.internal:*",
            "unix:/run/vnc/",
        ] {
            let rule: AllowRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text, "{rule:?}");
        }
        assert_eq!(
            "192.0.2.7".parse::<AllowRule>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "[::1]:22".parse::<AllowRule>().unwrap().to_string(),
            "[::1/128]:22"
        );
        for bad in [
            "vnc.internal",
            "host:0",
            "host:70000",
            "host:5999-5900",
            "host:1-",
            "unix:relative",
            "[fd00::/8",
            "[fd00::]5900",
            "bad host:1",
            "10.0.0.0/40",
        ] {
            let e = bad.parse::<AllowRule>().unwrap_err();
            assert!(e.contains("CIDR"), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_match_names_networks_and_sockets() {
        let list: AllowList =
            "10.0.0.0/8:5900, [fd00::/8]:*  vnc.internal:5901-5910,unix:/run/vnc/"
                .parse()
                .unwrap();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(list.covers(at("10.1.2.3:5900")));
        assert!(!list.covers(at("10.1.2.3:22")));
        assert!(!list.covers(at("169.254.169.254:80")));
        assert!(list.covers(at("[fd00::1]:22")));
        assert!(list.covers(at("[::ffff:10.0.0.1]:5900")), "mapped IPv4");
        assert!(list.names("VNC.internal.", 5901));
        assert!(list.names("vnc.internal", 5910));
        assert!(!list.names("vnc.internal", 5900));
        assert!(!list.names("vnc.internal", 5911));
        assert!(list.covers_unix(Path::new("/run/vnc/a.sock")));
        assert!(!list.covers_unix(Path::new("/run/vncx/a.sock")));
        assert_eq!(
            list.to_string(),
            "10.0.0.0/8:5900,fd00::/8,vnc.internal:5901-5910,unix:/run/vnc/"
        );
    }

    #[test]
    fn fd_limit_leaves_room() {
        assert_eq!(connections_for_fd_limit(1024), 480);
        assert_eq!(connections_for_fd_limit(20_000), 9_968);
        assert_eq!(connections_for_fd_limit(10), 1);
    }
}
