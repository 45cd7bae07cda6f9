//! The command line, the environment and the file, and the lifecycle options, through the real
//! binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("websockify-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs the binary to completion.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn version_names_the_build() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("websockify {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(!text.contains("()"), "{text}");
}

#[test]
fn help_shows_websockify_usage_and_options() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[source_addr:]source_port target_addr:target_port",
        "--unix-target=FILE",
        "-v, --verbose",
        "--run-once",
        "--idle-timeout <IDLE_TIMEOUT>",
        "-6, --prefer-ipv6",
        "--unix-listen-mode <UNIX_LISTEN_MODE>",
        "WEBSOCKIFY_IDLE_TIMEOUT",
    ] {
        assert!(text.contains(needle), "help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn wrong_flags_and_values_exit_2_naming_them() {
    let out = run(&["--timeout", "soon", "6080", "h:1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--timeout") && err.contains("'soon'"), "{err}");
    assert!(err.contains("whole number of seconds"), "{err}");

    let out = run(&["--no-such-flag", "6080", "h:1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--no-such-flag")
    );

    let out = run(&["6080", "nocolon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("target_addr:target_port") && err.contains("nocolon"),
        "{err}"
    );

    let out = run(&["notaport", "h:1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("[source_addr:]source_port")
    );

    let out = run(&["6080", "h:1"], &[("WEBSOCKIFY_HEARTBEET", "5")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("WEBSOCKIFY_HEARTBEET is not a setting (did you mean WEBSOCKIFY_HEARTBEAT?)"),
        "{err}"
    );

    let out = run(&["6080", "h:1"], &[("WEBSOCKIFY_RUN_ONCE", "perhaps")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("WEBSOCKIFY_RUN_ONCE")
    );

    let out = run(&["6080"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("no target"));
}

#[test]
fn print_config_shows_the_merged_result() {
    let file = temp_path("print.toml");
    std::fs::write(&file, "heartbeat = 9\nidle_timeout = 4\n").unwrap();
    let out = run(
        &["--print-config", "--idle-timeout", "7", "6080"],
        &[
            ("WEBSOCKIFY_CONFIG", file.to_str().unwrap()),
            ("WEBSOCKIFY_TARGET", "vnc:5900"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("target = \"vnc:5900\"  # environment variable WEBSOCKIFY_TARGET"),
        "{text}"
    );
    assert!(text.contains("heartbeat = 9  # `heartbeat` in"), "{text}");
    assert!(
        text.contains("idle_timeout = 7  # --idle-timeout"),
        "{text}"
    );
    assert!(text.contains("listen = \":6080\""), "{text}");
}

#[tokio::test]
async fn environment_alone_starts_the_proxy() {
    let echo = echo_target().await;
    let mut cmd = command(&[]);
    cmd.env("WEBSOCKIFY_LISTEN", "127.0.0.1:0")
        .env("WEBSOCKIFY_TARGET", format!("127.0.0.1:{echo}"));
    let proxy = Proxy::start_cmd(cmd);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"env").await;
    assert_eq!(raw.read_data(3).await, b"env");
}

#[tokio::test]
async fn config_file_alone_starts_the_proxy() {
    let echo = echo_target().await;
    let file = temp_path("start.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:0\"\ntarget = \"127.0.0.1:{echo}\"\n"),
    )
    .unwrap();
    let proxy = Proxy::start(&["--config", file.to_str().unwrap()]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"file").await;
    assert_eq!(raw.read_data(4).await, b"file");
}

#[tokio::test]
async fn run_once_exits_0_after_the_first_websocket_session() {
    let echo = echo_target().await;
    let mut proxy = Proxy::start(&["--run-once", "127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    // Plain HTTP does not count.
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request("GET / HTTP/1.1\r\n\r\n").await.status, 405);
    assert!(proxy.child.try_wait().unwrap().is_none());

    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"once").await;
    assert_eq!(raw.read_data(4).await, b"once");
    // Still running while the session lives, and no longer accepting: the proxy logs this
    // once it has closed its listener.
    proxy.wait_log(
        "--run-once: the WebSocket session began: no longer accepting connections",
        Duration::from_secs(10),
    );
    assert!(proxy.child.try_wait().unwrap().is_none());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .is_err()
    );
    raw.send_close(1000, "").await;
    assert!(proxy.wait_exit(Duration::from_secs(5)).success());
}

#[tokio::test]
async fn timeout_stops_accepting_and_exits() {
    let echo = echo_target().await;
    let started = Instant::now();
    let mut proxy = Proxy::start(&[
        "--timeout",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let status = proxy.wait_exit(Duration::from_secs(5));
    assert!(status.success());
    assert!(started.elapsed() >= Duration::from_secs(1));
    proxy.wait_log("--timeout reached", Duration::from_secs(1));
}

#[tokio::test]
async fn timeout_lets_a_running_session_finish() {
    let echo = echo_target().await;
    let mut proxy = Proxy::start(&[
        "--timeout",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    // Past the timeout: no new connections, but the session still works. The proxy logs this
    // once it has closed its listener.
    proxy.wait_log(
        "--timeout reached: no longer accepting connections",
        Duration::from_secs(10),
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .is_err()
    );
    raw.send_binary(b"late").await;
    assert_eq!(raw.read_data(4).await, b"late");
    raw.send_close(1000, "").await;
    assert!(proxy.wait_exit(Duration::from_secs(5)).success());
}

#[tokio::test]
async fn idle_timeout_exits_only_when_idle() {
    let echo = echo_target().await;
    let started = Instant::now();
    let mut proxy = Proxy::start(&[
        "--idle-timeout",
        "1",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    // A live session keeps it running past the idle timeout. Nothing happens to wait for (the
    // idle clock does not run while a connection is open), so this waits out the timeout.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "exited with a session open"
    );
    // A wrongly fired idle timeout would keep the process alive too, waiting for the session,
    // but it would have stopped accepting, which the log tells.
    let log = proxy.log();
    assert!(
        !log.contains("no longer accepting"),
        "stopped accepting with a session open:\n{log}"
    );
    raw.send_binary(b"alive").await;
    assert_eq!(raw.read_data(5).await, b"alive");
    raw.send_close(1000, "").await;
    let ended = Instant::now();
    assert!(proxy.wait_exit(Duration::from_secs(5)).success());
    assert!(
        ended.elapsed() >= Duration::from_millis(800),
        "{:?}",
        ended.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn unix_target() {
    let path = temp_path("target.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = Proxy::start(&["--unix-target", path.to_str().unwrap(), "127.0.0.1:0"]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"unix").await;
    assert_eq!(raw.read_data(4).await, b"unix");
}

#[tokio::test]
async fn unix_listen_with_mode() {
    let echo = echo_target().await;
    let path = temp_path("listen.sock");
    let mut cmd = command(&[
        "--unix-listen",
        path.to_str().unwrap(),
        "--unix-listen-mode",
        "0640",
        &format!("127.0.0.1:{echo}"),
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut proxy = Proxy::start_cmd(cmd);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    stream
        .write_all(upgrade_request(&[]).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    // The socket file goes away with the proxy.
    proxy.signal("TERM");
    drop(stream);
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    assert!(!path.exists());
}

#[tokio::test]
async fn inetd_takes_the_listening_socket_from_stdin() {
    let echo = echo_target().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cmd = command(&["--inetd", &format!("127.0.0.1:{echo}")]);
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)));
    let proxy = Proxy::start_cmd(cmd);
    assert_eq!(proxy.port, port);
    let (mut raw, _) = Raw::upgrade(port, &[]).await;
    raw.send_binary(b"inetd").await;
    assert_eq!(raw.read_data(5).await, b"inetd");
}

#[test]
fn inetd_without_a_socket_is_a_clear_error() {
    let out = command(&["--inetd", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--inetd: standard input is not a listening socket"),
        "{err}"
    );
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn ipv6_listen_and_target() {
    // IPv6 loopback is part of every Linux we support; its absence is a broken machine, which
    // this test reports rather than skipping silently.
    assert!(ipv6_available(), "this machine has no IPv6 loopback (::1)");
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let echo = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = Proxy::start(&["-6", "[::1]:0", &format!("[::1]:{echo}")]);
    let mut stream = tokio::net::TcpStream::connect(("::1", proxy.port))
        .await
        .unwrap();
    stream
        .write_all(upgrade_request(&[]).as_bytes())
        .await
        .unwrap();
    let mut raw = Raw {
        stream,
        buf: Vec::new(),
    };
    assert_eq!(raw.read_answer().await.status, 101);
    raw.send_binary(b"v6").await;
    assert_eq!(raw.read_data(2).await, b"v6");
}

#[tokio::test]
async fn bare_port_listens_on_ipv4_and_ipv6() {
    assert!(ipv6_available(), "this machine has no IPv6 loopback (::1)");
    let echo = echo_target().await;
    let port = dead_port();
    let proxy = Proxy::start(&[&port.to_string(), &format!("localhost:{echo}")]);
    assert_eq!(proxy.port, port);
    for host in ["127.0.0.1", "::1"] {
        let stream = tokio::net::TcpStream::connect((host, port)).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        assert_eq!(
            raw.request(&upgrade_request(&[])).await.status,
            101,
            "{host}"
        );
        raw.send_binary(host.as_bytes()).await;
        assert_eq!(raw.read_data(host.len()).await, host.as_bytes());
    }
}

#[tokio::test]
async fn log_file_verbose_and_traffic() {
    let echo = echo_target().await;
    let log = temp_path("proxy.log");
    let _ = std::fs::remove_file(&log);
    let port = dead_port();
    let proxy = Proxy::start_on_port(
        command(&[
            "-v",
            "--traffic",
            "--log-file",
            log.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{echo}"),
        ]),
        port,
    );
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"12345").await;
    assert_eq!(raw.read_data(5).await, b"12345");
    raw.send_close(1000, "done").await;
    raw.read_close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("session ended") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("listening on 127.0.0.1:"), "{text}");
    assert!(text.contains("DEBUG"), "-v must log at debug: {text}");
    assert!(
        text.contains("client -> target") && text.contains("bytes=5"),
        "{text}"
    );
    assert!(text.contains("target -> client"), "{text}");
    assert!(
        text.contains("session ended: client closed with 1000 \"done\""),
        "{text}"
    );
    assert!(!text.contains("\x1b["), "no colour codes in a log file");
    // Without -v there is no debug output.
    let quiet = temp_path("quiet.log");
    let _ = std::fs::remove_file(&quiet);
    let port = dead_port();
    let proxy = Proxy::start_on_port(
        command(&[
            "--log-file",
            quiet.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{echo}"),
        ]),
        port,
    );
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_close(1000, "").await;
    raw.read_close().await;
    // As a client does once the proxy's side is closed (the proxy lingers until then).
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&quiet).unwrap_or_default();
        if text.contains("session ended") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        text.contains("session ended") && !text.contains("DEBUG"),
        "{text}"
    );
}

#[test]
fn the_quick_start_runs_in_cargos_environment() {
    // `cargo run` and `cargo test` set WEBSOCKIFY_BUILD_COMMIT (build.rs's compile-time
    // variable) for the program: it must not be taken for a setting.
    let out = std::process::Command::new(binary())
        .args(["--print-config", "6080", "localhost:5900"])
        .env("WEBSOCKIFY_BUILD_COMMIT", "0123abcd")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
}
