//! `websockify sessions`: the live sessions of a running proxy, from its operations port's
//! admin API (`/sessions`, see [`crate::telemetry::admin`]), as a table for an operator on
//! the host; `--close ID` ends one.
//!
//! The token comes as the server's does: `--admin-token`, `--admin-token-file`, or
//! `WEBSOCKIFY_ADMIN_TOKEN`, so that the environment that runs the proxy runs this too.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::session::registry::View;

/// How long a request to the operations port may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `websockify sessions`'s options.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    /// The operations port (--metrics-listen) of the proxy: a URL, or [HOST:]PORT
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9187")]
    pub url: String,

    /// The proxy's --admin-token (also WEBSOCKIFY_ADMIN_TOKEN)
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Read the token from this file's first line (also WEBSOCKIFY_ADMIN_TOKEN_FILE)
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// Print the API's JSON instead of the table
    #[arg(long)]
    pub json: bool,

    /// End session ID (close 1008) instead of listing
    #[arg(long, value_name = "ID")]
    pub close: Option<u64>,

    /// With --close: the close frame's reason (default "Closed by the operator")
    #[arg(long, value_name = "TEXT", requires = "close")]
    pub reason: Option<String>,

    /// Print help
    // The top level defines its own help flag (see `Cli`), which subcommands do not inherit.
    #[arg(short, long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Runs the command; its messages go to standard error, the table or JSON to standard output.
pub fn run(args: &SessionsArgs) -> ExitCode {
    match execute(args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("websockify sessions: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: &SessionsArgs) -> anyhow::Result<String> {
    use anyhow::Context;
    let token = token(args)?;
    let base = base_url(&args.url);
    let client = reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("starting the HTTP client")?;
    let request = match args.close {
        Some(id) => {
            let mut url = reqwest::Url::parse(&format!("{base}/sessions/{id}"))
                .with_context(|| format!("--url {}", args.url))?;
            if let Some(reason) = &args.reason {
                url.query_pairs_mut().append_pair("reason", reason);
            }
            client.delete(url)
        }
        None => client.get(format!("{base}/sessions")),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .with_context(|| format!("asking {base}"))?;
    let status = response.status();
    let body = response.text().context("reading the answer")?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        let hint = match status.as_u16() {
            401 => " (check the admin token)",
            404 if args.close.is_none() => " (is the proxy started with --admin-token?)",
            _ => "",
        };
        anyhow::bail!("{base} answered {status}: {detail}{hint}");
    }
    if let Some(id) = args.close {
        return Ok(format!("session {id} is closing (1008)\n"));
    }
    if args.json {
        return Ok(body);
    }
    #[derive(serde::Deserialize)]
    struct List {
        sessions: Vec<View>,
    }
    let list: List = serde_json::from_str(&body).context("the answer is not a session list")?;
    Ok(table(&list.sessions))
}

/// The token from the flags or the environment, as the server reads it.
fn token(args: &SessionsArgs) -> anyhow::Result<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let file = args
        .admin_token_file
        .clone()
        .or_else(|| env("WEBSOCKIFY_ADMIN_TOKEN_FILE").map(PathBuf::from));
    let token = match (&args.admin_token, file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("--admin-token-file {}: {e}", file.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        (None, None) => env("WEBSOCKIFY_ADMIN_TOKEN").ok_or_else(|| {
            anyhow::anyhow!(
                "no admin token: give --admin-token, --admin-token-file or \
                 WEBSOCKIFY_ADMIN_TOKEN (the proxy's --admin-token)"
            )
        })?,
    };
    Ok(token.trim().to_string())
}

/// `--url` as a base URL: a URL as given (without a trailing `/`), else `[HOST:]PORT` on
/// plain HTTP (a bare port on the loopback address).
fn base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else if url.bytes().all(|b| b.is_ascii_digit()) {
        format!("http://127.0.0.1:{url}")
    } else {
        format!("http://{url}")
    }
}

/// The sessions as a table, one line each, with a header.
fn table(sessions: &[View]) -> String {
    let header = [
        "ID",
        "CLIENT",
        "TARGET",
        "TRANSPORT",
        "PROTOCOL",
        "COMPRESSION",
        "DURATION",
        "FROM CLIENT",
        "TO CLIENT",
        "IDLE",
    ];
    let rows: Vec<[String; 10]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.client.clone(),
                s.target.clone(),
                format!("{}{}", s.transport, if s.tls { "+tls" } else { "" }),
                format!("{}/{}", s.protocol, s.subprotocol),
                s.compression.clone().unwrap_or_else(|| "-".into()),
                duration(s.duration_seconds),
                bytes(s.bytes_from_client),
                bytes(s.bytes_to_client),
                format!(
                    "{}{}",
                    duration(s.idle_seconds),
                    if s.closing { " (closing)" } else { "" }
                ),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(widths).enumerate() {
            // Numbers right-aligned, words left.
            let _ = if i == 0 || (7..=8).contains(&i) {
                write!(text, "{cell:>w$}  ")
            } else {
                write!(text, "{cell:<w$}  ")
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    let _ = writeln!(out, "{} session(s)", sessions.len());
    out
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_ports_and_hosts() {
        assert_eq!(base_url("9187"), "http://127.0.0.1:9187");
        assert_eq!(base_url("ops.internal:9187"), "http://ops.internal:9187");
        assert_eq!(base_url("http://[::1]:9187/"), "http://[::1]:9187");
    }

    #[test]
    fn the_table_has_a_line_per_session() {
        let view = View {
            id: 12,
            client: "192.0.2.7:41000".into(),
            target: "vnc-1:5900".into(),
            transport: "h2".into(),
            protocol: "hybi-13".into(),
            subprotocol: "binary".into(),
            compression: Some("deflate".into()),
            tls: true,
            started: "2026-12-04T10:00:00.000Z".into(),
            duration_seconds: 3723.5,
            bytes_from_client: 2048,
            bytes_to_client: 5 * 1024 * 1024,
            last_activity: "2026-12-04T11:02:00.000Z".into(),
            idle_seconds: 3.0,
            closing: false,
        };
        let text = table(&[view]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID") && lines[0].contains("TARGET"));
        for cell in [
            "12",
            "192.0.2.7:41000",
            "vnc-1:5900",
            "h2+tls",
            "hybi-13/binary",
            "deflate",
            "1h02m",
            "2.0 KiB",
            "5.0 MiB",
            "3s",
        ] {
            assert!(lines[1].contains(cell), "{cell} in {text}");
        }
        assert_eq!(lines[2], "1 session(s)");
    }
}
