//! The browser side (issue 10) in a real browser: Debian's Chromium, driven by Playwright from
//! the Node scripts in `tests/browser/`, against the real binary serving `web/` with `--web`.
//!
//! - `websock.js` echoes binary and base64 through the proxy to an echo target, byte for byte;
//! - `wstelnet.html` logs in to a real telnet server (inetutils' telnetd, started here as
//!   inetd would) and typed keys reach its shell;
//! - `index.html` shows the server's live numbers and charts of its last minutes, which
//!   move with a session's traffic;
//! - noVNC (`@novnc/novnc` from npm, under our `vnc.html`) shows a desktop TigerVNC's Xvnc
//!   serves, pixel for pixel, and a click and keys made in the page reach the X server; over
//!   ws, wss, and with a token.
//!
//! `novnc_page_load_h2_against_http1` (ignored; `benches/pageload.sh` runs it) is a benchmark:
//! noVNC's page load, navigation start to the RFB `connect` event, over HTTP/2 against
//! HTTP/1.1 (`tests/browser/pageload.mjs`).
//!
//! `tests/browser/setup.sh` installs what is missing (Debian packages, and the npm packages
//! pinned in `tests/browser/package-lock.json` into `target/browser/node_modules`), so the
//! first run takes a minute more and later ones find everything in place. When something
//! cannot be installed the tests fail, naming it; they never skip. Screenshots of every page
//! go to `target/browser-screenshots/` (and `FAILED-*.png` there when a check fails).
//!
//! Only one browser runs at a time: the machine has two cores.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A Node script's whole run; the script's own deadline (`lib.mjs`) is shorter, so this
/// only catches a script that hangs outside it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(200);

/// The account of the scripted login behind the test's telnetd (`tests/browser/login.sh`).
const TELNET_USER: &str = "guest";
const TELNET_PASSWORD: &str = "s3cret-pw";

/// The desktop Xvnc serves: small, so that reading it back is quick, and tiled with a
/// two-colour pattern (`xsetroot -bitmap`) so that every pixel's colour is known.
const DESKTOP: (u32, u32) = (320, 240);
const TILE: u32 = 64;
const FG: (u8, u8, u8) = (0xd0, 0x30, 0x20);
const BG: (u8, u8, u8) = (0x20, 0x40, 0xc0);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Where setup.sh installs the npm packages, and the tests keep their files.
fn browser_dir() -> PathBuf {
    target_dir().join("browser")
}

fn screenshot_dir() -> PathBuf {
    target_dir().join("browser-screenshots")
}

/// Runs `tests/browser/setup.sh` once for all the tests of this binary; each test fails with
/// its output if it failed.
fn setup() {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    let done = SETUP.get_or_init(|| {
        // A failure's screenshots from an earlier run would tell of a failure not in this one.
        if let Ok(entries) = std::fs::read_dir(screenshot_dir()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("FAILED-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(repo().join("tests/browser/setup.sh"))
            .arg(browser_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run tests/browser/setup.sh: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "{log}setup.sh took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tests/browser/setup.sh could not install what the browser tests need:\n{log}"
            ))
        }
    });
    if let Err(e) = done {
        panic!("{e}");
    }
}

/// Runs `tests/browser/<script>` with `config`, one browser at a time, and fails with the
/// script's output unless every one of its checks passed.
fn node(script: &str, config: serde_json::Value) {
    node_output(script, config);
}

/// As `node`, and gives back the script's output (standard output and error together).
fn node_output(script: &str, config: serde_json::Value) -> String {
    static ONE_BROWSER: Mutex<()> = Mutex::new(());
    setup();
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let logs = browser_dir().join("logs");
    std::fs::create_dir_all(&logs).expect("create target/browser/logs");
    let name = config["name"].as_str().unwrap_or(script).to_string();
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("create the script's log");
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser").join(script))
        .arg(config.to_string())
        .env("BROWSER_DIR", browser_dir())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("run node (setup.sh checked it is installed)");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!(
        "{script} ({name}), {:.1} s:\n{output}",
        started.elapsed().as_secs_f64()
    );
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!("{script} ({name}) failed ({s}):\n{output}"),
        None => panic!("{script} ({name}) did not finish within {SCRIPT_TIMEOUT:?}:\n{output}"),
    }
}

fn web_dir() -> String {
    repo().join("web").to_string_lossy().into_owned()
}

