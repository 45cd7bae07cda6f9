//! Injected faults: clients that misbehave, spoken byte by byte over raw TCP (a WebSocket
//! library would refuse to send most of them). Each is one short-lived connection; the proxy
//! must end it alone, and where it owes an answer (a close code, a status) the answer is
//! checked. The slow reader is the exception: a proper session whose echo must all arrive.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use super::pattern::{self, Rng};
use super::session::{self, Plan, Sizes};
use super::stats::Stats;

/// How long the proxy has to answer a fault that it must answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// A request head this large is over the proxy's 16 KiB limit (431).
const OVERSIZE_HEAD: usize = 20 << 10;
/// What an oversize frame header announces: far over the 64 MiB message limit (1009).
const OVERSIZE_FRAME: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Upgrade, send a message and half of the next, then reset the connection (SO_LINGER 0).
    Rst,
    /// Upgrade, send a message and half of the next, never read, fall silent for 10-60 s,
    /// then go away without a close frame.
    Vanish,
    /// Upgrade, then a frame RFC 6455 forbids: answered with close 1002.
    Garbage,
    /// A request head over 16 KiB: answered with 431.
    OversizeHead,
    /// A frame header announcing 1 TiB: answered with close 1009 at once.
    OversizeFrame,
    /// A checksummed session that sends 4 MiB at once and reads the echo late and slowly
    /// (backpressure all the way to the target), pausing less than the proxy's
    /// `--send-timeout` (a longer pause is a stalled reader); every byte must still arrive.
    SlowReader,
    /// A request for the `--web-file` with 2,000 overlapping ranges: answered `200` with the
    /// file once, never a multi-gigabyte `206` (security review, issue 26).
    RangeFlood,
    /// A request for the `--web-file` whose answer is never read: the proxy must give up on it
    /// after its `--send-timeout`, so what arrives is short of the file (issue 26).
    StalledWebReader,
    /// Upgrade, send megabytes for the echo to flood back, never read: the proxy must drop
    /// the session after its `--send-timeout`, so the connection ends short of the echo
    /// (issue 22).
    StalledReader,
    /// An upgrade whose token the token API never answers: `502` when the plugin's own
    /// HTTP timeout (4 s) reports the failure, `504` when the proxy's 5 s call timeout comes
    /// first, `503` at once when the plugin has its limit of calls in flight; never a
    /// session, and the other sessions' tokens go on being answered (issue 22).
    SlowPlugin,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Rst,
        Fault::Vanish,
        Fault::Garbage,
        Fault::OversizeHead,
        Fault::OversizeFrame,
        Fault::SlowReader,
        Fault::RangeFlood,
        Fault::StalledWebReader,
        Fault::StalledReader,
        Fault::SlowPlugin,
    ];

    /// Whether the fault asks the proxy's web directory for a file.
    pub fn needs_web(self) -> bool {
        matches!(self, Fault::RangeFlood | Fault::StalledWebReader)
    }

    /// Whether the fault needs a token the proxy's token API never answers.
    pub fn needs_hanging_token(self) -> bool {
        self == Fault::SlowPlugin
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Rst => "rst",
            Fault::Vanish => "vanish",
            Fault::Garbage => "garbage",
            Fault::OversizeHead => "oversize_head",
            Fault::OversizeFrame => "oversize_frame",
            Fault::SlowReader => "slow_reader",
            Fault::RangeFlood => "range_flood",
            Fault::StalledWebReader => "stalled_web_reader",
            Fault::StalledReader => "stalled_reader",
            Fault::SlowPlugin => "slow_plugin",
        }
    }
}

/// Where the proxy listens, from a `ws://HOST:PORT/PATH` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// HOST:PORT to connect to.
    pub addr: String,
    pub host: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("ws://")
            .context("the soak speaks plain ws:// only")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("no host in {url}");
        }
        let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Endpoint {
            url: url.to_owned(),
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The path with `token` as its `token` query parameter, replacing one it has.
    pub fn path_with_token(&self, token: &str) -> String {
        let (path, query) = self.path.split_once('?').unwrap_or((&self.path, ""));
        let mut params: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("token="))
            .map(str::to_owned)
            .collect();
        params.push(format!("token={token}"));
        format!("{path}?{}", params.join("&"))
    }
}

