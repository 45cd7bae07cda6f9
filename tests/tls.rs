//! One port for everything: ws and wss, certificate reload under a running server,
//! `--ssl-only`, Flash policy with and without TLS, client certificates, TLS to the target,
//! versions, ciphers and encrypted keys. Certificates are made here with rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Ca;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const FLASH_REQUEST: &[u8] = b"<policy-file-request/>\0";
const FLASH_POLICY: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\" /></cross-domain-policy>\n";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a file by rename, as Kubernetes and cert-manager replace Secret contents.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn all_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

async fn tls_connect(
    port: u16,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The common name of the certificate the server presented.
fn server_cn(stream: &TlsStream<TcpStream>) -> String {
    let cert = &stream.get_ref().1.peer_certificates().unwrap()[0];
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    parsed
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// A WebSocket upgrade and one echo over any stream; returns the stream for more.
async fn ws_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    payload: &[u8],
) -> S {
    s.write_all(upgrade_request(&["Sec-WebSocket-Protocol: binary"]).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed during the handshake"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    echo(&mut s, payload).await;
    s
}

/// One binary message echoed on an upgraded stream.
async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, payload: &[u8]) {
    s.write_all(&encode_frame(true, 2, payload, Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let mut got = Vec::new();
    while decode_frame(&got).is_none() {
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "closed before the echo");
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(decode_frame(&got).unwrap().0.payload, payload);
}

struct Server {
    proxy: Proxy,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
}

async fn tls_server(name: &str, extra: &[&str]) -> Server {
    let d = dir(name);
    let ca = Ca::new("test CA");
    let (cert_pem, key_pem) = ca.leaf("first");
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let echo = echo_target().await;
    let mut args = vec![
        "--cert".to_string(),
        cert.to_str().unwrap().to_string(),
        "--key".to_string(),
        key.to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1:0".to_string());
    args.push(format!("127.0.0.1:{echo}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    Server {
        proxy,
        ca,
        cert,
        key,
    }
}

#[tokio::test]
async fn ws_and_wss_on_one_port() {
    let server = tls_server("both", &["-v"]).await;
    let tls = tls_connect(
        server.proxy.port,
        client_config(&server.ca.pem, &all_versions()),
    )
    .await
    .unwrap();
    assert_eq!(server_cn(&tls), "first");
    ws_echo(tls, b"over tls").await;
    let plain = TcpStream::connect(("127.0.0.1", server.proxy.port))
        .await
        .unwrap();
    ws_echo(plain, b"in the clear").await;
    // The plain session is the second logged: waiting for it (not the first) makes sure
    // the log thread has written both lines.
    let log = server.proxy.wait_log("tls=false", Duration::from_secs(5));
    assert!(log.contains("tls=true"), "{log}");
}

#[tokio::test]
async fn certificate_reload_without_restart() {
    let server = tls_server("reload", &[]).await;
    let config = || client_config(&server.ca.pem, &all_versions());
    let before = tls_connect(server.proxy.port, config()).await.unwrap();
    assert_eq!(server_cn(&before), "first");
    // A session opened before the swap keeps working after it.
    let mut running = ws_echo(before, b"before").await;

    let (cert, key) = server.ca.leaf("second");
    replace(&server.key, &key);
    replace(&server.cert, &cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = tls_connect(server.proxy.port, config()).await.unwrap();
        if server_cn(&s) == "second" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.proxy.wait_log(
        "certificate files changed: TLS certificate reloaded",
        Duration::from_secs(2),
    );
    echo(&mut running, b"after").await;

    // A broken new file keeps the previous certificate, and says why.
    replace(&server.cert, "not a certificate");
    server.proxy.wait_log(
        "TLS reload failed, keeping the previous certificate",
        Duration::from_secs(10),
    );
    let s = tls_connect(server.proxy.port, config()).await.unwrap();
    assert_eq!(server_cn(&s), "second");

    // SIGHUP reloads too.
    let (cert, key) = server.ca.leaf("third");
    replace(&server.key, &key);
    replace(&server.cert, &cert);
    server.proxy.signal("HUP");
    server
        .proxy
        .wait_log("SIGHUP: TLS certificate reloaded", Duration::from_secs(5));
    let s = tls_connect(server.proxy.port, config()).await.unwrap();
    assert_eq!(server_cn(&s), "third");
}

/// A reload that cannot finish must hold no async worker: here the key file becomes a FIFO
/// nobody writes, so opening it blocks, as a read from a hung network file system would.
/// The proxy runs pinned to one CPU, where its runtime is a single thread and anything
/// blocking on it freezes every connection. SIGHUP and the file poll (which sees the new
/// inode) both try to reload; sessions old and new, TLS and plain, must go on, and SIGTERM
/// must still end the process.
#[tokio::test]
async fn a_reload_that_hangs_holds_no_worker() {
    ensure_installed(&["taskset"], "util-linux");
    let d = dir("hung");
    let ca = Ca::new("test CA");
    let (cert_pem, key_pem) = ca.leaf("first");
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let target = echo_target().await;
    let mut cmd = std::process::Command::new("taskset");
    cmd.args(["-c", "0", binary(), "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["127.0.0.1:0", &format!("127.0.0.1:{target}")]);
    clean_env(&mut cmd);
    let mut proxy = Proxy::start_cmd(cmd);
    let config = || client_config(&ca.pem, &all_versions());
    let before = tls_connect(proxy.port, config()).await.unwrap();
    let mut running = ws_echo(before, b"before").await;

    std::fs::remove_file(&key).unwrap();
    nix::unistd::mkfifo(&key, nix::sys::stat::Mode::S_IRWXU).unwrap();
    proxy.signal("HUP");
    // Past one poll of the files (every 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let alive = async {
        echo(&mut running, b"during").await;
        let tls = tls_connect(proxy.port, config()).await.unwrap();
        assert_eq!(server_cn(&tls), "first");
        ws_echo(tls, b"new over tls").await;
        let plain = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        ws_echo(plain, b"new in the clear").await;
    };
    tokio::time::timeout(Duration::from_secs(10), alive)
        .await
        .unwrap_or_else(|_| panic!("the hung reload froze the proxy; log:\n{}", proxy.log()));
    drop(running);
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn ssl_only_refuses_plain_connections() {
    let server = tls_server("only", &["--ssl-only"]).await;
    let mut plain = Raw::connect(server.proxy.port).await;
    plain
        .stream
        .write_all(upgrade_request(&[]).as_bytes())
        .await
        .unwrap();
    assert!(plain.closed_within(Duration::from_secs(5)).await);
    assert!(
        plain.buf.is_empty(),
        "a plain client got an answer: {:?}",
        plain.buf
    );
    server.proxy.wait_log(
        "plain connection refused: --ssl-only",
        Duration::from_secs(5),
    );
    let tls = tls_connect(
        server.proxy.port,
        client_config(&server.ca.pem, &all_versions()),
    )
    .await
    .unwrap();
    ws_echo(tls, b"ok").await;
}

#[test]
fn ssl_only_without_a_certificate_is_a_startup_error() {
    let d = dir("nocert");
    let out = command(&["--ssl-only", "127.0.0.1:0", "127.0.0.1:1"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--ssl-only needs a certificate: self.pem not found"),
        "{err}"
    );
}

#[tokio::test]
async fn default_self_pem_enables_tls() {
    let d = dir("selfpem");
    let ca = Ca::new("ca");
    let (cert, key) = ca.leaf("self");
    std::fs::write(d.join("self.pem"), format!("{cert}{key}")).unwrap();
    let echo = echo_target().await;
    let mut cmd = command(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    cmd.current_dir(&d);
    let proxy = Proxy::start_cmd(cmd);
    let tls = tls_connect(proxy.port, client_config(&ca.pem, &all_versions()))
        .await
        .unwrap();
    assert_eq!(server_cn(&tls), "self");
    ws_echo(tls, b"self.pem").await;
}

#[tokio::test]
async fn flash_policy_with_and_without_tls() {
    let server = tls_server("flash", &[]).await;
    let mut plain = TcpStream::connect(("127.0.0.1", server.proxy.port))
        .await
        .unwrap();
    plain.write_all(FLASH_REQUEST).await.unwrap();
    let mut got = Vec::new();
    plain.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, FLASH_POLICY);

    let mut tls = tls_connect(
        server.proxy.port,
        client_config(&server.ca.pem, &all_versions()),
    )
    .await
    .unwrap();
    tls.write_all(FLASH_REQUEST).await.unwrap();
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got).await;
    assert_eq!(got, FLASH_POLICY);
    let log = server.proxy.wait_log("secure=true", Duration::from_secs(5));
    assert_eq!(
        log.matches("Flash policy request answered").count(),
        2,
        "{log}"
    );
}

#[tokio::test]
async fn silent_clients_are_closed_after_3_seconds() {
    let echo = echo_target().await;
    // The close is logged at debug level (-v): a flood would otherwise write a line each.
    let proxy = Proxy::start(&["-v", "127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    let mut raw = Raw::connect(proxy.port).await;
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(6)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2800), "{took:?}");
    proxy.wait_log("client sent nothing within 3s", Duration::from_secs(2));
}

#[tokio::test]
async fn tls_without_a_certificate_is_refused_and_logged() {
    let echo = echo_target().await;
    let d = dir("notls");
    let mut cmd = command(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    cmd.current_dir(&d);
    let proxy = Proxy::start_cmd(cmd);
    let ca = Ca::new("ca");
    assert!(
        tls_connect(proxy.port, client_config(&ca.pem, &all_versions()))
            .await
            .is_err()
    );
    proxy.wait_log(
        "TLS handshake refused: no certificate configured",
        Duration::from_secs(5),
    );
}

#[tokio::test]
async fn client_certificates_are_verified_and_their_cn_known() {
    let d = dir("clientcert");
    let client_ca = Ca::new("client CA");
    std::fs::write(d.join("clients.pem"), &client_ca.pem).unwrap();
    let cafile = d.join("clients.pem");
    let server = tls_server(
        "verify",
        &[
            "-v",
            "--verify-client",
            "--cafile",
            cafile.to_str().unwrap(),
        ],
    )
    .await;

    // Without a certificate: refused.
    let no_cert = client_config(&server.ca.pem, &all_versions());
    let refused = match tls_connect(server.proxy.port, no_cert).await {
        Err(_) => true,
        // TLS 1.3 reports the refusal on the first read.
        Ok(mut s) => {
            let _ = s.write_all(upgrade_request(&[]).as_bytes()).await;
            let mut b = [0u8; 16];
            !matches!(s.read(&mut b).await, Ok(n) if n > 0)
        }
    };
    assert!(refused, "a client without a certificate got through");

    // With one from the trusted CA: accepted, and its CN is a fact of the session.
    let (cert_pem, key_pem) = client_ca.leaf("alice");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server.ca.pem.as_bytes()).unwrap())
        .unwrap();
    let with_cert = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let tls = tls_connect(server.proxy.port, with_cert).await.unwrap();
    ws_echo(tls, b"alice").await;
    server
        .proxy
        .wait_log("client_cert_cn=alice", Duration::from_secs(5));
}

#[tokio::test]
async fn minimum_tls_version() {
    let server = tls_server("v13", &["--ssl-version", "tlsv1_3"]).await;
    let only12 = client_config(&server.ca.pem, &[&rustls::version::TLS12]);
    assert!(tls_connect(server.proxy.port, only12).await.is_err());
    let only13 = client_config(&server.ca.pem, &[&rustls::version::TLS13]);
    ws_echo(
        tls_connect(server.proxy.port, only13).await.unwrap(),
        b"1.3",
    )
    .await;
}

#[tokio::test]
async fn cipher_list_is_honoured() {
    let server = tls_server(
        "ciphers",
        &[
            "--ssl-version",
            "tlsv1_2",
            "--ssl-ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ],
    )
    .await;
    let only12 = client_config(&server.ca.pem, &[&rustls::version::TLS12]);
    let tls = tls_connect(server.proxy.port, only12).await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap();
    assert_eq!(
        format!("{:?}", suite.suite()),
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );
}

#[test]
fn unknown_cipher_is_a_startup_error() {
    let d = dir("badcipher");
    let ca = Ca::new("ca");
    let (cert, key) = ca.leaf("x");
    std::fs::write(d.join("self.pem"), format!("{cert}{key}")).unwrap();
    let out = command(&["--ssl-ciphers", "HIGH:!aNULL", "127.0.0.1:0", "127.0.0.1:1"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--ssl-ciphers: `HIGH`"), "{err}");
}

#[tokio::test]
async fn encrypted_key_with_password() {
    let d = dir("keypass");
    let ca = Ca::new("ca");
    let (cert, key) = ca.leaf("locked");
    std::fs::write(d.join("cert.pem"), cert).unwrap();
    std::fs::write(d.join("plain.pem"), key).unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:s3cret",
            "-in",
        ])
        .arg(d.join("plain.pem"))
        .arg("-out")
        .arg(d.join("key.pem"))
        .status()
        .expect("this test needs the openssl command (apt-get install openssl)");
    assert!(status.success());
    let echo = echo_target().await;
    let cert = d.join("cert.pem");
    let key = d.join("key.pem");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let target = format!("127.0.0.1:{echo}");

    let out = command(&[
        "--cert",
        cert,
        "--key",
        key,
        "--key-password",
        "wrong",
        "127.0.0.1:0",
        &target,
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("wrong --key-password")
    );
    let out = command(&["--cert", cert, "--key", key, "127.0.0.1:0", &target])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("give --key-password")
    );

    let proxy = Proxy::start(&[
        "--cert",
        cert,
        "--key",
        key,
        "--key-password",
        "s3cret",
        "127.0.0.1:0",
        &target,
    ]);
    let tls = tls_connect(proxy.port, client_config(&ca.pem, &all_versions()))
        .await
        .unwrap();
    ws_echo(tls, b"unlocked").await;
    assert!(!proxy.log().contains("s3cret"));
}

/// A TLS echo server with a certificate from `ca`, on loopback.
async fn tls_echo_target(ca: &Ca) -> u16 {
    let (cert, key) = ca.leaf("target");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn tls_to_the_target_verified_against_a_pinned_ca() {
    let d = dir("target");
    let ca = Ca::new("target CA");
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    let port = tls_echo_target(&ca).await;
    let ca_file = d.join("ca.pem");
    let proxy = Proxy::start(&[
        "--ssl-target",
        "--ssl-target-ca",
        ca_file.to_str().unwrap(),
        "127.0.0.1:0",
        &format!("localhost:{port}"),
    ]);
    let plain = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    ws_echo(plain, b"to a TLS target").await;

    // Without the pin, the system roots do not trust the test CA: the session fails with 1011.
    let proxy = Proxy::start(&["--ssl-target", "127.0.0.1:0", &format!("localhost:{port}")]);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    assert_eq!(raw.read_close().await.0, 1011);
    proxy.wait_log("TLS to localhost", Duration::from_secs(5));
}

#[test]
fn ssl_target_ca_needs_ssl_target() {
    let err = fails(&["--ssl-target-ca", "/tmp/x.pem", "6080", "h:1"], 2);
    assert!(err.contains("--ssl-target-ca needs --ssl-target"), "{err}");
}

#[tokio::test]
async fn hixie_location_says_wss_under_tls() {
    let server = tls_server("hixie", &[]).await;
    let mut tls = tls_connect(
        server.proxy.port,
        client_config(&server.ca.pem, &all_versions()),
    )
    .await
    .unwrap();
    let head = "GET /vnc HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
                Host: example.com:6080\r\nOrigin: https://example.com\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tls.read(&mut b).await.unwrap(), 1);
        got.push(b[0]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.contains("WebSocket-Location: wss://example.com:6080/vnc\r\n"),
        "{text}"
    );
}
