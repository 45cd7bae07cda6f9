//! Where a request's token comes from, and the facts a plugin is asked with.
//!
//! The token is, in this order: the `token` query parameter (as websockify reads it, `+` and
//! percent escapes decoded); a `token` cookie (noVNC behind a login page); or a
//! `base64url.bearer.authorization.k8s.io.<token>` entry in `Sec-WebSocket-Protocol` (how
//! Kubernetes and KubeVirt consoles pass a bearer token from a browser). With `--host-token`
//! it is the Host header without its port (IPv6 literals keep their brackets; websockify cut
//! them at the first colon).

use base64::Engine;

use crate::plugin::Query;
use crate::request::{BEARER_PROTOCOL_PREFIX, Facts};

/// The value of query parameter `name`, decoded as a form value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The value of cookie `name`.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
}

/// The token of a `base64url.bearer.authorization.k8s.io.` subprotocol entry.
pub fn bearer_protocol(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(BEARER_PROTOCOL_PREFIX)
                .map(str::to_string)
        })
        .and_then(|encoded| {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()?;
            String::from_utf8(raw).ok()
        })
}

/// The Host header without its port.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    host.split(':').next().unwrap_or(host)
}

/// What a plugin is asked about this request: its facts, and the token found where
/// `host_token` says to look.
pub fn query(facts: &Facts, host_token: bool) -> Query {
    let request = &facts.head;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let query = request.uri().query().unwrap_or("").to_string();
    let host = header("host");
    let token = if host_token {
        host_without_port(&host).to_string()
    } else {
        query_param(&query, "token")
            .or_else(|| cookie(request.headers(), "token"))
            .or_else(|| bearer_protocol(request.headers()))
            .unwrap_or_default()
    };
    let origin = match header("origin") {
        o if o.is_empty() => header("sec-websocket-origin"),
        o => o,
    };
    Query {
        token,
        path: request.uri().path().to_string(),
        query,
        host,
        origin,
        client_addr: facts.client.to_string(),
        client_cert_cn: facts.channel.client_cert_cn.clone().unwrap_or_default(),
        headers: request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_the_query() {
        assert_eq!(query_param("token=abc", "token").as_deref(), Some("abc"));
        assert_eq!(
            query_param("a=1&token=x%2By+z&b", "token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(query_param("", "token"), None);
    }

    #[test]
    fn tokens_from_cookies_and_bearer_subprotocols() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "session=1; token=\"abc\"".parse().unwrap());
        assert_eq!(cookie(&h, "token").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "tok"), None);
        // "vnc/01" in unpadded base64url.
        h.append(
            "sec-websocket-protocol",
            "binary, base64url.bearer.authorization.k8s.io.dm5jLzAx"
                .parse()
                .unwrap(),
        );
        assert_eq!(bearer_protocol(&h).as_deref(), Some("vnc/01"));
    }

    #[test]
    fn host_tokens_keep_ipv6_brackets() {
        assert_eq!(
            host_without_port("vnc1.example.com:6080"),
            "vnc1.example.com"
        );
        assert_eq!(host_without_port("vnc1"), "vnc1");
        assert_eq!(host_without_port("[::1]:6080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
