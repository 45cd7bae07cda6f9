//! The soak's result: the verdict, the JSON file, and the markdown block for
//! `docs/reliability.md`.

use std::fmt::Write as _;

use anyhow::Context;

use super::SoakArgs;
use super::session::HUGE;
use super::stats::{Sample, Stats};

/// Rows of the time series shown in the markdown (the JSON has every sample).
const TABLE_ROWS: usize = 18;

/// Why the run failed; empty when it passed.
pub fn verdict(args: &SoakArgs, samples: &[Sample], stats: &Stats) -> Vec<String> {
    let mut failures = Vec::new();
    let fatal: Vec<String> = stats
        .errors()
        .into_iter()
        .filter(|(kind, _)| !kind.starts_with("fault_"))
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if !fatal.is_empty() {
        failures.push(format!(
            "well-behaved sessions failed ({}), of which {} lost or corrupted data",
            fatal.join(", "),
            Stats::get(&stats.data_errors)
        ));
    }
    if samples.iter().any(|s| s.probe.is_none()) {
        failures.push(format!(
            "the proxy (pid {}) exited or /proc could not be read",
            args.pid
        ));
    }
    let start = samples.first().and_then(|s| s.probe);
    let end = samples.last().and_then(|s| s.probe);
    if let (Some(start), Some(end)) = (start, end)
        && end.fds > start.fds + args.fd_margin
    {
        failures.push(format!(
            "the proxy holds {} descriptors at the end, {} at the start (margin {})",
            end.fds, start.fds, args.fd_margin
        ));
    }
    if Stats::get(&stats.ok) == 0 {
        failures.push("no well-behaved session completed".into());
    }
    failures
}

pub fn write_json(
    args: &SoakArgs,
    seed: u64,
    samples: &[Sample],
    stats: &Stats,
    verdict: Option<&[String]>,
) -> anyhow::Result<()> {
    let probes = || samples.iter().filter_map(|s| s.probe);
    let faults: serde_json::Map<String, serde_json::Value> = stats
        .faults()
        .into_iter()
        .map(|(kind, t)| {
            let v = serde_json::json!({"injected": t.injected, "as_expected": t.as_expected,
                                       "unexpected": t.unexpected});
            (kind.to_owned(), v)
        })
        .collect();
    let json = serde_json::json!({
        "figure": "soak",
        "command": args.command,
        "url": args.url,
        "pid": args.pid,
        "seed": seed,
        "config": {
            "minutes": args.minutes,
            "sessions": args.sessions,
            "min_life_s": args.min_life,
            "max_life_s": args.max_life,
            "think_ms": args.think_ms,
            "huge_share": args.huge_share,
            "faults_per_sec": args.faults_per_sec,
            "ramp_per_sec": args.ramp_per_sec,
            "interval_s": args.interval,
            "fd_margin": args.fd_margin,
        },
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "totals": {
            "sessions_opened": Stats::get(&stats.opened),
            "sessions_ok": Stats::get(&stats.ok),
            "sessions_failed": Stats::get(&stats.failed),
            "bytes_sent": Stats::get(&stats.bytes_sent),
            "bytes_echoed": Stats::get(&stats.bytes_echoed),
            "messages": Stats::get(&stats.messages),
            "messages_16mib": Stats::get(&stats.huge_messages),
            "faults_injected": Stats::get(&stats.faults_started),
            "faults": faults,
            "errors": stats.errors(),
            "fatal_errors": Stats::get(&stats.fatal),
            "data_errors": Stats::get(&stats.data_errors),
            "fds_start": samples.first().and_then(|s| s.probe).map(|p| p.fds),
            "fds_peak": probes().map(|p| p.fds).max(),
            "fds_end": samples.last().and_then(|s| s.probe).map(|p| p.fds),
            "rss_kib_start": samples.first().and_then(|s| s.probe).map(|p| p.rss_kib),
            "rss_kib_peak": probes().map(|p| p.rss_kib).max(),
            "rss_kib_end": samples.last().and_then(|s| s.probe).map(|p| p.rss_kib),
            "proxy_cpu_s": cpu_used(samples),
        },
        "error_examples": stats.examples(),
        "pass": verdict.map(<[String]>::is_empty),
        "failures": verdict,
    });
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(&args.out, text + "\n").with_context(|| format!("writing {}", args.out))
}

