//! Logging and tracing through `tracing`.
//!
//! - Log lines: info by default, debug with `-v`, any `RUST_LOG` filter on top; as text or, with
//!   `--log-format json`, one JSON object per line (`time`, `level`, `message` and the event's
//!   fields: `id`, `client`, `target`, `from_client`, `to_client`, `duration_ms`,
//!   `close_code`, ...); to standard error, or appended to `--log-file`; and with `--syslog`,
//!   to syslog as well (see [`crate::telemetry::syslog`]). Text without colours has its fields written
//!   by [`fields`] (the same bytes as tracing-subscriber's default, for less work).
//! - Traces: when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is
//!   set, spans go to that OTLP/HTTP collector (protobuf, or JSON with
//!   `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) through tracing-opentelemetry: one `session` span
//!   per connection with `tls_handshake`, `handshake`, `auth`, `token_lookup` and
//!   `target_connect` children. `OTEL_SERVICE_NAME` names the service (default `websockify`).
//!
//! Spans carry the target [`SPAN_TARGET`], which only the OpenTelemetry layer listens to: the
//! log lines stay one line per event, with the fields the events carry themselves.
//!
//! Logging never waits for a sink. Each one (standard error, `--log-file`, `--syslog`) is
//! written by a thread of its own from a queue of [`QUEUED_LINES`] lines (tracing-appender's
//! non-blocking writer): a line is formatted where it happens and queued, and when the queue
//! is full (a pipe nobody reads, a hung disk, a syslog that does not take its messages) the
//! line is dropped and counted, in `websockify_log_lines_dropped_total` ([`dropped_lines`]).
//! Before, a stalled sink held every worker that logged, and on one CPU every session.

use std::fmt;
use std::fs::OpenOptions;
use std::sync::OnceLock;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::telemetry::syslog::{Socket, Syslog};
use fields::PlainFields;

mod fields;

/// The target of every span we open (see the module doc).
pub const SPAN_TARGET: &str = "websockify::span";

/// Lines each log sink's queue holds before it drops them. Enough for a burst (thousands of
/// sessions ending at once at shutdown, each with its line) while the sink keeps up, which a
/// file or a pipe that is read does at hundreds of thousands of lines a second; small enough
/// that a stalled sink holds a few MiB of lines at most (a line is 100 to 400 bytes), and
/// the queue's slots, allocated at start, are 256 KiB a sink.
const QUEUED_LINES: usize = 8192;

/// Every sink's count of dropped lines, for `/metrics`; set once by [`init`].
static DROPPED: OnceLock<Vec<ErrorCounter>> = OnceLock::new();

/// Log lines dropped so far because a sink's queue was full, all sinks together.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counters| {
        counters
            .iter()
            .map(|c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
            .fold(0, u64::saturating_add)
    })
}

/// Keeps the trace exporter and the log sinks' threads alive; dropping it flushes the spans
/// not yet sent, then the lines still queued (tracing-appender waits about a second at most
/// for a sink that does not take them). Drop it after the runtime is gone: the flushes block.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// Dropped after `drop` below has flushed the spans, whose export may log.
    _sinks: Vec<WorkerGuard>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("websockify: flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber. Fails if the log file cannot be opened or the
/// OpenTelemetry variables ask for something we cannot do.
pub fn init(config: &Config) -> anyhow::Result<Guard> {
    let provider = otel_provider()?;
    let (layers, sinks) = layers(config, provider.as_ref())?;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("installing the log subscriber")?;
    let _ = DROPPED.set(sinks.counters);
    if provider.is_some() {
        tracing::info!("sending traces to the OTLP collector named by OTEL_EXPORTER_OTLP_*");
    }
    Ok(Guard {
        provider,
        _sinks: sinks.guards,
    })
}

/// The log sinks' queues: their threads' guards and their counts of dropped lines.
#[derive(Default)]
struct Sinks {
    guards: Vec<WorkerGuard>,
    counters: Vec<ErrorCounter>,
}

impl Sinks {
    /// `sink` behind a queue of [`QUEUED_LINES`] lines and a thread that writes them.
    fn add<W: std::io::Write + Send + 'static>(&mut self, sink: W, thread: &str) -> NonBlocking {
        let (writer, guard) = queue(sink, QUEUED_LINES, thread);
        self.counters.push(writer.error_counter());
        self.guards.push(guard);
        writer
    }
}

