//! The one definition of every setting, and the types of their values.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use clap::{ArgAction, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use super::de;
use crate::config::addr::{HostPort, ListenAddr};
use crate::config::limits::{
    AllowList, ByteSize, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_MIN_SIZE,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HTTP2_MAX_STREAMS,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PLUGIN_CALLS, DEFAULT_SEND_TIMEOUT,
};
use crate::edge::forwarded::{ForwardedHeader, TrustedProxies};

/// Every setting, as merged from all layers and before cross-field validation: the ONE
/// definition of each setting.
///
/// A field is a setting: its name is the file key (`idle_timeout`) and, after
/// `WEBSOCKIFY_`, the environment variable (`WEBSOCKIFY_IDLE_TIMEOUT`); its `#[arg]` is
/// the flag (`--idle-timeout`), whose doc comment is the help and whose default is the
/// setting's default; its serde attributes read the value from the file, the environment and
/// the command line alike (clap only checks a flag's value, so that a wrong one is reported the
/// clap way). `listen` and `target` are the positionals ([`POSITIONALS`]), not flags.
/// Adding a setting is adding a field here (and its validation, and a test).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
#[command(about = None, long_about = None)]
pub struct Settings {
    /// `[source_addr:]source_port`, the first positional.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenAddr>,

    /// `target_addr:target_port`, the second positional.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<HostPort>,

