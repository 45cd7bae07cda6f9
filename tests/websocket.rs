//! The WebSocket side through the real binary: handshakes, subprotocols, relaying, closes.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn echo_proxy() -> Proxy {
    let echo = echo_target().await;
    Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")])
}

#[tokio::test]
async fn binary_echo_with_a_real_client() {
    let proxy = echo_proxy().await;
    let mut request = proxy.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "binary");
    let data = random_bytes(100_000);
    ws.send(Message::Binary(data.clone().into())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data);
    ws.close(None).await.unwrap();
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    let line = log.lines().find(|l| l.contains("session ended")).unwrap();
    assert!(line.contains("from_client=100000"), "{line}");
    assert!(line.contains("to_client=100000"), "{line}");
    assert!(line.contains("close_code=1005"), "{line}");
    assert!(line.contains("client=127.0.0.1:"), "{line}");
    assert!(line.contains("duration_ms="), "{line}");
    assert!(line.contains("target=127.0.0.1:"), "{line}");
}

#[tokio::test]
async fn no_subprotocol_means_binary_without_the_header() {
    let proxy = echo_proxy().await;
    let (mut raw, answer) = Raw::upgrade(proxy.port, &[]).await;
    assert_eq!(answer.header("Sec-WebSocket-Protocol"), None);
    assert_eq!(
        answer.header("Sec-WebSocket-Accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    raw.send_binary(b"plain").await;
    let frame = raw.read_frame().await.unwrap();
    assert_eq!(
        (frame.opcode, frame.masked, &frame.payload[..]),
        (2, false, &b"plain"[..])
    );
}

#[tokio::test]
async fn base64_subprotocol_uses_text_frames_both_ways() {
    let proxy = echo_proxy().await;
    let (mut raw, answer) = Raw::upgrade(proxy.port, &["Sec-WebSocket-Protocol: base64"]).await;
    assert_eq!(
        answer.header("Sec-WebSocket-Protocol").as_deref(),
        Some("base64")
    );
    // "\x00\xffhi" in base64.
    raw.send_frame(true, 1, b"AP9oaQ==", true).await;
    let frame = raw.read_frame().await.unwrap();
    assert_eq!(frame.opcode, 1);
    assert_eq!(frame.payload, b"AP9oaQ==");
    // Invalid base64 closes with 1007.
    raw.send_frame(true, 1, b"not base64!", true).await;
    assert_eq!(raw.read_close().await.0, 1007);
}

#[tokio::test]
async fn subprotocol_choice_trims_and_prefers_binary() {
    let proxy = echo_proxy().await;
    for (offer, chosen) in [
        ("base64, binary", "binary"),
        ("binary,base64", "binary"),
        (" base64 ", "base64"),
        ("foo, base64", "base64"),
    ] {
        let header = format!("Sec-WebSocket-Protocol: {offer}");
        let (_, answer) = Raw::upgrade(proxy.port, &[&header]).await;
        assert_eq!(
            answer.header("Sec-WebSocket-Protocol").as_deref(),
            Some(chosen),
            "{offer}"
        );
    }
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw
        .request(&upgrade_request(&["Sec-WebSocket-Protocol: foo, bar"]))
        .await;
    assert_eq!(answer.status, 400);
    let body = String::from_utf8(raw.read_to_end().await).unwrap();
    assert!(body.contains("no supported subprotocol"), "{body}");
}

#[tokio::test]
async fn hybi_drafts_7_and_8_are_accepted() {
    let proxy = echo_proxy().await;
    for version in ["7", "8"] {
        let head = upgrade_request(&[]).replace(
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Origin: http://x"),
        );
        let mut raw = Raw::connect(proxy.port).await;
        assert_eq!(raw.request(&head).await.status, 101, "version {version}");
        raw.send_binary(b"draft").await;
        assert_eq!(raw.read_data(5).await, b"draft");
    }
}

#[tokio::test]
async fn unsupported_versions_get_426_with_the_list() {
    let proxy = echo_proxy().await;
    for replacement in ["Sec-WebSocket-Version: 99\r\n", ""] {
        let head = upgrade_request(&[]).replace("Sec-WebSocket-Version: 13\r\n", replacement);
        let mut raw = Raw::connect(proxy.port).await;
        let answer = raw.request(&head).await;
        assert_eq!(answer.status, 426, "{replacement:?}");
        assert_eq!(
            answer.header("Sec-WebSocket-Version").as_deref(),
            Some("13, 8, 7")
        );
    }
}

#[tokio::test]
async fn bad_handshakes_get_400_with_a_reason() {
    let proxy = echo_proxy().await;
    let base = upgrade_request(&[]);
    let cases = [
        ("Upgrade: websocket\r\n", "", "Upgrade"),
        ("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", "Upgrade"),
        ("Connection: Upgrade\r\n", "", "Connection"),
        (
            "Connection: Upgrade\r\n",
            "Connection: close\r\n",
            "Connection",
        ),
        (
            &format!("Sec-WebSocket-Key: {KEY}\r\n"),
            "",
            "Sec-WebSocket-Key",
        ),
        (
            &format!("Sec-WebSocket-Key: {KEY}\r\n"),
            "Sec-WebSocket-Key: c2hvcnQ=\r\n",
            "Sec-WebSocket-Key",
        ),
    ];
    for (from, to, named) in cases {
        let head = base.replace(from, to);
        let mut raw = Raw::connect(proxy.port).await;
        let answer = raw.request(&head).await;
        assert_eq!(answer.status, 400, "{head}");
        let body = String::from_utf8(raw.read_to_end().await).unwrap();
        assert!(body.contains(named), "{body}");
        assert_eq!(body.lines().count(), 1, "one-line reason: {body:?}");
    }
    // An upgrade by another method.
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw.request(&base.replace("GET ", "POST ")).await;
    assert_eq!(answer.status, 405);
}

#[tokio::test]
async fn plain_http_without_web_gets_405() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw.request("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(answer.status, 405);
    assert!(raw.read_to_end().await.ends_with(b"\n"));
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request("HEAD /x HTTP/1.0\r\n\r\n").await.status, 405);
}

#[tokio::test]
async fn malformed_and_oversized_heads() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request("\x01\x02garbage\r\n\r\n").await.status, 400);

    let mut raw = Raw::connect(proxy.port).await;
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    raw.stream.write_all(big.as_bytes()).await.ok();
    assert_eq!(raw.read_answer().await.status, 431);
}

