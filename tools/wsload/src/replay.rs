//! `wsload replay`: a stream of messages through a proxy and back from the echo target, with
//! permessage-deflate offered as a browser offers it (or not), for the compression figures:
//! the bytes the echo took on the client's connection against its payload, the throughput,
//! and the proxy's CPU per GB.
//!
//! The client is written here on a socket (tungstenite has no permessage-deflate): its own
//! messages go uncompressed, as the input of a VNC or terminal session is a trickle, and the
//! echo, which stands for what the target sends (screen updates, a terminal's output), comes
//! back compressed by the proxy and is inflated here and checked byte for byte (a running
//! hash of what was sent against one of what came back).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Args)]
pub struct ReplayArgs {
    /// The proxy: ws://HOST:PORT/
    #[arg(long)]
    url: String,
    /// The messages: a file of records, each a 4-byte big-endian length and that many bytes
    /// (benches/compression.sh makes them).
    #[arg(long, required_unless_present = "random")]
    stream: Option<PathBuf>,
    /// Random messages of SIZE bytes instead (incompressible data).
    #[arg(long, value_name = "SIZE", conflicts_with = "stream")]
    random: Option<usize>,
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`, as browsers do).
    #[arg(long)]
    deflate: bool,
    /// Send each message only once the echo of the one before is back, so that the target's
    /// answers keep the stream's message sizes (a terminal's pty reads); without it the
    /// messages are sent back to back and the echo comes in the target's reads.
    #[arg(long)]
    paced: bool,
    /// How long each repetition sends (round after round of the stream).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The proxy's pid: also report its CPU seconds per GB of payload echoed.
    #[arg(long)]
    pid: Option<u32>,
    /// A name for the output.
    #[arg(long, default_value = "")]
    label: String,
}

/// What one repetition measured.
struct Run {
    payload: u64,
    wire: u64,
    seconds: f64,
    cpu: Option<f64>,
    negotiated: bool,
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let messages: Vec<Vec<u8>> = match (&args.stream, args.random) {
        (Some(path), _) => read_stream(path)?,
        (None, Some(size)) => (0..16).map(|_| random(size)).collect(),
        (None, None) => bail!("give --stream FILE or --random SIZE"),
    };
    if messages.is_empty() {
        bail!("the stream has no messages");
    }
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        runs.push(once(&args, &messages).await?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mb_per_s = median(
        runs.iter()
            .map(|r| r.payload as f64 / r.seconds / 1e6)
            .collect(),
    );
    let wire_ratio = median(
        runs.iter()
            .map(|r| r.wire as f64 / r.payload.max(1) as f64)
            .collect(),
    );
    let cpu = runs
        .iter()
        .map(|r| r.cpu.map(|c| c / (r.payload as f64 / 1e9)))
        .collect::<Option<Vec<f64>>>()
        .map(median);
    let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let object = serde_json::json!({
        "figure": "replay",
        "label": args.label,
        "stream": args.stream.as_ref().map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("random {}", args.random.unwrap_or(0))),
        "messages_in_stream": messages.len(),
        "mean_message_bytes": mean,
        "offered": args.deflate,
        "paced": args.paced,
        "negotiated": runs.iter().all(|r| r.negotiated),
        "payload_bytes": runs.iter().map(|r| r.payload).sum::<u64>() / runs.len() as u64,
        "wire_ratio": wire_ratio,
        "mb_per_s": mb_per_s,
        "cpu_s_per_gb": cpu,
    });
    println!("{object}");
    Ok(())
}

fn read_stream(path: &PathBuf) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut messages = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let Some(m) = data.get(at + 4..at + 4 + len) else {
            bail!("{}: a record runs past the end", path.display());
        };
        messages.push(m.to_vec());
        at += 4 + len;
    }
    Ok(messages)
}

fn random(size: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ size as u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// FNV-1a over a byte stream, so that the echo is checked without keeping it.
#[derive(Clone, Copy)]
struct Hash(u64);

impl Hash {
    fn new() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

async fn once(args: &ReplayArgs, messages: &[Vec<u8>]) -> anyhow::Result<Run> {
    let (authority, path) = split_url(&args.url)?;
    let mut s = TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting {}", args.url))?;
    s.set_nodelay(true)?;
    let offer = if args.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n{offer}\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1 << 20);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the proxy closed during the handshake");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") {
        bail!("not upgraded: {head}");
    }
    let extension = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions:"))
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let negotiated = extension.starts_with("permessage-deflate");
    // Without it, the window is kept between messages.
    let reset_each_message = extension.contains("server_no_context_takeover");
    buf.drain(..head_end);

    let (mut r, mut w) = s.into_split();
    let cpu_before = args.pid.map(crate::cpu_seconds).transpose()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    // Paced: how many bytes have come back, for the writer to wait on.
    let (got_tx, got_rx) = tokio::sync::watch::channel(0u64);
    let paced = args.paced;
    let writer = async move {
        let mut got_rx = got_rx;
        let mut sent = 0u64;
        let mut hash = Hash::new();
        let mask = [0x11, 0x22, 0x33, 0x44];
        'rounds: loop {
            for m in messages {
                if Instant::now() >= deadline {
                    break 'rounds;
                }
                let mut frame = Vec::with_capacity(m.len() + 14);
                frame.push(0x82);
                match m.len() {
                    n if n < 126 => frame.push(0x80 | n as u8),
                    n if n <= 0xffff => {
                        frame.push(0x80 | 126);
                        frame.extend_from_slice(&(n as u16).to_be_bytes());
                    }
                    n => {
                        frame.push(0x80 | 127);
                        frame.extend_from_slice(&(n as u64).to_be_bytes());
                    }
                }
                frame.extend_from_slice(&mask);
                frame.extend(m.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                w.write_all(&frame).await?;
                hash.add(m);
                sent += m.len() as u64;
                if paced {
                    got_rx.wait_for(|&got| got >= sent).await?;
                }
            }
        }
        anyhow::Ok((sent, hash, w))
    };
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(None::<u64>);
    let reader = async move {
        let mut got = 0u64;
        let mut wire = 0u64;
        let mut hash = Hash::new();
        let mut inflater = Decompress::new(false);
        let mut out = Vec::new();
        loop {
            if let Some(total) = *sent_rx.borrow() {
                if got >= total {
                    break;
                }
            }
            // A whole frame in the buffer?
            if let Some((rsv1, opcode, header, len)) = frame_header(&buf) {
                if buf.len() >= header + len {
                    let payload = &buf[header..header + len];
                    wire += (header + len) as u64;
                    match opcode {
                        2 if rsv1 => {
                            if reset_each_message {
                                inflater.reset(false);
                            }
                            let mut tail = payload.to_vec();
                            tail.extend_from_slice(&[0, 0, 0xff, 0xff]);
                            let mut input = &tail[..];
                            out.clear();
                            out.reserve(input.len() * 8 + 4096);
                            loop {
                                let before = inflater.total_in();
                                inflater
                                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                                    .context("inflating the echo")?;
                                input = &input[(inflater.total_in() - before) as usize..];
                                if input.is_empty() && out.len() < out.capacity() {
                                    break;
                                }
                                out.reserve(out.capacity().max(4096));
                            }
                            hash.add(&out);
                            got += out.len() as u64;
                            let _ = got_tx.send(got);
                        }
                        2 => {
                            hash.add(payload);
                            got += len as u64;
                            let _ = got_tx.send(got);
                        }
                        8 => bail!("the proxy closed: {:?}", String::from_utf8_lossy(payload)),
                        _ => {}
                    }
                    buf.drain(..header + len);
                    continue;
                }
            }
            let mut chunk = vec![0u8; 256 * 1024];
            let n = tokio::select! {
                n = r.read(&mut chunk) => n?,
                _ = sent_rx.changed() => continue,
            };
            if n == 0 {
                bail!("the proxy closed the connection");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        anyhow::Ok((got, wire, hash))
    };
    let writer = async {
        let result = writer.await;
        let _ = sent_tx.send(Some(result.as_ref().map_or(0, |(n, _, _)| *n)));
        result
    };
    let (written, read) =
        tokio::time::timeout(Duration::from_secs_f64(args.seconds + 60.0), async {
            tokio::join!(writer, reader)
        })
        .await
        .context("the echo did not come back within a minute")?;
    let (sent, sent_hash, mut w) = written?;
    let (got, wire, got_hash) = read?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = match (args.pid, cpu_before) {
        (Some(pid), Some(before)) => Some(crate::cpu_seconds(pid)? - before),
        _ => None,
    };
    if got != sent || got_hash.0 != sent_hash.0 {
        bail!("the echo differs from what was sent ({got} of {sent} bytes)");
    }
    let _ = w.shutdown().await;
    Ok(Run {
        payload: got,
        wire,
        seconds,
        cpu,
        negotiated,
    })
}

/// A server frame's (RSV1, opcode, header length, payload length), once the header is in.
fn frame_header(buf: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let [b0, b1, ..] = *buf else {
        return None;
    };
    let (len, header) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    Some((b0 & 0x40 != 0, b0 & 0x0f, header, len))
}

fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("{url}: give ws://HOST:PORT/"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    Ok((authority.to_string(), path.to_string()))
}
