//! `--web DIR` through the real binary: files, listings, redirects, conditional and range
//! requests, and every traversal attempt refused.

mod common;

use std::path::PathBuf;

use common::*;
use tokio::io::AsyncWriteExt;

/// A web root with files, a subdirectory, and a secret outside it (plus a symlink to it).
fn site(name: &str) -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!("websockify-web-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("www");
    std::fs::create_dir_all(root.join("app/core")).unwrap();
    std::fs::write(root.join("app/vnc.html"), "<html>vnc</html>").unwrap();
    std::fs::write(root.join("app/core/rfb.js"), "export default 1;\n").unwrap();
    std::fs::write(root.join("data.bin"), (0u8..=255).collect::<Vec<u8>>()).unwrap();
    std::fs::write(base.join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&base, root.join("up")).unwrap();
    (base, root)
}

async fn web_proxy(root: &std::path::Path, extra: &[&str]) -> Proxy {
    let echo = echo_target().await;
    let mut args = vec!["--web", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    let target = format!("127.0.0.1:{echo}");
    args.push("127.0.0.1:0");
    args.push(&target);
    Proxy::start(&args)
}

/// Sends one raw request and returns (answer, body).
async fn fetch(port: u16, request: &str) -> (Answer, Vec<u8>) {
    let mut raw = Raw::connect(port).await;
    raw.stream.write_all(request.as_bytes()).await.unwrap();
    let answer = raw.read_answer().await;
    let body = raw.read_to_end().await;
    (answer, body)
}

async fn get(port: u16, path: &str, headers: &str) -> (Answer, Vec<u8>) {
    fetch(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
    )
    .await
}

#[tokio::test]
async fn files_with_types_and_head() {
    let (_base, root) = site("files");
    let proxy = web_proxy(&root, &[]).await;
    let (answer, body) = get(proxy.port, "/app/vnc.html", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(body, b"<html>vnc</html>");
    let (answer, body) = get(proxy.port, "/app/core/rfb.js", "").await;
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .contains("javascript"),
        "{}",
        answer.head
    );
    assert_eq!(body, b"export default 1;\n");

    let (answer, body) = fetch(proxy.port, "HEAD /app/vnc.html HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length").as_deref(), Some("16"));
    assert!(body.is_empty(), "HEAD has no body");
    proxy.wait_log("GET /app/vnc.html", std::time::Duration::from_secs(5));

    let (answer, _) = get(proxy.port, "/missing.html", "").await;
    assert_eq!(answer.status, 404);
    let (answer, _) = fetch(
        proxy.port,
        "POST /app/vnc.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow").as_deref(), Some("GET, HEAD"));
}

#[tokio::test]
async fn index_listing_and_file_only() {
    let (_base, root) = site("index");
    let proxy = web_proxy(&root, &[]).await;
    let (answer, body) = get(proxy.port, "/app/", "").await;
    assert_eq!(answer.status, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("<a href=\"core/\">core/</a>"), "{html}");
    assert!(html.contains("<a href=\"vnc.html\">vnc.html</a>"), "{html}");

    std::fs::write(root.join("app/index.html"), "INDEX").unwrap();
    let (_, body) = get(proxy.port, "/app/", "").await;
    assert_eq!(body, b"INDEX");

    let proxy = web_proxy(&root, &["--file-only"]).await;
    let (answer, _) = get(proxy.port, "/app/core/", "").await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn directory_without_slash_redirects_relatively() {
    let (_base, root) = site("redirect");
    let proxy = web_proxy(&root, &[]).await;
    let (answer, _) = get(proxy.port, "/app/core?x=1", "").await;
    assert_eq!(answer.status, 301);
    assert_eq!(answer.header("location").as_deref(), Some("core/?x=1"));
    // The open-redirect shape gets 400, never a Location.
    for path in ["//evil.example/", "//evil.example/app", "//"] {
        let (answer, _) = get(proxy.port, path, "").await;
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(answer.header("location"), None);
    }
}

#[tokio::test]
async fn traversal_never_escapes() {
    let (_base, root) = site("traversal");
    let proxy = web_proxy(&root, &[]).await;
    for path in [
        "/../secret.txt",
        "/app/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/app/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/app%00/vnc.html",
        "/escape",
        "/up/secret.txt",
        "/up/",
    ] {
        let (answer, body) = get(proxy.port, path, "").await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{path}: {}",
            answer.status
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("TOP SECRET"),
            "{path} leaked a file outside the web root"
        );
    }
    // An absolute-form request target only uses its path.
    let (answer, body) = get(proxy.port, "http://evil.example/../secret.txt", "").await;
    assert!(answer.status == 400 || answer.status == 404);
    assert!(!String::from_utf8_lossy(&body).contains("TOP SECRET"));
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let (_base, root) = site("ranges");
    let proxy = web_proxy(&root, &[]).await;
    let (answer, body) = get(proxy.port, "/data.bin", "Range: bytes=10-19\r\n").await;
    assert_eq!(answer.status, 206);
    assert_eq!(body, (10u8..=19).collect::<Vec<u8>>());
    assert_eq!(
        answer.header("content-range").as_deref(),
        Some("bytes 10-19/256")
    );
    let (answer, _) = get(proxy.port, "/data.bin", "Range: bytes=300-400\r\n").await;
    assert_eq!(answer.status, 416);

    let (full, _) = get(proxy.port, "/data.bin", "").await;
    let etag = full.header("etag").expect("an ETag");
    let modified = full.header("last-modified").expect("a Last-Modified");
    let (answer, body) = get(
        proxy.port,
        "/data.bin",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(answer.status, 304);
    assert!(body.is_empty());
    let (answer, _) = get(
        proxy.port,
        "/data.bin",
        &format!("If-Modified-Since: {modified}\r\n"),
    )
    .await;
    assert_eq!(answer.status, 304);
    let (answer, _) = get(proxy.port, "/data.bin", "If-None-Match: \"other\"\r\n").await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn websocket_still_works_on_any_path_with_web() {
    let (_base, root) = site("ws");
    let proxy = web_proxy(&root, &[]).await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"through web").await;
    assert_eq!(raw.read_data(11).await, b"through web");
    let head = upgrade_request(&[]).replace("GET /websockify", "GET /app/vnc.html");
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request(&head).await.status, 101);
}

