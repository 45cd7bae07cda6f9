//! The limits of issue 9 through the real binary: connections in all and per address, the
//! request head's time, message size, target connect time, session idle time, the target
//! allow-list, and memory bounded by backpressure in both directions with nothing lost.
//! (The head's default time and size limits are in tests/websocket.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{Proxy, Raw, echo_proxy_with, echo_target, encode_frame, fails, rss_kib, target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A raw client bound to a chosen loopback source address (all of 127/8 is local on Linux).
async fn connect_from(source: &str, port: u16) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    Raw {
        stream,
        buf: Vec::new(),
    }
}

async fn upgrade_from(source: &str, port: u16) -> (Raw, common::Answer) {
    let mut raw = connect_from(source, port).await;
    let answer = raw.request(&common::upgrade_request(&[])).await;
    (raw, answer)
}

/// Echoes one message through an upgraded raw client.
async fn echo_once(raw: &mut Raw, data: &[u8]) {
    raw.send_binary(data).await;
    assert_eq!(raw.read_data(data.len()).await, data);
}

#[tokio::test]
async fn over_max_connections_a_request_gets_503_with_retry_after() {
    let proxy =
        echo_proxy_with(&["--max-connections", "2", "--metrics-listen", "127.0.0.1:0"]).await;
    proxy.wait_log(
        "serving at most 2 connections at once",
        Duration::from_secs(5),
    );
    let ops = common::metrics_port(&proxy);
    // The places held and the limit, as an operator's alert reads them.
    let places = move || async move {
        let page = tokio::task::spawn_blocking(move || common::http_get(ops, "/metrics").1)
            .await
            .unwrap();
        let read = |series| common::sample(&page, series);
        (
            read("websockify_connection_places_held"),
            read("websockify_max_connections"),
        )
    };
    assert_eq!(places().await, (Some(0.0), Some(2.0)));
    let (mut a, answer) = Raw::upgrade(proxy.port, &[]).await;
    assert_eq!(answer.status, 101);
    let (mut b, _) = Raw::upgrade(proxy.port, &[]).await;
    echo_once(&mut a, b"first").await;
    echo_once(&mut b, b"second").await;
    assert_eq!(places().await, (Some(2.0), Some(2.0)));

    let mut c = Raw::connect(proxy.port).await;
    let answer = c.request(&common::upgrade_request(&[])).await;
    assert_eq!(answer.status, 503, "{}", answer.head);
    assert_eq!(answer.header("Retry-After").as_deref(), Some("5"));
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // Web requests count too (one port, one limit).
    let port = proxy.port;
    let (status, _) = tokio::task::spawn_blocking(move || common::http_get(port, "/"))
        .await
        .unwrap();
    assert_eq!(status, 503);
    let log = proxy.wait_log("over the limit of 2 connections", Duration::from_secs(5));
    assert!(log.contains("--max-connections"), "{log}");

    // The sessions that were in keep flowing, and a place given back is free again.
    echo_once(&mut a, b"still here").await;
    a.send_close(1000, "").await;
    assert_eq!(a.read_close().await.0, 1000);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut d, answer) = upgrade_from("127.0.0.1", proxy.port).await;
        if answer.status == 101 {
            echo_once(&mut d, b"after").await;
            break;
        }
        assert_eq!(answer.status, 503);
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    echo_once(&mut b, b"b too").await;

    // Every place comes back once the sessions end.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while places().await.0 != Some(0.0) {
        assert!(Instant::now() < deadline, "{:?}", places().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn per_ip_limit_refuses_only_the_busy_address() {
    let proxy = echo_proxy_with(&["--max-connections-per-ip", "2"]).await;
    let (mut a1, r) = upgrade_from("127.0.0.1", proxy.port).await;
    assert_eq!(r.status, 101);
    let (mut a2, r) = upgrade_from("127.0.0.1", proxy.port).await;
    assert_eq!(r.status, 101);
    let (_a3, r) = upgrade_from("127.0.0.1", proxy.port).await;
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.header("Retry-After").is_some());
    let (mut b1, r) = upgrade_from("127.0.0.2", proxy.port).await;
    assert_eq!(r.status, 101, "another address is not refused: {}", r.head);
    for raw in [&mut a1, &mut a2, &mut b1] {
        echo_once(raw, b"ok").await;
    }
    proxy.wait_log("--max-connections-per-ip", Duration::from_secs(5));
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_off_with_408() {
    let proxy = echo_proxy_with(&["--handshake-timeout", "2"]).await;
    let mut raw = Raw::connect(proxy.port).await;
    let head = common::upgrade_request(&[]);
    let began = Instant::now();
    let mut cut = false;
    for byte in head.as_bytes() {
        if raw.stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        // A byte every 300 ms: about 60 s for the whole head.
        let mut one = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), raw.stream.read(&mut one)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                raw.buf.extend_from_slice(&one[..n]);
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "the whole head was accepted at a byte every 300 ms");
    let elapsed = began.elapsed();
    // Cut off near the 2 s limit, well before the head could have been complete.
    assert!(
        elapsed < Duration::from_secs(30),
        "cut off only after {elapsed:?}"
    );
    let answer = raw.read_answer().await;
    assert_eq!(answer.status, 408, "{}", answer.head);
    proxy.wait_log("no complete request head within 2s", Duration::from_secs(5));
}