    /// `-- COMMAND ARGS...`: the program to wrap (see --wrap-mode)
    ///
    /// It is wrapped instead of a target: see [Wrap mode](#wrap-mode). The variable is one
    /// shell-quoted string; the file key a list or a string.
    #[arg(
        last = true,
        value_name = "WRAP_COMMAND_LINE",
        allow_hyphen_values = true
    )]
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::command"
    )]
    pub wrap_command: Option<Vec<String>>,

    /// Verbose messages (debug level)
    #[arg(short, long)]
    #[serde(deserialize_with = "de::flag")]
    pub verbose: bool,

    /// Per frame traffic: log each frame's size and direction
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub traffic: bool,

    /// Record each session to FILE.<session number>, in the format noVNC's player reads
    ///
    /// See [Recording](#recording-sessions).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,

    /// Become a daemon (background process); log with --log-file or --syslog
    ///
    /// See [Daemon](#daemon-and-syslog).
    #[arg(short = 'D', long)]
    #[serde(deserialize_with = "de::flag")]
    pub daemon: bool,

    /// Handle a single WebSocket connection and exit
    ///
    /// It stops accepting once a WebSocket session begins and exits 0 when it ends. Plain HTTP
    /// does not count.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub run_once: bool,

    /// After TIMEOUT seconds stop accepting, and exit when not connected (0: never)
    ///
    /// The seconds count from the start; the exit status is 0.
    #[arg(long, value_name = "TIMEOUT", value_parser = parse_seconds, default_value_t = 0)]
    #[serde(deserialize_with = "de::seconds")]
    pub timeout: u64,

    /// Server exits after IDLE_TIMEOUT seconds if there are no active connections (0: never)
    ///
    /// The seconds are in a row without any connection; the exit status is 0.
    #[arg(long, value_name = "IDLE_TIMEOUT", value_parser = parse_seconds, default_value_t = 0)]
    #[serde(deserialize_with = "de::seconds")]
    pub idle_timeout: u64,

    /// TLS certificate file (PEM; may also hold the key). Default self.pem, used if present
    ///
    /// The file holds the certificate chain.
    ///
    /// Default: `self.pem`.
    #[arg(long, value_name = "CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,

    /// TLS key file, if separate from the certificate
    ///
    /// PEM: PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with `--key-password`.
    ///
    /// Default: the key in `cert`.
    #[arg(long, value_name = "KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,

    /// Password of an encrypted (PKCS#8) key
    ///
    /// `--print-config` shows it as `<redacted>`.
    #[arg(long, value_name = "KEY_PASSWORD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_password: Option<Secret>,

    /// Disallow non-encrypted client connections
    ///
    /// Each refusal is logged.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub ssl_only: bool,

    /// Connect to the target with TLS, as a TLS client
    ///
    /// The target's certificate is verified for the target's host name.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub ssl_target: bool,

    /// Require TLS clients to present a certificate signed by --cafile (or the system CAs)
    ///
    /// The certificate's CN is logged and used by `ClientCertCNAuth`.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub verify_client: bool,

    /// CA certificates (PEM) trusted for client certificates (with --verify-client)
    ///
    /// Default: system CAs.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,

    /// Minimum TLS version: default, tlsv1_1, tlsv1_2 or tlsv1_3
    ///
    /// rustls has no TLS 1.1, so `default`, `tlsv1_1` and `tlsv1_2` all mean TLS 1.2 and 1.3.
    #[arg(long, value_name = "SSL_VERSION", default_value_t = SslVersion::Default)]
    #[serde(deserialize_with = "de::parsed")]
    pub ssl_version: SslVersion,

    /// TLS cipher suites allowed, OpenSSL or IANA names separated by colons
    ///
    /// A name rustls cannot honour is a start-up error. Listing no TLS 1.3 suite leaves TLS 1.3's
    /// suites on, as OpenSSL does.
    ///
    /// Default: all.
    #[arg(long, value_name = "SSL_CIPHERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_ciphers: Option<String>,

    /// Listen on unix socket FILE instead of [source_addr:]source_port
    ///
    /// Then the only positional is the target.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_listen: Option<PathBuf>,

    /// Mode of the --unix-listen socket, in octal
    ///
    /// In the file a string (`"0660"`) or a TOML octal number (`0o660`).
    #[arg(long, value_name = "UNIX_LISTEN_MODE", default_value_t = FileMode(0o600))]
    pub unix_listen_mode: FileMode,

    /// Connect to unix socket target FILE instead of target_addr:target_port
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_target: Option<PathBuf>,

    /// Inetd mode, receive the listening socket from standard input
    ///
    /// The socket may be TCP or unix; the only positional is the target.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub inetd: bool,

    /// Run a web server on the same port, serving files from DIR
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<PathBuf>,

    /// What to do when the wrapped program exits: exit (with its status), ignore, respawn
    ///
    /// Default: `exit`.
    #[arg(long, value_name = "MODE")]
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::parsed_option"
    )]
    pub wrap_mode: Option<WrapMode>,

    /// Prefer IPv6 when resolving source_addr and target_addr
    ///
    /// IPv6 addresses are tried first for the listen and target hosts.
    #[arg(short = '6', long)]
    #[serde(deserialize_with = "de::flag")]
    pub prefer_ipv6: bool,

    /// Old token file form: FILE or DIR of `token: host:port` lines (same as
    /// --token-plugin TokenFile --token-source FILE)
    ///
    /// It is websockify 0.6's name. See [Tokens](#tokens-one-proxy-many-targets).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_config: Option<PathBuf>,

    /// Token plugin: TokenFile, ReadOnlyTokenFile, or the path of a plugin library (.so)
    ///
    /// It replaces `target_addr:target_port`. See [Tokens](#tokens-one-proxy-many-targets).
    #[arg(long, value_name = "CLASS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_plugin: Option<String>,

    /// Argument passed to the token plugin when it is created
    ///
    /// For the token files: a file or a directory.
    #[arg(long, value_name = "ARG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<String>,

    /// Use the Host header (without its port) as the token instead of the `token` parameter
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub host_token: bool,

    /// Auth plugin: BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth, or a plugin library (.so)
    ///
    /// See [Authentication](#authentication).
    #[arg(long, value_name = "CLASS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_plugin: Option<String>,

    /// Argument passed to the auth plugin when it is created
    #[arg(long, value_name = "ARG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_source: Option<String>,

    /// Require authentication (the auth plugin) for the web server too
    ///
    /// Needs `--auth-plugin` and `--web`.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub web_auth: bool,

    /// Send a ping to an idle client every INTERVAL seconds (0: never)
    ///
    /// Idle: without traffic either way.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_seconds, default_value_t = 0)]
    #[serde(deserialize_with = "de::seconds")]
    pub heartbeat: u64,

    /// File where logs will be saved (appended), instead of standard error
    ///
    /// Default: standard error.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,

    /// Log to syslog server. SERVER can be local socket, such as /dev/log, or a UDP host:port
    /// pair
    ///
    /// Every log line goes to syslog too, as websockify sends it. See
    /// [Daemon and syslog](#daemon-and-syslog).
    #[arg(long, value_name = "SERVER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,

    /// Use the old syslog protocol (RFC 3164) instead of RFC 5424
    ///
    /// Lines are `<PRI>websockify[PID]: msg`. Needs `--syslog`.
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub legacy_syslog: bool,

    /// Disable directory listings in the web server
    #[arg(long)]
    #[serde(deserialize_with = "de::flag")]
    pub file_only: bool,

    /// CA certificates (PEM) to verify the target with --ssl-target, instead of the system's
    ///
    /// It pins the CA that signs the target's certificate.
    ///
    /// Default: system CAs.
    #[arg(long, value_name = "FILE", help_heading = OURS)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_target_ca: Option<PathBuf>,

    /// Serve /metrics, /healthz and /readyz on this separate [ADDR:]PORT (off by default)
    ///
    /// For example `127.0.0.1:9187`, or a bare port for every interface. See
    /// [Operating it](#operating-it).
    ///
    /// Default: off.
    #[arg(long, value_name = "ADDR:PORT", help_heading = OURS)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<ListenAddr>,

    /// Turn on the admin API on the --metrics-listen port (/sessions), for requests that
    /// carry this bearer token
    ///
    /// `GET /sessions` lists the live sessions, `DELETE /sessions/ID` ends one with `1008`;
    /// a request without this token gets `401`. Prefer `--admin-token-file` (or the
    /// environment) to a command line other users can read. `--print-config` shows it as
    /// `<redacted>`. See [Live sessions](#live-sessions).
    ///
    /// Default: off.
    #[arg(long, value_name = "TOKEN", help_heading = OURS)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,

    /// Read --admin-token from this file (its first line), as a mounted Secret provides it
    ///
    /// Read at start; a token changed in the file takes effect at the next start.
    ///
    /// Default: none.
    #[arg(long, value_name = "FILE", help_heading = OURS)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,

    /// Log lines as text or json, one object per line
    #[arg(long, value_name = "FORMAT", default_value_t = LogFormat::Text, help_heading = OURS)]
    #[serde(deserialize_with = "de::parsed")]
    pub log_format: LogFormat,

    /// On SIGTERM/SIGINT, let sessions run this many seconds before closing them
    ///
    /// They are closed with `1001`; `0` closes them at once.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        default_value_t = DEFAULT_SHUTDOWN_GRACE,
        help_heading = OURS
    )]
    #[serde(deserialize_with = "de::seconds")]
    pub shutdown_grace: u64,

    /// Serve at most N requests at once, sessions included; over it, 503 with Retry-After
    /// (0: from the descriptor limit, two descriptors per session)
    ///
    /// WebSocket sessions and web requests both count; the `503` carries `Retry-After: 5`. `0`
    /// takes what the descriptor limit allows: (soft `RLIMIT_NOFILE`, raised to the hard limit at start,
    /// − 64) / 2. See [Limits](#limits-and-hostile-clients).
    #[arg(long, value_name = "N", value_parser = parse_count, default_value_t = 0, help_heading = LIMITS)]
    #[serde(deserialize_with = "de::count")]
    pub max_connections: u64,

    /// Serve at most N requests at once from one client address (0: no limit)
    ///
    /// Over it, `503` with `Retry-After`. Off by default because behind a load balancer every
    /// client has the balancer's address.
    #[arg(long, value_name = "N", value_parser = parse_count, default_value_t = 0, help_heading = LIMITS)]
    #[serde(deserialize_with = "de::count")]
    pub max_connections_per_ip: u64,

    /// Close a client's session with 1009 when it announces a larger message
    ///
    /// The close comes at once, from the message's header, before any payload is read (on Hixie:
    /// a frame as sent). Bytes, or `K`/`M`/`G` (powers of 1024); at least `1KiB`.
    #[arg(
        long,
        value_name = "SIZE",
        default_value_t = ByteSize(DEFAULT_MAX_MESSAGE_SIZE),
        help_heading = LIMITS
    )]
    pub max_message_size: ByteSize,

    /// Cut off a client whose request head is not complete after this long
    ///
    /// The client gets `408` and is closed (slowloris); `0`: no limit. Heads over 16 KiB get
    /// `431`.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        default_value_t = DEFAULT_HANDSHAKE_TIMEOUT,
        help_heading = LIMITS
    )]
    #[serde(deserialize_with = "de::seconds")]
    pub handshake_timeout: u64,

    /// Give up on a target that has not accepted after this long
    ///
    /// TLS included; the session is closed with `1011`. `0`: the system's own timeout.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        default_value_t = DEFAULT_CONNECT_TIMEOUT,
        help_heading = LIMITS
    )]
    #[serde(deserialize_with = "de::seconds")]
    pub connect_timeout: u64,

    /// Close a session with 1001 after this long without data either way (0: never)
    ///
    /// The close reason is "Session idle timeout"; pings do not count.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, default_value_t = 0, help_heading = LIMITS)]
    #[serde(deserialize_with = "de::seconds")]
    pub session_idle_timeout: u64,

    /// Streams at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    ///
    /// Each WebSocket on a connection is a stream, and so is each web file being sent. Each
    /// stream may have 256 KiB from its client waiting for its target, and the connection
    /// as much for all its streams at once, so one connection holds at most N × 256 KiB.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_count,
        default_value_t = DEFAULT_HTTP2_MAX_STREAMS,
        help_heading = LIMITS
    )]
    #[serde(deserialize_with = "de::count")]
    pub http2_max_streams: u64,

    /// Calls to one plugin in flight at once (running or waiting); over it, 503 with Retry-After
    ///
    /// Each plugin runs on 16 threads of its own, apart from the proxy's async workers and
    /// from the threads DNS lookups, web files and recordings use; calls beyond them wait in
    /// order, and a call whose request stopped waiting (5 s, `504`) is never started. A call
    /// that times out keeps its thread until the plugin returns, so a plugin that hangs holds
    /// its 16 threads and at most this many waiting requests.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_count,
        default_value_t = DEFAULT_MAX_PLUGIN_CALLS,
        help_heading = LIMITS
    )]
    #[serde(deserialize_with = "de::count")]
    pub max_plugin_calls: u64,

    /// Drop a client that accepts no byte of an answer for this long (0: never)
    ///
    /// A web file, and (issue 22) a session's messages: a client whose receive window stays
    /// shut holds its connection and its place under `--max-connections` until then.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        default_value_t = DEFAULT_SEND_TIMEOUT,
        help_heading = LIMITS
    )]
    #[serde(deserialize_with = "de::seconds")]
    pub send_timeout: u64,

    /// Only reach targets these rules allow: CIDR, CIDR:PORT, [IPV6-CIDR]:PORT, HOST:PORT,
    /// HOST:* or unix:PATH (a PORT may be a range, 5900-5999); repeat the flag or separate
    /// with commas (default: any target)
    ///
    /// For example `10.0.0.0/8`, `10.0.0.0/8:5900`, `10.0.0.0/8:5900-5999`, `[fd00::/8]:5900`,
    /// `vnc.internal:5900`, `vnc.internal:*`, `unix:/run/vnc/`; in the file, a list. A request
    /// for another target is answered `403` "target not allowed" before any upgrade; the
    /// addresses (or the unix path, symlinks resolved) checked are the ones connected.
    ///
    /// Default: any target.
    #[arg(
        long,
        value_name = "RULE,...",
        action = ArgAction::Append,
        default_value = "",
        hide_default_value = true,
        help_heading = LIMITS
    )]
    #[serde(
        skip_serializing_if = "AllowList::is_empty",
        deserialize_with = "de::comma_list"
    )]
    pub allow_target: AllowList,

    /// Every connection starts with a PROXY protocol header (v1 or v2, from a load balancer);
    /// its client address is the one logged, limited and given to plugins
    ///
    /// See [Behind a load balancer](#behind-a-load-balancer).
    #[arg(long, help_heading = LOAD_BALANCERS)]
    #[serde(deserialize_with = "de::flag")]
    pub proxy_protocol: bool,

    /// Send targets a PROXY protocol header (v1 or v2) naming the real client
    ///
    /// Default: none.
    #[arg(long, value_name = "VERSION", help_heading = LOAD_BALANCERS)]
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::parsed_option"
    )]
    pub target_proxy_protocol: Option<crate::edge::proxy_protocol::Version>,

    /// Believe Forwarded / X-Forwarded-For / X-Forwarded-Proto only from these networks
    /// (an ingress or reverse proxy in front); from anyone else they are ignored
    ///
    /// See [Behind a load balancer](#behind-a-load-balancer).
    ///
    /// Default: none.
    #[arg(
        long,
        value_name = "CIDR,...",
        action = ArgAction::Append,
        default_value = "",
        hide_default_value = true,
        help_heading = LOAD_BALANCERS
    )]
    #[serde(
        skip_serializing_if = "TrustedProxies::is_empty",
        deserialize_with = "de::comma_list"
    )]
    pub trusted_proxies: TrustedProxies,

    /// Which header names the client behind --trusted-proxies: x-forwarded-for (with
    /// X-Forwarded-Proto) or forwarded (RFC 7239)
    ///
    /// Only that family is read, from the right, skipping trusted hops: a front proxy that
    /// appends to one passes a client's own copy of the other through untouched, so reading
    /// both would let a client name itself. nginx, HAProxy and most Kubernetes ingresses send
    /// `X-Forwarded-For`; Envoy can send either.
    #[arg(
        long,
        value_name = "HEADER",
        default_value_t = ForwardedHeader::XForwardedFor,
        help_heading = LOAD_BALANCERS
    )]
    #[serde(deserialize_with = "de::parsed")]
    pub forwarded_header: ForwardedHeader,

    /// Do not answer Flash's policy request; close such connections instead
    ///
    /// websockify's answer, which this repeats, lets Flash reach any port from any domain
    /// (`domain="*" to-ports="*"`); nothing but Flash, gone from browsers since 2021, asks.
    #[arg(long, help_heading = OURS)]
    #[serde(deserialize_with = "de::flag")]
    pub no_flash_policy: bool,

    /// Do not serve /websockify/status.json under --web
    ///
    /// The start page's live numbers (version, uptime, session counts, relayed bytes; no
    /// address, target or token) are otherwise public wherever `--web` is, unless
    /// `--web-auth` guards the web directory.
    #[arg(long, help_heading = OURS)]
    #[serde(deserialize_with = "de::flag")]
    pub no_web_status: bool,

    /// Speak HTTP/2 on the port too: on or off
    ///
    /// On: TLS offers `h2` by ALPN, and a cleartext connection that begins with HTTP/2's
    /// preface (h2c with prior knowledge, as Envoy and HAProxy send it) is served as HTTP/2;
    /// a WebSocket then comes as an extended CONNECT stream (RFC 8441) and web files as
    /// streams, many on one connection. Off: HTTP/1.1 only, as websockify.
    #[arg(long, value_name = "on|off", default_value_t = Switch::On, help_heading = OURS)]
    #[serde(deserialize_with = "de::parsed")]
    pub http2: Switch,

    /// Compress WebSocket messages with permessage-deflate when the client offers it
    ///
    /// Every browser offers it (RFC 7692); websockify does not, so it is off unless asked
    /// for. A message to the client is sent compressed when it is at least
    /// `--compression-min-size` and shrinks; the client's compressed messages are inflated,
    /// their inflated size held to `--max-message-size`. By default neither side keeps its
    /// compression window between messages, so an idle session holds no compression state
    /// (see `--compression-context`). Hixie sessions are never compressed.
    #[arg(long, help_heading = OURS)]
    #[serde(deserialize_with = "de::flag")]
    pub compression: bool,

    /// Messages to the client shorter than this go uncompressed
    ///
    /// Deflating a short message saves a few bytes at best and costs the same setup as a
    /// long one. Bytes, or `K`/`M` (powers of 1024).
    #[arg(
        long,
        value_name = "SIZE",
        default_value_t = ByteSize(DEFAULT_COMPRESSION_MIN_SIZE),
        help_heading = OURS
    )]
    pub compression_min_size: ByteSize,

    /// zlib's compression level, 1 (fastest) to 9 (smallest)
    ///
    /// Level 1 takes half the CPU of level 6 on a screen's raw pixels, for a third more bytes
    /// on the wire (docs/performance.md measures 1, 6 and 9).
    #[arg(
        long,
        value_name = "1-9",
        value_parser = parse_count,
        default_value_t = DEFAULT_COMPRESSION_LEVEL,
        help_heading = OURS
    )]
    #[serde(deserialize_with = "de::count")]
    pub compression_level: u64,

    /// Keep each session's compression window between messages (context takeover)
    ///
    /// Streams of small similar messages (a terminal's lines) compress much better when
    /// each message may refer to the ones before, but the session then holds a compressor
    /// and an inflater from its first compressed message on (about 340 KiB,
    /// docs/performance.md) instead of borrowing them per message.
    #[arg(long, help_heading = OURS)]
    #[serde(deserialize_with = "de::flag")]
    pub compression_context: bool,

    /// After a message to a client, wait for its answer by polling for up to MICROSECONDS
    /// before sleeping (0: never)
    ///
    /// A thread that sleeps between a message and its answer is woken when the answer comes,
    /// and on a virtual machine that wake-up is most of a small round trip's time
    /// (docs/performance.md: 86 to 55 µs on loopback). Only while the thread has nothing else
    /// to run; each such wait costs up to MICROSECONDS of CPU, so a busy proxy may poll all
    /// the time. It helps clients that answer within MICROSECONDS: a reverse proxy or
    /// terminal on the same host or rack, not a browser across the internet. At most 1000.
    #[arg(
        long,
        value_name = "MICROSECONDS",
        value_parser = parse_micros,
        default_value_t = 0,
        help_heading = OURS
    )]
    #[serde(deserialize_with = "de::microseconds")]
    pub busy_poll: u64,

    /// The rebind shim (librebind.so) for wrap mode, instead of the one next to the binary
    ///
    /// Default: next to the binary.
    #[arg(long, value_name = "FILE", help_heading = OURS)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebind_lib: Option<PathBuf>,
}

