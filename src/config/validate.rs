//! The validated configuration the server runs, and the checks that build it from the merged
//! settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, FileMode, Loaded, LogFormat, Secret, SslVersion, Switch, WrapMode};
use crate::config::addr::ListenAddr;
use crate::config::limits::{ByteSize, Limits};
use crate::edge::forwarded::{ForwardedHeader, TrustedProxies};
use crate::session::target::Target;

/// websockify's default certificate file, looked up in the working directory.
pub const DEFAULT_CERT: &str = "self.pem";

/// The shortest admin token accepted: 16 characters, as 64 random bits in hex, so that a
/// token cannot be guessed over the network.
const MIN_ADMIN_TOKEN: usize = 16;

/// The longest `--busy-poll`, in microseconds.
const MAX_BUSY_POLL_MICROS: u64 = 1000;

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
    /// Flash's policy request is answered (not `--no-flash-policy`).
    pub flash_policy: bool,
    /// `--http2 on`: HTTP/2 on the port as well, with at most this many streams at once on a
    /// connection (`--http2-max-streams`); `None`: HTTP/1.1 only.
    pub http2: Option<Http2>,
    /// `--compression`: permessage-deflate when a client offers it, so.
    pub compression: Option<crate::ws::deflate::Policy>,
    /// `--busy-poll`: after a message to a client, poll for its answer this long before
    /// sleeping.
    pub busy_poll: Option<Duration>,
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
    /// `--admin-token` (or its file): the admin API (`/sessions`) is on, for this bearer.
    pub admin_token: Option<Secret>,
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
    /// `--forwarded-header`: which family of forwarded headers names the client.
    pub forwarded_header: ForwardedHeader,
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
    /// ALPN offers `h2` before `http/1.1` (`--http2 on`).
    pub h2: bool,
}

/// TLS toward the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTls {
    pub ca: Option<PathBuf>,
}

/// HTTP/2 on the port (`--http2 on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// `--http2-max-streams`.
    pub max_streams: u32,
}

/// The web directory and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub dir: PathBuf,
    /// `--file-only`: no directory listings.
    pub file_only: bool,
    /// `/websockify/status.json` is served (not `--no-web-status`).
    pub status: bool,
}

impl Config {
    /// Every file and directory the server opens later, made absolute: what `--daemon` needs
    /// before it changes to `/` (websockify makes `--cert`, `--key` and `--record` absolute;
    /// we do it for every path, and for every plugin source that names a file: see
    /// [`absolute_source`]).
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
        match &mut self.route {
            Route::Static(Target::Unix(path)) => fix(path),
            Route::Token(t) => {
                absolute_source(&t.plugin, &mut t.source);
                if t.plugin.contains('/') {
                    t.plugin = absolute(Path::new(&t.plugin))
                        .to_string_lossy()
                        .into_owned();
                }
            }
            Route::Wrap(w) => w.rebind_lib.iter_mut().for_each(fix),
            Route::Static(_) => {}
        }
        if let Some(a) = &mut self.auth {
            absolute_source(&a.plugin, &mut a.source);
            if a.plugin.contains('/') {
                a.plugin = absolute(Path::new(&a.plugin))
                    .to_string_lossy()
                    .into_owned();
            }
        }
    }
}

/// Built-in plugins whose source is only ever a literal (origins, common names, a URL, a
/// Redis address), never read as a file: their source stays as given even when a file of
/// that name happens to exist (`ClientCertCNAuth alice` beside a file `alice`).
const LITERAL_SOURCES: [&str; 5] = [
    "ExpectOrigin",
    "ClientCertCNAuth",
    "BaseTokenAPI",
    "JSONTokenApi",
    "TokenRedis",
];

/// Makes a token or auth source absolute when it names an existing file or directory
/// relative to the working directory (and is no URL), whichever plugin reads it: the
/// built-ins that read only files (`crate::plugin::source_is_path`), those that read a file
/// when the source names one (`BasicHTTPAuth`: `user:password` or a FILE of such lines), and
/// libraries, whose reading we cannot know.
///
/// Safe for literal sources: a plugin that takes a literal or a file decides by whether the
/// file exists (as `BasicHTTPAuth` does), so a source naming an existing file was going to be
/// read as that file, and its absolute name is the same file, whatever the working directory;
/// without it, after `-D`'s `chdir("/")`, the relative name would name nothing and the path
/// would be taken as a literal credential. A source that names no file (`user:password`, a
/// secret, `host:port`) is left alone, as are the built-ins that never read files.
fn absolute_source(plugin: &str, source: &mut String) {
    // websockify's long names (`websockify.auth_plugins.ExpectOrigin`) name the same class.
    let short = plugin.rsplit('.').next().unwrap_or(plugin);
    let literal_only = !plugin.contains('/') && LITERAL_SOURCES.contains(&short);
    let may_read_a_file = crate::plugin::source_is_path(plugin) || !literal_only;
    let path = Path::new(source.as_str());
    if !may_read_a_file || source.contains("://") || path.is_absolute() || !path.exists() {
        return;
    }
    *source = absolute(path).to_string_lossy().into_owned();
}

