//! Logging through `tracing`: info by default, debug with `-v`, any `RUST_LOG` filter on top;
//! to standard error, or appended to `--log-file`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Installs the global subscriber. Fails only if the log file cannot be opened.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let default = if config.verbose { "debug" } else { "info" };
    // Our own crate at the chosen level; libraries stay at warn unless RUST_LOG says more.
    let fallback = format!("warn,websockify={default}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &config.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).init();
        }
    }
    Ok(())
}