/// A directory with `web/` and noVNC's library (`core/`, `vendor/` of `@novnc/novnc` from
/// npm) in `novnc/` beside our `vnc.html`: what the README tells users to assemble. Copied,
/// not linked: `--web` never follows a link out of its directory.
fn novnc_site() -> PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    setup();
    SITE.get_or_init(|| {
        let site = browser_dir().join("novnc-site");
        let _ = std::fs::remove_dir_all(&site);
        let novnc = browser_dir().join("node_modules/@novnc/novnc");
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"cp -r "$1/." "$2" && mkdir "$2/novnc" && cp -r "$3/core" "$3/vendor" "$3/LICENSE.txt" "$2/novnc/""#)
            .arg("sh")
            .arg(repo().join("web"))
            .arg(&site)
            .arg(&novnc)
            .status()
            .expect("run cp");
        assert!(status.success(), "assembling {}", site.display());
        site
    })
    .clone()
}

/// A telnet server on loopback: inetutils' telnetd, started per connection with the
/// connection as its standard input and output, as inetd starts it. The login it runs is
/// `tests/browser/login.sh` (the machine's accounts stay untouched).
struct TelnetServer {
    port: u16,
    children: Arc<Mutex<Vec<Child>>>,
    stop: Arc<AtomicBool>,
}

impl TelnetServer {
    fn start() -> TelnetServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the telnet port");
        let port = listener.local_addr().expect("local address").port();
        let login = repo().join("tests/browser/login.sh");
        let login = login.to_str().expect("a UTF-8 path").to_string();
        // telnetd splits its --exec-login at white space.
        assert!(
            !login.contains(char::is_whitespace),
            "the checkout's path has white space, which telnetd --exec-login cannot take: {login}"
        );
        let exec_login = format!("{login} {TELNET_USER} {TELNET_PASSWORD}");
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (kids, stopping) = (children.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Ok(output) = stream.try_clone() else {
                    continue;
                };
                let child = Command::new("/usr/sbin/telnetd")
                    .args(["--no-hostinfo", "--exec-login", &exec_login])
                    .stdin(Stdio::from(OwnedFd::from(stream)))
                    .stdout(Stdio::from(OwnedFd::from(output)))
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start telnetd (setup.sh installed inetutils-telnetd)");
                kids.lock().unwrap_or_else(|p| p.into_inner()).push(child);
            }
        });
        TelnetServer {
            port,
            children,
            stop,
        }
    }
}