/// A lossy non-blocking writer to `sink`: a write queues its bytes as one line, or drops and
/// counts them when `lines` are already waiting.
fn queue<W: std::io::Write + Send + 'static>(
    sink: W,
    lines: usize,
    thread: &str,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name(thread)
        .finish(sink)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The layers `config` asks for: log lines, syslog's copy, and the trace exporter when there
/// is one.
///
/// Only the layers that exist are in the list, each with its own filter: a layer that is not
/// there (an `Option` layer set to `None` counts as one) would have every callsite enabled,
/// and each session's spans would then be created and entered on every poll of its task for
/// nobody. With this list a span no layer wants is disabled at its callsite, for free.
fn layers(
    config: &Config,
    traces: Option<&SdkTracerProvider>,
) -> anyhow::Result<(Vec<BoxedLayer>, Sinks)> {
    let mut sinks = Sinks::default();
    let (writer, ansi) = match &config.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            (sinks.add(file, "websockify-log"), false)
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            (sinks.add(std::io::stderr(), "websockify-log"), ansi)
        }
    };
    let ansi = ansi && config.log_format == LogFormat::Text;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let mut layers = vec![match config.log_format {
        LogFormat::Text => fmt
            .fmt_fields(PlainFields)
            .with_filter(filter(config)?)
            .boxed(),
        LogFormat::Json => fmt
            .event_format(JsonLines)
            .with_filter(filter(config)?)
            .boxed(),
    }];
    if let Some((server, legacy)) = &config.syslog {
        let socket = Socket::connect(server).with_context(|| format!("--syslog {server}"))?;
        let syslog = Syslog::new(
            sinks.add(socket, "websockify-syslog"),
            *legacy,
            config.daemon,
        );
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(syslog)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .fmt_fields(PlainFields)
            .with_filter(filter(config)?);
        layers.push(layer.boxed());
    }
    if let Some(provider) = traces {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("websockify"))
            // Our spans have a `target` field of their own: the session's target address.
            .with_target(false)
            .with_filter(Targets::new().with_target("websockify", LevelFilter::INFO));
        layers.push(layer.boxed());
    }
    Ok((layers, sinks))
}

/// Info by default, debug with `-v`, `RUST_LOG` on top; never the spans.
fn filter(config: &Config) -> anyhow::Result<EnvFilter> {
    let default = if config.verbose { "debug" } else { "info" };
    // Our own crate at the chosen level; libraries stay at warn unless RUST_LOG says more.
    let fallback = format!("warn,websockify={default}");
    Ok(EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(fallback))
        .add_directive(format!("{SPAN_TARGET}=off").parse()?))
}

