//! The same client exchanges against websockify 0.13 (the reference, from PyPI) and against us:
//! statuses, subprotocols, echoed bytes and close codes must match, except where we differ on
//! purpose, and each of those differences is asserted here too, with its reason.
//!
//! The test installs the reference into a venv under the target directory on first use
//! (`python3 -m venv`, `pip install websockify==0.13.0`) and fails loudly if it cannot.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

const REFERENCE_VERSION: &str = "0.13.0";

/// The reference's `websockify` script, installed once per target directory.
fn reference() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let package = format!("websockify=={REFERENCE_VERSION}");
        python_venv("reference-venv", &[&package]).join("bin/websockify")
    })
    .clone()
}

/// Which implementation an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Reference,
    Ours,
}

/// A proxy of either implementation on `port`, relaying to `target`.
struct Running {
    _proxy: Proxy,
    port: u16,
}

fn start(which: Impl, target: u16) -> Running {
    let port = dead_port();
    let listen = format!("127.0.0.1:{port}");
    let target = format!("127.0.0.1:{target}");
    let cmd = match which {
        Impl::Ours => command(&[&listen, &target]),
        Impl::Reference => {
            let mut cmd = Command::new(reference());
            cmd.args([&listen, &target]);
            cmd
        }
    };
    let mut cmd = cmd;
    cmd.stdin(Stdio::null());
    let proxy = Proxy::start_on_port(cmd, port);
    Running {
        _proxy: proxy,
        port,
    }
}

/// What a client saw in one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    protocol: Option<String>,
    /// Frames after the handshake: data payloads, pongs and the close code.
    frames: Vec<String>,
}

/// Sends `head`, then `frames` if upgraded, and records what comes back until a close frame,
/// the connection's end, or a quiet second.
async fn exchange(port: u16, head: &str, frames: &[Vec<u8>]) -> Seen {
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(head).await;
    let mut seen = Seen {
        status: answer.status,
        protocol: answer.header("Sec-WebSocket-Protocol"),
        frames: Vec::new(),
    };
    if answer.status != 101 {
        return seen;
    }
    for f in frames {
        raw.stream.write_all(f).await.unwrap();
    }
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), raw.read_frame()).await;
        let Ok(Some(frame)) = next else { break };
        match frame.opcode {
            8 => {
                seen.frames.push(format!("close {}", frame.close().0));
                break;
            }
            9 => seen.frames.push("ping".to_string()),
            10 => seen
                .frames
                .push(format!("pong {}", String::from_utf8_lossy(&frame.payload))),
            op => {
                // The target's bytes as one entry until something else comes: how they
                // are cut into messages follows the target's reads, which timing decides
                // (two fragments relayed apart may be echoed in one read or two), not
                // either proxy.
                let prefix = format!("data{op} ");
                let text = String::from_utf8_lossy(&frame.payload);
                match seen.frames.last_mut() {
                    Some(last) if last.starts_with(&prefix) => last.push_str(&text),
                    _ => seen.frames.push(format!("{prefix}{text}")),
                }
            }
        }
    }
    seen
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(true, opcode, payload, Some([0xa1, 0xb2, 0xc3, 0xd4]))
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    masked(8, &p)
}