/// The proxy's CPU seconds between the first and the last sample.
fn cpu_used(samples: &[Sample]) -> Option<f64> {
    let first = samples.first()?.probe?.cpu_s;
    let last = samples.iter().rev().find_map(|s| s.probe)?.cpu_s;
    Some(((last - first) * 10.0).round() / 10.0)
}

pub fn markdown(
    args: &SoakArgs,
    seed: u64,
    samples: &[Sample],
    stats: &Stats,
    verdict: &[String],
) -> String {
    let mut out = String::new();
    let command = if args.command.is_empty() {
        "wsload soak".to_owned()
    } else {
        args.command.clone()
    };
    let _ = writeln!(out, "Soak run of {} on {}: `{command}`\n", today(), host());
    let _ = writeln!(
        out,
        "{} min; {} well-behaved sessions kept open, each living {}–{} s (log-uniform) and \
         sending 1 B–1 MiB messages every 0–{} s ({}% of them 16 MiB), every echoed byte \
         checked; {} faults/s injected beside them; seed {seed}.\n",
        args.minutes,
        thousands(args.sessions as u64),
        args.min_life,
        args.max_life,
        args.think_ms as f64 * 2.0 / 1000.0,
        args.huge_share * 100.0,
        args.faults_per_sec,
    );
    if verdict.is_empty() {
        let _ = writeln!(
            out,
            "**Result: passed**: no well-behaved session lost or corrupted a byte or failed in \
             any other way, and the proxy's descriptors came back to within {} of the start.\n",
            args.fd_margin
        );
    } else {
        let _ = writeln!(out, "**Result: FAILED**: {}.\n", verdict.join("; "));
    }

    let _ = writeln!(
        out,
        "| time | proxy RSS MiB | proxy fds | sessions live | opened | closed | faults | \
         MB echoed | errors (fatal) | wsload lag ms |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in rows(samples) {
        let (rss, fds) = s.probe.map_or(("gone".into(), "gone".into()), |p| {
            (
                format!("{:.1}", p.rss_kib as f64 / 1024.0),
                thousands(p.fds),
            )
        });
        let time = match s.phase {
            "run" => clock(s.t_s),
            phase => format!("{} ({phase})", clock(s.t_s)),
        };
        let _ = writeln!(
            out,
            "| {time} | {rss} | {fds} | {} | {} | {} | {} | {} | {} ({}) | {} |",
            thousands(s.live),
            thousands(s.opened),
            thousands(s.closed),
            thousands(s.faults),
            thousands(s.bytes_echoed / 1_000_000),
            thousands(s.errors),
            thousands(s.fatal),
            thousands(s.lag_ms),
        );
    }

    let _ = writeln!(out, "\n| total | |\n| --- | --- |");
    let _ = writeln!(
        out,
        "| well-behaved sessions | {} opened, {} ended with every byte echoed and a 1000 \
         close, {} failed |",
        thousands(Stats::get(&stats.opened)),
        thousands(Stats::get(&stats.ok)),
        thousands(Stats::get(&stats.failed)),
    );
    let _ = writeln!(
        out,
        "| data | {} MB sent, {} MB echoed and verified, {} messages ({} of {} MiB) |",
        thousands(Stats::get(&stats.bytes_sent) / 1_000_000),
        thousands(Stats::get(&stats.bytes_echoed) / 1_000_000),
        thousands(Stats::get(&stats.messages)),
        thousands(Stats::get(&stats.huge_messages)),
        HUGE >> 20,
    );
    let faults: Vec<String> = stats
        .faults()
        .into_iter()
        .map(|(kind, t)| {
            format!(
                "{kind} {} ({} as expected)",
                thousands(t.injected),
                thousands(t.as_expected)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "| faults injected | {}: {} |",
        thousands(Stats::get(&stats.faults_started)),
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    let errors: Vec<String> = stats
        .errors()
        .into_iter()
        .map(|(kind, n)| format!("{kind} {}", thousands(n)))
        .collect();
    let _ = writeln!(
        out,
        "| errors by kind | {} |",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(", ")
        }
    );
    let probes: Vec<_> = samples.iter().filter_map(|s| s.probe).collect();
    if let (Some(first), Some(last)) = (probes.first(), samples.last().and_then(|s| s.probe)) {
        let peak_fds = probes.iter().map(|p| p.fds).max().unwrap_or(0);
        let peak_rss = probes.iter().map(|p| p.rss_kib).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| proxy fds | {} at the start, {} at the peak, {} at the end (margin {}) |",
            first.fds,
            thousands(peak_fds),
            last.fds,
            args.fd_margin
        );
        let _ = writeln!(
            out,
            "| proxy RSS | {:.1} MiB at the start, {:.1} MiB at the peak, {:.1} MiB at the end |",
            first.rss_kib as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            last.rss_kib as f64 / 1024.0
        );
    }
    if let Some(cpu) = cpu_used(samples) {
        let _ = writeln!(out, "| proxy CPU | {cpu:.1} s |");
    }
    let examples = stats.examples();
    if !examples.is_empty() {
        let _ = writeln!(out, "\nFirst errors:\n");
        for e in examples.iter().take(10) {
            let _ = writeln!(out, "- {}", e.replace('|', "\\|"));
        }
    }
    out
}

/// At most [`TABLE_ROWS`] timed samples, evenly spaced, then the end phases.
fn rows(samples: &[Sample]) -> Vec<&Sample> {
    let timed: Vec<&Sample> = samples.iter().filter(|s| s.phase == "run").collect();
    let step = timed.len().div_ceil(TABLE_ROWS).max(1);
    let mut rows: Vec<&Sample> = timed.iter().copied().step_by(step).collect();
    if let Some(last) = timed.last()
        && !rows.last().is_some_and(|r| std::ptr::eq(*r, *last))
    {
        rows.push(last);
    }
    rows.extend(samples.iter().filter(|s| s.phase != "run"));
    rows
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Today's date (UTC) as YYYY-MM-DD, from the days since 1970 (Howard Hinnant's
/// civil-from-days).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// "2 × CPU model, Linux release", as the performance table says it.
fn host() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    format!("{cpus} × {model}, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(185.4), "3:05");
        let d = today();
        assert_eq!((d.len(), &d[4..5], &d[7..8]), (10, "-", "-"), "{d}");
        assert!(d.as_str() > "2024-01-01", "{d}");
    }

    fn sample(t_s: f64, phase: &'static str) -> Sample {
        Sample {
            phase,
            t_s,
            probe: None,
            opened: 0,
            closed: 0,
            live: 0,
            faults: 0,
            live_faults: 0,
            bytes_sent: 0,
            bytes_echoed: 0,
            messages: 0,
            errors: 0,
            fatal: 0,
            lag_ms: 0,
        }
    }

    #[test]
    fn rows_are_thinned_and_keep_the_ends() {
        let mut samples: Vec<Sample> = (0..=180).map(|i| sample(i as f64 * 10.0, "run")).collect();
        samples.push(sample(1801.0, "drained"));
        samples.push(sample(1802.0, "settled"));
        let rows = rows(&samples);
        assert!(rows.len() <= TABLE_ROWS + 3, "{}", rows.len());
        assert_eq!(rows[0].t_s, 0.0);
        let n = rows.len();
        assert_eq!(rows[n - 3].t_s, 1800.0);
        assert_eq!(
            (rows[n - 2].phase, rows[n - 1].phase),
            ("drained", "settled")
        );
        let few: Vec<Sample> = (0..3).map(|i| sample(f64::from(i), "run")).collect();
        assert_eq!(super::rows(&few).len(), 3);
    }
}
