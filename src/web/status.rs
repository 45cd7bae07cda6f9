//! `/websockify/status.json`: the live numbers the landing page (`web/index.html`) shows, on
//! the proxy port whenever `--web` is on.
//!
//! The proxy port is often public while `--metrics-listen` is not, so this answers
//! aggregates only: the version, the uptime, session counts and relayed bytes. Never an
//! address, a target, a token or a plugin name. The path sits under `/websockify/`, which
//! noVNC and websockify's clients use as the WebSocket path, so it does not meet a web
//! directory's own files in practice; if one has such a file, this answer wins (README, "The
//! web directory").

use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde::Serialize;

use super::WebBody;

/// The reserved path.
pub const PATH: &str = "/websockify/status.json";

/// The answer's body. Field names are the page's contract: change them with `web/index.html`.
#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    uptime_seconds: u64,
    sessions_active: u64,
    sessions_total: u64,
    /// Payload bytes from clients to targets.
    bytes_from_client: u64,
    /// Payload bytes from targets to clients.
    bytes_to_client: u64,
}

/// The status now, for a server started at `started`.
pub(super) fn response(started: Instant) -> Response<WebBody> {
    let totals = crate::telemetry::metrics::get().totals();
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: started.elapsed().as_secs(),
        sessions_active: totals.sessions_active,
        sessions_total: totals.sessions_started,
        bytes_from_client: totals.from_client,
        bytes_to_client: totals.to_client,
    };
    // Only numbers and a version string of our own: serialising cannot fail, and if it ever
    // did, an empty object still parses on the page.
    let mut body = serde_json::to_vec(&status).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut r = Response::new(WebBody::Bytes(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // Live numbers: a cached copy would show a stale server.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
