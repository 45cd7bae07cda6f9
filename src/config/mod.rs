//! Configuration: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment into one typed [`Settings`], then validated once into the [`Config`] the server runs.
//!
//! One naming rule for every setting: the flag `--foo-bar` is the variable `WEBSOCKIFY_FOO_BAR`
//! and the file key `foo_bar`; the two positionals are `listen` and `target`. Every error names
//! where the bad value came from (flag, variable or file), and an unknown key or variable is
//! refused with the closest valid name.

mod de;
mod layer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

use crate::addr::{HostPort, ListenAddr};
use crate::cli::Cli;
use crate::edge::forwarded::TrustedProxies;
use crate::limits::{
    AllowList, ByteSize, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE, Limits,
};
use crate::session::target::Target;

use layer::Layer;

/// The prefix of every environment variable that is a setting.
pub const ENV_PREFIX: &str = "WEBSOCKIFY_";
/// websockify's default certificate file, looked up in the working directory.
pub const DEFAULT_CERT: &str = "self.pem";

/// The variable naming the configuration file; it is not itself a setting.
pub const ENV_CONFIG: &str = "WEBSOCKIFY_CONFIG";

/// The build's commit for `--version`, read at compile time (build.rs). Cargo also sets it
/// when it runs the binary (`cargo run`, tests), so at run time it is ignored, not refused.
pub const ENV_BUILD_COMMIT: &str = "WEBSOCKIFY_BUILD_COMMIT";

/// Every setting, as merged from all layers and before cross-field validation.
///
/// Field names are the file keys; see the module doc for the naming rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[source_addr:]source_port`, the first positional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenAddr>,
    /// `target_addr:target_port`, the second positional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<HostPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_target: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_listen: Option<PathBuf>,
    pub unix_listen_mode: FileMode,
    #[serde(deserialize_with = "de::flag")]
    pub inetd: bool,
    #[serde(deserialize_with = "de::flag")]
    pub prefer_ipv6: bool,
    #[serde(deserialize_with = "de::flag")]
    pub verbose: bool,
    #[serde(deserialize_with = "de::flag")]
    pub traffic: bool,
    #[serde(deserialize_with = "de::flag")]
    pub run_once: bool,
    #[serde(deserialize_with = "de::seconds")]
    pub timeout: u64,
    #[serde(deserialize_with = "de::seconds")]
    pub idle_timeout: u64,
    #[serde(deserialize_with = "de::seconds")]
    pub heartbeat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<PathBuf>,
    #[serde(deserialize_with = "de::flag")]
    pub file_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_password: Option<Secret>,
    #[serde(deserialize_with = "de::flag")]
    pub ssl_only: bool,
    #[serde(deserialize_with = "de::flag")]
    pub ssl_target: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_target_ca: Option<PathBuf>,
    #[serde(deserialize_with = "de::flag")]
    pub verify_client: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    pub ssl_version: SslVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ciphers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_config: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<String>,
    #[serde(deserialize_with = "de::flag")]
    pub host_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_source: Option<String>,
    #[serde(deserialize_with = "de::flag")]
    pub web_auth: bool,
    /// `--metrics-listen`: where `/metrics`, `/healthz` and `/readyz` are served (off if unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<ListenAddr>,
    pub log_format: LogFormat,
    #[serde(deserialize_with = "de::seconds")]
    pub shutdown_grace: u64,
    /// `--max-connections` (0: from the descriptor limit).
    #[serde(deserialize_with = "de::count")]
    pub max_connections: u64,
    /// `--max-connections-per-ip` (0: no limit).
    #[serde(deserialize_with = "de::count")]
    pub max_connections_per_ip: u64,
    pub max_message_size: ByteSize,
    #[serde(deserialize_with = "de::seconds")]
    pub handshake_timeout: u64,
    #[serde(deserialize_with = "de::seconds")]
    pub connect_timeout: u64,
    #[serde(deserialize_with = "de::seconds")]
    pub session_idle_timeout: u64,
    #[serde(
        skip_serializing_if = "AllowList::is_empty",
        deserialize_with = "de::comma_list"
    )]
    pub allow_target: AllowList,
    /// `--proxy-protocol`: every connection starts with a PROXY protocol header.
    #[serde(deserialize_with = "de::flag")]
    pub proxy_protocol: bool,
    /// `--target-proxy-protocol`: send a PROXY protocol header to targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_proxy_protocol: Option<crate::edge::proxy_protocol::Version>,
    /// `--trusted-proxies`: believe forwarded headers from these networks.
    #[serde(
        skip_serializing_if = "TrustedProxies::is_empty",
        deserialize_with = "de::comma_list"
    )]
    pub trusted_proxies: TrustedProxies,
    /// `-- COMMAND ARGS...`: the program to wrap (a list, or one shell-quoted string).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::command"
    )]
    pub wrap_command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap_mode: Option<WrapMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebind_lib: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
    #[serde(deserialize_with = "de::flag")]
    pub daemon: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,
    #[serde(deserialize_with = "de::flag")]
    pub legacy_syslog: bool,
}

