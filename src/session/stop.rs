//! The signal that stops a session's target-to-client direction at its next message boundary:
//! raised by the relay itself once the client's side ended, or by an operator
//! (`DELETE /sessions/{id}`, see [`crate::session::registry::Eviction`]).
//!
//! A flag and one waker rather than a [`tokio::sync::Notify`]: the relay waits on it beside
//! every read from the target, so the wait is made once per message. A `Notify`'s wait joins
//! and leaves a locked list of waiters each time (the largest user-space cost per message in
//! `perf`, docs/performance.md step 34); this one is an atomic load and, when the waker is the
//! same as last time, a compare-and-swap.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Raised at most once; it stays raised. One task waits on it (the session's relay): a
/// second waiter would take the first one's place and leave it unwoken.
#[derive(Debug, Default)]
pub struct Stop {
    asked: AtomicBool,
    waker: AtomicWaker,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Raises it, waking the session waiting on it (if it is waiting).
    pub fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// It was raised.
    pub fn is_asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Ready once raised; otherwise keeps `cx`'s waker to be woken when it is.
    pub fn poll_asked(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_asked() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Raised between the check and the registration: its wake may have missed the waker.
        if self.is_asked() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes once raised (at once, if it was raised before).
    pub fn asked(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::poll_fn(|cx| self.poll_asked(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn raised_before_the_wait_completes_it_at_once() {
        let stop = Stop::new();
        assert!(!stop.is_asked());
        stop.ask();
        stop.asked().await;
        assert!(stop.is_asked());
    }

    #[tokio::test]
    async fn raised_from_another_task_wakes_the_waiter() {
        let stop = Arc::new(Stop::new());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.asked().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.ask();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .expect("the waiter ran");
    }
}
