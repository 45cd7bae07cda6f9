//! The command line, websockify's: the same usage lines, option names, short flags and order, so
//! an existing `websockify ...` command works unchanged. Options that are ours alone come after
//! websockify's under their own heading.
//!
//! Every flag `--foo-bar` is also the environment variable `WEBSOCKIFY_FOO_BAR` and the key
//! `foo_bar` in the TOML file; [`crate::config`] merges the three. Values given here are parsed
//! by clap so that a wrong one is reported the way clap reports it (naming the flag, exit 2).

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::addr::ListenAddr;
use crate::config::{FileMode, LogFormat, SslVersion, WrapMode};
use crate::limits::{AllowList, ByteSize};

const USAGE: &str = "\
websockify [options] [source_addr:]source_port target_addr:target_port
       websockify [options] --token-plugin=CLASS [source_addr:]source_port
       websockify [options] --unix-target=FILE [source_addr:]source_port
       websockify [options] --inetd target_addr:target_port
       websockify [options] --unix-listen=FILE target_addr:target_port
       websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE";

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

/// The command line as given. Flags not given are `None`/`false`, so that they do not override
/// the environment or the configuration file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "websockify",
    version = VERSION,
    about = "WebSocket to TCP proxy/bridge, a drop-in replacement for websockify",
    override_usage = USAGE,
    after_help = AFTER_HELP,
    next_line_help = false,
    max_term_width = 100
)]
pub struct Cli {
    /// [source_addr:]source_port, then target_addr:target_port (with --inetd or --unix-listen,
    /// only the target)
    #[arg(value_name = "ADDRESS", num_args = 0..=2, action = ArgAction::Append)]
    pub positionals: Vec<String>,