/// `--wrap-mode`: what to do when the wrapped program exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrapMode {
    /// Exit with the program's status (websockify's default).
    #[default]
    Exit,
    /// Keep serving; sessions fail to connect until something listens again.
    Ignore,
    /// Start the program again, backing off when it dies quickly.
    Respawn,
}

impl fmt::Display for WrapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WrapMode::Exit => "exit",
            WrapMode::Ignore => "ignore",
            WrapMode::Respawn => "respawn",
        })
    }
}

impl FromStr for WrapMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "exit" => Ok(WrapMode::Exit),
            "ignore" => Ok(WrapMode::Ignore),
            "respawn" => Ok(WrapMode::Respawn),
            _ => Err(format!(
                "`{s}` is not a wrap mode: expected exit, ignore or respawn"
            )),
        }
    }
}

/// `--log-format`: human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format: expected text or json")),
        }
    }
}

/// How long running sessions may go on after SIGTERM before they are closed with 1001.
pub const DEFAULT_SHUTDOWN_GRACE: u64 = 30;

/// A value that is never shown: `--print-config` and debug output print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `--ssl-version`: the lowest TLS version accepted, in websockify's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslVersion {
    /// rustls's default: TLS 1.2 and 1.3.
    #[default]
    Default,
    /// Accepted for websockify command lines; rustls has no TLS 1.1, so this is TLS 1.2.
    Tlsv1_1,
    Tlsv1_2,
    Tlsv1_3,
}

impl fmt::Display for SslVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslVersion::Default => "default",
            SslVersion::Tlsv1_1 => "tlsv1_1",
            SslVersion::Tlsv1_2 => "tlsv1_2",
            SslVersion::Tlsv1_3 => "tlsv1_3",
        })
    }
}

impl FromStr for SslVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "default" => Ok(SslVersion::Default),
            "tlsv1_1" => Ok(SslVersion::Tlsv1_1),
            "tlsv1_2" => Ok(SslVersion::Tlsv1_2),
            "tlsv1_3" => Ok(SslVersion::Tlsv1_3),
            _ => Err(format!(
                "`{s}` is not a TLS version: expected default, tlsv1_1, tlsv1_2 or tlsv1_3"
            )),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: None,
            target: None,
            unix_target: None,
            unix_listen: None,
            unix_listen_mode: FileMode(0o600),
            inetd: false,
            prefer_ipv6: false,
            verbose: false,
            traffic: false,
            run_once: false,
            timeout: 0,
            idle_timeout: 0,
            heartbeat: 0,
            log_file: None,
            web: None,
            file_only: false,
            cert: None,
            key: None,
            key_password: None,
            ssl_only: false,
            ssl_target: false,
            ssl_target_ca: None,
            verify_client: false,
            cafile: None,
            ssl_version: SslVersion::Default,
            ssl_ciphers: None,
            target_config: None,
            token_plugin: None,
            token_source: None,
            host_token: false,
            auth_plugin: None,
            auth_source: None,
            web_auth: false,
            metrics_listen: None,
            log_format: LogFormat::Text,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_message_size: ByteSize(DEFAULT_MAX_MESSAGE_SIZE),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            session_idle_timeout: 0,
            allow_target: AllowList::default(),
            proxy_protocol: false,
            target_proxy_protocol: None,
            trusted_proxies: TrustedProxies::default(),
            wrap_command: None,
            wrap_mode: None,
            rebind_lib: None,
            record: None,
            daemon: false,
            syslog: None,
            legacy_syslog: false,
        }
    }
}

