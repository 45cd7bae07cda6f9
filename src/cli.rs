//! The command line, websockify's: the same usage lines, option names, short flags and order, so
//! an existing `websockify ...` command works unchanged. Options that are ours alone come after
//! websockify's under their own heading.
//!
//! The options are the settings, defined once in [`Settings`]: every flag `--foo-bar` is also
//! the environment variable `WEBSOCKIFY_FOO_BAR` and the key `foo_bar` in the TOML file, and
//! `config::load` merges the three. Values given here are checked by clap so that a
//! wrong one is reported the way clap reports it (naming the flag, exit 2). What is here alone
//! is what is not a setting: the positionals, `--config` and `--print-config`.

use std::path::PathBuf;

use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::config::Settings;

const USAGE: &str = "\
websockify [options] [source_addr:]source_port target_addr:target_port
       websockify [options] --token-plugin=CLASS [source_addr:]source_port
       websockify [options] --unix-target=FILE [source_addr:]source_port
       websockify [options] --inetd target_addr:target_port
       websockify [options] --unix-listen=FILE target_addr:target_port
       websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE
       websockify sessions [--url URL] [--close ID]";

const AFTER_HELP: &str = "\
Every option is also an environment variable and a configuration file key: --idle-timeout is
WEBSOCKIFY_IDLE_TIMEOUT and `idle_timeout`; the positionals are WEBSOCKIFY_LISTEN and
WEBSOCKIFY_TARGET (`listen`, `target`). The command line beats the environment, which beats the
file (--config or WEBSOCKIFY_CONFIG), which beats the defaults. --print-config shows the result.";

/// The version line: the crate version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WEBSOCKIFY_BUILD_COMMIT"),
    ")"
);

/// The command line as given.
#[derive(Debug, Parser)]
#[command(
    name = "websockify",
    version = VERSION,
    about = "WebSocket to TCP proxy/bridge, a drop-in replacement for websockify",
    long_about = None,
    override_usage = USAGE,
    after_help = AFTER_HELP,
    next_line_help = false,
    max_term_width = 100,
    disable_help_flag = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands"
)]
pub struct Cli {
    /// [source_addr:]source_port, then target_addr:target_port (with --inetd or --unix-listen,
    /// only the target)
    #[arg(value_name = "ADDRESS", num_args = 0..=2, action = ArgAction::Append)]
    pub(crate) positionals: Vec<String>,

    /// The settings' flags. Only their definition is used from here: [`crate::config::load`]
    /// reads what was given from the [`clap::ArgMatches`], where a repeated flag keeps every
    /// value (this struct keeps the first of `--allow-target`'s).
    #[command(flatten)]
    settings: Settings,

    /// Read settings from this TOML file (also WEBSOCKIFY_CONFIG)
    #[arg(long, value_name = "FILE", help_heading = "websockify-rs options")]
    pub(crate) config: Option<PathBuf>,

    /// Print the merged effective configuration as TOML and exit
    #[arg(long, help_heading = "websockify-rs options")]
    pub(crate) print_config: bool,

    /// What to do instead of proxying.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Print help
    // `--help` prints the short help too: the longer texts of the settings are for the man
    // page and the README's table, and would stretch --help to several screens.
    #[arg(short, long, action = ArgAction::HelpShort)]
    help: Option<bool>,
}

/// Commands besides proxying (none: proxy, as websockify does).
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List the live sessions of a running proxy (its admin API), or end one
    ///
    /// Asks the operations port (`--metrics-listen`) of a proxy started with
    /// `--admin-token`, with the same token.
    Sessions(crate::process::sessions::SessionsArgs),
}

impl Cli {
    /// The clap definition, for the man page and completions generated from it.
    pub fn command() -> clap::Command {
        <Self as CommandFactory>::command()
    }

    /// The process's command line: the typed [`Cli`], and the matches that
    /// [`crate::config::load`] reads the settings from. A usage error exits as clap's do.
    pub(crate) fn parse_with_matches() -> (Cli, ArgMatches) {
        let matches = Self::command().get_matches();
        match Self::from_arg_matches(&matches) {
            Ok(cli) => (cli, matches),
            Err(e) => e.format(&mut Self::command()).exit(),
        }
    }

    /// A usage error reported exactly like clap's own (same format, exit status 2).
    pub(crate) fn usage_error(
        kind: clap::error::ErrorKind,
        message: impl std::fmt::Display,
    ) -> clap::Error {
        Self::command().error(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileMode;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
        // The flattened settings come after the positionals: the addresses stay the first
        // positional, the command after `--` the last.
        let mut cmd = Cli::command();
        cmd.build();
        let positionals: Vec<_> = cmd
            .get_positionals()
            .map(|a| (a.get_id().as_str(), a.get_index(), a.is_last_set()))
            .collect();
        assert_eq!(
            positionals,
            [
                ("positionals", Some(1), false),
                ("wrap_command", Some(2), true)
            ]
        );
    }

    #[test]
    fn websockify_command_lines_parse() {
        let cli = Cli::try_parse_from(["websockify", "-v", "6080", "localhost:5900"]).unwrap();
        assert_eq!(cli.positionals, ["6080", "localhost:5900"]);
        assert!(cli.settings.verbose);
        let cli = Cli::try_parse_from([
            "websockify",
            "--unix-target=/tmp/s",
            "--idle-timeout=5",
            "[::1]:6080",
        ])
        .unwrap();
        assert_eq!(cli.settings.idle_timeout, 5);
        assert_eq!(
            cli.settings.unix_target.as_deref(),
            Some(std::path::Path::new("/tmp/s"))
        );
        let cli =
            Cli::try_parse_from(["websockify", "--unix-listen-mode", "0660", "--inetd"]).unwrap();
        assert_eq!(cli.settings.unix_listen_mode, FileMode(0o660));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = Cli::try_parse_from(["websockify", "--timeout", "soon", "1", "h:2"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--timeout"), "{text}");
        assert!(
            text.contains("soon") && text.contains("whole number of seconds"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["websockify", "--unix-listen-mode", "999"]).unwrap_err();
        assert!(err.to_string().contains("octal"), "{err}");
    }
}
