//! `--trusted-proxies`: the client's address and scheme from `X-Forwarded-For` /
//! `X-Forwarded-Proto` or from `Forwarded` (RFC 7239), whichever `--forwarded-header` names,
//! honoured only when the request comes from a proxy the operator trusts. From anyone else
//! these headers change nothing: a client can write them, so believing them would let anyone
//! choose the address it is logged, limited and authorised as. For the same reason only one
//! family is read: a front proxy appends to the one it speaks and passes a client's copy of
//! the other through untouched.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The networks whose forwarded headers are believed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;
    /// Networks or addresses separated by commas or white space.
    fn from_str(s: &str) -> Result<TrustedProxies, String> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`{n}` is not a network or address: expected e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// `--forwarded-header`: the family of headers that names the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` and `X-Forwarded-Proto`, as nginx, HAProxy and most ingresses send.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        })
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<ForwardedHeader, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(format!(
                "`{s}` is not a forwarded header: expected x-forwarded-for or forwarded"
            )),
        }
    }
}

/// What the forwarded headers of a trusted request say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forwarded {
    /// The first address, from the right, that is not a trusted proxy (with its port when
    /// `Forwarded` gave one).
    pub client: Option<SocketAddr>,
    /// The scheme the nearest proxy was reached by was `https`/`wss`.
    pub secure: Option<bool>,
}

