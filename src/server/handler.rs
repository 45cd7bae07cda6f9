//! One connection from accept to close: read the request head, decide, answer or upgrade,
//! connect the target, relay, and log one line for the session.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use tracing::Instrument;
use tracing::field::Empty;

use super::tracker::{Guard, Tracker};
use crate::config::Config;
use crate::config::Route;
use crate::edge::http::{
    HeadError, answer_and_close, close_gracefully, read_head_within, response,
};
use crate::edge::listen::ClientAddr;
use crate::edge::sniff::{FLASH_POLICY, SniffError, Sniffed, sniff};
use crate::edge::stream::{ClientIo, ClientStream};
use crate::edge::tls::{HANDSHAKE_TIMEOUT, ServerTls};
use crate::gate::admission::{Admission, Permit, Refused};
use crate::gate::token;
use crate::plugin::{self, Answer, CallError, Reloadable};
use crate::process::shutdown::Shutdown;
use crate::session::relay::{CLOSE_TIMEOUT, Ending, RelayOptions, Traffic, relay};
use crate::session::target::{ConnectError, ConnectOptions, Target};
use crate::session::{ClientRx, ClientTx, Close, Inbound, close_code};
use crate::telemetry::logging::SPAN_TARGET;
use crate::telemetry::metrics::{self, HandshakeFailure, PluginResult};
use crate::web::WebRoot;
use crate::ws::hixie::{HixieRx, HixieTx};
use crate::ws::hybi::{HybiRx, HybiTx};
use crate::ws::{self, Decision};

/// What websockify 0.13 sends when the target cannot be reached after the upgrade.
const CONNECT_FAILED: Close = Close::new(
    close_code::INTERNAL_ERROR,
    "Failed to connect to downstream server",
);

/// Sent when `--allow-target` does not allow the session's target: a policy, not a fault.
const NOT_ALLOWED: Close = Close::new(close_code::POLICY_VIOLATION, "Target not allowed");

/// A refusal of our own (not a plugin's).
fn failed(status: StatusCode, reason: &str) -> plugin::Refusal {
    plugin::Refusal {
        status,
        reason: reason.to_string(),
        headers: Vec::new(),
    }
}

/// What the connection's transport tells about the client, for handshakes and (later) auth.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The client came through TLS (`wss://`).
    pub secure: bool,
    /// The common name of the client's verified certificate (`--verify-client`).
    pub client_cert_cn: Option<String>,
}

/// An accepted upgrade: what its session needs, and nothing of the handshake.
struct Upgraded {
    halves: Halves,
    target: Target,
    path: String,
    protocol: String,
    facts: Facts,
    /// The session's place under `--max-connections`, held for its whole life.
    permit: Permit,
    /// Counts it among the live sessions.
    session: Guard,
}

/// The client's two halves, by protocol family.
enum Halves {
    Hybi(HybiRx, HybiTx),
    Hixie(HixieRx<ClientStream>, HixieTx<ClientStream>),
}

/// The per-connection state.
pub struct Handler {
    pub config: Arc<Config>,
    /// The server's TLS, when a certificate is configured.
    pub tls: Option<Arc<ServerTls>>,
    /// TLS toward the target (`--ssl-target`).
    pub target_tls: Option<Arc<rustls::ClientConfig>>,
    /// `--web DIR`: plain HTTP requests are answered from it.
    pub web: Option<Arc<WebRoot>>,
    /// The token plugin, when targets come from tokens.
    pub resolver: Option<Arc<Reloadable>>,
    /// The auth plugin (`--auth-plugin`).
    pub auth: Option<Arc<Reloadable>>,
    /// Counts this connection and, once upgraded, its session.
    pub tracker: Tracker,
    /// `--max-connections` and `--max-connections-per-ip`.
    pub admission: Admission,
    pub shutdown: Shutdown,
    /// Numbers connections from 1 in accept order, as websockify numbers them.
    pub id: u64,
    /// The client: the peer, or the address a PROXY protocol header named.
    pub client: ClientAddr,
    /// The address the client connected to (TCP), or the one a PROXY protocol header named.
    /// Only the header we send the target (`--target-proxy-protocol`) needs it, so without
    /// that it is not looked up (a `getsockname` per connection for nothing).
    pub local: Option<std::net::SocketAddr>,
}

impl Handler {
    /// Handles the connection inside its `session` span (see [`crate::telemetry::logging`]).
    pub async fn run(mut self, mut stream: ClientStream) {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "session",
            id = self.id,
            client = %self.client,
            tls = Empty,
            protocol = Empty,
            path = Empty,
            status = Empty,
            target = Empty,
            outcome = Empty,
            close_code = Empty,
            from_client = Empty,
            to_client = Empty,
        );
        async move {
            if self.config.proxy_protocol && !Box::pin(self.proxy_header(&mut stream)).await {
                return;
            }
            self.handle(stream).await
        }
        .instrument(span)
        .await
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

