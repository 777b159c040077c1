//! Handshake admission: the CPU-heavy steps of TLS handshakes run on a few
//! worker threads of their own, at a lower CPU priority than the async
//! runtime that serves established connections, and the accept loop takes
//! new connections only while the server can finish their handshakes soon.
//!
//! Why: a TLS handshake costs the server about a millisecond of CPU (the
//! signature, the client certificate's verification, the key exchange), an
//! established connection a few microseconds per message. When thousands of
//! clients connect at once (an arbitrator restart, a failover), handshakes
//! run inline on the runtime queue up in front of the heartbeats of the
//! connected clients, which then miss their dead-peer interval. Here the
//! kernel's scheduler puts the runtime first (the workers run at
//! [`WORKER_NICE`]), so the connected are served ahead of the newcomers,
//! and the handshakes still get every CPU cycle the connected do not need.
//!
//! Rules:
//! - a step of a handshake that is under way ([`Priority::Finish`]) runs
//!   before the first step of a new one ([`Priority::Start`]): finishing
//!   what was started frees a client sooner than starting another;
//! - the accept loop waits ([`HandshakePool::wait_for_room`]) while
//!   [`HandshakePool::queue_limit`] steps are queued, or while
//!   [`NEWCOMERS_PER_WORKER`] connections per worker accepted within the
//!   last [`NEWCOMER_WINDOW`] are still in their handshake (from accept to
//!   TLS established or INIT done, see [`Newcomer`]); the kernel's listen
//!   backlog holds the connections not accepted yet, so the server only
//!   takes what it can finish before the clients give up, and clients do
//!   not pile up half-way (a client that shares its CPU with others, like
//!   a load generator, answers later the more handshakes it has under
//!   way). A newcomer stops counting after [`NEWCOMER_WINDOW`] even if its
//!   handshake is not done: a client that stalls (or an attacker's idle
//!   socket) holds a place for at most that long; the connected clients
//!   are never affected by the gate;
//! - a connection whose step is queued waits for the server, not for its
//!   client: its driver tells its session so
//!   (`Session::handle_server_wait`/`handle_server_resume`), which stops
//!   the client's deadlines meanwhile;
//! - a step whose connection is gone (its result receiver dropped) is not
//!   run.
//!
//! Only std threads, a mutex and a condition variable; results go back
//! through a tokio oneshot channel.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use tracing::{debug, warn};

/// Nice value of the handshake workers (the runtime's threads keep 0).
/// With 10, a runnable runtime thread gets about nine tenths of a CPU the
/// two share (Linux weights 1024 and 110), and a waking one preempts a
/// worker at once.
pub const WORKER_NICE: i32 = 10;

/// Queued steps per worker thread before the accept loop waits: a few
/// milliseconds of work, so an accepted client is never queued for long.
pub const QUEUE_PER_WORKER: usize = 32;

/// Connections per worker thread that may be in their handshake at once
/// (see [`Newcomer`]): enough to keep the workers busy while clients take
/// their round trips, few enough that every one finishes quickly.
pub const NEWCOMERS_PER_WORKER: usize = 64;

/// How long a newcomer counts against [`NEWCOMERS_PER_WORKER`] at most.
pub const NEWCOMER_WINDOW: Duration = Duration::from_secs(1);

/// Which queue a step goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// The first step of a new handshake (the ClientHello).
    Start,
    /// A later step of a handshake under way.
    Finish,
}

/// The pool is gone (the server is stopping): the step was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStopped;

impl std::fmt::Display for PoolStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handshake workers have stopped (server shutting down)")
    }
}

impl std::error::Error for PoolStopped {}

/// One queued step: runs the work unless its connection is gone.
type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queues {
    finish: VecDeque<Job>,
    start: VecDeque<Job>,
}

impl Queues {
    fn pop(&mut self) -> Option<Job> {
        self.finish.pop_front().or_else(|| self.start.pop_front())
    }
}

struct Shared {
    queues: Mutex<Queues>,
    work: Condvar,
    /// Steps queued and not yet taken by a worker.
    queued: AtomicUsize,
    /// Wakes the accept loop when the queue has room again, or a newcomer
    /// finished its handshake.
    room: Notify,
    stop: AtomicBool,
    limit: usize,
    /// Newcomers in admission order, with their state (see [`Newcomer`]).
    newcomers: Mutex<VecDeque<(Instant, Arc<AtomicU8>)>>,
    /// Newcomers still counting.
    busy: AtomicUsize,
    newcomer_limit: usize,
    /// How long a newcomer counts at most ([`NEWCOMER_WINDOW`]).
    window: Duration,
}

