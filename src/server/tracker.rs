//! Counts live connections and WebSocket sessions, for the lifecycle rules that depend on
//! them (`--idle-timeout`, `--run-once`, `--timeout`, shutdown). A guard per connection or
//! session keeps the count right on every way out of a task, panics included; the same guards
//! keep the `websockify_connections_active` and `websockify_sessions_active` gauges.

use std::sync::Arc;

use tokio::sync::watch;

/// A snapshot of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accepted connections not yet closed (handshakes in progress included).
    pub connections: usize,
    /// Upgraded WebSocket sessions not yet ended.
    pub sessions: usize,
    /// WebSocket sessions ever upgraded.
    pub sessions_started: u64,
}

/// Shared by the accept loop, every handler and the lifecycle watchers.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    counts: Arc<watch::Sender<Counts>>,
}

/// Decrements its count when dropped.
#[derive(Debug)]
pub struct Guard {
    counts: Arc<watch::Sender<Counts>>,
    session: bool,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn connection(&self) -> Guard {
        let metrics = crate::metrics::get();
        metrics.connections_accepted.inc();
        metrics.connections_active.inc();
        self.counts.send_modify(|c| c.connections += 1);
        Guard {
            counts: self.counts.clone(),
            session: false,
        }
    }

    pub fn session(&self) -> Guard {
        crate::metrics::get().sessions_active.inc();
        self.counts.send_modify(|c| {
            c.sessions += 1;
            c.sessions_started += 1;
        });
        Guard {
            counts: self.counts.clone(),
            session: true,
        }
    }

    pub fn counts(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Completes once the counts satisfy `pred` (at once if they already do).
    pub async fn wait_for(&self, pred: impl FnMut(&Counts) -> bool) -> Counts {
        let mut rx = self.counts.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        match rx.wait_for(pred).await {
            Ok(c) => *c,
            Err(_) => self.counts(),
        }
    }

    /// Completes on the next change of the counts.
    pub fn subscribe(&self) -> watch::Receiver<Counts> {
        self.counts.subscribe()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let session = self.session;
        let metrics = crate::metrics::get();
        if session {
            metrics.sessions_active.dec();
        } else {
            metrics.connections_active.dec();
        }
        self.counts.send_modify(|c| {
            if session {
                c.sessions -= 1;
            } else {
                c.connections -= 1;
            }
        });
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
                sessions: 1,
                sessions_started: 1
            }
        );
        drop(s);
        drop(c);
        let counts = t.wait_for(|c| c.connections == 0).await;
        assert_eq!((counts.sessions, counts.sessions_started), (0, 1));
    }
}