    /// The connection, in two phases, each awaited boxed: the handshake (TLS, head, limits,
    /// plugins, the upgrade) and the session. A future is as large as its largest state and a
    /// task keeps its future for the connection's whole life, so the task itself stays a few
    /// hundred bytes, the handshake's state (the request head, a TLS handshake, plugin calls)
    /// is freed when the upgrade is done, and an idle session keeps only what its relay needs.
    async fn handle(mut self, stream: ClientStream) {
        let _connection = self.tracker.connection();
        let Some(upgraded) = Box::pin(self.upgrade(stream)).await else {
            return;
        };
        let Upgraded {
            halves,
            target,
            path,
            protocol,
            facts,
            permit: _permit,
            session: _session,
        } = upgraded;
        match halves {
            Halves::Hybi(rx, tx) => {
                Box::pin(self.serve(rx, tx, target, &path, &protocol, &facts)).await
            }
            Halves::Hixie(rx, tx) => {
                Box::pin(self.serve(rx, tx, target, &path, &protocol, &facts)).await
            }
        }
    }

    /// Everything up to an accepted upgrade; `None` when the connection was answered (a web
    /// request, a refusal) or failed, each logged where it happened. Every phase in it is
    /// awaited boxed too, so that this future stays small while it waits for the client.
    async fn upgrade(&mut self, stream: ClientStream) -> Option<Upgraded> {
        let began = Instant::now();
        let m = metrics::get();
        let (mut stream, mut facts) = Box::pin(self.establish(stream)).await?;
        tracing::Span::current().record("tls", facts.secure);
        let read = Box::pin(
            read_head_within(&mut stream, self.config.limits.handshake_timeout)
                .instrument(tracing::info_span!(target: SPAN_TARGET, "handshake")),
        )
        .await;
        let head = match read {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(id = self.id, client = %self.client, "{e}");
                let reason = match e {
                    HeadError::TooLarge => HandshakeFailure::HeadTooLarge,
                    HeadError::Timeout(_) => HandshakeFailure::HeadTimeout,
                    HeadError::Malformed(_) => HandshakeFailure::MalformedHead,
                    HeadError::Closed | HeadError::Io(_) => HandshakeFailure::ClosedEarly,
                };
                m.handshake_failed(reason, e.status());
                if let Some(status) = e.status() {
                    let body = e.to_string();
                    answer_and_close(&mut stream, &response(status, &[], &body)).await;
                }
                if matches!(e, HeadError::Timeout(_) | HeadError::TooLarge) {
                    tracing::info!(id = self.id, client = %self.client, "request refused: {e}");
                }
                return None;
            }
        };
        let path = head.request.uri().path().to_string();
        tracing::Span::current().record("path", path.as_str());
        // Before the limits, which count the real client.
        if let Some(trusted) = &self.config.trusted_proxies
            && let Some(peer) = self.client.ip()
        {
            let forwarded = crate::edge::forwarded::resolve(head.request.headers(), peer, trusted);
            if let Some(client) = forwarded.client {
                tracing::debug!(id = self.id, peer = %self.client, "forwarded for {client}");
                self.client = ClientAddr::Tcp(client);
                tracing::Span::current().record("client", tracing::field::display(self.client));
            }
            if let Some(secure) = forwarded.secure {
                facts.secure = secure;
                tracing::Span::current().record("tls", secure);
            }
        }
        // Held until the connection closes: a session holds its place for its whole life.
        let permit = match self.admission.admit(self.client.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                let reason = match refused {
                    Refused::Total { .. } => HandshakeFailure::MaxConnections,
                    Refused::PerIp { .. } => HandshakeFailure::MaxConnectionsPerIp,
                };
                m.handshake_failed(reason, Some(StatusCode::SERVICE_UNAVAILABLE));
                tracing::Span::current().record("status", 503);
                tracing::warn!(
                    id = self.id,
                    client = %self.client,
                    "{} {path}: 503, over the limit of {refused}",
                    head.request.method()
                );
                let retry = crate::limits::RETRY_AFTER.to_string();
                let answer = response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &[("Retry-After", retry.as_str())],
                    "too many connections, try again later",
                );
                answer_and_close(&mut stream, &answer).await;
                return None;
            }
        };
        let (halves, target, protocol, session) = match ws::decide(&head.request) {
            Decision::Http => {
                match &self.web {
                    Some(web) => {
                        let guarded = self.config.auth.as_ref().is_some_and(|a| a.web);
                        if guarded
                            && !Box::pin(self.authorize(&head.request, &facts, &mut stream)).await
                        {
                            return None;
                        }
                        match Box::pin(web.serve(&head.request, &mut stream)).await {
                            Ok(status) => {
                                m.web_request(status);
                                tracing::Span::current().record("status", status.as_u16());
                                tracing::info!(
                                id = self.id,
                                client = %self.client,
                                status = status.as_u16(),
                                "{} {path}",
                                head.request.method()
                                )
                            }
                            Err(e) => {
                                tracing::info!(id = self.id, client = %self.client, "{path}: {e}")
                            }
                        }
                        close_gracefully(&mut stream).await;
                    }
                    None => {
                        tracing::info!(
                            id = self.id,
                            client = %self.client,
                            "{} {path}: 405, no web directory is served here",
                            head.request.method()
                        );
                        m.web_request(StatusCode::METHOD_NOT_ALLOWED);
                        tracing::Span::current().record("status", 405);
                        let answer = response(
                            StatusCode::METHOD_NOT_ALLOWED,
                            &[("Allow", "")],
                            "this port serves WebSocket upgrades only",
                        );
                        answer_and_close(&mut stream, &answer).await;
                    }
                }
                return None;
            }
            Decision::Refuse(rejection) => {
                m.handshake_failed(HandshakeFailure::BadUpgrade, Some(rejection.status));
                tracing::Span::current().record("status", rejection.status.as_u16());
                tracing::info!(
                    id = self.id,
                    client = %self.client,
                    status = rejection.status.as_u16(),
                    "WebSocket handshake refused: {}",
                    rejection.reason
                );
                answer_and_close(&mut stream, &rejection.response()).await;
                return None;
            }
            Decision::Hybi(hs) => {
                use tokio::io::AsyncWriteExt;
                if !Box::pin(self.authorize(&head.request, &facts, &mut stream)).await {
                    return None;
                }
                let target = Box::pin(self.target_for(&head.request, &facts, &mut stream)).await?;
                // Flushed: under TLS the answer would otherwise wait in the session's buffer
                // until the first frame, and a client waits for it before sending anything.
                let written = async {
                    stream.write_all(&hs.response()).await?;
                    stream.flush().await
                };
                if let Err(e) = written.await {
                    tracing::debug!(id = self.id, client = %self.client, "writing 101: {e}");
                    m.handshake_failed(HandshakeFailure::ClosedEarly, None);
                    return None;
                }
                let session = self.tracker.session();
                let protocol = format!(
                    "hybi-{}/{}",
                    hs.version,
                    hs.protocol.map(ws::Subprotocol::name).unwrap_or("binary")
                );
                self.started(&protocol, "hybi", began);
                let (rx, tx) = ws::hybi::session(
                    stream,
                    head.rest,
                    hs.protocol,
                    self.config.limits.max_message_size,
                )
                .await;
                (Halves::Hybi(rx, tx), target, protocol, session)
            }
            Decision::Hixie(hs) => {
                if !Box::pin(self.authorize(&head.request, &facts, &mut stream)).await {
                    return None;
                }
                let target = Box::pin(self.target_for(&head.request, &facts, &mut stream)).await?;
                let accepted = Box::pin(ws::hixie::accept(
                    &hs,
                    stream,
                    head.rest,
                    facts.secure,
                    self.config.limits.max_message_size,
                ))
                .await;
                let (rx, tx) = match accepted {
                    Ok(halves) => halves,
                    Err(e) => {
                        tracing::info!(id = self.id, client = %self.client, "Hixie handshake: {e}");
                        m.handshake_failed(HandshakeFailure::Hixie, None);
                        return None;
                    }
                };
                let session = self.tracker.session();
                let protocol = format!("{}/base64", hs.draft().name());
                self.started(&protocol, "hixie", began);
                (Halves::Hixie(rx, tx), target, protocol, session)
            }
        };
        Some(Upgraded {
            halves,
            target,
            path,
            protocol,
            facts,
            permit,
            session,
        })
    }

    /// Asks the auth plugin, if there is one; a refusal is answered (with the plugin's status,
    /// reason and headers, e.g. a Basic challenge) and logged, and the request goes no further.
    async fn authorize(
        &self,
        request: &http::Request<()>,
        facts: &Facts,
        stream: &mut ClientStream,
    ) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let facts = token::request_facts(request, facts, &self.client, false);
        let instance = auth.current();
        let answer = plugin::call(&instance, facts)
            .instrument(
                tracing::info_span!(target: SPAN_TARGET, "auth", plugin = instance.plugin_name()),
            )
            .await;
        let m = metrics::get();
        let (refusal, reason) = match answer {
            Ok(Answer::Allow) => {
                m.auth_check(instance.plugin_name(), PluginResult::Ok);
                return true;
            }
            Ok(Answer::Refuse(refusal)) => {
                m.auth_check(instance.plugin_name(), PluginResult::Refused);
                (refusal, HandshakeFailure::AuthRefused)
            }
            Ok(Answer::Target(_)) => {
                m.auth_check(instance.plugin_name(), PluginResult::Error);
                let refusal = failed(StatusCode::BAD_GATEWAY, "the auth plugin gave a target");
                (refusal, HandshakeFailure::PluginFailed)
            }
            Err(e) => {
                tracing::warn!(id = self.id, client = %self.client, "{e}");
                m.auth_check(instance.plugin_name(), call_result(&e));
                let refusal = failed(e.status(), "the authentication check failed");
                (refusal, HandshakeFailure::PluginFailed)
            }
        };
        self.refuse(stream, &refusal, reason, "authentication")
            .await;
        false
    }

    /// The target of an accepted upgrade, decided before the 101 so that a token that leads
    /// nowhere gets a real HTTP answer. `None` when the request was answered instead (refused,
    /// or the plugin failed), with one log line that never contains the token.
    async fn target_for(
        &self,
        request: &http::Request<()>,
        facts: &Facts,
        stream: &mut ClientStream,
    ) -> Option<Target> {
        let (settings, instance) = match (&self.config.route, &self.resolver) {
            (Route::Static(target), _) => return Some(target.clone()),
            // The server turns a wrapped program into its loopback target before serving.
            (Route::Wrap(_), _) => {
                answer_and_close(
                    stream,
                    &response(StatusCode::BAD_GATEWAY, &[], "no wrapped program"),
                )
                .await;
                return None;
            }
            (Route::Token(settings), Some(instance)) => (settings, instance),
            (Route::Token(_), None) => {
                answer_and_close(
                    stream,
                    &response(StatusCode::BAD_GATEWAY, &[], "no resolver"),
                )
                .await;
                return None;
            }
        };
        let facts = token::request_facts(request, facts, &self.client, settings.host_token);
        let instance = instance.current();
        let plugin = instance.plugin_name();
        let answer = plugin::call(&instance, facts)
            .instrument(tracing::info_span!(target: SPAN_TARGET, "token_lookup", plugin))
            .await;
        let m = metrics::get();
        let (refusal, reason) = match answer {
            Ok(Answer::Target(target)) => {
                m.token_lookup(plugin, PluginResult::Ok);
                return Some(target);
            }
            Ok(Answer::Refuse(refusal)) => {
                m.token_lookup(plugin, PluginResult::Refused);
                (refusal, HandshakeFailure::TokenRefused)
            }
            Ok(Answer::Allow) => {
                m.token_lookup(plugin, PluginResult::Error);
                let refusal = failed(StatusCode::BAD_GATEWAY, "the token plugin gave no target");
                (refusal, HandshakeFailure::PluginFailed)
            }
            Err(e) => {
                tracing::warn!(id = self.id, client = %self.client, "{e}");
                m.token_lookup(plugin, call_result(&e));
                (
                    failed(e.status(), "the token lookup failed"),
                    HandshakeFailure::PluginFailed,
                )
            }
        };
        self.refuse(stream, &refusal, reason, "token lookup").await;
        None
    }

    /// Answers a refused upgrade (auth or token lookup): counted, on the span, one log line,
    /// the plugin's status, reason and headers to the client.
    async fn refuse(
        &self,
        stream: &mut ClientStream,
        refusal: &plugin::Refusal,
        reason: HandshakeFailure,
        what: &str,
    ) {
        metrics::get().handshake_failed(reason, Some(refusal.status));
        tracing::Span::current().record("status", refusal.status.as_u16());
        tracing::info!(
            id = self.id,
            client = %self.client,
            status = refusal.status.as_u16(),
            "{what} refused: {}",
            refusal.reason
        );
        answer_and_close(stream, &refusal.response()).await;
    }

    /// Sniffs the first bytes and sets up TLS when the client speaks it; answers Flash policy
    /// requests. Returns the stream on which HTTP follows, or `None` when the connection is
    /// done (answered, refused, or gone), each case logged.
    async fn establish(&self, mut stream: ClientStream) -> Option<(ClientStream, Facts)> {
        let (id, client) = (self.id, self.client);
        let m = metrics::get();
        let mut facts = Facts::default();
        let mut kind = self.sniff(&mut stream).await?;
        if kind == Sniffed::Tls {
            let Some(tls) = &self.tls else {
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
            facts.secure = true;
            facts.client_cert_cn = tls_stream
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
        } else if self.tls.as_ref().is_some_and(|t| t.ssl_only()) {
            tracing::warn!(id, %client, "plain connection refused: --ssl-only");
            m.handshake_failed(HandshakeFailure::PlainRefused, None);
            return None;
        }
        if kind == Sniffed::Flash {
            tracing::info!(id, %client, secure = facts.secure, "Flash policy request answered");
            answer_and_close(&mut stream, FLASH_POLICY).await;
            return None;
        }
        Some((stream, facts))
    }

    async fn sniff(&self, stream: &mut ClientStream) -> Option<Sniffed> {
        let sniffed = sniff(stream).await;
        if sniffed.is_err() {
            metrics::get().handshake_failed(HandshakeFailure::ClosedEarly, None);
        }
        match sniffed {
            Ok(kind) => Some(kind),
            Err(e @ SniffError::Silent) => {
                tracing::info!(id = self.id, client = %self.client, "closed: {e}");
                None
            }
            Err(e) => {
                tracing::debug!(id = self.id, client = %self.client, "{e}");
                None
            }
        }
    }

    /// Counts an upgraded session and records what it speaks on its span.
    fn started(&self, protocol: &str, family: &str, accepted: Instant) {
        let m = metrics::get();
        m.session_started(protocol);
        m.handshake_duration
            .with_label_values(&[family])
            .observe(accepted.elapsed().as_secs_f64());
        tracing::Span::current().record("protocol", protocol);
    }

    /// Connects the target and relays; logs the session's one info line.
    async fn serve<R: ClientRx, T: ClientTx>(
        self,
        mut rx: R,
        mut tx: T,
        target: Target,
        path: &str,
        protocol: &str,
        facts: &Facts,
    ) {
        let started = Instant::now();
        let target = &target;
        tracing::Span::current().record("target", tracing::field::display(target));
        tracing::debug!(
            id = self.id,
            client = %self.client,
            %target,
            path,
            protocol,
            tls = facts.secure,
            client_cert_cn = %facts.client_cert_cn.as_deref().unwrap_or("-"),
            "connecting"
        );
        let traffic = Traffic::default();
        let record = match &self.config.record {
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
        let limits = &self.config.limits;
        let proxy_header = self.config.target_proxy_protocol.map(|version| {
            let addresses = match (self.client, self.local) {
                (ClientAddr::Tcp(client), Some(server)) => Some((client, server)),
                _ => None,
            };
            crate::edge::proxy_protocol::encode(version, addresses)
        });
        let options = ConnectOptions {
            prefer_ipv6: self.config.prefer_ipv6,
            timeout: limits.connect_timeout,
            tls: self.target_tls.as_ref(),
            allow: limits.allow_target.as_ref(),
            proxy_header: proxy_header.as_deref(),
        };
        let connected = target
            .connect(&options)
            .instrument(tracing::info_span!(target: SPAN_TARGET, "target_connect", %target))
            .await;
        m.target_connect_duration
            .observe(connecting.elapsed().as_secs_f64());
        let ending = match connected {
            Ok(stream) => {
                let options = RelayOptions {
                    heartbeat: self.config.heartbeat,
                    idle_timeout: limits.session_idle_timeout,
                    traffic: self.config.traffic,
                    record,
                };
                relay(rx, tx, stream, &options, &traffic, self.shutdown.clone()).await
            }
            Err(e) => {
                tracing::warn!(id = self.id, client = %self.client, "{e}");
                m.target_connect_failures.inc();
                let refused = matches!(e, ConnectError::NotAllowed { .. });
                let close = if refused {
                    &NOT_ALLOWED
                } else {
                    &CONNECT_FAILED
                };
                if tx.close(close).await.is_ok() {
                    // Wait briefly for the client's answer so that it sees a clean close.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Ok(Inbound::Data(_) | Inbound::Part(_)) = rx.recv().await {}
                    })
                    .await;
                }
                if refused {
                    Ending::TargetNotAllowed(e.to_string())
                } else {
                    Ending::TargetUnreachable(e.to_string())
                }
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
            tls = facts.secure,
            from_client,
            to_client,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            close_code = ending.code(),
            "session ended: {ending}"
        );
    }
}

/// A failed plugin call as a metric result.
fn call_result(e: &CallError) -> PluginResult {
    match e {
        CallError::Failed { .. } => PluginResult::Error,
        CallError::Timeout { .. } => PluginResult::Timeout,
    }
}
