//! Shared test harness: start the real `websockify` binary on port 0, learn its port from its
//! log, run targets (echo, banner, closing) on loopback, and speak WebSocket either through
//! tokio-tungstenite or byte by byte for the odd cases.
#![allow(dead_code)]

pub mod pki;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_websockify")
}

/// A `websockify` command with no `WEBSOCKIFY_*` variables inherited from the caller.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    clean_env(&mut cmd);
    cmd
}

/// Keeps the caller's `WEBSOCKIFY_*` and `RUST_LOG` variables from a command that runs the
/// proxy (directly or through a wrapper such as `sh -c '... exec "$0" "$@"'`).
pub fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WEBSOCKIFY_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
}

/// Runs `websockify args` to its end, asserts its exit status, and returns its standard error.
pub fn fails(args: &[&str], code: i32) -> String {
    let out = command(args)
        .stdin(Stdio::null())
        .output()
        .expect("run websockify");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "websockify {args:?}: {err}");
    err
}

/// A running proxy; killed when dropped.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts the proxy with `args` (which should listen on port 0) and waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::start_cmd(command(args))
    }

    pub fn start_cmd(mut cmd: Command) -> Proxy {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start websockify");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = port_tx.as_ref()
                    && let Some(rest) = line.split("listening on ").nth(1)
                {
                    // Text lines end with the address; JSON lines close the string after it.
                    let port = rest
                        .split('"')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .unwrap_or(0);
                    let _ = tx.send(port);
                    port_tx = None;
                }
                let mut log = log2.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("proxy did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Proxy { child, port, log }
    }

    /// Starts a proxy whose log does not go to stderr (`--log-file`), on a known `port`, and
    /// waits until the port accepts connections.
    pub fn start_on_port(mut cmd: Command, port: u16) -> Proxy {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start websockify");
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > end || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("proxy did not start listening on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy {
            child,
            port,
            log: Arc::default(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`, or panics with the log after `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if Instant::now() > end {
                panic!("log never showed {needle:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > end {
                panic!("proxy still running after {within:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The log's lines that are JSON objects (`--log-format json`), in order.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure every one of `binaries` is on the PATH, installing Debian's `package` with
/// apt-get when one is missing (CI runs as root); fails loudly, never skips, when it cannot.
pub fn ensure_installed(binaries: &[&str], package: &str) {
    let found = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if binaries.iter().all(|b| found(b)) {
        return;
    }
    // One apt-get at a time: tests run in parallel and apt holds a lock.
    static APT: Mutex<()> = Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|p| p.into_inner());
    if binaries.iter().all(|b| found(b)) {
        return;
    }
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
            ),
        ])
        .status()
        .expect("running apt-get");
    assert!(
        status.success() && binaries.iter().all(|b| found(b)),
        "this test needs {binaries:?} and could not install them with apt-get; \
         install the Debian package {package}"
    );
}

/// Builds workspace `packages` (shared libraries: plugins, the rebind shim) into a target
/// directory of the tests' own, once per test binary and package, and returns the directory
/// holding the `.so` files. Cargo's own lock orders concurrent builds.
pub fn build_libraries(packages: &[&str]) -> std::path::PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let target_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lib-build");
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !built.iter().any(|b| b == p))
        .collect();
    if !missing.is_empty() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet"]);
        for p in &missing {
            cmd.args(["-p", p]);
        }
        let status = cmd
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("run cargo to build the shared libraries");
        assert!(status.success(), "building {missing:?} failed");
        built.extend(missing.iter().map(|p| p.to_string()));
    }
    target_dir.join("debug")
}

/// A plain HTTP/1.1 GET on loopback: the status and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read answer");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// A proxy on a free port with `extra` flags in front, relaying to a fresh echo target.
pub async fn echo_proxy_with(extra: &[&str]) -> Proxy {
    let echo = echo_target().await;
    let target = format!("127.0.0.1:{echo}");
    let mut args = extra.to_vec();
    args.extend(["127.0.0.1:0", target.as_str()]);
    Proxy::start(&args)
}

/// A WebSocket client of the tests (tokio-tungstenite over plain TCP).
pub type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Sends `data` as binary messages of at most `chunk` bytes and collects the echo, which may
/// come back in other message sizes (the proxy relays a byte stream).
pub async fn echo_through(ws: &mut Client, data: &[u8], chunk: usize) -> Vec<u8> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    for part in data.chunks(chunk.max(1)) {
        ws.send(Message::Binary(part.to_vec().into()))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// A TCP target on loopback running `serve` for every connection.
pub async fn target<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    port
}

