//! `wsload`: the benchmark's load generator and echo target (`benches/compare.sh` drives it).
//!
//! - `wsload echo`: the TCP echo target every proxy relays to.
//! - `wsload token-api --target HOST:PORT`: a token API for `JSONTokenApi` that sends every
//!   token to the target, but never answers tokens that begin with `hang` (the soak's slow
//!   plugin).
//! - `wsload relay --to HOST:PORT`: the relay floor, a raw TCP relay with nothing but the
//!   relaying in it (`relay.rs`), measured like a proxy to bound what any proxy can reach;
//!   with `--ws`, the WebSocket floor (`wsfloor.rs`): that relay plus the least of RFC 6455
//!   a bridge must do, the bound for a WebSocket proxy; with `--tokio`, either written as a
//!   tokio server writes it (`tokiorelay.rs`, `tokiows.rs`), which measures what the runtime
//!   costs; with `--ws --h2`, the WebSocket floor over HTTP/2 (`h2floor.rs`), what the `h2`
//!   crate costs.
//! - `wsload <figure> --url ws://HOST:PORT/` measures through a WebSocket proxy;
//!   `--tcp HOST:PORT` measures over raw TCP instead (the echo target itself for the
//!   physical baseline, or socat). Figures: `throughput`, `latency`, `messages`, `connections`,
//!   `idle` (memory per idle session of `--pid` and its children), and `throughput --pid` adds the proxy's CPU
//!   seconds per GB.
//! - `--h2 STREAMS` with `--url`: each session is an RFC 8441 stream, STREAMS of them per
//!   cleartext HTTP/2 connection (`http2.rs`), for the same figures over HTTP/2.
//! - Each figure runs `--repeat` times and prints one JSON object with the median.
//! - `wsload soak --url ws://HOST:PORT/ --pid PID`: the reliability soak (`benches/soak.sh`):
//!   thousands of checksummed sessions in a rolling mix with faults injected, the proxy's RSS
//!   and descriptors sampled from /proc; see `soak/mod.rs`.
//!
//! Echoed data comes back as a byte stream (a proxy may split or merge messages), so replies
//! are counted in bytes, never in messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod floorframe;
mod h2floor;
mod http2;
mod relay;
mod replay;
mod soak;
mod tokiorelay;
mod tokiows;
mod wsfloor;

#[derive(Parser)]
#[command(about = "Load generator and echo target for the websockify-rs benchmark")]
struct Cli {
    #[command(subcommand)]
    figure: Figure,
}

