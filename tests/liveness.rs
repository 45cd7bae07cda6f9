//! Liveness (issue 22): no client, plugin or disk holds a session, a worker or the process
//! forever. Each test is what a hostile or unlucky peer did on the code before, through the
//! real binary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

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

/// A token API that answers the token `good` at once (with `target`) and never answers any
/// other: it accepts, reads the request and holds the connection.
async fn slow_token_api(target: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if head.starts_with(b"GET /token/good ") {
                    let body = format!("{{\"host\": \"127.0.0.1\", \"port\": {target}}}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                } else {
                    // Never answer; hold the connection until the caller gives up.
                    let _ = s.read(&mut byte).await;
                }
            });
        }
    });
    port
}

/// A slow plugin: 600 token requests hang on an API that never answers. Plugin calls run on
/// their own threads, at most --max-plugin-calls (256) of them in flight: the rest are refused
/// at once (503, counted) rather than queued behind them, a web file and an established
/// session go on as before, and SIGTERM ends the process within its grace whatever the plugin
/// does.
#[tokio::test]
async fn a_plugin_that_never_answers_holds_only_its_own_threads() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let echo = echo_target().await;
    let api = slow_token_api(echo).await;
    let d = std::env::temp_dir().join(format!("websockify-live-web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("page.html"), "<p>still here</p>").unwrap();
    let source = format!("http://127.0.0.1:{api}/token/%s");
    let mut proxy = Proxy::start(&[
        "--token-plugin",
        "JSONTokenApi",
        "--token-source",
        &source,
        "--web",
        d.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "2",
        "127.0.0.1:0",
    ]);
    let metrics = metrics_port(&proxy);
    let port = proxy.port;
    let ask = move |token: &'static str| async move {
        let head = upgrade_request(&[]).replacen(
            "GET /websockify HTTP/1.1",
            &format!("GET /websockify?token={token} HTTP/1.1"),
            1,
        );
        let mut raw = Raw::connect(port).await;
        let status = raw.request(&head).await.status;
        (raw, status)
    };
    // A session through a token the API answers, before the flood.
    let (mut good, status) = ask("good").await;
    assert_eq!(status, 101);
    good.send_binary(b"before").await;
    assert_eq!(good.read_data(6).await, b"before");
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..600 {
        flood.spawn(async move { ask("slow").await.1 });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile: a web file at once, and the session flows.
    let started = Instant::now();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/page.html"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "<p>still here</p>"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    good.send_binary(b"during").await;
    assert_eq!(good.read_data(6).await, b"during");
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(status) = flood.join_next().await {
        *statuses.entry(status.unwrap()).or_insert(0) += 1;
    }
    // At most --max-plugin-calls (256) waited for the plugin (504, or 502 for the calls whose
    // API request timed out first); the rest were refused.
    let waited =
        statuses.get(&504).copied().unwrap_or(0) + statuses.get(&502).copied().unwrap_or(0);
    assert!(waited <= 256, "{statuses:?}");
    assert_eq!(
        waited + statuses.get(&503).copied().unwrap_or(0),
        600,
        "{statuses:?}"
    );
    let (_, page) = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics"))
        .await
        .unwrap();
    assert!(
        page.lines().any(|l| l
            .starts_with(r#"websockify_token_lookups_total{plugin="JSONTokenApi",result="busy"}"#)),
        "{page}"
    );
    proxy.wait_log(
        "calls in flight already (--max-plugin-calls)",
        Duration::from_secs(5),
    );
    drop(good);
    let signalled = Instant::now();
    proxy.signal("TERM");
    proxy.wait_exit(Duration::from_secs(12));
    assert!(signalled.elapsed() < Duration::from_secs(12));
    let _ = std::fs::remove_dir_all(&d);
}

/// A plugin that panics while an instance is dropped (after a reload, the old one) is
/// reported, and the process goes on: before, the panic crossed the C boundary and aborted it.
#[tokio::test]
async fn a_plugin_that_panics_in_destroy_is_reported_and_the_proxy_goes_on() {
    let echo = echo_target().await;
    let library = build_libraries(&["websockify-plugin-broken"]).join("libbrokenplugin.so");
    let proxy = Proxy::start(&[
        "--token-plugin",
        library.to_str().unwrap(),
        "--token-source",
        &format!("panic-on-destroy:127.0.0.1:{echo}"),
        "127.0.0.1:0",
    ]);
    let session = |port: u16| async move {
        let head = upgrade_request(&[]).replacen(
            "GET /websockify HTTP/1.1",
            "GET /websockify?token=fine HTTP/1.1",
            1,
        );
        let mut raw = Raw::connect(port).await;
        assert_eq!(raw.request(&head).await.status, 101);
        raw.send_binary(b"ok").await;
        assert_eq!(raw.read_data(2).await, b"ok");
    };
    session(proxy.port).await;
    proxy.signal("HUP");
    proxy.wait_log(
        "failed while destroying an instance: panicked while being destroyed",
        Duration::from_secs(10),
    );
    session(proxy.port).await;
}

/// `--log-file` is a FIFO whose reader never reads: once the pipe holds 64 KiB, every write
/// to it blocks, as on a hung disk. With `-v --traffic` every message is logged. Sessions must
/// keep echoing, the process must go on answering, and the lines it could not write are
/// counted in `websockify_log_lines_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sink_that_stalls_holds_no_session() {
    let dir = std::env::temp_dir().join(format!("websockify-liveness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Read and write: the proxy's open finds a reader at once, and nobody ever reads.
    let _never_read = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let echo = echo_target().await;
    let (port, metrics) = (dead_port(), dead_port());
    let cmd = command(&[
        "-v",
        "--traffic",
        "--log-file",
        fifo.to_str().unwrap(),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{echo}"),
    ]);
    let proxy = Proxy::start_on_port(cmd, port);

    let url = format!("ws://127.0.0.1:{port}/");
    let sessions: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                for n in 0..2000 {
                    let payload = format!("session {i}, message {n}").into_bytes();
                    ws.send(Message::Binary(payload.clone().into()))
                        .await
                        .unwrap();
                    let mut got = Vec::new();
                    while got.len() < payload.len() {
                        match ws.next().await {
                            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                            other => panic!("session {i}, message {n}: {other:?}"),
                        }
                    }
                    assert_eq!(got, payload);
                }
                ws.close(None).await.unwrap();
            })
        })
        .collect();
    let all = futures_util::future::join_all(sessions);
    for session in tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("the sessions froze behind a log file that is not read")
    {
        session.unwrap();
    }

    // A new session, and the metrics port, still answer.
    let (mut raw, _) = Raw::upgrade(port, &[]).await;
    raw.send_binary(b"still here").await;
    assert_eq!(raw.read_data(10).await, b"still here");
    let (status, page) = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let dropped: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("websockify_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no websockify_log_lines_dropped_total in\n{page}"));
    // 16,000 traffic lines alone, against 8,192 queued and 64 KiB in the pipe.
    assert!(dropped > 1000.0, "{dropped} lines dropped");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