/// The names of every setting (the file keys), for "did you mean" suggestions and checks.
pub const SETTING_NAMES: &[&str] = &[
    "listen",
    "target",
    "unix_target",
    "unix_listen",
    "unix_listen_mode",
    "inetd",
    "prefer_ipv6",
    "verbose",
    "traffic",
    "run_once",
    "timeout",
    "idle_timeout",
    "heartbeat",
    "log_file",
    "web",
    "file_only",
    "cert",
    "key",
    "key_password",
    "ssl_only",
    "ssl_target",
    "ssl_target_ca",
    "verify_client",
    "cafile",
    "ssl_version",
    "ssl_ciphers",
    "target_config",
    "token_plugin",
    "token_source",
    "host_token",
    "auth_plugin",
    "auth_source",
    "web_auth",
    "metrics_listen",
    "log_format",
    "shutdown_grace",
    "max_connections",
    "max_connections_per_ip",
    "max_message_size",
    "handshake_timeout",
    "connect_timeout",
    "session_idle_timeout",
    "allow_target",
    "proxy_protocol",
    "target_proxy_protocol",
    "trusted_proxies",
    "wrap_command",
    "wrap_mode",
    "rebind_lib",
    "record",
    "daemon",
    "syslog",
    "legacy_syslog",
];

/// A unix file mode, written in octal (`0600`) everywhere a person reads or writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FromStr for FileMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(FileMode(mode)),
            _ => Err(format!(
                "`{s}` is not a file mode: expected octal digits, e.g. 0600 or 660"
            )),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'d> Deserialize<'d> for FileMode {
    fn deserialize<D: serde::Deserializer<'d>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal file mode as a string (\"0600\") or a TOML octal (0o600)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileMode, E> {
                v.parse().map_err(E::custom)
            }
            // A TOML integer is taken as the mode's value, so `0o600` works; a decimal 600
            // would silently mean something else, so only values that read as octal digits
            // would be ambiguous, and those are refused.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FileMode, E> {
                match u32::try_from(v) {
                    Ok(mode) if mode <= 0o7777 => Ok(FileMode(mode)),
                    _ => Err(E::custom(format!(
                        "{v} is not a file mode from 0o0 to 0o7777"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FileMode, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where the proxy accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(ListenAddr),
    Unix {
        path: PathBuf,
        mode: FileMode,
    },
    /// The listening socket is standard input (inetd's `wait` mode).
    Inetd,
}

/// The validated configuration the server runs: only consistent combinations can be built.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub route: Route,
    pub prefer_ipv6: bool,
    pub run_once: bool,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub heartbeat: Option<Duration>,
    pub verbose: bool,
    pub traffic: bool,
    pub log_file: Option<PathBuf>,
    /// `--web DIR`: serve files from DIR for plain HTTP requests on the proxy port.
    pub web: Option<Web>,
    /// TLS toward clients (used when the certificate file exists).
    pub tls: TlsFiles,
    /// `--ssl-target`: TLS toward the target, verified with these CA certificates (`None`:
    /// the system's).
    pub target_tls: Option<TargetTls>,
    /// `--cafile` was given without `--verify-client` (websockify ignores it; we warn).
    pub cafile_without_verify: bool,
    /// `--auth-plugin`: every WebSocket upgrade (and with `--web-auth`, every file) must pass.
    pub auth: Option<AuthPlugin>,
    /// `--metrics-listen`: the observability listener's address.
    pub metrics_listen: Option<ListenAddr>,
    pub log_format: LogFormat,
    /// After SIGTERM/SIGINT, sessions may run this long before they are closed with 1001
    /// (zero: closed at once).
    pub shutdown_grace: Duration,
    /// `--record FILE`: each session goes to `FILE.<n>` (an absolute path, as websockify
    /// makes it).
    pub record: Option<PathBuf>,
    /// `-D`: detach and run in the background.
    pub daemon: bool,
    /// `--syslog SERVER` and whether `--legacy-syslog` asked for RFC 3164.
    pub syslog: Option<(String, bool)>,
    /// Connection, message, time and target limits.
    pub limits: Limits,
    /// `--proxy-protocol`: read the client's address from a PROXY protocol header.
    pub proxy_protocol: bool,
    /// `--target-proxy-protocol`: tell targets the client's address so.
    pub target_proxy_protocol: Option<crate::edge::proxy_protocol::Version>,
    /// `--trusted-proxies`: whose `Forwarded`/`X-Forwarded-*` headers are believed.
    pub trusted_proxies: Option<TrustedProxies>,
}

/// `--auth-plugin` and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlugin {
    /// A built-in name or the path of a plugin library.
    pub plugin: String,
    /// `--auth-source`, passed to the plugin when it is created.
    pub source: String,
    /// `--web-auth`: the web directory is guarded too.
    pub web: bool,
}

/// How a session's target is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `target_addr:target_port` or `--unix-target`: the same for every session.
    Static(Target),
    /// A token plugin maps each request's token to its target.
    Token(TokenPlugin),
    /// `-- COMMAND`: the proxy starts the program and relays to the port it binds.
    Wrap(Wrap),
}

