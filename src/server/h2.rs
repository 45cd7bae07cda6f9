//! HTTP/2 connections (`--http2 on`): h2c with prior knowledge, or TLS with ALPN `h2`.
//!
//! Each stream is a request of its own, with a handler, a number and a `session` span of its
//! own, and goes through the same steps as a request on HTTP/1.1: its facts (the head, the
//! client, forwarded headers), the [`Gate`](crate::gate::Gate)'s decision, then the session
//! or the web answer. An extended CONNECT for `websocket` (RFC 8441) becomes a session on
//! the stream ([`crate::edge::h2::H2Stream`]) with the same HyBi codec and relay as a
//! socket; a refusal is a response on its stream with the same status and reason as over
//! HTTP/1.1, and the connection's other streams go on.
//!
//! The connection closes (GOAWAY, then its streams end) on shutdown, when its first stream
//! has not come within `--handshake-timeout` (a request head that never came, counted), after
//! [`IDLE`] without a stream, or when the client breaks the protocol or one of its bounds,
//! which is counted. Every write to the client is under `--send-timeout`, so a client that
//! floods frames that need an answer (PING, SETTINGS) and reads none of the answers has the
//! one answer h2 keeps waiting and then loses the connection. A connection that said GOAWAY
//! and has no stream left is dropped after [`GOING_AWAY`] even if the client never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tracing::Instrument;

use super::handler::{Handler, Session};
use super::tracker::Guard;
use crate::config::Http2;
use crate::edge::deadline::Deadline;
use crate::edge::h2::{Chunk, H2Writer};
use crate::edge::http::{MAX_HEAD_BYTES, Refusal, TEXT_PLAIN};
use crate::edge::stream::{ClientIo, ClientStream};
use crate::edge::turn::ReadTurn;
use crate::gate::admission::Permit;
use crate::request::{Channel, Facts, Transport};
use crate::session::activity::Activity;
use crate::session::target::Cleared;
use crate::telemetry::metrics::{self, HandshakeFailure};
use crate::ws::hybi::{HybiRx, HybiTx};
use crate::ws::{self, StreamDecision};

/// How long a connection stays open without a stream: a browser keeps a connection to reuse
/// it, and opens another when this one is gone. Checked once per this period, so a
/// connection without streams closes between one and two of them after its last.
pub const IDLE: Duration = Duration::from_secs(60);

/// How long a connection that said GOAWAY and has no stream left may take to close: the
/// client's answer to h2's closing PING, or the last of the answers' bytes.
const GOING_AWAY: Duration = Duration::from_secs(10);

/// Why the connection's clock rang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// No stream yet: the first must come within `--handshake-timeout`.
    FirstStream,
    /// Streams came: the connection closes after [`IDLE`] without one.
    Idle,
    /// GOAWAY said: closed after [`GOING_AWAY`] once no stream is left.
    GoingAway,
}

