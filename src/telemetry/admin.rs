//! The admin API on the operations port (`--metrics-listen`), on only with `--admin-token`:
//!
//! - `GET /sessions`: the live sessions, `{"sessions": [...]}` (see
//!   [`crate::session::registry::View`] for each object's fields).
//! - `GET /sessions/{id}`: one of them.
//! - `DELETE /sessions/{id}[?reason=TEXT]`: ends it with close 1008 and the reason (default
//!   "Closed by the operator"), logged with the session's line; `202` at once, `404` when
//!   there is no such session.
//!
//! Every request must carry `Authorization: Bearer <token>`; without it, or with a wrong one,
//! `401` (counted in `websockify_admin_requests_total{result="unauthorized"}` and logged). The
//! token is compared in constant time. The proxy port never serves any of this.

use http::{Method, Request, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::session::registry::{Ended, Registry};
use crate::telemetry::metrics;

/// The API's prefix on the operations port.
pub const PREFIX: &str = "/sessions";

/// What the admin API needs: its token and the live sessions.
#[derive(Debug, Clone)]
pub struct Admin {
    pub token: Secret,
    pub sessions: Registry,
}

/// An answer: status, content type, body, and a `WWW-Authenticate` challenge with a 401.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub challenge: bool,
}

const JSON: &str = "application/json";

fn json(status: StatusCode, value: &serde_json::Value) -> Answer {
    // A `Value` built here always serialises; an empty body would still be an answer.
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Answer {
        status,
        content_type: JSON,
        body,
        challenge: false,
    }
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

impl Admin {
    /// Answers a request whose path is under [`PREFIX`]; `client` is who asked, for the log.
    pub fn answer(&self, request: &Request<()>, client: &str) -> Answer {
        let m = metrics::get();
        if !self.authorized(request) {
            m.admin_request("unauthorized");
            tracing::warn!(
                client,
                method = %request.method(),
                path = request.uri().path(),
                "admin API: request without the right bearer token refused (401)"
            );
            let mut answer = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token (--admin-token) is required",
            );
            answer.challenge = true;
            return answer;
        }
        let path = request.uri().path();
        let rest = path.strip_prefix(PREFIX).unwrap_or(path);
        let read = matches!(*request.method(), Method::GET | Method::HEAD);
        // `/sessions` or `/sessions/{id}`; anything else under the prefix is no resource.
        let id = match rest {
            "" | "/" => None,
            _ => match rest.strip_prefix('/').map(str::parse::<u64>) {
                Some(Ok(id)) => Some(id),
                _ => {
                    m.admin_request("bad_request");
                    return error(
                        StatusCode::NOT_FOUND,
                        "GET /sessions, GET or DELETE /sessions/{id} (a number)",
                    );
                }
            },
        };
        match id {
            None if read => {
                m.admin_request("listed");
                let sessions = self.sessions.snapshot();
                json(StatusCode::OK, &serde_json::json!({ "sessions": sessions }))
            }
            Some(id) if read => match self.sessions.snapshot().into_iter().find(|v| v.id == id) {
                Some(view) => {
                    m.admin_request("listed");
                    json(StatusCode::OK, &serde_json::json!(view))
                }
                None => {
                    m.admin_request("not_found");
                    error(StatusCode::NOT_FOUND, "no such session")
                }
            },
            Some(id) if request.method() == Method::DELETE => {
                self.end(id, reason(request.uri().query()).as_deref(), client)
            }
            _ => {
                m.admin_request("bad_request");
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "GET /sessions, GET or DELETE /sessions/{id}",
                )
            }
        }
    }

    fn end(&self, id: u64, reason: Option<&str>, client: &str) -> Answer {
        let m = metrics::get();
        match self.sessions.end(id, reason) {
            Ended::Asked | Ended::AlreadyAsked => {
                m.admin_request("ended");
                tracing::info!(
                    id,
                    client,
                    reason = reason.unwrap_or(crate::session::registry::DEFAULT_REASON),
                    "admin API: session {id} asked to end (close 1008)"
                );
                json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "id": id, "closing": true }),
                )
            }
            Ended::Unknown => {
                m.admin_request("not_found");
                error(StatusCode::NOT_FOUND, "no such session")
            }
        }
    }

    /// The request carries `Authorization: Bearer <token>` with our token.
    fn authorized(&self, request: &Request<()>) -> bool {
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let Some((scheme, given)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(
                given
                    .trim()
                    .as_bytes()
                    .ct_eq(self.token.expose().as_bytes()),
            )
    }
}