#[tokio::test]
async fn slow_heads_are_cut_off() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let started = std::time::Instant::now();
    raw.stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Trickle a byte a second; the proxy must give up at its 10 s head deadline.
    let answer = loop {
        tokio::select! {
            answer = raw.read_answer() => break answer,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                let _ = raw.stream.write_all(b"X").await;
            }
        }
    };
    assert_eq!(answer.status, 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[tokio::test]
async fn client_close_is_echoed_with_code_and_reason() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_close(4000, "bye now").await;
    assert_eq!(raw.read_close().await, (4000, "bye now".to_string()));
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains("close_code=4000"), "{log}");

    // A close without a body is answered with an empty close.
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_frame(true, 8, b"", true).await;
    let frame = raw.read_frame().await.unwrap();
    assert_eq!((frame.opcode, frame.payload.len()), (8, 0));
}

#[tokio::test]
async fn target_hangup_flushes_then_closes_1000() {
    // The target sends 300 KiB and hangs up at once: every byte must arrive before the close.
    let data = random_bytes(300 * 1024);
    let sent = data.clone();
    let port = target(move |mut s| {
        let sent = sent.clone();
        async move {
            s.write_all(&sent).await.unwrap();
        }
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let mut got = Vec::new();
    let close = loop {
        let frame = raw.read_frame().await.unwrap();
        match frame.opcode {
            2 => got.extend_from_slice(&frame.payload),
            8 => break frame.close(),
            _ => panic!("unexpected {frame:?}"),
        }
    };
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert_eq!(close, (1000, "Target closed".to_string()));
    raw.send_close(1000, "").await;
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    proxy.wait_log("session ended: target closed", Duration::from_secs(5));
}

#[tokio::test]
async fn unreachable_target_gets_101_then_1011() {
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{}", dead_port())]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    assert_eq!(
        raw.read_close().await,
        (1011, "Failed to connect to downstream server".to_string())
    );
    raw.send_close(1011, "").await;
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains("Connection refused"), "{log}");
}

#[tokio::test]
async fn unmasked_frame_closes_1002() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_frame(true, 2, b"naked", false).await;
    assert_eq!(raw.read_close().await.0, 1002);
    assert!(raw.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn text_frame_in_binary_session_closes_1003() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Sec-WebSocket-Protocol: binary"]).await;
    raw.send_frame(true, 1, b"text", true).await;
    assert_eq!(
        raw.read_close().await,
        (
            1003,
            "Unsupported: Text frames are not supported".to_string()
        )
    );
}

