//! One connection from accept to close, in the steps a request goes through:
//!
//! 1. **Receive** ([`Handler::receive`]): the PROXY header (`--proxy-protocol`), the first
//!    bytes (TLS, Flash or HTTP), TLS, the request head, and forwarded headers from trusted
//!    proxies: the request's [`Facts`].
//! 2. **Decide**: the [`Gate`] admits the request, then a WebSocket upgrade is authenticated
//!    and given its target, a web request its pass; a refusal is answered here.
//! 3. **Open**: the protocol's answer (the HyBi 101, or Hixie's with its key), and the
//!    session: connect the target, relay, one log line.
//!
//! Only the first and last steps know the transport (HTTP/1.1 and the Hixie drafts on a
//! socket); the gate decides on facts alone.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;
use tracing::field::Empty;

use super::tracker::{Guard, Tracker};
use crate::config::Config;
use crate::edge::deadline::Deadline;
use crate::edge::http::{HeadError, Refusal, answer_and_close, close_gracefully, read_head_within};
use crate::edge::sniff::{FLASH_POLICY, SniffError, Sniffed, sniff};
use crate::edge::stream::{ClientIo, ClientStream};
use crate::edge::tls::{HANDSHAKE_TIMEOUT, ServerTls};
use crate::gate::admission::{Connection, Permit};
use crate::gate::{Denied, Gate, Stage};
use crate::process::shutdown::Shutdown;
use crate::request::{Channel, ClientAddr, Facts, Transport};
use crate::session::activity::Activity;
use crate::session::registry::{self, Registry};
use crate::session::relay::{CLOSE_TIMEOUT, Ending, RelayOptions, Ties, Traffic, relay};
use crate::session::target::{Cleared, ConnectOptions};
use crate::session::{Bounds, ClientRx, ClientTx, Close, Inbound, close_code};
use crate::telemetry::logging::SPAN_TARGET;
use crate::telemetry::metrics::{self, HandshakeFailure};
use crate::web::WebRoot;
use crate::ws::deflate::{Agreed, Deflate};
use crate::ws::hixie::{HixieHandshake, HixieRx, HixieTx};
use crate::ws::hybi::{HybiHandshake, HybiRx, HybiTx};
use crate::ws::{self, Decision};

/// What websockify 0.13 sends when the target cannot be reached after the upgrade.
const CONNECT_FAILED: Close = Close::new(
    close_code::INTERNAL_ERROR,
    "Failed to connect to downstream server",
);

/// What every connection of one server shares.
pub struct Shared {
    pub config: Arc<Config>,
    /// The server's TLS, when a certificate is configured.
    pub tls: Option<Arc<ServerTls>>,
    /// TLS toward the target (`--ssl-target`).
    pub target_tls: Option<Arc<rustls::ClientConfig>>,
    /// `--web DIR`: plain HTTP requests are answered from it.
    pub web: Option<WebRoot>,
    /// Admission, authentication and targets.
    pub gate: Gate,
    /// Counts each connection and, once upgraded, its session.
    pub tracker: Tracker,
    /// The last number given to a connection or an HTTP/2 stream.
    pub ids: std::sync::atomic::AtomicU64,
    /// The live sessions, for the admin API (off without `--admin-token`).
    pub sessions: Registry,
}

