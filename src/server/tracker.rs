//! Counts live connections and WebSocket sessions, for the lifecycle rules that depend on
//! them (`--idle-timeout`, `--run-once`, `--timeout`, shutdown). A guard per connection or
//! session keeps the count right on every way out of a task, panics included; the same guards
//! keep the `websockify_connections_active` and `websockify_sessions_active` gauges.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A snapshot of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accepted connections not yet closed, from accept on: handshakes in progress (a PROXY
    /// header, TLS, a request head) included.
    pub connections: usize,
    /// Connections ever accepted.
    pub connections_accepted: u64,
    /// Upgraded WebSocket sessions not yet ended.
    pub sessions: usize,
    /// WebSocket sessions ever upgraded.
    pub sessions_started: u64,
}

/// Shared by the accept loop, every handler and the lifecycle watchers.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    shared: Arc<Shared>,
}

/// The counts as atomics, and the lifecycle watchers' wake-up. A change costs a connection
/// two atomic operations, and a lock (waking the watchers) only while a watcher waits: a
/// `watch` channel took its lock and its eight wake-up lists' locks on every change, four
/// times per connection, watched or not.
#[derive(Debug, Default)]
struct Shared {
    connections: AtomicUsize,
    connections_accepted: AtomicU64,
    sessions: AtomicUsize,
    sessions_started: AtomicU64,
    /// Tasks in [`Tracker::wait_for`].
    waiting: AtomicUsize,
    changed: Notify,
}

impl Shared {
    /// Wakes the watchers after a change. Sequentially consistent with the change and with a
    /// watcher's registration, so either the watcher sees the change or we see the watcher.
    fn changed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Decrements its count when dropped.
#[derive(Debug)]
pub struct Guard {
    shared: Arc<Shared>,
    session: bool,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn connection(&self) -> Guard {
        let metrics = crate::telemetry::metrics::get();
        metrics.connections_accepted.inc();
        metrics.connections_active.inc();
        // Open first, accepted second, and `counts` reads them the other way round: a
        // snapshot that counts a connection as accepted counts it as open (or closed since).
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        self.shared
            .connections_accepted
            .fetch_add(1, Ordering::SeqCst);
        self.shared.changed();
        Guard {
            shared: self.shared.clone(),
            session: false,
        }
    }

    pub fn session(&self) -> Guard {
        crate::telemetry::metrics::get().sessions_active.inc();
        // Started first: a watcher never sees a session that was not started.
        self.shared.sessions_started.fetch_add(1, Ordering::SeqCst);
        self.shared.sessions.fetch_add(1, Ordering::SeqCst);
        self.shared.changed();
        Guard {
            shared: self.shared.clone(),
            session: true,
        }
    }

    pub fn counts(&self) -> Counts {
        // In the reverse order of the increments (see `connection` and `session`).
        let connections_accepted = self.shared.connections_accepted.load(Ordering::SeqCst);
        let connections = self.shared.connections.load(Ordering::SeqCst);
        let sessions = self.shared.sessions.load(Ordering::SeqCst);
        let sessions_started = self.shared.sessions_started.load(Ordering::SeqCst);
        Counts {
            connections,
            connections_accepted,
            sessions,
            sessions_started,
        }
    }

    /// Completes once the counts satisfy `pred` (at once if they already do).
    pub async fn wait_for(&self, mut pred: impl FnMut(&Counts) -> bool) -> Counts {
        let shared = &self.shared;
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(shared);
        loop {
            // Made before the counts are read: a change after the read wakes it (a
            // `Notified` receives `notify_waiters` from its creation on).
            let changed = shared.changed.notified();
            let counts = self.counts();
            if pred(&counts) {
                return counts;
            }
            changed.await;
        }
    }
}

/// One task in [`Tracker::wait_for`], until it leaves (done or dropped).
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let metrics = crate::telemetry::metrics::get();
        if self.session {
            metrics.sessions_active.dec();
            self.shared.sessions.fetch_sub(1, Ordering::SeqCst);
        } else {
            metrics.connections_active.dec();
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guards_count() {
        let t = Tracker::new();
        let c = t.connection();
        let s = t.session();
        assert_eq!(
            t.counts(),
            Counts {
                connections: 1,
                connections_accepted: 1,
                sessions: 1,
                sessions_started: 1
            }
        );
        drop(s);
        drop(c);
        let counts = t.wait_for(|c| c.connections == 0).await;
        assert_eq!((counts.sessions, counts.sessions_started), (0, 1));
    }

    /// A waiter wakes on the change that satisfies it, made by another task while it waits.
    #[tokio::test]
    async fn waiters_wake_on_changes() {
        let t = Tracker::new();
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_for(|c| c.sessions_started == 2).await }
        });
        tokio::task::yield_now().await;
        let c = t.connection();
        let first = t.session();
        drop(first);
        tokio::task::yield_now().await;
        let second = t.session();
        let counts = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap();
        assert_eq!((counts.sessions, counts.sessions_started), (1, 2));
        assert_eq!(t.shared.waiting.load(Ordering::SeqCst), 0);
        drop((second, c));
    }

    /// Changes without a waiter wake nobody and leave nothing behind.
    #[tokio::test]
    async fn a_dropped_wait_leaves_no_waiter() {
        let t = Tracker::new();
        let wait = t.wait_for(|c| c.connections == 5);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), wait).await;
        assert!(pending.is_err());
        assert_eq!(t.shared.waiting.load(Ordering::SeqCst), 0);
    }
}
