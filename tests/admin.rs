//! The admin API on the operations port (`--admin-token`): `/sessions` lists the live
//! sessions of a real proxy, `DELETE /sessions/{id}` ends one with 1008, a request without
//! the token is 401 and counted, no token ever appears in the list, and `websockify sessions`
//! prints the same from the command line. (Sessions over HTTP/2: tests/http2.rs.)

mod common;

use std::time::Duration;

use common::*;

const ADMIN: &str = "admin-9f8e7d6c5b4a39281706";
const SESSION_TOKEN: &str = "tok-SECRET-admin-7d1";

fn list(port: u16) -> Vec<serde_json::Value> {
    let (status, _, body) = ops_request(port, "GET", "/sessions", Some(ADMIN));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

fn counted(port: u16, result: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics");
    let needle = format!("websockify_admin_requests_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A proxy with the admin API and a token file naming the echo target.
async fn admin_proxy(extra: &[&str]) -> (Proxy, u16) {
    let echo = echo_target().await;
    let dir = std::env::temp_dir().join(format!("admin-{}-{echo}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{SESSION_TOKEN}: 127.0.0.1:{echo}\n")).unwrap();
    let mut args = vec![
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-token",
        ADMIN,
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push("127.0.0.1:0");
    let proxy = Proxy::start(&args);
    let port = metrics_port(&proxy);
    (proxy, port)
}

#[tokio::test]
async fn lists_sessions_and_ends_one_with_1008() {
    let (proxy, port) = admin_proxy(&[]).await;
    assert!(list(port).is_empty());

    // Two sessions: one binary, one base64, the token in the query.
    let path = format!("GET /websockify?token={SESSION_TOKEN}");
    let head = |protocol: &str| {
        upgrade_request(&[&format!("Sec-WebSocket-Protocol: {protocol}")]).replacen(
            "GET /websockify",
            &path,
            1,
        )
    };
    let mut a = Raw::connect(proxy.port).await;
    assert_eq!(a.request(&head("binary")).await.status, 101);
    let mut b = Raw::connect(proxy.port).await;
    assert_eq!(b.request(&head("base64")).await.status, 101);
    a.send_binary(&[7; 1000]).await;
    assert_eq!(a.read_data(1000).await, vec![7; 1000]);

    let mut sessions = list(port);
    for _ in 0..50 {
        if sessions.len() == 2 && sessions[0]["bytes_to_client"] == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sessions = list(port);
    }
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (first, second) = (&sessions[0], &sessions[1]);
    assert!(first["id"].as_u64() < second["id"].as_u64());
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["target"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(first["transport"], "http1");
    assert_eq!(first["protocol"], "hybi-13");
    assert_eq!(first["subprotocol"], "binary");
    assert_eq!(second["subprotocol"], "base64");
    assert_eq!(first["compression"], serde_json::Value::Null);
    assert_eq!(first["tls"], false);
    assert_eq!(first["bytes_from_client"], 1000);
    assert_eq!(first["bytes_to_client"], 1000);
    for key in ["started", "last_activity"] {
        assert!(first[key].as_str().unwrap().ends_with('Z'), "{first}");
    }
    assert!(first["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(first["idle_seconds"].as_f64().unwrap() >= 0.0);
    // Never a token, in any form the client sent it.
    let (_, _, raw) = ops_request(port, "GET", "/sessions", Some(ADMIN));
    assert!(
        !raw.contains(SESSION_TOKEN) && !raw.contains("token"),
        "{raw}"
    );

    // One session alone: the same object.
    let id = first["id"].as_u64().unwrap();
    let (status, _, one) = ops_request(port, "GET", &format!("/sessions/{id}"), Some(ADMIN));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap()["id"],
        id
    );

    // Ended: 202, then close 1008 with the reason, logged; the other session goes on.
    let (status, _, body) = ops_request(
        port,
        "DELETE",
        &format!("/sessions/{id}?reason=maintenance%20window"),
        Some(ADMIN),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        a.read_close().await,
        (1008, "maintenance window".to_string())
    );
    a.send_close(1008, "").await;
    let line = proxy.wait_log("ended by an operator", Duration::from_secs(10));
    assert!(line.contains("1008"), "{line}");
    b.send_frame(true, 1, b"aGVsbG8=", true).await;
    let echoed = b.read_frame().await.unwrap();
    assert_eq!(echoed.payload, b"aGVsbG8=");
    let mut left = list(port);
    for _ in 0..50 {
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = list(port);
    }
    assert_eq!(left.len(), 1);
    assert_ne!(left[0]["id"], id);

    // Gone: 404; not a number: 404; a method it does not take: 405.
    for (method, path, want) in [
        ("DELETE", format!("/sessions/{id}"), 404),
        ("DELETE", "/sessions/nine".to_string(), 404),
        ("POST", "/sessions".to_string(), 405),
    ] {
        let (status, _, body) = ops_request(port, method, &path, Some(ADMIN));
        assert_eq!(status, want, "{method} {path}: {body}");
    }
    let metrics = http_get(port, "/metrics").1;
    let ended =
        r#"websockify_sessions_ended_total{close_code="1008",outcome="closed_by_operator"} 1"#;
    assert!(metrics.contains(ended), "{metrics}");
    assert!(counted(port, "ended") >= 1.0);
}

#[tokio::test]
async fn without_the_token_it_is_401_counted_and_logged() {
    let (proxy, port) = admin_proxy(&[]).await;
    for (method, token) in [
        ("GET", None),
        ("GET", Some("admin-wrong-wrong-wrong-00")),
        ("DELETE", None),
    ] {
        let (status, head, body) = ops_request(port, method, "/sessions/1", token);
        assert_eq!(status, 401, "{body}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
        assert!(!body.contains(ADMIN));
    }
    assert_eq!(counted(port, "unauthorized"), 3.0);
    proxy.wait_log("401", Duration::from_secs(5));
    assert!(!proxy.log().contains(ADMIN), "the token reached the log");
    // The proxy port never serves the API.
    let (status, _) = http_get(proxy.port, "/sessions");
    assert_ne!(status, 200);
}

#[test]
fn off_without_a_token_and_refused_without_the_ops_port() {
    let proxy = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "127.0.0.1:0",
        "127.0.0.1:1",
    ]);
    let port = metrics_port(&proxy);
    let (status, _, body) = ops_request(port, "GET", "/sessions", Some(ADMIN));
    assert_eq!(status, 404);
    assert!(body.contains("--admin-token"), "{body}");

    let err = fails(&["--admin-token", ADMIN, "127.0.0.1:0", "127.0.0.1:1"], 2);
    assert!(
        err.contains("--admin-token needs --metrics-listen"),
        "{err}"
    );
    let err = fails(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--admin-token",
            "short",
            "127.0.0.1:0",
            "127.0.0.1:1",
        ],
        2,
    );
    assert!(err.contains("at least 16"), "{err}");
    let err = fails(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--admin-token-file",
            "/nonexistent/admin-token",
            "127.0.0.1:0",
            "127.0.0.1:1",
        ],
        2,
    );
    assert!(
        err.contains("--admin-token-file /nonexistent/admin-token"),
        "{err}"
    );
    let printed = command(&[
        "--admin-token",
        ADMIN,
        "--print-config",
        "127.0.0.1:0",
        "127.0.0.1:1",
    ])
    .output()
    .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("admin_token = \"<redacted>\""),
        "{printed}"
    );
}

#[tokio::test]
async fn the_sessions_command_prints_the_table_and_closes() {
    let dir = std::env::temp_dir().join(format!("admin-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let (proxy, port) = admin_proxy(&[]).await;
    let path = format!("GET /websockify?token={SESSION_TOKEN}");
    let mut a = Raw::connect(proxy.port).await;
    let head = upgrade_request(&[]).replacen("GET /websockify", &path, 1);
    assert_eq!(a.request(&head).await.status, 101);
    let url = format!("127.0.0.1:{port}");

    let run = |args: &[&str], env_token: bool| {
        let mut cmd = command(&["sessions", "--url", &url]);
        cmd.args(args);
        if env_token {
            cmd.env("WEBSOCKIFY_ADMIN_TOKEN", ADMIN);
        }
        cmd.output().unwrap()
    };
    let out = run(&[], true);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("TARGET"),
        "{table}"
    );
    assert!(
        lines[1].contains("http1") && lines[1].contains("hybi-13/binary"),
        "{table}"
    );
    assert_eq!(lines.last(), Some(&"1 session(s)"));
    let id = lines[1].split_whitespace().next().unwrap().to_string();

    let out = run(
        &["--json", "--admin-token-file", token_file.to_str().unwrap()],
        false,
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sessions"][0]["id"].to_string(), id);

    let out = run(&["--admin-token", "admin-wrong-wrong-wrong-00"], false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("admin token"), "{err}");

    let out = run(&["--close", &id, "--reason", "bye now"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.read_close().await, (1008, "bye now".to_string()));

    let out = run(&[], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin token"));
    let out = command(&["sessions", "--url", "127.0.0.1:1", "--admin-token", ADMIN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("asking http://127.0.0.1:1"));
}
