//! websockify-rs: a WebSocket-to-TCP bridge, a drop-in replacement for websockify.
//!
//! A connection's way through the program, and the module that owns each step:
//!
//! - [`server`]: the accept loop and lifecycle (`--run-once`, `--timeout`, `--idle-timeout`,
//!   signals); `server::listen` binds TCP, unix and inetd sockets; `server::handler` takes one
//!   connection from request head to log line; `server::tracker` counts connections;
//!   `server::admission` applies the connection limits (503 over them).
//! - [`limits`]: the limits' settings and types: connections, message size, timeouts, and
//!   the `--allow-target` rules.
//! - [`http`]: the request head, read with bounded size and time, and plain answers.
//! - [`ws`]: is it an upgrade, which version; `ws::handshake` checks HyBi requests and writes
//!   the 101; `ws::frame` and `ws::hybi` are RFC 6455 framing on the hot path; `ws::hixie`
//!   the drafts.
//! - [`forwarded`]: `--trusted-proxies`: the client and scheme from `Forwarded` /
//!   `X-Forwarded-*`, believed only from trusted peers.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers: the real client's address from a load
//!   balancer in front (`--proxy-protocol`), and to a target behind (`--target-proxy-protocol`).
//! - [`session`]: the protocol-neutral client session the relay drives.
//! - [`record`]: `--record`, each session's traffic in websockify's recording format.
//! - [`target`]: where a session goes and how we connect there.
//! - [`relay`]: bytes both ways with backpressure, then the right close.
//! - [`stream`]: one type over TCP, unix and TLS sockets, and the relay's halves of them.
//! - [`config`]: defaults < file < environment < command line, validated into [`config::Config`].
//! - [`cli`]: the websockify-compatible command line (clap).
//! - [`addr`]: `[host:]port` parsing as websockify does it.
//! - [`daemon`]: `-D`, running in the background once the port is bound.
//! - [`syslog`]: `--syslog`, log lines as websockify sends them to syslog.
//! - [`logging`]: the tracing subscriber: text or JSON lines, and OpenTelemetry traces.
//! - [`metrics`]: the Prometheus series; `server::ops` serves them with health and readiness.
//! - [`web`]: `--web DIR`, static files on the proxy port, and `/websockify/status.json`
//!   (`web::status`), the live numbers of the start page in `web/` (the browser side:
//!   `web/README.md`).
//! - [`wrap`]: wrap mode: the reserved port, the wrapped program and its supervision; the
//!   rebind shim itself is `plugins/rebind`.
//! - [`shutdown`]: the "has shutdown begun?" signal every task watches.
//! - `fuzzing` (hidden): the fuzz targets, one per parser of outside bytes, shared by `fuzz/`
//!   and the corpus replay in `tests/fuzz_corpus.rs` (`docs/fuzzing.md`).

pub mod cli;
pub mod clock;
pub mod config;
pub mod edge;
// Fuzz targets for `fuzz/` (the `fuzzing` feature) and their corpus replay (unit tests); not
// part of the proxy or its API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod plugin;
pub mod process;
pub mod request;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod web;
pub mod ws;