/// Wrap mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    /// The program and its arguments.
    pub command: Vec<String>,
    pub mode: WrapMode,
    /// `--rebind-lib`: the shim's path, else found next to the binary.
    pub rebind_lib: Option<PathBuf>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Static(t) => write!(f, "{t}"),
            Route::Token(p) => write!(f, "targets from token plugin {}", p.plugin),
            Route::Wrap(w) => write!(f, "the wrapped program `{}`", w.command.join(" ")),
        }
    }
}

/// `--token-plugin` and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPlugin {
    /// A built-in name or the path of a plugin library.
    pub plugin: String,
    /// `--token-source`, passed to the plugin when it is created.
    pub source: String,
    /// `--host-token`: the token is the Host header without its port.
    pub host_token: bool,
}

/// Where the server's TLS material is and how TLS is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    /// True when `cert` is websockify's default `self.pem`: then a missing file only means
    /// "no TLS", unless `--ssl-only` asks for TLS.
    pub cert_is_default: bool,
    pub key: Option<PathBuf>,
    pub key_password: Option<Secret>,
    pub ssl_only: bool,
    pub min_version: SslVersion,
    pub ciphers: Option<String>,
    /// `--verify-client`: CA file (`None`: the system's CAs).
    pub verify_client: Option<Option<PathBuf>>,
}

/// TLS toward the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTls {
    pub ca: Option<PathBuf>,
}

/// The web directory and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub dir: PathBuf,
    /// `--file-only`: no directory listings.
    pub file_only: bool,
}

