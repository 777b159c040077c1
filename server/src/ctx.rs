//! What the server's tasks share: the core's [`Arbiter`] (table, vote
//! memory, counters, clock origin), the TLS context, the facts status
//! needs (port, certificates), and the connection admission limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use qnetd_core::arbiter::Arbiter;
use qnetd_core::status::{self, ServerFacts, ServerStatus};
use qnetd_core::telemetry;
use tracing::warn;

use crate::ha::shared::HaShared;
use crate::handshake::HandshakePool;
use crate::tls::TlsContext;

/// State shared by the server's tasks.
pub struct ServerCtx {
    pub arbiter: Arc<Arbiter>,
    /// TLS configuration; `None` with `-s off`.
    pub tls: Option<TlsContext>,
    /// The port the client listener is bound to.
    pub port: u16,
    /// Where /metrics is served, if on.
    pub metrics_addr: Option<SocketAddr>,
    /// The connection limit in force: `-m`, capped by the open-files limit.
    pub effective_max_clients: usize,
    /// Open connections per source address (`max_clients_per_address`).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Connections refused by a limit, for rate-limited logging.
    refused: RefusalLog,
    /// Connections opened and closed and TLS handshakes finished since
    /// memory was last trimmed: each leaves freed memory (message buffers,
    /// handshake state) that the allocator would keep.
    pub(crate) churn_since_trim: AtomicUsize,
    /// Why the decision snapshot could not be used at start.
    pub state_problem: Option<String>,
    /// The TLS handshake workers and the accept loop's pacing.
    pub handshakes: HandshakePool,
    /// High availability: the group this instance belongs to, if any.
    pub ha: Option<Arc<HaShared>>,
    /// Why the server stopped on its own (exit code and message), if it did.
    fatal: Mutex<Option<(u8, String)>>,
}

impl ServerCtx {
    pub fn new(
        arbiter: Arc<Arbiter>,
        tls: Option<TlsContext>,
        port: u16,
        metrics_addr: Option<SocketAddr>,
        effective_max_clients: usize,
    ) -> ServerCtx {
        ServerCtx {
            arbiter,
            tls,
            port,
            metrics_addr,
            effective_max_clients,
            per_address: Mutex::new(HashMap::new()),
            refused: RefusalLog::default(),
            churn_since_trim: AtomicUsize::new(0),
            state_problem: None,
            handshakes: HandshakePool::for_this_machine(),
            ha: None,
            fatal: Mutex::new(None),
        }
    }

    /// The same context as a member of a high-availability group.
    pub fn with_ha(mut self, ha: Arc<HaShared>) -> ServerCtx {
        self.ha = Some(ha);
        self
    }

    /// Records why the server stops on its own (the exit code to use).
    pub fn set_fatal(&self, code: u8, message: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert((code, message));
    }

    /// Why the server stopped on its own, if it did.
    pub fn fatal(&self) -> Option<(u8, String)> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The facts only the server knows, for the status model.
    pub fn facts(&self) -> ServerFacts {
        ServerFacts {
            port: self.port,
            certificates: self
                .tls
                .as_ref()
                .map(|t| t.certificates())
                .unwrap_or_default(),
            refused_max_clients: self.refused.max_clients.load(Ordering::Relaxed),
            refused_per_address: self.refused.per_address.load(Ordering::Relaxed),
            state_problem: self.state_problem.clone(),
            ha: self.ha.as_ref().map(|h| h.status(Instant::now())),
        }
    }

    /// A status snapshot taken now.
    pub fn status(&self) -> ServerStatus {
        status::snapshot(&self.arbiter, &self.facts(), Instant::now())
    }

    /// Milliseconds since the server started (the algorithms' clock).
    pub fn now_ms(&self) -> u64 {
        self.arbiter.ms_since_origin(Instant::now())
    }

    /// Admits a connection from `addr` if the total and per-address limits
    /// allow it; otherwise logs why (rate-limited) and returns `None`.
    pub(crate) fn admit(self: &Arc<Self>, addr: SocketAddr) -> Option<Admitted> {
        let max = self.effective_max_clients;
        if self.arbiter.connections() >= max {
            self.refused
                .refuse(self.now_ms(), addr, Refusal::MaxClients(max));
            return None;
        }
        // IPv4-mapped IPv6 addresses count as their IPv4 address.
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let per = self.arbiter.settings.max_clients_per_address;
        {
            let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if per != 0 && *n >= per {
                drop(map);
                self.refused
                    .refuse(self.now_ms(), addr, Refusal::PerAddress(ip, per));
                return None;
            }
            *n += 1;
        }
        self.arbiter.connection_opened();
        Some(Admitted {
            ctx: Arc::clone(self),
            ip,
        })
    }
}

/// A connection admitted by the limits; releases its slots when dropped.
pub(crate) struct Admitted {
    ctx: Arc<ServerCtx>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.ctx.arbiter.connection_closed();
        self.ctx.churn_since_trim.fetch_add(1, Ordering::Relaxed);
        let mut map = self
            .ctx
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    MaxClients(usize),
    PerAddress(IpAddr, usize),
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::MaxClients(_) => "max_clients",
            Refusal::PerAddress(..) => "per_address",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MaxClients(max) => write!(
                f,
                "the server already has {max} connections (max_clients, -m, capped by the open-files limit)"
            ),
            Refusal::PerAddress(ip, per) => write!(
                f,
                "{ip} already has {per} connections (max_clients_per_address; raise it if many nodes share this address)"
            ),
        }
    }
}

/// Logs refused connections at most once a second, with a count of those
/// not logged, so a connection flood cannot flood the log too.
#[derive(Debug, Default)]
struct RefusalLog {
    last_logged_ms: AtomicU64,
    suppressed: AtomicU64,
    max_clients: AtomicU64,
    per_address: AtomicU64,
}

impl RefusalLog {
    fn refuse(&self, now_ms: u64, addr: SocketAddr, why: Refusal) {
        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => why.label()).increment(1);
        match why {
            Refusal::MaxClients(_) => &self.max_clients,
            Refusal::PerAddress(..) => &self.per_address,
        }
        .fetch_add(1, Ordering::Relaxed);
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < 1000 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last_logged_ms.store(now_ms.max(1), Ordering::Relaxed);
        let more = self.suppressed.swap(0, Ordering::Relaxed);
        warn!(%addr, refused_since_last_line = more, "connection refused: {why}");
    }
}