#[tokio::test]
async fn a_message_over_max_message_size_is_closed_with_1009_from_its_header() {
    let proxy = echo_proxy_with(&["--max-message-size", "1MiB"]).await;
    // One frame announcing 2 MiB, and not one byte of its payload: the answer comes anyway.
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    echo_once(&mut raw, &vec![7u8; 1 << 20]).await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(2u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.stream.write_all(&header).await.unwrap();
    let (code, reason) = raw.read_close().await;
    assert_eq!((code, reason.as_str()), (1009, "Message too big"));

    // Fragments add up: 600 KiB + 600 KiB is over 1 MiB at the second header.
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_frame(false, 2, &vec![1u8; 600 << 10], true).await;
    let mut header = vec![0x80, 0x80 | 127];
    header.extend_from_slice(&(600u64 << 10).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.stream.write_all(&header).await.unwrap();
    assert_eq!(raw.read_close().await.0, 1009);
    proxy.wait_log("closed with 1009", Duration::from_secs(5));
}

#[tokio::test]
async fn a_hixie_frame_over_max_message_size_ends_the_session() {
    let proxy = echo_proxy_with(&["--max-message-size", "4KiB"]).await;
    let mut raw = Raw::connect(proxy.port).await;
    let head = "GET /websockify HTTP/1.1\r\nHost: localhost\r\nUpgrade: WebSocket\r\n\
                Connection: Upgrade\r\nOrigin: http://localhost\r\n\r\n";
    let answer = raw.request(head).await;
    assert_eq!(answer.status, 101, "{}", answer.head);
    // An endless frame: 0x00 and base64 text that never ends.
    raw.stream.write_all(&[0x00]).await.unwrap();
    let _ = raw.stream.write_all(&[b'A'; 8192]).await;
    assert!(raw.closed_within(Duration::from_secs(10)).await);
    proxy.wait_log("Hixie frame longer than 4096 bytes", Duration::from_secs(5));
}

#[tokio::test]
async fn a_target_that_never_accepts_times_out_with_1011() {
    // A listener whose backlog is full drops further SYNs: connecting to it hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(
            &format!("127.0.0.1:{port}")
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        );
        fillers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let target = format!("127.0.0.1:{port}");
    let proxy = Proxy::start(&["--connect-timeout", "1", "127.0.0.1:0", &target]);
    let began = Instant::now();
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let (code, reason) = raw.read_close().await;
    assert_eq!(code, 1011, "{reason}");
    assert!(began.elapsed() < Duration::from_secs(20));
    proxy.wait_log("timed out after 1s", Duration::from_secs(5));
    drop(socket);
}

#[tokio::test]
async fn a_silent_session_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let proxy = echo_proxy_with(&["--session-idle-timeout", "2"]).await;
    let (mut quiet, _) = Raw::upgrade(proxy.port, &[]).await;
    let (mut busy, _) = Raw::upgrade(proxy.port, &[]).await;
    let began = Instant::now();
    // The busy one sends something every 500 ms for 4 s: twice the timeout.
    while began.elapsed() < Duration::from_secs(4) {
        echo_once(&mut busy, b"tick").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, reason) = quiet.read_close().await;
    assert_eq!((code, reason.as_str()), (1001, "Session idle timeout"));
    // Hanging up rather than answering the close: the session's end is logged at once, not
    // after the proxy's CLOSE_TIMEOUT for an answer.
    drop(quiet);
    echo_once(&mut busy, b"still open").await;
    let log = proxy.wait_log("--session-idle-timeout", Duration::from_secs(5));
    assert!(log.contains("no data either way for 2s"), "{log}");
}

