//! One small type that answers "has shutdown begun?", shared by every task (the shape of
//! mini-redis's `Shutdown`). The accept loop stops on it and each session closes its client
//! with 1001 "Going away". Before that, a drain (SIGTERM with a grace) is announced, so that
//! what can take no new work says so at once: an HTTP/2 connection sends GOAWAY.

use tokio::sync::watch;

/// How far the shutdown has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Running,
    /// Sessions run on for the grace; nothing new is taken.
    Draining,
    /// Every session closes now.
    Closing,
}

/// Begins the shutdown that every [`Shutdown`] handed out observes.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<Stage>,
}

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Stage>,
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger {
            tx: watch::Sender::new(Stage::Running),
        }
    }

    /// Signals every subscriber that sessions must close; calling it again changes nothing.
    pub fn trigger(&self) {
        self.tx.send_replace(Stage::Closing);
    }

    /// Announces the drain: sessions go on, nothing new is taken.
    pub fn drain(&self) {
        self.tx.send_if_modified(|stage| {
            let running = *stage == Stage::Running;
            if running {
                *stage = Stage::Draining;
            }
            running
        });
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

impl Shutdown {
    #[cfg(test)]
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow() == Stage::Closing
    }

    /// Completes once sessions must close (at once if they must already).
    ///
    /// A loop on `changed` rather than `wait_for`, whose future is twice the size: every
    /// session keeps this one for its whole life.
    pub async fn recv(&mut self) {
        while *self.rx.borrow_and_update() != Stage::Closing {
            // An error means the trigger is gone, which only happens as the program ends.
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Completes once a drain has begun, or the close itself.
    pub async fn draining(&mut self) {
        let _ = self.rx.wait_for(|&stage| stage >= Stage::Draining).await;
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
}