/// `path` made absolute against the working directory, as websockify does for `--record`,
/// `--cert` and `--key`; unchanged if the working directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Loaded {
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
            web: match &s.web {
                Some(dir) => Some(Web {
                    dir: dir.clone(),
                    file_only: s.file_only,
                    status: !s.no_web_status,
                }),
                None => {
                    for (key, set) in [
                        ("file_only", s.file_only),
                        ("no_web_status", s.no_web_status),
                    ] {
                        if set {
                            return invalid(format!("{} needs --web", self.source_of(key)));
                        }
                    }
                    None
                }
            },
            flash_policy: !s.no_flash_policy,
            compression: self.compression()?,
            busy_poll: self.busy_poll()?,
            http2: match s.http2 {
                Switch::On => Some(Http2 {
                    max_streams: u32::try_from(s.http2_max_streams.max(1)).unwrap_or(u32::MAX),
                }),
                Switch::Off => None,
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
                h2: s.http2 == Switch::On,
            },
            cafile_without_verify: s.cafile.is_some() && !s.verify_client,
            auth: self.auth()?,
            metrics_listen: s.metrics_listen.clone(),
            admin_token: self.admin_token()?,
            log_format: s.log_format,
            shutdown_grace: Duration::from_secs(s.shutdown_grace),
            limits: self.limits()?,
            proxy_protocol: s.proxy_protocol,
            target_proxy_protocol: s.target_proxy_protocol,
            trusted_proxies: (!s.trusted_proxies.is_empty()).then(|| s.trusted_proxies.clone()),
            forwarded_header: s.forwarded_header,
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

    /// `--admin-token` or `--admin-token-file` (one of them), which need `--metrics-listen`:
    /// the admin API lives on the operations port, never on the proxy port.
    fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        let s = &self.settings;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let token = match (&s.admin_token, &s.admin_token_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return invalid(format!(
                    "{} and {}: give the admin token one way",
                    self.source_of("admin_token"),
                    self.source_of("admin_token_file")
                ));
            }
            (Some(token), None) => token.expose().to_string(),
            (None, Some(file)) => match std::fs::read_to_string(file) {
                Ok(text) => text.lines().next().unwrap_or_default().to_string(),
                Err(e) => {
                    return invalid(format!(
                        "{} {}: {e}",
                        self.source_of("admin_token_file"),
                        file.display()
                    ));
                }
            },
        };
        let key = if s.admin_token.is_some() {
            "admin_token"
        } else {
            "admin_token_file"
        };
        let token = token.trim();
        if token.len() < MIN_ADMIN_TOKEN || token.chars().any(|c| !c.is_ascii_graphic()) {
            return invalid(format!(
                "{}: the admin token must be at least {MIN_ADMIN_TOKEN} printable ASCII \
                 characters without spaces (e.g. `openssl rand -hex 32`)",
                self.source_of(key)
            ));
        }
        if s.metrics_listen.is_none() {
            return invalid(format!(
                "{} needs --metrics-listen: the admin API is served on that port only",
                self.source_of(key)
            ));
        }
        Ok(Some(Secret::new(token.to_string())))
    }

    /// `--busy-poll`: beyond a millisecond, a wait is better slept (a wake-up costs tens of
    /// microseconds), and a typo of seconds for microseconds would poll all the time.
    fn busy_poll(&self) -> Result<Option<Duration>, ConfigError> {
        let micros = self.settings.busy_poll;
        if micros > MAX_BUSY_POLL_MICROS {
            return Err(ConfigError::Invalid(format!(
                "{} is {micros}: expected at most {MAX_BUSY_POLL_MICROS} microseconds (0 turns it off)",
                self.source_of("busy_poll"),
            )));
        }
        Ok((micros > 0).then(|| Duration::from_micros(micros)))
    }

    /// `--compression` and its companions; a companion without it is refused, as it would
    /// change nothing.
    fn compression(&self) -> Result<Option<crate::ws::deflate::Policy>, ConfigError> {
        let s = &self.settings;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !(1..=9).contains(&s.compression_level) {
            return invalid(format!(
                "{} is {}: expected a zlib level from 1 (fastest) to 9 (smallest)",
                self.source_of("compression_level"),
                s.compression_level
            ));
        }
        if !s.compression {
            if s.compression_context {
                return invalid(format!(
                    "{} needs --compression",
                    self.source_of("compression_context")
                ));
            }
            return Ok(None);
        }
        Ok(Some(crate::ws::deflate::Policy {
            min_size: usize::try_from(s.compression_min_size.0).unwrap_or(usize::MAX),
            level: s.compression_level as u32,
            context_takeover: s.compression_context,
        }))
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
            max_plugin_calls: usize::try_from(s.max_plugin_calls.max(1)).unwrap_or(usize::MAX),
            send_timeout: secs(s.send_timeout),
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
}
