//! `wsload soak`: hours of mixed traffic through a proxy, checking that no well-behaved session
//! loses a byte and that the proxy's descriptors and memory come back afterwards.
//!
//! - About `--sessions` checksummed sessions are kept open in a rolling mix: each lives a
//!   log-uniform time between `--min-life` and `--max-life`, sends messages from 1 byte to
//!   1 MiB (and now and then 16 MiB) with pauses between them, and checks every echoed byte
//!   against its seeded stream (`pattern`); when it ends, its slot starts another.
//! - Faults (`faults`) are injected beside them at `--faults-per-sec`: resets, clients that
//!   vanish, garbage frames, oversize heads and frames, slow readers; with `--web-file`, also
//!   range floods and clients that never read a file.
//! - Every `--interval` the proxy's RSS, descriptors and CPU time are read from `/proc/PID`
//!   along with the counters; the series and the totals go to `--out` (JSON, rewritten at
//!   every sample) and, at the end, to `--markdown`.
//!
//! The run fails (non-zero exit) if any well-behaved session failed in any way (could not
//! connect, lost or corrupted data, was cut off, or did not close with 1000), if a slow reader
//! lost data, if the proxy exited, or if the proxy holds more than `--fd-margin` descriptors
//! more at the end than at the start. Faults answered other than expected are counted and
//! shown but do not fail the run.

mod faults;
mod pattern;
mod report;
mod session;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use faults::{Endpoint, Fault};
use pattern::Rng;
use session::{Plan, Sizes};
use stats::{Probe, Sample, Stats};

/// After the run, how long sessions get to finish their last message and close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// A slot whose session failed waits this long before the next, so a dead proxy is not
/// hammered with connects.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// The proxy: ws://HOST:PORT/ (an echo target behind it).
    #[arg(long)]
    url: String,
    /// The proxy's pid, for its RSS, descriptors and CPU time from /proc.
    #[arg(long)]
    pid: u32,
    /// How long to run (sessions still open then finish their message and close).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Well-behaved sessions kept open at once.
    #[arg(long, default_value_t = 2000)]
    sessions: usize,
    /// Shortest session lifetime, seconds (log-uniform between this and --max-life).
    #[arg(long, default_value_t = 2.0)]
    min_life: f64,
    /// Longest session lifetime, seconds.
    #[arg(long, default_value_t = 300.0)]
    max_life: f64,
    /// Mean pause between a session's messages, milliseconds.
    #[arg(long, default_value_t = 2000)]
    think_ms: u64,
    /// Share of messages that are 16 MiB.
    #[arg(long, default_value_t = 0.0005)]
    huge_share: f64,
    /// Faults injected per second (0: none).
    #[arg(long, default_value_t = 2.0)]
    faults_per_sec: f64,
    /// Sessions started per second while ramping up to --sessions.
    #[arg(long, default_value_t = 200.0)]
    ramp_per_sec: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Descriptors the proxy may hold at the end beyond those at the start.
    #[arg(long, default_value_t = 16)]
    fd_margin: u64,
    /// At the end, how long to wait for the proxy's descriptors to come back, seconds.
    #[arg(long, default_value_t = 30.0)]
    settle: f64,
    /// Seed of every random choice (default: from the clock); printed, so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// The JSON result (time series and totals).
    #[arg(long, default_value = "soak.json")]
    out: String,
    /// Also write the result as markdown here.
    #[arg(long)]
    markdown: Option<String>,
    /// The command to repeat this run, for the report.
    #[arg(long, default_value = "")]
    command: String,
    /// A file of the proxy's --web directory (a path such as /soak.bin, some MiB large): with
    /// it, the faults include a range flood and a client that never reads the file.
    #[arg(long)]
    web_file: Option<String>,
    /// The proxy's --send-timeout, seconds, which the stalled readers wait out.
    #[arg(long, default_value_t = 30)]
    send_timeout: u64,
    /// A prefix of tokens the proxy's token API (`wsload token-api`) never answers: with it,
    /// the faults include a slow plugin. The --url then carries a token that it answers.
    #[arg(long)]
    hanging_token: Option<String>,
}