/// A configuration that cannot be used, with a message for the operator.
#[derive(Debug)]
pub enum ConfigError {
    /// A command-line problem, reported in clap's format.
    Usage(Box<clap::Error>),
    /// A problem in the environment or file, or a conflict between settings.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Usage(e) => write!(f, "{e}"),
            ConfigError::Invalid(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The merged settings and the figment they came from (which knows each value's source).
pub struct Loaded {
    pub settings: Settings,
    figment: Figment,
}

/// Merges the layers: defaults < file < environment < command line.
///
/// `env` is the process environment (passed in so tests can give their own).
pub fn load(cli: &Cli, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(figment::providers::Serialized::defaults(Settings::default()));

    let config_file = cli.config.clone().or_else(|| {
        env.iter()
            .find(|(k, v)| k == ENV_CONFIG && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    });
    if let Some(path) = &config_file {
        check_file(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Layer::environment(env).map_err(ConfigError::Invalid)?);
    figment = figment.merge(Layer::command_line(cli, &[]));

    // Which positional is which depends on the merged settings: with --inetd or --unix-listen
    // there is no listen address, so the only positional is the target.
    let flags: Settings = figment
        .extract()
        .map_err(|e| describe(e, config_file.as_deref()))?;
    let positionals = assign_positionals(cli, &flags)?;
    if !positionals.is_empty() {
        figment = figment.merge(Layer::command_line(cli, &positionals));
    }
    let settings: Settings = figment
        .extract()
        .map_err(|e| describe(e, config_file.as_deref()))?;
    Ok(Loaded { settings, figment })
}

/// The process environment's `WEBSOCKIFY_*` variables; one that is not valid UTF-8 is an error
/// naming it rather than a silently ignored setting.
pub fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => out.push((name.to_string(), value)),
            Err(_) => {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {name} is not valid UTF-8"
                )));
            }
        }
    }
    Ok(out)
}

fn check_file(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::Invalid(format!(
            "configuration file {} is not a regular file",
            path.display()
        ))),
        Err(e) => Err(ConfigError::Invalid(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        ))),
    }
}

