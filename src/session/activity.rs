//! When data last passed either way in a session: the clock of its heartbeat and of
//! `--session-idle-timeout`. Data counts when it is read from either side and whenever the
//! client takes bytes of a message to it, so a client that is sent a long message slowly is
//! busy, and one whose receive window stays shut is idle, however much is waiting for it.
//!
//! Also the clock of `--busy-poll`: whether it is the client's turn to answer a message we
//! sent it, and for how much longer the relay polls for that answer rather than sleep.

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
    /// `--busy-poll` in microseconds, 0 for none (a `u32` beside `kept`, where an
    /// `Option<Duration>` would take the allocation to the next size class).
    busy_poll: u32,
    /// Nanoseconds since `started` until which the relay polls for the client's answer; 0
    /// when it is not the client's turn.
    client_turn_until: AtomicU64,
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
            busy_poll: 0,
            client_turn_until: AtomicU64::new(0),
        }
    }

    /// `--busy-poll`: after each message to the client, its answer is polled for during
    /// `busy_poll` (whole microseconds, at most `u32::MAX`) before the relay sleeps.
    pub fn busy_poll(mut self, busy_poll: Option<Duration>) -> Activity {
        self.busy_poll = busy_poll.map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self
    }

    /// A message was sent to the client: its answer is awaited (with `--busy-poll`).
    pub fn sent_to_client(&self) {
        if self.busy_poll > 0 {
            let until = self.nanos() + u64::from(self.busy_poll) * 1_000;
            self.client_turn_until.store(until, Ordering::Relaxed);
        }
    }

    /// The client's answer came (or something else from it): waiting for it is over, and
    /// what follows waits on the target, which may share our CPU.
    pub fn heard_from_client(&self) {
        if self.busy_poll > 0 {
            self.client_turn_until.store(0, Ordering::Relaxed);
        }
    }

    /// The relay should poll for the client's answer rather than sleep: it is the client's
    /// turn, and `--busy-poll` has not run out since our message.
    pub fn polls_for_client(&self) -> bool {
        if self.busy_poll == 0 {
            return false;
        }
        let until = self.client_turn_until.load(Ordering::Relaxed);
        until != 0 && self.nanos() < until
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_busy_poll_it_is_never_the_clients_turn() {
        let activity = Activity::new(None, None);
        activity.sent_to_client();
        assert!(!activity.polls_for_client());
    }

    #[test]
    fn the_clients_turn_lasts_the_busy_poll_or_until_it_answers() {
        let activity = Activity::new(None, None).busy_poll(Some(Duration::from_secs(60)));
        assert!(!activity.polls_for_client(), "nothing was sent yet");
        activity.sent_to_client();
        assert!(activity.polls_for_client());
        activity.heard_from_client();
        assert!(!activity.polls_for_client());

        let short = Activity::new(None, None).busy_poll(Some(Duration::from_micros(1)));
        short.sent_to_client();
        std::thread::sleep(Duration::from_millis(1));
        assert!(!short.polls_for_client(), "the poll ran out");
    }
}