#[derive(Subcommand)]
enum Figure {
    /// Run the echo target on PORT (0: any) and print the port.
    Echo {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Run a token API on PORT (0: any) for the proxy's JSONTokenApi plugin and print the
    /// port: `GET /token/TOKEN` answers `{"host": ..., "port": ...}` of TARGET, except for
    /// tokens that begin with `hang`, which it never answers.
    TokenApi {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        target: std::net::SocketAddr,
    },
    /// Run the relay floor on PORT (0: any) to TO and print the port: a raw TCP relay doing
    /// only the relaying, which bounds what any proxy can reach here.
    Relay {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        to: std::net::SocketAddr,
        /// The WebSocket floor instead: the relaying plus the least of RFC 6455 a bridge
        /// must do (handshake, unmasking, framing, closing handshake), which bounds what a
        /// WebSocket proxy can reach here.
        #[arg(long)]
        ws: bool,
        /// On tokio instead (a task per connection on one current-thread runtime; the raw
        /// relay with `copy_bidirectional`): not a floor of what a bridge must do, but what
        /// tokio's machinery costs beside the epoll floors.
        #[arg(long)]
        tokio: bool,
        /// With --ws: the WebSocket floor over HTTP/2 (h2c, RFC 8441 streams) on the `h2`
        /// crate, with ours' windows and frame sizes, which measures what HTTP/2 costs.
        #[arg(long, requires = "ws")]
        h2: bool,
    },
    /// MB/s echoed with CONNS connections sending SIZE-byte messages.
    Throughput {
        #[command(flatten)]
        to: To,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 64 * 1024)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// The proxy's pid: also report its CPU seconds per GB echoed.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Round-trip time of SIZE-byte messages over one connection (p50, p99 in µs).
    Latency {
        #[command(flatten)]
        to: To,
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// The proxy's pid: also report its CPU microseconds per round trip (what a proxy
        /// that polls instead of sleeping pays for its latency).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Round trips per second with CONNS connections, one small message in flight each.
    Messages {
        #[command(flatten)]
        to: To,
        #[arg(long, default_value_t = 50)]
        conns: usize,
        #[arg(long, default_value_t = 32)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Connections per second: open, handshake, one echo, close; CONCURRENCY at a time.
    Connections {
        #[command(flatten)]
        to: To,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Memory per idle session of process PID (and its children) with SESSIONS sessions open.
    Idle {
        #[command(flatten)]
        to: To,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
    },
    /// A stream of messages (a file, or random data) echoed through a proxy with
    /// permessage-deflate offered or not: wire bytes against payload, MB/s, proxy CPU per GB.
    Replay(replay::ReplayArgs),
    /// The reliability soak: sessions in a rolling mix with faults, for --minutes; exits
    /// non-zero if a well-behaved session lost data or the proxy kept descriptors.
    Soak(soak::SoakArgs),
}

/// Where to measure.
#[derive(Args, Clone)]
struct To {
    /// A WebSocket proxy: ws://HOST:PORT/
    #[arg(long, conflicts_with = "tcp")]
    url: Option<String>,
    /// Raw TCP instead: the echo target (direct) or a TCP relay.
    #[arg(long)]
    tcp: Option<String>,
    /// Speak the base64 subprotocol (text frames) instead of binary.
    #[arg(long)]
    base64: bool,
    /// Over HTTP/2: each session an extended CONNECT stream (RFC 8441), STREAMS of them on
    /// each cleartext HTTP/2 connection.
    #[arg(long, value_name = "STREAMS", requires = "url", value_parser = clap::value_parser!(u32).range(1..))]
    h2: Option<u32>,
    /// Offer permessage-deflate in the handshake, as browsers do (for `idle`: the memory of
    /// sessions that negotiated it; the other figures' clients cannot inflate, see `replay`).
    #[arg(long, requires = "url", conflicts_with = "h2")]
    deflate: bool,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A name for the output.
    #[arg(long, default_value = "")]
    label: String,
}

type Ws = tokio_tungstenite::WebSocketStream<http2::Io>;

/// One client connection of either kind.
enum Conn {
    Ws { ws: Box<Ws>, base64: bool },
    Tcp(TcpStream),
}

impl Conn {
    async fn open(to: &To) -> anyhow::Result<Conn> {
        match (&to.url, &to.tcp) {
            (Some(url), _) => {
                let mut request = url.as_str().into_client_request()?;
                let protocol = if to.base64 { "base64" } else { "binary" };
                let uri = request.uri().clone();
                let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
                    bail!("{url}: give ws://HOST:PORT/");
                };
                let authority = format!("{host}:{port}");
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let ws = match to.h2 {
                    Some(per_conn) => {
                        let io = http2::open(&authority, path, protocol, per_conn as usize).await?;
                        let role = tokio_tungstenite::tungstenite::protocol::Role::Client;
                        tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await
                    }
                    None => {
                        request
                            .headers_mut()
                            .insert("Sec-WebSocket-Protocol", protocol.parse()?);
                        if to.deflate {
                            request.headers_mut().insert(
                                "Sec-WebSocket-Extensions",
                                "permessage-deflate; client_max_window_bits".parse()?,
                            );
                        }
                        let s = TcpStream::connect(&authority)
                            .await
                            .with_context(|| format!("connecting {url}"))?;
                        s.set_nodelay(true)?;
                        tokio_tungstenite::client_async(request, http2::Io::Tcp(s))
                            .await
                            .with_context(|| format!("connecting {url}"))?
                            .0
                    }
                };
                Ok(Conn::Ws {
                    ws: Box::new(ws),
                    base64: to.base64,
                })
            }
            (None, Some(addr)) => {
                let s = TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connecting {addr}"))?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
            (None, None) => bail!("give --url or --tcp"),
        }
    }

    async fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Ws { ws, base64: false } => {
                ws.send(Message::Binary(data.to_vec().into())).await?
            }
            Conn::Ws { ws, base64: true } => {
                let text = base64::engine::general_purpose::STANDARD.encode(data);
                ws.send(Message::Text(text.into())).await?
            }
            Conn::Tcp(s) => s.write_all(data).await?,
        }
        Ok(())
    }

    /// Reads until `n` bytes have come back; returns how many arrived (at least `n`).
    async fn recv(&mut self, n: usize, buf: &mut [u8]) -> anyhow::Result<usize> {
        let mut got = 0;
        while got < n {
            got += match self {
                Conn::Ws { ws, .. } => match ws.next().await {
                    Some(Ok(Message::Binary(b))) => b.len(),
                    Some(Ok(Message::Text(t))) => base64::engine::general_purpose::STANDARD
                        .decode(t.as_str())
                        .context("base64 reply")?
                        .len(),
                    Some(Ok(Message::Close(c))) => bail!("closed by the proxy: {c:?}"),
                    Some(Ok(_)) => 0,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("connection ended"),
                },
                Conn::Tcp(s) => match s.read(buf).await? {
                    0 => bail!("connection ended"),
                    k => k,
                },
            };
        }
        Ok(got)
    }

    async fn close(self) {
        match self {
            Conn::Ws { mut ws, .. } => {
                let _ = ws.as_mut().close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            }
            Conn::Tcp(mut s) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn print(figure: &str, to: &To, fields: serde_json::Value) {
    let mut object = serde_json::json!({
        "figure": figure,
        "label": to.label,
        "base64": to.base64,
        "transport": if to.h2.is_some() { "h2" } else { "http1" },
        "deflate_offered": to.deflate,
    });
    if let (Some(o), Some(per_conn)) = (object.as_object_mut(), to.h2) {
        o.insert("streams_per_conn".into(), per_conn.into());
    }
    if let (Some(o), Some(f)) = (object.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    println!("{object}");
}

/// utime + stime of `pid` and of its reaped children (socat forks one per connection), in
/// seconds.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..15)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / 100.0)
}

/// Resident memory of PID and every process under it, as proportional set size: a page
/// shared by forked processes (socat, websockify) counts once, split among them, and a
/// single process's private memory counts as its RSS does.
fn memory_kib(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for p in process_tree(pid)? {
        // A child may have exited since it was listed.
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    anyhow::ensure!(total > 0, "no memory figures for process {pid}");
    Ok(total)
}

/// PID and its descendants.
fn process_tree(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(p) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The fields after the command (which may hold spaces) are: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    Ok(tree)
}

async fn echo(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (mut s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn token_api(port: u16, target: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", listener.local_addr()?.port());
    let answer = format!(
        r#"{{"host": "{}", "port": {}}}"#,
        target.ip(),
        target.port()
    );
    loop {
        let (s, _) = listener.accept().await?;
        let answer = answer.clone();
        tokio::spawn(async move {
            let _ = token_answer(s, &answer).await;
        });
    }
}

/// One request of the token API: the answer, or for a `hang` token nothing until the client
/// goes away.
async fn token_answer(mut s: tokio::net::TcpStream, answer: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let token = line
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/token/"))
        .unwrap_or("");
    if token.starts_with("hang") {
        // Accepted and never answered: read until the client gives up.
        while s.read(&mut buf).await? > 0 {}
        return Ok(());
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    s.write_all(response.as_bytes()).await?;
    s.shutdown().await
}

/// One run: CONNS connections, each with a writer sending continuously and a reader
/// counting echoes at the same time (a sequential send/receive of 16 MiB would deadlock with
/// every buffer on the way full). Returns the bytes echoed before the deadline.
async fn throughput_once(to: &To, conns: usize, size: usize, seconds: f64) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let conn = Conn::open(to).await?;
        tasks.push(tokio::spawn(async move {
            let data = vec![0x5au8; size];
            let counted = AtomicU64::new(0);
            match conn {
                Conn::Ws { ws, base64 } => {
                    let (mut sink, mut stream) = (*ws).split();
                    let message = if base64 {
                        Message::Text(
                            base64::engine::general_purpose::STANDARD
                                .encode(&data)
                                .into(),
                        )
                    } else {
                        Message::Binary(data.clone().into())
                    };
                    let writer = async {
                        while tokio::time::Instant::now() < deadline {
                            if sink.send(message.clone()).await.is_err() {
                                break;
                            }
                        }
                    };
                    let reader = async {
                        while let Some(Ok(m)) = stream.next().await {
                            let n = match m {
                                Message::Binary(b) => b.len(),
                                Message::Text(t) => t.len() / 4 * 3,
                                _ => 0,
                            };
                            counted.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    };
                    until(deadline, writer, reader).await
                }
                Conn::Tcp(s) => {
                    let (mut r, mut w) = s.into_split();
                    let writer = async {
                        while tokio::time::Instant::now() < deadline {
                            if w.write_all(&data).await.is_err() {
                                break;
                            }
                        }
                    };
                    let reader = async {
                        let mut buf = vec![0u8; 256 * 1024];
                        while let Ok(k) = r.read(&mut buf).await {
                            if k == 0 {
                                break;
                            }
                            counted.fetch_add(k as u64, Ordering::Relaxed);
                        }
                    };
                    until(deadline, writer, reader).await
                }
            }
            anyhow::Ok(counted.load(Ordering::Relaxed))
        }));
    }
    sum(tasks).await
}

/// The sum of what the tasks counted; the first error ends the figure.
async fn sum(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>) -> anyhow::Result<u64> {
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// Runs `writer` and `reader` together until `deadline` (or until both end).
async fn until(
    deadline: tokio::time::Instant,
    writer: impl std::future::Future<Output = ()>,
    reader: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {}
        _ = async { tokio::join!(writer, reader) } => {}
    }
}

async fn run(figure: Figure) -> anyhow::Result<()> {
    match figure {
        Figure::Echo { port } => echo(port).await,
        Figure::TokenApi { port, target } => token_api(port, target).await,
        Figure::Relay {
            port,
            to,
            ws,
            tokio,
            h2,
        } => {
            let run: fn(u16, std::net::SocketAddr) -> anyhow::Result<()> = match (ws, tokio, h2) {
                (false, false, _) => relay::run,
                (true, false, false) => wsfloor::run,
                (false, true, _) => tokiorelay::run,
                (true, true, false) => tokiows::run,
                (true, _, true) => h2floor::run,
            };
            // The tokio floors build current-thread runtimes of their own, which cannot
            // start on a thread of this one's.
            std::thread::spawn(move || run(port, to))
                .join()
                .map_err(|_| anyhow::anyhow!("the relay's thread panicked"))?
        }
        Figure::Soak(args) => soak::run(args).await,
        Figure::Replay(args) => replay::replay(args).await,
        Figure::Throughput {
            to,
            conns,
            size,
            seconds,
            pid,
        } => {
            let mut rates = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..to.repeat {
                let cpu_before = pid.map(cpu_seconds).transpose()?;
                let started = Instant::now();
                let bytes = throughput_once(&to, conns, size, seconds).await?;
                let elapsed = started.elapsed().as_secs_f64();
                if pid.is_some() {
                    // Forked relays (socat) are counted once they exit and are reaped.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                rates.push(bytes as f64 / elapsed / 1e6);
                if let (Some(pid), Some(before)) = (pid, cpu_before) {
                    let used = cpu_seconds(pid)? - before;
                    cpu.push(used / (bytes as f64 / 1e9));
                }
            }
            let cpu = (!cpu.is_empty()).then(|| median(cpu));
            print(
                "throughput",
                &to,
                serde_json::json!({"conns": conns, "size": size, "mb_per_s": median(rates),
                                   "cpu_s_per_gb": cpu}),
            );
            Ok(())
        }
        Figure::Latency {
            to,
            size,
            seconds,
            pid,
        } => {
            let mut p50s = Vec::new();
            let mut p99s = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..to.repeat {
                let cpu_before = pid.map(cpu_seconds).transpose()?;
                let mut conn = Conn::open(&to).await?;
                let data = vec![0x33u8; size];
                let mut buf = vec![0u8; 64 * 1024];
                let mut rtts = Vec::new();
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                while Instant::now() < end {
                    let t = Instant::now();
                    conn.send(&data).await?;
                    conn.recv(size, &mut buf).await?;
                    rtts.push(t.elapsed().as_secs_f64() * 1e6);
                }
                conn.close().await;
                if let (Some(pid), Some(before)) = (pid, cpu_before) {
                    // Forked relays (socat) are counted once they exit and are reaped.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let used = cpu_seconds(pid)? - before;
                    cpu.push(used * 1e6 / rtts.len() as f64);
                }
                rtts.sort_by(f64::total_cmp);
                p50s.push(rtts[rtts.len() / 2]);
                p99s.push(rtts[rtts.len() * 99 / 100]);
            }
            print(
                "latency",
                &to,
                serde_json::json!({"size": size, "p50_us": median(p50s), "p99_us": median(p99s),
                                   "cpu_us_per_round_trip": (!cpu.is_empty()).then(|| median(cpu))}),
            );
            Ok(())
        }
        Figure::Messages {
            to,
            conns,
            size,
            seconds,
        } => {
            let mut rates = Vec::new();
            for _ in 0..to.repeat {
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let mut tasks = Vec::new();
                for _ in 0..conns {
                    let mut conn = Conn::open(&to).await?;
                    tasks.push(tokio::spawn(async move {
                        let data = vec![0x44u8; size];
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut n = 0u64;
                        while Instant::now() < end {
                            conn.send(&data).await?;
                            conn.recv(size, &mut buf).await?;
                            n += 1;
                        }
                        conn.close().await;
                        anyhow::Ok(n)
                    }));
                }
                rates.push(sum(tasks).await? as f64 / seconds);
            }
            print(
                "messages",
                &to,
                serde_json::json!({"conns": conns, "size": size, "per_s": median(rates)}),
            );
            Ok(())
        }
        Figure::Connections {
            to,
            concurrency,
            seconds,
        } => {
            let mut rates = Vec::new();
            for _ in 0..to.repeat {
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let mut tasks = Vec::new();
                for _ in 0..concurrency {
                    let to = to.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        let mut buf = vec![0u8; 1024];
                        while Instant::now() < end {
                            let mut conn = Conn::open(&to).await?;
                            conn.send(b"hello").await?;
                            conn.recv(5, &mut buf).await?;
                            conn.close().await;
                            n += 1;
                        }
                        anyhow::Ok(n)
                    }));
                }
                rates.push(sum(tasks).await? as f64 / seconds);
            }
            print(
                "connections",
                &to,
                serde_json::json!({"concurrency": concurrency, "per_s": median(rates)}),
            );
            Ok(())
        }
        Figure::Idle { to, pid, sessions } => {
            let before = memory_kib(pid)?;
            let mut open = Vec::with_capacity(sessions);
            for _ in 0..sessions {
                open.push(Conn::open(&to).await?);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = memory_kib(pid)?;
            let per = (after.saturating_sub(before)) as f64 / sessions as f64;
            print(
                "idle",
                &to,
                serde_json::json!({"sessions": sessions, "rss_before_kib": before,
                                   "rss_after_kib": after, "kib_per_session": per}),
            );
            drop(open);
            Ok(())
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of sessions need thousands of descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.figure))
}
