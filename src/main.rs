//! The `websockify` binary: parse, configure, run. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

use websockify::cli::Cli;
use websockify::config::{self, ConfigError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match config::process_env() {
        Ok(env) => env,
        Err(e) => return config_error(e),
    };
    let loaded = match config::load(&cli, &env) {
        Ok(loaded) => loaded,
        Err(e) => return config_error(e),
    };
    if cli.print_config {
        print!("{}", loaded.to_toml());
    }
    let config = match loaded.validate() {
        Ok(config) => config,
        Err(e) => return config_error(e),
    };
    if cli.print_config {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = websockify::logging::init(&config) {
        eprintln!("websockify: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("websockify: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(websockify::server::run(config)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Configuration errors are usage errors: reported plainly, exit status 2.
fn config_error(e: ConfigError) -> ExitCode {
    match e {
        ConfigError::Usage(e) => e.exit(),
        ConfigError::Invalid(msg) => {
            eprintln!("websockify: error: {msg}");
            ExitCode::from(2)
        }
    }
}