impl Shared {
    /// Numbers connections (and the streams of HTTP/2 connections) from 1, in order, as
    /// websockify numbers its connections (`--record` file names carry the number).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// The per-connection state.
pub struct Handler {
    pub shared: Arc<Shared>,
    pub shutdown: Shutdown,
    /// Numbers connections from 1 in accept order, as websockify numbers them.
    pub id: u64,
    /// The client: the peer, or the address a PROXY protocol header or a trusted proxy's
    /// forwarded header named.
    pub client: ClientAddr,
    /// The address the client connected to (TCP), or the one a PROXY protocol header named.
    /// Only the header we send the target (`--target-proxy-protocol`) needs it, so without
    /// that it is not looked up (a `getsockname` per connection for nothing).
    pub local: Option<std::net::SocketAddr>,
    /// Its place among the open connections, from accept to close (shared by the streams
    /// of an HTTP/2 connection, each with a handler of its own).
    pub _place: Arc<Connection>,
}

/// A request read off its connection.
struct Received {
    stream: ClientStream,
    facts: Facts,
    /// What the client sent after the head: the first frames, or Hixie-76's key bytes.
    rest: BytesMut,
}

/// An opened session: what it needs, and nothing of the handshake.
struct Opened {
    halves: Halves,
    target: Cleared,
    // Boxed strings, not `String`s: a session keeps them for its whole life, and the
    // capacity word would take a session's future over an allocator size class.
    path: Box<str>,
    protocol: Box<str>,
    /// permessage-deflate's mode when negotiated (`deflate`, `deflate-context`).
    compression: Option<&'static str>,
    channel: Channel,
    /// Its heartbeat and idle clock.
    activity: Arc<Activity>,
    /// The session's place under `--max-connections`, held for its whole life.
    _permit: Permit,
    /// Counts it among the live sessions.
    _session: Guard,
}

impl Opened {
    /// Serves the session with `handler`, the halves and the rest borrowed from where they
    /// are (not an `async fn`, which would keep a second copy of `self`; see
    /// [`Handler::serve`]).
    // An `async fn` would keep its arguments twice (see the doc comment).
    #[allow(clippy::manual_async_fn)]
    fn serve(mut self, handler: Handler) -> impl Future<Output = ()> + Send {
        async move {
            let session = Session {
                target: &self.target,
                path: &self.path,
                protocol: &self.protocol,
                compression: self.compression,
                channel: &self.channel,
                activity: &self.activity,
            };
            match &mut self.halves {
                Halves::Hybi(rx, tx) => Box::pin(handler.serve(rx, tx, session)).await,
                Halves::Hixie(rx, tx) => Box::pin(handler.serve(rx, tx, session)).await,
            }
            // Named, so that the block holds them: it captures only the fields it names, and
            // the session's place and count must last until it ends.
            drop((self._permit, self._session));
        }
    }
}

/// What serving an opened session needs besides its halves.
pub(super) struct Session<'a> {
    pub target: &'a Cleared,
    pub path: &'a str,
    pub protocol: &'a str,
    pub compression: Option<&'static str>,
    pub channel: &'a Channel,
    pub activity: &'a Arc<Activity>,
}

/// The client's two halves, by protocol family.
enum Halves {
    Hybi(HybiRx, HybiTx),
    Hixie(HixieRx<ClientStream>, HixieTx<ClientStream>),
}

/// A WebSocket handshake that passed its protocol's checks.
enum Upgrade {
    Hybi(HybiHandshake),
    Hixie(HixieHandshake),
}

impl Handler {
    /// The `session` span of this connection or stream (see [`crate::telemetry::logging`]).
    pub(super) fn span(&self) -> tracing::Span {
        tracing::info_span!(
            target: SPAN_TARGET,
            "session",
            id = self.id,
            client = %self.client,
            tls = Empty,
            protocol = Empty,
            transport = Empty,
            compression = Empty,
            path = Empty,
            status = Empty,
            target = Empty,
            outcome = Empty,
            close_code = Empty,
            from_client = Empty,
            to_client = Empty,
        )
    }

    /// A handler for a stream of this (HTTP/2) connection: numbered `id`, sharing the
    /// connection's place and what it learnt of the client.
    pub(super) fn for_stream(&self, id: u64) -> Handler {
        Handler {
            shared: self.shared.clone(),
            shutdown: self.shutdown.clone(),
            id,
            client: self.client,
            local: self.local,
            _place: self._place.clone(),
        }
    }

