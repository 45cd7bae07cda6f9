//! No secret reaches the logs or the metrics: tokens (in the query, a cookie or the bearer
//! subprotocol), Basic passwords and their encoded header, refused or accepted, with verbose
//! logging and traffic logging on.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

const TOKEN: &str = "tok-SECRET-4f9a";
const WRONG_TOKEN: &str = "nope-SECRET-0000";
const PASSWORD: &str = "pw-SECRET-77";

async fn attempt(port: u16, target: &str, headers: &[&str]) -> (Raw, Answer) {
    let head = upgrade_request(headers).replacen("GET /websockify", &format!("GET {target}"), 1);
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(&head).await;
    (raw, answer)
}

#[tokio::test]
async fn tokens_and_passwords_never_reach_logs_or_metrics() {
    let echo = echo_target().await;
    let dir = std::env::temp_dir().join(format!("secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}: 127.0.0.1:{echo}\n")).unwrap();
    let credentials = format!("alice:{PASSWORD}");
    let proxy = Proxy::start(&[
        "-v",
        "--traffic",
        "--metrics-listen",
        "127.0.0.1:0",
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "--auth-plugin",
        "BasicHTTPAuth",
        "--auth-source",
        &credentials,
        "127.0.0.1:0",
    ]);
    let basic = base64::engine::general_purpose::STANDARD.encode(&credentials);
    let good_auth = format!("Authorization: Basic {basic}");
    let bad_basic = base64::engine::general_purpose::STANDARD.encode("alice:wrong-SECRET");
    let bad_auth = format!("Authorization: Basic {bad_basic}");

    // Accepted through each way a token travels, and echoed.
    let query = format!("/websockify?token={TOKEN}");
    let cookie = format!("Cookie: other=1; token={TOKEN}");
    let bearer = format!(
        "Sec-WebSocket-Protocol: binary, base64url.bearer.authorization.k8s.io.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TOKEN)
    );
    for (target, extra) in [
        (query.as_str(), None),
        ("/websockify", Some(cookie.as_str())),
        ("/websockify", Some(bearer.as_str())),
    ] {
        let mut headers = vec![good_auth.as_str()];
        headers.extend(extra);
        let (mut raw, answer) = attempt(proxy.port, target, &headers).await;
        assert_eq!(answer.status, 101, "{target} {extra:?}: {}", answer.head);
        raw.send_binary(b"hello").await;
        assert_eq!(raw.read_data(5).await, b"hello");
        raw.send_close(1000, "").await;
        raw.read_close().await;
    }
    // Refused: a wrong password, an unknown token.
    let (_, answer) = attempt(proxy.port, &query, &[&bad_auth]).await;
    assert_eq!(answer.status, 401);
    let wrong = format!("/websockify?token={WRONG_TOKEN}");
    let (_, answer) = attempt(proxy.port, &wrong, &[&good_auth]).await;
    assert!(answer.status >= 400, "{}", answer.head);

    let page = http_get(metrics_port(&proxy), "/metrics").1;
    let log = proxy.wait_log("token lookup refused", Duration::from_secs(10));
    // The sessions did happen and were logged.
    assert_eq!(log.matches("session ended").count(), 3, "{log}");
    for (what, text) in [("log", &log), ("metrics", &page)] {
        for secret in ["SECRET", basic.as_str(), bad_basic.as_str()] {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
