//! websockify's HTTP resolvers. The source is a URL with a `%s` where the token goes; the
//! token is percent-encoded first, so it can change nothing but its own place in the URL.
//!
//! - `BaseTokenAPI`: a 2xx answer's body is `host:port`.
//! - `JSONTokenApi`: a 2xx answer's body is `{"host": "...", "port": 5900}` (port as a number
//!   or a string).
//!
//! Any other status means the token is unknown (404), as websockify treats it; an unreachable
//! API or a body that does not parse is an error (the request gets 502).

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

/// Below the proxy's 5 s plugin timeout, so a slow API is reported as such by us.
const TIMEOUT: Duration = Duration::from_secs(4);

/// What is encoded in a token: everything but letters, digits and `-`, `_`, `~`. The dot is
/// encoded too, so that a token `..` can never become a dot segment of the path.
const TOKEN: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// The most we read of an answer: a target is a few dozen bytes.
const MAX_BODY: u64 = 64 * 1024;

/// The shared part: the URL template and an HTTP agent.
#[derive(Debug)]
struct Api {
    template: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(config: &str) -> Result<Api, String> {
        if !config.contains("%s") {
            return Err("needs --token-source URL with %s where the token goes".to_string());
        }
        if !(config.starts_with("http://") || config.starts_with("https://")) {
            return Err(format!("`{config}` is not an http:// or https:// URL"));
        }
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .timeout_global(Some(TIMEOUT))
                .http_status_as_error(false)
                .build(),
        );
        Ok(Api {
            template: config.to_string(),
            agent,
        })
    }

    /// The body of a 2xx answer, `None` for another status, or an error.
    fn fetch(&self, token: &str) -> Result<Option<String>, String> {
        let encoded = utf8_percent_encode(token, TOKEN).to_string();
        let url = self.template.replacen("%s", &encoded, 1);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("token API: {e}"))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map(Some)
            .map_err(|e| format!("token API answer: {e}"))
    }
}

fn lookup(api: &Api, request: &Request<'_>, parse: fn(&str) -> Result<String, String>) -> Outcome {
    if request.token.is_empty() {
        return Outcome::Refuse {
            status: 404,
            reason: "no token given".to_string(),
        };
    }
    match api.fetch(request.token) {
        Ok(Some(body)) => match parse(&body) {
            Ok(target) => Outcome::Target(target),
            Err(why) => Outcome::Error(why),
        },
        Ok(None) => Outcome::Refuse {
            status: 404,
            reason: "unknown token".to_string(),
        },
        Err(why) => Outcome::Error(why),
    }
}

/// `host:port` as a target, IPv6 hosts bracketed.
fn target(host: &str, port: &str) -> Result<String, String> {
    let host = host.trim();
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("token API gave port `{port}`, not a number"))?;
    if host.is_empty() {
        return Err("token API gave no host".to_string());
    }
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

fn parse_plain(body: &str) -> Result<String, String> {
    let body = body.trim();
    let (host, port) = body
        .rsplit_once(':')
        .ok_or_else(|| format!("token API answer `{body}` is not host:port"))?;
    target(host, port)
}

fn parse_json(body: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("token API answer is not JSON: {e}"))?;
    let host = value
        .get("host")
        .and_then(|h| h.as_str())
        .ok_or("token API answer has no \"host\" string")?;
    let port = match value.get("port") {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => return Err("token API answer has no \"port\"".to_string()),
    };
    target(host, &port)
}

/// `BaseTokenAPI`.
#[derive(Debug)]
pub struct BaseTokenAPI {
    api: Api,
}

impl Plugin for BaseTokenAPI {
    const NAME: &'static str = "BaseTokenAPI";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        Ok(BaseTokenAPI {
            api: Api::new(config)?,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        lookup(&self.api, request, parse_plain)
    }
}

/// `JSONTokenApi`.
#[derive(Debug)]
pub struct JSONTokenApi {
    api: Api,
}

impl Plugin for JSONTokenApi {
    const NAME: &'static str = "JSONTokenApi";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        Ok(JSONTokenApi {
            api: Api::new(config)?,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        lookup(&self.api, request, parse_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_plain("vnc.example:5900\n"),
            Ok("vnc.example:5900".into())
        );
        assert_eq!(parse_plain("[::1]:5900"), Ok("[::1]:5900".into()));
        assert!(parse_plain("nonsense").is_err());
        assert_eq!(
            parse_json(r#"{"host":"h","port":5901}"#),
            Ok("h:5901".into())
        );
        assert_eq!(
            parse_json(r#"{"host":"::1","port":"5902"}"#),
            Ok("[::1]:5902".into())
        );
        assert!(parse_json(r#"{"host":"h"}"#).is_err());
        assert!(parse_json("h:1").is_err());
    }

    #[test]
    fn sources_are_checked() {
        assert!(BaseTokenAPI::create("http://api/lookup").is_err());
        assert!(BaseTokenAPI::create("ftp://api/%s").is_err());
        assert!(JSONTokenApi::create("http://127.0.0.1:1/t/%s").is_ok());
    }
}
