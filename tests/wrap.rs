//! Wrap mode through the real binary: a Python echo server wrapped under the rebind shim, in
//! each `--wrap-mode`, with IPv4 and IPv6 binds, two wrapped proxies at once, the shim's
//! discovery next to the binary, and the group stop that leaves no process behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// An echo server on the port in argv[1] (`6` in argv[2]: IPv6 `::`); `quit` exits with 3,
/// `env` answers the rebind variables, `pid` its pid; with argv[3], it starts a child
/// `sleep` first and writes both pids to that file.
const ECHO: &str = r#"
import os, socket, subprocess, sys, threading
if len(sys.argv) > 3:
    child = subprocess.Popen(["sleep", "1000"])
    with open(sys.argv[3], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
fam = socket.AF_INET6 if sys.argv[2] == "6" else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", int(sys.argv[1])))
s.listen()
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        word = d.strip()
        if word == b"quit":
            os._exit(3)
        elif word == b"env":
            c.sendall(" ".join(os.environ.get(k, "-") for k in
                ("LD_PRELOAD", "REBIND_OLD_PORT", "REBIND_NEW_PORT")).encode() + b"|" +
                repr(s.getsockname()[:2]).encode())
        else:
            c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-wrap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shim() -> PathBuf {
    build_libraries(&["websockify-rebind"]).join("librebind.so")
}

fn echo_script(d: &Path) -> String {
    let path = d.join("echo.py");
    std::fs::write(&path, ECHO).unwrap();
    path.to_string_lossy().into_owned()
}

/// A wrapping proxy on `port` (the program binds the same port, as with websockify).
fn wrapped(port: u16, mode: &str, family: &str, d: &Path, extra: &[&str]) -> Proxy {
    let script = echo_script(d);
    let shim = shim();
    let listen = format!("127.0.0.1:{port}");
    let port = port.to_string();
    let mut args = vec![
        "--rebind-lib",
        shim.to_str().unwrap(),
        "--wrap-mode",
        mode,
        &listen,
        "--",
        "python3",
        &script,
        &port,
        family,
    ];
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

/// Stops a wrapping proxy as an operator would (SIGTERM), so that it stops its program: a
/// proxy killed by the harness's drop would leave the program behind.
fn stop(mut proxy: Proxy) {
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(15)).success());
    assert!(
        proxy.log().contains("wrapped command stopped"),
        "{}",
        proxy.log()
    );
}

/// Sends `text` through a new session and returns the answer.
async fn ask(port: u16, text: &[u8], answer_len: usize) -> Vec<u8> {
    let (mut raw, answer) = Raw::upgrade(port, &[]).await;
    assert_eq!(answer.status, 101);
    raw.send_binary(text).await;
    raw.read_data(answer_len).await
}

/// Waits until a session reaches the wrapped program (it may still be starting).
async fn wait_ready(port: u16) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (mut raw, answer) = Raw::upgrade(port, &[]).await;
        assert_eq!(answer.status, 101);
        raw.send_binary(b"ready?").await;
        match raw.read_frame().await {
            Some(f) if f.opcode == 2 => return,
            _ => {}
        }
        assert!(Instant::now() < end, "the wrapped program never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn exit_mode_relays_and_exits_with_the_programs_status() {
    let d = dir("exit");
    let port = dead_port();
    let shim = shim();
    let mut cmd = command(&[]);
    let script = echo_script(&d);
    let listen = format!("127.0.0.1:{port}");
    cmd.args([
        "--rebind-lib",
        shim.to_str().unwrap(),
        &listen,
        "--",
        "python3",
        &script,
        &port.to_string(),
        "4",
    ]);
    // An LD_PRELOAD the user already has is kept after the shim.
    cmd.env("LD_PRELOAD", &shim);
    let mut proxy = Proxy::start_cmd(cmd);
    wait_ready(port).await;
    assert_eq!(ask(port, b"hello", 5).await, b"hello");
    let (mut raw, _) = Raw::upgrade(port, &[]).await;
    raw.send_binary(b"env").await;
    let mut env = Vec::new();
    while !env.ends_with(b")") {
        let frame = raw.read_frame().await.expect("an answer");
        env.extend_from_slice(&frame.payload);
    }
    let env = String::from_utf8(env).unwrap();
    let log = proxy.log();
    let new_port: u16 = log
        .split("moved to loopback port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert_ne!(new_port, port);
    let shim = shim.to_str().unwrap();
    assert_eq!(
        env,
        format!("{shim}:{shim} {port} {new_port}|('127.0.0.1', {new_port})")
    );
    raw.send_binary(b"quit").await;
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3), "{}", proxy.log());
    assert!(
        proxy
            .log()
            .contains("wrapped command exited with exit status: 3")
    );
}

