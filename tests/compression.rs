//! permessage-deflate (RFC 7692, issue 24) through the real binary: an independent client
//! (Python's `websockets`, installed from PyPI on first use) echoes messages from 1 byte to 16
//! MiB under every parameter combination, the wire carries far fewer bytes than the payload
//! for compressible data, and the client's compressed messages are held to the limits (a
//! decompression bomb gets 1009 and costs the proxy at most the limit; bad data gets 1007).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::AsyncWriteExt;

const WEBSOCKETS_VERSION: &str = "15.0.1";

/// The venv's python with `websockets`, installed once per target directory.
fn python() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        python_venv(
            "websockets-venv",
            &[&format!("websockets=={WEBSOCKETS_VERSION}")],
        )
        .join("bin/python")
    })
    .clone()
}

/// Runs the Python client against `url` with `cases`; one JSON result per case.
fn websockets_client(url: &str, cases: serde_json::Value) -> Vec<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compression/client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(url)
        .arg(cases.to_string())
        .output()
        .expect("running the websockets client");
    assert!(
        out.status.success(),
        "the websockets client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every parameter combination the client can offer, each message echoed byte for byte,
/// compressible and random, in binary and base64; with and without context takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_echoes_under_every_parameter_combination() {
    let sizes = serde_json::json!([1, 100, 256, 4096, 70_000, 1 << 20]);
    let mut cases = vec![
        serde_json::json!({"sizes": [1, 100, 300, 65_536, 1 << 20, 16 << 20]}),
        serde_json::json!({"subprotocols": ["base64"], "sizes": sizes}),
    ];
    for server_bits in [None, Some(8), Some(9), Some(12), Some(15)] {
        for client_bits in [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(9),
        ] {
            for (server_nct, client_nct) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut case = serde_json::json!({
                    "server_no_context_takeover": server_nct,
                    "client_no_context_takeover": client_nct,
                    "sizes": [5, 2000, 70_000],
                });
                if let Some(bits) = server_bits {
                    case["server_max_window_bits"] = bits.into();
                }
                if !client_bits.is_null() {
                    case["client_max_window_bits"] = client_bits.clone();
                }
                cases.push(case);
            }
        }
    }
    let count = cases.len();
    let cases = serde_json::Value::Array(cases);
    for extra in [&[][..], &["--compression-context"][..]] {
        let mut args = vec!["--compression"];
        args.extend_from_slice(extra);
        let proxy = echo_proxy_with(&args).await;
        let (url, cases) = (proxy.url(), cases.clone());
        let results = tokio::task::spawn_blocking(move || websockets_client(&url, cases))
            .await
            .unwrap();
        assert_eq!(results.len(), count, "{results:?}");
        for r in &results {
            assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
            assert_eq!(
                r["negotiated"],
                serde_json::json!(["PerMessageDeflate"]),
                "{r}"
            );
            let answer = r["extensions"].as_str().unwrap();
            let case = &r["case"];
            // What the client asked for is answered; without context takeover we ask both.
            if case["server_no_context_takeover"] == true || extra.is_empty() {
                assert!(answer.contains("server_no_context_takeover"), "{r}");
            }
            if extra.is_empty() {
                assert!(answer.contains("client_no_context_takeover"), "{r}");
            }
            if let Some(bits) = case["server_max_window_bits"].as_u64() {
                assert!(
                    answer.contains(&format!("server_max_window_bits={bits}")),
                    "{r}"
                );
            }
        }
        let log = proxy.log();
        assert!(log.contains("compression=\"deflate"), "{log}");
    }
}

