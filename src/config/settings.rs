//! The one definition of every setting, and the types of their values.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::de;
use crate::addr::{HostPort, ListenAddr};
use crate::forwarded::TrustedProxies;
use crate::limits::{
    AllowList, ByteSize, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
};

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
    pub target_proxy_protocol: Option<crate::proxy_protocol::Version>,
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
