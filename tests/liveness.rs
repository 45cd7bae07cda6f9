//! Liveness (issue 22): no client, plugin or disk holds a session, a worker or the process
//! forever. Each test is what a hostile or unlucky peer did on the code before, through the
//! real binary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A target that floods every connection until the proxy drops it; `closed` turns true when
/// it has (a write fails), and `connected` when the flood began.
struct Flood {
    port: u16,
    connected: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

async fn flood() -> Flood {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connected = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let (c, d) = (connected.clone(), closed.clone());
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        c.store(true, Ordering::SeqCst);
        let block = vec![0x5a_u8; 64 << 10];
        while s.write_all(&block).await.is_ok() {}
        d.store(true, Ordering::SeqCst);
    });
    Flood {
        port,
        connected,
        closed,
    }
}

/// Waits until `flag` is set, or panics after `within`; returns how long it took.
async fn until(flag: &AtomicBool, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(started.elapsed() < within, "{what} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A session through `proxy` whose client reads nothing after the handshake, while its
/// target floods: the case where sends to the client had no deadline.
async fn stalled_reader(proxy: &Proxy, flood: &Flood) -> Raw {
    let (raw, _) = Raw::upgrade(proxy.port, &[]).await;
    until(
        &flood.connected,
        Duration::from_secs(5),
        "the target was not reached",
    )
    .await;
    raw
}

#[tokio::test]
async fn a_stalled_reader_is_idle_for_the_session_idle_timeout() {
    let flood = flood().await;
    let proxy = Proxy::start(&[
        "--session-idle-timeout",
        "3",
        "127.0.0.1:0",
        &format!("127.0.0.1:{}", flood.port),
    ]);
    let _stalled = stalled_reader(&proxy, &flood).await;
    let took = until(&flood.closed, Duration::from_secs(10), "target still open").await;
    assert!(took >= Duration::from_secs(2), "{took:?}");
    proxy.wait_log("--session-idle-timeout", Duration::from_secs(5));
}

#[tokio::test]
async fn a_stalled_reader_cannot_be_pinged_and_is_dropped() {
    let flood = flood().await;
    let proxy = Proxy::start(&[
        "--heartbeat",
        "2",
        "127.0.0.1:0",
        &format!("127.0.0.1:{}", flood.port),
    ]);
    let _stalled = stalled_reader(&proxy, &flood).await;
    until(&flood.closed, Duration::from_secs(10), "target still open").await;
    proxy.wait_log("client unresponsive", Duration::from_secs(5));
}

#[tokio::test]
async fn sigterm_ends_a_stalled_reader_within_the_grace_and_others_flow_meanwhile() {
    let flood = flood().await;
    let echo = echo_target().await;
    // Two targets through one proxy: a token file names them.
    let d = std::env::temp_dir().join(format!("websockify-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let tokens = d.join("tokens");
    std::fs::write(
        &tokens,
        format!("flood: 127.0.0.1:{}\necho: 127.0.0.1:{echo}\n", flood.port),
    )
    .unwrap();
    let mut proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "--shutdown-grace",
        "2",
        "127.0.0.1:0",
    ]);
    let with_token = |token: &str| format!("GET /websockify?token={token} HTTP/1.1");
    let mut stalled = Raw::connect(proxy.port).await;
    let head = upgrade_request(&[]).replacen("GET /websockify HTTP/1.1", &with_token("flood"), 1);
    assert_eq!(stalled.request(&head).await.status, 101);
    until(
        &flood.connected,
        Duration::from_secs(5),
        "the target was not reached",
    )
    .await;
    // Meanwhile another session keeps its pace: 16 MiB both ways in a few seconds.
    let (mut raw, _) = {
        let mut raw = Raw::connect(proxy.port).await;
        let head =
            upgrade_request(&[]).replacen("GET /websockify HTTP/1.1", &with_token("echo"), 1);
        let answer = raw.request(&head).await;
        (raw, answer)
    };
    let data = vec![3u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..16 {
        raw.send_binary(&data).await;
        assert_eq!(raw.read_data(data.len()).await.len(), data.len());
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(raw);
    // The stalled session hears the 1001 when the grace ends (not the final bound, 6 s
    // later, which was all that ended it before).
    let signalled = Instant::now();
    proxy.signal("TERM");
    proxy.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = proxy.log();
    assert!(log.contains("session ended: server shutting down"), "{log}");
    assert!(!log.contains("did not close within"), "{log}");
    drop(stalled);
    let _ = std::fs::remove_dir_all(&d);
}

/// The client's pings are answered even while a message to it is stuck: the receiving half
/// never waits behind the sending one.
#[tokio::test]
async fn client_data_flows_while_a_message_to_it_is_stuck() {
    // The target echoes what it gets, then floods: a client that reads nothing after the
    // first message still gets its data to the target.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::spawn(async move {
            let block = vec![1u8; 64 << 10];
            while w.write_all(&block).await.is_ok() {}
        });
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || got_tx.send(n).is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&["127.0.0.1:0", &format!("127.0.0.1:{port}")]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    // Let the flood fill every buffer toward the client.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        // A ping, then data: the ping's pong cannot be written, and must not hold the data.
        raw.send_frame(true, 9, b"hello?", true).await;
        raw.send_binary(&[9u8; 1000]).await;
    }
    let mut total = 0;
    while total < 20_000 {
        let n = tokio::time::timeout(Duration::from_secs(5), got_rx.recv())
            .await
            .expect("the client's data stopped behind a message to it")
            .unwrap();
        total += n;
    }
    drop(raw);
}

/// A flood of silent connections: the proxy accepted every one and spent a descriptor on
/// each (1,320 held during such a flood with `--max-connections 100`). Now a connection is
/// counted at accept and at most the limit plus a headroom for handshakes is open; the rest
/// wait in the listen backlog, and a client that comes once they are gone is served.
#[tokio::test]
async fn a_flood_of_silent_connections_holds_a_bounded_number_of_descriptors() {
    // This test's own side needs a descriptor per connection.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--max-connections",
        "100",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let pid = proxy.child.id();
    let baseline = open_fds(pid).len();
    let port = proxy.port;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        attempts.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            .ok()
            .and_then(Result::ok)
        });
    }
    let mut silent = Vec::new();
    let mut peak = 0;
    while let Some(attempt) = attempts.join_next().await {
        if let Ok(Some(stream)) = attempt {
            silent.push(stream);
        }
        peak = peak.max(open_fds(pid).len());
    }
    for _ in 0..20 {
        peak = peak.max(open_fds(pid).len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        silent.len() >= 100,
        "only {} connections made",
        silent.len()
    );
    let held = peak.saturating_sub(baseline);
    // The limit, its headroom of 64 for handshakes, and a few more: never one per attempt.
    assert!(
        held <= 2 * 100 + 40,
        "{held} descriptors held for {} silent connections",
        silent.len()
    );
    drop(silent);
    // A well-behaved client once the silent ones are gone.
    let started = Instant::now();
    let (mut raw, _) = tokio::time::timeout(Duration::from_secs(20), Raw::upgrade(port, &[]))
        .await
        .expect("no session after the flood");
    raw.send_binary(b"served").await;
    assert_eq!(raw.read_data(6).await, b"served");
    assert!(started.elapsed() < Duration::from_secs(20));
}