/// The help headings after websockify's own options.
const OURS: &str = "websockify-rs options";
const LIMITS: &str = "Limits";
const LOAD_BALANCERS: &str = "Load balancers";

/// A setting given on the command line as a positional argument rather than a flag (which
/// positional is which depends on the listen mode: with `--inetd` or `--unix-listen` the only
/// one is the target).
#[derive(Debug)]
pub struct Positional {
    /// The setting: its file key.
    pub key: &'static str,
    /// How usage and errors name it.
    pub form: &'static str,
    /// What it means, for the README's table of settings.
    pub help: &'static str,
}

/// `listen` and `target`, in command-line order.
pub const POSITIONALS: &[Positional] = &[
    Positional {
        key: "listen",
        form: "[source_addr:]source_port",
        help: "Where to listen; a bare port means every interface.",
    },
    Positional {
        key: "target",
        form: "target_addr:target_port",
        help: "Where to relay each session.",
    },
];

/// The settings' clap definition on its own: the arguments [`Settings`] adds to a command.
pub fn definition() -> &'static Command {
    static DEFINITION: LazyLock<Command> =
        LazyLock::new(|| Settings::augment_args(Command::new("websockify")));
    &DEFINITION
}

/// The names of every setting (the file keys), in the definition's order: the fields of
/// [`Settings`] as serde reads them, so there is no second list to keep in step.
pub fn setting_names() -> &'static [&'static str] {
    static NAMES: LazyLock<&'static [&'static str]> = LazyLock::new(|| {
        let mut names = FieldNames(None);
        // The capture always "fails": it stops at the struct's field list.
        let _ = Settings::deserialize(&mut names);
        names.0.unwrap_or_default()
    });
    &NAMES
}