/// Serves an HTTP/2 connection until it ends; its streams end with it.
pub(super) async fn serve(
    conn: Handler,
    stream: ClientStream,
    mut channel: Channel,
    settings: Http2,
) {
    channel.transport = Transport::H2;
    let limits = &conn.shared.config.limits;
    let handshake_timeout = limits.handshake_timeout;
    let max_head = u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX);
    let builder = crate::edge::h2::server(settings.max_streams, max_head);
    let handshake =
        builder.handshake::<_, Chunk>(Deadline::new(ReadTurn::new(stream), limits.send_timeout));
    // The preface and the client's SETTINGS, within the time a request head has.
    let handshake = match handshake_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake).await,
        None => Ok(handshake.await),
    };
    let mut connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            metrics::get().handshake_failed(HandshakeFailure::Http2, None);
            tracing::info!(id = conn.id, client = %conn.client, "HTTP/2 handshake failed: {e}");
            return;
        }
        Err(_) => {
            metrics::get().handshake_failed(HandshakeFailure::Http2, None);
            tracing::info!(id = conn.id, client = %conn.client, "HTTP/2 handshake timed out");
            return;
        }
    };
    tracing::debug!(id = conn.id, client = %conn.client, "HTTP/2 connection");
    let open = Arc::new(Streams::default());
    let max_tasks = usize::try_from(settings.max_streams).unwrap_or(usize::MAX);
    let mut shutdown = conn.shutdown.clone();
    let mut clock = Clock::FirstStream;
    let alarm = tokio::time::sleep(handshake_timeout.unwrap_or(IDLE));
    tokio::pin!(alarm);
    let mut streams_seen = 0usize;
    loop {
        // A stream the client resets is closed for h2 at once, and no longer counts against
        // SETTINGS_MAX_CONCURRENT_STREAMS, while its task may still be deciding or
        // connecting. So this connection's own tasks are bounded too: at the bound, streams
        // wait in h2 (where resets of streams not yet accepted are counted, and more than
        // 20 end the connection) and only the connection's frames are read.
        let full = open.count() >= max_tasks;
        let next = std::future::poll_fn(|cx| {
            if full {
                connection
                    .poll_closed(cx)
                    .map(|closed| closed.err().map(Err))
            } else {
                connection.poll_accept(cx)
            }
        });
        tokio::select! {
            accepted = next => match accepted {
                Some(Ok((request, respond))) => {
                    streams_seen += 1;
                    let handler = conn.for_stream(conn.shared.next_id());
                    let span = handler.span();
                    let open = Open::new(&open);
                    let channel = channel.clone();
                    tokio::spawn(
                        async move {
                            let _open = open;
                            stream_request(handler, request, respond, channel).await;
                        }
                        .instrument(span),
                    );
                }
                Some(Err(e)) => {
                    broken(&conn, &e);
                    break;
                }
                None => break,
            },
            () = open.freed.notified(), if full => {}
            () = shutdown.draining(), if clock != Clock::GoingAway => {
                tracing::debug!(id = conn.id, "draining: GOAWAY");
                connection.graceful_shutdown();
                clock = Clock::GoingAway;
                alarm.as_mut().reset(tokio::time::Instant::now() + GOING_AWAY);
            }
            () = &mut alarm => {
                let idle = open.count() == 0;
                let next = match clock {
                    Clock::FirstStream if streams_seen == 0 => {
                        // A request head that never came, as over HTTP/1.1: nothing to
                        // drain, the GOAWAY is the last frame.
                        metrics::get().handshake_failed(HandshakeFailure::HeadTimeout, None);
                        tracing::info!(
                            id = conn.id,
                            client = %conn.client,
                            "HTTP/2: no complete request within the handshake timeout"
                        );
                        connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                        clock = Clock::GoingAway;
                        GOING_AWAY
                    }
                    Clock::FirstStream => {
                        clock = Clock::Idle;
                        IDLE
                    }
                    Clock::Idle if !idle => IDLE,
                    Clock::Idle => {
                        tracing::debug!(id = conn.id, "no stream for {}s: GOAWAY", IDLE.as_secs());
                        connection.graceful_shutdown();
                        clock = Clock::GoingAway;
                        GOING_AWAY
                    }
                    Clock::GoingAway if idle => {
                        tracing::debug!(id = conn.id, "GOAWAY said, no stream left: closed");
                        break;
                    }
                    Clock::GoingAway => GOING_AWAY,
                };
                alarm.as_mut().reset(tokio::time::Instant::now() + next);
            }
        }
    }
    tracing::debug!(
        id = conn.id,
        client = %conn.client,
        streams = streams_seen,
        "HTTP/2 connection closed"
    );
}

/// A connection that ended with an error: the client's doing when it broke the protocol or
/// a bound (h2 answers with GOAWAY and a reason) or took no byte for `--send-timeout`,
/// counted and logged; a connection that merely went away is not.
fn broken(conn: &Handler, e: &h2::Error) {
    let stalled = e.get_io().map(std::io::Error::kind) == Some(std::io::ErrorKind::TimedOut);
    if e.is_io() && !stalled {
        tracing::debug!(id = conn.id, client = %conn.client, "HTTP/2 connection: {e}");
        return;
    }
    metrics::get().handshake_failed(HandshakeFailure::Http2, None);
    tracing::info!(id = conn.id, client = %conn.client, "HTTP/2 connection closed: {e}");
}

