//! Hixie-75 and Hixie-76 through the real binary, with hand-written clients.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY1: &str = "18x 6]8vM;54 *(5:  {   U1]8  z [  8";
const KEY2: &str = "1_ tx7X d  <  nw  334J702) 7]o}` 0";
const KEY3: &[u8] = b"Tm[K T2u";
const ANSWER: &[u8] = b"fQJ,fN/4F4!~K~MH";

fn head76(extra: &str) -> String {
    format!(
        "GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key2: {KEY2}\r\nSec-WebSocket-Protocol: base64\r\nUpgrade: WebSocket\r\n\
         Sec-WebSocket-Key1: {KEY1}\r\nOrigin: http://example.com\r\n{extra}\r\n"
    )
}

fn head75() -> String {
    "GET /demo?token=x HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
     Host: example.com\r\nOrigin: http://example.com\r\n\r\n"
        .to_string()
}

fn frame(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x00];
    f.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    f.push(0xFF);
    f
}

/// Reads one `0x00 .. 0xFF` frame (or the close frame) and returns the decoded payload, or
/// `None` for a close frame.
async fn read_frame(raw: &mut Raw) -> Option<Vec<u8>> {
    loop {
        if raw.buf.len() >= 2 && raw.buf[0] == 0xFF && raw.buf[1] == 0x00 {
            raw.buf.drain(..2);
            return None;
        }
        if raw.buf.first() == Some(&0x00)
            && let Some(end) = raw.buf.iter().position(|&b| b == 0xFF)
        {
            let text: Vec<u8> = raw.buf.drain(..=end).collect();
            return Some(
                base64::engine::general_purpose::STANDARD
                    .decode(&text[1..text.len() - 1])
                    .unwrap(),
            );
        }
        if let Some(&b) = raw.buf.first() {
            assert!(
                b == 0x00 || b == 0xFF,
                "not a Hixie frame: {:?}",
                &raw.buf[..raw.buf.len().min(8)]
            );
        }
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(10), raw.stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap();
        assert!(n > 0, "connection closed while waiting for a frame");
        raw.buf.extend_from_slice(&chunk[..n]);
    }
}

async fn upgrade76(port: u16) -> Raw {
    let mut raw = Raw::connect(port).await;
    let mut bytes = head76("").into_bytes();
    bytes.extend_from_slice(KEY3);
    raw.stream.write_all(&bytes).await.unwrap();
    let answer = raw.read_answer().await;
    assert_eq!(answer.status, 101, "{}", answer.head);
    while raw.buf.len() < 16 {
        let mut chunk = [0u8; 64];
        let n = raw.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        raw.buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&raw.buf[..16], ANSWER);
    raw.buf.drain(..16);
    raw
}

async fn echo_proxy() -> Proxy {
    let echo = echo_target().await;
    Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")])
}

#[tokio::test]
async fn hixie_76_handshake_bytes() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = head76("").into_bytes();
    bytes.extend_from_slice(KEY3);
    raw.stream.write_all(&bytes).await.unwrap();
    let answer = raw.read_answer().await;
    assert_eq!(
        answer.head,
        "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n\
         Sec-WebSocket-Location: ws://example.com/demo\r\nSec-WebSocket-Protocol: base64\r\n\r\n"
    );
    let mut rest = raw.buf.clone();
    while rest.len() < 16 {
        let mut chunk = [0u8; 64];
        let n = raw.stream.read(&mut chunk).await.unwrap();
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&rest[..16], ANSWER);
}

#[tokio::test]
async fn hixie_76_echo_and_client_close() {
    let proxy = echo_proxy().await;
    let mut raw = upgrade76(proxy.port).await;
    for len in [0usize, 1, 2, 3, 1000, 100_000] {
        let data = random_bytes(len);
        raw.stream.write_all(&frame(&data)).await.unwrap();
        let mut got = Vec::new();
        while got.len() < len {
            got.extend(read_frame(&mut raw).await.expect("unexpected close"));
        }
        assert!(got == data, "payload of {len} bytes came back different");
    }
    raw.stream.write_all(&[0xFF, 0x00]).await.unwrap();
    assert_eq!(
        read_frame(&mut raw).await,
        None,
        "76 answers a close in kind"
    );
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains("protocol=\"hixie-76/base64\""), "{log}");
}

