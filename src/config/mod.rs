//! Configuration: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment into one typed [`Settings`], then validated once into the [`Config`] the server runs.
//!
//! One naming rule for every setting: the flag `--foo-bar` is the variable `WEBSOCKIFY_FOO_BAR`
//! and the file key `foo_bar`; the two positionals are `listen` and `target`. Every error names
//! where the bad value came from (flag, variable or file), and an unknown key or variable is
//! refused with the closest valid name.
//!
//! - `settings.rs`: [`Settings`], the one definition of every setting (flag, help, default, file
//!   key; the variable follows from the name), and the types of their values.
//! - `load.rs`: the layers and their merge ([`load`]), and where each value came from.
//! - `de.rs`: the deserializers that read a value from any layer (`"30"` or `30`).
//! - `validate.rs`: the settings checked against each other into the [`Config`] types.
//! - `addr`: `[host:]port` and `host:port` as websockify splits them.
//! - `limits`: the limits' types: connection counts, sizes (`64MiB`), the `--allow-target`
//!   rules, the connection limit the descriptor limit allows.

pub mod addr;
pub mod limits;

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
