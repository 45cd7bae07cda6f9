//! Token plugins through the real binary: websockify's token files and command lines, unknown
//! tokens answered with HTTP statuses, and the same plugin loaded as a shared library.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A proxy whose targets come from `plugin` with `source`.
fn plugin_proxy(plugin: &str, source: &str) -> Proxy {
    Proxy::start(&[
        "--token-plugin",
        plugin,
        "--token-source",
        source,
        "127.0.0.1:0",
    ])
}

/// The status of a lookup that must be refused.
async fn refused(port: u16, path: &str) -> u16 {
    match greeting(port, path, "x").await {
        Ok(greeting) => panic!("{path} was accepted and greeted with {greeting:?}"),
        Err((status, _)) => status,
    }
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
    let proxy = plugin_proxy("TokenFile", tokens.to_str().unwrap());
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

/// A plugin crate's shared library, built for the test (see `common::build_libraries`).
fn plugin_library(name: &str) -> PathBuf {
    build_libraries(&[
        "websockify-plugin-tokenfile",
        "websockify-plugin-readonlytokenfile",
        "websockify-plugin-broken",
    ])
    .join(format!("lib{name}.so"))
}

#[tokio::test]
async fn the_same_plugin_loaded_from_a_shared_library() {
    let a = named_target("A\n").await;
    let d = dir("dylib");
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("a: 127.0.0.1:{a}\n")).unwrap();
    let library = plugin_library("tokenfile");
    assert!(library.exists(), "{} was not built", library.display());
    let proxy = plugin_proxy(library.to_str().unwrap(), tokens.to_str().unwrap());
    assert_eq!(
        greeting(proxy.port, "/?token=a", "x").await.unwrap(),
        b"A\n"
    );
    assert_eq!(refused(proxy.port, "/?token=zz").await, 404);
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

/// Compiles C with the machine's compiler (gcc comes with the Rust toolchain's requirements);
/// fails loudly if there is none.
fn cc(args: &[&str]) {
    let status = Command::new("cc")
        .args(args)
        .status()
        .expect("this test needs a C compiler (cc)");
    assert!(status.success(), "cc {args:?} failed");
}

fn c_plugin(name: &str, extra: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lib{name}.so"));
    let include = root.join("plugins/api/include");
    let source = root.join("plugins/c-example/fixed_target.c");
    let mut args = vec![
        "-shared",
        "-fPIC",
        "-Wall",
        "-Werror",
        "-I",
        include.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(["-o", out.to_str().unwrap(), source.to_str().unwrap()]);
    cc(&args);
    out
}

#[tokio::test]
async fn a_plugin_written_in_c() {
    let a = named_target("A\n").await;
    let library = c_plugin("fixedtarget", &[]);
    let target = format!("127.0.0.1:{a}");
    let proxy = plugin_proxy(library.to_str().unwrap(), &target);
    assert_eq!(
        greeting(proxy.port, "/?token=open", "x").await.unwrap(),
        b"A\n"
    );
    let (status, body) = greeting(proxy.port, "/?token=closed", "x")
        .await
        .unwrap_err();
    assert_eq!((status, body.trim()), (403, "this token may not connect"));
    let err = fails(
        &["--token-plugin", library.to_str().unwrap(), "127.0.0.1:0"],
        1,
    );
    assert!(err.contains("needs --token-source host:port"), "{err}");
}

#[test]
fn a_plugin_for_another_abi_version_is_refused() {
    let library = c_plugin("wrongabi", &["-DABI_VERSION=99"]);
    let err = fails(
        &[
            "--token-plugin",
            library.to_str().unwrap(),
            "--token-source",
            "h:1",
            "127.0.0.1:0",
        ],
        1,
    );
    assert!(
        err.contains("is built for plugin ABI version 99; this websockify speaks version 2"),
        "{err}"
    );
    assert!(err.contains(library.to_str().unwrap()), "{err}");
}

#[test]
fn a_library_without_the_entry_point_is_refused() {
    let source = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("not_a_plugin.c");
    std::fs::write(&source, "int some_other_symbol(void) { return 1; }\n").unwrap();
    let library = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libnotaplugin.so");
    cc(&[
        "-shared",
        "-fPIC",
        "-o",
        library.to_str().unwrap(),
        source.to_str().unwrap(),
    ]);
    let err = fails(
        &["--token-plugin", library.to_str().unwrap(), "127.0.0.1:0"],
        1,
    );
    assert!(
        err.contains(&format!(
            "{} is not a websockify plugin: no websockify_plugin_entry symbol",
            library.display()
        )),
        "{err}"
    );
}

#[test]
fn the_c_header_matches_the_rust_layout() {
    use std::mem::{offset_of, size_of};
    use websockify_plugin_api::{Facts, Header, Out, Str, Table};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("layout.c");
    std::fs::write(
        &program,
        r#"#include <stdio.h>
#include "websockify_plugin.h"
#define P(t, f) printf("%zu ", offsetof(t, f))
int main(void) {
    printf("%zu %zu %zu %zu %zu ", sizeof(websockify_str), sizeof(websockify_header),
           sizeof(websockify_facts), sizeof(websockify_out), sizeof(websockify_table));
    P(websockify_facts, client_cert_cn); P(websockify_facts, headers); P(websockify_facts, headers_len);
    P(websockify_out, status); P(websockify_out, buf); P(websockify_out, len);
    P(websockify_table, flags); P(websockify_table, name); P(websockify_table, create); P(websockify_table, call); P(websockify_table, destroy);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = program.with_extension("");
    let include = root.join("plugins/api/include");
    cc(&[
        "-I",
        include.to_str().unwrap(),
        "-o",
        exe.to_str().unwrap(),
        program.to_str().unwrap(),
    ]);
    let out = Command::new(&exe).output().unwrap();
    let c = String::from_utf8(out.stdout).unwrap();
    let rust = [
        size_of::<Str>(),
        size_of::<Header>(),
        size_of::<Facts>(),
        size_of::<Out>(),
        size_of::<Table>(),
        offset_of!(Facts, client_cert_cn),
        offset_of!(Facts, headers),
        offset_of!(Facts, headers_len),
        offset_of!(Out, status),
        offset_of!(Out, buf),
        offset_of!(Out, len),
        offset_of!(Table, flags),
        offset_of!(Table, name),
        offset_of!(Table, create),
        offset_of!(Table, call),
        offset_of!(Table, destroy),
    ]
    .map(|n| n.to_string())
    .join(" ");
    assert_eq!(c.trim(), rust);
}

#[tokio::test]
async fn a_misbehaving_plugin_ends_only_its_own_request() {
    let a = named_target("A\n").await;
    let library = plugin_library("brokenplugin");
    let target = format!("127.0.0.1:{a}");
    let proxy = plugin_proxy(library.to_str().unwrap(), &target);
    let port = proxy.port;
    // The hang runs while the others are answered: it blocks neither them nor the server.
    let hang = tokio::spawn(async move { greeting(port, "/?token=hang", "x").await });
    for (token, status) in [("panic", 502), ("garbage", 502), ("status200", 502)] {
        let (got, _) = greeting(port, &format!("/?token={token}"), "x")
            .await
            .unwrap_err();
        assert_eq!(got, status, "{token}");
        assert_eq!(
            greeting(port, "/?token=fine", "x").await.unwrap(),
            b"A\n",
            "after {token}"
        );
    }
    let started = std::time::Instant::now();
    let (status, _) = hang.await.unwrap().unwrap_err();
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_secs(6));
    let log = proxy.wait_log("did not answer within 5s", Duration::from_secs(2));
    assert!(log.contains("panicked: the broken plugin panics"), "{log}");
    assert!(log.contains("bad target from the plugin"), "{log}");
    assert_eq!(greeting(port, "/?token=fine", "x").await.unwrap(), b"A\n");
}

#[tokio::test]
async fn tokens_from_a_cookie_and_a_bearer_subprotocol() {
    let (a, b) = (named_target("A\n").await, named_target("B\n").await);
    let d = dir("sources");
    let tokens = d.join("tokens");
    std::fs::write(
        &tokens,
        format!("from-cookie: 127.0.0.1:{a}\nvm/console: 127.0.0.1:{b}\n"),
    )
    .unwrap();
    let proxy = plugin_proxy("TokenFile", tokens.to_str().unwrap());
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Cookie: lang=en; token=from-cookie"]).await;
    assert_eq!(raw.read_data(2).await, b"A\n");
    // "vm/console" in unpadded base64url, next to the real subprotocol.
    let (mut raw, answer) = Raw::upgrade(
        proxy.port,
        &["Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.dm0vY29uc29sZQ, binary"],
    )
    .await;
    assert_eq!(
        answer.header("Sec-WebSocket-Protocol").as_deref(),
        Some("binary")
    );
    assert_eq!(raw.read_data(2).await, b"B\n");
}

/// A token API on loopback: `/plain/<token>` answers `host:port`, `/json/<token>` JSON, and an
/// unknown token 404; it records the paths it was asked for.
async fn token_api(targets: Vec<(&'static str, u16)>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let targets = Arc::new(targets);
    let port = target(move |mut s| {
        let targets = targets.clone();
        let seen = seen.clone();
        async move {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).await.unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(path.clone());
            let token = path.rsplit('/').next().unwrap_or("");
            let found = targets.iter().find(|(t, _)| *t == token).map(|(_, p)| *p);
            let (status, body) = match (path.starts_with("/json/"), found) {
                (_, None) => ("404 Not Found", "no".to_string()),
                (false, Some(p)) => ("200 OK", format!("127.0.0.1:{p}")),
                (true, Some(p)) => (
                    "200 OK",
                    format!("{{\"host\": \"127.0.0.1\", \"port\": {p}}}"),
                ),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    (port, asked)
}

#[tokio::test]
async fn token_apis() {
    let a = named_target("A\n").await;
    let (api, asked) = token_api(vec![("vm-a", a)]).await;
    for (plugin, path) in [("BaseTokenAPI", "plain"), ("JSONTokenApi", "json")] {
        let source = format!("http://127.0.0.1:{api}/{path}/%s");
        let proxy = plugin_proxy(plugin, &source);
        assert_eq!(
            greeting(proxy.port, "/?token=vm-a", "x").await.unwrap(),
            b"A\n",
            "{plugin}"
        );
        assert_eq!(refused(proxy.port, "/?token=vm-z").await, 404, "{plugin}");
        // The token cannot rewrite the URL: it is percent-encoded into its place.
        assert_eq!(
            refused(proxy.port, "/?token=..%2F..%2Fadmin%3Fx").await,
            404
        );
    }
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == "/plain/%2E%2E%2F%2E%2E%2Fadmin%3Fx"),
        "{:?}",
        asked.lock().unwrap()
    );
    // An API that is down: 502 for that request.
    let source = format!("http://127.0.0.1:{}/plain/%s", dead_port());
    let proxy = plugin_proxy("BaseTokenAPI", &source);
    assert_eq!(refused(proxy.port, "/?token=vm-a").await, 502);
}

#[tokio::test]
async fn token_file_name_and_socket_directory() {
    let a = named_target("A\n").await;
    let d = dir("bydir");
    std::fs::write(d.join("vm-a"), format!("127.0.0.1:{a}\n")).unwrap();
    let sock = d.join("vm-u");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"U\n").await;
        }
    });
    let source = d.to_str().unwrap();
    let proxy = plugin_proxy("TokenFileName", source);
    assert_eq!(
        greeting(proxy.port, "/?token=vm-a", "x").await.unwrap(),
        b"A\n"
    );
    assert_eq!(refused(proxy.port, "/?token=..%2Fvm-a").await, 404);
    let proxy = plugin_proxy("UnixDomainSocketDirectory", source);
    assert_eq!(
        greeting(proxy.port, "/?token=vm-u", "x").await.unwrap(),
        b"U\n"
    );
    assert_eq!(
        refused(proxy.port, "/?token=vm-a").await,
        404,
        "not a socket"
    );
}

#[tokio::test]
async fn jwt_tokens() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let a = named_target("A\n").await;
    let d = dir("jwt");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"host": "127.0.0.1", "port": a});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };

    // HS256: the key file holds the JWK `k` value (base64url), as websockify reads it.
    let secret = b"a shared secret for the test";
    use base64::Engine;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    std::fs::write(d.join("hs.key"), format!("{k}\n")).unwrap();
    let hs = |c: serde_json::Value, key: &[u8]| {
        encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    // ES256: a P-256 key made here; the proxy gets the public key.
    let pair = rcgen::KeyPair::generate().unwrap();
    std::fs::write(d.join("es.pub"), pair.public_key_pem()).unwrap();
    let es_key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let es = |c: serde_json::Value| encode(&Header::new(Algorithm::ES256), &c, &es_key).unwrap();

    for (key_file, good, expired, early, wrong) in [
        (
            "hs.key",
            hs(claims(serde_json::json!({"exp": now + 600})), secret),
            hs(claims(serde_json::json!({"exp": now - 10})), secret),
            hs(claims(serde_json::json!({"nbf": now + 600})), secret),
            hs(claims(serde_json::json!({})), b"another secret"),
        ),
        (
            "es.pub",
            es(claims(serde_json::json!({"nbf": now - 10}))),
            es(claims(serde_json::json!({"exp": now - 10}))),
            es(claims(serde_json::json!({"nbf": now + 600}))),
            hs(claims(serde_json::json!({})), secret),
        ),
    ] {
        let key = d.join(key_file);
        let proxy = plugin_proxy("JWTTokenApi", key.to_str().unwrap());
        let ask = |t: &str| format!("/?token={t}");
        assert_eq!(
            greeting(proxy.port, &ask(&good), "x").await.unwrap(),
            b"A\n",
            "{key_file}"
        );
        for (what, token) in [
            ("expired", &expired),
            ("not yet valid", &early),
            ("wrong key", &wrong),
        ] {
            let (status, body) = greeting(proxy.port, &ask(token), "x").await.unwrap_err();
            assert_eq!(status, 404, "{key_file}: {what}");
            assert!(
                body.starts_with("invalid token"),
                "{key_file}: {what}: {body}"
            );
        }
        // An unsigned token is never accepted.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(claims(serde_json::json!({})).to_string())
        );
        assert_eq!(refused(proxy.port, &ask(&none)).await, 404, "{key_file}");
    }
}

