//! Liveness through the real binary: what the proxy writes to (its log) can stall, and that
//! costs log lines, never sessions.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

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
