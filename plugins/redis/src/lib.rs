//! websockify's `TokenRedis`: tokens live in a Redis server, so every replica behind a load
//! balancer sees the same ones.
//!
//! The source is websockify's `host[:port[:db[:password[:namespace]]]]` (empty fields take the
//! defaults 6379 and 0; a field in double quotes may contain colons, e.g. a nested namespace
//! `"first:second"`). The key is `namespace:token` (or the token alone), and its value is
//! `{"host": "host:port"}` or plain `host:port`. A missing key is an unknown token (404); an
//! unreachable server is an error for that request (502). Connections come from a small pool
//! and are made on first use, so a Redis that is briefly down at start does not stop the proxy.

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use redis::Commands;
use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

/// How long a lookup may wait for Redis: well inside the proxy's 5 s plugin timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Connections kept for concurrent lookups.
const POOL_SIZE: u32 = 8;

/// The parts of a TokenRedis source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub password: Option<String>,
    /// With its trailing `:` when set, so that the key is `namespace + token`.
    pub namespace: String,
}

/// Splits at colons outside double quotes, dropping the quotes (websockify's
/// `parse_source_args`).
fn fields(source: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in source.chars() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

impl Source {
    pub fn parse(source: &str) -> Result<Source, String> {
        let bad = || {
            format!(
                "--token-source `{source}` is not <host>[:<port>[:<db>[:<password>[:<namespace>]]]]"
            )
        };
        let f = fields(source);
        if f.len() > 5 || f[0].is_empty() {
            return Err(bad());
        }
        let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
        let port = match get(1) {
            "" => 6379,
            p => p.parse().map_err(|_| bad())?,
        };
        let db = match get(2) {
            "" => 0,
            d => d.parse().map_err(|_| bad())?,
        };
        let password = Some(get(3).to_string()).filter(|p| !p.is_empty());
        let namespace = match get(4) {
            "" => String::new(),
            ns => format!("{ns}:"),
        };
        Ok(Source {
            host: get(0).to_string(),
            port,
            db,
            password,
            namespace,
        })
    }

    fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let auth = match &self.password {
            Some(p) => format!(":{}@", utf8_percent_encode(p, NON_ALPHANUMERIC)),
            None => String::new(),
        };
        format!("redis://{auth}{host}:{}/{}", self.port, self.db)
    }
}

/// A stored value as a target: `{"host": "h:p"}` or `h:p`.
pub fn parse_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let target = if value.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(value).map_err(|e| format!("the token's JSON value: {e}"))?;
        json.get("host")
            .and_then(|h| h.as_str())
            .ok_or("the token's JSON value has no \"host\"")?
            .to_string()
    } else {
        value.to_string()
    };
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(target),
        _ => Err(format!("the token's value `{target}` is not host:port")),
    }
}

/// `TokenRedis`.
pub struct TokenRedis {
    source: Source,
    pool: r2d2::Pool<redis::Client>,
}

impl std::fmt::Debug for TokenRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRedis")
            .field("host", &self.source.host)
            .field("port", &self.source.port)
            .finish_non_exhaustive()
    }
}

impl Plugin for TokenRedis {
    const NAME: &'static str = "TokenRedis";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        let source = Source::parse(config)?;
        let client = redis::Client::open(source.url()).map_err(|e| format!("Redis: {e}"))?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(TIMEOUT)
            .build_unchecked(client);
        Ok(TokenRedis { source, pool })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        if request.token.is_empty() {
            return Outcome::Refuse {
                status: 404,
                reason: "no token given".to_string(),
            };
        }
        let mut conn = match self.pool.get() {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Error(format!(
                    "Redis {}:{}: {e}",
                    self.source.host, self.source.port
                ));
            }
        };
        if let Err(e) = conn
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(TIMEOUT)))
        {
            return Outcome::Error(format!("Redis: {e}"));
        }
        let key = format!("{}{}", self.source.namespace, request.token);
        match conn.get::<_, Option<String>>(key) {
            Ok(Some(value)) => match parse_value(&value) {
                Ok(target) => Outcome::Target(target),
                Err(why) => Outcome::Error(why),
            },
            Ok(None) => Outcome::Refuse {
                status: 404,
                reason: "unknown token".to_string(),
            },
            Err(e) => Outcome::Error(format!("Redis: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websockify_source_forms() {
        let s = Source::parse("my-redis-host").unwrap();
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.db,
                s.password,
                s.namespace.as_str()
            ),
            ("my-redis-host", 6379, 0, None, "")
        );
        let s = Source::parse("my-redis-host:::verysecretpass").unwrap();
        assert_eq!(
            (s.port, s.db, s.password.as_deref()),
            (6379, 0, Some("verysecretpass"))
        );
        let s = Source::parse("my-redis-host::::\"first-ns:second-ns\"").unwrap();
        assert_eq!(s.namespace, "first-ns:second-ns:");
        let s = Source::parse("h:6380:1:p@ss:app").unwrap();
        assert_eq!((s.port, s.db, s.namespace.as_str()), (6380, 1, "app:"));
        assert_eq!(s.url(), "redis://:p%40ss@h:6380/1");
        assert!(Source::parse("").is_err());
        assert!(Source::parse("h:notaport").is_err());
        assert!(Source::parse("h:1:2:3:4:5").is_err());
    }

    #[test]
    fn stored_values() {
        assert_eq!(
            parse_value(r#"{"host": "127.0.0.1:5000"}"#),
            Ok("127.0.0.1:5000".into())
        );
        assert_eq!(parse_value(" vnc:5901\n"), Ok("vnc:5901".into()));
        assert!(parse_value(r#"{"port": 1}"#).is_err());
        assert!(parse_value("nonsense").is_err());
    }
}
