//! Deliveries between the sessions of one cluster.
//!
//! When a client's event makes the cluster's algorithm decide something for
//! another client (a VOTE_INFO, arming or cancelling its timer), the
//! deciding session puts a typed [`Delivery`] into the receiving session's
//! [`Mailbox`], while it holds the cluster lock. So every mailbox receives
//! its deliveries in the order the cluster decided them. The receiving
//! session takes them out in that order and encodes them itself (see
//! `Session::handle_mailbox`); its connection driver is woken through the
//! mailbox's waker. A session also drains its own mailbox before it queues
//! anything of its own, so a client sees every message in decision order.
//!
//! The mailbox is bounded (`max_client_send_buffers`): a client that does
//! not read its replies is disconnected when it overflows, never the server
//! or the deciding client. Only std is used: no async runtime.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use qnetd_algorithms::{RingId, Vote};

use crate::close::CloseReason;

/// Something the cluster decided for one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Send `VOTE_INFO(seq, vote, ring)`.
    VoteInfo { seq: u32, vote: Vote, ring: RingId },
    /// (Re)arm the client's algorithm timer to fire `after_ms` from when
    /// the session takes the delivery.
    ArmTimer { after_ms: u64 },
    /// Cancel the client's algorithm timer.
    CancelTimer,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Delivery>,
    kicked: Option<CloseReason>,
    /// Something outside the queue changed (held output may go out).
    nudged: bool,
    waker: Option<Waker>,
}

/// One session's inbox (see the module documentation).
#[derive(Debug)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Mailbox {
    /// A mailbox that holds at most `capacity` deliveries.
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a delivery. Returns false (and queues nothing) when the
    /// mailbox is full or its session is being closed.
    pub fn deliver(&self, d: Delivery) -> bool {
        let waker = {
            let mut inner = self.lock();
            if inner.kicked.is_some() || inner.queue.len() >= self.capacity {
                return false;
            }
            inner.queue.push_back(d);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Asks the session to close with `reason` (the first reason wins).
    pub fn kick(&self, reason: CloseReason) {
        let waker = {
            let mut inner = self.lock();
            if inner.kicked.is_none() {
                inner.kicked = Some(reason);
            }
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes the session without a delivery (the vote memory became
    /// durable: output it held back may go out).
    pub fn nudge(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.nudged = true;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ready when deliveries are waiting, the session was kicked or
    /// nudged; else registers the task's waker.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if !inner.queue.is_empty() || inner.kicked.is_some() || inner.nudged {
            return Poll::Ready(());
        }
        match &inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes every waiting delivery (in order) and the kick, if any.
    pub(crate) fn take(&self) -> (VecDeque<Delivery>, Option<CloseReason>) {
        let mut inner = self.lock();
        inner.nudged = false;
        let queue = if inner.queue.is_empty() {
            VecDeque::new()
        } else {
            std::mem::take(&mut inner.queue)
        };
        (queue, inner.kicked.clone())
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn keeps_order_bounds_and_wakes() {
        let m = Mailbox::new(2);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(m.poll_ready(&mut cx).is_pending());
        assert!(m.deliver(Delivery::ArmTimer { after_ms: 1 }));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(m.deliver(Delivery::CancelTimer));
        assert!(!m.deliver(Delivery::CancelTimer), "full: refused");
        assert!(m.poll_ready(&mut cx).is_ready());
        let (q, kicked) = m.take();
        assert_eq!(
            q.into_iter().collect::<Vec<_>>(),
            vec![Delivery::ArmTimer { after_ms: 1 }, Delivery::CancelTimer]
        );
        assert_eq!(kicked, None);
        m.kick(CloseReason::SendQueueFull);
        m.kick(CloseReason::ServerShutdown);
        assert!(!m.deliver(Delivery::CancelTimer), "kicked: refused");
        assert_eq!(m.take().1, Some(CloseReason::SendQueueFull));
    }
}