/// A deserializer that reads nothing but records the field names of the struct asked of it.
struct FieldNames(Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "only a struct's field names are read",
        ))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(serde::de::Error::custom("field names read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A whole number of seconds; the message states the accepted form.
fn parse_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number of seconds, e.g. 30 (0 turns it off)".to_string())
}

/// Microseconds; the message states the accepted form.
fn parse_micros(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| {
        "expected a whole number of microseconds, e.g. 50 (0 turns it off)".to_string()
    })
}

/// A whole number; the message states the accepted form.
fn parse_count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number, e.g. 1000 (0: no limit)".to_string())
}

/// A setting that is `on` or `off` (`--http2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    On,
    Off,
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Switch::On => "on",
            Switch::Off => "off",
        })
    }
}

impl FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Ok(Switch::On),
            "off" | "false" | "no" | "0" => Ok(Switch::Off),
            _ => Err(format!("`{s}` is not a switch: expected on or off")),
        }
    }
}

/// `--wrap-mode`: what to do when the wrapped program exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrapMode {
    /// Exit with the program's status (websockify's default).
    #[default]
    Exit,
    /// Keep serving; sessions fail to connect until something listens again.
    Ignore,
    /// Start the program again, backing off when it dies quickly.
    Respawn,
}

impl fmt::Display for WrapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WrapMode::Exit => "exit",
            WrapMode::Ignore => "ignore",
            WrapMode::Respawn => "respawn",
        })
    }
}

