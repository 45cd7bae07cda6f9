//! Token plugins through the real binary: websockify's token files and command lines, unknown
//! tokens answered with HTTP statuses, and the same plugin loaded as a shared library.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

/// A target that greets with `name` and then echoes.
async fn named_target(name: &'static str) -> u16 {
    target(move |mut s| async move {
        s.write_all(name.as_bytes()).await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-tokens-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Upgrades with `?token=` and returns the target's greeting.
async fn greeting(port: u16, path: &str, host: &str) -> Result<Vec<u8>, (u16, String)> {
    let head = upgrade_request(&[])
        .replace("GET /websockify", &format!("GET {path}"))
        .replace("Host: localhost", &format!("Host: {host}"));
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(&head).await;
    if answer.status != 101 {
        let body = String::from_utf8_lossy(&raw.read_to_end().await).into_owned();
        return Err((answer.status, body));
    }
    Ok(raw.read_data(2).await)
}

#[tokio::test]
async fn token_file_routes_each_token_to_its_target() {
    let (a, b) = (named_target("A\n").await, named_target("B\n").await);
    let d = dir("routes");
    let tokens = d.join("tokens.cfg");
    std::fs::write(
        &tokens,
        format!("# websockify token file\nvnc-a: 127.0.0.1:{a}\nvnc-b: localhost:{b}\n"),
    )
    .unwrap();
    let proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    assert_eq!(
        greeting(proxy.port, "/?token=vnc-a", "x").await.unwrap(),
        b"A\n"
    );
    assert_eq!(
        greeting(proxy.port, "/websockify?token=vnc-b", "x")
            .await
            .unwrap(),
        b"B\n"
    );

    let (status, body) = greeting(proxy.port, "/?token=nope", "x").await.unwrap_err();
    assert_eq!((status, body.trim()), (404, "unknown token"));
    let (status, body) = greeting(proxy.port, "/", "x").await.unwrap_err();
    assert_eq!((status, body.trim()), (404, "no token given"));

    // TokenFile re-reads the file when it changes.
    let c = named_target("C\n").await;
    std::fs::write(&tokens, format!("vnc-c: 127.0.0.1:{c}\n")).unwrap();
    assert_eq!(
        greeting(proxy.port, "/?token=vnc-c", "x").await.unwrap(),
        b"C\n"
    );

    let log = proxy.wait_log(
        "token lookup refused: unknown token",
        Duration::from_secs(5),
    );
    assert!(
        !log.contains("nope") && !log.contains("vnc-a"),
        "a token reached the log:\n{log}"
    );
}

#[tokio::test]
async fn websockify_command_lines_work_unchanged() {
    let (a, b) = (named_target("A\n").await, named_target("B\n").await);
    let d = dir("compat");
    // A directory of token files, as websockify reads them; and a unix socket target.
    std::fs::write(d.join("one"), format!("a: 127.0.0.1:{a}\n")).unwrap();
    let sock = d.join("b.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"U\n").await;
        }
    });
    std::fs::write(
        d.join("two"),
        format!("b: 127.0.0.1:{b}\nu: unix_socket:{}\n", sock.display()),
    )
    .unwrap();
    let source = d.to_str().unwrap();
    for args in [
        vec![
            "--token-plugin",
            "websockify.token_plugins.ReadOnlyTokenFile",
            "--token-source",
            source,
        ],
        vec!["--target-config", source],
    ] {
        let mut args = args.clone();
        args.push("127.0.0.1:0");
        let proxy = Proxy::start(&args);
        assert_eq!(
            greeting(proxy.port, "/?token=a", "x").await.unwrap(),
            b"A\n",
            "{args:?}"
        );
        assert_eq!(
            greeting(proxy.port, "/?token=b", "x").await.unwrap(),
            b"B\n",
            "{args:?}"
        );
        assert_eq!(
            greeting(proxy.port, "/?token=u", "x").await.unwrap(),
            b"U\n",
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn host_token() {
    let b = named_target("B\n").await;
    let d = dir("host");
    let tokens = d.join("tokens");
    std::fs::write(
        &tokens,
        format!("vnc-b.example.com: 127.0.0.1:{b}\n[::1]: 127.0.0.1:{b}\n"),
    )
    .unwrap();
    let proxy = Proxy::start(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "--host-token",
        "127.0.0.1:0",
    ]);
    assert_eq!(
        greeting(proxy.port, "/", "vnc-b.example.com:6080")
            .await
            .unwrap(),
        b"B\n"
    );
    assert_eq!(
        greeting(proxy.port, "/", "[::1]:6080").await.unwrap(),
        b"B\n"
    );
    assert_eq!(
        greeting(proxy.port, "/?token=vnc-b.example.com", "other")
            .await
            .unwrap_err()
            .0,
        404
    );
}

/// Builds the plugin crates as shared libraries, once, into a directory of their own (so
/// that this never waits for the target directory the tests run from).
fn plugin_library(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let out = BUILT.get_or_init(|| {
        let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-build");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "websockify-plugin-tokenfile",
                "-p",
            ])
            .arg("websockify-plugin-readonlytokenfile")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("run cargo to build the plugin libraries");
        assert!(status.success(), "building the plugin libraries failed");
        target_dir.join("debug")
    });
    out.join(format!("lib{name}.so"))
}

#[tokio::test]
async fn the_same_plugin_loaded_from_a_shared_library() {
    let a = named_target("A\n").await;
    let d = dir("dylib");
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("a: 127.0.0.1:{a}\n")).unwrap();
    let library = plugin_library("tokenfile");
    assert!(library.exists(), "{} was not built", library.display());
    let proxy = Proxy::start(&[
        "--token-plugin",
        library.to_str().unwrap(),
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    assert_eq!(
        greeting(proxy.port, "/?token=a", "x").await.unwrap(),
        b"A\n"
    );
    assert_eq!(
        greeting(proxy.port, "/?token=zz", "x").await.unwrap_err().0,
        404
    );
    proxy.wait_log("token plugin", Duration::from_secs(1));
}

#[test]
fn bad_plugins_are_startup_errors_naming_the_file() {
    let d = dir("bad");
    let not_elf = d.join("libnot.so");
    std::fs::write(&not_elf, "not a library").unwrap();
    let err = fails(
        &["--token-plugin", not_elf.to_str().unwrap(), "127.0.0.1:0"],
        1,
    );
    assert!(err.contains(not_elf.to_str().unwrap()), "{err}");
    let err = fails(&["--token-plugin", "NoSuchPlugin", "127.0.0.1:0"], 1);
    assert!(err.contains("unknown plugin `NoSuchPlugin`"), "{err}");
    let err = fails(
        &[
            "--token-plugin",
            "TokenFile",
            "--token-source",
            "/nonexistent/tokens",
            "127.0.0.1:0",
        ],
        1,
    );
    assert!(err.contains("cannot read /nonexistent/tokens"), "{err}");
}
