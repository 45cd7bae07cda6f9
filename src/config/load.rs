//! Loading: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment. The environment and command-line layers name their values the way an operator
//! wrote them (`WEBSOCKIFY_TIMEOUT`, `--timeout`), so that an error can point at the exact
//! variable, flag or file key.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{SETTING_NAMES, Settings};
use crate::addr::{HostPort, ListenAddr};
use crate::cli::Cli;

/// The prefix of every environment variable that is a setting.
pub const ENV_PREFIX: &str = "WEBSOCKIFY_";

/// The variable naming the configuration file; it is not itself a setting.
pub const ENV_CONFIG: &str = "WEBSOCKIFY_CONFIG";

/// The build's commit for `--version`, read at compile time (build.rs). Cargo also sets it
/// when it runs the binary (`cargo run`, tests), so at run time it is ignored, not refused.
pub const ENV_BUILD_COMMIT: &str = "WEBSOCKIFY_BUILD_COMMIT";

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

/// Turns figment's errors into one message per problem that names the source of the value.
fn describe(err: figment::Error, file: Option<&Path>) -> ConfigError {
    let mut lines = Vec::new();
    for e in err {
        let source = e.metadata.as_ref().map(|m| m.name.to_string());
        let line = match &e.kind {
            figment::error::Kind::UnknownField(field, _) => {
                unknown_setting(source.as_deref(), field, file)
            }
            kind => {
                let key = e.path.join(".");
                let at = match &e.metadata {
                    Some(m) => describe_source(m, &key, file),
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
            Some(m) => describe_source(m, key, None),
            None => format!("`{key}`"),
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

const ENVIRONMENT: &str = "environment";
const COMMAND_LINE: &str = "command line";

/// One layer of settings with a name figment reports in its metadata.
pub struct Layer {
    name: &'static str,
    dict: Dict,
}

impl Layer {
    /// `WEBSOCKIFY_FOO_BAR=value` as `foo_bar = "value"`; the typed settings parse the string.
    /// An empty variable counts as unset, as templating tools often leave them.
    pub fn environment(env: &[(String, String)]) -> Result<Layer, String> {
        let mut dict = Dict::new();
        let mut unknown = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == ENV_CONFIG || name == ENV_BUILD_COMMIT || value.is_empty() {
                continue;
            }
            let key = key.to_ascii_lowercase();
            if !SETTING_NAMES.contains(&key.as_str()) {
                unknown.push(unknown_setting(Some(ENVIRONMENT), &key, None));
                continue;
            }
            dict.insert(key, Value::from(value.clone()));
        }
        if unknown.is_empty() {
            Ok(Layer {
                name: ENVIRONMENT,
                dict,
            })
        } else {
            Err(unknown.join("\n"))
        }
    }

    /// The flags that were given (a flag not given must not override the lower layers), and the
    /// positionals once [`super::assign_positionals`] knows which is which.
    pub fn command_line(cli: &Cli, positionals: &[(&'static str, String)]) -> Layer {
        let mut dict = Dict::new();
        let mut put = |key: &str, value: Value| {
            dict.insert(key.to_string(), value);
        };
        for (key, value) in positionals {
            put(key, Value::from(value.clone()));
        }
        let path = |p: &Path| Value::from(p.to_string_lossy().into_owned());
        for (key, on) in [
            ("verbose", cli.verbose),
            ("traffic", cli.traffic),
            ("run_once", cli.run_once),
            ("inetd", cli.inetd),
            ("prefer_ipv6", cli.prefer_ipv6),
            ("file_only", cli.file_only),
            ("ssl_only", cli.ssl_only),
            ("ssl_target", cli.ssl_target),
            ("verify_client", cli.verify_client),
            ("host_token", cli.host_token),
            ("web_auth", cli.web_auth),
            ("daemon", cli.daemon),
            ("legacy_syslog", cli.legacy_syslog),
            ("proxy_protocol", cli.proxy_protocol),
        ] {
            if on {
                put(key, Value::from(true));
            }
        }
        for (key, number) in [
            ("timeout", cli.timeout),
            ("idle_timeout", cli.idle_timeout),
            ("heartbeat", cli.heartbeat),
            ("shutdown_grace", cli.shutdown_grace),
            ("handshake_timeout", cli.handshake_timeout),
            ("connect_timeout", cli.connect_timeout),
            ("session_idle_timeout", cli.session_idle_timeout),
            ("max_connections", cli.max_connections),
            ("max_connections_per_ip", cli.max_connections_per_ip),
        ] {
            if let Some(number) = number {
                put(key, Value::from(number));
            }
        }
        for (key, file) in [
            ("unix_target", &cli.unix_target),
            ("unix_listen", &cli.unix_listen),
            ("log_file", &cli.log_file),
            ("web", &cli.web),
            ("cert", &cli.cert),
            ("key", &cli.key),
            ("cafile", &cli.cafile),
            ("ssl_target_ca", &cli.ssl_target_ca),
            ("target_config", &cli.target_config),
            ("rebind_lib", &cli.rebind_lib),
            ("record", &cli.record),
        ] {
            if let Some(file) = file {
                put(key, path(file));
            }
        }
        for (key, text) in [
            ("key_password", &cli.key_password),
            ("ssl_ciphers", &cli.ssl_ciphers),
            ("token_plugin", &cli.token_plugin),
            ("token_source", &cli.token_source),
            ("auth_plugin", &cli.auth_plugin),
            ("auth_source", &cli.auth_source),
            ("syslog", &cli.syslog),
        ] {
            if let Some(text) = text {
                put(key, Value::from(text.clone()));
            }
        }
        if let Some(version) = cli.ssl_version {
            put("ssl_version", Value::from(version.to_string()));
        }
        if !cli.wrap_command.is_empty() {
            let words = cli.wrap_command.iter().cloned().map(Value::from);
            put("wrap_command", Value::from(words.collect::<Vec<_>>()));
        }
        if let Some(mode) = cli.wrap_mode {
            put("wrap_mode", Value::from(mode.to_string()));
        }
        if let Some(format) = cli.log_format {
            put("log_format", Value::from(format.to_string()));
        }
        if let Some(addr) = &cli.metrics_listen {
            put("metrics_listen", Value::from(addr.to_string()));
        }
        if !cli.trusted_proxies.is_empty() {
            let nets = cli.trusted_proxies.iter().flat_map(|l| l.0.iter());
            let nets = nets.map(|n| Value::from(n.to_string()));
            put("trusted_proxies", Value::from(nets.collect::<Vec<_>>()));
        }
        if let Some(version) = cli.target_proxy_protocol {
            put("target_proxy_protocol", Value::from(version.to_string()));
        }
        if let Some(size) = cli.max_message_size {
            put("max_message_size", Value::from(size.to_string()));
        }
        if !cli.allow_target.is_empty() {
            let rules = cli.allow_target.iter().flat_map(|l| l.0.iter());
            let rules = rules.map(|r| Value::from(r.to_string()));
            put("allow_target", Value::from(rules.collect::<Vec<_>>()));
        }
        if let Some(mode) = cli.unix_listen_mode {
            put("unix_listen_mode", Value::from(mode.to_string()));
        }
        Layer {
            name: COMMAND_LINE,
            dict,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The variable that sets `key`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The flag (or positional) that sets `key`.
pub fn flag_name(key: &str) -> String {
    match key {
        "listen" => "the argument [source_addr:]source_port".to_string(),
        "target" => "the argument target_addr:target_port".to_string(),
        "wrap_command" => "the command after `--`".to_string(),
        _ => format!("--{}", key.replace('_', "-")),
    }
}

/// "`timeout` in /etc/websockify.toml", "WEBSOCKIFY_TIMEOUT", "--timeout" or "the default".
pub fn describe_source(meta: &Metadata, key: &str, file: Option<&Path>) -> String {
    match meta.name.as_ref() {
        ENVIRONMENT => format!("environment variable {}", env_name(key)),
        COMMAND_LINE => flag_name(key),
        _ => match meta.source.as_ref().and_then(|s| s.file_path()).or(file) {
            Some(path) => format!("`{key}` in {}", path.display()),
            None => format!("`{key}` (default)"),
        },
    }
}

/// The message for a name that is no setting, with the closest valid name.
pub fn unknown_setting(source: Option<&str>, key: &str, file: Option<&Path>) -> String {
    let closest = SETTING_NAMES
        .iter()
        .map(|name| (strsim::jaro_winkler(key, name), *name))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name);
    match source {
        Some(ENVIRONMENT) => {
            let hint = closest
                .map(|c| format!(" (did you mean {}?)", env_name(c)))
                .unwrap_or_default();
            format!(
                "environment variable {} is not a setting{hint}",
                env_name(key)
            )
        }
        _ => {
            let hint = closest
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            let place = file
                .map(|f| format!(" in {}", f.display()))
                .unwrap_or_default();
            format!("unknown setting `{key}`{place}{hint}")
        }
    }
}