impl FromStr for WrapMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "exit" => Ok(WrapMode::Exit),
            "ignore" => Ok(WrapMode::Ignore),
            "respawn" => Ok(WrapMode::Respawn),
            _ => Err(format!(
                "`{s}` is not a wrap mode: expected exit, ignore or respawn"
            )),
        }
    }
}

/// `--log-format`: human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format: expected text or json")),
        }
    }
}

/// How long running sessions may go on after SIGTERM before they are closed with 1001.
pub const DEFAULT_SHUTDOWN_GRACE: u64 = 30;

/// A value that is never shown: `--print-config` and debug output print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `--ssl-version`: the lowest TLS version accepted, in websockify's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslVersion {
    /// rustls's default: TLS 1.2 and 1.3.
    #[default]
    Default,
    /// Accepted for websockify command lines; rustls has no TLS 1.1, so this is TLS 1.2.
    Tlsv1_1,
    Tlsv1_2,
    Tlsv1_3,
}

impl fmt::Display for SslVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslVersion::Default => "default",
            SslVersion::Tlsv1_1 => "tlsv1_1",
            SslVersion::Tlsv1_2 => "tlsv1_2",
            SslVersion::Tlsv1_3 => "tlsv1_3",
        })
    }
}

impl FromStr for SslVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "default" => Ok(SslVersion::Default),
            "tlsv1_1" => Ok(SslVersion::Tlsv1_1),
            "tlsv1_2" => Ok(SslVersion::Tlsv1_2),
            "tlsv1_3" => Ok(SslVersion::Tlsv1_3),
            _ => Err(format!(
                "`{s}` is not a TLS version: expected default, tlsv1_1, tlsv1_2 or tlsv1_3"
            )),
        }
    }
}

