//! Configuration: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment into one typed [`Settings`], then validated once into the [`Config`] the server runs.
//!
//! One naming rule for every setting: the flag `--foo-bar` is the variable `WEBSOCKIFY_FOO_BAR`
//! and the file key `foo_bar`; the two positionals are `listen` and `target`. Every error names
//! where the bad value came from (flag, variable or file), and an unknown key or variable is
//! refused with the closest valid name.

mod de;
mod load;
mod settings;
mod validate;

pub use load::{ConfigError, ENV_BUILD_COMMIT, ENV_CONFIG, ENV_PREFIX, Loaded, load, process_env};
pub use load::{env_name, flag_name};
pub use settings::{
    DEFAULT_SHUTDOWN_GRACE, FileMode, LogFormat, POSITIONALS, Positional, Secret, Settings,
    SslVersion, WrapMode, definition, setting_names,
};
pub use validate::{
    AuthPlugin, Config, DEFAULT_CERT, Listen, Route, TargetTls, TlsFiles, TokenPlugin, Web, Wrap,
};

#[cfg(test)]
mod tests;