    /// Handles the connection inside its `session` span (not an `async fn`, which would keep
    /// a second copy of the handler and the stream for the connection's whole life).
    // An `async fn` would keep its arguments twice (see the doc comment).
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self, mut stream: ClientStream) -> impl Future<Output = ()> + Send {
        let span = self.span();
        async move {
            // Counted from accept: a connection still sending its PROXY header is one too.
            let _counted = self.shared.tracker.connection();
            if self.shared.config.proxy_protocol && !Box::pin(self.proxy_header(&mut stream)).await
            {
                return;
            }
            self.handle(stream).await
        }
        .instrument(span)
    }

    /// `--proxy-protocol`: reads the header a load balancer sends first, and takes the client
    /// (and server) address it names. A connection without a valid one is refused and logged.
    async fn proxy_header(&mut self, stream: &mut ClientStream) -> bool {
        match crate::edge::proxy_protocol::read(stream).await {
            Ok((header, rest)) => {
                stream.unread(rest.freeze());
                // UNKNOWN and LOCAL (a balancer's health check) keep the connection's own.
                if let Some((client, server)) = header.addresses {
                    tracing::debug!(
                        id = self.id,
                        peer = %self.client,
                        "PROXY {} header: client {client}",
                        header.version
                    );
                    self.client = ClientAddr::Tcp(client);
                    self.local = Some(server);
                    tracing::Span::current().record("client", tracing::field::display(client));
                }
                true
            }
            Err(e) => {
                metrics::get().handshake_failed(HandshakeFailure::ProxyProtocol, None);
                tracing::info!(id = self.id, client = %self.client, "refused: {e}");
                false
            }
        }
    }

    /// The connection, in phases each awaited boxed: receiving and deciding the request, then
    /// the session. A future is as large as its largest state and a task keeps its future for
    /// the connection's whole life, so the task itself stays a few hundred bytes, the
    /// handshake's state (the request head, a TLS handshake, plugin calls) is freed when the
    /// session opens, and an idle session keeps only what its relay needs.
    async fn handle(mut self, stream: ClientStream) {
        let Some((stream, channel, kind)) = Box::pin(self.establish(stream)).await else {
            return;
        };
        tracing::Span::current().record("tls", channel.secure);
        if kind == Sniffed::H2
            && let Some(http2) = self.shared.config.http2
        {
            Box::pin(super::h2::serve(self, stream, channel, http2)).await;
            return;
        }
        let Some(opened) = Box::pin(self.open(stream, channel)).await else {
            return;
        };
        Box::pin(opened.serve(self)).await
    }

    /// Receives the request, has the gate decide it, and opens its session; `None` when the
    /// connection was answered instead (a web request, a refusal) or failed, each logged
    /// where it happened. Every phase in it is awaited boxed too, so that this future stays
    /// small while it waits for the client.
    async fn open(&mut self, stream: ClientStream, channel: Channel) -> Option<Opened> {
        let began = Instant::now();
        let Received {
            mut stream,
            facts,
            rest,
        } = Box::pin(self.receive(stream, channel)).await?;
        let upgrade = match ws::decide(&facts.head) {
            Decision::Http => {
                Box::pin(self.web(&mut stream, &facts)).await;
                return None;
            }
            Decision::Refuse(refusal) => {
                let m = metrics::get();
                m.handshake_failed(HandshakeFailure::BadUpgrade, Some(refusal.status));
                tracing::Span::current().record("status", refusal.status.as_u16());
                tracing::info!(
                    id = self.id,
                    client = %self.client,
                    status = refusal.status.as_u16(),
                    "WebSocket handshake refused: {}",
                    refusal.reason
                );
                answer_and_close(&mut stream, &refusal.response()).await;
                return None;
            }
            Decision::Hybi(mut hs) => {
                hs.deflate = self.compression(&facts.head);
                Upgrade::Hybi(hs)
            }
            Decision::Hixie(hs) => Upgrade::Hixie(hs),
        };
        // Held until the connection closes: a session holds its place for its whole life.
        let (permit, target) = match self.decide(&facts).await {
            Ok(decided) => decided,
            Err(denied) => {
                self.denied(&facts, &denied);
                answer_and_close(&mut stream, &denied.refusal.response()).await;
                return None;
            }
        };
        let (activity, bounds) = self.bounds();
        let compression = match &upgrade {
            Upgrade::Hybi(hs) => hs.deflate.map(|a| a.mode()),
            Upgrade::Hixie(_) => None,
        };
        let (halves, protocol, session) = match upgrade {
            Upgrade::Hybi(hs) => {
                // Flushed: under TLS the answer would otherwise wait in the session's buffer
                // until the first frame, and a client waits for it before sending anything.
                let written = async {
                    stream.write_all(&hs.response()).await?;
                    stream.flush().await
                };
                if let Err(e) = written.await {
                    tracing::debug!(id = self.id, client = %self.client, "writing 101: {e}");
                    metrics::get().handshake_failed(HandshakeFailure::ClosedEarly, None);
                    return None;
                }
                let session = self.shared.tracker.session();
                let protocol = format!(
                    "hybi-{}/{}",
                    hs.version,
                    hs.protocol.map(ws::Subprotocol::name).unwrap_or("binary")
                );
                self.started(&protocol, facts.channel.transport, "hybi", began);
                let deflate = self.deflate(hs.deflate);
                let (rx, tx) = ws::hybi::session(stream, rest, hs.protocol, &bounds, deflate);
                (Halves::Hybi(rx, tx), protocol, session)
            }
            Upgrade::Hixie(hs) => {
                let secure = facts.channel.secure;
                let accepted =
                    Box::pin(ws::hixie::accept(&hs, stream, rest, secure, &bounds)).await;
                let (rx, tx) = match accepted {
                    Ok(halves) => halves,
                    Err(e) => {
                        tracing::info!(id = self.id, client = %self.client, "Hixie handshake: {e}");
                        metrics::get().handshake_failed(HandshakeFailure::Hixie, None);
                        return None;
                    }
                };
                let session = self.shared.tracker.session();
                let protocol = format!("{}/base64", hs.draft().name());
                self.started(&protocol, facts.channel.transport, "hixie", began);
                (Halves::Hixie(rx, tx), protocol, session)
            }
        };
        Some(Opened {
            halves,
            target,
            path: facts.path().into(),
            protocol: protocol.into(),
            compression,
            channel: facts.channel,
            activity,
            _permit: permit,
            _session: session,
        })
    }

    /// A WebSocket request's place under the limits and its target, from the gate.
    pub(super) async fn decide(&self, facts: &Facts) -> Result<(Permit, Cleared), Denied> {
        // Held until the session ends: a session holds its place for its whole life.
        let permit = self.shared.gate.admit(&facts.client)?;
        let target = Box::pin(self.shared.gate.session(facts)).await?;
        Ok((permit, target))
    }

    /// A new session's clocks (heartbeat, idle) and the bounds its halves keep.
    pub(super) fn bounds(&self) -> (Arc<Activity>, Bounds) {
        let config = &self.shared.config;
        let mut activity = Activity::new(config.heartbeat, config.limits.session_idle_timeout)
            .busy_poll(config.busy_poll);
        if self.shared.sessions.is_on() {
            activity = activity.kept_always();
        }
        let activity = Arc::new(activity);
        let bounds = Bounds {
            max_message: config.limits.max_message_size,
            send_timeout: config.limits.send_timeout,
            activity: activity.clone(),
        };
        (activity, bounds)
    }

    /// Reads the request on an established connection: the head within
    /// `--handshake-timeout`, and with `--trusted-proxies` the client a trusted proxy names.
    /// `None` when the connection ended or was answered first (a bad head), logged.
    async fn receive(&mut self, stream: ClientStream, mut channel: Channel) -> Option<Received> {
        let mut stream = stream;
        let read = Box::pin(
            read_head_within(&mut stream, self.shared.config.limits.handshake_timeout)
                .instrument(tracing::info_span!(target: SPAN_TARGET, "handshake")),
        )
        .await;
        let head = match read {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(id = self.id, client = %self.client, "{e}");
                let reason = match e {
                    HeadError::TooLarge | HeadError::TooManyHeaders => {
                        HandshakeFailure::HeadTooLarge
                    }
                    HeadError::Timeout(_) => HandshakeFailure::HeadTimeout,
                    HeadError::Malformed(_) => HandshakeFailure::MalformedHead,
                    HeadError::Closed | HeadError::Io(_) => HandshakeFailure::ClosedEarly,
                };
                metrics::get().handshake_failed(reason, e.status());
                if let Some(refusal) = e.refusal() {
                    answer_and_close(&mut stream, &refusal.response()).await;
                }
                if matches!(
                    e,
                    HeadError::Timeout(_) | HeadError::TooLarge | HeadError::TooManyHeaders
                ) {
                    tracing::info!(id = self.id, client = %self.client, "request refused: {e}");
                }
                return None;
            }
        };
        tracing::Span::current().record("path", head.request.uri().path());
        self.forwarded(head.request.headers(), &mut channel);
        Some(Received {
            stream,
            facts: Facts {
                client: self.client,
                channel,
                head: head.request,
            },
            rest: head.rest,
        })
    }

    /// With `--trusted-proxies`, the client and scheme a trusted proxy's forwarded headers
    /// name; before the limits, which count the real client.
    pub(super) fn forwarded(&mut self, headers: &http::HeaderMap, channel: &mut Channel) {
        let config = &self.shared.config;
        let (Some(trusted), Some(peer)) = (&config.trusted_proxies, self.client.ip()) else {
            return;
        };
        let forwarded =
            crate::edge::forwarded::resolve(headers, peer, trusted, config.forwarded_header);
        if let Some(client) = forwarded.client {
            tracing::debug!(id = self.id, peer = %self.client, "forwarded for {client}");
            self.client = ClientAddr::Tcp(client);
            tracing::Span::current().record("client", tracing::field::display(self.client));
        }
        if let Some(secure) = forwarded.secure {
            channel.secure = secure;
            tracing::Span::current().record("tls", secure);
        }
    }

    /// A plain HTTP request: a file from `--web` (within the web requests' share of
    /// `--max-connections`, past `--web-auth`, written under `--send-timeout`), else 405.
    async fn web(&self, stream: &mut ClientStream, facts: &Facts) {
        let Some(web) = &self.shared.web else {
            // Counted like any request, though it is answered at once.
            let _permit = match self.shared.gate.admit(&facts.client) {
                Ok(permit) => permit,
                Err(denied) => {
                    self.deny(stream, facts, &denied).await;
                    return;
                }
            };
            let refusal = self.no_web(facts);
            answer_and_close(stream, &refusal.response()).await;
            return;
        };
        let limits = &self.shared.config.limits;
        let pass = Box::pin(self.shared.gate.web(facts, limits.handshake_timeout)).await;
        let _permit = match pass {
            Ok(permit) => permit,
            Err(denied) => {
                self.deny(stream, facts, &denied).await;
                return;
            }
        };
        let mut out = Deadline::new(&mut *stream, limits.send_timeout);
        let served = Box::pin(web.serve(&facts.head, &mut out)).await;
        self.web_served(facts, served);
        close_gracefully(&mut out).await;
    }

    /// A plain request without `--web`: counted, logged, and the `405` to answer.
    pub(super) fn no_web(&self, facts: &Facts) -> Refusal {
        let (method, path) = (facts.head.method(), facts.path());
        tracing::info!(
            id = self.id,
            client = %self.client,
            "{method} {path}: 405, no web directory is served here"
        );
        metrics::get().web_request(StatusCode::METHOD_NOT_ALLOWED);
        tracing::Span::current().record("status", 405);
        Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this port serves WebSocket upgrades only",
        )
        .with_header("Allow", "")
    }

    /// A web answer sent (its status) or cut off: counted and logged.
    pub(super) fn web_served(&self, facts: &Facts, served: std::io::Result<StatusCode>) {
        let (method, path) = (facts.head.method(), facts.path());
        match served {
            Ok(status) => {
                metrics::get().web_request(status);
                tracing::Span::current().record("status", status.as_u16());
                tracing::info!(
                    id = self.id,
                    client = %self.client,
                    status = status.as_u16(),
                    "{method} {path}"
                )
            }
            Err(e) => tracing::info!(id = self.id, client = %self.client, "{path}: {e}"),
        }
    }

    /// Answers a request the gate turned away: counted, on the span, logged, and the refusal
    /// to the client.
    async fn deny(&self, stream: &mut ClientStream, facts: &Facts, denied: &Denied) {
        self.denied(facts, denied);
        answer_and_close(stream, &denied.refusal.response()).await;
    }

    /// A request the gate turned away: counted, on the span, and logged (a plugin's failure
    /// first, at warning level); the transport answers it.
    pub(super) fn denied(&self, facts: &Facts, denied: &Denied) {
        let refusal = &denied.refusal;
        let status = refusal.status.as_u16();
        if let Some(fault) = &denied.fault {
            tracing::warn!(id = self.id, client = %self.client, "{fault}");
        }
        metrics::get().handshake_failed(denied.failure, Some(refusal.status));
        tracing::Span::current().record("status", status);
        match denied.stage {
            Stage::Admission(limit) => tracing::warn!(
                id = self.id,
                client = %self.client,
                "{} {}: {status}, over the limit of {limit}",
                facts.head.method(),
                facts.path()
            ),
            stage => tracing::info!(
                id = self.id,
                client = %self.client,
                status,
                "{stage} refused: {}",
                refusal.reason
            ),
        }
    }

    /// Sniffs the first bytes and sets up TLS when the client speaks it; answers Flash policy
    /// requests. Returns the stream on which HTTP follows and which HTTP it is (HTTP/1 or
    /// HTTP/2's preface), or `None` when the connection is done (answered, refused, or gone),
    /// each case logged.
    async fn establish(
        &self,
        mut stream: ClientStream,
    ) -> Option<(ClientStream, Channel, Sniffed)> {
        let (id, client) = (self.id, self.client);
        let m = metrics::get();
        let mut channel = Channel::default();
        let mut kind = self.sniff(&mut stream).await?;
        if kind == Sniffed::Tls {
            let Some(tls) = &self.shared.tls else {
                tracing::info!(id, %client, "TLS handshake refused: no certificate configured");
                m.tls_handshake("no_certificate");
                m.handshake_failed(HandshakeFailure::Tls, None);
                return None;
            };
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream))
                .instrument(tracing::info_span!(target: SPAN_TARGET, "tls_handshake"))
                .await;
            let tls_stream = match accepted {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(id, %client, "TLS handshake failed: {e}");
                    m.tls_handshake("failed");
                    m.handshake_failed(HandshakeFailure::Tls, None);
                    return None;
                }
                Err(_) => {
                    tracing::info!(id, %client, "TLS handshake timed out");
                    m.tls_handshake("timeout");
                    m.handshake_failed(HandshakeFailure::Tls, None);
                    return None;
                }
            };
            m.tls_handshake("ok");
            channel.secure = true;
            channel.client_cert_cn = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(crate::edge::tls::common_name);
            stream = ClientStream::new(ClientIo::Tls(Box::new(tls_stream)));
            kind = self.sniff(&mut stream).await?;
            if kind == Sniffed::Tls {
                tracing::info!(id, %client, "TLS inside TLS refused");
                m.handshake_failed(HandshakeFailure::MalformedHead, None);
                return None;
            }
        } else if self.shared.tls.as_ref().is_some_and(|t| t.ssl_only()) {
            tracing::warn!(id, %client, "plain connection refused: --ssl-only");
            m.handshake_failed(HandshakeFailure::PlainRefused, None);
            return None;
        }
        if kind == Sniffed::Flash && !self.shared.config.flash_policy {
            tracing::debug!(id, %client, "Flash policy request closed: --no-flash-policy");
            m.handshake_failed(HandshakeFailure::FlashRefused, None);
            return None;
        }
        if kind == Sniffed::Flash {
            tracing::info!(id, %client, secure = channel.secure, "Flash policy request answered");
            answer_and_close(&mut stream, FLASH_POLICY).await;
            return None;
        }
        Some((stream, channel, kind))
    }

    async fn sniff(&self, stream: &mut ClientStream) -> Option<Sniffed> {
        // Counted, and logged at debug level only: a flood of silent connections would
        // otherwise write a line each.
        let e = match sniff(stream).await {
            Ok(kind) => return Some(kind),
            Err(e) => e,
        };
        let failure = match e {
            SniffError::Silent => HandshakeFailure::Silent,
            SniffError::Closed | SniffError::Io(_) => HandshakeFailure::ClosedEarly,
        };
        metrics::get().handshake_failed(failure, None);
        tracing::debug!(id = self.id, client = %self.client, "closed: {e}");
        None
    }

    /// Counts an upgraded session and records what it speaks, and over what, on its span.
    pub(super) fn started(
        &self,
        protocol: &str,
        transport: Transport,
        family: &str,
        accepted: Instant,
    ) {
        let m = metrics::get();
        m.session_started(protocol, transport);
        m.handshake_duration
            .with_label_values(&[family])
            .observe(accepted.elapsed().as_secs_f64());
        let span = tracing::Span::current();
        span.record("protocol", protocol);
        span.record("transport", transport.label());
    }

    /// permessage-deflate's parameters for a HyBi request, when `--compression` is on and the
    /// client offers it.
    pub(super) fn compression(&self, request: &http::Request<()>) -> Option<Agreed> {
        ws::hybi::handshake::compression(request, self.shared.config.compression.as_ref())
    }

    /// A session's compression state for what was agreed: counted, and named in its span.
    pub(super) fn deflate(&self, agreed: Option<Agreed>) -> Option<Deflate> {
        let (agreed, policy) = (agreed?, self.shared.config.compression.as_ref()?);
        metrics::get().compression.sessions.inc();
        tracing::Span::current().record("compression", agreed.mode());
        Some(Deflate::new(agreed, policy))
    }

    /// Connects the target and relays; logs the session's one info line.
    ///
    /// Not an `async fn`, and the halves borrowed: an `async fn` keeps its arguments beside
    /// the locals they are moved into, for the session's whole life (the halves twice, about
    /// 500 bytes of every idle session); the block uses its captures in place.
    // An `async fn` would keep its arguments twice (see the doc comment).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn serve<'s, R: ClientRx, T: ClientTx>(
        mut self,
        rx: &'s mut R,
        tx: &'s mut T,
        session: Session<'s>,
    ) -> impl Future<Output = ()> + Send + 's {
        async move {
            let started = Instant::now();
            let (path, protocol, compression) =
                (session.path, session.protocol, session.compression);
            let (channel, activity) = (session.channel, session.activity);
            let target = session.target;
            tracing::Span::current().record("target", tracing::field::display(target));
            tracing::debug!(
                id = self.id,
                client = %self.client,
                %target,
                path,
                protocol,
                transport = channel.transport.label(),
                tls = channel.secure,
                client_cert_cn = %channel.client_cert_cn.as_deref().unwrap_or("-"),
                "connecting"
            );
            // Listed (with the admin API on) from here to the session's line, with its counts
            // and the operator's end; else its counts are its own.
            let listed = self.shared.sessions.list(
                || registry::Facts {
                    id: self.id,
                    client: self.client.to_string(),
                    target: target.to_string(),
                    transport: channel.transport.label(),
                    protocol: protocol.to_string(),
                    compression,
                    tls: channel.secure,
                },
                activity.clone(),
            );
            let own = Traffic::default();
            let traffic = listed.as_ref().map_or(&own, |l| &l.entry().traffic);
            let config = &self.shared.config;
            let record = match &config.record {
                Some(base) => match crate::session::record::Recorder::open(base, self.id).await {
                    Ok(recorder) => {
                        let file = crate::session::record::file_name(base, self.id);
                        tracing::info!(id = self.id, "opening record file: {}", file.display());
                        Some(recorder)
                    }
                    Err(e) => {
                        let file = crate::session::record::file_name(base, self.id);
                        tracing::warn!(id = self.id, "not recording to {}: {e}", file.display());
                        None
                    }
                },
                None => None,
            };
            let m = metrics::get();
            let connecting = Instant::now();
            let limits = &config.limits;
            let proxy_header = config.target_proxy_protocol.map(|version| {
                let addresses = match (self.client, self.local) {
                    (ClientAddr::Tcp(client), Some(server)) => Some((client, server)),
                    _ => None,
                };
                crate::edge::proxy_protocol::encode(version, addresses)
            });
            let options = ConnectOptions {
                prefer_ipv6: config.prefer_ipv6,
                timeout: limits.connect_timeout,
                tls: self.shared.target_tls.as_ref(),
                proxy_header: proxy_header.as_deref(),
            };
            // Boxed: connecting's future is as large as the relay's, and the session's
            // future would keep room for it for its whole life.
            let connected = Box::pin(target.connect(&options))
                .instrument(tracing::info_span!(target: SPAN_TARGET, "target_connect", %target))
                .await;
            m.target_connect_duration
                .observe(connecting.elapsed().as_secs_f64());
            let ending = match connected {
                Ok(stream) => {
                    let options = RelayOptions {
                        traffic: config.traffic,
                        record,
                    };
                    let shutdown = &mut self.shutdown;
                    let ties = Ties {
                        traffic,
                        activity: activity.as_ref(),
                        eviction: listed.as_ref().map(|l| &l.entry().eviction),
                    };
                    relay(rx, tx, stream, &options, ties, shutdown).await
                }
                Err(e) => {
                    tracing::warn!(id = self.id, client = %self.client, "{e}");
                    m.target_connect_failures.inc();
                    let closed =
                        tokio::time::timeout(CLOSE_TIMEOUT, tx.close(&CONNECT_FAILED)).await;
                    if matches!(closed, Ok(Ok(()))) {
                        // Wait briefly for the client's answer so that it sees a clean close.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                            while let Ok(Inbound::Data(_) | Inbound::Part(_)) = rx.recv().await {}
                        })
                        .await;
                    }
                    Ending::TargetUnreachable(e.to_string())
                }
            };
            let from_client = traffic
                .from_client
                .load(std::sync::atomic::Ordering::Relaxed);
            let to_client = traffic.to_client.load(std::sync::atomic::Ordering::Relaxed);
            let duration = started.elapsed();
            m.session_ended(ending.outcome(), ending.code(), duration);
            let span = tracing::Span::current();
            span.record("outcome", ending.outcome());
            span.record("close_code", ending.code());
            span.record("from_client", from_client);
            span.record("to_client", to_client);
            tracing::info!(
                id = self.id,
                client = %self.client,
                %target,
                protocol,
                transport = channel.transport.label(),
                compression,
                tls = channel.secure,
                from_client,
                to_client,
                duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                close_code = ending.code(),
                "session ended: {ending}"
            );
            // Named, so that the block holds it: it captures only the fields it names, and
            // the connection's place lasts until the session's line is written.
            drop(self._place);
            drop(listed);
        }
    }
}
