//! The observability listener (`--metrics-listen`), on a port of its own so that it can stay
//! private while the proxy port is public:
//!
//! - `/metrics`: every series of [`crate::telemetry::metrics`], Prometheus text format.
//! - `/healthz`: 200 while the process runs (a liveness probe).
//! - `/readyz`: 200 while the proxy port accepts connections and no shutdown is draining;
//!   503 before the proxy listens and from the first SIGTERM on (a readiness probe).
//! - `/sessions`: the admin API ([`crate::telemetry::admin`]), with `--admin-token` only.
//!
//! Requests are read with the proxy's own bounded head reader and answered with one response
//! and `Connection: close`, which every scraper and probe handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::edge::http::{TEXT_PLAIN, close_gracefully, read_head, write_head};
use crate::edge::listen::Listener;
use crate::edge::stream::ClientStream;
use crate::telemetry::admin::{self, Admin};

/// What `/readyz` reports; the server flips it as it starts and drains.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves until the task is dropped with the runtime, through the drain after a signal.
pub async fn serve(listener: Listener, readiness: Arc<Readiness>, admin: Option<Admin>) {
    let admin = admin.map(Arc::new);
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                tokio::spawn(answer(stream, client, readiness.clone(), admin.clone()));
            }
            Err(e) => {
                tracing::debug!("metrics listener accept: {e}");
                // Out of descriptors, most likely: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    mut stream: ClientStream,
    client: impl std::fmt::Display,
    readiness: Arc<Readiness>,
    admin: Option<Arc<Admin>>,
) {
    let head = match read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => {
            tracing::debug!("metrics listener: {e}");
            return;
        }
    };
    let request = &head.request;
    let path = request.uri().path();
    let mut challenge = false;
    let under_admin = path == admin::PREFIX || path.starts_with("/sessions/");
    let (status, content_type, body): (StatusCode, &str, Vec<u8>) = if under_admin {
        match &admin {
            Some(admin) => {
                let answer = admin.answer(request, &client.to_string());
                challenge = answer.challenge;
                (answer.status, answer.content_type, answer.body)
            }
            None => (
                StatusCode::NOT_FOUND,
                TEXT_PLAIN,
                b"the admin API is off: start the proxy with --admin-token\n".to_vec(),
            ),
        }
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_PLAIN,
            b"GET or HEAD only\n".to_vec(),
        )
    } else {
        match request.uri().path() {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::telemetry::metrics::get().encode(),
            ),
            "/healthz" => (StatusCode::OK, TEXT_PLAIN, b"ok\n".to_vec()),
            "/readyz" if readiness.is_ready() => (StatusCode::OK, TEXT_PLAIN, b"ready\n".to_vec()),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT_PLAIN,
                b"not ready: starting or draining\n".to_vec(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT_PLAIN,
                b"/metrics, /healthz, /readyz or /sessions\n".to_vec(),
            ),
        }
    };
    let mut out = Vec::with_capacity(160 + body.len());
    let mut headers = vec![
        ("Content-Type", content_type.as_bytes()),
        ("Cache-Control", b"no-store".as_slice()),
    ];
    if challenge {
        headers.push((
            "WWW-Authenticate",
            b"Bearer realm=\"websockify\"".as_slice(),
        ));
    }
    write_head(&mut out, status, headers, Some(body.len() as u64));
    if request.method() != Method::HEAD {
        out.extend_from_slice(&body);
    }
    if stream.write_all(&out).await.is_ok() {
        close_gracefully(&mut stream).await;
    }
}