#[tokio::test]
async fn hixie_76_key_bytes_split_across_segments() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    // Every write leaves at once, in a segment of its own.
    raw.stream.set_nodelay(true).unwrap();
    // The head alone, read by the proxy before anything else is sent; then three of the eight
    // key bytes alone, read too, so the proxy has had a part of the key and must wait for the
    // rest. A proxy that left bytes unread until more came makes the wait fail.
    raw.stream.write_all(head76("").as_bytes()).await.unwrap();
    wait_until_read_by_peer(&raw.stream).await;
    raw.stream.write_all(&KEY3[..3]).await.unwrap();
    wait_until_read_by_peer(&raw.stream).await;
    // The rest of the key and a first frame in one segment.
    let mut tail = KEY3[3..].to_vec();
    tail.extend(frame(b"first"));
    raw.stream.write_all(&tail).await.unwrap();
    assert_eq!(raw.read_answer().await.status, 101);
    while raw.buf.len() < 16 {
        let mut chunk = [0u8; 64];
        let n = raw.stream.read(&mut chunk).await.unwrap();
        raw.buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&raw.buf[..16], ANSWER);
    raw.buf.drain(..16);
    assert_eq!(read_frame(&mut raw).await.unwrap(), b"first");
}

/// The check the split test stands on: bytes the peer has not read, all or some, keep it
/// waiting (and failing at its deadline); once the peer read them all it passes. Over IPv4
/// and IPv6, whose tables are apart and whose addresses are printed differently.
#[tokio::test]
async fn the_read_by_peer_check_tells_unread_bytes_from_read_ones() {
    for host in ["127.0.0.1", "::1"] {
        let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.set_nodelay(true).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"unread").await.unwrap();
        let short = Duration::from_millis(200);
        let err = try_wait_until_read_by_peer(&client, short)
            .await
            .expect_err("nothing was read");
        assert!(err.contains("rx_queue: 6"), "{host}: {err}");
        let mut half = [0u8; 3];
        server.read_exact(&mut half).await.unwrap();
        let err = try_wait_until_read_by_peer(&client, short)
            .await
            .expect_err("half was read");
        assert!(err.contains("rx_queue: 3"), "{host}: {err}");
        server.read_exact(&mut half).await.unwrap();
        wait_until_read_by_peer(&client).await;
    }
}