/// An echo target.
pub async fn echo_target() -> u16 {
    target(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// A port on loopback where nothing listens.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A hand-written WebSocket client for exact bytes.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// A frame as read from the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: a permessage-deflate message's first frame.
    pub rsv1: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's (code, reason).
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            code,
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A standard RFC 6455 upgrade head with `extra` header lines.
pub fn upgrade_request(extra: &[&str]) -> String {
    let mut head = format!(
        "GET /websockify HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The parts of an HTTP answer the tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl Raw {
    pub async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `head` and reads the answer's head (the bytes after it stay buffered).
    pub async fn request(&mut self, head: &str) -> Answer {
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.read_answer().await
    }

    pub async fn read_answer(&mut self) -> Answer {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await > 0, "connection closed before an answer");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Answer { status, head }
    }

    /// Upgrades with `extra` headers and asserts the 101.
    pub async fn upgrade(port: u16, extra: &[&str]) -> (Raw, Answer) {
        let mut raw = Raw::connect(port).await;
        let answer = raw.request(&upgrade_request(extra)).await;
        assert_eq!(answer.status, 101, "{}", answer.head);
        (raw, answer)
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The body after an answer's head, up to the connection's end.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Sends a frame, masked as a client must unless `masked` is false.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let bytes = encode_frame(
            fin,
            opcode,
            payload,
            masked.then_some([0x12, 0x34, 0x56, 0x78]),
        );
        self.stream.write_all(&bytes).await.unwrap();
    }

    pub async fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(true, 2, payload, true).await;
    }

    pub async fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, 8, &payload, true).await;
    }

    /// Reads one frame; `None` if the connection ended first.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// Reads data frames until `len` payload bytes arrived; returns them.
    pub async fn read_data(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < len {
            let frame = self
                .read_frame()
                .await
                .expect("connection ended while reading data");
            match frame.opcode {
                0..=2 => out.extend_from_slice(&frame.payload),
                9 | 10 => {}
                _ => panic!("unexpected frame {frame:?}"),
            }
        }
        out
    }

    /// Reads frames until a close frame; returns its (code, reason).
    pub async fn read_close(&mut self) -> (u16, String) {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("connection ended without a close frame");
            if frame.opcode == 8 {
                return frame.close();
            }
        }
    }

    /// True if the proxy closes the TCP connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv1 = buf[0] & 0x40 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        Frame {
            fin,
            rsv1,
            opcode,
            masked,
            payload,
        },
        at + len,
    ))
}

/// Random bytes for echo checks.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngExt;
    let mut v = vec![0u8; len];
    rand::rng().fill(&mut v[..]);
    v
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of a process, from /proc; with their targets (`socket:[..]`,
/// `anon_inode:[eventpoll]`, paths) for messages that name what is left over.
pub fn open_fds(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let link = std::fs::read_link(entry.path()).ok();
        Some(format!(
            "{} -> {}",
            entry.file_name().to_string_lossy(),
            link.map(|l| l.display().to_string()).unwrap_or_default()
        ))
    })
    .collect()
}

/// Ends a TCP connection with a reset (RST) instead of a FIN: SO_LINGER 0, then close.
pub fn abort(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

/// A request to the operations port (`--metrics-listen`), with a bearer `token` if given:
/// the status, the head and the body.
pub fn ops_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read answer");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (status, head.to_string(), body.to_string())
}