#[test]
fn a_missing_web_directory_is_a_startup_error() {
    let err = fails(
        &["--web", "/nonexistent/www", "127.0.0.1:0", "127.0.0.1:1"],
        1,
    );
    assert!(err.contains("--web /nonexistent/www"), "{err}");
}

/// The landing page's live numbers: aggregates from the metrics, moving with real sessions,
/// never cached, and nothing that names a client, a target or a token.
#[tokio::test]
async fn status_json_counts_sessions_and_bytes() {
    let (_base, root) = site("status");
    let tokens = root.parent().unwrap().join("tokens.cfg");
    let echo = echo_target().await;
    std::fs::write(&tokens, format!("sekrit-token: 127.0.0.1:{echo}\n")).unwrap();
    let proxy = Proxy::start(&[
        "--web",
        root.to_str().unwrap(),
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    let status = |port| async move {
        let (answer, body) = get(port, "/websockify/status.json", "").await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(
            answer.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));
        let text = String::from_utf8(body).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        (json, text)
    };
    let (before, _) = status(proxy.port).await;
    assert_eq!(before["sessions_active"], 0);
    assert_eq!(before["sessions_total"], 0);
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert!(before["uptime_seconds"].as_u64().unwrap() < 60, "{before}");
    // The server samples its history from the start: the first sample is taken before it
    // listens, the start page's chart begins there.
    let first = &before["history"][0];
    assert_eq!(first["sessions_active"], 0, "{before}");
    assert_eq!(first["bytes_from_client"], 0, "{before}");
    assert!(
        first["uptime_ms"].as_u64().unwrap() <= before["uptime_ms"].as_u64().unwrap(),
        "{before}"
    );

    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw.request(&upgrade_request(&[])).await;
    assert_eq!(answer.status, 404, "no token: refused, not a session");
    let head = upgrade_request(&[]).replace("/websockify", "/websockify?token=sekrit-token");
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request(&head).await.status, 101);
    raw.send_binary(&[7u8; 1000]).await;
    assert_eq!(raw.read_data(1000).await, vec![7u8; 1000]);
    // The proxy counts a message once its write returned, which on a multi-thread runtime
    // can be a moment after the client has it: the count is waited for, not raced.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (during, text) = loop {
        let (during, text) = status(proxy.port).await;
        if during["bytes_to_client"] == 1000 || std::time::Instant::now() > deadline {
            break (during, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(during["sessions_active"], 1, "{during}");
    assert_eq!(during["sessions_total"], 1, "{during}");
    assert_eq!(during["bytes_from_client"], 1000, "{during}");
    assert_eq!(during["bytes_to_client"], 1000, "{during}");
    for secret in ["127.0.0.1", "sekrit", &echo.to_string()] {
        assert!(!text.contains(secret), "{secret} in the status: {text}");
    }
    raw.send_close(1000, "").await;
    raw.read_close().await;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (after, _) = status(proxy.port).await;
        if after["sessions_active"] == 0 {
            assert_eq!(after["sessions_total"], 1, "{after}");
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the session never ended: {after}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (answer, body) = fetch(
        proxy.port,
        "HEAD /websockify/status.json HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(body.is_empty(), "HEAD has no body");
}

#[tokio::test]
async fn no_status_without_web() {
    let proxy = echo_proxy_with(&[]).await;
    let (answer, _) = get(proxy.port, "/websockify/status.json", "").await;
    assert_eq!(answer.status, 405);
}
