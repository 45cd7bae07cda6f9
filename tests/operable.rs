//! Operating the proxy: the metrics listener (scraped by a real Prometheus), health and
//! readiness, JSON logs, OpenTelemetry traces to an OTLP receiver written here, the drain on
//! SIGTERM and the reloads on SIGHUP, all through the real binary.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("websockify-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `/metrics` page of the operations port `port`.
fn scrape(port: u16) -> String {
    let (status, page) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    page
}

/// Echoes `data` through a session as `chunks` messages and closes with 1000.
async fn echo_session(url: &str, data: &[u8], chunks: usize) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let got = echo_through(&mut ws, data, data.len().div_ceil(chunks)).await;
    assert_eq!(got, data);
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let proxy = echo_proxy_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let port = metrics_port(&proxy);
    assert_eq!(http_get(port, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(port, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(http_get(port, "/nothing").0, 404);
    let page = scrape(port);
    assert!(page.contains("websockify_build_info{commit="), "{page}");
    assert!(page.contains("process_open_fds"), "{page}");
    // The metrics port is not the proxy port: no WebSocket there, and no metrics here.
    assert_eq!(http_get(proxy.port, "/metrics").0, 405);
    let page = scrape(port);
    assert_eq!(
        sample(&page, "websockify_web_requests_total{status=\"405\"}"),
        Some(1.0),
        "{page}"
    );
}

#[test]
fn observability_settings_are_checked() {
    let err = fails(&["--log-format", "xml", "1", "h:1"], 2);
    assert!(
        err.contains("--log-format") && err.contains("text or json"),
        "{err}"
    );
    let err = fails(&["--metrics-listen", "localhost", "1", "h:1"], 2);
    assert!(err.contains("--metrics-listen"), "{err}");
    let err = fails(&["--shutdown-grace", "soon", "1", "h:1"], 2);
    assert!(err.contains("--shutdown-grace"), "{err}");
    let mut cmd = command(&["1", "h:1"]);
    cmd.env("WEBSOCKIFY_LOG_FORMAT", "yaml");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("WEBSOCKIFY_LOG_FORMAT"), "{err}");
    // A taken metrics port is a start-up error, not a proxy without metrics.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
    let err = fails(&["--metrics-listen", &addr, "127.0.0.1:0", "h:1"], 1);
    assert!(err.contains("--metrics-listen"), "{err}");
}

/// A Prometheus server scraping its targets every second; stopped on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scraping the metrics ports `targets` as job `websockify`; `name` keeps its files
    /// apart from another test's.
    fn start(name: &str, targets: &[u16]) -> Prometheus {
        ensure_installed(&["prometheus"], "prometheus");
        let dir = dir(name);
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: websockify\n    static_configs:\n      \
                 - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = dead_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port, log }
    }

    /// The value of an instant query with one result, once it exists.
    fn query(&self, promql: &str) -> Option<f64> {
        let path = format!(
            "/api/v1/query?query={}",
            promql
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        );
        // Not yet listening is not an error: Prometheus takes a moment to start.
        std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let (status, body) = http_get(self.port, &path);
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let results = v["data"]["result"].as_array()?;
        if results.len() != 1 {
            return None;
        }
        results[0]["value"][1].as_str()?.parse().ok()
    }

    /// Every series of an instant query, or the error Prometheus gave.
    fn query_all(&self, promql: &str) -> Result<Vec<Value>, String> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={encoded}"));
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{status}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `promql` evaluates to `want`, or panics with what it last saw.
    fn wait_for(&self, promql: &str, want: f64) {
        self.wait_until(promql, |v| v == want, &format!("= {want}"));
    }

    /// Waits until `promql`'s one value passes `ok`, or panics with what it last saw.
    fn wait_until(&self, promql: &str, ok: impl Fn(f64) -> bool, what: &str) {
        let end = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        while Instant::now() < end {
            last = self.query(promql);
            if last.is_some_and(&ok) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("Prometheus never saw {promql} {what}; last {last:?}; its log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_counts_we_sent() {
    let proxy = echo_proxy_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let port = metrics_port(&proxy);
    let prometheus = Prometheus::start("prometheus", &[port]);

    let sizes = [1000usize, 70_000, 12_345];
    for size in sizes {
        echo_session(&proxy.url(), &random_bytes(size), 4).await;
    }
    let total: usize = sizes.iter().sum();
    // One refused handshake: an unsupported version.
    let mut raw = Raw::connect(proxy.port).await;
    let answer = raw
        .request(&upgrade_request(&[]).replace("Version: 13", "Version: 99"))
        .await;
    assert_eq!(answer.status, 426);
    drop(raw);
    for _ in 0..sizes.len() {
        proxy.wait_log("session ended", Duration::from_secs(5));
    }
    let end = Instant::now() + Duration::from_secs(5);
    while proxy.log().matches("session ended").count() < sizes.len() {
        assert!(Instant::now() < end, "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    let page = scrape(port);
    let expect = [
        (
            "websockify_relayed_bytes_total{direction=\"from_client\"}",
            total as f64,
        ),
        (
            "websockify_relayed_bytes_total{direction=\"to_client\"}",
            total as f64,
        ),
        (
            "websockify_relayed_messages_total{direction=\"from_client\"}",
            12.0,
        ),
        (
            "websockify_sessions_started_total{protocol=\"hybi-13/binary\",transport=\"http1\"}",
            3.0,
        ),
        (
            "websockify_sessions_ended_total{close_code=\"1000\",outcome=\"client_closed\"}",
            3.0,
        ),
        ("websockify_sessions_active", 0.0),
        ("websockify_session_duration_seconds_count", 3.0),
        (
            "websockify_handshake_duration_seconds_count{protocol=\"hybi\"}",
            3.0,
        ),
        ("websockify_target_connect_duration_seconds_count", 3.0),
        (
            "websockify_handshake_failures_total{reason=\"bad_upgrade\",status=\"426\"}",
            1.0,
        ),
        ("websockify_connections_accepted_total", 4.0),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }
    let to_client = sample(
        &page,
        "websockify_relayed_messages_total{direction=\"to_client\"}",
    );
    assert!(to_client.is_some_and(|n| n >= 3.0), "{page}");

    // The same numbers through a real Prometheus server and its query API.
    prometheus.wait_for("up{job=\"websockify\"}", 1.0);
    prometheus.wait_for(
        "sum(websockify_relayed_bytes_total{direction=\"from_client\"})",
        total as f64,
    );
    prometheus.wait_for(
        "sum(websockify_relayed_bytes_total{direction=\"to_client\"})",
        total as f64,
    );
    prometheus.wait_for("sum(websockify_sessions_started_total)", 3.0);
    prometheus.wait_for(
        "sum(websockify_sessions_ended_total{close_code=\"1000\"})",
        3.0,
    );
    prometheus.wait_for("websockify_sessions_active", 0.0);
    prometheus.wait_for("count(process_resident_memory_bytes > 0)", 1.0);
    prometheus.wait_for("count(websockify_build_info)", 1.0);
}

const DASHBOARD_ADMIN: &str = "dashboard-admin-0123456789";

/// One round of everything the dashboard's panels show, through proxy `a` (tokens from a
/// file, one session per address, the admin API) and `b` (a token plugin whose Redis is not
/// there): a session that echoes and closes, a refusal by the per-address limit, a malformed
/// head, a failed plugin call, an admin request without the token, a reload.
async fn dashboard_round(a: &Proxy, b: &Proxy, token: &str) {
    let head = upgrade_request(&[]).replacen(
        "GET /websockify",
        &format!("GET /websockify?token={token}"),
        1,
    );
    let mut session = Raw::connect(a.port).await;
    assert_eq!(session.request(&head).await.status, 101);
    session.send_binary(&[5; 4000]).await;
    assert_eq!(session.read_data(4000).await, vec![5; 4000]);
    let mut over = Raw::connect(a.port).await;
    assert_eq!(
        over.request(&head).await.status,
        503,
        "the per-address limit"
    );
    let mut garbage = Raw::connect(a.port).await;
    assert_eq!(garbage.request("NOT HTTP AT ALL\r\n\r\n").await.status, 400);
    session.send_close(1000, "").await;
    assert_eq!(session.read_close().await.0, 1000);
    let mut failed = Raw::connect(b.port).await;
    let status = failed.request(&head).await.status;
    assert!(status >= 500, "a lookup without its Redis: {status}");
    let ops = metrics_port(a);
    assert_eq!(http_get(ops, "/sessions").0, 401);
    a.signal("HUP");
    a.wait_log("reload", Duration::from_secs(10));
}

/// Every query of the Grafana dashboard the chart ships (`charts/websockify/dashboards/`),
/// against a real Prometheus scraping two proxies driven through each panel's case: none is
/// refused as broken PromQL, none comes back empty or without a number, and every metric it
/// names is one the binary exports.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_queries_return_data_from_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("charts/websockify/dashboards/websockify.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_string();
            exprs.push((title, target["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());

    let echo = echo_target().await;
    let tokens = dir("dashboard-tokens").join("tokens");
    std::fs::write(&tokens, format!("vm1: 127.0.0.1:{echo}\n")).unwrap();
    let a = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-token",
        DASHBOARD_ADMIN,
        "--max-connections-per-ip",
        "1",
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    let redis = format!("127.0.0.1:{}", dead_port());
    let b = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--token-plugin",
        "TokenRedis",
        "--token-source",
        &redis,
        "127.0.0.1:0",
    ]);
    let (a_ops, b_ops) = (metrics_port(&a), metrics_port(&b));
    let prometheus = Prometheus::start("dashboard", &[a_ops, b_ops]);
    prometheus.wait_for("count(up{job=\"websockify\"} == 1)", 2.0);

    // Two rounds with scrapes between them, so that every counter has grown within the
    // rate window (a series that appears already at its value has no rate yet).
    for round in 1..=2 {
        dashboard_round(&a, &b, "vm1").await;
        let n = f64::from(round);
        prometheus.wait_for("sum(websockify_sessions_started_total)", n);
        prometheus.wait_for("sum(websockify_plugin_errors_total)", n);
        prometheus.wait_for(
            "sum(websockify_admin_requests_total{result=\"unauthorized\"})",
            n,
        );
        prometheus.wait_until(
            "sum(websockify_reloads_total{what=\"token_plugin\"})",
            |v| v >= n,
            ">= round",
        );
    }
    std::thread::sleep(Duration::from_secs(2));

    let mut failures = Vec::new();
    for (title, expr) in &exprs {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$job", ".+")
            .replace("$instance", ".+");
        match prometheus.query_all(&promql) {
            Err(e) => failures.push(format!("{title}: {promql}: refused: {e}")),
            Ok(series) if series.is_empty() => {
                failures.push(format!("{title}: {promql}: no series"))
            }
            Ok(series) => {
                let numbers = series.iter().all(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                });
                if !numbers {
                    failures.push(format!("{title}: {promql}: not a number: {series:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "broken panels:\n{}",
        failures.join("\n")
    );

    // Every metric named is one the binary exports.
    let pages = format!("{}{}", scrape(a_ops), scrape(b_ops));
    let mut names: Vec<&str> = exprs
        .iter()
        .flat_map(|(_, e)| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("websockify_") || w.starts_with("process_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        assert!(
            pages.lines().any(|l| l.starts_with(name)),
            "the dashboard names {name}, which /metrics does not have"
        );
    }
}

#[test]
fn the_documented_scrape_config_and_alert_rules_are_valid() {
    ensure_installed(&["promtool"], "prometheus");
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/observability");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["test", "rules", "alerts-test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&docs)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn json_logs_carry_the_session_fields() {
    let echo = echo_target().await;
    let proxy = Proxy::start(&[
        "--log-format",
        "json",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    echo_session(&proxy.url(), b"hello, json", 1).await;
    let log = proxy.wait_log("session ended", Duration::from_secs(5));
    let mut ended = None;
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("session ended"))
        {
            ended = Some(v);
        }
    }
    let v = ended.unwrap();
    assert_eq!(v["level"], "info");
    assert_eq!(v["id"], 1);
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    assert_eq!(v["target"], format!("127.0.0.1:{echo}"));
    assert_eq!(v["from_client"], 11);
    assert_eq!(v["to_client"], 11);
    assert_eq!(v["close_code"], 1000);
    assert!(v["duration_ms"].is_u64(), "{v}");
    assert_eq!(v["protocol"], "hybi-13/binary");
}

#[tokio::test]
async fn sigterm_drains_then_closes_with_1001() {
    let echo = echo_target().await;
    let mut proxy = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--shutdown-grace",
        "3",
        "127.0.0.1:0",
        &format!("127.0.0.1:{echo}"),
    ]);
    let ops = metrics_port(&proxy);
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    raw.send_binary(b"before").await;
    assert_eq!(raw.read_data(6).await, b"before");
    let signalled = Instant::now();
    proxy.signal("TERM");
    proxy.wait_log("no longer accepting", Duration::from_secs(5));
    // Not ready, still alive; new connections are refused; the session goes on.
    assert_eq!(http_get(ops, "/readyz").0, 503);
    assert_eq!(http_get(ops, "/healthz").0, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", proxy.port)).is_err());
    raw.send_binary(b"during the drain").await;
    assert_eq!(raw.read_data(16).await, b"during the drain");
    // At the end of the grace: 1001, then exit 0.
    assert_eq!(raw.read_close().await, (1001, "Going away".to_string()));
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "closed after {waited:?}"
    );
    raw.send_close(1001, "").await;
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    assert!(proxy.log().contains("--shutdown-grace is over"));
}

#[tokio::test]
async fn a_drain_ends_when_the_last_session_does() {
    let mut proxy = echo_proxy_with(&["--shutdown-grace", "60"]).await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    proxy.signal("INT");
    proxy.wait_log("draining 1 connection", Duration::from_secs(5));
    raw.send_binary(b"x").await;
    assert_eq!(raw.read_data(1).await, b"x");
    let closing = Instant::now();
    raw.send_close(1000, "done").await;
    assert_eq!(raw.read_close().await.0, 1000);
    assert!(proxy.wait_exit(Duration::from_secs(5)).success());
    assert!(closing.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_second_signal_closes_sessions_at_once() {
    let mut proxy = echo_proxy_with(&["--shutdown-grace", "60"]).await;
    let (mut raw, _) = Raw::upgrade(proxy.port, &[]).await;
    proxy.signal("TERM");
    proxy.wait_log("draining", Duration::from_secs(5));
    let second = Instant::now();
    proxy.signal("TERM");
    assert_eq!(raw.read_close().await, (1001, "Going away".to_string()));
    assert!(second.elapsed() < Duration::from_secs(3));
    raw.send_close(1001, "").await;
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
}

/// Upgrades with `?token=` and says whether the target answered (status otherwise).
async fn reaches(port: u16, token: &str) -> Result<(), u16> {
    let head =
        upgrade_request(&[]).replace("GET /websockify", &format!("GET /websockify?token={token}"));
    let mut raw = Raw::connect(port).await;
    let answer = raw.request(&head).await;
    if answer.status != 101 {
        return Err(answer.status);
    }
    raw.send_binary(b"ping").await;
    assert_eq!(raw.read_data(4).await, b"ping");
    Ok(())
}

#[tokio::test]
async fn sighup_reloads_the_token_source_and_keeps_it_when_broken() {
    let echo = echo_target().await;
    let d = dir("reload");
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("a: 127.0.0.1:{echo}\n")).unwrap();
    let proxy = Proxy::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--token-plugin",
        "ReadOnlyTokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    let ops = metrics_port(&proxy);
    assert_eq!(reaches(proxy.port, "a").await, Ok(()));
    // ReadOnlyTokenFile read its file once: a new token needs a reload.
    std::fs::write(
        &tokens,
        format!("a: 127.0.0.1:{echo}\nb: 127.0.0.1:{echo}\n"),
    )
    .unwrap();
    assert_eq!(reaches(proxy.port, "b").await, Err(404));
    proxy.signal("HUP");
    proxy.wait_log("ReadOnlyTokenFile reloaded", Duration::from_secs(10));
    assert_eq!(reaches(proxy.port, "b").await, Ok(()));
    // A broken source: the old tokens stay and the log says why.
    std::fs::remove_file(&tokens).unwrap();
    proxy.signal("HUP");
    let log = proxy.wait_log("keeping the previous one", Duration::from_secs(10));
    assert!(log.contains(tokens.to_str().unwrap()), "{log}");
    assert_eq!(reaches(proxy.port, "b").await, Ok(()));
    let page = scrape(ops);
    for series in [
        "websockify_reloads_total{result=\"ok\",what=\"token_plugin\"}",
        "websockify_reloads_total{result=\"failed\",what=\"token_plugin\"}",
    ] {
        assert_eq!(sample(&page, series), Some(1.0), "{series}\n{page}");
    }
    assert_eq!(
        sample(
            &page,
            "websockify_token_lookups_total{plugin=\"ReadOnlyTokenFile\",result=\"refused\"}"
        ),
        Some(1.0),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_drop_nothing() {
    let echo = echo_target().await;
    let d = dir("load");
    let ca = pki::Ca::new("reload CA");
    let (cert, key) = ca.leaf("localhost");
    std::fs::write(d.join("cert.pem"), &cert).unwrap();
    std::fs::write(d.join("key.pem"), &key).unwrap();
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("t: 127.0.0.1:{echo}\n")).unwrap();
    let proxy = Proxy::start(&[
        "--cert",
        d.join("cert.pem").to_str().unwrap(),
        "--key",
        d.join("key.pem").to_str().unwrap(),
        "--token-plugin",
        "ReadOnlyTokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    let url = format!("ws://127.0.0.1:{}/?token=t", proxy.port);
    let sessions: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                let mut sent = Vec::new();
                let mut got = Vec::new();
                for round in 0..150u32 {
                    let msg: Vec<u8> = (0..4096u32).map(|j| (j ^ round ^ i) as u8).collect();
                    sent.extend_from_slice(&msg);
                    ws.send(Message::Binary(msg.into())).await.unwrap();
                    while got.len() < sent.len() {
                        match ws.next().await.unwrap().unwrap() {
                            Message::Binary(b) => got.extend_from_slice(&b),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(got, sent);
                ws.close(None).await.unwrap();
                sent.len()
            })
        })
        .collect();
    let hups = {
        let pid = proxy.child.id();
        std::thread::spawn(move || {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(120));
                let ok = Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
        })
    };
    // New sessions keep working while reloads happen.
    for _ in 0..10 {
        echo_session(&url, b"new session during reloads", 2).await;
    }
    for s in sessions {
        assert_eq!(s.await.unwrap(), 150 * 4096);
    }
    hups.join().unwrap();
    let log = proxy.log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(log.contains("ReadOnlyTokenFile reloaded"), "{log}");
    assert!(!log.contains("reload failed"), "{log}");
    assert!(!log.contains("target error"), "{log}");
}

/// One export the collector received: path, content type, body.
type Export = (String, String, Vec<u8>);

/// An OTLP/HTTP receiver: keeps each request's path, content type and body.
struct Collector {
    port: u16,
    requests: Arc<Mutex<Vec<Export>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let store = store.clone();
                std::thread::spawn(move || serve_otlp(stream, &store));
            }
        });
        Collector { port, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until some request's body satisfies `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&str, &[u8]) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if self
                .requests
                .lock()
                .unwrap()
                .iter()
                .any(|(_, ct, body)| pred(ct, body))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the collector never received {what}");
    }

    /// Every span of every JSON export, with its resource's attributes.
    fn json_spans(&self) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for (path, ct, body) in self.requests.lock().unwrap().iter() {
            assert_eq!(path, "/v1/traces");
            assert!(ct.starts_with("application/json"), "{ct}");
            let v: Value = serde_json::from_slice(body).unwrap();
            for rs in v["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for span in ss["spans"].as_array().unwrap() {
                        out.push((rs["resource"].clone(), span.clone()));
                    }
                }
            }
        }
        out
    }
}

/// One keep-alive connection of OTLP/HTTP requests, each answered 200 with an empty result.
fn serve_otlp(stream: std::net::TcpStream, store: &Mutex<Vec<Export>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let (mut length, mut content_type, mut chunked) = (0usize, String::new(), false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_string(),
                "transfer-encoding" => chunked = value.contains("chunked"),
                _ => {}
            }
        }
        assert!(!chunked, "the exporter sent a chunked body");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer_type = if content_type.contains("json") {
            ("application/json", "{}")
        } else {
            ("application/x-protobuf", "")
        };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
            answer_type.0,
            answer_type.1.len(),
            answer_type.1
        )
        .unwrap();
        store.lock().unwrap().push((path, content_type, body));
    }
}