#[tokio::test]
async fn pings_are_answered_and_never_forwarded() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_frame(true, 9, b"are you there", true).await;
    raw.send_binary(b"data").await;
    let pong = raw.read_frame().await.unwrap();
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (10, &b"are you there"[..])
    );
    // The echo target returns only the data: the ping never reached it.
    let data = raw.read_frame().await.unwrap();
    assert_eq!((data.opcode, &data.payload[..]), (2, &b"data"[..]));
    raw.send_binary(b"!").await;
    assert_eq!(raw.read_frame().await.unwrap().payload, b"!");
}

#[tokio::test]
async fn heartbeat_pings_an_idle_client() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--heartbeat",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let frame = raw.read_frame().await.unwrap();
        assert_eq!((frame.opcode, frame.payload.len()), (9, 0));
        // A live client answers (RFC 6455 5.5.2); one that does not is tested below.
        raw.send_frame(true, 10, &frame.payload, true).await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Answered pings keep the session: the third comes too.
    assert_eq!(raw.read_frame().await.unwrap().opcode, 9);
}

/// A client that does not answer a ping by the next one is gone, whatever its connection
/// says: the session ends with 1001.
#[tokio::test]
async fn a_client_that_never_answers_a_ping_is_closed() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--heartbeat",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    assert_eq!(raw.read_frame().await.unwrap().opcode, 9);
    let (code, reason) = raw.read_close().await;
    assert_eq!((code, reason.as_str()), (1001, "Client not responding"));
    // Such a client does not answer our close either: the proxy would wait CLOSE_TIMEOUT (5 s)
    // for it before logging the session's end. Hanging up ends that wait at once, so the log
    // line below does not race the proxy's own timeout.
    drop(raw);
    proxy.wait_log("did not answer our last ping", Duration::from_secs(5));
}

#[tokio::test]
async fn fragmented_message_reaches_the_target_whole() {
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let port = target(move |mut s| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut got = vec![0u8; 12];
            s.read_exact(&mut got).await.unwrap();
            if let Some(tx) = tx {
                let _ = tx.send(got);
            }
        }
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_frame(false, 2, b"abcd", true).await;
    // A control frame may come between fragments.
    raw.send_frame(true, 9, b"", true).await;
    raw.send_frame(false, 0, b"efgh", true).await;
    raw.send_frame(true, 0, b"ijkl", true).await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"abcdefghijkl");
}

#[tokio::test]
async fn frame_with_64_bit_length() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let data = random_bytes(70_000);
    let frame = encode_frame(true, 2, &data, Some([1, 2, 3, 4]));
    assert_eq!(frame[1] & 0x7f, 127);
    raw.stream.write_all(&frame).await.unwrap();
    assert!(raw.read_data(data.len()).await == data);
}

#[tokio::test]
async fn target_that_speaks_first_reaches_a_silent_client() {
    let port = target(|mut s| async move {
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let mut sink = [0u8; 16];
        let _ = s.read(&mut sink).await;
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Sec-WebSocket-Protocol: binary"]).await;
    assert_eq!(raw.read_data(12).await, b"RFB 003.008\n");
}

#[tokio::test]
async fn bytes_sent_right_after_the_head_are_not_lost() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = upgrade_request(&[]).into_bytes();
    bytes.extend(encode_frame(true, 2, b"early", Some([9, 9, 9, 9])));
    raw.stream.write_all(&bytes).await.unwrap();
    assert_eq!(raw.read_answer().await.status, 101);
    assert_eq!(raw.read_data(5).await, b"early");
}

#[tokio::test]
async fn many_concurrent_clients_echo_their_own_data() {
    let proxy = echo_proxy().await;
    let url = proxy.url();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let data = random_bytes(64 * 1024);
            // Sent in four messages, to interleave with the other clients.
            let got = echo_through(&mut ws, &data, 16 * 1024).await;
            assert!(got == data, "a client got bytes that were not its own");
            ws.close(None).await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("client timed out")
            .unwrap();
    }
}

#[tokio::test]
async fn one_8_mib_message() {
    let proxy = echo_proxy().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(proxy.url()).await.unwrap();
    let data = random_bytes(8 << 20);
    ws.send(Message::Binary(data.clone().into())).await.unwrap();
    let mut got = Vec::with_capacity(data.len());
    while got.len() < data.len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got == data);
}

