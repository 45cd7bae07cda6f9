//! websockify's auth plugins, with its answers: `BasicHTTPAuth` (401 with a Basic challenge
//! when credentials are missing or wrong, 403 when the header is malformed), `ExpectOrigin`
//! (403 "Invalid Origin"), `ClientCertCNAuth` (403 unless the verified client certificate's
//! common name is listed; the proxy takes the name from the TLS session, never from a header).

use base64::Engine;
use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

/// websockify's challenge realm.
pub const REALM: &str = "Basic realm=\"Websockify\"";

fn forbidden(reason: &str) -> Outcome {
    Outcome::Refuse {
        status: 403,
        reason: reason.to_string(),
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell an
/// attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `BasicHTTPAuth`: the source is `user:password`, or a file of such lines (`#` comments).
#[derive(Debug)]
pub struct BasicHTTPAuth {
    credentials: Vec<String>,
}

impl BasicHTTPAuth {
    fn demand() -> Outcome {
        Outcome::RefuseWith {
            status: 401,
            reason: "Unauthorized".to_string(),
            headers: vec![("WWW-Authenticate".to_string(), REALM.to_string())],
        }
    }
}

impl Plugin for BasicHTTPAuth {
    const NAME: &'static str = "BasicHTTPAuth";
    const KIND: Kind = Kind::Auth;

    fn create(config: &str) -> Result<Self, String> {
        let path = std::path::Path::new(config);
        let credentials: Vec<String> = if path.is_file() {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {config}: {e}"))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        } else {
            vec![config.to_string()]
        };
        if credentials.iter().any(|c| !c.contains(':')) || credentials.is_empty() {
            return Err("needs --auth-source user:password (or a file of such lines)".to_string());
        }
        Ok(BasicHTTPAuth { credentials })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        let Some(header) = request.header("authorization") else {
            return Self::demand();
        };
        let Some(encoded) = header.strip_prefix("Basic ") else {
            return forbidden("Forbidden");
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return forbidden("Forbidden");
        };
        // websockify decodes the pair as ISO-8859-1, where every byte is one character.
        let given: String = raw.iter().map(|&b| b as char).collect();
        if !given.contains(':') {
            return forbidden("Forbidden");
        }
        let matched = self
            .credentials
            .iter()
            .fold(false, |any, c| any | same(c.as_bytes(), given.as_bytes()));
        if matched {
            Outcome::Allow
        } else {
            Self::demand()
        }
    }
}

/// A space-separated list from the source; an empty value is never allowed.
#[derive(Debug)]
struct AllowList(Vec<String>);

impl AllowList {
    fn from_source(config: &str) -> AllowList {
        AllowList(config.split_whitespace().map(str::to_string).collect())
    }

    fn check(&self, value: &str, refusal: &str) -> Outcome {
        if !value.is_empty() && self.0.iter().any(|allowed| allowed == value) {
            Outcome::Allow
        } else {
            forbidden(refusal)
        }
    }
}

/// `ExpectOrigin`: the source is a space-separated list of allowed origins.
#[derive(Debug)]
pub struct ExpectOrigin {
    origins: AllowList,
}

impl Plugin for ExpectOrigin {
    const NAME: &'static str = "ExpectOrigin";
    const KIND: Kind = Kind::Auth;

    fn create(config: &str) -> Result<Self, String> {
        Ok(ExpectOrigin {
            origins: AllowList::from_source(config),
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        self.origins.check(request.origin, "Invalid Origin")
    }
}

/// `ClientCertCNAuth`: the source is a space-separated list of allowed common names.
#[derive(Debug)]
pub struct ClientCertCNAuth {
    names: AllowList,
}

impl Plugin for ClientCertCNAuth {
    const NAME: &'static str = "ClientCertCNAuth";
    const KIND: Kind = Kind::Auth;

    fn create(config: &str) -> Result<Self, String> {
        Ok(ClientCertCNAuth {
            names: AllowList::from_source(config),
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        self.names.check(request.client_cert_cn, "Forbidden")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<'_> {
        Request {
            headers: vec![("Authorization", value)],
            ..Request::default()
        }
    }

    #[test]
    fn basic_auth_answers_like_websockify() {
        let auth = BasicHTTPAuth::create("alice:s3cret").unwrap();
        let status = |o: Outcome| match o {
            Outcome::Allow => 200,
            Outcome::Refuse { status, .. } | Outcome::RefuseWith { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(auth.call(&Request::default())), 401);
        // "alice:s3cret" and "alice:wrong".
        assert_eq!(status(auth.call(&with_auth("Basic YWxpY2U6czNjcmV0"))), 200);
        assert_eq!(status(auth.call(&with_auth("Basic YWxpY2U6d3Jvbmc="))), 401);
        assert_eq!(status(auth.call(&with_auth("Bearer x"))), 403);
        assert_eq!(status(auth.call(&with_auth("Basic !!!"))), 403);
        assert_eq!(
            status(auth.call(&with_auth("Basic YWxpY2U="))),
            403,
            "no colon"
        );
        match auth.call(&Request::default()) {
            Outcome::RefuseWith { headers, .. } => assert_eq!(headers[0].1, REALM),
            other => panic!("{other:?}"),
        }
        assert!(BasicHTTPAuth::create("nocolon").is_err());
    }

    #[test]
    fn origins_and_common_names() {
        let origin = ExpectOrigin::create("https://a.example https://b.example").unwrap();
        let ask = |o| Request {
            origin: o,
            ..Request::default()
        };
        assert_eq!(origin.call(&ask("https://b.example")), Outcome::Allow);
        assert!(matches!(
            origin.call(&ask("https://evil.example")),
            Outcome::Refuse { status: 403, .. }
        ));
        assert!(matches!(
            origin.call(&ask("")),
            Outcome::Refuse { status: 403, .. }
        ));
        let cn = ClientCertCNAuth::create("alice bob").unwrap();
        let ask = |c| Request {
            client_cert_cn: c,
            ..Request::default()
        };
        assert_eq!(cn.call(&ask("bob")), Outcome::Allow);
        assert!(matches!(
            cn.call(&ask("mallory")),
            Outcome::Refuse { status: 403, .. }
        ));
        assert!(matches!(
            cn.call(&ask("")),
            Outcome::Refuse { status: 403, .. }
        ));
    }
}