/// One scripted exchange and, where we differ on purpose, what each side must answer.
struct Case {
    name: &'static str,
    head: String,
    frames: Vec<Vec<u8>>,
    /// `None`: both must see the same. `Some((reference, ours, why))`: the statuses differ.
    differs: Option<(u16, u16, &'static str)>,
}

fn cases() -> Vec<Case> {
    let base = upgrade_request(&[]);
    let with = |extra: &str| upgrade_request(&[extra]);
    let same = |name, head: String, frames: Vec<Vec<u8>>| Case {
        name,
        head,
        frames,
        differs: None,
    };
    let differ = |name, head: String, reference, ours, why| Case {
        name,
        head,
        frames: vec![],
        differs: Some((reference, ours, why)),
    };
    vec![
        same(
            "binary echo",
            with("Sec-WebSocket-Protocol: binary"),
            vec![masked(2, b"hello")],
        ),
        same(
            "no subprotocol echo",
            base.clone(),
            vec![masked(2, b"plain")],
        ),
        same(
            "unknown subprotocol",
            with("Sec-WebSocket-Protocol: foo"),
            vec![],
        ),
        same(
            "version 8",
            base.replace("Version: 13", "Version: 8"),
            vec![masked(2, b"v8")],
        ),
        same(
            "version 7",
            base.replace("Version: 13", "Version: 7"),
            vec![masked(2, b"v7")],
        ),
        same(
            "missing key",
            base.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            vec![],
        ),
        same(
            "plain GET",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            vec![],
        ),
        same(
            "plain HEAD",
            "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            vec![],
        ),
        same(
            "client close echoed",
            base.clone(),
            vec![close_frame(4000, "bye")],
        ),
        same("empty close echoed", base.clone(), vec![masked(8, b"")]),
        same(
            "unmasked frame",
            base.clone(),
            vec![encode_frame(true, 2, b"naked", None)],
        ),
        same(
            "text frame in a binary session",
            with("Sec-WebSocket-Protocol: binary"),
            vec![masked(1, b"text")],
        ),
        same(
            "ping answered, data echoed",
            base.clone(),
            vec![masked(9, b"pp"), masked(2, b"data")],
        ),
        same(
            "fragmented message",
            base.clone(),
            vec![
                encode_frame(false, 2, b"frag", Some([1, 2, 3, 4])),
                encode_frame(true, 0, b"ment", Some([5, 6, 7, 8])),
            ],
        ),
        differ(
            "unsupported version",
            base.replace("Version: 13", "Version: 99"),
            400,
            426,
            "RFC 6455 4.4: 426 with the supported versions",
        ),
        differ(
            "no Connection header",
            base.replace("Connection: Upgrade\r\n", ""),
            101,
            400,
            "RFC 6455 4.2.1: an upgrade needs Connection: Upgrade",
        ),
        differ(
            "malformed key",
            base.replace(KEY, "short"),
            101,
            400,
            "RFC 6455 4.2.1: the key is 16 bytes in base64",
        ),
        differ(
            "WebSocket headers without Upgrade",
            base.replace("Upgrade: websocket\r\n", ""),
            405,
            400,
            "a broken upgrade gets a reason, not a generic 405",
        ),
        differ(
            "base64 subprotocol",
            with("Sec-WebSocket-Protocol: base64"),
            400,
            101,
            "base64 (websockify 0.6 and websock.js) is supported again",
        ),
        differ(
            "spaces in the offered list",
            with("Sec-WebSocket-Protocol: base64, binary"),
            400,
            101,
            "the list is trimmed, so `binary` is found",
        ),
        differ(
            "upgrade by POST",
            base.replace("GET ", "POST "),
            501,
            405,
            "405 names the method as not allowed",
        ),
    ]
}

#[tokio::test]
async fn same_exchanges_same_answers() {
    let echo = echo_target().await;
    let reference = start(Impl::Reference, echo);
    let ours = start(Impl::Ours, echo);
    let mut failures = Vec::new();
    for case in cases() {
        let theirs = exchange(reference.port, &case.head, &case.frames).await;
        let mine = exchange(ours.port, &case.head, &case.frames).await;
        match case.differs {
            None if theirs != mine => failures.push(format!(
                "{}: reference {theirs:?}, ours {mine:?}",
                case.name
            )),
            Some((r, o, why)) if theirs.status != r || mine.status != o => failures.push(format!(
                "{}: expected reference {r} and ours {o} ({why}); got {} and {}",
                case.name, theirs.status, mine.status
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "differences:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn same_close_when_the_target_hangs_up() {
    let port = target(|mut s| async move {
        s.write_all(b"last words").await.unwrap();
    })
    .await;
    let reference = start(Impl::Reference, port);
    let ours = start(Impl::Ours, port);
    let head = upgrade_request(&["Sec-WebSocket-Protocol: binary"]);
    let theirs = exchange(reference.port, &head, &[]).await;
    let mine = exchange(ours.port, &head, &[]).await;
    assert_eq!(theirs.frames, ["data2 last words", "close 1000"]);
    assert_eq!(theirs, mine);
}

#[tokio::test]
async fn same_close_when_the_target_is_unreachable() {
    let dead = dead_port();
    let reference = start(Impl::Reference, dead);
    let ours = start(Impl::Ours, dead);
    let head = upgrade_request(&[]);
    let theirs = exchange(reference.port, &head, &[]).await;
    let mine = exchange(ours.port, &head, &[]).await;
    assert_eq!(
        (theirs.status, &theirs.frames[..]),
        (101, &["close 1011".to_string()][..])
    );
    assert_eq!(theirs, mine);
}

/// Reads a recording the way noVNC's player does (the file is a JavaScript array of string
/// literals whose escapes Python reads the same way): `(direction, bytes)` per chunk, after
/// checking the structure around them.
fn parse_recording(path: &std::path::Path) -> Vec<(char, Vec<u8>)> {
    let script = r#"
import ast, json, sys
text = open(sys.argv[1], encoding="ascii").read()
assert text.startswith("var VNC_frame_data = [\n"), text[:40]
assert text.endswith("'EOF'];\n"), text[-40:]
frames = ast.literal_eval(text[text.index("["):text.rindex("]") + 1])
assert frames[-1] == "EOF"
out = []
for f in frames[:-1]:
    mark = f[0]
    end = f.index(mark, 1)
    int(f[1:end])
    out.append([mark, f[end + 1:].encode("latin1").hex()])
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} does not parse: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let chunks: Vec<(String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    chunks
        .into_iter()
        .map(|(mark, hex)| {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (mark.chars().next().unwrap(), bytes)
        })
        .collect()
}

/// The one recording file under `dir`, once it is complete.
fn finished_recording(dir: &std::path::Path) -> PathBuf {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if let [file] = &files[..]
            && std::fs::read_to_string(file).is_ok_and(|t| t.ends_with("'EOF'];\n"))
        {
            return file.clone();
        }
        assert!(
            std::time::Instant::now() < end,
            "no finished recording in {}: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn same_recording_as_the_reference() {
    let echo = echo_target().await;
    let every_byte: Vec<u8> = (0..=255).collect();
    let messages: [&[u8]; 3] = [
        &every_byte,
        b"it's a \"quote\", a \\ and a tab\t",
        b"RFB 003.008\n",
    ];
    let mut texts = Vec::new();
    let mut chunks = Vec::new();
    for which in [Impl::Reference, Impl::Ours] {
        let dir = std::env::temp_dir().join(format!(
            "websockify-diff-record-{}-{which:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = dead_port();
        let listen = format!("127.0.0.1:{port}");
        let target = format!("127.0.0.1:{echo}");
        let record = dir.join("session");
        let args = ["--record", record.to_str().unwrap(), &listen, &target];
        let mut cmd = match which {
            Impl::Ours => command(&args),
            Impl::Reference => {
                let mut cmd = Command::new(reference());
                cmd.args(args);
                cmd
            }
        };
        cmd.stdin(Stdio::null());
        let _proxy = Proxy::start_on_port(cmd, port);
        let (mut raw, answer) = Raw::upgrade(port, &[]).await;
        assert_eq!(answer.status, 101, "{which:?}");
        for message in messages {
            raw.send_binary(message).await;
            assert_eq!(raw.read_data(message.len()).await, message, "{which:?}");
        }
        raw.send_close(1000, "").await;
        assert_eq!(raw.read_close().await.0, 1000, "{which:?}");
        let file = finished_recording(&dir);
        chunks.push(parse_recording(&file));
        // Byte for byte, but for the timestamps.
        let text = std::fs::read_to_string(&file).unwrap();
        let normalized: Vec<String> = text
            .lines()
            .map(|l| match l.chars().nth(1) {
                Some(mark @ ('{' | '}')) if l.starts_with('\'') => {
                    let rest = &l[2..];
                    let end = rest.find(mark).unwrap();
                    format!("'{mark}MS{mark}{}", &rest[end + 1..])
                }
                _ => l.to_string(),
            })
            .collect();
        texts.push(normalized);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(texts[0], texts[1]);
    let expected: Vec<(char, Vec<u8>)> = messages
        .iter()
        .flat_map(|m| [('}', m.to_vec()), ('{', m.to_vec())])
        .collect();
    assert_eq!(chunks[1], expected);
}
