//! Auth plugins through the real binary: websockify's BasicHTTPAuth, ExpectOrigin and
//! ClientCertCNAuth, answered as websockify answers, and `--web-auth` guarding files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pki::Ca;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy_with(extra: &[&str]) -> Proxy {
    let echo = echo_target().await;
    let target = format!("127.0.0.1:{echo}");
    let mut args = extra.to_vec();
    args.push("127.0.0.1:0");
    args.push(&target);
    Proxy::start(&args)
}

async fn answer(port: u16, extra: &[&str]) -> (Answer, String) {
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(&upgrade_request(extra)).await;
    let body = if answer.status == 101 {
        String::new()
    } else {
        String::from_utf8_lossy(&raw.read_to_end().await).into_owned()
    };
    (answer, body)
}

#[tokio::test]
async fn basic_http_auth() {
    let proxy = proxy_with(&[
        "--auth-plugin",
        "BasicHTTPAuth",
        "--auth-source",
        "alice:s3cret",
    ])
    .await;
    let (a, _) = answer(proxy.port, &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Websockify\"")
    );
    // alice:s3cret, alice:wrong.
    assert_eq!(
        answer(proxy.port, &["Authorization: Basic YWxpY2U6czNjcmV0"])
            .await
            .0
            .status,
        101
    );
    assert_eq!(
        answer(proxy.port, &["Authorization: Basic YWxpY2U6d3Jvbmc="])
            .await
            .0
            .status,
        401
    );
    assert_eq!(
        answer(proxy.port, &["Authorization: Digest x"])
            .await
            .0
            .status,
        403
    );
    let (mut raw, _) = Raw::upgrade(proxy.port, &["Authorization: Basic YWxpY2U6czNjcmV0"]).await;
    raw.send_binary(b"in").await;
    assert_eq!(raw.read_data(2).await, b"in");
    let log = proxy.wait_log("authentication refused", Duration::from_secs(5));
    assert!(
        !log.contains("s3cret") && !log.contains("YWxpY2U6"),
        "credentials in the log:\n{log}"
    );
}

#[tokio::test]
async fn expect_origin() {
    let proxy = proxy_with(&[
        "--auth-plugin",
        "websockify.auth_plugins.ExpectOrigin",
        "--auth-source",
        "https://novnc.example https://other.example",
    ])
    .await;
    assert_eq!(
        answer(proxy.port, &["Origin: https://novnc.example"])
            .await
            .0
            .status,
        101
    );
    let (a, body) = answer(proxy.port, &["Origin: https://evil.example"]).await;
    assert_eq!((a.status, body.trim()), (403, "Invalid Origin"));
    assert_eq!(answer(proxy.port, &[]).await.0.status, 403);
    // Drafts 7 and 8 send the origin as Sec-WebSocket-Origin.
    let head = upgrade_request(&["Sec-WebSocket-Origin: https://other.example"])
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let mut raw = Raw::connect(proxy.port).await;
    assert_eq!(raw.request(&head).await.status, 101);
}

#[tokio::test]
async fn web_auth_guards_files_only_when_asked() {
    let dir = std::env::temp_dir().join(format!("websockify-webauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vnc.html"), "page").unwrap();
    let web = dir.to_str().unwrap();
    let auth = ["--auth-plugin", "BasicHTTPAuth", "--auth-source", "u:p"];
    let get = |port: u16, extra: &'static str| async move {
        let mut raw = Raw::connect(port).await;
        raw.request(&format!("GET /vnc.html HTTP/1.1\r\nHost: x\r\n{extra}\r\n"))
            .await
            .status
    };
    let mut args = auth.to_vec();
    args.extend(["--web", web, "--web-auth"]);
    let guarded = proxy_with(&args).await;
    assert_eq!(get(guarded.port, "").await, 401);
    // u:p
    assert_eq!(
        get(guarded.port, "Authorization: Basic dTpw\r\n").await,
        200
    );
    let mut args = auth.to_vec();
    args.extend(["--web", web]);
    let open = proxy_with(&args).await;
    assert_eq!(get(open.port, "").await, 200);
    assert_eq!(
        answer(open.port, &[]).await.0.status,
        401,
        "upgrades are still guarded"
    );
}

#[tokio::test]
async fn client_cert_cn_comes_from_tls_never_from_a_header() {
    let dir = std::env::temp_dir().join(format!("websockify-cnauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let (cert, key) = server_ca.leaf("server");
    std::fs::write(dir.join("server.pem"), format!("{cert}{key}")).unwrap();
    std::fs::write(dir.join("clients.pem"), &client_ca.pem).unwrap();
    let server_pem = dir.join("server.pem");
    let clients = dir.join("clients.pem");
    let proxy = proxy_with(&[
        "--cert",
        server_pem.to_str().unwrap(),
        "--verify-client",
        "--cafile",
        clients.to_str().unwrap(),
        "--auth-plugin",
        "ClientCertCNAuth",
        "--auth-source",
        "alice carol",
    ])
    .await;
    let connect = |cn: &'static str| {
        let (cert, key) = client_ca.leaf(cn);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(server_ca.pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
        let port = proxy.port;
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            // A forged header naming an allowed CN must not matter.
            tls.write_all(upgrade_request(&["SSL_CLIENT_S_DN_CN: alice"]).as_bytes())
                .await
                .unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut b).await.unwrap() == 1 {
                head.push(b[0]);
            }
            String::from_utf8(head).unwrap()
        }
    };
    assert!(connect("alice").await.starts_with("HTTP/1.1 101"));
    assert!(connect("mallory").await.starts_with("HTTP/1.1 403"));
}

#[test]
fn auth_rules_and_unknown_plugins() {
    let err = fails(
        &["--auth-plugin", "NoSuchAuth", "127.0.0.1:0", "127.0.0.1:1"],
        1,
    );
    assert!(err.contains("unknown plugin `NoSuchAuth`"), "{err}");
    let err = fails(
        &["--auth-plugin", "TokenFile", "127.0.0.1:0", "127.0.0.1:1"],
        1,
    );
    assert!(err.contains("TokenFile is not an auth plugin"), "{err}");
    let err = fails(&["--web-auth", "6080", "h:1"], 2);
    assert!(err.contains("--web-auth needs --auth-plugin"), "{err}");
}