    /// `-- COMMAND ARGS...`: the program to wrap (see --wrap-mode)
    #[arg(
        last = true,
        value_name = "WRAP_COMMAND_LINE",
        allow_hyphen_values = true
    )]
    pub wrap_command: Vec<String>,

    /// Verbose messages (debug level)
    #[arg(short, long)]
    pub verbose: bool,

    /// Per frame traffic: log each frame's size and direction
    #[arg(long)]
    pub traffic: bool,

    /// Record each session to FILE.<session number>, in the format noVNC's player reads
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Become a daemon (background process); log with --log-file or --syslog
    #[arg(short = 'D', long)]
    pub daemon: bool,

    /// Handle a single WebSocket connection and exit
    #[arg(long)]
    pub run_once: bool,

    /// After TIMEOUT seconds stop accepting, and exit when not connected (0: never)
    #[arg(long, value_name = "TIMEOUT", value_parser = parse_seconds)]
    pub timeout: Option<u64>,

    /// Server exits after IDLE_TIMEOUT seconds if there are no active connections (0: never)
    #[arg(long, value_name = "IDLE_TIMEOUT", value_parser = parse_seconds)]
    pub idle_timeout: Option<u64>,

    /// TLS certificate file (PEM; may also hold the key). Default self.pem, used if present
    #[arg(long, value_name = "CERT")]
    pub cert: Option<PathBuf>,

    /// TLS key file, if separate from the certificate
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,

    /// Password of an encrypted (PKCS#8) key
    #[arg(long, value_name = "KEY_PASSWORD")]
    pub key_password: Option<String>,

    /// Disallow non-encrypted client connections
    #[arg(long)]
    pub ssl_only: bool,

    /// Connect to the target with TLS, as a TLS client
    #[arg(long)]
    pub ssl_target: bool,

    /// Require TLS clients to present a certificate signed by --cafile (or the system CAs)
    #[arg(long)]
    pub verify_client: bool,

    /// CA certificates (PEM) trusted for client certificates (with --verify-client)
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,

    /// Minimum TLS version: default, tlsv1_1, tlsv1_2 or tlsv1_3
    #[arg(long, value_name = "SSL_VERSION", value_parser = parse_ssl_version)]
    pub ssl_version: Option<SslVersion>,

    /// TLS cipher suites allowed, OpenSSL or IANA names separated by colons
    #[arg(long, value_name = "SSL_CIPHERS")]
    pub ssl_ciphers: Option<String>,

    /// Listen on unix socket FILE instead of [source_addr:]source_port
    #[arg(long, value_name = "FILE")]
    pub unix_listen: Option<PathBuf>,

    /// Mode of the --unix-listen socket, in octal (defaults to 0600)
    #[arg(long, value_name = "UNIX_LISTEN_MODE", value_parser = parse_mode)]
    pub unix_listen_mode: Option<FileMode>,

    /// Connect to unix socket target FILE instead of target_addr:target_port
    #[arg(long, value_name = "FILE")]
    pub unix_target: Option<PathBuf>,

    /// Inetd mode, receive the listening socket from standard input
    #[arg(long)]
    pub inetd: bool,

    /// Run a web server on the same port, serving files from DIR
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,

    /// What to do when the wrapped program exits: exit (with its status), ignore, respawn
    #[arg(long, value_name = "MODE", value_parser = parse_wrap_mode)]
    pub wrap_mode: Option<WrapMode>,

    /// Prefer IPv6 when resolving source_addr and target_addr
    #[arg(short = '6', long)]
    pub prefer_ipv6: bool,

    /// Old token file form: FILE or DIR of `token: host:port` lines (same as
    /// --token-plugin TokenFile --token-source FILE)
    #[arg(long, value_name = "FILE")]
    pub target_config: Option<PathBuf>,

    /// Token plugin: TokenFile, ReadOnlyTokenFile, or the path of a plugin library (.so)
    #[arg(long, value_name = "CLASS")]
    pub token_plugin: Option<String>,

    /// Argument passed to the token plugin when it is created
    #[arg(long, value_name = "ARG")]
    pub token_source: Option<String>,

    /// Use the Host header (without its port) as the token instead of the `token` parameter
    #[arg(long)]
    pub host_token: bool,

    /// Auth plugin: BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth, or a plugin library (.so)
    #[arg(long, value_name = "CLASS")]
    pub auth_plugin: Option<String>,

    /// Argument passed to the auth plugin when it is created
    #[arg(long, value_name = "ARG")]
    pub auth_source: Option<String>,

    /// Require authentication (the auth plugin) for the web server too
    #[arg(long)]
    pub web_auth: bool,

    /// Send a ping to an idle client every INTERVAL seconds (0: never)
    #[arg(long, value_name = "INTERVAL", value_parser = parse_seconds)]
    pub heartbeat: Option<u64>,

    /// File where logs will be saved (appended), instead of standard error
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log to syslog server. SERVER can be local socket, such as /dev/log, or a UDP host:port
    /// pair
    #[arg(long, value_name = "SERVER")]
    pub syslog: Option<String>,

    /// Use the old syslog protocol (RFC 3164) instead of RFC 5424
    #[arg(long)]
    pub legacy_syslog: bool,

    /// Disable directory listings in the web server
    #[arg(long)]
    pub file_only: bool,

    /// CA certificates (PEM) to verify the target with --ssl-target, instead of the system's
    #[arg(long, value_name = "FILE", help_heading = "websockify-rs options")]
    pub ssl_target_ca: Option<PathBuf>,

    /// Serve /metrics, /healthz and /readyz on this separate [ADDR:]PORT (off by default)
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen, help_heading = "websockify-rs options")]
    pub metrics_listen: Option<ListenAddr>,

    /// Log lines as text (default) or json, one object per line
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format, help_heading = "websockify-rs options")]
    pub log_format: Option<LogFormat>,

    /// On SIGTERM/SIGINT, let sessions run this many seconds before closing them (default 30)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "websockify-rs options")]
    pub shutdown_grace: Option<u64>,

    /// Serve at most N requests at once, sessions included; over it, 503 with Retry-After
    /// (default 0: from the descriptor limit, two descriptors per session)
    #[arg(long, value_name = "N", value_parser = parse_count, help_heading = "Limits")]
    pub max_connections: Option<u64>,

    /// Serve at most N requests at once from one client address (default 0: no limit)
    #[arg(long, value_name = "N", value_parser = parse_count, help_heading = "Limits")]
    pub max_connections_per_ip: Option<u64>,

    /// Close a client's session with 1009 when it announces a larger message (default 64MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub max_message_size: Option<ByteSize>,

    /// Cut off a client whose request head is not complete after this long (default 10)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "Limits")]
    pub handshake_timeout: Option<u64>,

    /// Give up on a target that has not accepted after this long (default 10)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "Limits")]
    pub connect_timeout: Option<u64>,

    /// Close a session with 1001 after this long without data either way (default 0: never)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "Limits")]
    pub session_idle_timeout: Option<u64>,

    /// Only reach targets these rules allow: CIDR, CIDR:PORT, [IPV6-CIDR]:PORT, HOST:PORT,
    /// HOST:* or unix:PATH (a PORT may be a range, 5900-5999); repeat the flag or separate
    /// with commas (default: any target)
    #[arg(long, value_name = "RULE,...", value_parser = parse_allow, help_heading = "Limits")]
    pub allow_target: Vec<AllowList>,

    /// Every connection starts with a PROXY protocol header (v1 or v2, from a load balancer);
    /// its client address is the one logged, limited and given to plugins
    #[arg(long, help_heading = "Load balancers")]
    pub proxy_protocol: bool,

    /// Send targets a PROXY protocol header (v1 or v2) naming the real client
    #[arg(long, value_name = "VERSION", value_parser = parse_pp_version, help_heading = "Load balancers")]
    pub target_proxy_protocol: Option<crate::edge::proxy_protocol::Version>,

    /// Believe Forwarded / X-Forwarded-For / X-Forwarded-Proto only from these networks
    /// (an ingress or reverse proxy in front); from anyone else they are ignored
    #[arg(long, value_name = "CIDR,...", value_parser = parse_trusted, help_heading = "Load balancers")]
    pub trusted_proxies: Vec<crate::edge::forwarded::TrustedProxies>,

    /// The rebind shim (librebind.so) for wrap mode, instead of the one next to the binary
    #[arg(long, value_name = "FILE", help_heading = "websockify-rs options")]
    pub rebind_lib: Option<PathBuf>,

    /// Read settings from this TOML file (also WEBSOCKIFY_CONFIG)
    #[arg(long, value_name = "FILE", help_heading = "websockify-rs options")]
    pub config: Option<PathBuf>,

    /// Print the merged effective configuration as TOML and exit
    #[arg(long, help_heading = "websockify-rs options")]
    pub print_config: bool,
}

