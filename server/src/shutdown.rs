//! One shutdown token for the whole process: the binary creates it, every
//! server task (client listener, connections, admin socket, /metrics, state
//! writer) gets a clone and stops when it is triggered (mini-redis's
//! `run(listener, shutdown)` seam). A high-availability leader also runs
//! its client listener under a token of its own, triggered with
//! [`CloseReason::LeaseExpired`] when it must stop serving.

use qnetd_core::close::CloseReason;
use tokio::sync::watch;

/// A cloneable "stop now" signal, with the reason client connections are
/// closed for.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<Option<CloseReason>>>,
    rx: watch::Receiver<Option<CloseReason>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(None);
        Shutdown {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Asks every holder of a clone to stop (the server is shutting down).
    pub fn trigger(&self) {
        self.trigger_with(CloseReason::ServerShutdown);
    }

    /// Asks every holder of a clone to stop; client connections close for
    /// `reason` (the first trigger's reason wins).
    pub fn trigger_with(&self, reason: CloseReason) {
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Why client connections close (once triggered).
    pub fn close_reason(&self) -> CloseReason {
        self.rx
            .borrow()
            .clone()
            .unwrap_or(CloseReason::ServerShutdown)
    }

    /// Completes once triggered (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while
        // `self` holds one; either way the wait is over.
        let _ = rx.wait_for(|stop| stop.is_some()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let a = Shutdown::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        let waiter = tokio::spawn(async move { b.triggered().await });
        a.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter saw the trigger")
            .unwrap();
        a.triggered().await;
        assert_eq!(a.close_reason(), CloseReason::ServerShutdown);
        let lease = Shutdown::new();
        lease.trigger_with(CloseReason::LeaseExpired);
        lease.trigger();
        assert_eq!(lease.close_reason(), CloseReason::LeaseExpired);
    }
}