/// A real redis-server on loopback for one test; stopped on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Installs Debian's redis-server if it is missing (as root, like CI), then starts it.
    fn start() -> Redis {
        ensure_installed(&["redis-server", "redis-cli"], "redis-server");
        let port = dead_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while redis.cli(&["ping"]) != "PONG" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[tokio::test]
async fn token_redis_with_a_real_server() {
    let (a, b) = (named_target("A\n").await, named_target("B\n").await);
    let redis = Redis::start();
    redis.cli(&["set", "vm-a", &format!("{{\"host\": \"127.0.0.1:{a}\"}}")]);
    redis.cli(&["set", "app:sub:vm-b", &format!("127.0.0.1:{b}")]);
    redis.cli(&["set", "vm-bad", "nonsense"]);

    let source = format!("127.0.0.1:{}", redis.port);
    let proxy = plugin_proxy("TokenRedis", &source);
    assert_eq!(
        greeting(proxy.port, "/?token=vm-a", "x").await.unwrap(),
        b"A\n"
    );
    assert_eq!(refused(proxy.port, "/?token=vm-zz").await, 404);
    assert_eq!(refused(proxy.port, "/?token=vm-bad").await, 502);
    // A token added while running is found at once: every replica shares the server.
    redis.cli(&["set", "vm-late", &format!("127.0.0.1:{b}")]);
    assert_eq!(
        greeting(proxy.port, "/?token=vm-late", "x").await.unwrap(),
        b"B\n"
    );

    // websockify's long form with a quoted, nested namespace.
    let source = format!("127.0.0.1:{}:0::\"app:sub\"", redis.port);
    let proxy = plugin_proxy("TokenRedis", &source);
    assert_eq!(
        greeting(proxy.port, "/?token=vm-b", "x").await.unwrap(),
        b"B\n"
    );
    assert_eq!(refused(proxy.port, "/?token=vm-a").await, 404);

    // Redis going away fails only the lookups, with 502.
    drop(redis);
    assert_eq!(refused(proxy.port, "/?token=vm-b").await, 502);
}
