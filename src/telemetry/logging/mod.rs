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

use std::fmt;
use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::telemetry::syslog::Syslog;
use fields::PlainFields;

mod fields;

/// The target of every span we open (see the module doc).
pub const SPAN_TARGET: &str = "websockify::span";

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent. Drop it after
/// the runtime is gone: the flush blocks.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
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
    tracing_subscriber::registry()
        .with(layers(config, provider.as_ref())?)
        .try_init()
        .context("installing the log subscriber")?;
    if provider.is_some() {
        tracing::info!("sending traces to the OTLP collector named by OTEL_EXPORTER_OTLP_*");
    }
    Ok(Guard { provider })
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The layers `config` asks for: log lines, syslog's copy, and the trace exporter when there
/// is one.
///
/// Only the layers that exist are in the list, each with its own filter: a layer that is not
/// there (an `Option` layer set to `None` counts as one) would have every callsite enabled,
/// and each session's spans would then be created and entered on every poll of its task for
/// nobody. With this list a span no layer wants is disabled at its callsite, for free.
fn layers(config: &Config, traces: Option<&SdkTracerProvider>) -> anyhow::Result<Vec<BoxedLayer>> {
    let (writer, ansi) = match &config.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            (BoxMakeWriter::new(std::io::stderr), ansi)
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
        let syslog = Syslog::connect(server, *legacy, config.daemon)
            .with_context(|| format!("--syslog {server}"))?;
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
    Ok(layers)
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
        let subscriber = tracing_subscriber::registry().with(layers(config, traces).unwrap());
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

    /// With an exporter, the spans exist.
    #[test]
    fn spans_exist_with_traces() {
        let (span, _) = callsites(Level::INFO);
        let provider = SdkTracerProvider::builder().build();
        assert!(wanted(&config(&["8080", "h:1"]), Some(&provider), span));
    }
}
