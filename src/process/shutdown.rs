//! One small type that answers "has shutdown begun?", shared by every task (the shape of
//! mini-redis's `Shutdown`). The accept loop stops on it and each session closes its client
//! with 1001 "Going away". Before that, a drain (SIGTERM with a grace) is announced, so that
//! what can take no new work says so at once: an HTTP/2 connection sends GOAWAY.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// How far the shutdown has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Stage {
    Running,
    /// Sessions run on for the grace; nothing new is taken.
    Draining,
    /// Every session closes now.
    Closing,
}

/// The stage, and the waiters to wake when it moves on.
///
/// Not a `watch` channel: a session's task polls its wait for the close on every wake-up,
/// and a `watch`'s wait (a `Notify`'s) takes the lock of its list of waiters on every poll,
/// a list every session of the process shares. [`Closing`] looks at the stage, an atomic,
/// and joins the list once per stage.
#[derive(Debug)]
struct Shared {
    stage: AtomicU8,
    moved: Notify,
}

impl Shared {
    fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Acquire) {
            0 => Stage::Running,
            1 => Stage::Draining,
            _ => Stage::Closing,
        }
    }
}

/// Begins the shutdown that every [`Shutdown`] handed out observes. Dropped, it closes
/// every session (which happens only as the program ends).
#[derive(Debug)]
pub struct Trigger {
    shared: Arc<Shared>,
}

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    shared: Arc<Shared>,
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger {
            shared: Arc::new(Shared {
                stage: AtomicU8::new(Stage::Running as u8),
                moved: Notify::new(),
            }),
        }
    }

    /// Signals every subscriber that sessions must close; calling it again changes nothing.
    pub fn trigger(&self) {
        self.move_to(Stage::Closing);
    }

    /// Announces the drain: sessions go on, nothing new is taken.
    pub fn drain(&self) {
        self.move_to(Stage::Draining);
    }

    /// Moves the stage forward (never back) and wakes the waiters if it moved.
    fn move_to(&self, stage: Stage) {
        let before = self.shared.stage.fetch_max(stage as u8, Ordering::AcqRel);
        if before < stage as u8 {
            self.shared.moved.notify_waiters();
        }
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            shared: self.shared.clone(),
        }
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.trigger();
    }
}

impl Shutdown {
    #[cfg(test)]
    pub fn is_shutdown(&self) -> bool {
        self.shared.stage() == Stage::Closing
    }

    /// Completes once sessions must close (at once if they must already).
    pub fn recv(&mut self) -> Closing<'_> {
        Closing {
            shared: &self.shared,
            moved: self.shared.moved.notified(),
            waiting_in: None,
        }
    }

    /// Completes once a drain has begun, or the close itself.
    pub async fn draining(&mut self) {
        loop {
            // Created before the stage is read: a move in between still wakes it.
            let moved = self.shared.moved.notified();
            if self.shared.stage() >= Stage::Draining {
                return;
            }
            moved.await;
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Shutdown::recv`]'s future, made once per session and polled on each of its task's
    /// wake-ups: it joins the waiters once per stage, and otherwise reads the stage.
    #[derive(Debug)]
    pub struct Closing<'a> {
        shared: &'a Shared,
        #[pin]
        moved: Notified<'a>,
        // The stage `moved` was registered in, with this task's waker; None before the
        // first poll. (A task's waker stays the same for its life, and a session's wait is
        // polled by its own task only.)
        waiting_in: Option<Stage>,
    }
}

impl Future for Closing<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            let stage = this.shared.stage();
            if stage == Stage::Closing {
                return Poll::Ready(());
            }
            if *this.waiting_in == Some(stage) {
                return Poll::Pending;
            }
            // First poll, or the stage moved (a drain), which used up `moved`: a new wait,
            // created before the stage is read again so that no move is missed.
            if this.waiting_in.is_some() {
                this.moved.set(this.shared.moved.notified());
            }
            *this.waiting_in = Some(stage);
            let _ = this.moved.as_mut().poll(cx);
            if this.shared.stage() == stage {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn observes_trigger() {
        let trigger = Trigger::new();
        let mut a = trigger.subscribe();
        assert!(!a.is_shutdown());
        let waiter = tokio::spawn(async move {
            a.recv().await;
            a.is_shutdown()
        });
        let mut drains = trigger.subscribe();
        trigger.drain();
        drains.draining().await;
        assert!(!drains.is_shutdown());
        trigger.trigger();
        assert!(waiter.await.unwrap());
        let mut late = trigger.subscribe();
        late.recv().await;
        late.draining().await;
    }

    /// A wait made while running, polled through a drain (which wakes it without closing),
    /// completes at the close; and a dropped trigger closes too.
    #[tokio::test]
    async fn a_wait_polled_through_the_drain_completes_at_the_close() {
        let trigger = Trigger::new();
        let mut shutdown = trigger.subscribe();
        let waiter = tokio::spawn(async move { shutdown.recv().await });
        tokio::task::yield_now().await;
        trigger.drain();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        trigger.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken at the close")
            .unwrap();

        let trigger = Trigger::new();
        let mut shutdown = trigger.subscribe();
        let waiter = tokio::spawn(async move { shutdown.recv().await });
        tokio::task::yield_now().await;
        drop(trigger);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when the trigger went")
            .unwrap();
    }
}