/// The defaults are the clap definition's: what an empty command line gives.
impl Default for Settings {
    fn default() -> Self {
        static DEFAULTS: LazyLock<Settings> = LazyLock::new(|| {
            definition()
                .clone()
                .no_binary_name(true)
                .try_get_matches_from(std::iter::empty::<&str>())
                .and_then(|matches| Settings::from_arg_matches(&matches))
                // The definition alone decides this, never the user (a unit test covers it):
                // every setting without a clap default is an Option.
                .expect("the settings' clap definition parses an empty command line")
        });
        DEFAULTS.clone()
    }
}

/// A unix file mode, written in octal (`0600`) everywhere a person reads or writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FromStr for FileMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(FileMode(mode)),
            _ => Err(format!(
                "`{s}` is not a file mode: expected octal digits, e.g. 0600 or 660"
            )),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'d> Deserialize<'d> for FileMode {
    fn deserialize<D: serde::Deserializer<'d>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal file mode as a string (\"0600\") or a TOML octal (0o600)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileMode, E> {
                v.parse().map_err(E::custom)
            }
            // A TOML integer is taken as the mode's value, so `0o600` works; a decimal 600
            // would silently mean something else, so only values that read as octal digits
            // would be ambiguous, and those are refused.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FileMode, E> {
                match u32::try_from(v) {
                    Ok(mode) if mode <= 0o7777 => Ok(FileMode(mode)),
                    _ => Err(E::custom(format!(
                        "{v} is not a file mode from 0o0 to 0o7777"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FileMode, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(Visitor)
    }
}