/// The `reason` of a `DELETE`'s query, percent-decoded (`+` as a space, as forms send it).
fn reason(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == "reason").then(|| {
                let value = value.replace('+', " ");
                percent_encoding::percent_decode_str(&value)
                    .decode_utf8_lossy()
                    .trim()
                    .to_string()
            })
        })
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::activity::Activity;
    use crate::session::registry::Facts;
    use std::sync::Arc;

    const TOKEN: &str = "0123456789abcdef0123";

    fn admin() -> Admin {
        Admin {
            token: Secret::new(TOKEN.into()),
            sessions: Registry::on(),
        }
    }

    fn request(method: Method, uri: &str, auth: Option<&str>) -> Request<()> {
        let mut r = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            r = r.header(header::AUTHORIZATION, auth);
        }
        r.body(()).unwrap()
    }

    fn body(a: &Answer) -> serde_json::Value {
        serde_json::from_slice(&a.body).unwrap()
    }

    #[test]
    fn without_the_token_every_request_is_401() {
        let admin = admin();
        for auth in [
            None,
            Some("Bearer wrong-token-0000000"),
            Some("Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM="),
            Some(&*format!("Bearer {TOKEN}x")),
            Some("Bearer"),
        ] {
            let a = admin.answer(&request(Method::GET, "/sessions", auth), "t");
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert!(a.challenge);
        }
        let a = admin.answer(
            &request(Method::GET, "/sessions", Some(&format!("bearer {TOKEN}"))),
            "t",
        );
        assert_eq!(a.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn lists_shows_and_ends_sessions() {
        let admin = admin();
        let auth = format!("Bearer {TOKEN}");
        let activity = Arc::new(Activity::new(None, None).kept_always());
        let facts = Facts {
            id: 5,
            client: "127.0.0.1:1".into(),
            target: "localhost:5900".into(),
            transport: "http1",
            protocol: "hybi-13/binary".into(),
            compression: None,
            tls: false,
        };
        let listed = admin.sessions.list(|| facts, activity).unwrap();
        let list = admin.answer(&request(Method::GET, "/sessions", Some(&auth)), "t");
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(body(&list)["sessions"][0]["id"], 5);
        let one = admin.answer(&request(Method::GET, "/sessions/5", Some(&auth)), "t");
        assert_eq!(body(&one)["target"], "localhost:5900");
        let gone = admin.answer(&request(Method::DELETE, "/sessions/6", Some(&auth)), "t");
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        let bad = admin.answer(&request(Method::DELETE, "/sessions/x", Some(&auth)), "t");
        assert_eq!(bad.status, StatusCode::NOT_FOUND);
        let post = admin.answer(&request(Method::POST, "/sessions/5", Some(&auth)), "t");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        let end = admin.answer(
            &request(
                Method::DELETE,
                "/sessions/5?reason=back+in%205%20minutes",
                Some(&auth),
            ),
            "t",
        );
        assert_eq!(end.status, StatusCode::ACCEPTED);
        listed.entry().eviction.stop().asked().await;
        assert_eq!(listed.entry().eviction.close().reason, "back in 5 minutes");
    }

    #[test]
    fn reasons_are_decoded() {
        assert_eq!(reason(Some("reason=a%20b")).as_deref(), Some("a b"));
        assert_eq!(reason(Some("x=1&reason=a+b")).as_deref(), Some("a b"));
        assert_eq!(reason(Some("reason=")), None);
        assert_eq!(reason(None), None);
    }
}
