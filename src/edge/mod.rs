//! The network edge: where bytes come from outside, up to a parsed request.
//!
//! - `listen`: binding TCP, unix and inetd sockets, and what the listener hands on.
//! - `proxy_protocol`: a load balancer's PROXY header in front (`--proxy-protocol`), and the
//!   one we send targets (`--target-proxy-protocol`).
//! - `sniff`: TLS, Flash or HTTP, from the first bytes.
//! - `tls`: rustls on the proxy port (reloadable) and toward targets (`--ssl-target`).
//! - `stream`: one type over TCP, unix and TLS sockets, and the relay's halves of them.
//! - `bounded`: reading what a peer sends first, with bounds on its size and time.
//! - `deadline`: `--send-timeout`, a writer that gives up on a peer that takes nothing.
//! - `http`: the request head, read with bounded size and time, and plain answers.
//! - `h2`: HTTP/2's connection settings, and a stream as the byte stream a session runs on.
//! - `turn`: what an HTTP/2 connection's task reads before the sessions it feeds run.
//! - `forwarded`: `--trusted-proxies`: the client and scheme from forwarded headers.

pub mod bounded;
pub mod deadline;
pub mod forwarded;
pub mod h2;
pub mod http;
pub mod listen;
pub mod proxy_protocol;
pub mod sniff;
pub mod stream;
pub mod tls;
pub mod turn;
