//! `-D/--daemon`, `--syslog` and `--legacy-syslog` through the real binary.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-daemon-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The pid of the running websockify whose command line contains `needle`.
fn find_process(needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("websockify"))
            && args.iter().any(|a| a == needle)
        {
            return Some(pid);
        }
    }
    None
}

/// Field `n` (1-based, after the command name) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(n - 1).map(str::to_string)
}

/// Sends SIGTERM to the daemon and waits until it is gone.
fn stop_daemon(pid: u32, listen: &str) {
    let status = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let end = Instant::now() + Duration::from_secs(10);
    while find_process(listen).is_some() {
        assert!(Instant::now() < end, "the daemon did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a `-D` command line to its foreground end, which must be a success.
fn start_daemon(mut cmd: std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_daemon_detaches_serves_and_ends_on_a_signal() {
    let echo = echo_target().await;
    let d = dir("serve");
    let port = dead_port();
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    // A relative log file: the daemon changes to / and must still write where it was asked.
    let mut cmd = command(&[
        "-D",
        "--log-file",
        "daemon.log",
        &listen,
        &format!("127.0.0.1:{echo}"),
    ]);
    cmd.current_dir(&d);
    start_daemon(cmd);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = find_process(&listen).expect("the daemon is running");
    // A session leader of its own, in /, with its output away from the terminal.
    assert_eq!(stat_field(pid, 4), Some(pid.to_string()), "session id");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap(),
        Path::new("/dev/null")
    );
    let (mut raw, answer) = Raw::upgrade(port, &[]).await;
    assert_eq!(answer.status, 101);
    raw.send_binary(b"daemonic").await;
    assert_eq!(raw.read_data(8).await, b"daemonic");
    drop(raw);
    let log = d.join("daemon.log");
    let end = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("session ended")
    {
        assert!(Instant::now() < end, "no session line in {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_daemon(pid, &listen);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("exiting: signal received")
    );
}

#[test]
fn a_daemon_that_cannot_start_says_why_on_the_terminal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
    let err = fails(&["-D", &listen, "127.0.0.1:1"], 1);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(find_process(&listen).is_none());
    // Configuration mistakes are found before detaching.
    let err = fails(&["-D", "--legacy-syslog", "6080", "h:1"], 2);
    assert!(err.contains("--legacy-syslog needs --syslog"), "{err}");
}

/// Receives syslog datagrams until one contains `needle`.
fn receive_udp(socket: &UdpSocket, needle: &str) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).expect("a syslog message");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.contains(needle) {
            return message;
        }
    }
}

#[tokio::test]
async fn syslog_over_udp_in_both_formats() {
    let target = format!("127.0.0.1:{}", dead_port());
    for legacy in [false, true] {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = format!("127.0.0.1:{}", receiver.local_addr().unwrap().port());
        let mut args = vec!["--syslog", &server, "127.0.0.1:0", &target];
        if legacy {
            args.insert(0, "--legacy-syslog");
        }
        let proxy = Proxy::start(&args);
        let pid = proxy.child.id();
        let message = receive_udp(&receiver, "listening on");
        if legacy {
            assert!(
                message.starts_with(&format!("<14>websockify[{pid}]: listening on")),
                "{message}"
            );
        } else {
            let fields: Vec<&str> = message.splitn(8, ' ').collect();
            assert_eq!(fields[0], "<14>1", "{message}");
            assert!(
                fields[1].ends_with('Z') && fields[1].len() == 20,
                "{message}"
            );
            assert_eq!(
                (fields[3], fields[4]),
                ("websockify", pid.to_string().as_str())
            );
            assert!(fields[7].starts_with("listening on"), "{message}");
        }
        // Warnings keep their severity: an unreachable target is a warning (4), facility
        // user (1): <12>.
        let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
        assert_eq!(raw.read_close().await.0, 1011);
        let message = receive_udp(&receiver, &format!("connecting to {target}"));
        assert!(message.starts_with("<12>"), "{message}");
    }
}

#[tokio::test]
async fn syslog_to_a_local_socket_from_a_daemon() {
    let d = dir("devlog");
    let path = d.join("log.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = dead_port();
    let listen = format!("127.0.0.1:{port}");
    start_daemon(command(&[
        "-D",
        "--syslog",
        path.to_str().unwrap(),
        &listen,
        "127.0.0.1:1",
    ]));
    let pid = find_process(&listen).expect("the daemon is running");
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("listening on") {
        let n = receiver.recv(&mut buf).expect("a syslog message");
        seen = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    // Facility daemon (3) with --daemon: <30> for info.
    assert!(seen.starts_with("<30>1 "), "{seen}");
    assert!(seen.contains(&format!(" websockify {pid} - - ")), "{seen}");
    stop_daemon(pid, &listen);
}

/// BasicHTTPAuth's source is `user:password` or a FILE of such lines. Given as a path
/// relative to where `-D` was started, the daemon, which changes to `/`, must still read that
/// file rather than take its name for a credential (or fail to start).
#[tokio::test]
async fn a_daemon_reads_a_relative_auth_source_file() {
    let echo = echo_target().await;
    let d = dir("auth");
    std::fs::write(d.join("creds"), "# who may connect\nalice:s3cret\n").unwrap();
    let port = dead_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = command(&[
        "-D",
        "--auth-plugin",
        "BasicHTTPAuth",
        "--auth-source",
        "creds",
        &listen,
        &format!("127.0.0.1:{echo}"),
    ]);
    cmd.current_dir(&d);
    start_daemon(cmd);
    let pid = find_process(&listen).expect("the daemon is running");
    // alice:s3cret, then alice:wrong.
    let mut right = Raw::connect(port).await;
    let answer = right
        .request(&upgrade_request(&["Authorization: Basic YWxpY2U6czNjcmV0"]))
        .await;
    let mut wrong = Raw::connect(port).await;
    let refused = wrong
        .request(&upgrade_request(&["Authorization: Basic YWxpY2U6d3Jvbmc="]))
        .await;
    // A session left open would hold the drain for its grace.
    drop((right, wrong));
    stop_daemon(pid, &listen);
    assert_eq!(answer.status, 101, "{}", answer.head);
    assert_eq!(refused.status, 401, "{}", refused.head);
}