/// A compressible message crosses the client's connection in far fewer bytes than its
/// payload, RSV1 set, and the metrics count both sizes.
#[tokio::test]
async fn compressible_messages_cross_the_wire_compressed() {
    let proxy = echo_proxy_with(&["--compression", "--metrics-listen", "127.0.0.1:0"]).await;
    let (mut raw, answer) = Raw::upgrade(
        proxy.port,
        &["Sec-WebSocket-Extensions: permessage-deflate"],
    )
    .await;
    assert_eq!(
        answer.header("sec-websocket-extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let line = b"2026-12-03 12:00:00 INFO a log line a terminal would show, again and again\n";
    let message: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    raw.send_binary(&message).await;
    let mut inflated = Vec::new();
    let mut wire = 0;
    while inflated.len() < message.len() {
        let frame = raw.read_frame().await.expect("the echo");
        assert_eq!(frame.opcode, 2, "{frame:?}");
        wire += frame.payload.len();
        if frame.rsv1 {
            inflated.extend(inflate(&frame.payload));
        } else {
            inflated.extend(&frame.payload);
        }
    }
    assert!(inflated == message, "the echo differs");
    assert!(
        wire * 20 < message.len(),
        "{wire} bytes on the wire for 1 MiB"
    );
    // A message the client compressed itself is inflated before the target sees it.
    raw.send_compressed(&message[..100_000], None).await;
    assert!(raw_echo(&mut raw, 100_000).await == message[..100_000]);
    let metrics = metrics_port(&proxy);
    let series = http_get(metrics, "/metrics").1;
    let value = |name: &str| -> f64 {
        series
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {series}"))
    };
    assert_eq!(value("websockify_compression_sessions_total"), 1.0);
    let payload = value("websockify_compression_payload_bytes_total{direction=\"to_client\"}");
    let sent = value("websockify_compression_wire_bytes_total{direction=\"to_client\"}");
    assert!(
        payload >= 1_100_000.0 && sent * 10.0 < payload,
        "{payload} {sent}"
    );
    let from = value("websockify_compression_wire_bytes_total{direction=\"from_client\"}");
    assert!(from > 1_000_000.0, "{from}");
}

/// Raw-deflates `data` as one message (sync flush, tail removed), as a client would.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(9), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

trait Compressed {
    /// Sends `data` deflated as one message (RSV1), or `wire` as the payload as it is.
    async fn send_compressed(&mut self, data: &[u8], wire: Option<&[u8]>);
}

impl Compressed for Raw {
    async fn send_compressed(&mut self, data: &[u8], wire: Option<&[u8]>) {
        let payload = wire.map_or_else(|| deflate(data), <[u8]>::to_vec);
        let mut frame = encode_frame(true, 2, &payload, Some([9, 8, 7, 6]));
        frame[0] |= 0x40;
        self.stream.write_all(&frame).await.unwrap();
    }
}

/// The echo of `len` bytes, inflating what comes compressed.
async fn raw_echo(raw: &mut Raw, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let frame = raw.read_frame().await.expect("the echo");
        assert_eq!(frame.opcode, 2, "{frame:?}");
        if frame.rsv1 {
            out.extend(inflate(&frame.payload));
        } else {
            out.extend(&frame.payload);
        }
    }
    out
}

/// A small message that inflates far beyond --max-message-size is closed with 1009 once the
/// limit is passed, and the proxy's memory does not grow by more than the limit; invalid
/// compressed data is 1007.
#[tokio::test]
async fn a_decompression_bomb_gets_1009_and_costs_at_most_the_limit() {
    let proxy = echo_proxy_with(&["--compression", "--max-message-size", "1MiB"]).await;
    let offer = ["Sec-WebSocket-Extensions: permessage-deflate"];
    // 1 KiB of deflate that would be a megabyte: over the limit.
    let bomb = deflate(&vec![0u8; 1 << 20 | 1 << 10]);
    assert!(bomb.len() <= 1100, "{}", bomb.len());
    let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
    raw.send_compressed(&[], Some(&bomb)).await;
    assert_eq!(raw.read_close().await.0, 1009);
    // 100 KiB that would be 100 MiB, five at once: the proxy holds at most a limit for each.
    let rss = rss_kib(proxy.child.id());
    let big = deflate(&vec![b'a'; 100 << 20]);
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
        raw.send_compressed(&[], Some(&big)).await;
        clients.push(raw);
    }
    for raw in &mut clients {
        assert_eq!(raw.read_close().await.0, 1009);
    }
    let grown = rss_kib(proxy.child.id()).saturating_sub(rss);
    assert!(grown < 5 * 1024 + 4096, "RSS grew by {grown} KiB");
    // Garbage after RSV1 is not deflate: 1007.
    let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
    raw.send_compressed(&[], Some(&[0xff; 64])).await;
    assert_eq!(raw.read_close().await.0, 1007);
    // The proxy goes on.
    let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
    raw.send_compressed(b"still here, still here, still here", None)
        .await;
    assert_eq!(
        raw_echo(&mut raw, 34).await,
        b"still here, still here, still here"
    );
}

/// RSV1 is only for a compressed message's first frame of a session that negotiated it:
/// elsewhere it is 1002; and an offer is never a reason to refuse a handshake.
#[tokio::test]
async fn rsv1_where_it_does_not_belong_is_a_protocol_error() {
    // Without --compression: the offer is ignored and RSV1 is an error.
    let plain = echo_proxy_with(&[]).await;
    let offer = ["Sec-WebSocket-Extensions: permessage-deflate"];
    let (mut raw, answer) = Raw::upgrade(plain.port, &offer).await;
    assert_eq!(answer.header("sec-websocket-extensions"), None);
    raw.send_compressed(b"hello", None).await;
    assert_eq!(raw.read_close().await.0, 1002);

    let proxy = echo_proxy_with(&["--compression"]).await;
    // On a continuation frame.
    let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
    raw.send_frame(false, 2, b"first", true).await;
    let mut frame = encode_frame(true, 0, b"second", Some([1, 2, 3, 4]));
    frame[0] |= 0x40;
    raw.stream.write_all(&frame).await.unwrap();
    assert_eq!(raw.read_close().await.0, 1002);
    // On a ping.
    let (mut raw, _) = Raw::upgrade(proxy.port, &offer).await;
    let mut frame = encode_frame(true, 9, b"", Some([1, 2, 3, 4]));
    frame[0] |= 0x40;
    raw.stream.write_all(&frame).await.unwrap();
    assert_eq!(raw.read_close().await.0, 1002);
    // Offers it cannot honour leave the extension off; the handshake succeeds.
    for bad in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; unknown_param",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ] {
        let header = format!("Sec-WebSocket-Extensions: {bad}");
        let (mut raw, answer) = Raw::upgrade(proxy.port, &[&header]).await;
        assert_eq!(answer.header("sec-websocket-extensions"), None, "{bad}");
        raw.send_binary(b"plain").await;
        assert_eq!(raw.read_data(5).await, b"plain");
    }
    // The first acceptable one of several is taken.
    let header = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99, \
                  permessage-deflate; server_max_window_bits=10";
    let (_, answer) = Raw::upgrade(proxy.port, &[header]).await;
    assert_eq!(
        answer.header("sec-websocket-extensions").as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        )
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
