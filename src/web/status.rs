//! `/websockify/status.json`: the live numbers the landing page (`web/index.html`) shows, on
//! the proxy port whenever `--web` is on.
//!
//! The proxy port is often public while `--metrics-listen` is not, so this answers
//! aggregates only: the version, the uptime, session counts and relayed bytes, now and over
//! the last five minutes. Never an address, a target, a token or a plugin name. The path sits
//! under `/websockify/`, which noVNC and websockify's clients use as the WebSocket path, so it
//! does not meet a web directory's own files in practice; if one has such a file, this answer
//! wins (README, "The web directory").
//!
//! # The answer's fields (the page's contract: change them with `web/index.js`)
//!
//! - `version`: the proxy's version.
//! - `uptime_seconds`: whole seconds since the server started.
//! - `uptime_ms`: the same clock in milliseconds: the moment of this answer, on the clock of
//!   `history`'s samples.
//! - `sessions_active`, `sessions_total`: WebSocket sessions open now, and upgraded since the
//!   start.
//! - `bytes_from_client`, `bytes_to_client`: payload bytes relayed each way since the start.
//! - `history`: samples taken every [`SAMPLE_EVERY`] (5 s) from the start, oldest first, at
//!   most [`SAMPLES`] (60: the last five minutes). Each is `{uptime_ms, sessions_active,
//!   bytes_from_client, bytes_to_client}`, what this answer would have said then. The byte
//!   counts are totals, so a rate is the difference of two samples over the difference of
//!   their `uptime_ms`; a sample is on the server's monotonic clock, never the wall clock,
//!   so rates are right whatever the browser's clock says. Every sample is at or before
//!   this answer's `uptime_ms`.
//!
//! The history lets a page opened now draw the last minutes at once; it keeps its own polls
//! after that. It is sampled by a task ([`super::WebRoot::status_sampler`], spawned where
//! the server starts) rather than on request, since nobody may ask for minutes.

use std::future::Future;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde::Serialize;

use super::WebBody;

/// The reserved path.
pub const PATH: &str = "/websockify/status.json";

/// How often the history takes a sample: fine enough for a chart of minutes, and one wake-up
/// of a task every 5 s costs nothing.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How many samples the history keeps: five minutes of them. The answer stays small (about
/// 6 KiB) and a chart of five minutes is what the page draws.
pub const SAMPLES: usize = 60;

/// The answer's body; the module's documentation is its contract.
#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    uptime_seconds: u64,
    uptime_ms: u64,
    sessions_active: u64,
    sessions_total: u64,
    /// Payload bytes from clients to targets.
    bytes_from_client: u64,
    /// Payload bytes from targets to clients.
    bytes_to_client: u64,
    history: Vec<Sample>,
}

/// The numbers at one moment: aggregates only, as the whole answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct Sample {
    /// Milliseconds since the server started.
    uptime_ms: u64,
    sessions_active: u64,
    bytes_from_client: u64,
    bytes_to_client: u64,
}

impl Sample {
    fn of(uptime: Duration, totals: crate::telemetry::metrics::Totals) -> Sample {
        Sample {
            uptime_ms: u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
            sessions_active: totals.sessions_active,
            bytes_from_client: totals.from_client,
            bytes_to_client: totals.to_client,
        }
    }
}

/// A fixed-size ring of the last `N` samples: pushing onto a full ring drops the oldest, so
/// it never grows, however long the server runs.
#[derive(Debug)]
struct Ring<const N: usize> {
    samples: [Sample; N],
    /// Where the next sample goes.
    next: usize,
    len: usize,
}

impl<const N: usize> Ring<N> {
    fn new() -> Ring<N> {
        const { assert!(N > 0, "a ring holds at least one sample") };
        Ring {
            samples: [Sample::default(); N],
            next: 0,
            len: 0,
        }
    }

    fn push(&mut self, sample: Sample) {
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
    }

    /// The samples, oldest first.
    fn to_vec(&self) -> Vec<Sample> {
        let start = (self.next + N - self.len) % N;
        (0..self.len)
            .map(|i| self.samples[(start + i) % N])
            .collect()
    }
}

/// The server's history of [`SAMPLES`] samples, shared by the sampler and the answers.
#[derive(Debug)]
pub(super) struct History {
    /// Held only to copy a sample in or the samples out, never across an await.
    ring: Mutex<Ring<SAMPLES>>,
}

impl History {
    pub(super) fn new() -> History {
        History {
            ring: Mutex::new(Ring::new()),
        }
    }

    fn push(&self, sample: Sample) {
        // Nothing panics while holding the lock; if something ever did, a ring of plain
        // numbers is still whole.
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
    }

    fn samples(&self) -> Vec<Sample> {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_vec()
    }
}