/// The streams of a connection whose tasks are running.
#[derive(Default)]
struct Streams {
    count: AtomicUsize,
    /// Told when a task ends, so that a connection at its bound accepts again.
    freed: Notify,
}

impl Streams {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Counts a stream's task as running until dropped.
struct Open(Arc<Streams>);

impl Open {
    fn new(streams: &Arc<Streams>) -> Open {
        streams.count.fetch_add(1, Ordering::AcqRel);
        Open(streams.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// One stream's request: its facts, then a session, a web answer or a refusal. In two boxed
/// phases, as over HTTP/1.1: what deciding needed (the request head, the plugins' calls) is
/// freed before the session, which may idle for hours.
///
/// Not an `async fn`, and the request decided in a box of its own: a stream's task lives as
/// long as its session, and an `async fn` would keep its arguments (the request, 400 bytes)
/// and the decided session beside the session's future for all that time.
fn stream_request(
    handler: Handler,
    request: Request<RecvStream>,
    respond: SendResponse<Chunk>,
    channel: Channel,
) -> impl std::future::Future<Output = ()> + Send {
    let deciding = Box::pin(open(handler, request, respond, channel));
    async move {
        let Some(opened) = deciding.await else {
            return;
        };
        opened.serve().await
    }
}

/// A stream that became a session, with what the session needs.
struct Opened {
    handler: Handler,
    permit: Permit,
    target: Cleared,
    rx: HybiRx,
    tx: HybiTx,
    // Boxed strings: see `handler::Opened`.
    protocol: Box<str>,
    compression: Option<&'static str>,
    path: Box<str>,
    channel: Channel,
    activity: Arc<Activity>,
    session: Guard,
}

impl Opened {
    /// Connects the target and relays until the session ends, holding its place until then
    /// (not an `async fn`, which would keep a second copy of `self`).
    // An `async fn` would keep its arguments twice (see the doc comment).
    #[allow(clippy::manual_async_fn)]
    fn serve(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let place = Session {
                target: &self.target,
                path: &self.path,
                protocol: &self.protocol,
                compression: self.compression,
                channel: &self.channel,
                activity: &self.activity,
            };
            Box::pin(self.handler.serve(&mut self.rx, &mut self.tx, place)).await;
            drop((self.session, self.permit));
        }
    }
}

/// Decides a stream's request and answers it: the session it becomes, or `None` once a web
/// answer or a refusal was sent.
async fn open(
    mut handler: Handler,
    request: Request<RecvStream>,
    mut respond: SendResponse<Chunk>,
    mut channel: Channel,
) -> Option<Opened> {
    let began = Instant::now();
    let (parts, body) = request.into_parts();
    let protocol = parts
        .extensions
        .get::<h2::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let head = Request::from_parts(parts, ());
    tracing::Span::current().record("path", head.uri().path());
    handler.forwarded(head.headers(), &mut channel);
    let facts = Facts {
        client: handler.client,
        channel,
        head,
    };
    let send_timeout = handler.shared.config.limits.send_timeout;
    let hs = match ws::decide_stream(&facts.head, protocol.as_deref()) {
        StreamDecision::Http => {
            web(&handler, &facts, respond).await;
            return None;
        }
        StreamDecision::Refuse(refusal) => {
            metrics::get().handshake_failed(HandshakeFailure::BadUpgrade, Some(refusal.status));
            tracing::Span::current().record("status", refusal.status.as_u16());
            tracing::info!(
                id = handler.id,
                client = %handler.client,
                status = refusal.status.as_u16(),
                "WebSocket handshake refused: {}",
                refusal.reason
            );
            refuse(&mut respond, &refusal, send_timeout).await;
            return None;
        }
        StreamDecision::Connect(mut hs) => {
            hs.deflate = handler.compression(&facts.head);
            hs
        }
    };
    let (permit, target) = match handler.decide(&facts).await {
        Ok(decided) => decided,
        Err(denied) => {
            handler.denied(&facts, &denied);
            refuse(&mut respond, &denied.refusal, send_timeout).await;
            return None;
        }
    };
    let send = match respond.send_response(hs.response(), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(id = handler.id, client = %handler.client, "sending 200: {e}");
            metrics::get().handshake_failed(HandshakeFailure::ClosedEarly, None);
            return None;
        }
    };
    let (activity, bounds) = handler.bounds();
    let session = handler.shared.tracker.session();
    // RFC 6455 over the stream: the version 13 framing, whatever carries it.
    let protocol = format!(
        "hybi-13/{}",
        hs.protocol.map(ws::Subprotocol::name).unwrap_or("binary")
    );
    handler.started(&protocol, facts.channel.transport, "h2", began);
    let stream = ClientStream::new(ClientIo::H2(Box::new(crate::edge::h2::stream(body, send))));
    let deflate = handler.deflate(hs.deflate);
    let (rx, tx) = ws::hybi::session(stream, BytesMut::new(), hs.protocol, &bounds, deflate);
    let path = facts.path().into();
    let compression = hs.deflate.map(|a| a.mode());
    Some(Opened {
        handler,
        permit,
        target,
        rx,
        tx,
        protocol: protocol.into(),
        compression,
        path,
        channel: facts.channel,
        activity,
        session,
    })
}

/// A request for the web directory on a stream: the same admission, `--web-auth` and
/// answers as over HTTP/1.1, sent under `--send-timeout`.
async fn web(handler: &Handler, facts: &Facts, mut respond: SendResponse<Chunk>) {
    let limits = &handler.shared.config.limits;
    let Some(root) = &handler.shared.web else {
        let refusal = match handler.shared.gate.admit(&facts.client) {
            Ok(_permit) => handler.no_web(facts),
            Err(denied) => {
                handler.denied(facts, &denied);
                denied.refusal
            }
        };
        refuse(&mut respond, &refusal, limits.send_timeout).await;
        return;
    };
    let pass = Box::pin(handler.shared.gate.web(facts, limits.handshake_timeout)).await;
    let _permit = match pass {
        Ok(permit) => permit,
        Err(denied) => {
            handler.denied(facts, &denied);
            refuse(&mut respond, &denied.refusal, limits.send_timeout).await;
            return;
        }
    };
    let (mut parts, mut body) = Box::pin(root.answer(&facts.head)).await.into_parts();
    let status = parts.status;
    strip_connection_headers(&mut parts.headers);
    if let Some(len) = body.len()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts.headers.insert(header::CONTENT_LENGTH, len.into());
    }
    let head_only = facts.head.method() == Method::HEAD
        || status == StatusCode::NOT_MODIFIED
        || body.len() == Some(0);
    let sent = async {
        let send = respond
            .send_response(Response::from_parts(parts, ()), head_only)
            .map_err(std::io::Error::other)?;
        if !head_only {
            let mut out = Deadline::new(H2Writer::new(send), limits.send_timeout);
            while let Some(data) = body.next().await {
                out.write_all(&data?).await?;
            }
            out.shutdown().await?;
        }
        Ok(status)
    };
    handler.web_served(facts, sent.await);
}

/// Answers a stream with `refusal`: its status, headers and reason, as over HTTP/1.1.
async fn refuse(
    respond: &mut SendResponse<Chunk>,
    refusal: &Refusal,
    send_timeout: Option<Duration>,
) {
    let body = if refusal.reason.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(format!("{}\n", refusal.reason))
    };
    let mut response = Response::new(());
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    for (name, value) in &refusal.headers {
        // Checked when the refusal was made (a plugin's are); one that is still not a
        // header is left out rather than failing the answer.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    strip_connection_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    let Ok(send) = respond.send_response(response, body.is_empty()) else {
        return;
    };
    if !body.is_empty() {
        let mut out = Deadline::new(H2Writer::new(send), send_timeout);
        let _ = async {
            out.write_all(&body).await?;
            out.shutdown().await
        }
        .await;
    }
}

/// HTTP/2 forbids the headers that describe one HTTP/1.1 connection (RFC 9113 8.2.2).
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}
