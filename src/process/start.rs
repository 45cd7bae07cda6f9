//! Starting the process: everything the `websockify` binary does, in the library so that the
//! binary is one call.

use std::process::ExitCode;
use std::time::Duration;

use super::daemon;
use crate::cli::Cli;
use crate::config::{self, ConfigError};

/// How long the exit waits for blocking tasks still running (a file write of `--record`, a
/// plugin call) once the server is done; a stuck one is left to end with the process.
const BLOCKING_AT_EXIT: Duration = Duration::from_secs(2);

/// The whole program, as the `websockify` binary runs it: parse the command line, load and
/// validate the configuration (a mistake exits 2), detach with `-D`, start logging and the
/// runtime, serve until a lifecycle rule or a signal ends it.
pub fn run() -> ExitCode {
    let (cli, matches) = Cli::parse_with_matches();
    if let Some(crate::cli::Command::Sessions(args)) = &cli.command {
        return super::sessions::run(args);
    }
    let env = match config::process_env() {
        Ok(env) => env,
        Err(e) => return config_error(e),
    };
    let loaded = match config::load(&matches, &env) {
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
    let mut config = config;
    if config.daemon {
        if !daemon::is_child() {
            return daemon::start_in_background();
        }
        if let Err(e) = daemon::detach(&mut config) {
            eprintln!("websockify: error: --daemon: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    // Declared before the runtime, so dropped after it: its drop flushes the last spans, which
    // blocks, and must not happen on a runtime thread.
    let _tracing = match crate::telemetry::logging::init(&config) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("websockify: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Each session holds two descriptors; the usual soft limit of 1024 would cap us at about
    // 500 sessions, so take what the hard limit allows, as servers do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("file descriptor limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    // With one core to run on (pinned, or a CPU quota of one), a single thread runs
    // everything: no cross-thread queues or wake-ups. Measured on the bench: messages/s +20%,
    // connections/s +16%, latency -4% against one worker of the multi-thread scheduler.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    // With a runtime per CPU for the connections (`--busy-poll`), this one only accepts
    // them and runs the rest (signals, the operations port): one thread is enough.
    let per_cpu = crate::server::workers::per_cpu(&config).is_some();
    let mut builder = if one_core || per_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if one_core {
        tracing::debug!("runtime: 1 thread (one CPU available)");
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("websockify: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let serve = async move {
        let listener = crate::edge::listen::Listener::bind(
            &config.listen,
            config.prefer_ipv6,
            config.limits.send_timeout,
        )
        .await?;
        if config.daemon {
            daemon::ready();
        }
        crate::server::serve(config, listener).await
    };
    // On a worker thread, not the thread that waits in `block_on`: the accept loop then hands
    // each new session to its own thread's queue instead of waking a worker for it.
    let served = runtime.block_on(async {
        tokio::spawn(serve)
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the server task failed: {e}")))
    });
    // Dropping the runtime would wait for every blocking task, and one may never end: a
    // plugin call abandoned after its timeout, a certificate reload stuck on a hung file
    // system. Those are left behind; anything else has long finished by now.
    runtime.shutdown_timeout(BLOCKING_AT_EXIT);
    match served {
        Ok(reason) => ExitCode::from(reason.exit_code()),
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