/// What the faults beyond the WebSocket ones need, when the proxy is set up for them.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The web faults' file.
    pub web: Option<WebFile>,
    /// The proxy's --send-timeout, which the stalled readers wait out.
    pub send_timeout: Duration,
    /// A prefix of tokens the proxy's token API never answers.
    pub hanging_token: Option<String>,
}

/// What the web faults ask for: a file of the proxy's `--web` directory, and how long the
/// proxy waits for a client that takes nothing (its `--send-timeout`).
#[derive(Debug, Clone)]
pub struct WebFile {
    pub path: String,
    pub send_timeout: Duration,
}

/// Runs one fault and records how it ended.
pub async fn run(
    fault: Fault,
    endpoint: &Endpoint,
    extras: &Extras,
    mut rng: Rng,
    stats: &Stats,
    stop: &watch::Receiver<bool>,
) {
    let web = extras.web.as_ref();
    stats.fault_started(fault.name());
    let outcome = match fault {
        Fault::Rst => rst(endpoint, &mut rng).await,
        Fault::Vanish => vanish(endpoint, &mut rng, stop).await,
        Fault::Garbage => garbage(endpoint, &mut rng).await,
        Fault::OversizeHead => oversize_head(endpoint).await,
        Fault::OversizeFrame => oversize_frame(endpoint, &mut rng).await,
        Fault::SlowReader => {
            return slow_reader(endpoint, extras.send_timeout, rng, stats, stop).await;
        }
        Fault::RangeFlood | Fault::StalledWebReader => match web {
            Some(web) if fault == Fault::RangeFlood => range_flood(endpoint, web).await,
            Some(web) => stalled_web_reader(endpoint, web, stop).await,
            None => Err(anyhow::anyhow!("no --web-file to ask for")),
        },
        Fault::StalledReader => stalled_reader(endpoint, extras.send_timeout, &mut rng, stop).await,
        Fault::SlowPlugin => match &extras.hanging_token {
            Some(prefix) => slow_plugin(endpoint, prefix, &mut rng).await,
            None => Err(anyhow::anyhow!("no --hanging-token to send")),
        },
    };
    stats.fault_ended(fault.name(), outcome.map_err(|e| format!("{e:#}")));
}

async fn rst(endpoint: &Endpoint, rng: &mut Rng) -> anyhow::Result<()> {
    let mut s = upgrade(endpoint).await?;
    s.write_all(&message_and_a_half(rng)).await?;
    s.set_zero_linger()?;
    drop(s);
    Ok(())
}

async fn vanish(
    endpoint: &Endpoint,
    rng: &mut Rng,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut s = upgrade(endpoint).await?;
    s.write_all(&message_and_a_half(rng)).await?;
    let silent = Duration::from_secs(rng.between(10, 60));
    let mut stop = stop.clone();
    tokio::select! {
        () = sleep(silent) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    drop(s);
    Ok(())
}

async fn garbage(endpoint: &Endpoint, rng: &mut Rng) -> anyhow::Result<()> {
    let mut s = upgrade(endpoint).await?;
    let mask = (rng.next_u64() as u32).to_be_bytes();
    let (what, bytes) = match rng.between(0, 3) {
        0 => ("reserved opcode 0x3", frame(0x83, b"junk", Some(mask))),
        1 => ("RSV1 set", frame(0xC2, b"junk", Some(mask))),
        2 => ("an unmasked frame", frame(0x82, b"junk", None)),
        _ => ("a fragmented ping", frame(0x09, b"junk", Some(mask))),
    };
    s.write_all(&bytes).await?;
    expect_close(&mut s, 1002).await.context(what)
}

async fn oversize_head(endpoint: &Endpoint) -> anyhow::Result<()> {
    let mut s = connect(endpoint).await?;
    let pad = "a".repeat(OVERSIZE_HEAD);
    let head = format!("{}X-Pad: {pad}\r\n\r\n", request_lines(endpoint));
    s.write_all(head.as_bytes()).await?;
    // Our side is done: the proxy's discarding read after its answer ends at once.
    s.shutdown().await?;
    let status = timeout(ANSWER_TIMEOUT, read_status(&mut s))
        .await
        .context("no answer")??;
    if status != 431 {
        bail!("answered {status}, expected 431");
    }
    Ok(())
}

async fn oversize_frame(endpoint: &Endpoint, rng: &mut Rng) -> anyhow::Result<()> {
    let mut s = upgrade(endpoint).await?;
    let mask = (rng.next_u64() as u32).to_be_bytes();
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&OVERSIZE_FRAME.to_be_bytes());
    header.extend_from_slice(&mask);
    s.write_all(&header).await?;
    expect_close(&mut s, 1009).await
}