#[tokio::test]
async fn hixie_76_target_hangup_sends_close() {
    let port = target(|mut s| async move {
        s.write_all(b"RFB 003.003\n").await.unwrap();
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let mut raw = upgrade76(proxy.port).await;
    assert_eq!(read_frame(&mut raw).await.unwrap(), b"RFB 003.003\n");
    assert_eq!(read_frame(&mut raw).await, None);
    raw.stream.write_all(&[0xFF, 0x00]).await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn hixie_75_handshake_echo_and_close() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw.request(&head75()).await;
    assert_eq!(
        answer.head,
        "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\
         Connection: Upgrade\r\nWebSocket-Origin: http://example.com\r\n\
         WebSocket-Location: ws://example.com/demo?token=x\r\n\r\n"
    );
    let data = random_bytes(5000);
    raw.stream.write_all(&frame(&data)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        got.extend(read_frame(&mut raw).await.unwrap());
    }
    assert!(got == data);
    // 75 has no close frame: the client just closes.
    raw.stream.shutdown().await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains("hixie-75/base64"), "{log}");
}

#[tokio::test]
async fn hixie_75_target_hangup_closes_tcp() {
    let port = target(|mut s| async move {
        s.write_all(b"bye").await.unwrap();
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request(&head75()).await.status, 101);
    assert_eq!(read_frame(&mut raw).await.unwrap(), b"bye");
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    assert!(raw.buf.is_empty(), "75 has no close frame: {:?}", raw.buf);
}

#[tokio::test]
async fn endless_frame_is_refused() {
    let proxy = echo_proxy().await;
    let mut raw = upgrade76(proxy.port).await;
    let chunk = vec![b'A'; 1 << 20];
    raw.stream.write_all(&[0x00]).await.unwrap();
    let mut closed = false;
    for _ in 0..80 {
        if raw.stream.write_all(&chunk).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed || raw.closed_within(Duration::from_secs(10)).await);
    proxy.wait_log("Hixie frame longer than", Duration::from_secs(10));
}

#[tokio::test]
async fn bad_hixie_requests_get_400() {
    let proxy = echo_proxy().await;
    for head in [
        head76("").replace(KEY1, "12345"),
        head76("").replace(&format!("Sec-WebSocket-Key2: {KEY2}\r\n"), ""),
        head76("").replace(
            "Sec-WebSocket-Protocol: base64",
            "Sec-WebSocket-Protocol: binary",
        ),
        head75().replace("Host: example.com\r\n", ""),
        // 123 digits over 2 spaces: not a whole number.
        head76("").replace(KEY1, "1 2 3"),
        // 8589934592 / 2 = 2^32: over the 32 bits of the answer.
        head76("").replace(KEY1, "8589934592  "),
        head76("").replace(KEY1, "no digits "),
        head75().replace("\r\n\r\n", "\r\nWebSocket-Protocol: binary\r\n\r\n"),
    ] {
        let mut raw = Raw::connect(proxy.port).await;
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(KEY3);
        raw.stream.write_all(&bytes).await.unwrap();
        assert_eq!(raw.read_answer().await.status, 400, "{head}");
    }
}

/// A 76 session whose client breaks the framing: the proxy answers with the close frame,
/// closes the TCP connection, and logs the close code the error maps to.
async fn broken_76_session(bytes: &[u8], code: u16) {
    let proxy = echo_proxy().await;
    let mut raw = upgrade76(proxy.port).await;
    raw.stream.write_all(&frame(b"fine")).await.unwrap();
    assert_eq!(read_frame(&mut raw).await.unwrap(), b"fine");
    raw.stream.write_all(bytes).await.unwrap();
    assert_eq!(
        read_frame(&mut raw).await,
        None,
        "a close frame for {bytes:?}"
    );
    assert!(raw.closed_within(Duration::from_secs(10)).await);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains(&format!("close_code={code}")), "{log}");
}

#[tokio::test]
async fn a_length_prefixed_frame_is_a_protocol_error() {
    // 0x80..0xFE frames are the drafts' binary frames, which websockify never spoke.
    broken_76_session(b"\x80\x05hello", 1002).await;
}

#[tokio::test]
async fn bad_base64_is_refused() {
    broken_76_session(b"\x00not base64!\xff", 1007).await;
}

#[tokio::test]
async fn ff_without_00_is_not_a_close() {
    broken_76_session(b"\xff\x01", 1002).await;
}

#[tokio::test]
async fn hixie_75_protocol_error_closes_tcp_without_a_close_frame() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request(&head75()).await.status, 101);
    raw.stream.write_all(b"\x00!!\xff").await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(10)).await);
    assert!(raw.buf.is_empty(), "75 has no close frame: {:?}", raw.buf);
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    assert!(log.contains("close_code=1007"), "{log}");
}

#[tokio::test]
async fn target_speaks_first_then_echoes() {
    let port = target(|mut s| async move {
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await;
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    for draft76 in [true, false] {
        let mut raw = if draft76 {
            upgrade76(proxy.port).await
        } else {
            let mut raw = Raw::connect(proxy.port).await;
            assert_eq!(raw.request(&head75()).await.status, 101);
            raw
        };
        // The banner arrives before the client said anything.
        assert_eq!(read_frame(&mut raw).await.unwrap(), b"RFB 003.008\n");
        let data = random_bytes(70_000);
        raw.stream.write_all(&frame(&data)).await.unwrap();
        let mut got = Vec::new();
        while got.len() < data.len() {
            got.extend(read_frame(&mut raw).await.expect("unexpected close"));
        }
        assert!(got == data, "draft76={draft76}: echo differs");
    }
}

#[tokio::test]
async fn unreachable_target_gets_101_then_a_close() {
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{}", dead_port())]);
    let mut raw = upgrade76(proxy.port).await;
    assert_eq!(read_frame(&mut raw).await, None);
    raw.stream.write_all(&[0xFF, 0x00]).await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn hixie_76_client_gone_before_the_key_bytes_gets_no_101() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = head76("").into_bytes();
    bytes.extend_from_slice(&KEY3[..5]);
    raw.stream.write_all(&bytes).await.unwrap();
    raw.stream.shutdown().await.unwrap();
    let answer = raw.read_to_end().await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    proxy.wait_log("Hixie handshake", Duration::from_secs(5));
}

#[tokio::test]
async fn the_version_header_makes_it_hybi_even_with_draft_keys() {
    let proxy = echo_proxy().await;
    let mut raw = Raw::connect(proxy.port).await;
    let mut bytes = head76("Sec-WebSocket-Version: 13\r\n").into_bytes();
    bytes.extend_from_slice(KEY3);
    raw.stream.write_all(&bytes).await.unwrap();
    let answer = raw.read_answer().await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    let body = String::from_utf8_lossy(&raw.read_to_end().await).into_owned();
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
}