/// States of a newcomer's slot.
const BUSY: u8 = 0;
const DONE: u8 = 1;
const EXPIRED: u8 = 2;

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a newcomer's count (whoever comes first: its handshake, or
    /// its window).
    fn release(&self, state: &AtomicU8, to: u8) -> bool {
        if state
            .compare_exchange(BUSY, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            self.room.notify_waiters();
            true
        } else {
            false
        }
    }

    /// Expires the newcomers whose window is over; returns when the next
    /// one's ends.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut q = self.newcomers.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, state)) = q.front() {
            let end = *at + self.window;
            if state.load(Ordering::Acquire) == BUSY && end > now {
                return Some(end);
            }
            self.release(state, EXPIRED);
            q.pop_front();
        }
        None
    }
}

/// A connection in its handshake, counted by the accept loop's gate (see
/// the module documentation) until [`Newcomer::done`] or drop.
#[derive(Debug)]
pub struct Newcomer {
    shared: Arc<Shared>,
    state: Arc<AtomicU8>,
}

impl Newcomer {
    /// The handshake is over (TLS established, or INIT done).
    pub fn done(self) {}
}

impl Drop for Newcomer {
    fn drop(&mut self) {
        self.shared.release(&self.state, DONE);
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The handshake workers and their queue (see the module documentation).
pub struct HandshakePool {
    shared: Arc<Shared>,
    workers: usize,
}

impl HandshakePool {
    /// Starts `workers` threads (at least one) that run queued steps at
    /// [`WORKER_NICE`]; the accept loop waits while `queue_limit` steps are
    /// queued or `newcomer_limit` newcomers are in their handshake.
    pub fn new(workers: usize, queue_limit: usize, newcomer_limit: usize) -> HandshakePool {
        HandshakePool::with_window(workers, queue_limit, newcomer_limit, NEWCOMER_WINDOW)
    }

    /// [`HandshakePool::new`] with another newcomer window.
    fn with_window(
        workers: usize,
        queue_limit: usize,
        newcomer_limit: usize,
        window: Duration,
    ) -> HandshakePool {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            work: Condvar::new(),
            queued: AtomicUsize::new(0),
            room: Notify::new(),
            stop: AtomicBool::new(false),
            limit: queue_limit.max(1),
            newcomers: Mutex::new(VecDeque::new()),
            busy: AtomicUsize::new(0),
            newcomer_limit: newcomer_limit.max(1),
            window,
        });
        let mut started = 0;
        for i in 0..workers {
            let s = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("qnetd-tls-{i}"))
                .spawn(move || worker(s))
            {
                Ok(_) => started += 1,
                Err(e) => warn!("cannot start handshake worker {i}: {e}"),
            }
        }
        if started == 0 {
            // Without a worker no handshake could ever finish: run the
            // steps on the caller's thread instead (see `run`).
            warn!("no handshake worker could be started; TLS handshakes run on the async runtime");
        }
        HandshakePool {
            shared,
            workers: started,
        }
    }

    /// A pool sized for this machine: one worker per CPU the process may
    /// run on.
    pub fn for_this_machine() -> HandshakePool {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        HandshakePool::new(cpus, cpus * QUEUE_PER_WORKER, cpus * NEWCOMERS_PER_WORKER)
    }

    /// Queues `work`; the returned handle yields its result once a worker
    /// ran it (dropping the handle cancels a step not yet started).
    pub fn run<T, F>(&self, priority: Priority, work: F) -> StepHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(work());
            }
        });
        if self.workers == 0 {
            job();
        } else {
            let mut q = self.shared.lock();
            if self.shared.stop.load(Ordering::Relaxed) {
                drop(q);
                drop(job);
            } else {
                match priority {
                    Priority::Finish => q.finish.push_back(job),
                    Priority::Start => q.start.push_back(job),
                }
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                drop(q);
                self.shared.work.notify_one();
            }
        }
        StepHandle(rx)
    }

    /// Steps queued and not yet running.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Queued steps at which the accept loop waits.
    pub fn queue_limit(&self) -> usize {
        self.shared.limit
    }

    /// Newcomers counting against the gate now.
    pub fn newcomers(&self) -> usize {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Counts a connection just accepted until its handshake is over (or
    /// [`NEWCOMER_WINDOW`] passed).
    pub fn newcomer(&self) -> Newcomer {
        let state = Arc::new(AtomicU8::new(BUSY));
        self.shared.busy.fetch_add(1, Ordering::AcqRel);
        self.shared
            .newcomers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((Instant::now(), Arc::clone(&state)));
        Newcomer {
            shared: Arc::clone(&self.shared),
            state,
        }
    }

    /// Waits until fewer than [`HandshakePool::queue_limit`] steps are
    /// queued and the newcomers leave room (at once if so already).
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_expiry = self.shared.expire(Instant::now());
            if self.queued() < self.shared.limit && self.newcomers() < self.shared.newcomer_limit {
                return;
            }
            match next_expiry {
                Some(t) => {
                    let _ = tokio::time::timeout_at(t.into(), notified).await;
                }
                None => notified.await,
            }
        }
    }
}