async fn slow_reader(
    endpoint: &Endpoint,
    send_timeout: Duration,
    mut rng: Rng,
    stats: &Stats,
    stop: &watch::Receiver<bool>,
) {
    let plan = Plan {
        seed: rng.next_u64(),
        sizes: Sizes::Fixed {
            size: 256 << 10,
            count: 16,
        },
        think: Duration::ZERO,
        until: Instant::now() + Duration::from_secs(24 * 3600),
        // Late, but well within the proxy's patience: from a fifth of it to half of it. A
        // pause a second short of it was lost to scheduling on a loaded 2-core machine
        // (wsload half a second late, and the proxy rightly dropped the reader).
        read_pause: {
            let patience = send_timeout.as_millis().max(2000);
            let pause = rng.between(
                u64::try_from(patience / 5).unwrap_or(400),
                u64::try_from(patience / 2).unwrap_or(1000),
            );
            Duration::from_millis(pause)
        },
        read_delay: Duration::from_millis(20),
    };
    let result = session::run(&endpoint.url, plan, rng, stats, stop).await;
    let outcome = match result {
        Ok(()) => Ok(()),
        Err(f) => {
            // Losing a slow reader's data is as bad as losing anyone's.
            if matches!(f, session::Failure::Mismatch(_) | session::Failure::Lost(_)) {
                stats.error(f.kind(), &format!("slow reader: {}", f.detail()), true);
            }
            Err(format!("{}: {}", f.kind(), f.detail()))
        }
    };
    stats.fault_ended(Fault::SlowReader.name(), outcome);
}

/// Sends a GET for `web`'s file with `extra` header lines; returns the stream after the head,
/// the status and the announced length.
async fn get_file(
    endpoint: &Endpoint,
    web: &WebFile,
    extra: &str,
) -> anyhow::Result<(TcpStream, u16, u64)> {
    let mut s = connect(endpoint).await?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n",
        web.path, endpoint.host
    );
    s.write_all(head.as_bytes()).await?;
    let head = timeout(ANSWER_TIMEOUT, read_head(&mut s))
        .await
        .context("no answer")??;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .with_context(|| format!("no Content-Length in {head:?}"))?;
    Ok((s, status, length))
}

async fn range_flood(endpoint: &Endpoint, web: &WebFile) -> anyhow::Result<()> {
    let ranges = vec!["0-"; 2000].join(",");
    let (mut s, status, length) =
        get_file(endpoint, web, &format!("Range: bytes={ranges}\r\n")).await?;
    if status != 200 {
        bail!("answered {status} (Content-Length {length}), expected 200 with the file once");
    }
    let mut body = 0u64;
    let mut chunk = vec![0u8; 64 << 10];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            body += n as u64;
            if body > length {
                bail!("more than the {length} bytes announced");
            }
        }
    };
    timeout(ANSWER_TIMEOUT, read)
        .await
        .context("reading the file")??;
    Ok(())
}

async fn stalled_web_reader(
    endpoint: &Endpoint,
    web: &WebFile,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut s, status, length) = get_file(endpoint, web, "").await?;
    if status != 200 {
        bail!("answered {status}, expected 200");
    }
    // Take nothing for twice the proxy's patience, then see how much it had sent.
    let mut stop = stop.clone();
    tokio::select! {
        () = sleep(web.send_timeout * 2 + Duration::from_secs(1)) => {}
        _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
    }
    let got = drain(&mut s).await?;
    if got >= length {
        bail!("all {length} bytes arrived: the proxy waited past its --send-timeout");
    }
    Ok(())
}

