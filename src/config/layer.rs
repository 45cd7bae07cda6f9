//! The environment and command-line layers as figment providers. Each one names its values the
//! way an operator wrote them (`WEBSOCKIFY_TIMEOUT`, `--timeout`), so that an error can point at
//! the exact variable, flag or file key.

use std::path::Path;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::{ENV_BUILD_COMMIT, ENV_CONFIG, ENV_PREFIX, SETTING_NAMES};
use crate::cli::Cli;

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