/// The task that fills `history`, for a server started at `started`: its first sample is
/// taken here and now (so the history is never empty once a server serves), the next every
/// [`SAMPLE_EVERY`]. It holds the history weakly and ends when the web root that owns it is
/// gone, so it never outlives the server.
pub(super) fn sampler(
    history: Weak<History>,
    started: Instant,
) -> impl Future<Output = ()> + Send + 'static {
    // tokio's clock, which is std's unless a test pauses it.
    let started = tokio::time::Instant::from_std(started);
    let sample = move |history: &History| {
        let totals = crate::telemetry::metrics::get().totals();
        history.push(Sample::of(started.elapsed(), totals));
    };
    if let Some(history) = history.upgrade() {
        sample(&history);
    }
    async move {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
        // After a stall, the next sample comes a full interval later rather than a burst of
        // them at once: their uptimes say when each was taken either way.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(history) = history.upgrade() else {
                return;
            };
            sample(&history);
        }
    }
}

/// The status now, for a server started at `started`.
pub(super) fn response(started: Instant, history: &History) -> Response<WebBody> {
    // The history first, so that every sample in it is at or before the answer's moment.
    let history = history.samples();
    let uptime = started.elapsed();
    let totals = crate::telemetry::metrics::get().totals();
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: uptime.as_secs(),
        uptime_ms: u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
        sessions_active: totals.sessions_active,
        sessions_total: totals.sessions_started,
        bytes_from_client: totals.from_client,
        bytes_to_client: totals.to_client,
        history,
    };
    // Only numbers and a version string of our own: serialising cannot fail, and if it ever
    // did, an empty object still parses on the page.
    let mut body = serde_json::to_vec(&status).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut r = Response::new(WebBody::Bytes(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // Live numbers: a cached copy would show a stale server.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(ms: u64) -> Sample {
        Sample {
            uptime_ms: ms,
            sessions_active: ms / 1000,
            bytes_from_client: ms * 2,
            bytes_to_client: ms * 3,
        }
    }

    fn times<const N: usize>(ring: &Ring<N>) -> Vec<u64> {
        ring.to_vec().iter().map(|s| s.uptime_ms).collect()
    }

    #[test]
    fn a_ring_gives_its_samples_oldest_first_and_drops_the_oldest_when_full() {
        let mut ring = Ring::<3>::new();
        assert!(ring.to_vec().is_empty());
        ring.push(at(0));
        ring.push(at(5000));
        assert_eq!(times(&ring), [0, 5000]);
        ring.push(at(10_000));
        assert_eq!(times(&ring), [0, 5000, 10_000]);
        ring.push(at(15_000));
        assert_eq!(times(&ring), [5000, 10_000, 15_000]);
        for i in 4..20 {
            ring.push(at(i * 5000));
            assert_eq!(ring.to_vec().len(), 3);
        }
        assert_eq!(times(&ring), [85_000, 90_000, 95_000]);
        // Whole samples, not just their times.
        assert_eq!(ring.to_vec()[2], at(95_000));
    }

    #[test]
    fn the_history_holds_five_minutes_at_most() {
        let history = History::new();
        for i in 0..1000 {
            history.push(at(i * 5000));
        }
        let samples = history.samples();
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[0].uptime_ms, (1000 - SAMPLES as u64) * 5000);
        assert_eq!(samples[SAMPLES - 1].uptime_ms, 999 * 5000);
        assert!(samples.windows(2).all(|w| w[0].uptime_ms < w[1].uptime_ms));
        assert_eq!(
            SAMPLE_EVERY * (SAMPLES as u32),
            Duration::from_secs(5 * 60),
            "the page's window"
        );
    }

    #[test]
    fn a_sample_serialises_as_the_pages_contract_says() {
        let json = serde_json::to_value(at(12_345)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "uptime_ms": 12_345,
                "sessions_active": 12,
                "bytes_from_client": 24_690,
                "bytes_to_client": 37_035,
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_samples_at_once_then_every_five_seconds_and_ends_with_its_history() {
        let history = Arc::new(History::new());
        let task = sampler(Arc::downgrade(&history), Instant::now());
        assert_eq!(
            history.samples().len(),
            1,
            "the first sample, before the task runs"
        );
        let task = tokio::spawn(task);
        tokio::time::sleep(Duration::from_millis(12_500)).await;
        let samples = history.samples();
        assert_eq!(samples.len(), 3, "{samples:?}");
        // On the paused clock the sampler's start is a hair before `Instant::now()` above.
        for (sample, want) in samples.iter().zip([0, 5000, 10_000]) {
            assert!(sample.uptime_ms.abs_diff(want) <= 1, "{samples:?}");
        }
        drop(history);
        tokio::time::sleep(SAMPLE_EVERY).await;
        assert!(task.is_finished(), "the sampler outlived its history");
    }
}