/// A non-empty environment variable.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The OTLP trace pipeline the standard variables describe, or `None` when tracing is off.
fn otel_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
    {
        return Ok(None);
    }
    if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let (name, value) = match (
        var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        var("OTEL_EXPORTER_OTLP_PROTOCOL"),
    ) {
        (Some(v), _) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v),
        (None, Some(v)) => ("OTEL_EXPORTER_OTLP_PROTOCOL", v),
        (None, None) => ("", "http/protobuf".to_string()),
    };
    let protocol = match value.trim().to_ascii_lowercase().as_str() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => anyhow::bail!(
            "{name}={other}: expected http/protobuf or http/json (gRPC is not built in; \
             collectors take OTLP/HTTP on port 4318)"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .context("OpenTelemetry exporter")?;
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name("websockify");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// `--log-format json`: one object per line, `time`, `level`, `message`, then the fields.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut object = serde_json::Map::new();
        object.insert("time".into(), time.into());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        object.insert("level".into(), level.into());
        event.record(&mut JsonFields(&mut object));
        let module = event.metadata().target();
        if module != "websockify" && !module.starts_with("websockify::") {
            // A library's event: say whose.
            object.insert("module".into(), module.into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

/// Collects an event's fields as JSON values: numbers and booleans stay typed.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use tracing::{Dispatch, Level, Metadata};

    use super::*;
    use crate::cli::Cli;

    fn config(args: &[&str]) -> Config {
        let matches = Cli::command()
            .try_get_matches_from(["websockify"].iter().chain(args))
            .unwrap();
        crate::config::load(&matches, &[])
            .unwrap()
            .validate()
            .unwrap()
    }

    /// The metadata of a session span, and of a callsite at `level` in the relay's module as
    /// a log line's stand-in (the log layers filter on target and level alike for spans and
    /// events). Made under a subscriber that takes everything, so that both exist.
    fn callsites(level: Level) -> (&'static Metadata<'static>, &'static Metadata<'static>) {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!(target: SPAN_TARGET, "session", id = 1);
            let line = match level {
                Level::INFO => tracing::info_span!(target: "websockify::relay", "line"),
                _ => tracing::debug_span!(target: "websockify::relay", "line"),
            };
            (span.metadata().unwrap(), line.metadata().unwrap())
        })
    }

    /// What `layers` would make of a callsite. Asked of the subscriber itself: the interest
    /// a callsite caches is shared by every subscriber alive in the process, other tests' too.
    fn wanted(
        config: &Config,
        traces: Option<&SdkTracerProvider>,
        at: &'static Metadata<'static>,
    ) -> bool {
        let (layers, _sinks) = layers(config, traces).unwrap();
        let subscriber = tracing_subscriber::registry().with(layers);
        let dispatch = Dispatch::new(subscriber);
        let interest = dispatch.register_callsite(at);
        !interest.is_never() && dispatch.enabled(at)
    }

    /// Without a trace exporter nothing wants our spans: they must be disabled where they are
    /// made, or every session's task would enter and leave its span on every poll.
    #[test]
    fn spans_cost_nothing_without_traces() {
        let (span, info) = callsites(Level::INFO);
        let (_, debug) = callsites(Level::DEBUG);
        let plain = config(&["8080", "h:1"]);
        assert!(!wanted(&plain, None, span));
        assert!(wanted(&plain, None, info));
        assert!(!wanted(&plain, None, debug));
        let verbose = config(&["-v", "8080", "h:1"]);
        assert!(!wanted(&verbose, None, span));
        assert!(wanted(&verbose, None, debug));
    }

    /// A sink that takes nothing: every write returns at once, the queue holds its lines,
    /// and each line beyond them is dropped and counted.
    #[test]
    fn a_stalled_sink_drops_and_counts_lines() {
        use std::io::Write;
        /// Blocks in its first write until the test lets go.
        struct Stalled(std::sync::mpsc::Receiver<()>);
        impl Write for Stalled {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stalled) = std::sync::mpsc::channel();
        let (mut writer, guard) = queue(Stalled(stalled), 16, "test-log");
        let started = std::time::Instant::now();
        for _ in 0..100 {
            writer.write_all(b"a line\n").unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // 16 wait in the queue, and the thread may have taken one into its stalled write.
        let dropped = writer.error_counter().dropped_lines();
        assert!((83..=84).contains(&dropped), "{dropped} dropped");
        drop(release);
        drop(guard);
    }

    /// With an exporter, the spans exist.
    #[test]
    fn spans_exist_with_traces() {
        let (span, _) = callsites(Level::INFO);
        let provider = SdkTracerProvider::builder().build();
        assert!(wanted(&config(&["8080", "h:1"]), Some(&provider), span));
    }
}