/// An attribute's value from an OTLP JSON attribute list, as text.
fn attribute(attributes: &Value, key: &str) -> Option<String> {
    let value = &attributes.as_array()?.iter().find(|a| a["key"] == key)?["value"];
    for kind in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        match &value[kind] {
            Value::Null => continue,
            Value::String(s) => return Some(s.clone()),
            other => return Some(other.to_string()),
        }
    }
    None
}

#[tokio::test]
async fn otlp_traces_have_a_session_span_with_its_children() {
    let collector = Collector::start();
    let echo = echo_target().await;
    let d = dir("otel");
    let tokens = d.join("tokens");
    std::fs::write(&tokens, format!("t: 127.0.0.1:{echo}\n")).unwrap();
    let mut cmd = command(&[
        "--token-plugin",
        "TokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", "console-proxy")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut proxy = Proxy::start_cmd(cmd);
    let url = format!("ws://127.0.0.1:{}/?token=t", proxy.port);
    echo_session(&url, b"traced bytes", 1).await;
    proxy.wait_log("session ended", Duration::from_secs(5));
    collector.wait_for("a target_connect span", |_, body| {
        String::from_utf8_lossy(body).contains("target_connect")
    });
    // Exiting flushes whatever is left.
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());

    let spans = collector.json_spans();
    let (resource, session) = spans
        .iter()
        .find(|(_, s)| s["name"] == "session" && attribute(&s["attributes"], "target").is_some())
        .unwrap_or_else(|| panic!("no session span in {spans:#?}"));
    assert_eq!(
        attribute(&resource["attributes"], "service.name").as_deref(),
        Some("console-proxy")
    );
    let attrs = &session["attributes"];
    assert_eq!(
        attribute(attrs, "target"),
        Some(format!("127.0.0.1:{echo}"))
    );
    assert!(
        attribute(attrs, "client")
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(attribute(attrs, "close_code").as_deref(), Some("1000"));
    assert_eq!(attribute(attrs, "from_client").as_deref(), Some("12"));
    assert_eq!(
        attribute(attrs, "protocol").as_deref(),
        Some("hybi-13/binary")
    );
    assert_eq!(attribute(attrs, "path").as_deref(), Some("/"));
    // The token itself is never recorded.
    let text = serde_json::to_string(&spans.iter().map(|(_, s)| s).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("token=t"), "{text}");
    let children: Vec<&str> = spans
        .iter()
        .filter(|(_, s)| {
            s["parentSpanId"] == session["spanId"] && s["traceId"] == session["traceId"]
        })
        .filter_map(|(_, s)| s["name"].as_str())
        .collect();
    for name in ["handshake", "token_lookup", "target_connect"] {
        assert!(children.contains(&name), "{name} not among {children:?}");
    }
    let lookup = spans
        .iter()
        .find(|(_, s)| s["name"] == "token_lookup")
        .unwrap();
    assert_eq!(
        attribute(&lookup.1["attributes"], "plugin").as_deref(),
        Some("TokenFile")
    );
}

#[tokio::test]
async fn otlp_defaults_to_protobuf_and_refuses_grpc() {
    let collector = Collector::start();
    let echo = echo_target().await;
    let mut cmd = command(&["127.0.0.1:0", &format!("127.0.0.1:{echo}")]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let proxy = Proxy::start_cmd(cmd);
    echo_session(&proxy.url(), b"x", 1).await;
    collector.wait_for("a protobuf export with the session span", |ct, body| {
        ct == "application/x-protobuf"
            && body.windows(14).any(|w| w == b"target_connect")
            && body.windows(10).any(|w| w == b"websockify")
    });

    let mut cmd = command(&["127.0.0.1:0", "h:1"]);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc") && err.contains("http/protobuf"),
        "{err}"
    );
}