#[tokio::test]
async fn a_client_that_never_reads_costs_bounded_memory() {
    // The target floods; the client reads nothing. The proxy must stop reading the target
    // (backpressure) rather than buffer the flood.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let port = target(move |mut s| {
        let tx = tx.clone();
        async move {
            let chunk = vec![7u8; 64 * 1024];
            let mut sent = 0usize;
            while sent < 512 << 20 {
                match tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => break,
                }
            }
            let _ = tx.send(sent);
        }
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let before = rss_kib(proxy.child.id());
    let (raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let sent = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the target never blocked: nothing pushed back")
        .unwrap();
    let grew = rss_kib(proxy.child.id()).saturating_sub(before);
    // Socket buffers on both sides hold a few MiB; the proxy itself holds about one message.
    assert!(
        sent < 64 << 20,
        "the target wrote {sent} bytes before blocking"
    );
    assert!(grew < 16 * 1024, "proxy RSS grew by {grew} KiB");
    drop(raw);
}

#[tokio::test]
async fn sigterm_without_grace_closes_sessions_with_1001_and_exits_0() {
    let mut proxy = echo_proxy_with(&["--shutdown-grace", "0"]).await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"x").await;
    assert_eq!(raw.read_data(1).await, b"x");
    proxy.signal("TERM");
    assert_eq!(raw.read_close().await, (1001, "Going away".to_string()));
    raw.send_close(1001, "").await;
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn oversized_frame_is_refused_from_its_header() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    // Only the header of a 65 MiB frame: the proxy must answer without waiting for the payload.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(65u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.stream.write_all(&header).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), raw.read_close())
        .await
        .expect("no close within 5 s");
    assert_eq!(close.0, 1009);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_1007() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Sec-WebSocket-Protocol: base64"]).await;
    raw.send_frame(true, 1, b"\xff\xfe", true).await;
    assert_eq!(raw.read_close().await.0, 1007);
}

