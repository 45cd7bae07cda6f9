//! websockify-rs: a WebSocket-to-TCP bridge, a drop-in replacement for websockify.
//!
//! The tree follows a connection's way through the program; each line is a module and what
//! it owns.
//!
//! - `process`: starting ([`run`], all the binary does), `-D` (`process::daemon`), wrap mode
//!   (`process::wrap`; the rebind shim itself is `plugins/rebind`), and the "has shutdown
//!   begun?" signal every task watches (`process::shutdown`).
//! - [`cli`] and [`config`]: the websockify-compatible command line, and the settings:
//!   defined once (`config::settings`), merged defaults < file < environment < command line
//!   (`config::load`), validated into the `Config` the server runs (`config::validate`);
//!   `config::addr` parses addresses as websockify does, `config::limits` holds the limits'
//!   types (sizes, connection counts, `--allow-target` rules).
//! - `server`: the accept loop and the lifecycle (`--run-once`, `--timeout`,
//!   `--idle-timeout`, signals and the drain); `server::handler` takes one connection through
//!   its steps (receive, decide, open); `server::h2` serves an HTTP/2 connection, each
//!   stream through the same steps; `server::tracker` counts connections and sessions.
//! - `edge`, the network edge, from socket to request: `listen` (TCP, unix, inetd),
//!   `proxy_protocol` (`--proxy-protocol` in, `--target-proxy-protocol` out), `sniff` (TLS,
//!   Flash, HTTP/2 or HTTP/1 from the first bytes), `h2` (HTTP/2's settings, and a stream as
//!   the byte stream a session runs on), `turn` (what an HTTP/2 connection's task reads
//!   before the sessions it feeds run), `tls` (rustls, reloadable), `bounded` (reading what
//!   a peer sends first, bounded in size and time), `http` (the request head, refusals and
//!   plain answers), `forwarded` (`--trusted-proxies`), `stream` (one type over TCP, unix and
//!   TLS sockets, and the relay's halves of them).
//! - `request`: the facts of a request, whatever carried it (client, channel, head): a leaf
//!   that the protocol code and the gate both read.
//! - `gate`: what every request passes, on its facts alone: admission (`gate::admission`),
//!   the auth plugin, the target (static, or by the token, `gate::token`); it answers with a
//!   target or a refusal, and never sees a socket.
//! - `plugin`: loading plugins (built in, or a `.so` through the C ABI of `plugins/api`) and
//!   calling them on their own bounded threads (`plugin::pool`).
//! - `ws`: is it an upgrade, which version; `ws::hybi` (RFC 6455 and drafts 7/8: handshake,
//!   frame headers, the framing on the hot path) and `ws::hixie` (drafts 75 and 76: handshake,
//!   framing), each ending at the session pair.
//! - `session`: the protocol-neutral client session the relay drives (`ClientRx`/`ClientTx`,
//!   close codes); `session::target` (where a session goes, and connecting there),
//!   `session::relay` (bytes both ways with backpressure, then the right close),
//!   `session::record` (`--record`).
//! - `web`: `--web DIR`, static files on the proxy port, and `/websockify/status.json` (the
//!   browser side is `web/`, see `web/README.md`).
//! - `telemetry`: log lines and traces (`telemetry::logging`, `telemetry::syslog`), the
//!   Prometheus series (`telemetry::metrics`), the operations port (`telemetry::ops`).
//! - `clock`: deadlines that may not be set.
//! - `fuzzing` (only for `fuzz/` and the corpus replay): the fuzz targets, one per parser of
//!   outside bytes (`docs/fuzzing.md`).
//!
//! Only what the binary, `tools/gen-docs` and the tests use is public: [`run`], [`cli::Cli`]
//! and the settings' names in [`config`]. The plugin API is the `websockify-plugin-api`
//! crate (`plugins/api`).

pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod edge;
// Fuzz targets for `fuzz/` (the `fuzzing` feature) and their corpus replay (unit tests); not
// part of the proxy or its API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod gate;
pub(crate) mod plugin;
pub(crate) mod process;
pub(crate) mod request;
pub(crate) mod server;
pub(crate) mod session;
pub(crate) mod telemetry;
pub(crate) mod web;
pub(crate) mod ws;

pub use process::run;
