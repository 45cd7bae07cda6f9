//! PROXY protocol through the real binary: the real client's address in from a load balancer
//! (`--proxy-protocol`, v1 and v2, IPv4 and IPv6, UNKNOWN and LOCAL), refused without a valid
//! header, used for logs and per-address limits; and out to targets
//! (`--target-proxy-protocol v1|v2`) naming that client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for TCP over IPv4 or IPv6 (version 2, command PROXY).
fn v2_header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut body = Vec::new();
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            body.extend_from_slice(&c.ip().octets());
            body.extend_from_slice(&s.ip().octets());
        }
        (SocketAddr::V6(c), SocketAddr::V6(s)) => {
            out.push(0x21);
            body.extend_from_slice(&c.ip().octets());
            body.extend_from_slice(&s.ip().octets());
        }
        _ => panic!("one family"),
    }
    body.extend_from_slice(&client.port().to_be_bytes());
    body.extend_from_slice(&server.port().to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A v2 LOCAL header (a balancer's own health check).
fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

/// Connects, sends `header`, upgrades and echoes once; the proxy's answer status.
async fn session_after(port: u16, header: &[u8]) -> (Raw, u16) {
    let mut raw = Raw::connect(port).await;
    raw.stream.write_all(header).await.unwrap();
    let answer = raw.request(&upgrade_request(&[])).await;
    if answer.status == 101 {
        raw.send_binary(b"hi").await;
        assert_eq!(raw.read_data(2).await, b"hi");
    }
    (raw, answer.status)
}

#[tokio::test]
async fn the_client_address_comes_from_the_header() {
    let proxy = echo_proxy_with(&["--proxy-protocol"]).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 6080\r\n".to_vec(),
            "203.0.113.9:51000",
        ),
        (
            b"PROXY TCP6 2001:db8::9 2001:db8::1 51001 6080\r\n".to_vec(),
            "[2001:db8::9]:51001",
        ),
        (
            v2_header(
                "198.51.100.4:40000".parse().unwrap(),
                "10.0.0.1:6080".parse().unwrap(),
            ),
            "198.51.100.4:40000",
        ),
        (
            v2_header(
                "[2001:db8::44]:40001".parse().unwrap(),
                "[2001:db8::1]:6080".parse().unwrap(),
            ),
            "[2001:db8::44]:40001",
        ),
    ];
    for (header, client) in cases {
        let (mut raw, status) = session_after(proxy.port, &header).await;
        assert_eq!(status, 101, "{client}");
        raw.send_close(1000, "").await;
        raw.read_close().await;
        let log = proxy.wait_log(&format!("client={client} target="), Duration::from_secs(5));
        assert!(!log.contains("refused"), "{log}");
    }
}

#[tokio::test]
async fn unknown_and_local_keep_the_connections_own_address() {
    let proxy = echo_proxy_with(&["--proxy-protocol"]).await;
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), v2_local()] {
        let (mut raw, status) = session_after(proxy.port, &header).await;
        assert_eq!(status, 101);
        let own = raw.stream.local_addr().unwrap().to_string();
        raw.send_close(1000, "").await;
        raw.read_close().await;
        proxy.wait_log(&format!("client={own} target="), Duration::from_secs(5));
    }
}

