//! When data last passed either way in a session: the clock of its heartbeat and of
//! `--session-idle-timeout`. Data counts when it is read from either side and whenever the
//! client takes bytes of a message to it, so a client that is sent a long message slowly is
//! busy, and one whose receive window stays shut is idle, however much is waiting for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::edge::deadline::Watch;

/// Shared by a session's relay and its sending half.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last frame either way (pings included).
    last_frame: AtomicU64,
    /// Milliseconds since `started` of the last data either way.
    last_data: AtomicU64,
    /// A heartbeat or an idle timeout is set: the times above are kept. A session with
    /// neither reads no clock per message.
    kept: bool,
    /// `--heartbeat`.
    pub heartbeat: Option<Duration>,
    /// `--session-idle-timeout`.
    pub idle_timeout: Option<Duration>,
}

impl Activity {
    pub fn new(heartbeat: Option<Duration>, idle_timeout: Option<Duration>) -> Activity {
        Activity {
            started: Instant::now(),
            last_frame: AtomicU64::new(0),
            last_data: AtomicU64::new(0),
            kept: heartbeat.is_some() || idle_timeout.is_some(),
            heartbeat,
            idle_timeout,
        }
    }

    /// Keeps the times whatever the clocks: a listed session shows when data last passed
    /// (see [`crate::session::registry`]), at the cost of a clock read per message.
    pub fn kept_always(mut self) -> Activity {
        self.kept = true;
        self
    }

    /// Since the session began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Since data last passed either way (since the start before any; meaningful only while
    /// the times are kept).
    pub fn since_data(&self) -> Duration {
        let last = Duration::from_millis(self.last_data.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Data passed.
    pub fn data(&self) {
        if self.kept {
            let now = self.now();
            self.last_frame.store(now, Ordering::Relaxed);
            self.last_data.store(now, Ordering::Relaxed);
        }
    }

    /// A frame without data (our ping) passed.
    pub fn frame(&self) {
        if self.kept {
            self.last_frame.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When to ping: the heartbeat after the last frame either way.
    pub fn ping_at(&self) -> Option<tokio::time::Instant> {
        self.after(&self.last_frame, self.heartbeat)
    }

    /// When the session is idle: the idle timeout after the last data either way.
    pub fn idle_at(&self) -> Option<tokio::time::Instant> {
        self.after(&self.last_data, self.idle_timeout)
    }

    /// The session has been idle for the whole idle timeout, now.
    pub fn is_idle(&self) -> bool {
        self.idle_at()
            .is_some_and(|at| at <= tokio::time::Instant::now())
    }

    fn after(&self, last: &AtomicU64, wait: Option<Duration>) -> Option<tokio::time::Instant> {
        wait.map(|wait| {
            let last = Duration::from_millis(last.load(Ordering::Relaxed));
            tokio::time::Instant::from_std(self.started + last + wait)
        })
    }
}

/// The client took bytes of a message to it.
impl Watch for Activity {
    fn progressed(&self) {
        self.data();
    }
}