/// The port of a `--metrics-listen 127.0.0.1:0` listener, from the proxy's start-up log.
pub fn metrics_port(proxy: &Proxy) -> u16 {
    let log = proxy.wait_log("/readyz on ", Duration::from_secs(10));
    log.split("/readyz on ")
        .nth(1)
        .and_then(|rest| rest.split(['"', '\n']).next())
        .and_then(|addr| addr.trim().rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics port in\n{log}"))
}

/// The value of `series` (its name and labels, exactly as printed) in a Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until the process at the other end of `stream` has read every byte written on it so
/// far, or panics after ten seconds with what the kernel showed. Lets a test prove that bytes
/// it wrote apart were also *read* apart (a split across TCP segments that the peer saw as
/// such), instead of sleeping and hoping.
///
/// Both ends must be on this host (loopback) in this network namespace. Reads the kernel's
/// socket tables, `/proc/net/tcp` and `/proc/net/tcp6`, in two steps: first this end's row
/// (local = our address, remote = the peer's) until its `tx_queue` is 0, i.e. the peer's
/// kernel acknowledged every byte, so they are in its receive queue or already read; then the
/// peer's row (local = the peer's address, remote = ours) until its `rx_queue` is 0, i.e. the
/// peer process took them out. Without the first step a read of the table before loopback
/// delivered the bytes would show an empty receive queue and pass too early.
pub async fn wait_until_read_by_peer(stream: &TcpStream) {
    if let Err(e) = try_wait_until_read_by_peer(stream, Duration::from_secs(10)).await {
        panic!("{e}");
    }
}

/// [`wait_until_read_by_peer`] with a deadline of the caller's, failing with a description.
pub async fn try_wait_until_read_by_peer(
    stream: &TcpStream,
    within: Duration,
) -> Result<(), String> {
    let canonical =
        |a: std::net::SocketAddr| std::net::SocketAddr::new(a.ip().to_canonical(), a.port());
    let ours = canonical(stream.local_addr().expect("local address"));
    let theirs = canonical(stream.peer_addr().expect("peer address"));
    let end = Instant::now() + within;
    let mut acked = false;
    loop {
        let rows = tcp_table_rows();
        let row = |local, remote| rows.iter().find(|r| r.local == local && r.remote == remote);
        let (ours_row, theirs_row) = (row(ours, theirs), row(theirs, ours));
        // The peer's row is looked at only in a reading of the table made after the one that
        // showed every byte acknowledged.
        if acked && theirs_row.is_some_and(|r| r.rx_queue == 0) {
            return Ok(());
        }
        acked = ours_row.is_some_and(|r| r.tx_queue == 0);
        if Instant::now() > end {
            return Err(format!(
                "{theirs}, the peer of {ours}, did not read what was written within {within:?}: \
                 our row {ours_row:?} (tx_queue: bytes not yet acknowledged), \
                 its row {theirs_row:?} (rx_queue: bytes received, not read)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One row of `/proc/net/tcp{,6}`: the two ends, with IPv4-mapped IPv6 addresses as IPv4.
#[derive(Debug)]
pub struct TcpRow {
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    /// Bytes sent and not yet acknowledged (established sockets).
    pub tx_queue: u64,
    /// Bytes received and not yet read by the process (established sockets).
    pub rx_queue: u64,
}

/// Every row of `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn tcp_table_rows() -> Vec<TcpRow> {
    let mut rows = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {file}: {e}"),
        };
        // "sl local_address rem_address st tx_queue:rx_queue ...", after a header line.
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = (|| {
                let (tx, rx) = fields.get(4)?.split_once(':')?;
                Some(TcpRow {
                    local: proc_net_addr(fields.get(1)?)?,
                    remote: proc_net_addr(fields.get(2)?)?,
                    tx_queue: u64::from_str_radix(tx, 16).ok()?,
                    rx_queue: u64::from_str_radix(rx, 16).ok()?,
                })
            })();
            rows.push(parsed.unwrap_or_else(|| panic!("unexpected line in {file}: {line:?}")));
        }
    }
    rows
}

/// An address as `/proc/net/tcp{,6}` prints it: `ADDR:PORT` in hex, the address as 32-bit
/// words each printed in host byte order (one for IPv4, four for IPv6), the port as a number.
fn proc_net_addr(field: &str) -> Option<std::net::SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?).to_canonical(),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// A Python venv under the target directory named `name`, with `packages` (pip requirement
/// specs) installed once: made on first use and remade when the list changes. Fails loudly
/// when python3's venv or PyPI is missing, naming what to install.
pub fn python_venv(name: &str, packages: &[&str]) -> std::path::PathBuf {
    let venv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let marker = venv.join(format!("installed-{}", packages.join("-")));
    if marker.exists() && venv.join("bin/python").exists() {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is required for this test");
    assert!(
        status.success(),
        "python3 -m venv failed: install python3-venv"
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("running pip");
    assert!(
        status.success(),
        "pip install {packages:?} failed (is PyPI reachable?)"
    );
    std::fs::write(&marker, "").unwrap();
    venv
}
