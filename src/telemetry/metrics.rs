//! Prometheus metrics: every series the proxy exports, defined once, and the text exposition
//! that `/metrics` serves (see `server::ops`).
//!
//! The metrics are one process-wide set, as the `prometheus` crate's own registry is: the
//! relay, the handshakes, the plugins and TLS all count into it without each of them carrying
//! a handle, and a count is an atomic add on a series resolved once (no label lookup on the
//! hot path). Labels are of bounded cardinality only: outcomes, reasons, statuses, protocol
//! names, plugin names from the configuration. Never a token, a client address or a target.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::request::Transport;

/// Handshake and connect latencies: from half a millisecond (loopback) to the 10 s limits.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Session lengths: a failed connect to a day-long console.
const DURATION_BUCKETS: &[f64] = &[
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    12.0 * 3600.0,
    86400.0,
];

/// Which way relayed bytes and messages went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (WebSocket) to the target (TCP).
    FromClient,
    /// From the target to the client.
    ToClient,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::FromClient => "from_client",
            Direction::ToClient => "to_client",
        }
    }
}

/// Why a connection ended before it became a WebSocket session, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client closed (or sent nothing) before a complete request.
    ClosedEarly,
    /// The client said nothing within the first bytes' 3 s.
    Silent,
    /// A Flash policy request with `--no-flash-policy`.
    FlashRefused,
    /// A plugin had `--max-plugin-calls` calls in flight: 503 without a call.
    PluginBusy,
    /// The request head was not HTTP.
    MalformedHead,
    HeadTimeout,
    HeadTooLarge,
    /// `--ssl-only` and the client spoke plain.
    PlainRefused,
    /// The TLS handshake failed, timed out, or no certificate is configured.
    Tls,
    /// A WebSocket request we refuse: a bad header or an unsupported version.
    BadUpgrade,
    /// The auth plugin refused.
    AuthRefused,
    /// The token plugin refused (an unknown token, for example).
    TokenRefused,
    /// A plugin failed or did not answer in time.
    PluginFailed,
    /// The Hixie handshake's key bytes never came or were unusable.
    Hixie,
    /// `--max-connections` refused the request (503).
    MaxConnections,
    /// `--max-connections-per-ip` refused the request (503).
    MaxConnectionsPerIp,
    /// `--proxy-protocol` and no valid PROXY protocol header.
    ProxyProtocol,
    /// `--allow-target` does not allow the request's target.
    TargetNotAllowed,
    /// An HTTP/2 connection broke the protocol or one of its bounds (a flood of resets,
    /// settings, pings or header fragments; a preface or SETTINGS that never came).
    Http2,
}

impl HandshakeFailure {
    fn label(self) -> &'static str {
        match self {
            HandshakeFailure::ClosedEarly => "closed_early",
            HandshakeFailure::Silent => "silent",
            HandshakeFailure::FlashRefused => "flash_refused",
            HandshakeFailure::PluginBusy => "plugin_busy",
            HandshakeFailure::Http2 => "http2",
            HandshakeFailure::MalformedHead => "malformed_head",
            HandshakeFailure::HeadTimeout => "head_timeout",
            HandshakeFailure::HeadTooLarge => "head_too_large",
            HandshakeFailure::PlainRefused => "plain_refused",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::BadUpgrade => "bad_upgrade",
            HandshakeFailure::AuthRefused => "auth_refused",
            HandshakeFailure::TokenRefused => "token_refused",
            HandshakeFailure::PluginFailed => "plugin_failed",
            HandshakeFailure::Hixie => "hixie",
            HandshakeFailure::MaxConnections => "max_connections",
            HandshakeFailure::MaxConnectionsPerIp => "max_connections_per_ip",
            HandshakeFailure::ProxyProtocol => "proxy_protocol",
            HandshakeFailure::TargetNotAllowed => "target_not_allowed",
        }
    }
}

/// A plugin call's result, for the token and auth counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginResult {
    /// A target (token plugins) or a pass (auth plugins).
    Ok,
    Refused,
    Error,
    Timeout,
    /// Refused without a call: `--max-plugin-calls` were in flight.
    Busy,
}

