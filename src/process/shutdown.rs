//! One small type that answers "has shutdown begun?", shared by every task (the shape of
//! mini-redis's `Shutdown`). The accept loop stops on it and each session closes its client
//! with 1001 "Going away".

use tokio::sync::watch;

/// Begins the shutdown that every [`Shutdown`] handed out observes.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Trigger {
    pub fn new() -> Trigger {
        Trigger {
            tx: watch::Sender::new(false),
        }
    }

    /// Signals every subscriber; calling it again changes nothing.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
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
        *self.rx.borrow()
    }

    /// Completes once shutdown has begun (at once if it already has).
    pub async fn recv(&mut self) {
        // An error means the trigger is gone, which only happens as the program ends.
        let _ = self.rx.wait_for(|&down| down).await;
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
        trigger.trigger();
        assert!(waiter.await.unwrap());
        let mut late = trigger.subscribe();
        late.recv().await;
    }
}
