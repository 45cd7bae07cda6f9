//! `--trusted-proxies` through the real binary: forwarded headers name the client (logs,
//! per-address limits) and the scheme (Hixie's `Location` says wss behind a TLS-terminating
//! ingress) only when the request comes from a trusted peer; a spoofed header from anyone
//! else changes nothing.

mod common;

use std::time::Duration;

use common::*;

async fn upgrade_with(port: u16, headers: &[&str]) -> (Raw, u16) {
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(&upgrade_request(headers)).await;
    if answer.status == 101 {
        raw.send_binary(b"hi").await;
        assert_eq!(raw.read_data(2).await, b"hi");
    }
    (raw, answer.status)
}

async fn close(mut raw: Raw) {
    raw.send_close(1000, "").await;
    raw.read_close().await;
}

#[tokio::test]
async fn a_trusted_peer_names_the_client() {
    let proxy = echo_proxy_with(&["--trusted-proxies", "127.0.0.0/8,10.0.0.0/8"]).await;
    let (raw, status) = upgrade_with(proxy.port, &["X-Forwarded-For: 198.51.100.7"]).await;
    assert_eq!(status, 101);
    close(raw).await;
    proxy.wait_log("client=198.51.100.7 target=", Duration::from_secs(5));

    // A chain: the client's own claim in front is skipped past, our proxies are skipped.
    let (raw, _) = upgrade_with(
        proxy.port,
        &["X-Forwarded-For: 6.6.6.6, 203.0.113.5, 10.0.0.2"],
    )
    .await;
    close(raw).await;
    proxy.wait_log("client=203.0.113.5 target=", Duration::from_secs(5));

    // RFC 7239, with a port, when it is the header the ingress sends.
    let proxy = echo_proxy_with(&[
        "--trusted-proxies",
        "127.0.0.0/8,10.0.0.0/8",
        "--forwarded-header",
        "forwarded",
    ])
    .await;
    let (raw, _) = upgrade_with(
        proxy.port,
        &[
            r#"Forwarded: for="[2001:db8::7]:4711""#,
            "X-Forwarded-For: 6.6.6.6",
        ],
    )
    .await;
    close(raw).await;
    let log = proxy.wait_log("client=[2001:db8::7]:4711 target=", Duration::from_secs(5));
    assert!(!log.contains("6.6.6.6"), "{log}");
}

/// nginx appends the real client to `X-Forwarded-For` and passes a client's own `Forwarded`
/// through untouched: that `Forwarded` must not name the client (security review: three
/// sessions with forged `Forwarded: for=198.51.100.N` got past a per-address limit of 1 and
/// were logged with the forged addresses).
#[tokio::test]
async fn a_clients_own_forwarded_header_names_nobody() {
    let proxy = echo_proxy_with(&[
        "--trusted-proxies",
        "127.0.0.0/8",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let mut statuses = Vec::new();
    let mut open = Vec::new();
    for n in 1..=3 {
        let forged = format!("Forwarded: for=198.51.100.{n}");
        let (raw, status) =
            upgrade_with(proxy.port, &[&forged, "X-Forwarded-For: 203.0.113.9"]).await;
        statuses.push(status);
        open.push(raw);
    }
    assert_eq!(statuses, [101, 503, 503], "one real client, one session");
    let log = proxy.wait_log("203.0.113.9", Duration::from_secs(5));
    assert!(!log.contains("198.51.100"), "{log}");
}

#[tokio::test]
async fn an_untrusted_peer_changes_nothing() {
    let proxy = echo_proxy_with(&[
        "--trusted-proxies",
        "10.0.0.0/8",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let (raw, status) = upgrade_with(
        proxy.port,
        &[
            "X-Forwarded-For: 198.51.100.7",
            "Forwarded: for=198.51.100.8",
        ],
    )
    .await;
    assert_eq!(status, 101);
    let own = raw.stream.local_addr().unwrap().to_string();
    // Spoofing another address does not get around the per-address limit either.
    let (_second, status) = upgrade_with(proxy.port, &["X-Forwarded-For: 198.51.100.9"]).await;
    assert_eq!(status, 503);
    close(raw).await;
    let log = proxy.wait_log(&format!("client={own} target="), Duration::from_secs(5));
    assert!(!log.contains("198.51.100"), "{log}");
}

#[tokio::test]
async fn per_address_limits_count_forwarded_clients() {
    let proxy = echo_proxy_with(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let (_a, status) = upgrade_with(proxy.port, &["X-Forwarded-For: 203.0.113.1"]).await;
    assert_eq!(status, 101);
    let (_b, status) = upgrade_with(proxy.port, &["X-Forwarded-For: 203.0.113.1"]).await;
    assert_eq!(status, 503, "the same client through the same ingress");
    let (_c, status) = upgrade_with(proxy.port, &["X-Forwarded-For: 203.0.113.2"]).await;
    assert_eq!(status, 101, "another client through the same ingress");
}

#[tokio::test]
async fn behind_a_tls_terminating_ingress_hixie_says_wss() {
    let hixie = "GET /websockify HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\
                 Connection: Upgrade\r\nOrigin: https://example.com\r\n";
    let location = |trusted: &'static str| async move {
        let proxy = echo_proxy_with(&["--trusted-proxies", trusted]).await;
        let mut raw = Raw::connect(proxy.port).await;
        let answer = raw
            .request(&format!("{hixie}X-Forwarded-Proto: https\r\n\r\n"))
            .await;
        assert_eq!(answer.status, 101, "{}", answer.head);
        answer.header("WebSocket-Location").unwrap_or_default()
    };
    assert_eq!(location("127.0.0.1").await, "wss://example.com/websockify");
    assert_eq!(location("10.0.0.0/8").await, "ws://example.com/websockify");
}

#[test]
fn bad_networks_are_refused_naming_the_flag() {
    let err = fails(
        &["--trusted-proxies", "10.0.0.0/8,ingress", "6080", "h:1"],
        2,
    );
    assert!(
        err.contains("--trusted-proxies") && err.contains("`ingress`"),
        "{err}"
    );
}