#[tokio::test]
async fn only_allowed_targets_are_reached() {
    let echo = echo_target().await;
    let dir = std::env::temp_dir().join(format!("limits-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "inside: 127.0.0.1:{echo}\nnamed: localhost:{echo}\noutside: 127.0.0.2:{echo}\n\
             metadata: 169.254.169.254:80\n"
        ),
    )
    .unwrap();
    let rule = format!("127.0.0.1/32:{echo},localhost:{echo}");
    let proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "--allow-target",
        &rule,
        "127.0.0.1:0",
    ]);
    for token in ["inside", "named"] {
        let path = format!("GET /websockify?token={token} HTTP/1.1");
        let head = common::upgrade_request(&[]).replacen("GET /websockify HTTP/1.1", &path, 1);
        let mut raw = Raw::connect(proxy.port).await;
        assert_eq!(raw.request(&head).await.status, 101);
        echo_once(&mut raw, token.as_bytes()).await;
    }
    // Refused before the upgrade, as any refusal: the client learns nothing of where the
    // token leads (a 101 and a close told it the token was valid).
    for token in ["outside", "metadata"] {
        let path = format!("GET /websockify?token={token} HTTP/1.1");
        let head = common::upgrade_request(&[]).replacen("GET /websockify HTTP/1.1", &path, 1);
        let mut raw = Raw::connect(proxy.port).await;
        assert_eq!(raw.request(&head).await.status, 403, "{token}");
        let body = String::from_utf8(raw.read_to_end().await).unwrap();
        assert_eq!(body, "target not allowed\n", "{token}");
    }
    let log = proxy.wait_log(
        "169.254.169.254:80 is not an allowed target",
        Duration::from_secs(5),
    );
    assert!(log.contains("127.0.0.2"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_flood_held_back_from_a_stalled_client_arrives_whole_once_it_reads() {
    // The target floods as fast as it may; the client reads nothing for a while (the memory
    // side of this is also in tests/websocket.rs); then every byte must arrive, in order.
    const TOTAL: usize = 256 << 20;
    let port = target(|mut s: TcpStream| async move {
        let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < TOTAL {
            if s.write_all(&block).await.is_err() {
                return;
            }
            sent += block.len();
        }
        let _ = s.shutdown().await;
    })
    .await;
    let target_addr = format!("127.0.0.1:{port}");
    let proxy = Proxy::start(&["127.0.0.1:0", &target_addr]);
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = rss_kib(pid);
    assert!(
        stalled < before + 32 * 1024,
        "RSS grew from {before} KiB to {stalled} KiB while the client did not read"
    );
    // Everything still arrives, in order, once the client reads.
    let mut expected = 0usize;
    let mut got = 0usize;
    while got < TOTAL {
        let frame = raw.read_frame().await.expect("the stream ended early");
        if frame.opcode == 8 {
            break;
        }
        for b in &frame.payload {
            assert_eq!(*b, ((expected % 65536) % 251) as u8, "byte {got} differs");
            expected += 1;
            got += 1;
        }
    }
    assert_eq!(got, TOTAL);
}

#[tokio::test]
async fn a_target_that_never_reads_costs_bounded_memory() {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let port = target(move |s: TcpStream| {
        let mut stop = stop_rx.clone();
        async move {
            // Holds the connection and never reads until told.
            let _ = stop.wait_for(|s| *s).await;
            drop(s);
        }
    })
    .await;
    let target_addr = format!("127.0.0.1:{port}");
    let proxy = Proxy::start(&["127.0.0.1:0", &target_addr]);
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    let (raw, _) = Raw::upgrade(proxy.port, &[]).await;
    let (_, mut w) = raw.stream.into_split();
    let frame = encode_frame(true, 2, &vec![9u8; 1 << 20], Some([1, 2, 3, 4]));
    // The client may write until the buffers on the way are full, then its writes wait.
    let mut written = 0usize;
    let wrote_everything = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..512 {
            w.write_all(&frame).await?;
            written += frame.len();
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    assert!(
        wrote_everything.is_err(),
        "512 MiB went into a target that reads nothing: no backpressure"
    );
    let stalled = rss_kib(pid);
    assert!(
        stalled < before + 32 * 1024,
        "RSS grew from {before} KiB to {stalled} KiB while the target did not read \
         ({written} bytes accepted from the client)"
    );
    let _ = stop_tx.send(true);
}

#[test]
fn limit_settings_that_cannot_work_are_refused_naming_the_setting() {
    let err = fails(&["--max-message-size", "12", "6080", "h:1"], 2);
    assert!(
        err.contains("--max-message-size") && err.contains("1KiB"),
        "{err}"
    );
    let err = fails(&["--max-message-size", "lots", "6080", "h:1"], 2);
    assert!(err.contains("e.g. 64MiB"), "{err}");
    let err = fails(&["--allow-target", "10.0.0.0/8,bad host", "6080", "h:1"], 2);
    assert!(
        err.contains("--allow-target") && err.contains("CIDR"),
        "{err}"
    );
    let err = fails(&["--max-connections", "many", "6080", "h:1"], 2);
    assert!(
        err.contains("--max-connections") && err.contains("whole number"),
        "{err}"
    );
    let out = common::command(&[
        "--print-config",
        "--allow-target",
        "10.0.0.0/8:5900-5999",
        "--allow-target",
        "vnc:*",
        "--max-message-size",
        "2M",
        "6080",
        "h:1",
    ])
    .output()
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(r#"allow_target = ["10.0.0.0/8:5900-5999", "vnc:*"]"#),
        "{printed}"
    );
    assert!(
        printed.contains(r#"max_message_size = "2MiB""#),
        "{printed}"
    );
}
