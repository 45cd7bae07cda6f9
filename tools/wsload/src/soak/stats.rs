//! What the soak counts while it runs, and what it reads of the proxy from `/proc`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many error descriptions are kept for the report, in all and of each kind (the counts
/// are kept for all).
const EXAMPLES: usize = 50;
const EXAMPLES_PER_KIND: usize = 5;

/// Counters shared by every session task.
#[derive(Default)]
pub struct Stats {
    /// Well-behaved sessions started (connect attempted).
    pub opened: AtomicU64,
    /// Well-behaved sessions that ended: every byte echoed and verified, closed with 1000.
    pub ok: AtomicU64,
    /// Well-behaved sessions that ended any other way.
    pub failed: AtomicU64,
    /// Bytes sent by checksummed sessions (well-behaved and slow readers).
    pub bytes_sent: AtomicU64,
    /// Bytes echoed back and found equal to what was sent, in order.
    pub bytes_echoed: AtomicU64,
    pub messages: AtomicU64,
    /// 16 MiB messages among `messages`.
    pub huge_messages: AtomicU64,
    pub faults_started: AtomicU64,
    pub faults_ended: AtomicU64,
    /// Errors that fail the run (every failure of a well-behaved session, every data error).
    pub fatal: AtomicU64,
    /// Of those, lost or corrupted data.
    pub data_errors: AtomicU64,
    /// The longest the load generator's own timer fired late since the last sample, in ms: a
    /// starved load generator (not the proxy) makes sessions slow, and this says so.
    pub lag_ms: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<BTreeMap<&'static str, FaultTally>>,
    examples: Mutex<Vec<String>>,
}

/// One fault kind's injections and how they ended.
#[derive(Default, Clone, Copy)]
pub struct FaultTally {
    pub injected: u64,
    /// The proxy answered as it should (or, for faults with no answer, the fault was done).
    pub as_expected: u64,
    pub unexpected: u64,
}

/// Locks a mutex whose data stays usable even if a task panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    /// Counts an error of `kind`; `fatal` ones fail the run.
    pub fn error(&self, kind: &str, detail: &str, fatal: bool) {
        let seen = {
            let mut errors = lock(&self.errors);
            let n = errors.entry(kind.to_owned()).or_default();
            *n += 1;
            *n
        };
        if fatal {
            self.fatal.fetch_add(1, Ordering::Relaxed);
            if kind.starts_with("data_") {
                self.data_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut examples = lock(&self.examples);
        if examples.len() < EXAMPLES && seen as usize <= EXAMPLES_PER_KIND {
            examples.push(format!("{kind}: {detail}"));
        }
    }

    pub fn fault_started(&self, kind: &'static str) {
        self.faults_started.fetch_add(1, Ordering::Relaxed);
        lock(&self.faults).entry(kind).or_default().injected += 1;
    }

    /// Records how a fault ended: `Err` is an unexpected answer from the proxy.
    pub fn fault_ended(&self, kind: &'static str, outcome: Result<(), String>) {
        self.faults_ended.fetch_add(1, Ordering::Relaxed);
        {
            let mut faults = lock(&self.faults);
            let tally = faults.entry(kind).or_default();
            match outcome {
                Ok(()) => tally.as_expected += 1,
                Err(_) => tally.unexpected += 1,
            }
        }
        if let Err(detail) = outcome {
            self.error(&format!("fault_{kind}_unexpected"), &detail, false);
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    pub fn faults(&self) -> BTreeMap<&'static str, FaultTally> {
        lock(&self.faults).clone()
    }

    pub fn examples(&self) -> Vec<String> {
        lock(&self.examples).clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The proxy process as `/proc` shows it at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub rss_kib: u64,
    pub fds: u64,
    pub cpu_s: f64,
}

impl Probe {
    /// Reads `/proc/PID`; an error means the process is gone (or not ours to read).
    pub fn take(pid: u32) -> Result<Probe, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
            .count() as u64;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // After the command (which may hold spaces and parentheses): state is field 3, utime
        // and stime fields 14 and 15, in clock ticks (100 a second on Linux).
        let cpu_s = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<f64>().ok())
                    .sum::<f64>()
                    / 100.0
            })
            .unwrap_or(0.0);
        Ok(Probe {
            rss_kib,
            fds,
            cpu_s,
        })
    }
}

/// One row of the time series.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `run` while sessions run; `drained` once they all ended; `settled` after the wait for
    /// the proxy's descriptors.
    pub phase: &'static str,
    /// Seconds since the soak started.
    pub t_s: f64,
    /// `None` when the proxy could not be read (it exited).
    pub probe: Option<Probe>,
    pub opened: u64,
    pub closed: u64,
    pub live: u64,
    pub faults: u64,
    pub live_faults: u64,
    pub bytes_sent: u64,
    pub bytes_echoed: u64,
    pub messages: u64,
    /// All errors so far, fatal or not.
    pub errors: u64,
    pub fatal: u64,
    /// The load generator's worst timer lag since the previous sample, ms.
    pub lag_ms: u64,
}

impl Sample {
    pub fn take(t_s: f64, pid: u32, stats: &Stats) -> Sample {
        let opened = Stats::get(&stats.opened);
        let closed = Stats::get(&stats.ok) + Stats::get(&stats.failed);
        let faults = Stats::get(&stats.faults_started);
        Sample {
            phase: "run",
            t_s,
            probe: Probe::take(pid).ok(),
            opened,
            closed,
            live: opened.saturating_sub(closed),
            faults,
            live_faults: faults.saturating_sub(Stats::get(&stats.faults_ended)),
            bytes_sent: Stats::get(&stats.bytes_sent),
            bytes_echoed: Stats::get(&stats.bytes_echoed),
            messages: Stats::get(&stats.messages),
            errors: stats.errors().values().sum(),
            fatal: Stats::get(&stats.fatal),
            lag_ms: stats.lag_ms.swap(0, Ordering::Relaxed),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "phase": self.phase,
            "t_s": (self.t_s * 10.0).round() / 10.0,
            "rss_kib": self.probe.map(|p| p.rss_kib),
            "fds": self.probe.map(|p| p.fds),
            "cpu_s": self.probe.map(|p| p.cpu_s),
            "sessions_opened": self.opened,
            "sessions_closed": self.closed,
            "sessions_live": self.live,
            "faults_injected": self.faults,
            "faults_live": self.live_faults,
            "bytes_sent": self.bytes_sent,
            "bytes_echoed": self.bytes_echoed,
            "messages": self.messages,
            "errors": self.errors,
            "fatal_errors": self.fatal,
            "wsload_lag_ms": self.lag_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_process() {
        let p = Probe::take(std::process::id()).unwrap();
        assert!(p.rss_kib > 0);
        assert!(p.fds >= 3, "{p:?}");
    }

    #[test]
    fn no_such_process() {
        // Above the kernel's pid_max limit (4M), so never a live pid.
        assert!(Probe::take(u32::MAX - 1).is_err());
    }

    #[test]
    fn data_errors_are_fatal_and_counted() {
        let s = Stats::default();
        s.error("data_lost", "x", true);
        s.error("close_failed", "y", true);
        s.fault_ended("garbage", Err("no close".into()));
        assert_eq!(Stats::get(&s.fatal), 2);
        assert_eq!(Stats::get(&s.data_errors), 1);
        assert_eq!(s.errors().get("fault_garbage_unexpected"), Some(&1));
        assert_eq!(s.examples().len(), 3);
    }
}
