//! Loading: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment. The environment and command-line layers name their values the way an operator
//! wrote them (`WEBSOCKIFY_TIMEOUT`, `--timeout`), so that an error can point at the exact
//! variable, flag or file key.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, FromArgMatches};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Settings;
use super::settings::{POSITIONALS, definition, setting_names};
use crate::cli::Cli;
use crate::config::addr::{HostPort, ListenAddr};

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
/// `matches` is the command line as clap matched it against [`Cli::command`] (the settings are
/// read from its raw text, the positionals and `--config` from the typed [`Cli`]); `env` is the
/// process environment (passed in so tests can give their own).
pub fn load(matches: &ArgMatches, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let cli = Cli::from_arg_matches(matches).map_err(|e| ConfigError::Usage(Box::new(e)))?;
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
    figment = figment.merge(Layer::command_line(matches)?);

    // Which positional is which depends on the merged settings: with --inetd or --unix-listen
    // there is no listen address, so the only positional is the target.
    let flags: Settings = figment
        .extract()
        .map_err(|e| describe(e, config_file.as_deref()))?;
    let positionals = assign_positionals(&cli.positionals, &flags)?;
    if !positionals.is_empty() {
        figment = figment.merge(Layer::positionals(&positionals));
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
    given: &[String],
    flags: &Settings,
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    use clap::error::ErrorKind;
    let usage = |kind, msg: String| ConfigError::Usage(Box::new(Cli::usage_error(kind, msg)));
    let no_listen = flags.inetd || flags.unix_listen.is_some();
    let expected: Vec<_> = POSITIONALS
        .iter()
        .filter(|p| !(no_listen && p.key == "listen"))
        .collect();
    if let Some(extra) = given.get(expected.len()) {
        let why = if flags.inetd {
            "--inetd takes no listen address".to_string()
        } else if no_listen {
            "--unix-listen takes no listen address".to_string()
        } else {
            let forms: Vec<&str> = expected.iter().map(|p| p.form).collect();
            format!("expected {}", forms.join(" "))
        };
        return Err(usage(
            ErrorKind::TooManyValues,
            format!("unexpected argument `{extra}`: {why}"),
        ));
    }
    let mut out = Vec::new();
    for (positional, value) in expected.iter().zip(given) {
        let parsed = match positional.key {
            "listen" => value.parse::<ListenAddr>().map(drop),
            _ => value.parse::<HostPort>().map(drop),
        };
        if let Err(e) = parsed {
            return Err(usage(
                ErrorKind::ValueValidation,
                format!("invalid value '{value}' for '{}': {e}", positional.form),
            ));
        }
        out.push((positional.key, value.clone()));
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
        for name in setting_names() {
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
            if !setting_names().contains(&key.as_str()) {
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

    /// The settings' flags that were given on the command line (a flag not given must not
    /// override the lower layers), each as the raw text typed, the way the environment gives
    /// its strings: the same deserializers then read the three layers. A flag is `true`; a
    /// repeatable one (`--allow-target`, the command after `--`) a list of its values. clap
    /// has already checked each value with its parser, to report a wrong one clap's way.
    pub fn command_line(matches: &ArgMatches) -> Result<Layer, ConfigError> {
        let mut dict = Dict::new();
        for arg in definition().get_arguments() {
            let key = arg.get_id().as_str();
            if matches.value_source(key) != Some(ValueSource::CommandLine) {
                continue;
            }
            if matches!(arg.get_action(), ArgAction::SetTrue) {
                dict.insert(key.to_string(), Value::from(true));
                continue;
            }
            let raw = matches
                .try_get_raw(key)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", flag_name(key))))?;
            let mut values = Vec::new();
            for text in raw.into_iter().flatten() {
                let Some(text) = text.to_str() else {
                    return Err(ConfigError::Usage(Box::new(Cli::usage_error(
                        clap::error::ErrorKind::InvalidUtf8,
                        format!("the value of {} is not valid UTF-8", flag_name(key)),
                    ))));
                };
                values.push(Value::from(text));
            }
            let value = if matches!(arg.get_action(), ArgAction::Append) {
                Value::from(values)
            } else {
                match values.pop() {
                    Some(value) => value,
                    None => continue,
                }
            };
            dict.insert(key.to_string(), value);
        }
        Ok(Layer {
            name: COMMAND_LINE,
            dict,
        })
    }

    /// The positionals, once [`assign_positionals`] knows which is which.
    pub fn positionals(positionals: &[(&'static str, String)]) -> Layer {
        let dict = positionals
            .iter()
            .map(|(key, value)| (key.to_string(), Value::from(value.clone())))
            .collect();
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

/// The flag (or positional) that sets `key`, as the definition names it.
pub fn flag_name(key: &str) -> String {
    if let Some(positional) = POSITIONALS.iter().find(|p| p.key == key) {
        return format!("the argument {}", positional.form);
    }
    match definition().get_arguments().find(|a| a.get_id() == key) {
        Some(arg) if arg.is_last_set() => "the command after `--`".to_string(),
        Some(arg) => match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => format!("`{key}`"),
        },
        None => format!("`{key}`"),
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
    let closest = setting_names()
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
