//! Configuration: defaults < TOML file < `WEBSOCKIFY_*` environment < command line, merged by
//! figment into one typed [`Settings`], then validated once into the `Config` the server runs.
//!
//! One naming rule for every setting: the flag `--foo-bar` is the variable `WEBSOCKIFY_FOO_BAR`
//! and the file key `foo_bar`; the two positionals are `listen` and `target`. Every error names
//! where the bad value came from (flag, variable or file), and an unknown key or variable is
//! refused with the closest valid name.
//!
//! - `settings.rs`: [`Settings`], the one definition of every setting (flag, help, default, file
//!   key; the variable follows from the name), and the types of their values.
//! - `load.rs`: the layers and their merge (`load`), and where each value came from.
//! - `de.rs`: the deserializers that read a value from any layer (`"30"` or `30`).
//! - `validate.rs`: the settings checked against each other into the `Config` types.
//! - `addr`: `[host:]port` and `host:port` as websockify splits them.
//! - `limits`: the limits' types: connection counts, sizes (`64MiB`), the `--allow-target`
//!   rules, the connection limit the descriptor limit allows.

pub(crate) mod addr;
pub(crate) mod limits;

mod de;
mod load;
mod settings;
mod validate;

// What `tools/gen-docs` and the tests read: the settings' names and where they come from.
pub use load::{ENV_CONFIG, env_name};
pub use settings::{POSITIONALS, Positional, Settings, setting_names};

pub(crate) use load::{ConfigError, Loaded, load, process_env};
pub(crate) use settings::{FileMode, LogFormat, Secret, SslVersion, Switch, WrapMode};
pub(crate) use validate::{Config, Http2, Listen, Route, TlsFiles, Wrap};

#[cfg(test)]
mod tests;