impl Drop for TelnetServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for child in self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An X server that is a VNC server (TigerVNC's Xvnc) on loopback, its desktop tiled with
/// the test pattern, and xev reporting every key and button event on its root window.
struct Desktop {
    rfb_port: u16,
    xvnc: Child,
    xev: Child,
    xev_log: PathBuf,
}

impl Desktop {
    fn start(name: &str) -> Desktop {
        setup();
        // Display numbers from 40 up, one per desktop of this process, skipping any in use.
        static NEXT: AtomicU32 = AtomicU32::new(40);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (display, rfb_port, xvnc) = loop {
            assert!(Instant::now() < deadline, "Xvnc did not start");
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            assert!(n < 100, "no free X display number between 40 and 99");
            if !display_free(n) {
                continue;
            }
            let rfb_port = dead_port();
            let (w, h) = DESKTOP;
            let mut xvnc = Command::new("Xvnc")
                .arg(format!(":{n}"))
                .args(["-geometry", &format!("{w}x{h}"), "-depth", "24"])
                .args(["-rfbport", &rfb_port.to_string()])
                .args(["-localhost", "-interface", "127.0.0.1", "-nolisten", "tcp"])
                // Loopback only, and no password: noVNC's security handshake is not what
                // this tests.
                .args(["-SecurityTypes", "None", "-AlwaysShared"])
                .args(["-desktop", &format!("websockify-rs {name}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvnc (setup.sh installed tigervnc-standalone-server)");
            let up = Instant::now() + Duration::from_secs(10);
            let listening = loop {
                if TcpStream::connect(("127.0.0.1", rfb_port)).is_ok() {
                    break true;
                }
                if Instant::now() > up || xvnc.try_wait().ok().flatten().is_some() {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if listening {
                break (n, rfb_port, xvnc);
            }
            // Another X server took the number, or the port was taken: the next one.
            let _ = xvnc.kill();
            let _ = xvnc.wait();
        };
        let display = format!(":{display}");
        let dir = browser_dir().join("x");
        std::fs::create_dir_all(&dir).expect("create target/browser/x");
        let bitmap = dir.join("pattern.xbm");
        std::fs::write(&bitmap, pattern_xbm()).expect("write the pattern");
        let hex = |(r, g, b): (u8, u8, u8)| format!("#{r:02x}{g:02x}{b:02x}");
        let status = Command::new("xsetroot")
            .args(["-display", &display, "-bitmap"])
            .arg(&bitmap)
            .args(["-fg", &hex(FG), "-bg", &hex(BG)])
            .status()
            .expect("run xsetroot");
        assert!(status.success(), "xsetroot failed on {display}");
        let xev_log = dir.join(format!("xev-{name}.log"));
        let log = std::fs::File::create(&xev_log).expect("create xev's log");
        // Line-buffered: the script reads the log while xev runs.
        let xev = Command::new("stdbuf")
            .args(["-oL", "xev", "-display", &display, "-root"])
            .args(["-event", "keyboard", "-event", "button"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start xev (setup.sh installed x11-utils)");
        Desktop {
            rfb_port,
            xvnc,
            xev,
            xev_log,
        }
    }

    /// The script's configuration for this desktop.
    fn config(&self, name: &str, page_url: &str, ignore_https_errors: bool) -> serde_json::Value {
        let rgb = |(r, g, b): (u8, u8, u8)| json!([r, g, b]);
        json!({
            "name": name,
            "pageUrl": page_url,
            "ignoreHTTPSErrors": ignore_https_errors,
            "xevLog": self.xev_log,
            "width": DESKTOP.0,
            "height": DESKTOP.1,
            "pattern": { "tile": TILE, "fg": rgb(FG), "bg": rgb(BG) },
        })
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        let _ = self.xev.kill();
        let _ = self.xev.wait();
        // SIGTERM, so that Xvnc removes its lock file and socket: killed, it leaves them, and
        // runs on one machine would use up the display numbers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.xvnc.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && matches!(self.xvnc.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.xvnc.kill();
        let _ = self.xvnc.wait();
    }
}

/// Display `n` is free: no lock file, or a stale one whose process is gone (as an X server
/// decides; its files are then removed).
fn display_free(n: u32) -> bool {
    let lock = format!("/tmp/.X{n}-lock");
    let socket = format!("/tmp/.X11-unix/X{n}");
    match std::fs::read_to_string(&lock) {
        Ok(text) => {
            let alive = text
                .trim()
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return false;
            }
            let _ = std::fs::remove_file(&lock);
            let _ = std::fs::remove_file(&socket);
            true
        }
        Err(_) => !Path::new(&socket).exists(),
    }
}

/// An XBM bitmap of one tile: set (foreground) in its top-left and bottom-right quarters.
fn pattern_xbm() -> String {
    let mut rows = Vec::new();
    for y in 0..TILE {
        let mut bytes = Vec::new();
        for byte in 0..TILE / 8 {
            let mut v = 0u8;
            for bit in 0..8 {
                let x = byte * 8 + bit;
                if (x < TILE / 2) == (y < TILE / 2) {
                    // XBM stores the leftmost pixel in the lowest bit.
                    v |= 1 << bit;
                }
            }
            bytes.push(format!("0x{v:02x}"));
        }
        rows.push(bytes.join(", "));
    }
    format!(
        "#define tile_width {TILE}\n#define tile_height {TILE}\nstatic unsigned char tile_bits[] = {{\n{}}};\n",
        rows.join(",\n")
    )
}

/// The proxy serving `dir` (`--web`) on loopback, with `extra` flags and `target` (if any).
fn web_proxy(dir: &str, extra: &[&str], target: Option<&str>) -> Proxy {
    let mut args = vec!["--web", dir];
    args.extend_from_slice(extra);
    args.push("127.0.0.1:0");
    args.extend(target);
    Proxy::start(&args)
}

/// A token file under target/browser naming `tokens` (token, target).
fn token_file(name: &str, tokens: &[(&str, String)]) -> String {
    let file = browser_dir().join(format!("tokens-{name}.cfg"));
    let text: String = tokens
        .iter()
        .map(|(token, target)| format!("{token}: {target}\n"))
        .collect();
    std::fs::create_dir_all(browser_dir()).expect("create target/browser");
    std::fs::write(&file, text).expect("write the token file");
    file.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websock_echoes_binary_and_base64_byte_for_byte() {
    let echo = echo_target().await;
    let target = format!("127.0.0.1:{echo}");
    let proxy = web_proxy(&web_dir(), &[], Some(&target));
    let tokens = token_file("echo", &[("echo-token", target.clone())]);
    let token_proxy = web_proxy(
        &web_dir(),
        &["--token-plugin", "TokenFile", "--token-source", &tokens],
        None,
    );
    let config = json!({
        "name": "websock",
        "url": format!("http://127.0.0.1:{}/", proxy.port),
        "tokenUrl": format!("http://127.0.0.1:{}/", token_proxy.port),
        "token": "echo-token",
    });
    tokio::task::spawn_blocking(move || node("websock.mjs", config))
        .await
        .unwrap();
    proxy.wait_log("session ended", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wstelnet_logs_in_to_a_real_telnetd() {
    let telnet = TelnetServer::start();
    let target = format!("127.0.0.1:{}", telnet.port);
    let proxy = web_proxy(&web_dir(), &[], Some(&target));
    let config = json!({
        "name": "wstelnet",
        "url": format!("http://127.0.0.1:{}/", proxy.port),
        "user": TELNET_USER,
        "password": TELNET_PASSWORD,
    });
    tokio::task::spawn_blocking(move || node("wstelnet.mjs", config))
        .await
        .unwrap();
    drop(telnet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_shows_the_live_status() {
    let echo = echo_target().await;
    let proxy = web_proxy(&web_dir(), &[], Some(&format!("127.0.0.1:{echo}")));
    let config = json!({
        "name": "index",
        "url": format!("http://127.0.0.1:{}/", proxy.port),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let began = std::time::SystemTime::now();
    tokio::task::spawn_blocking(move || node("index.mjs", config))
        .await
        .unwrap();
    // The charts as a person sees them, in both colour schemes, kept for a look (this run's,
    // not an earlier run's).
    for name in ["index.png", "index-dark.png"] {
        let shot = screenshot_dir().join(name);
        let fresh = std::fs::metadata(&shot)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= began);
        assert!(fresh, "no screenshot {} from this run", shot.display());
    }
}

#[test]
fn novnc_over_ws() {
    let desktop = Desktop::start("ws");
    let site = novnc_site();
    let target = format!("127.0.0.1:{}", desktop.rfb_port);
    let proxy = web_proxy(site.to_str().unwrap(), &[], Some(&target));
    let url = format!("http://127.0.0.1:{}/vnc.html?autoconnect=1", proxy.port);
    node("novnc.mjs", desktop.config("novnc-ws", &url, false));
    let log = proxy.wait_log("session ended", Duration::from_secs(10));
    assert!(log.contains("tls=false"), "{log}");
}

/// A TLS-only proxy's settings (a certificate of the test's own CA, written under `name`)
/// whose token `desk` leads to `desktop`: the page and its WebSocket both come over TLS, or
/// not at all. Also the certificate's file, for a browser told to trust it.
fn tls_token_args(name: &str, desktop: &Desktop) -> (Vec<String>, PathBuf) {
    let (cert, key) = pki::Ca::new("websockify-rs browser test CA").leaf("localhost");
    let dir = browser_dir();
    let (cert_file, key_file) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let tokens = token_file(name, &[("desk", format!("127.0.0.1:{}", desktop.rfb_port))]);
    let args = [
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
        "--ssl-only",
        "--token-plugin",
        "TokenFile",
        "--token-source",
        &tokens,
    ];
    (args.iter().map(|a| a.to_string()).collect(), cert_file)
}

/// noVNC over `https`/`wss` through a token, with `extra` settings; the proxy's log once the
/// session ended.
fn novnc_over_tls(name: &str, extra: &[&str]) -> String {
    let desktop = Desktop::start(name);
    let site = novnc_site();
    let (tls, _) = tls_token_args(name, &desktop);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let proxy = web_proxy(site.to_str().unwrap(), &args, None);
    let url = format!(
        "https://127.0.0.1:{}/vnc.html?autoconnect=1&token=desk",
        proxy.port
    );
    // The test's own CA is not one Chromium trusts.
    node("novnc.mjs", desktop.config(name, &url, true));
    let log = proxy.wait_log("session ended", Duration::from_secs(10));
    assert!(log.contains("tls=true"), "{log}");
    log
}

/// The client address of the line that contains `needle`.
fn client_of<'a>(log: &'a str, needle: &str) -> &'a str {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle} in\n{log}"));
    client_in(line).unwrap_or_else(|| panic!("no client in {line}"))
}

/// Over TLS Chromium negotiates HTTP/2 and carries noVNC's WebSocket on the connection that
/// loaded the page (RFC 8441), proved from the proxy's side: the session is `h2`, from the
/// same client address as the page.
#[test]
fn novnc_over_wss() {
    let log = novnc_over_tls("novnc-wss", &[]);
    assert!(log.contains(r#"transport="h2""#), "{log}");
    assert!(log.contains(r#"protocol="hybi-13/binary""#), "{log}");
    assert_eq!(
        client_of(&log, "GET /vnc.html"),
        client_of(&log, "session ended"),
        "{log}"
    );
}

/// `--http2 off`: the same page over HTTP/1.1, the WebSocket an HTTP/1.1 upgrade.
#[test]
fn novnc_over_wss_with_http2_off() {
    let log = novnc_over_tls("novnc-wss-http1", &["--http2", "off"]);
    assert!(log.contains(r#"transport="http1""#), "{log}");
    assert!(log.contains(r#"protocol="hybi-13/binary""#), "{log}");
}

/// `--compression`: Chromium's permessage-deflate offer is accepted (the session's line says
/// so, and the metrics count the session), and the pixels and the input are checked as
/// without it; over HTTP/1.1 here and on an HTTP/2 stream in the next test. noVNC's usual
/// encoding (tight) is compressed already, so most screen updates go as they are; what does
/// shrink (the handshake's messages, Chromium's input events) goes compressed both ways.
#[test]
fn novnc_with_compression() {
    let desktop = Desktop::start("deflate");
    let site = novnc_site();
    let target = format!("127.0.0.1:{}", desktop.rfb_port);
    let args = ["--compression", "--metrics-listen", "127.0.0.1:0"];
    let proxy = web_proxy(site.to_str().unwrap(), &args, Some(&target));
    let url = format!("http://127.0.0.1:{}/vnc.html?autoconnect=1", proxy.port);
    node("novnc.mjs", desktop.config("novnc-deflate", &url, false));
    let log = proxy.wait_log("session ended", Duration::from_secs(10));
    assert!(log.contains(r#"compression="deflate""#), "{log}");
    let (_, metrics) = http_get(metrics_port(&proxy), "/metrics");
    let sessions = metrics
        .lines()
        .find(|l| l.starts_with("websockify_compression_sessions_total"))
        .unwrap_or_else(|| panic!("no compression sessions in\n{metrics}"));
    assert!(sessions.ends_with(" 1"), "{sessions}");
}

/// The same over `wss` with HTTP/2: the offer comes on Chromium's extended CONNECT.
#[test]
fn novnc_over_wss_with_compression() {
    let log = novnc_over_tls("novnc-wss-deflate", &["--compression"]);
    assert!(log.contains(r#"transport="h2""#), "{log}");
    assert!(log.contains(r#"compression="deflate""#), "{log}");
}

/// The page-load benchmark's loads of each protocol; `PAGELOAD_LOADS` sets another count.
const PAGE_LOADS: usize = 10;
/// Loads made before each counted one, in the same browser, and not counted: they take the
/// browser's own start-up (a new Chromium for every counted load) out of the count.
const PAGE_WARMUP: usize = 1;

/// One side of the page-load benchmark: its proxy and what its loads measured.
struct PageLoadSide {
    /// The `nextHopProtocol` every file of its pages must have come over.
    protocol: &'static str,
    /// The proxy log's `transport` for its sessions.
    transport: &'static str,
    proxy: Proxy,
    loads_ms: Vec<f64>,
    resources: Vec<u64>,
    /// Connections the proxy saw, per load (warm-ups included).
    connections_per_load: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The line of a script's output that is its JSON result.
fn result_of(output: &str) -> serde_json::Value {
    output
        .lines()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result in the output:\n{output}"))
}

/// The proxy's log once it holds `count` lines with `needle`.
fn wait_lines(proxy: &Proxy, needle: &str, count: usize) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = proxy.log();
        let seen = log.lines().filter(|l| l.contains(needle)).count();
        if seen >= count {
            return log;
        }
        assert!(
            Instant::now() < end,
            "{seen} lines with {needle:?}, not {count}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client address of a log line, if it has one.
fn client_in(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("client="))
}

/// noVNC's page load in Chromium, from navigation start to noVNC's RFB `connect` event, over
/// HTTP/2 against HTTP/1.1 (`--http2 off`): the same page, the same desktop, both over TLS
/// (Chromium speaks HTTP/2 to a site only over TLS). Each counted load is the only one of a
/// new browser context, so nothing is cached and no connection or TLS session is reused
/// (`tests/browser/pageload.mjs`); the two take turns, one load each, the one that goes
/// first changing each round, so that a drift of the machine's speed falls on both. The
/// median of each, the loads, and their ratio are printed and written to
/// `target/browser/pageload.json`. It checks that every file of every page and every
/// WebSocket came over the protocol its side is about, from Chromium's side
/// (`nextHopProtocol`) and the proxy's (the sessions' transport, and the connections: one
/// per load over HTTP/2, the page, its files and its WebSocket on it).
#[test]
#[ignore = "a benchmark of a minute or two: benches/pageload.sh runs it"]
fn novnc_page_load_h2_against_http1() {
    let loads = std::env::var("PAGELOAD_LOADS").map_or(PAGE_LOADS, |v| {
        v.parse().expect("PAGELOAD_LOADS: a whole number of loads")
    });
    assert!(loads > 0, "PAGELOAD_LOADS must be at least 1");
    let desktop = Desktop::start("pageload");
    let site = novnc_site();
    let site = site.to_str().unwrap();
    let (tls, cert_file) = tls_token_args("pageload", &desktop);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let side = |protocol, transport, proxy| PageLoadSide {
        protocol,
        transport,
        proxy,
        loads_ms: Vec::new(),
        resources: Vec::new(),
        connections_per_load: 0.0,
    };
    let mut sides = [
        side("h2", "h2", web_proxy(site, &tls, None)),
        side(
            "http/1.1",
            "http1",
            web_proxy(site, &[&tls[..], &["--http2", "off"]].concat(), None),
        ),
    ];
    let mut chromium = String::new();
    for round in 0..loads {
        for turn in 0..sides.len() {
            let side = &mut sides[(round + turn) % 2];
            let config = json!({
                "name": format!("pageload-{}", side.transport),
                "pageUrl": format!(
                    "https://127.0.0.1:{}/vnc.html?autoconnect=1&token=desk",
                    side.proxy.port
                ),
                "count": 1,
                "warmup": PAGE_WARMUP,
                "trustCert": cert_file,
                "expectProtocol": side.protocol,
            });
            let output = node_output("pageload.mjs", config);
            let result = result_of(&output);
            assert_eq!(result["protocol"], side.protocol, "{output}");
            let resources = result["resources"].as_u64().expect("resources: a count");
            assert!(resources > 0, "{output}");
            // The page and every file it fetched, over the side's protocol.
            assert_eq!(
                result["next_hop_protocols"],
                json!({ side.protocol: resources + 1 }),
                "{output}"
            );
            let ms = result["loads_ms"][0].as_f64().expect("loads_ms: a time");
            assert!(ms > 0.0 && ms < 20_000.0, "{output}");
            side.loads_ms.push(ms);
            side.resources.push(resources);
            chromium = result["chromium"].as_str().unwrap_or("?").to_string();
        }
    }

    // The proxy's side: every load's WebSocket a session over the side's transport, and the
    // connections the loads came over.
    let all_loads = loads * (1 + PAGE_WARMUP);
    for side in &mut sides {
        let log = wait_lines(&side.proxy, "session ended", all_loads);
        let sessions: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("session ended"))
            .collect();
        assert_eq!(sessions.len(), all_loads, "{log}");
        let transport = format!(r#"transport="{}""#, side.transport);
        for line in &sessions {
            assert!(
                line.contains(&transport) && line.contains("tls=true"),
                "{line}"
            );
        }
        let pages: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("GET /vnc.html"))
            .filter_map(client_in)
            .collect();
        assert_eq!(pages.len(), all_loads, "{log}");
        let mut connections: Vec<&str> = log.lines().filter_map(client_in).collect();
        connections.sort_unstable();
        connections.dedup();
        if side.transport == "h2" {
            // One connection per load: a new one each time, carrying the page, its files and
            // its WebSocket (RFC 8441).
            assert_eq!(connections.len(), all_loads, "{log}");
            for line in &sessions {
                let client = client_in(line).expect("the session's client");
                assert!(
                    pages.contains(&client),
                    "a WebSocket not on its page's connection: {line}"
                );
            }
        } else {
            // HTTP/1.1: the WebSocket takes a connection of its own at least.
            assert!(connections.len() >= 2 * all_loads, "{log}");
        }
        side.connections_per_load = connections.len() as f64 / all_loads as f64;
    }
    assert_eq!(
        sides[0].resources, sides[1].resources,
        "the two pages fetched different numbers of files"
    );

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (h2, http1) = (median(&sides[0].loads_ms), median(&sides[1].loads_ms));
    let ratio = h2 / http1;
    eprintln!(
        "\nnoVNC page load, navigation start to the RFB connect event: Chromium {chromium}, {cpus} CPUs, \
         {loads} loads each over TLS, taking turns, each in a fresh browser context after {PAGE_WARMUP} warm-up load"
    );
    for side in &sides {
        let all: Vec<String> = side.loads_ms.iter().map(|ms| format!("{ms:.1}")).collect();
        eprintln!(
            "  {:<9} median {:>7.1} ms  loads [{}] ms; the page and {} files over {}; {:.1} connections per load",
            side.protocol,
            median(&side.loads_ms),
            all.join(", "),
            side.resources[0],
            side.protocol,
            side.connections_per_load,
        );
    }
    eprintln!("  h2 / http/1.1 medians: {ratio:.2}");
    let report = json!({
        "chromium": chromium,
        "cpus": cpus,
        "loads": loads,
        "warmup": PAGE_WARMUP,
        "ratio_h2_to_http1": ratio,
        "sides": sides.iter().map(|s| json!({
            "protocol": s.protocol,
            "median_ms": median(&s.loads_ms),
            "loads_ms": s.loads_ms,
            "resources": s.resources[0],
            "connections_per_load": s.connections_per_load,
        })).collect::<Vec<_>>(),
    });
    let file = browser_dir().join("pageload.json");
    std::fs::write(&file, format!("{report:#}\n")).expect("write pageload.json");
    eprintln!("  (also in {})", file.display());
}

#[test]
fn novnc_with_a_token() {
    let desktop = Desktop::start("token");
    let site = novnc_site();
    let tokens = token_file(
        "vnc",
        &[
            ("other", format!("127.0.0.1:{}", dead_port())),
            ("desk-1", format!("127.0.0.1:{}", desktop.rfb_port)),
        ],
    );
    let proxy = web_proxy(
        site.to_str().unwrap(),
        &["--token-plugin", "TokenFile", "--token-source", &tokens],
        None,
    );
    let url = format!(
        "http://127.0.0.1:{}/vnc.html?autoconnect=1&token=desk-1",
        proxy.port
    );
    node("novnc.mjs", desktop.config("novnc-token", &url, false));
    let log = proxy.wait_log("session ended", Duration::from_secs(10));
    assert!(!log.contains("desk-1"), "the token reached the log:\n{log}");
}

/// The committed copy of xterm.js is exactly the pinned npm release (web/vendor.sh made it).
#[test]
fn vendored_xterm_is_the_pinned_npm_release() {
    setup();
    let package = browser_dir().join("node_modules/@xterm/xterm");
    let vendored = repo().join("web/vendor/xterm");
    for (ours, theirs) in [
        ("xterm.mjs", "lib/xterm.mjs"),
        ("xterm.css", "css/xterm.css"),
        ("LICENSE", "LICENSE"),
    ] {
        let read = |p: &Path| {
            let mut v = Vec::new();
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut v))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            v
        };
        assert!(
            read(&vendored.join(ours)) == read(&package.join(theirs)),
            "web/vendor/xterm/{ours} is not @xterm/xterm's {theirs}: run web/vendor.sh"
        );
    }
    let lock = std::fs::read_to_string(repo().join("tests/browser/package-lock.json")).unwrap();
    let lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
    let pinned = lock["packages"]["node_modules/@xterm/xterm"]["version"]
        .as_str()
        .expect("@xterm/xterm in the lock file");
    let version = std::fs::read_to_string(vendored.join("VERSION")).unwrap();
    assert!(
        version.starts_with(&format!("@xterm/xterm {pinned} ")),
        "web/vendor/xterm/VERSION says {version:?}, the lock pins {pinned}"
    );
}