/// Reads what is left until the proxy ends the connection, within [`ANSWER_TIMEOUT`]: how
/// many bytes came. A proxy that still holds the connection (it was waiting for the client,
/// not giving up on it) sends on and never ends it, which is the failure.
async fn drain(s: &mut TcpStream) -> anyhow::Result<u64> {
    let mut got = 0u64;
    let mut chunk = vec![0u8; 64 << 10];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n as u64,
            }
        }
    };
    timeout(ANSWER_TIMEOUT, read)
        .await
        .context("the proxy never gave up on a client that took nothing")?;
    Ok(got)
}

/// What the stalled reader sends: more than every buffer between it and the echo holds
/// (socket buffers grow to a few MiB on loopback), so the proxy's writes to it stall.
const STALLED_SEND: usize = 48 << 20;
/// The pieces it sends that in, as 1 MiB messages.
const STALLED_MESSAGE: usize = 1 << 20;

async fn stalled_reader(
    endpoint: &Endpoint,
    send_timeout: Duration,
    rng: &mut Rng,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut s = upgrade(endpoint).await?;
    let mut payload = vec![0u8; STALLED_MESSAGE];
    pattern::fill(rng.next_u64(), 0, &mut payload);
    let mut sent = 0usize;
    // Send until the proxy stops taking (backpressure from the stalled echo) or drops us; a
    // write that makes no progress for the proxy's patience and more is where it stops.
    let patience = send_timeout + Duration::from_secs(3);
    let mut stop = stop.clone();
    while sent < STALLED_SEND {
        let mask = (rng.next_u64() as u32).to_be_bytes();
        let message = frame(0x82, &payload, Some(mask));
        tokio::select! {
            written = timeout(patience, s.write_all(&message)) => match written {
                Ok(Ok(())) => sent += message.len(),
                // Dropped by the proxy while we still sent: what is wanted.
                Ok(Err(_)) => break,
                Err(_) => break,
            },
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        }
    }
    // Whatever the writes did, take nothing for the proxy's patience more, then see.
    tokio::select! {
        () = sleep(patience) => {}
        _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
    }
    let got = drain(&mut s).await?;
    if got as usize >= sent {
        bail!("the whole echo of {sent} bytes arrived: the proxy waited past its --send-timeout");
    }
    Ok(())
}

async fn slow_plugin(endpoint: &Endpoint, prefix: &str, rng: &mut Rng) -> anyhow::Result<()> {
    let mut s = connect(endpoint).await?;
    let path = endpoint.path_with_token(&format!("{prefix}-{}", rng.next_u64()));
    let request = request_lines_for(endpoint, &path);
    s.write_all(format!("{request}\r\n").as_bytes()).await?;
    let status = timeout(ANSWER_TIMEOUT, read_status(&mut s))
        .await
        .context("no answer")??;
    match status {
        // The plugin gave up on the API, its call timed out, or it had its limit of calls
        // in flight.
        502..=504 => Ok(()),
        other => bail!("answered {other}, expected 502, 504 or 503"),
    }
}

/// Reads a response head byte by byte (so nothing after it is consumed).
async fn read_head(s: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            bail!("response head over 16 KiB");
        }
        let mut byte = [0u8];
        if s.read(&mut byte).await? == 0 {
            bail!("connection ended in the response head");
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

async fn connect(endpoint: &Endpoint) -> anyhow::Result<TcpStream> {
    let s = timeout(session::CONNECT_TIMEOUT, TcpStream::connect(&endpoint.addr))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connecting {}", endpoint.addr))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn request_lines(endpoint: &Endpoint) -> String {
    request_lines_for(endpoint, &endpoint.path)
}

/// The upgrade request's lines for `path` on `endpoint`'s host.
fn request_lines_for(endpoint: &Endpoint, path: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n",
        path, endpoint.host
    )
}

/// Connects and completes the opening handshake; the 101 must be all the proxy sent so far
/// (it sends nothing else until the client does).
async fn upgrade(endpoint: &Endpoint) -> anyhow::Result<TcpStream> {
    let mut s = connect(endpoint).await?;
    s.write_all(format!("{}\r\n", request_lines(endpoint)).as_bytes())
        .await?;
    let status = timeout(session::CONNECT_TIMEOUT, read_status(&mut s))
        .await
        .context("no handshake answer")??;
    if status != 101 {
        bail!("handshake answered {status}");
    }
    Ok(s)
}

