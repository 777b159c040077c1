//! The arbiter: the state every session shares and every reader (status,
//! admin socket, /metrics) looks at: settings, the cluster table, the vote
//! memory, connection counters, the server clock's origin, and the serving
//! lease of a high-availability group.
//!
//! Time: nothing in the core reads a clock. Drivers pass `now` (a monotonic
//! `Instant`) into every session call; the algorithms get milliseconds since
//! [`Arbiter::origin`], and decisions are dated in Unix time as
//! `unix_origin_ms + ms since origin`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::memory::VoteMemory;
use crate::table::Table;

/// "No lease": an instance outside a high-availability group may always vote.
const UNLIMITED: u64 = u64::MAX;

/// Shared state of one arbitrator (see the module documentation).
#[derive(Debug)]
pub struct Arbiter {
    pub settings: Arc<Settings>,
    pub table: Table,
    origin: Instant,
    unix_origin_ms: u64,
    /// Open client connections (initialised or not), kept by the server.
    connections: AtomicUsize,
    /// Until when (ms since origin) this instance may grant ACKs.
    serve_until_ms: AtomicU64,
}

impl Arbiter {
    /// An arbiter whose clock starts at `origin` (Unix time
    /// `unix_origin_ms`), remembering holders in `memory`.
    pub fn new(
        settings: Arc<Settings>,
        memory: Arc<VoteMemory>,
        origin: Instant,
        unix_origin_ms: u64,
    ) -> Arbiter {
        Arbiter {
            settings,
            table: Table::new(memory, unix_origin_ms),
            origin,
            unix_origin_ms,
            connections: AtomicUsize::new(0),
            serve_until_ms: AtomicU64::new(UNLIMITED),
        }
    }

    /// An arbiter for tests and tools: vote memory in RAM, clock from `origin`.
    pub fn for_tests(settings: Settings, origin: Instant) -> Arc<Arbiter> {
        Arc::new(Arbiter::new(
            Arc::new(settings),
            Arc::new(VoteMemory::in_memory()),
            origin,
            0,
        ))
    }

    /// The vote memory.
    pub fn memory(&self) -> &Arc<VoteMemory> {
        self.table.memory()
    }

    /// The instant the server clock counts from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Milliseconds from the origin to `now` (the algorithms' clock).
    pub fn ms_since_origin(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Unix time (ms) of `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_origin_ms + self.ms_since_origin(now)
    }

    /// A connection was accepted (counted for status and limits).
    pub fn connection_opened(&self) -> usize {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connection was closed.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// High availability: this instance may grant ACKs until `until` (its
    /// lease's safe end); `None` lifts the limit (no group).
    pub fn set_serve_until(&self, until: Option<Instant>) {
        let ms = until.map_or(UNLIMITED, |t| self.ms_since_origin(t));
        self.serve_until_ms.store(ms, Ordering::Release);
    }

    /// Whether an ACK may be granted at `now` (always, outside a group).
    pub fn may_grant(&self, now: Instant) -> bool {
        let until = self.serve_until_ms.load(Ordering::Acquire);
        until == UNLIMITED || self.ms_since_origin(now) < until
    }

    /// How long the serving lease still lasts at `now` (`None`: unlimited).
    pub fn serve_remaining(&self, now: Instant) -> Option<Duration> {
        let until = self.serve_until_ms.load(Ordering::Acquire);
        (until != UNLIMITED)
            .then(|| Duration::from_millis(until.saturating_sub(self.ms_since_origin(now))))
    }
}