/// The result of a queued step, once a worker ran it.
#[derive(Debug)]
pub struct StepHandle<T>(oneshot::Receiver<T>);

impl<T> Future for StepHandle<T> {
    type Output = Result<T, PoolStopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(|_| PoolStopped)
    }
}

impl Drop for HandshakePool {
    /// Stops the workers; queued steps are dropped (their connections see
    /// [`PoolStopped`]).
    fn drop(&mut self) {
        let dropped = {
            let mut q = self.shared.lock();
            self.shared.stop.store(true, Ordering::Relaxed);
            self.shared.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut *q)
        };
        self.shared.work.notify_all();
        drop(dropped);
    }
}

fn worker(shared: Arc<Shared>) {
    lower_priority();
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(job) = q.pop() {
                    let before = shared.queued.fetch_sub(1, Ordering::Relaxed);
                    break (job, before <= shared.limit);
                }
                q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let (job, room) = job;
        if room {
            shared.room.notify_waiters();
        }
        job();
    }
}

/// Lowers the calling thread's CPU priority to [`WORKER_NICE`] (Linux
/// applies a nice value per thread). Failing is harmless: the workers then
/// share the CPU equally with the runtime.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their arguments.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE)
        };
        if rc != 0 {
            debug!(
                "cannot lower the handshake worker's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_steps_and_returns_results() {
        let pool = HandshakePool::new(2, 8, 8);
        let a = pool.run(Priority::Start, || 1 + 1);
        let b = pool.run(Priority::Finish, || "done");
        assert_eq!(a.await, Ok(2));
        assert_eq!(b.await, Ok("done"));
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn finishing_steps_go_first_and_the_queue_paces_accepts() {
        let pool = HandshakePool::new(1, 2, 8);
        // Hold the only worker until released.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (running_tx, running_rx) = mpsc::channel::<()>();
        let blocker = pool.run(Priority::Start, move || {
            running_tx.send(()).unwrap();
            release_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        running_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = Arc::clone(&order);
        let start = pool.run(Priority::Start, move || o.lock().unwrap().push("start"));
        let o = Arc::clone(&order);
        let finish = pool.run(Priority::Finish, move || o.lock().unwrap().push("finish"));
        assert_eq!(pool.queued(), 2);
        // Two queued: the accept loop would wait.
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.wait_for_room()).await;
        assert!(waiting.is_err(), "no room while the queue is full");
        release_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), pool.wait_for_room())
            .await
            .expect("room once the worker takes a step");
        blocker.await.unwrap();
        start.await.unwrap();
        finish.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["finish", "start"]);
    }

    #[tokio::test]
    async fn newcomers_in_their_handshake_pace_accepts() {
        let pool = HandshakePool::with_window(1, 8, 2, Duration::from_secs(3600));
        let a = pool.newcomer();
        let _b = pool.newcomer();
        assert_eq!(pool.newcomers(), 2);
        let wait = tokio::time::timeout(Duration::from_millis(20), pool.wait_for_room()).await;
        assert!(wait.is_err(), "no room while two newcomers are busy");
        a.done();
        tokio::time::timeout(Duration::from_secs(30), pool.wait_for_room())
            .await
            .expect("room once one finished");
        assert_eq!(pool.newcomers(), 1);
    }

    #[tokio::test]
    async fn a_stalled_newcomer_counts_for_its_window_only() {
        let pool = HandshakePool::with_window(1, 8, 2, Duration::from_millis(50));
        let a = pool.newcomer();
        let _b = pool.newcomer();
        tokio::time::timeout(Duration::from_secs(30), pool.wait_for_room())
            .await
            .expect("room once the window of the stalled ones is over");
        assert_eq!(pool.newcomers(), 0, "both expired");
        drop(a);
        assert_eq!(
            pool.newcomers(),
            0,
            "an expired newcomer is not counted twice"
        );
    }

    #[tokio::test]
    async fn a_step_whose_connection_is_gone_is_not_run() {
        let pool = HandshakePool::new(1, 8, 8);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (running_tx, running_rx) = mpsc::channel::<()>();
        let blocker = pool.run(Priority::Start, move || {
            running_tx.send(()).unwrap();
            release_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        running_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        drop(pool.run(Priority::Start, move || r.store(true, Ordering::Relaxed)));
        let after = pool.run(Priority::Start, || ());
        release_tx.send(()).unwrap();
        blocker.await.unwrap();
        after.await.unwrap();
        assert!(!ran.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn queued_steps_end_when_the_pool_stops() {
        let pool = HandshakePool::new(1, 8, 8);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (running_tx, running_rx) = mpsc::channel::<()>();
        let blocker = pool.run(Priority::Start, move || {
            running_tx.send(()).unwrap();
            release_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        running_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let queued = pool.run(Priority::Start, || ());
        drop(pool);
        assert_eq!(queued.await, Err(PoolStopped));
        release_tx.send(()).unwrap();
        blocker.await.unwrap();
    }
}