impl PluginResult {
    fn label(self) -> &'static str {
        match self {
            PluginResult::Ok => "ok",
            PluginResult::Refused => "refused",
            PluginResult::Error => "error",
            PluginResult::Timeout => "timeout",
            PluginResult::Busy => "busy",
        }
    }
}

/// Process-wide sums of a few series: no label, nothing about any one client or target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// WebSocket sessions in progress.
    pub sessions_active: u64,
    /// WebSocket sessions upgraded since the start, every protocol.
    pub sessions_started: u64,
    /// Payload bytes relayed from clients to targets.
    pub from_client: u64,
    /// Payload bytes relayed from targets to clients.
    pub to_client: u64,
}

/// Every series. Fields are public so that each event is counted where it happens.
pub struct Metrics {
    registry: Registry,
    pub connections_accepted: IntCounter,
    pub connections_active: IntGauge,
    sessions_started: IntCounterVec,
    sessions_ended: IntCounterVec,
    pub sessions_active: IntGauge,
    /// Places of `--max-connections` held now (sessions and web requests being served).
    pub connection_places_held: IntGauge,
    /// `--max-connections` in force.
    pub max_connections: IntGauge,
    pub session_duration: Histogram,
    relayed_bytes: [IntCounter; 2],
    relayed_messages: [IntCounter; 2],
    handshake_failures: IntCounterVec,
    pub handshake_duration: HistogramVec,
    pub target_connect_duration: Histogram,
    pub target_connect_failures: IntCounter,
    token_lookups: IntCounterVec,
    auth_checks: IntCounterVec,
    plugin_errors: IntCounterVec,
    plugin_call_duration: HistogramVec,
    tls_handshakes: IntCounterVec,
    web_requests: IntCounterVec,
    reloads: IntCounterVec,
    admin_requests: IntCounterVec,
    /// What gave way so that no session waited (the block at the end of this file).
    pub liveness: Liveness,
    /// permessage-deflate (the block at the end of this file).
    pub compression: CompressionMetrics,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    // The definitions are constants of this file, checked by a unit test; no input reaches
    // them, so a failure here is a bug in this file and not a condition to handle.
    Metrics::new().expect("the metric definitions are valid")
});

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    register(registry, IntCounter::new(name, help)?)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    register(registry, IntGauge::new(name, help)?)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let per_direction = |vec: &IntCounterVec| {
            [
                vec.with_label_values(&[Direction::FromClient.label()]),
                vec.with_label_values(&[Direction::ToClient.label()]),
            ]
        };
        let bytes = counter_vec(
            &r,
            "websockify_relayed_bytes_total",
            "Payload bytes relayed, by direction (from_client: to the target).",
            &["direction"],
        )?;
        let messages = counter_vec(
            &r,
            "websockify_relayed_messages_total",
            "WebSocket data messages relayed, by direction.",
            &["direction"],
        )?;
        let build = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "websockify_build_info",
                    "Always 1; the labels name the running build.",
                ),
                &["version", "commit"],
            )?,
        )?;
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("WEBSOCKIFY_BUILD_COMMIT")])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let m = Metrics {
            connections_accepted: counter(
                &r,
                "websockify_connections_accepted_total",
                "Connections accepted on the proxy port.",
            )?,
            connections_active: gauge(
                &r,
                "websockify_connections_active",
                "Open connections on the proxy port, sessions and handshakes in progress.",
            )?,
            sessions_started: counter_vec(
                &r,
                "websockify_sessions_started_total",
                "WebSocket sessions upgraded, by protocol (hybi-13/binary, hixie-76/base64, ...) \
                 and transport (http1, or h2: a stream of an HTTP/2 connection).",
                &["protocol", "transport"],
            )?,
            sessions_ended: counter_vec(
                &r,
                "websockify_sessions_ended_total",
                "WebSocket sessions ended, by outcome and the close code sent or received.",
                &["outcome", "close_code"],
            )?,
            sessions_active: gauge(
                &r,
                "websockify_sessions_active",
                "WebSocket sessions in progress.",
            )?,
            connection_places_held: gauge(
                &r,
                "websockify_connection_places_held",
                "Places of --max-connections held now: WebSocket sessions (from the admission \
                 decision to their end) and web requests being answered.",
            )?,
            max_connections: gauge(
                &r,
                "websockify_max_connections",
                "The --max-connections limit in force (derived from the descriptor limit \
                 unless set).",
            )?,
            session_duration: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "websockify_session_duration_seconds",
                        "How long WebSocket sessions lasted, from the upgrade to the end.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                )?,
            )?,
            relayed_bytes: per_direction(&bytes),
            relayed_messages: per_direction(&messages),
            handshake_failures: counter_vec(
                &r,
                "websockify_handshake_failures_total",
                "Connections that did not become a session, by reason and the HTTP status \
                 answered (none: no answer was possible).",
                &["reason", "status"],
            )?,
            handshake_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "websockify_handshake_duration_seconds",
                        "From accepting the connection to the upgrade answer (TLS, request, \
                         plugins), by protocol family (hybi, hixie).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["protocol"],
                )?,
            )?,
            plugin_call_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "websockify_plugin_call_duration_seconds",
                        "Plugin calls from asking to the answer (or the timeout), by plugin and \
                         kind (token, auth).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["plugin", "kind"],
                )?,
            )?,
            target_connect_duration: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "websockify_target_connect_duration_seconds",
                        "Time to connect the target (resolution, TCP and TLS), successful or not.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )?,
            )?,
            target_connect_failures: counter(
                &r,
                "websockify_target_connect_failures_total",
                "Sessions whose target could not be connected.",
            )?,
            token_lookups: counter_vec(
                &r,
                "websockify_token_lookups_total",
                "Token plugin lookups, by plugin and result (ok, refused, error, timeout).",
                &["plugin", "result"],
            )?,
            auth_checks: counter_vec(
                &r,
                "websockify_auth_checks_total",
                "Auth plugin checks, by plugin and result (ok, refused, error, timeout).",
                &["plugin", "result"],
            )?,
            plugin_errors: counter_vec(
                &r,
                "websockify_plugin_errors_total",
                "Plugin calls that gave no usable answer, by plugin and kind (error, timeout).",
                &["plugin", "kind"],
            )?,
            tls_handshakes: counter_vec(
                &r,
                "websockify_tls_handshakes_total",
                "TLS handshakes with clients, by result (ok, failed, timeout, no_certificate).",
                &["result"],
            )?,
            web_requests: counter_vec(
                &r,
                "websockify_web_requests_total",
                "Plain HTTP requests answered (the --web directory or 405), by status.",
                &["status"],
            )?,
            reloads: counter_vec(
                &r,
                "websockify_reloads_total",
                "Reloads (SIGHUP, certificate file changes), by what and result (ok, failed).",
                &["what", "result"],
            )?,
            admin_requests: counter_vec(
                &r,
                "websockify_admin_requests_total",
                "Requests to the admin API (/sessions), by result: listed, ended, not_found, \
                 unauthorized (a missing or wrong token), bad_request.",
                &["result"],
            )?,
            liveness: Liveness::new(&r)?,
            compression: CompressionMetrics::new(&r)?,
            registry: r,
        };
        Ok(m)
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing text into a Vec fails only on a metric the encoder cannot represent, which
        // our definitions exclude; a partial page is still better than none.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }

    /// The aggregate numbers the landing page shows (`web::status`), read from the series
    /// themselves so that they always agree with `/metrics`.
    pub fn totals(&self) -> Totals {
        let sessions_started = self
            .sessions_started
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value())
            .sum::<f64>();
        Totals {
            // The gauge is decremented by the guard that incremented it, so it is never
            // negative; 0 is the honest answer if it ever were.
            sessions_active: u64::try_from(self.sessions_active.get()).unwrap_or(0),
            // A counter's value is a whole number held in an f64: exact up to 2^53.
            sessions_started: sessions_started as u64,
            from_client: self.relayed_bytes[Direction::FromClient as usize].get(),
            to_client: self.relayed_bytes[Direction::ToClient as usize].get(),
        }
    }

    /// A whole message (or the last piece of one) relayed.
    pub fn relayed(&self, direction: Direction, bytes: usize) {
        self.relayed_bytes(direction, bytes);
        self.relayed_messages[direction as usize].inc();
    }

    /// A piece of a message that continues.
    pub fn relayed_bytes(&self, direction: Direction, bytes: usize) {
        self.relayed_bytes[direction as usize].inc_by(bytes as u64);
    }

    pub fn session_started(&self, protocol: &str, transport: Transport) {
        self.sessions_started
            .with_label_values(&[protocol, transport.label()])
            .inc();
    }

    /// A session's end: outcome (e.g. `target_closed`), its close code, and its length.
    pub fn session_ended(&self, outcome: &str, code: u16, duration: Duration) {
        self.sessions_ended
            .with_label_values(&[outcome, close_code_label(code)])
            .inc();
        self.session_duration.observe(duration.as_secs_f64());
    }

    pub fn handshake_failed(&self, reason: HandshakeFailure, status: Option<http::StatusCode>) {
        self.handshake_failures
            .with_label_values(&[
                reason.label(),
                status.as_ref().map_or("none", |s| s.as_str()),
            ])
            .inc();
    }

    /// A plugin call took `took`; `auth`: an auth check, else a token lookup.
    pub fn plugin_call(&self, plugin: &str, auth: bool, took: Duration) {
        self.plugin_call_duration
            .with_label_values(&[plugin, if auth { "auth" } else { "token" }])
            .observe(took.as_secs_f64());
    }

    pub fn token_lookup(&self, plugin: &str, result: PluginResult) {
        self.token_lookups
            .with_label_values(&[plugin, result.label()])
            .inc();
        self.plugin_error(plugin, result);
    }

    pub fn auth_check(&self, plugin: &str, result: PluginResult) {
        self.auth_checks
            .with_label_values(&[plugin, result.label()])
            .inc();
        self.plugin_error(plugin, result);
    }

    fn plugin_error(&self, plugin: &str, result: PluginResult) {
        if matches!(
            result,
            PluginResult::Error | PluginResult::Timeout | PluginResult::Busy
        ) {
            self.plugin_errors
                .with_label_values(&[plugin, result.label()])
                .inc();
        }
    }

    /// `result`: ok, failed, timeout or no_certificate.
    pub fn tls_handshake(&self, result: &'static str) {
        self.tls_handshakes.with_label_values(&[result]).inc();
    }

    pub fn web_request(&self, status: http::StatusCode) {
        self.web_requests
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// `what`: certificate, token_plugin or auth_plugin.
    pub fn reload(&self, what: &'static str, ok: bool) {
        self.reloads
            .with_label_values(&[what, if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// `result`: listed, ended, not_found, unauthorized or bad_request.
    pub fn admin_request(&self, result: &'static str) {
        self.admin_requests.with_label_values(&[result]).inc();
    }
}

// ---- Liveness: what gives way so that no session waits --------------------------------------
// Log lines a stalled sink could not take, a recording a slow disk could not keep up with.
// One block, registered by one line in `Metrics::new`, so that it merges apart from the
// other series.

use std::sync::{Mutex, PoisonError};

use prometheus::core::Desc;
use prometheus::proto::MetricFamily;

/// Series counting what was given up so that no session, worker or process waited for it.
pub struct Liveness {
    /// `--record` recordings that lost data because the disk could not keep up; once per
    /// session (`session::record`).
    pub recordings_truncated: IntCounter,
}

impl Liveness {
    fn new(r: &Registry) -> prometheus::Result<Liveness> {
        r.register(Box::new(LogLinesDropped {
            counter: IntCounter::new(
                "websockify_log_lines_dropped_total",
                "Log lines dropped because their sink (standard error, --log-file, --syslog) \
                 did not take them and its queue was full.",
            )?,
            scrape: Mutex::new(()),
        }))?;
        Ok(Liveness {
            recordings_truncated: counter(
                r,
                "websockify_recordings_truncated_total",
                "Session recordings (--record) that left data out because the disk could not \
                 keep up; each notes its gaps in its file.",
            )?,
        })
    }
}

/// `websockify_log_lines_dropped_total`: the log queues count their dropped lines
/// themselves (`telemetry::logging::dropped_lines`); each scrape brings this counter up to
/// their sum, so that nothing on the logging path touches the metrics.
struct LogLinesDropped {
    counter: IntCounter,
    /// Scrapes bring the counter up one at a time, so that none adds the same lines twice.
    scrape: Mutex<()>,
}

impl Collector for LogLinesDropped {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = crate::telemetry::logging::dropped_lines();
        if let Some(new) = dropped.checked_sub(self.counter.get()) {
            self.counter.inc_by(new);
        }
        self.counter.collect()
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;

    #[test]
    fn liveness_series_are_exported() {
        let m = Metrics::new().unwrap();
        m.liveness.recordings_truncated.inc();
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains("\nwebsockify_recordings_truncated_total 1\n"),
            "{text}"
        );
        // No log queue in the unit tests: none dropped.
        assert!(
            text.contains("\nwebsockify_log_lines_dropped_total 0\n"),
            "{text}"
        );
    }
}

// ---- end of Liveness -----------------------------------------------------------------------

/// Close codes as labels: the registered ones (1000 to 1015) as themselves, the
/// application ranges folded, so a client cannot create series at will.
fn close_code_label(code: u16) -> &'static str {
    const REGISTERED: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code {
        1000..=1015 => REGISTERED[usize::from(code - 1000)],
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_register_and_encode() {
        let m = Metrics::new().unwrap();
        m.relayed(Direction::ToClient, 10);
        m.session_ended("target_closed", 1000, Duration::from_millis(5));
        m.handshake_failed(
            HandshakeFailure::BadUpgrade,
            Some(http::StatusCode::BAD_REQUEST),
        );
        m.handshake_failed(HandshakeFailure::ClosedEarly, None);
        let text = String::from_utf8(m.encode()).unwrap();
        for line in [
            "websockify_relayed_bytes_total{direction=\"to_client\"} 10",
            "websockify_relayed_messages_total{direction=\"to_client\"} 1",
            "websockify_sessions_ended_total{close_code=\"1000\",outcome=\"target_closed\"} 1",
            "websockify_handshake_failures_total{reason=\"bad_upgrade\",status=\"400\"} 1",
            "websockify_handshake_failures_total{reason=\"closed_early\",status=\"none\"} 1",
            "websockify_session_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("websockify_build_info{commit="), "{text}");
        m.session_started("hybi-13/binary", Transport::Http1);
        m.session_started("hybi-13/base64", Transport::H2);
        m.relayed(Direction::FromClient, 3);
        m.sessions_active.inc();
        assert_eq!(
            m.totals(),
            Totals {
                sessions_active: 1,
                sessions_started: 2,
                from_client: 3,
                to_client: 10,
            }
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn close_codes_fold_into_few_labels() {
        assert_eq!(close_code_label(1000), "1000");
        assert_eq!(close_code_label(1015), "1015");
        assert_eq!(close_code_label(4321), "4xxx");
        assert_eq!(close_code_label(3000), "3xxx");
        assert_eq!(close_code_label(2999), "other");
    }
}

// ---- permessage-deflate ---------------------------------------------------------------------

/// What compression did: sessions that negotiated it, and the bytes of their messages as
/// relayed (payload) and as they crossed the client's connection (wire), by direction.
pub struct CompressionMetrics {
    pub sessions: IntCounter,
    payload: [IntCounter; 2],
    wire: [IntCounter; 2],
}

impl CompressionMetrics {
    fn new(r: &Registry) -> prometheus::Result<CompressionMetrics> {
        let sessions = counter(
            r,
            "websockify_compression_sessions_total",
            "WebSocket sessions that negotiated permessage-deflate (--compression).",
        )?;
        let payload = counter_vec(
            r,
            "websockify_compression_payload_bytes_total",
            "Message payload bytes of sessions with permessage-deflate, uncompressed, by \
             direction (from_client: inflated from what the client sent).",
            &["direction"],
        )?;
        let wire = counter_vec(
            r,
            "websockify_compression_wire_bytes_total",
            "The same messages' payload bytes on the client's connection (compressed, or as \
             they were when compressing did not pay), by direction.",
            &["direction"],
        )?;
        let per_direction = |vec: &IntCounterVec| {
            [
                vec.with_label_values(&[Direction::FromClient.label()]),
                vec.with_label_values(&[Direction::ToClient.label()]),
            ]
        };
        Ok(CompressionMetrics {
            sessions,
            payload: per_direction(&payload),
            wire: per_direction(&wire),
        })
    }

    /// A message (or a piece of one) of `payload` bytes that took `wire` bytes on the wire.
    pub fn message(&self, direction: Direction, payload: usize, wire: usize) {
        self.payload[direction as usize].inc_by(payload as u64);
        self.wire[direction as usize].inc_by(wire as u64);
    }
}