#[tokio::test]
async fn record_writes_one_file_per_session_and_never_stops_one() {
    let echo = echo_target().await;
    let dir = std::env::temp_dir().join(format!("websockify-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("rec");
    let proxy = Proxy::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    for n in 1..=2u8 {
        let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
        raw.send_binary(&[n; 3]).await;
        assert_eq!(raw.read_data(3).await, [n; 3]);
        raw.send_close(1000, "").await;
        raw.read_close().await;
    }
    for n in 1..=2 {
        let file = dir.join(format!("rec.{n}"));
        let end = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.ends_with("'EOF'];\n") {
                let escaped = format!("\\x0{n}").repeat(3);
                assert!(text.contains(&format!("}}{escaped}',")), "{text}");
                assert!(text.contains(&format!("{{{escaped}',")), "{text}");
                break;
            }
            assert!(std::time::Instant::now() < end, "{file:?}: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A recording that cannot be written is logged; the session goes on.
    let proxy = Proxy::start(&[
        "--record",
        "/nonexistent/dir/rec",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"still here").await;
    assert_eq!(raw.read_data(10).await, b"still here");
    // The log is read by another thread: wait for the line rather than race it.
    proxy.wait_log(
        "not recording to /nonexistent/dir/rec.1",
        Duration::from_secs(10),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn every_protocol_violation_gets_its_close_code() {
    let proxy = echo_proxy().await;
    /// What the client sends: masked frames as (fin, opcode, payload).
    type Frames<'a> = &'a [(bool, u8, &'a [u8])];
    let cases: &[(&str, Frames, u16)] = &[
        ("continuation without a message", &[(true, 0, b"x")], 1002),
        (
            "new message inside a fragmented one",
            &[(false, 2, b"a"), (true, 2, b"b")],
            1002,
        ),
        ("reserved opcode", &[(true, 3, b"x")], 1002),
        ("reserved bits", &[(true, 0x42, b"x")], 1002),
        ("fragmented ping", &[(false, 9, b"")], 1002),
        ("ping of 126 bytes", &[(true, 9, &[0u8; 126])], 1002),
        ("close of one byte", &[(true, 8, b"\x03")], 1002),
        ("close code 1005", &[(true, 8, b"\x03\xed")], 1002),
        ("close code 2999", &[(true, 8, b"\x0b\xb7")], 1002),
        (
            "close reason not UTF-8",
            &[(true, 8, b"\x03\xe8\xff")],
            1007,
        ),
    ];
    for (what, frames, code) in cases {
        let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
        for (fin, opcode, payload) in *frames {
            raw.send_frame(*fin, *opcode, payload, true).await;
        }
        let close = tokio::time::timeout(Duration::from_secs(5), raw.read_close())
            .await
            .unwrap_or_else(|_| panic!("{what}: no close within 5 s"));
        assert_eq!(close.0, *code, "{what}: {close:?}");
        assert!(raw.closed_within(Duration::from_secs(5)).await, "{what}");
    }
}

#[tokio::test]
async fn fragmented_base64_message_is_decoded_whole() {
    let proxy = echo_proxy().await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Sec-WebSocket-Protocol: base64"]).await;
    // "hello world" in base64 split inside a 4-character group, a ping in between.
    raw.send_frame(false, 1, b"aGVsbG8gd2", true).await;
    raw.send_frame(true, 9, b"p", true).await;
    raw.send_frame(true, 0, b"9ybGQ=", true).await;
    let pong = raw.read_frame().await.unwrap();
    assert_eq!((pong.opcode, &pong.payload[..]), (10, &b"p"[..]));
    let echoed = raw.read_frame().await.unwrap();
    assert_eq!(echoed.opcode, 1);
    assert_eq!(echoed.payload, b"aGVsbG8gd29ybGQ=");
}

#[tokio::test]
async fn a_frame_larger_than_a_piece_streams_through_in_order() {
    // Written in small bursts so that the proxy passes it on in pieces as it arrives.
    let proxy = echo_proxy().await;
    let (raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let data = random_bytes(3 << 20);
    let frame = encode_frame(true, 2, &data, Some([9, 8, 7, 6]));
    let (mut r, mut w) = raw.stream.into_split();
    let writer = tokio::spawn(async move {
        for chunk in frame.chunks(100_003) {
            w.write_all(chunk).await.unwrap();
        }
        w
    });
    let mut got = Vec::new();
    let mut raw_in = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    // Echoed as several binary messages (one per target read); their payloads in order.
    while got.len() < data.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf))
            .await
            .expect("echo stalled")
            .unwrap();
        assert!(n > 0, "closed early");
        raw_in.extend_from_slice(&buf[..n]);
        while let Some((opcode, payload, used)) = parse_server_frame(&raw_in) {
            assert_eq!(opcode, 2);
            got.extend_from_slice(&payload);
            raw_in.drain(..used);
        }
    }
    assert!(got == data);
    drop(writer.await.unwrap());
}

/// An unmasked server frame at the start of `buf`: opcode, payload, bytes used.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let b1 = *buf.get(1)?;
    let (len, start) = match b1 & 0x7f {
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
    let payload = buf.get(start..start + len)?;
    Some((buf[0] & 0x0f, payload.to_vec(), start + len))
}

#[tokio::test]
async fn on_one_cpu_the_single_thread_runtime_relays_everything() {
    // Pinned to one CPU the proxy runs tokio's current-thread scheduler (see main.rs): many
    // concurrent sessions, a big message and the close handshake must work there too.
    ensure_installed(&["taskset"], "util-linux");
    let echo = echo_target().await;
    let mut cmd = std::process::Command::new("taskset");
    cmd.args([
        "-c",
        "0",
        binary(),
        "-v",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WEBSOCKIFY_") {
            cmd.env_remove(name);
        }
    }
    let proxy = Proxy::start_cmd(cmd);
    assert!(proxy.log().contains("runtime: 1 thread"), "{}", proxy.log());
    let mut clients = Vec::new();
    for i in 0..20u8 {
        let url = proxy.url();
        clients.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let data = vec![i; 300_000];
            ws.send(Message::Binary(data.clone().into())).await.unwrap();
            let mut got = Vec::new();
            while got.len() < data.len() {
                match ws.next().await.unwrap().unwrap() {
                    Message::Binary(b) => got.extend_from_slice(&b),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(got == data);
            ws.close(None).await.unwrap();
        }));
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("a session stalled")
            .unwrap();
    }
}

/// The proxy's user and system CPU so far, in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis: state is field 3, utime and stime 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `--busy-poll`: sessions relay byte-exact in both directions from threads of their own
/// (one per CPU), a session drains with 1001 at SIGTERM, and the polling stops when its
/// time is up: a proxy whose sessions wait on their clients uses no CPU.
#[tokio::test]
async fn busy_poll_relays_exactly_and_polls_only_for_its_time() {
    let echo = echo_target().await;
    let mut proxy = Proxy::start(&[
        "--busy-poll",
        "200",
        "--shutdown-grace",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let pid = proxy.child.id();

    // Connections go to one runtime per CPU; with one CPU, everything runs on one thread.
    let cpus = std::thread::available_parallelism().unwrap().get();
    let threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .filter(|c| c.starts_with("websockify-") && c != "websockify-log")
            .collect()
    };
    // (A thread names itself once it runs.)
    let want = if cpus > 1 { cpus } else { 0 };
    for _ in 0..50 {
        if threads().len() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(threads().len(), want, "{:?}", threads());

    // Eight sessions at once: round trips one at a time, then a burst in uneven pieces.
    let mut sessions = Vec::new();
    for n in 0..8u8 {
        let url = proxy.url();
        sessions.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for i in 0..200u32 {
                let message = [&[n][..], &i.to_be_bytes()].concat();
                assert_eq!(echo_through(&mut ws, &message, 64).await, message);
            }
            let burst = random_bytes(300_000 + usize::from(n) * 1_000);
            assert_eq!(
                echo_through(&mut ws, &burst, 7_000 + usize::from(n)).await,
                burst
            );
            ws
        }));
    }
    let mut open = Vec::new();
    for s in sessions {
        open.push(s.await.unwrap());
    }

    // Every session now waits on its client, whose turn it is: after 200 µs the proxy
    // sleeps until something comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent <= 3,
        "{spent} ticks of CPU in 1 s with every session waiting"
    );

    // SIGTERM: the sessions get 1001 after the grace, from the threads that run them.
    proxy.signal("TERM");
    for mut ws in open {
        let close = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    other => panic!("no close: {other:?}"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(close, Some(1001));
    }
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    let log = proxy.log();
    assert_eq!(
        log.matches("session ended: server shutting down").count(),
        8,
        "{log}"
    );
}

/// `--busy-poll` with `--run-once`: the session runs on a worker thread, its recording is
/// written there whole, and the process stops its threads and exits after the session.
#[tokio::test]
async fn busy_poll_run_once_records_and_exits() {
    let echo = echo_target().await;
    let dir = std::env::temp_dir().join(format!("websockify-bp-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("rec");
    let mut proxy = Proxy::start(&[
        "--busy-poll",
        "100",
        "--run-once",
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    for n in 0..50u8 {
        raw.send_binary(&[n; 5]).await;
        assert_eq!(raw.read_data(5).await, [n; 5]);
    }
    raw.send_close(1000, "").await;
    raw.read_close().await;
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(dir.join("rec.1")).unwrap();
    assert!(text.ends_with("'EOF'];\n"), "{text}");
    // Both directions of a message in the middle of the session, as in the test above.
    let escaped = "\\x07".repeat(5);
    assert!(text.contains(&format!("}}{escaped}',")), "{text}");
    assert!(text.contains(&format!("{{{escaped}',")), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// At exit the process waits for its recordings' writers: a `--run-once` session that ends
/// while its writer is still escaping megabytes leaves a whole file (`'EOF'];` last), in the
/// default layout and with a runtime per CPU (`--busy-poll`). Without the wait the default
/// layout's file ended mid-line (checked); the per-CPU layout's happened to be whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_waits_for_the_recording_to_be_written() {
    let echo = echo_target().await;
    for extra in [&[][..], &["--busy-poll", "50"][..]] {
        let dir = std::env::temp_dir().join(format!(
            "websockify-exit-record-{}-{}",
            std::process::id(),
            extra.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("rec");
        let mut args = extra.to_vec();
        let target = format!("127.0.0.1:{echo}");
        args.extend_from_slice(&["--run-once", "--record", base.to_str().unwrap()]);
        args.extend_from_slice(&["127.0.0.1:0", &target]);
        let mut proxy = Proxy::start(&args);
        let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
        // 8 MiB each way in one message, of bytes the file escapes as four characters
        // each: more than the writer escapes and writes by the time the session has ended.
        let message = vec![0x80u8; 8 << 20];
        raw.send_binary(&message).await;
        assert_eq!(raw.read_data(message.len()).await, message);
        raw.send_close(1000, "").await;
        raw.read_close().await;
        drop(raw);
        assert!(proxy.wait_exit(Duration::from_secs(20)).success());
        let text = std::fs::read_to_string(dir.join("rec.1")).unwrap();
        assert!(
            text.ends_with("'EOF'];\n"),
            "{extra:?}: the file ends {:?}",
            &text[text.len().saturating_sub(100)..]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