/// Reads a response head byte by byte (so nothing after it is consumed) and returns its status.
async fn read_status(s: &mut TcpStream) -> anyhow::Result<u16> {
    let text = read_head(s).await?;
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {text:?}"))
}

/// A client frame: `b0` (FIN, RSV, opcode) as given, the payload masked when `mask` is given.
fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len() as u64;
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
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

/// A whole binary message of up to 256 KiB, then a frame of 64 KiB cut off after 1000 bytes.
fn message_and_a_half(rng: &mut Rng) -> Vec<u8> {
    let mask = (rng.next_u64() as u32).to_be_bytes();
    let mut payload = vec![0u8; rng.between(1, 256 << 10) as usize];
    pattern::fill(rng.next_u64(), 0, &mut payload);
    let mut out = frame(0x82, &payload, Some(mask));
    let half = frame(0x82, &[0x55; 64 << 10], Some(mask));
    out.extend_from_slice(&half[..1000]);
    out
}

/// Reads server frames (data the proxy relayed may come first) until a close frame, which
/// must carry `code`.
async fn expect_close(s: &mut TcpStream, code: u16) -> anyhow::Result<()> {
    let read = async {
        let mut buf = Vec::new();
        loop {
            while let Some((opcode, payload, used)) = server_frame(&buf)? {
                if opcode == 0x8 {
                    let got = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return match got {
                        Some(c) if c == code => Ok(()),
                        other => Err(anyhow::anyhow!("closed with {other:?}, expected {code}")),
                    };
                }
                buf.drain(..used);
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.context("reading for the close")?;
            if n == 0 {
                bail!("connection ended without a close frame (expected {code})");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(ANSWER_TIMEOUT, read)
        .await
        .with_context(|| format!("no close frame within {}s", ANSWER_TIMEOUT.as_secs()))?
}

/// One unmasked frame at the start of `buf`: opcode, payload, bytes used; `None` if incomplete.
fn server_frame(buf: &[u8]) -> anyhow::Result<Option<(u8, Vec<u8>, usize)>> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        bail!("a masked frame from the server");
    }
    let (len, header): (u64, usize) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).context("frame length")?;
    let Some(payload) = buf.get(header..header.saturating_add(len)) else {
        return Ok(None);
    };
    Ok(Some((b0 & 0x0F, payload.to_vec(), header + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("ws://127.0.0.1:6080/").unwrap();
        assert_eq!((e.addr.as_str(), e.path.as_str()), ("127.0.0.1:6080", "/"));
        let e = Endpoint::parse("ws://localhost:1/a?b=c").unwrap();
        assert_eq!(
            (e.addr.as_str(), e.path.as_str()),
            ("localhost:1", "/a?b=c")
        );
        let e = Endpoint::parse("ws://[::1]:9").unwrap();
        assert_eq!((e.addr.as_str(), e.path.as_str()), ("[::1]:9", "/"));
        assert_eq!(Endpoint::parse("ws://h").unwrap().addr, "h:80");
        assert!(Endpoint::parse("wss://h:1/").is_err());
        assert!(Endpoint::parse("ws:///").is_err());
        let e = Endpoint::parse("ws://h:1/websockify?token=soak&x=1").unwrap();
        assert_eq!(e.path_with_token("hang-7"), "/websockify?x=1&token=hang-7");
        let e = Endpoint::parse("ws://h:1/").unwrap();
        assert_eq!(e.path_with_token("t"), "/?token=t");
    }

    #[test]
    fn frames_round_trip_through_the_server_parser() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let bytes = frame(0x88, &payload, None);
            let (op, got, used) = server_frame(&bytes).unwrap().unwrap();
            assert_eq!((op, got.len(), used), (0x8, len, bytes.len()));
            assert_eq!(server_frame(&bytes[..bytes.len() - 1]).unwrap(), None);
        }
        assert!(server_frame(&frame(0x82, b"x", Some([1, 2, 3, 4]))).is_err());
    }

    #[test]
    fn masking() {
        let f = frame(0x82, b"abcd", Some([1, 2, 3, 4]));
        assert_eq!(
            f,
            [
                0x82,
                0x84,
                1,
                2,
                3,
                4,
                b'a' ^ 1,
                b'b' ^ 2,
                b'c' ^ 3,
                b'd' ^ 4
            ]
        );
    }
}
