//! The findings of the security review (issue 26), each reproduced as the attacker did it, on
//! loopback against the real binary: every test here failed before its fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-sec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 4. A close reason with line breaks wrote a second, real-looking log line (`INFO FAKE admin
/// login`); now every control character in a line is escaped.
#[tokio::test]
async fn a_close_reason_cannot_forge_a_log_line() {
    let proxy = echo_proxy_with(&[]).await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_close(
        1000,
        "bye\n2026-12-03T10:00:00.000000Z  INFO FAKE admin login\r\tok",
    )
    .await;
    raw.read_close().await;
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    let forged: Vec<&str> = log.lines().filter(|l| l.contains("FAKE")).collect();
    assert_eq!(forged.len(), 1, "{log}");
    assert!(
        forged[0].contains("session ended") && forged[0].contains("bye\\n2026-12-03T10"),
        "the reason stays on its session's line, escaped: {log}"
    );
    assert!(forged[0].contains("\\r\\tok"), "{log}");
}

/// 6. `--record` followed a symlink planted at `FILE.1` and wrote the session's bytes (what a
/// user typed) over its target, in a world-readable file. Now a recording is created new,
/// mode 0600, and a name that is taken ends the recording, not the session.
#[tokio::test]
async fn recordings_are_new_private_files_and_never_follow_a_symlink() {
    let d = dir("record");
    let victim = d.join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("rec.1")).unwrap();
    let echo = echo_target().await;
    let base = d.join("rec");
    let proxy = Proxy::start(&[
        "--record",
        base.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    for n in 1..=2u8 {
        let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
        raw.send_binary(b"password").await;
        assert_eq!(raw.read_data(8).await, b"password", "session {n} goes on");
        raw.send_close(1000, "").await;
        raw.read_close().await;
    }
    let log = proxy.wait_log("not recording to", Duration::from_secs(5));
    assert!(log.contains("rec.1") && log.contains("taken"), "{log}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let second = d.join("rec.2");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&second)
        .unwrap_or_default()
        .ends_with("'EOF'];\n")
    {
        assert!(std::time::Instant::now() < end, "rec.2 was not finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&second).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// A proxy serving `d` as its web directory.
async fn web_proxy(d: &std::path::Path, extra: &[&str]) -> Proxy {
    let mut args = vec!["--web", d.to_str().unwrap()];
    args.extend_from_slice(extra);
    echo_proxy_with(&args).await
}

/// 1. A 7.8 KB request of 2,600 overlapping ranges got `206` with a `Content-Length` of
/// 10,905,575,266 for a 4 MiB file; now overlapping or too many ranges get the whole file,
/// once, and separate ranges still get `206`.
#[tokio::test]
async fn overlapping_ranges_get_the_file_once() {
    let d = dir("ranges");
    std::fs::write(d.join("big.bin"), vec![7u8; 4 << 20]).unwrap();
    let proxy = web_proxy(&d, &[]).await;
    let get = |range: String| {
        let port = proxy.port;
        async move {
            let mut raw = Raw::connect(port).await;
            let head = format!("GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: {range}\r\n\r\n");
            let answer = raw.request(&head).await;
            let body = raw.read_to_end().await;
            (answer, body.len())
        }
    };
    let attack = format!("bytes={}", vec!["0-"; 2600].join(","));
    assert!(attack.len() < 8000);
    let (answer, read) = get(attack).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.header("content-length").as_deref(), Some("4194304"));
    assert_eq!(read, 4 << 20);
    let (answer, _) = get("bytes=0-9,100-109".to_string()).await;
    assert_eq!(answer.status, 206, "{}", answer.head);
    let (answer, read) = get("bytes=10-19".to_string()).await;
    assert_eq!((answer.status, read), (206, 10), "{}", answer.head);
    std::fs::remove_dir_all(&d).unwrap();
}

/// 2 and 7. `--allow-target unix:DIR/` was checked lexically, so a token leading to
/// `DIR/../evil.sock` reached a socket outside DIR; and the list was enforced after the
/// `101` (close 1008), while an unknown token got `404`, so a client learnt which tokens are
/// valid. Now the target is checked in normal form, its symlinks resolved, before anything is
/// answered: `403 target not allowed`, as for a network rule.
#[tokio::test]
async fn the_allow_list_is_decided_before_the_answer_on_the_real_path() {
    let d = dir("unix-allow");
    let (allowed, outside) = (d.join("vnc"), d.join("other"));
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let evil = outside.join("evil.sock");
    let listener = tokio::net::UnixListener::bind(&evil).unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = reached.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let tokens = d.join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "dotted: unix_socket:{0}/../other/evil.sock\nmissing: unix_socket:{0}/none.sock\n",
            allowed.display()
        ),
    )
    .unwrap();
    let rule = format!("unix:{}/", allowed.display());
    let proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "--allow-target",
        &rule,
        "127.0.0.1:0",
    ]);
    let ask = |token: &'static str| {
        let port = proxy.port;
        async move {
            let head = upgrade_request(&[]).replacen(
                "GET /websockify HTTP/1.1",
                &format!("GET /websockify?token={token} HTTP/1.1"),
                1,
            );
            let mut raw = Raw::connect(port).await;
            raw.request(&head).await.status
        }
    };
    assert_eq!(ask("dotted").await, 403);
    assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
    // An allowed path whose socket is missing is a valid token that leads nowhere yet: 101,
    // then 1011, as without a list.
    assert_eq!(ask("missing").await, 101);
    let log = proxy.wait_log("is not an allowed target", Duration::from_secs(5));
    assert!(log.contains("target refused: target not allowed"), "{log}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// 3. With `--max-connections 5`, five clients that asked for a large file and never read
/// kept every WebSocket client at `503` for as long as they liked. Now web requests have a
/// share of the limit of their own (half), and a client that takes no byte for
/// `--send-timeout` is dropped.
#[tokio::test]
async fn clients_that_never_read_a_file_cannot_hold_every_place() {
    let d = dir("stalled-web");
    std::fs::write(d.join("big.bin"), vec![1u8; 64 << 20]).unwrap();
    let proxy = web_proxy(&d, &["--max-connections", "5", "--send-timeout", "2"]).await;
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut raw = Raw::connect(proxy.port).await;
        use tokio::io::AsyncWriteExt;
        raw.stream
            .write_all(b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        stalled.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut session, _) = Raw::upgrade(proxy.port, &[]).await;
    session.send_binary(b"still room").await;
    assert_eq!(session.read_data(10).await, b"still room");
    // The stalled ones are dropped after --send-timeout, and the waiting ones then served.
    proxy.wait_log(
        "took no byte for 2s (--send-timeout)",
        Duration::from_secs(10),
    );
    let started = std::time::Instant::now();
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw
        .request("GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\n")
        .await;
    assert_eq!(answer.status, 206, "{}", answer.head);
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(stalled);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Hygiene: a silent connection closed at the sniff timeout wrote an INFO line each (2,000
/// lines for a 2,000-connection flood); now it is counted, and logged at debug level only.
#[tokio::test]
async fn silent_connections_are_counted_not_logged_one_by_one() {
    let proxy = echo_proxy_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics = metrics_port(&proxy);
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(Raw::connect(proxy.port).await);
    }
    for raw in &mut silent {
        assert!(raw.closed_within(Duration::from_secs(6)).await);
    }
    let series = r#"websockify_handshake_failures_total{reason="silent",status="none"}"#;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, page) = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics"))
            .await
            .unwrap();
        if page.lines().any(|l| l == format!("{series} 20")) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "{series} not 20 in\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!proxy.log().contains("sent nothing"), "{}", proxy.log());
}

/// Hygiene: a token can come from a cookie, which any site a user visits makes the browser
/// send (cross-site WebSocket hijacking): said at start unless an Origin check is configured.
#[tokio::test]
async fn cookie_tokens_without_an_origin_check_are_warned_of() {
    let d = dir("cookie-warning");
    let tokens = d.join("tokens");
    std::fs::write(&tokens, "vm1: 127.0.0.1:5900\n").unwrap();
    let source = tokens.to_str().unwrap();
    let base = ["--token-plugin", "TokenFile", "--token-source", source];
    let warning = "cross-site WebSocket hijacking";
    let proxy = Proxy::start(&[&base[..], &["127.0.0.1:0"]].concat());
    proxy.wait_log(warning, Duration::from_secs(5));
    let checked = [
        &base[..],
        &[
            "--auth-plugin",
            "ExpectOrigin",
            "--auth-source",
            "https://example.com",
        ],
        &["127.0.0.1:0"],
    ]
    .concat();
    let proxy = Proxy::start(&checked);
    proxy.wait_log("proxying from", Duration::from_secs(5));
    assert!(!proxy.log().contains(warning), "{}", proxy.log());
    let proxy = Proxy::start(&[&base[..], &["--host-token", "127.0.0.1:0"]].concat());
    proxy.wait_log("proxying from", Duration::from_secs(5));
    assert!(!proxy.log().contains(warning), "{}", proxy.log());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Hygiene: the Flash policy answer (websockify's: any domain, any port) and the public
/// status numbers under `--web` can each be turned off.
#[tokio::test]
async fn the_flash_policy_and_the_status_page_can_be_turned_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask_flash = |port: u16| async move {
        let mut raw = Raw::connect(port).await;
        raw.stream
            .write_all(b"<policy-file-request/>\0")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = raw.stream.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    };
    let d = dir("off-switches");
    std::fs::write(d.join("index.html"), "<p>hi</p>").unwrap();
    let on = web_proxy(&d, &[]).await;
    assert!(ask_flash(on.port).await.contains("cross-domain-policy"));
    let port = on.port;
    let (status, _) =
        tokio::task::spawn_blocking(move || http_get(port, "/websockify/status.json"))
            .await
            .unwrap();
    assert_eq!(status, 200);
    let off = web_proxy(&d, &["--no-flash-policy", "--no-web-status"]).await;
    assert_eq!(ask_flash(off.port).await, "");
    let port = off.port;
    let (status, _) =
        tokio::task::spawn_blocking(move || http_get(port, "/websockify/status.json"))
            .await
            .unwrap();
    assert_eq!(status, 404);
    std::fs::remove_dir_all(&d).unwrap();
}