#[tokio::test]
async fn ignore_mode_keeps_serving_after_the_program_exits() {
    let d = dir("ignore");
    let port = dead_port();
    let mut proxy = wrapped(port, "ignore", "4", &d, &[]);
    wait_ready(port).await;
    let (mut raw, _) = Raw::upgrade(port, &[]).await;
    raw.send_binary(b"quit").await;
    proxy.wait_log("wrapped command exited", Duration::from_secs(10));
    // Still serving: a new session is accepted and told the target is gone.
    let (mut raw, answer) = Raw::upgrade(port, &[]).await;
    assert_eq!(answer.status, 101);
    assert_eq!(raw.read_close().await.0, 1011);
    assert!(proxy.child.try_wait().unwrap().is_none());
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn respawn_mode_restarts_the_program_with_a_warning_when_too_fast() {
    let d = dir("respawn");
    let port = dead_port();
    let proxy = wrapped(port, "respawn", "4", &d, &[]);
    wait_ready(port).await;
    for round in 1..=2 {
        let (mut raw, _) = Raw::upgrade(port, &[]).await;
        raw.send_binary(b"quit").await;
        let end = Instant::now() + Duration::from_secs(15);
        while proxy.log().matches("respawned the wrapped command").count() < round {
            assert!(Instant::now() < end, "{}", proxy.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_ready(port).await;
        assert_eq!(ask(port, b"again", 5).await, b"again");
    }
    let log = proxy.log();
    assert!(log.contains("Command respawning too fast"), "{log}");
    stop(proxy);
}

#[tokio::test]
async fn an_ipv6_bind_is_moved_to_ipv6_loopback() {
    let d = dir("ipv6");
    let port = dead_port();
    let proxy = wrapped(port, "exit", "6", &d, &[]);
    wait_ready(port).await;
    let (mut raw, _) = Raw::upgrade(port, &[]).await;
    raw.send_binary(b"env").await;
    let mut env = Vec::new();
    while !env.ends_with(b")") {
        env.extend_from_slice(&raw.read_frame().await.expect("an answer").payload);
    }
    let env = String::from_utf8(env).unwrap();
    assert!(env.contains("|('::1', "), "{env}");
    drop(raw);
    stop(proxy);
}

#[tokio::test]
async fn two_wrapped_proxies_start_at_once() {
    let d = dir("two");
    let (a, b) = (dead_port(), dead_port());
    let (da, db) = (d.join("a"), d.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let (pa, pb) = std::thread::scope(|s| {
        let pa = s.spawn(|| wrapped(a, "exit", "4", &da, &[]));
        let pb = s.spawn(|| wrapped(b, "exit", "4", &db, &[]));
        (pa.join().unwrap(), pb.join().unwrap())
    });
    wait_ready(a).await;
    wait_ready(b).await;
    assert_eq!(ask(a, b"to a", 4).await, b"to a");
    assert_eq!(ask(b, b"to b", 4).await, b"to b");
    let moved = |p: &Proxy| {
        p.log()
            .split("moved to loopback port ")
            .nth(1)
            .map(str::to_string)
    };
    assert_ne!(moved(&pa), moved(&pb));
    stop(pa);
    stop(pb);
}

/// The state letter of a process in /proc, or None once it is gone.
fn state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

#[tokio::test]
async fn stopping_the_proxy_stops_the_program_and_its_children() {
    let d = dir("stop");
    let port = dead_port();
    let pids = d.join("pids");
    let mut proxy = wrapped(port, "respawn", "4", &d, &[pids.to_str().unwrap()]);
    wait_ready(port).await;
    let text = std::fs::read_to_string(&pids).unwrap();
    let (program, grandchild) = text.split_once(' ').unwrap();
    assert!(state(program).is_some() && state(grandchild).is_some());
    proxy.signal("INT");
    assert!(proxy.wait_exit(Duration::from_secs(15)).success());
    // Our child was reaped (no zombie); its own child got the group's SIGTERM.
    assert_eq!(state(program), None, "the wrapped program is left behind");
    let end = Instant::now() + Duration::from_secs(5);
    while matches!(state(grandchild), Some(s) if s != 'Z') {
        assert!(Instant::now() < end, "the program's child is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_shim_is_found_next_to_the_binary_as_packaged() {
    let d = dir("packaged");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("lib/websockify")).unwrap();
    std::fs::copy(binary(), d.join("bin/websockify")).unwrap();
    let script = echo_script(&d);
    let port = dead_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        listen.as_str(),
        "--",
        "python3",
        &script,
        &port.to_string(),
        "4",
    ];
    // Without the shim: a start-up error that says what is missing and where it looked.
    let out = Command::new(d.join("bin/websockify"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("librebind.so")
            && err.contains("--rebind-lib")
            && err.contains("lib/websockify"),
        "{err}"
    );
    std::fs::copy(shim(), d.join("lib/websockify/librebind.so")).unwrap();
    let mut cmd = Command::new(d.join("bin/websockify"));
    cmd.args(args);
    let proxy = Proxy::start_cmd(cmd);
    wait_ready(port).await;
    assert_eq!(ask(port, b"packaged", 8).await, b"packaged");
    stop(proxy);
}

#[test]
fn wrap_settings_are_checked() {
    let err = fails(
        &[
            "--rebind-lib",
            "/nonexistent/librebind.so",
            "127.0.0.1:0",
            "--",
            "true",
        ],
        1,
    );
    assert!(err.contains("/nonexistent/librebind.so"), "{err}");
    let err = fails(&["6080", "h:1", "--", "true"], 2);
    assert!(err.contains("choose one target"), "{err}");
    let err = fails(&["--wrap-mode", "respawn", "6080", "h:1"], 2);
    assert!(err.contains("--wrap-mode needs a command"), "{err}");
    let err = fails(&["--wrap-mode", "sometimes", "6080", "--", "true"], 2);
    assert!(err.contains("exit, ignore or respawn"), "{err}");
    let err = fails(&["--inetd", "--", "true"], 2);
    assert!(err.contains("--inetd cannot wrap"), "{err}");
    let shim = shim();
    let shim = shim.to_str().unwrap();
    let err = fails(
        &[
            "--rebind-lib",
            shim,
            "127.0.0.1:0",
            "--",
            "/nonexistent/program",
        ],
        1,
    );
    assert!(err.contains("/nonexistent/program"), "{err}");
}