/// What every session task needs.
struct Ctx {
    args: SoakArgs,
    endpoint: Endpoint,
    /// What the faults beyond the WebSocket ones need, where the proxy is set up for them.
    extras: faults::Extras,
    stats: Stats,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    if !(args.minutes > 0.0 && args.interval > 0.0 && args.ramp_per_sec > 0.0) {
        bail!("--minutes, --interval and --ramp-per-sec must be positive");
    }
    if !(0.0..=1.0).contains(&args.huge_share) || args.faults_per_sec < 0.0 {
        bail!("--huge-share is a share (0 to 1) and --faults-per-sec not negative");
    }
    if !(args.min_life > 0.0 && args.max_life >= args.min_life) {
        bail!("need 0 < --min-life <= --max-life");
    }
    let endpoint = Endpoint::parse(&args.url)?;
    let baseline = Probe::take(args.pid)
        .map_err(anyhow::Error::msg)
        .context("the proxy's /proc entry")?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "soak: {} min, {} sessions, {} faults/s, seed {seed}, proxy pid {} ({} fds, {} MiB at start)",
        args.minutes,
        args.sessions,
        args.faults_per_sec,
        args.pid,
        baseline.fds,
        baseline.rss_kib / 1024
    );

    let ctx = Arc::new(Ctx {
        args: args.clone(),
        endpoint,
        extras: faults::Extras {
            web: args.web_file.clone().map(|path| faults::WebFile {
                path,
                send_timeout: Duration::from_secs(args.send_timeout),
            }),
            send_timeout: Duration::from_secs(args.send_timeout),
            hanging_token: args.hanging_token.clone(),
        },
        stats: Stats::default(),
    });
    let mut rng = Rng::new(seed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.minutes * 60.0);
    let interval = Duration::from_secs_f64(args.interval);
    let mut samples = vec![Sample {
        probe: Some(baseline),
        ..Sample::take(0.0, args.pid, &ctx.stats)
    }];

    let mut slots = JoinSet::new();
    for i in 0..args.sessions {
        let delay = Duration::from_secs_f64(i as f64 / args.ramp_per_sec);
        slots.spawn(slot(ctx.clone(), rng.fork(), stop_rx.clone(), delay));
    }
    let injector = tokio::spawn(inject(ctx.clone(), rng.fork(), stop_rx.clone()));
    let lag = tokio::spawn(watch_lag(ctx.clone()));

    let mut next = started + interval;
    let mut proxy_gone = false;
    loop {
        sleep_until(next.min(end)).await;
        let sample = Sample::take(started.elapsed().as_secs_f64(), args.pid, &ctx.stats);
        progress(&sample);
        proxy_gone |= sample.probe.is_none();
        samples.push(sample);
        report::write_json(&args, seed, &samples, &ctx.stats, None)?;
        if Instant::now() >= end || proxy_gone {
            break;
        }
        next += interval;
    }

    eprintln!("soak: time is up; sessions finish their last message and close");
    let _ = stop_tx.send(true);
    let drained = timeout(DRAIN_TIMEOUT, async {
        while slots.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = slots.len();
        ctx.stats.error(
            "drain_timeout",
            &format!(
                "{left} sessions still open {}s after the end",
                DRAIN_TIMEOUT.as_secs()
            ),
            true,
        );
        slots.abort_all();
    }
    let _ = injector.await;
    lag.abort();
    let mut drained = Sample::take(started.elapsed().as_secs_f64(), args.pid, &ctx.stats);
    drained.phase = "drained";
    progress(&drained);
    samples.push(drained);

    // Closed sockets leave the proxy's table as soon as it notices; give it a moment.
    let settle_until = Instant::now() + Duration::from_secs_f64(args.settle);
    let mut last = Probe::take(args.pid).ok();
    while let Some(p) = last
        && p.fds > baseline.fds + args.fd_margin
        && Instant::now() < settle_until
    {
        sleep(Duration::from_millis(500)).await;
        last = Probe::take(args.pid).ok();
    }
    let mut settled = Sample::take(started.elapsed().as_secs_f64(), args.pid, &ctx.stats);
    settled.probe = last;
    settled.phase = "settled";
    progress(&settled);
    samples.push(settled);

    let verdict = report::verdict(&args, &samples, &ctx.stats);
    report::write_json(&args, seed, &samples, &ctx.stats, Some(&verdict))?;
    let markdown = report::markdown(&args, seed, &samples, &ctx.stats, &verdict);
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {path}"))?;
    }
    println!("{markdown}");
    if !verdict.is_empty() {
        bail!("soak failed: {}", verdict.join("; "));
    }
    Ok(())
}