/// A whole number of seconds; the message states the accepted form.
fn parse_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number of seconds, e.g. 30 (0 turns it off)".to_string())
}

/// A whole number; the message states the accepted form.
fn parse_count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number, e.g. 1000 (0: no limit)".to_string())
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    s.parse()
}

fn parse_allow(s: &str) -> Result<AllowList, String> {
    s.parse()
}

fn parse_trusted(s: &str) -> Result<crate::edge::forwarded::TrustedProxies, String> {
    s.parse()
}

fn parse_pp_version(s: &str) -> Result<crate::edge::proxy_protocol::Version, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<FileMode, String> {
    s.parse()
}

fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    s.parse().map_err(|e: crate::addr::AddrError| e.to_string())
}

fn parse_wrap_mode(s: &str) -> Result<WrapMode, String> {
    s.parse()
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

fn parse_ssl_version(s: &str) -> Result<SslVersion, String> {
    s.parse()
}

impl Cli {
    /// The clap definition, for the man page and completions generated from it.
    pub fn command() -> clap::Command {
        <Self as CommandFactory>::command()
    }

    /// A usage error reported exactly like clap's own (same format, exit status 2).
    pub fn usage_error(
        kind: clap::error::ErrorKind,
        message: impl std::fmt::Display,
    ) -> clap::Error {
        Self::command().error(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn websockify_command_lines_parse() {
        let cli = Cli::try_parse_from(["websockify", "-v", "6080", "localhost:5900"]).unwrap();
        assert_eq!(cli.positionals, ["6080", "localhost:5900"]);
        assert!(cli.verbose);
        let cli = Cli::try_parse_from([
            "websockify",
            "--unix-target=/tmp/s",
            "--idle-timeout=5",
            "[::1]:6080",
        ])
        .unwrap();
        assert_eq!(cli.idle_timeout, Some(5));
        assert_eq!(
            cli.unix_target.as_deref(),
            Some(std::path::Path::new("/tmp/s"))
        );
        let cli =
            Cli::try_parse_from(["websockify", "--unix-listen-mode", "0660", "--inetd"]).unwrap();
        assert_eq!(cli.unix_listen_mode, Some(FileMode(0o660)));
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