/// Reads the forwarded headers of `family` of a request that came from `peer`. Nothing is
/// believed unless `peer` is trusted, and the other family is never read.
pub fn resolve(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &TrustedProxies,
    family: ForwardedHeader,
) -> Forwarded {
    if !trusted.contains(peer) {
        return Forwarded::default();
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let (hops, proto): (Vec<Option<SocketAddr>>, Option<String>) = match family {
        ForwardedHeader::Forwarded => {
            let elements: Vec<Vec<(String, String)>> =
                values("forwarded").iter().map(|e| pairs(e)).collect();
            let hops = elements
                .iter()
                .filter_map(|e| e.iter().find(|(k, _)| k == "for"))
                .map(|(_, v)| node(v))
                .collect();
            let proto = elements
                .last()
                .and_then(|e| e.iter().find(|(k, _)| k == "proto"))
                .map(|(_, v)| v.clone());
            (hops, proto)
        }
        ForwardedHeader::XForwardedFor => {
            let hops = values("x-forwarded-for").iter().map(|v| node(v)).collect();
            (hops, values("x-forwarded-proto").last().cloned())
        }
    };
    // From the nearest hop outwards: skip our trusted proxies; the first other address is the
    // client. An entry we cannot read ("unknown", an obfuscated name) ends the walk: what
    // lies beyond it was reported by nobody we trust.
    let mut client = None;
    for hop in hops.iter().rev() {
        match hop {
            Some(addr) => {
                client = Some(*addr);
                if !trusted.contains(addr.ip()) {
                    break;
                }
            }
            None => break,
        }
    }
    let secure = proto.map(|p| {
        let p = p.to_ascii_lowercase();
        p == "https" || p == "wss"
    });
    Forwarded { client, secure }
}

/// The `key=value` pairs of one `Forwarded` element, keys lowercased, quotes removed.
fn pairs(element: &str) -> Vec<(String, String)> {
    element
        .split(';')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect()
}

/// A node: `192.0.2.7`, `192.0.2.7:4711`, `[2001:db8::7]`, `[2001:db8::7]:4711`, or a bare
/// IPv6 address (X-Forwarded-For writes them so). `None` for `unknown` and obfuscated names.
fn node(v: &str) -> Option<SocketAddr> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Some(addr);
    }
    let inner = v.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            resolve(&h, ip("192.0.2.1"), &trusted, XFF),
            Forwarded::default()
        );
        let got = resolve(&h, ip("10.1.2.3"), &trusted, XFF);
        assert_eq!(got.client, Some("198.51.100.7:0".parse().unwrap()));
        assert_eq!(got.secure, Some(true));
        // A mapped IPv4 peer of a dual-stack listener is the same peer.
        assert!(
            resolve(&h, ip("::ffff:10.1.2.3"), &trusted, XFF)
                .client
                .is_some()
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_right_past_trusted_hops() {
        let trusted: TrustedProxies = "10.0.0.0/8, 127.0.0.1".parse().unwrap();
        // The client spoofed 1.2.3.4 in front; its real address was appended by our proxies.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.5, 10.0.0.2")]);
        let got = resolve(&h, ip("127.0.0.1"), &trusted, XFF);
        assert_eq!(got.client, Some("203.0.113.5:0".parse().unwrap()));
        // Everything trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(
            resolve(&h, ip("127.0.0.1"), &trusted, XFF).client,
            Some("10.9.9.9:0".parse().unwrap())
        );
        // An unreadable hop ends the walk at the last trusted one before it.
        let h = headers(&[("x-forwarded-for", "203.0.113.5, unknown, 10.0.0.2")]);
        assert_eq!(
            resolve(&h, ip("127.0.0.1"), &trusted, XFF).client,
            Some("10.0.0.2:0".parse().unwrap())
        );
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.5"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(
            resolve(&h, ip("127.0.0.1"), &trusted, XFF).client,
            Some("203.0.113.5:0".parse().unwrap())
        );
    }

    #[test]
    fn rfc_7239_forwarded() {
        let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
        let h = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=127.0.0.5"#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let got = resolve(&h, ip("127.0.0.1"), &trusted, ForwardedHeader::Forwarded);
        assert_eq!(got.client, Some("[2001:db8::7]:4711".parse().unwrap()));
        // proto from the nearest element, which has none here.
        assert_eq!(got.secure, None);
        let h = headers(&[("forwarded", "For=192.0.2.60;Proto=http;By=203.0.113.43")]);
        let got = resolve(&h, ip("127.0.0.1"), &trusted, ForwardedHeader::Forwarded);
        assert_eq!(got.client, Some("192.0.2.60:0".parse().unwrap()));
        assert_eq!(got.secure, Some(false));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(
            resolve(&h, ip("127.0.0.1"), &trusted, ForwardedHeader::Forwarded).client,
            None
        );
    }

    /// Only the family chosen is read: a client's own `Forwarded` passes a proxy that appends
    /// to `X-Forwarded-For` untouched, and must not name the client (nor the other way round).
    #[test]
    fn the_other_family_is_never_read() {
        let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
        let h = headers(&[
            ("forwarded", "for=198.51.100.1;proto=https"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        let got = resolve(&h, ip("127.0.0.1"), &trusted, XFF);
        assert_eq!(got.client, Some("203.0.113.5:0".parse().unwrap()));
        assert_eq!(got.secure, None, "Forwarded's proto is not read either");
        let got = resolve(&h, ip("127.0.0.1"), &trusted, ForwardedHeader::Forwarded);
        assert_eq!(got.client, Some("198.51.100.1:0".parse().unwrap()));
        // A forged Forwarded alone, with the default family: nothing is believed.
        let forged = headers(&[("forwarded", "for=198.51.100.1")]);
        assert_eq!(
            resolve(&forged, ip("127.0.0.1"), &trusted, XFF).client,
            None
        );
        assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert!(
            "via"
                .parse::<ForwardedHeader>()
                .unwrap_err()
                .contains("x-forwarded-for")
        );
    }

    #[test]
    fn lists_parse_and_refuse_with_the_forms() {
        let t: TrustedProxies = "10.0.0.0/8 fd00::/8,192.0.2.7".parse().unwrap();
        assert_eq!(t.to_string(), "10.0.0.0/8,fd00::/8,192.0.2.7/32");
        let e = "10.0.0.0/8,nope".parse::<TrustedProxies>().unwrap_err();
        assert!(e.contains("`nope`") && e.contains("10.0.0.0/8"), "{e}");
    }
}