/// Parses the positionals as `listen` and `target` (or `target` alone), with clap-style errors.
fn assign_positionals(
    cli: &Cli,
    flags: &Settings,
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    use clap::error::ErrorKind;
    let usage = |kind, msg: String| ConfigError::Usage(Box::new(Cli::usage_error(kind, msg)));
    let no_listen = flags.inetd || flags.unix_listen.is_some();
    let names: &[(&'static str, &str)] = if no_listen {
        &[("target", "target_addr:target_port")]
    } else {
        &[
            ("listen", "[source_addr:]source_port"),
            ("target", "target_addr:target_port"),
        ]
    };
    if cli.positionals.len() > names.len() {
        let why = if flags.inetd {
            "--inetd takes no listen address"
        } else if no_listen {
            "--unix-listen takes no listen address"
        } else {
            "expected [source_addr:]source_port target_addr:target_port"
        };
        return Err(usage(
            ErrorKind::TooManyValues,
            format!(
                "unexpected argument `{}`: {why}",
                cli.positionals[names.len()]
            ),
        ));
    }
    let mut out = Vec::new();
    for ((key, form), value) in names.iter().zip(&cli.positionals) {
        let parsed = match *key {
            "listen" => value.parse::<ListenAddr>().map(|a| a.to_string()),
            _ => value.parse::<HostPort>().map(|a| a.to_string()),
        };
        match parsed {
            Ok(_) => out.push((*key, value.clone())),
            Err(e) => {
                return Err(usage(
                    ErrorKind::ValueValidation,
                    format!("invalid value '{value}' for '{form}': {e}"),
                ));
            }
        }
    }
    Ok(out)
}

impl Config {
    /// Every file and directory the server opens later, made absolute: what `--daemon` needs
    /// before it changes to `/` (websockify makes `--cert`, `--key` and `--record` absolute;
    /// we do it for every path, and for the sources of the plugins that read files).
    pub fn make_paths_absolute(&mut self) {
        let fix = |p: &mut PathBuf| *p = absolute(p);
        fix(&mut self.tls.cert);
        self.tls.key.iter_mut().for_each(fix);
        if let Some(Some(ca)) = &mut self.tls.verify_client {
            fix(ca);
        }
        if let Some(t) = &mut self.target_tls {
            t.ca.iter_mut().for_each(fix);
        }
        if let Some(w) = &mut self.web {
            fix(&mut w.dir);
        }
        self.log_file.iter_mut().for_each(fix);
        self.record.iter_mut().for_each(fix);
        if let Listen::Unix { path, .. } = &mut self.listen {
            fix(path);
        }
        let source_is_file = |plugin: &str, source: &str| {
            !source.is_empty() && !source.contains("://") && Path::new(source).exists() && {
                let name = plugin.rsplit('.').next().unwrap_or(plugin);
                [
                    "TokenFile",
                    "ReadOnlyTokenFile",
                    "TokenFileName",
                    "UnixDomainSocketDirectory",
                    "JWTTokenApi",
                ]
                .contains(&name)
            }
        };
        match &mut self.route {
            Route::Static(Target::Unix(path)) => fix(path),
            Route::Token(t) => {
                if source_is_file(&t.plugin, &t.source) {
                    t.source = absolute(Path::new(&t.source))
                        .to_string_lossy()
                        .into_owned();
                }
                if t.plugin.contains('/') {
                    t.plugin = absolute(Path::new(&t.plugin))
                        .to_string_lossy()
                        .into_owned();
                }
            }
            Route::Wrap(w) => w.rebind_lib.iter_mut().for_each(fix),
            Route::Static(_) => {}
        }
        if let Some(a) = &mut self.auth
            && a.plugin.contains('/')
        {
            a.plugin = absolute(Path::new(&a.plugin))
                .to_string_lossy()
                .into_owned();
        }
    }
}

/// `path` made absolute against the working directory, as websockify does for `--record`,
/// `--cert` and `--key`; unchanged if the working directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Turns figment's errors into one message per problem that names the source of the value.
fn describe(err: figment::Error, file: Option<&Path>) -> ConfigError {
    let mut lines = Vec::new();
    for e in err {
        let source = e.metadata.as_ref().map(|m| m.name.to_string());
        let line = match &e.kind {
            figment::error::Kind::UnknownField(field, _) => {
                layer::unknown_setting(source.as_deref(), field, file)
            }
            kind => {
                let key = e.path.join(".");
                let at = match &e.metadata {
                    Some(m) => layer::describe_source(m, &key, file),
                    None => format!("setting `{key}`"),
                };
                format!("invalid value for {at}: {kind}")
            }
        };
        lines.push(line);
    }
    ConfigError::Invalid(lines.join("\n"))
}

impl Loaded {
    /// Where a setting's value came from, in the words an operator would search for.
    pub fn source_of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(m) => layer::describe_source(m, key, None),
            None => format!("`{key}`"),
        }
    }

    /// Checks the settings against each other and builds the [`Config`] the server runs.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let s = &self.settings;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let listen = match (&s.listen, &s.unix_listen, s.inetd) {
            (Some(addr), None, false) => Listen::Tcp(addr.clone()),
            (None, Some(path), false) => Listen::Unix {
                path: path.clone(),
                mode: s.unix_listen_mode,
            },
            (None, None, true) => Listen::Inetd,
            (None, None, false) => {
                return invalid(
                    "nothing to listen on: give [source_addr:]source_port (WEBSOCKIFY_LISTEN), \
                     --unix-listen or --inetd"
                        .to_string(),
                );
            }
            _ => {
                let set: Vec<String> = ["listen", "unix_listen", "inetd"]
                    .into_iter()
                    .filter(|k| match *k {
                        "listen" => s.listen.is_some(),
                        "unix_listen" => s.unix_listen.is_some(),
                        _ => s.inetd,
                    })
                    .map(|k| self.source_of(k))
                    .collect();
                return invalid(format!(
                    "choose one way to listen, not several: {}",
                    set.join(" and ")
                ));
            }
        };
        let route = self.route()?;
        let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        Ok(Config {
            listen,
            route,
            prefer_ipv6: s.prefer_ipv6,
            run_once: s.run_once,
            timeout: secs(s.timeout),
            idle_timeout: secs(s.idle_timeout),
            heartbeat: secs(s.heartbeat),
            verbose: s.verbose,
            traffic: s.traffic,
            log_file: s.log_file.clone(),
            web: match (&s.web, s.file_only) {
                (Some(dir), file_only) => Some(Web {
                    dir: dir.clone(),
                    file_only,
                }),
                (None, true) => {
                    return invalid(format!("{} needs --web", self.source_of("file_only")));
                }
                (None, false) => None,
            },
            tls: TlsFiles {
                cert: s
                    .cert
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT)),
                cert_is_default: s.cert.is_none(),
                key: s.key.clone(),
                key_password: s.key_password.clone(),
                ssl_only: s.ssl_only,
                min_version: s.ssl_version,
                ciphers: s.ssl_ciphers.clone(),
                verify_client: s.verify_client.then(|| s.cafile.clone()),
            },
            cafile_without_verify: s.cafile.is_some() && !s.verify_client,
            auth: self.auth()?,
            metrics_listen: s.metrics_listen.clone(),
            log_format: s.log_format,
            shutdown_grace: Duration::from_secs(s.shutdown_grace),
            limits: self.limits()?,
            proxy_protocol: s.proxy_protocol,
            target_proxy_protocol: s.target_proxy_protocol,
            trusted_proxies: (!s.trusted_proxies.is_empty()).then(|| s.trusted_proxies.clone()),
            record: s.record.as_deref().map(absolute),
            daemon: s.daemon,
            syslog: match (&s.syslog, s.legacy_syslog) {
                (Some(server), legacy) => Some((server.clone(), legacy)),
                (None, true) => {
                    return invalid(format!(
                        "{} needs --syslog",
                        self.source_of("legacy_syslog")
                    ));
                }
                (None, false) => None,
            },
            target_tls: match (s.ssl_target, &s.ssl_target_ca) {
                (true, ca) => Some(TargetTls { ca: ca.clone() }),
                (false, Some(_)) => {
                    return invalid(format!(
                        "{} needs --ssl-target",
                        self.source_of("ssl_target_ca")
                    ));
                }
                (false, None) => None,
            },
        })
    }

    /// The limits; sizes and counts that cannot work are refused here, not at the first session.
    fn limits(&self) -> Result<Limits, ConfigError> {
        let s = &self.settings;
        let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        let count = |n: u64| (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX));
        let smallest = ByteSize(1024);
        if s.max_message_size < smallest {
            return Err(ConfigError::Invalid(format!(
                "{} is {}: a message limit under {smallest} would refuse ordinary frames",
                self.source_of("max_message_size"),
                s.max_message_size
            )));
        }
        Ok(Limits {
            max_connections: count(s.max_connections),
            max_connections_per_ip: count(s.max_connections_per_ip),
            max_message_size: usize::try_from(s.max_message_size.0).unwrap_or(usize::MAX),
            handshake_timeout: secs(s.handshake_timeout),
            connect_timeout: secs(s.connect_timeout),
            session_idle_timeout: secs(s.session_idle_timeout),
            allow_target: (!s.allow_target.is_empty()).then(|| s.allow_target.clone()),
        })
    }

    /// websockify's rules: `--auth-source` needs `--auth-plugin`; `--web-auth` needs
    /// `--auth-plugin` and `--web`.
    fn auth(&self) -> Result<Option<AuthPlugin>, ConfigError> {
        let s = &self.settings;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let Some(plugin) = &s.auth_plugin else {
            for (key, set) in [
                ("auth_source", s.auth_source.is_some()),
                ("web_auth", s.web_auth),
            ] {
                if set {
                    return invalid(format!("{} needs --auth-plugin", self.source_of(key)));
                }
            }
            return Ok(None);
        };
        if s.web_auth && s.web.is_none() {
            return invalid(format!("{} needs --web", self.source_of("web_auth")));
        }
        Ok(Some(AuthPlugin {
            plugin: plugin.clone(),
            source: s.auth_source.clone().unwrap_or_default(),
            web: s.web_auth,
        }))
    }

    /// One way to choose targets: a static target, a unix target, or a token plugin
    /// (`--target-config FILE` is websockify's old name for `TokenFile` with that source).
    fn route(&self) -> Result<Route, ConfigError> {
        let s = &self.settings;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let plugin = match (&s.token_plugin, &s.target_config) {
            (Some(_), Some(_)) => {
                return invalid(format!(
                    "{} replaces {}: give one",
                    self.source_of("token_plugin"),
                    self.source_of("target_config")
                ));
            }
            (Some(p), None) => Some((p.clone(), s.token_source.clone().unwrap_or_default())),
            (None, Some(file)) => {
                if s.token_source.is_some() {
                    return invalid(format!(
                        "{} needs --token-plugin",
                        self.source_of("token_source")
                    ));
                }
                Some(("TokenFile".to_string(), file.to_string_lossy().into_owned()))
            }
            (None, None) => None,
        };
        let wrap = s.wrap_command.as_ref().filter(|c| !c.is_empty());
        if wrap.is_none() {
            for (key, set) in [
                ("wrap_mode", s.wrap_mode.is_some()),
                ("rebind_lib", s.rebind_lib.is_some()),
            ] {
                if set {
                    return invalid(format!(
                        "{} needs a command to wrap (`-- COMMAND ARGS...`)",
                        self.source_of(key)
                    ));
                }
            }
        }
        let given: Vec<&str> = [
            ("target", s.target.is_some()),
            ("unix_target", s.unix_target.is_some()),
            ("token_plugin", plugin.is_some()),
            ("wrap_command", wrap.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect();
        if given.len() > 1 {
            let sources: Vec<String> = given
                .iter()
                .map(|k| match *k {
                    "token_plugin" if s.token_plugin.is_none() => self.source_of("target_config"),
                    k => self.source_of(k),
                })
                .collect();
            return invalid(format!(
                "choose one target, not several: {}",
                sources.join(" and ")
            ));
        }
        if plugin.is_none() {
            for key in ["token_source", "host_token"] {
                let set = if key == "host_token" {
                    s.host_token
                } else {
                    s.token_source.is_some()
                };
                if set {
                    return invalid(format!("{} needs --token-plugin", self.source_of(key)));
                }
            }
        }
        if let Some(command) = wrap {
            if s.inetd || s.unix_listen.is_some() {
                let key = if s.inetd { "inetd" } else { "unix_listen" };
                return invalid(format!(
                    "{} cannot wrap a program: wrap mode moves the program's TCP listen port",
                    self.source_of(key)
                ));
            }
            return Ok(Route::Wrap(Wrap {
                command: command.clone(),
                mode: s.wrap_mode.unwrap_or_default(),
                rebind_lib: s.rebind_lib.clone(),
            }));
        }
        match (&s.target, &s.unix_target, plugin) {
            (Some(t), _, _) => Ok(Route::Static(Target::Tcp(t.clone()))),
            (_, Some(path), _) => Ok(Route::Static(Target::Unix(path.clone()))),
            (_, _, Some((plugin, source))) => Ok(Route::Token(TokenPlugin {
                plugin,
                source,
                host_token: s.host_token,
            })),
            (None, None, None) => invalid(
                "no target: give target_addr:target_port (WEBSOCKIFY_TARGET), --unix-target, \
                 --token-plugin, or `-- COMMAND` to wrap a program"
                    .to_string(),
            ),
        }
    }

    /// The effective configuration as TOML, for `--print-config`; unset settings are listed as
    /// comments so that every name an operator can use appears.
    pub fn to_toml(&self) -> String {
        let mut out =
            String::from("# websockify effective configuration (defaults < file < env < flags)\n");
        let table = match toml::Table::try_from(&self.settings) {
            Ok(t) => t,
            Err(e) => return format!("# cannot render configuration: {e}\n"),
        };
        for name in SETTING_NAMES {
            match table.get(*name) {
                Some(value) => {
                    out.push_str(&format!("{name} = {value}  # {}\n", self.source_of(name)))
                }
                None => out.push_str(&format!("# {name} is unset\n")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