#[tokio::test]
async fn without_a_valid_header_the_connection_is_refused_and_logged() {
    let proxy = echo_proxy_with(&["--proxy-protocol"]).await;
    for (first, logged) in [
        (upgrade_request(&[]).into_bytes(), "no PROXY protocol header"),
        (b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n".to_vec(), "malformed PROXY protocol header"),
        (b"PROXY TCP4 1.1.1.1 10.0.0.1 1 2 and more than a line can hold ................................................................\r\n".to_vec(), "PROXY protocol header"),
    ] {
        let mut raw = Raw::connect(proxy.port).await;
        raw.stream.write_all(&first).await.unwrap();
        assert!(raw.closed_within(Duration::from_secs(10)).await, "not closed after {logged}");
        assert!(raw.buf.is_empty(), "answered: {:?}", String::from_utf8_lossy(&raw.buf));
        proxy.wait_log(logged, Duration::from_secs(5));
    }
    // A header that never comes (a client talking to the wrong port) is cut off in time.
    let mut raw = Raw::connect(proxy.port).await;
    raw.stream.write_all(b"PROXY TCP4 ").await.unwrap();
    assert!(raw.closed_within(Duration::from_secs(15)).await);
    proxy.wait_log("no complete PROXY protocol header", Duration::from_secs(5));
}

#[tokio::test]
async fn per_address_limits_use_the_real_client() {
    let proxy = echo_proxy_with(&["--proxy-protocol", "--max-connections-per-ip", "1"]).await;
    let one = b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 6080\r\n";
    let same = b"PROXY TCP4 203.0.113.9 10.0.0.1 51002 6080\r\n";
    let other = b"PROXY TCP4 203.0.113.10 10.0.0.1 51000 6080\r\n";
    let (_a, status) = session_after(proxy.port, one).await;
    assert_eq!(status, 101);
    let (_b, status) = session_after(proxy.port, same).await;
    assert_eq!(status, 503, "the same client behind the balancer");
    let (_c, status) = session_after(proxy.port, other).await;
    assert_eq!(status, 101, "another client behind the same balancer");
}

/// A target that reports the first `n` bytes it receives, then echoes.
async fn recording_target() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let port = target(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut buf = vec![0u8; 512];
            let mut got = Vec::new();
            // The header and the client's first message ("hi").
            while !got.ends_with(b"hi") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(got);
            let _ = s.write_all(b"hi").await;
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    })
    .await;
    (port, rx)
}

#[tokio::test]
async fn targets_are_told_the_real_client_in_v1_and_v2() {
    let (port, mut seen) = recording_target().await;
    let target = format!("127.0.0.1:{port}");

    // v1, the client as the balancer named it.
    let proxy = Proxy::start(&[
        "--proxy-protocol",
        "--target-proxy-protocol",
        "v1",
        "127.0.0.1:0",
        &target,
    ]);
    let (_raw, status) = session_after(
        proxy.port,
        b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 6080\r\n",
    )
    .await;
    assert_eq!(status, 101);
    let got = seen.recv().await.unwrap();
    assert_eq!(got, b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 6080\r\nhi");
    drop(proxy);

    // v2, the client as the proxy saw it (no balancer in front).
    let proxy = Proxy::start(&["--target-proxy-protocol", "v2", "127.0.0.1:0", &target]);
    let (raw, status) = session_after(proxy.port, b"").await;
    assert_eq!(status, 101);
    let client = raw.stream.local_addr().unwrap();
    let server = raw.stream.peer_addr().unwrap();
    let got = seen.recv().await.unwrap();
    let mut expected = v2_header(client, server);
    expected.extend_from_slice(b"hi");
    assert_eq!(got, expected);
}

#[test]
fn bad_versions_are_refused_naming_the_flag() {
    let err = fails(&["--target-proxy-protocol", "v3", "6080", "h:1"], 2);
    assert!(
        err.contains("--target-proxy-protocol") && err.contains("v1 or v2"),
        "{err}"
    );
}

/// A real HAProxy in front, sending PROXY v2 (`send-proxy-v2`), as a cloud balancer would.
#[tokio::test]
async fn a_real_haproxy_in_front_sending_proxy_v2() {
    ensure_installed(&["haproxy"], "haproxy");
    let proxy = echo_proxy_with(&["--proxy-protocol"]).await;
    let front = dead_port();
    let dir = std::env::temp_dir().join(format!("pp-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend fe\n  bind 127.0.0.1:{front}\n  default_backend be\n\
             backend be\n  server ws 127.0.0.1:{} send-proxy-v2\n",
            proxy.port
        ),
    )
    .unwrap();
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start haproxy");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", front))
        .await
        .is_err()
    {
        if std::time::Instant::now() > deadline || haproxy.try_wait().ok().flatten().is_some() {
            let _ = haproxy.kill();
            let out = haproxy.wait_with_output().unwrap();
            panic!(
                "haproxy did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Through HAProxy: the proxy must log this client's own port, not HAProxy's.
    let (mut raw, status) = session_after(front, b"").await;
    assert_eq!(status, 101);
    let me = raw.stream.local_addr().unwrap();
    raw.send_close(1000, "").await;
    raw.read_close().await;
    proxy.wait_log(&format!("client={me} target="), Duration::from_secs(5));
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let _ = std::fs::remove_dir_all(dir);
}
