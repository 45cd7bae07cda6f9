//! Address arguments as websockify writes them: `[host:]port` to listen on and `host:port` to
//! reach. Both split at the *last* colon and strip `[` `]`, so `[::1]:6080` and `::1:6080` both
//! mean port 6080 on `::1`, exactly as websockify reads them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Where the proxy listens: `[source_addr:]source_port`. No host means every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// `None` binds every interface (IPv6 and IPv4 where the system has them).
    pub host: Option<String>,
    pub port: u16,
}

/// A TCP endpoint given as `host:port`: the target, where the host is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// Why an address argument was refused; the message names the accepted forms.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("`{0}` has no port: expected [source_addr:]source_port, e.g. 6080 or 0.0.0.0:6080")]
    ListenPort(String),
    #[error("`{0}` is not host:port: expected target_addr:target_port, e.g. localhost:5900")]
    TargetForm(String),
    #[error("`{given}` has port `{port}`, which is not a number from 0 to 65535")]
    Port { given: String, port: String },
}

/// Splits at the last colon and strips the brackets of an IPv6 literal.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port))
}

fn parse_port(given: &str, port: &str) -> Result<u16, AddrError> {
    port.trim().parse().map_err(|_| AddrError::Port {
        given: given.to_string(),
        port: port.to_string(),
    })
}

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        match split_host_port(s) {
            // A bare port (websockify's `6080`).
            None if !s.is_empty() => Ok(ListenAddr {
                host: None,
                port: parse_port(s, s)?,
            }),
            None => Err(AddrError::ListenPort(s.to_string())),
            Some((_, "")) => Err(AddrError::ListenPort(s.to_string())),
            Some((host, port)) => Ok(ListenAddr {
                host: (!host.is_empty()).then(|| host.to_string()),
                port: parse_port(s, port)?,
            }),
        }
    }
}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        match split_host_port(s) {
            Some((host, port)) if !host.is_empty() && !port.is_empty() => Ok(HostPort {
                host: host.to_string(),
                port: parse_port(s, port)?,
            }),
            _ => Err(AddrError::TargetForm(s.to_string())),
        }
    }
}

/// Writes a host so that it reads back: IPv6 literals get their brackets again.
fn fmt_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            fmt_host(f, host)?;
        }
        write!(f, ":{}", self.port)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_host(f, &self.host)?;
        write!(f, ":{}", self.port)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[source_addr:]source_port, e.g. 6080 or \"0.0.0.0:6080\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenAddr, E> {
                v.parse().map_err(E::custom)
            }
            // A TOML `listen = 6080` is a bare port.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListenAddr, E> {
                let port = u16::try_from(v)
                    .map_err(|_| E::custom(format!("port {v} is not from 0 to 65535")))?;
                Ok(ListenAddr { host: None, port })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListenAddr, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("port {v} is not from 0 to 65535")))?;
                self.visit_u64(v)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            "6080".parse::<ListenAddr>(),
            Ok(ListenAddr {
                host: None,
                port: 6080
            })
        );
        assert_eq!(
            ":6080".parse::<ListenAddr>(),
            Ok(ListenAddr {
                host: None,
                port: 6080
            })
        );
        let a: ListenAddr = "[::1]:6080".parse().unwrap();
        assert_eq!((a.host.as_deref(), a.port), (Some("::1"), 6080));
        let a: ListenAddr = "::1:6080".parse().unwrap();
        assert_eq!((a.host.as_deref(), a.port), (Some("::1"), 6080));
        let a: ListenAddr = "localhost:1".parse().unwrap();
        assert_eq!(a.to_string(), "localhost:1");
        assert_eq!(
            "[::1]:6080".parse::<ListenAddr>().unwrap().to_string(),
            "[::1]:6080"
        );
        assert!(matches!(
            "x:y".parse::<ListenAddr>(),
            Err(AddrError::Port { .. })
        ));
        assert!(matches!(
            "70000".parse::<ListenAddr>(),
            Err(AddrError::Port { .. })
        ));
        assert!(matches!(
            "host:".parse::<ListenAddr>(),
            Err(AddrError::ListenPort(_))
        ));
        assert!("".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn target_forms() {
        let t: HostPort = "localhost:5900".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 5900));
        let t: HostPort = "[fe80::1]:5900".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("fe80::1", 5900));
        assert_eq!(t.to_string(), "[fe80::1]:5900");
        assert!(matches!(
            "5900".parse::<HostPort>(),
            Err(AddrError::TargetForm(_))
        ));
        assert!(matches!(
            ":5900".parse::<HostPort>(),
            Err(AddrError::TargetForm(_))
        ));
        assert!(matches!(
            "h:p".parse::<HostPort>(),
            Err(AddrError::Port { .. })
        ));
    }
}