fn progress(s: &Sample) {
    let (rss, fds) = s.probe.map_or(("gone".into(), "gone".into()), |p| {
        (
            format!("{:.1}", p.rss_kib as f64 / 1024.0),
            p.fds.to_string(),
        )
    });
    eprintln!(
        "soak: {:>6.0}s rss {rss} MiB, fds {fds}, live {}, opened {}, closed {}, faults {}, \
         {:.0} MB echoed, errors {} (fatal {}), wsload lag {} ms",
        s.t_s,
        s.live,
        s.opened,
        s.closed,
        s.faults,
        s.bytes_echoed as f64 / 1e6,
        s.errors,
        s.fatal,
        s.lag_ms
    );
}

/// Measures how late a 100 ms timer fires in the load generator's runtime, the worst since
/// the last sample: seconds of lag mean the load generator, not the proxy, is the bottleneck.
async fn watch_lag(ctx: Arc<Ctx>) {
    const TICK: Duration = Duration::from_millis(100);
    loop {
        let t = Instant::now();
        sleep(TICK).await;
        let late = t.elapsed().saturating_sub(TICK).as_millis() as u64;
        ctx.stats
            .lag_ms
            .fetch_max(late, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One of the `--sessions` slots: a well-behaved session after another until the end.
async fn slot(ctx: Arc<Ctx>, mut rng: Rng, stop: watch::Receiver<bool>, delay: Duration) {
    let mut waiting = stop.clone();
    tokio::select! {
        () = sleep(delay) => {}
        _ = waiting.wait_for(|stopped| *stopped) => return,
    }
    let args = &ctx.args;
    while !*stop.borrow() {
        let life = Duration::from_secs_f64(rng.log_uniform(args.min_life, args.max_life));
        let plan = Plan {
            seed: rng.next_u64(),
            sizes: Sizes::Mixed {
                huge_share: args.huge_share,
            },
            think: Duration::from_millis(args.think_ms),
            until: Instant::now() + life,
            read_pause: Duration::ZERO,
            read_delay: Duration::ZERO,
        };
        let stats = &ctx.stats;
        stats
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match session::run(&args.url, plan, rng.fork(), stats, &stop).await {
            Ok(()) => {
                stats.ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(f) => {
                stats
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stats.error(f.kind(), f.detail(), true);
                sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Starts faults at about `--faults-per-sec` (each gap uniform in 0.5..1.5 of the mean) until
/// the end, then waits for those still running.
async fn inject(ctx: Arc<Ctx>, mut rng: Rng, stop: watch::Receiver<bool>) {
    if ctx.args.faults_per_sec <= 0.0 {
        return;
    }
    let mean = 1.0 / ctx.args.faults_per_sec;
    let mut running = JoinSet::new();
    let mut waiting = stop.clone();
    loop {
        let gap = Duration::from_secs_f64(mean * (0.5 + rng.unit()));
        tokio::select! {
            () = sleep(gap) => {}
            _ = waiting.wait_for(|stopped| *stopped) => break,
        }
        let mix: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| ctx.extras.web.is_some() || !f.needs_web())
            .filter(|f| ctx.extras.hanging_token.is_some() || !f.needs_hanging_token())
            .collect();
        let fault = mix[rng.between(0, mix.len() as u64 - 1) as usize];
        let (ctx, fault_rng, stop) = (ctx.clone(), rng.fork(), stop.clone());
        running.spawn(async move {
            faults::run(
                fault,
                &ctx.endpoint,
                &ctx.extras,
                fault_rng,
                &ctx.stats,
                &stop,
            )
            .await;
        });
        while running.try_join_next().is_some() {}
    }
    if timeout(DRAIN_TIMEOUT, async {
        while running.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        ctx.stats.error(
            "fault_drain_timeout",
            &format!("{} faults still running after the end", running.len()),
            false,
        );
        running.abort_all();
    }
}
