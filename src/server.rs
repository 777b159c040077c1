//! The tokio server shell: the only part of qnetd that does I/O.
//!
//! It binds the listening socket, runs one lightweight task per connection
//! (read → framing → session; queued output → socket; dead-peer and algorithm
//! timers), enforces the connection limit and shuts down gracefully. Each
//! connection's output goes through a bounded queue; a client whose queue
//! overflows is disconnected, never the server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tracing::{debug, error, info, warn, Instrument};

use crate::config::{AddressFamily, Settings, TlsMode};
use crate::framing::{Frame, FrameReader};
use crate::session::{Control, Session, TlsState};
use crate::table::{Outgoing, Peer, Table};
use crate::tls::{TlsContext, TlsStream};

/// How a connection asks to be closed from outside its task.
#[derive(Debug, Default)]
struct KillSwitch {
    killed: AtomicBool,
    reason: Mutex<Option<&'static str>>,
    notify: Notify,
}

/// The server's handle on one connection (see [`Peer`]).
#[derive(Clone, Debug)]
pub struct ConnHandle {
    tx: mpsc::Sender<Outgoing>,
    kill: Arc<KillSwitch>,
}

impl Peer for ConnHandle {
    fn send(&self, item: Outgoing) -> bool {
        !self.kill.killed.load(Ordering::Relaxed) && self.tx.try_send(item).is_ok()
    }

    fn kick(&self, reason: &'static str) {
        if !self.kill.killed.swap(true, Ordering::Relaxed) {
            if let Ok(mut r) = self.kill.reason.lock() {
                *r = Some(reason);
            }
            self.kill.notify.notify_one();
        }
    }
}

/// State shared by all connections.
pub struct ServerCtx {
    pub settings: Arc<Settings>,
    pub table: Arc<Table<ConnHandle>>,
    /// Open TCP connections (initialised or not).
    pub connections: AtomicUsize,
    /// Open connections per source address (for `max_clients_per_address`).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// The connection limit in force: `-m`, capped by the open-files limit.
    pub effective_max_clients: usize,
    /// Connections refused by a limit, for rate-limited logging.
    refused: RefusalLog,
    /// Connections closed since memory was last trimmed.
    closed_since_trim: AtomicUsize,
    /// TLS configuration; `None` with `-s off`.
    pub tls: Option<TlsContext>,
    /// The port the server listens on (the configured one, or the one the
    /// system chose for port 0).
    pub port: u16,
    /// Where /metrics is served, if on.
    pub metrics_addr: Option<SocketAddr>,
    start: Instant,
    shutdown: Notify,
}

impl ServerCtx {
    /// Milliseconds since the server started (the clock of the algorithms).
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Asks the server to stop (admin `shutdown`).
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
    }
}

/// Logs refused connections at most once a second, with a count of those
/// not logged, so a connection flood cannot flood the log too.
#[derive(Debug, Default)]
struct RefusalLog {
    last_logged_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RefusalLog {
    fn refuse(&self, now_ms: u64, addr: SocketAddr, why: &str) {
        metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "reason" => if why.contains("per_address") { "per_address" } else { "max_clients" }).increment(1);
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

/// Descriptors kept free for the listener, admin and metrics sockets, the
/// state file, logs and certificate reloads.
const FD_RESERVE: u64 = 64;

/// The connection limit: `-m` (0 = none) capped so that accepting never
/// runs the process out of descriptors.
fn effective_max_clients(configured: usize, nofile: u64) -> usize {
    let by_fds = usize::try_from(nofile.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    match configured {
        0 => by_fds,
        m => m.min(by_fds),
    }
}

/// A connection admitted by the limits; releases its slots when dropped.
struct Admitted {
    ctx: Arc<ServerCtx>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.ctx.connections.fetch_sub(1, Ordering::Relaxed);
        self.ctx.closed_since_trim.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.ctx.per_address.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl ServerCtx {
    /// Admits a connection from `addr` if the total and per-address limits
    /// allow it; otherwise logs why (rate-limited) and returns `None`.
    fn admit(self: &Arc<Self>, addr: SocketAddr) -> Option<Admitted> {
        let max = self.effective_max_clients;
        if self.connections.load(Ordering::Relaxed) >= max {
            self.refused.refuse(
                self.now_ms(),
                addr,
                &format!("the server already has {max} connections (max_clients, -m, capped by the open-files limit)"),
            );
            return None;
        }
        // IPv4-mapped IPv6 addresses count as their IPv4 address.
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let per = self.settings.max_clients_per_address;
        {
            let Ok(mut map) = self.per_address.lock() else {
                return None;
            };
            let n = map.entry(ip).or_insert(0);
            if per != 0 && *n >= per {
                drop(map);
                self.refused.refuse(
                    self.now_ms(),
                    addr,
                    &format!("{ip} already has {per} connections (max_clients_per_address; raise it if many nodes share this address)"),
                );
                return None;
            }
            *n += 1;
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            ctx: Arc::clone(self),
            ip,
        })
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    admin: Option<tokio::net::UnixListener>,
    metrics: Option<TcpListener>,
    ctx: Arc<ServerCtx>,
}

/// What failed at start-up; each has its own process exit code so that a
/// supervisor (and an operator reading `systemctl status`) can tell them
/// apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// The client port cannot be bound (in use, bad address): exit 4.
    Listen,
    /// The TLS CA, certificate or key cannot be read or created: exit 5.
    Tls,
    /// The admin socket or the metrics listener cannot be bound: exit 6.
    Admin,
}

impl StartFailure {
    /// The process exit code for this failure.
    pub fn exit_code(self) -> u8 {
        match self {
            StartFailure::Listen => 4,
            StartFailure::Tls => 5,
            StartFailure::Admin => 6,
        }
    }
}

/// A startup failure, with what to do about it.
#[derive(Debug)]
pub struct StartError(pub StartFailure, pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Binds the listening socket as configured.
    pub async fn bind(settings: Settings) -> Result<Server, StartError> {
        let tls = match settings.tls {
            TlsMode::Off => None,
            TlsMode::On | TlsMode::Required => Some(
                TlsContext::load_or_init(&settings.tls_dir, settings.client_cert_required)
                    .map_err(|e| StartError(StartFailure::Tls, e.to_string()))?,
            ),
        };
        let listener = bind_listener(&settings).await?;
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(settings.port);
        let admin = if settings.admin_socket {
            Some(
                crate::ipc::bind(
                    &settings.local_socket_file,
                    settings.local_socket_umask,
                    settings.local_socket_gid,
                )
                .await
                .map_err(|e| StartError(StartFailure::Admin, e))?,
            )
        } else {
            None
        };
        let metrics = match settings.metrics_listen {
            Some(addr) => {
                crate::metrics::install();
                Some(
                    crate::metrics::bind(addr)
                        .await
                        .map_err(|e| StartError(StartFailure::Admin, e))?,
                )
            }
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        let effective_max_clients =
            effective_max_clients(
                settings.max_clients,
                qnetd_core::sys::raise_nofile_limit(None),
            );
        let memory = Arc::new(crate::state::VoteMemory::open(
            settings.state_dir.as_deref(),
            Duration::from_secs(u64::from(settings.state_max_age)),
            u64::from(settings.restart_vote_hold),
        ));
        Ok(Server {
            listener,
            admin,
            metrics,
            ctx: Arc::new(ServerCtx {
                settings: Arc::new(settings),
                table: Arc::new(Table::with_memory(memory)),
                connections: AtomicUsize::new(0),
                per_address: Mutex::new(HashMap::new()),
                effective_max_clients,
                refused: RefusalLog::default(),
                closed_since_trim: AtomicUsize::new(0),
                tls,
                port,
                metrics_addr,
                start: Instant::now(),
                shutdown: Notify::new(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn ctx(&self) -> Arc<ServerCtx> {
        Arc::clone(&self.ctx)
    }

    /// Serves until `shutdown` completes, then disconnects every client
    /// (without re-deciding votes, as the reference does on shutdown) and
    /// waits up to 5 s for the connection tasks to finish.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let admin_task = self
            .admin
            .take()
            .map(|l| tokio::spawn(crate::ipc::serve(l, Arc::clone(&self.ctx))));
        let metrics_task = self
            .metrics
            .take()
            .map(|l| tokio::spawn(crate::metrics::serve(l, Arc::clone(&self.ctx))));
        let trim_task = tokio::spawn(trim_memory(Arc::clone(&self.ctx)));
        let state_task = self
            .ctx
            .table
            .memory()
            .is_persistent()
            .then(|| tokio::spawn(save_snapshots(Arc::clone(&self.ctx))));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.ctx.shutdown.notified() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Some(admitted) = self.ctx.admit(addr) else {
                            drop(stream);
                            continue;
                        };
                        metrics::counter!(crate::metrics::CONNECTIONS).increment(1);
                        let ctx = Arc::clone(&self.ctx);
                        let stop = stop_rx.clone();
                        let span = tracing::info_span!("client", %addr, cluster = tracing::field::Empty, node = tracing::field::Empty);
                        tasks.spawn(async move {
                            serve_connection(stream, ctx, stop).await;
                            drop(admitted);
                        }.instrument(span));
                        // Reap finished tasks so the set does not grow.
                        while tasks.try_join_next().is_some() {}
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        error!("accept failed: {e}; retrying in 100 ms (check the open-files limit)");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        info!(
            clients = self.ctx.connections.load(Ordering::Relaxed),
            "shutting down: disconnecting all clients"
        );
        let _ = stop_tx.send(true);
        let drained = timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("some connections did not close within 5 s; aborting them");
            tasks.abort_all();
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        trim_task.abort();
        if let Some(t) = state_task {
            t.abort();
            save_snapshot_now(&self.ctx, true).await;
        }
        if let Some(t) = admin_task {
            t.abort();
            if self.ctx.settings.admin_socket {
                let _ = std::fs::remove_file(&self.ctx.settings.local_socket_file);
            }
        }
    }
}

/// Gives memory freed by closed connections back to the system: after a
/// flood of connections ends, the allocator would otherwise keep their
/// buffers and the RSS would stay at its peak. Checks every 5 s; trims when
/// at least 256 connections closed since the last check.
async fn trim_memory(ctx: Arc<ServerCtx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ctx.closed_since_trim.swap(0, Ordering::Relaxed) >= 256 {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free heap memory.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}

/// Saves the decision snapshot shortly after a vote holder changes (changes
/// within 100 ms are written together) and once a minute, off the async
/// workers (it fsyncs).
async fn save_snapshots(ctx: Arc<ServerCtx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = ctx.table.memory().changed() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                false
            }
            _ = tick.tick() => true,
        };
        save_snapshot_now(&ctx, force).await;
    }
}

async fn save_snapshot_now(ctx: &Arc<ServerCtx>, force: bool) {
    let present: Vec<Vec<u8>> = ctx.table.snapshot().into_iter().map(|(k, _)| k).collect();
    let memory = Arc::clone(ctx.table.memory());
    let _ = tokio::task::spawn_blocking(move || memory.save(&present, force)).await;
}

async fn bind_listener(s: &Settings) -> Result<TcpListener, StartError> {
    let candidates: Vec<SocketAddr> = match &s.listen_address {
        None => match s.address_family {
            AddressFamily::Ipv4 => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.port)],
            // Like the reference: the IPv6 wildcard also takes IPv4.
            AddressFamily::Ipv6 | AddressFamily::Any => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), s.port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.port),
            ],
        },
        Some(host) => {
            let resolved = tokio::net::lookup_host((host.as_str(), s.port))
                .await
                .map_err(|e| {
                    StartError(
                        StartFailure::Listen,
                        format!("cannot resolve listen address '{host}': {e}"),
                    )
                })?;
            resolved
                .filter(|a| match s.address_family {
                    AddressFamily::Any => true,
                    AddressFamily::Ipv4 => a.is_ipv4(),
                    AddressFamily::Ipv6 => a.is_ipv6(),
                })
                .collect()
        }
    };
    let mut last_err = None;
    for addr in &candidates {
        match bind_one(*addr, s) {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some((addr, e)),
        }
    }
    Err(match last_err {
        Some((addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse => StartError(StartFailure::Listen, format!(
            "cannot listen on {addr}: the port is already in use (is another qnetd or corosync-qnetd running? choose another port with -p)"
        )),
        Some((addr, e)) => StartError(StartFailure::Listen, format!("cannot listen on {addr}: {e}")),
        None => StartError(StartFailure::Listen, "no listen address of the requested family (-4/-6) was found".into()),
    })
}

fn bind_one(addr: SocketAddr, s: &Settings) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(s.listen_backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Why [`Connection::run`] returned.
enum Exit<S> {
    /// The connection is over; the reason goes to the log.
    Closed {
        reason: String,
        going_down: bool,
        /// The server closed it (refusal, dead peer, overflow), as opposed
        /// to the client closing or the server stopping.
        abnormal: bool,
    },
    /// The client sent STARTTLS: queued output was written; here is the
    /// plain stream back for the handshake.
    StartTls(S),
}

/// Per-connection state that survives the switch to TLS.
struct Connection {
    ctx: Arc<ServerCtx>,
    session: Session<ConnHandle>,
    frames: FrameReader,
    rx: mpsc::Receiver<Outgoing>,
    kill: Arc<KillSwitch>,
    stop: watch::Receiver<bool>,
    dpd_deadline: TokioInstant,
    algo_deadline: Option<TokioInstant>,
    /// A VOTE_INFO(NACK) not yet acknowledged: its seq and the deadline.
    nack_pending: Option<(u32, TokioInstant)>,
    /// Until INIT succeeds: when the connection is closed for not having
    /// completed its handshake (`init_timeout`).
    init_deadline: Option<TokioInstant>,
    out: Vec<u8>,
}

fn far_future() -> TokioInstant {
    TokioInstant::now() + Duration::from_secs(86400 * 365)
}

impl Connection {
    fn reset_dpd(&mut self) {
        self.dpd_deadline = match self.session.dpd_ms() {
            Some(ms) => TokioInstant::now() + Duration::from_millis(ms),
            None => far_future(),
        };
    }

    /// Clears the pending NACK once the client acknowledged it (or a later
    /// VOTE_INFO).
    fn check_nack_acknowledged(&mut self) {
        if let (Some((pending, _)), Some(reply)) =
            (self.nack_pending, self.session.last_vote_info_reply())
        {
            // Per-client seqs grow; a reply to this or a later VOTE_INFO counts.
            if reply.wrapping_sub(pending) as i32 >= 0 {
                self.nack_pending = None;
            }
        }
    }

    fn kill_reason(&self) -> String {
        self.kill
            .reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or("kicked")
            .to_string()
    }

    /// Moves queued items into `out` (messages) or the timer state.
    fn take_queued(&mut self, first: Option<Outgoing>) {
        self.out.clear();
        let mut next = first.or_else(|| self.rx.try_recv().ok());
        while let Some(item) = next.take() {
            match item {
                Outgoing::Message(bytes) => self.out.extend_from_slice(&bytes),
                Outgoing::VoteInfo { bytes, seq, nack } => {
                    self.out.extend_from_slice(&bytes);
                    if nack {
                        let within = Duration::from_millis(self.session.nack_ack_timeout_ms());
                        self.nack_pending = Some((seq, TokioInstant::now() + within));
                    }
                }
                Outgoing::ArmTimer { after_ms } => {
                    self.algo_deadline =
                        Some(TokioInstant::now() + Duration::from_millis(after_ms));
                }
                Outgoing::CancelTimer => self.algo_deadline = None,
            }
            next = self.rx.try_recv().ok();
        }
    }

    /// Serves the connection over `stream` until it closes or asks for TLS.
    async fn run<S>(&mut self, stream: S) -> Exit<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = vec![0u8; 2048];
        let exit = 'conn: loop {
            tokio::select! {
                biased;
                _ = self.kill.notify.notified() => {
                    break 'conn Exit::Closed { reason: self.kill_reason(), going_down: false, abnormal: true };
                }
                _ = self.stop.changed() => {
                    break 'conn Exit::Closed { reason: "server shutting down".into(), going_down: true, abnormal: false };
                }
                item = self.rx.recv() => {
                    let Some(item) = item else {
                        break 'conn Exit::Closed { reason: "internal: queue closed".into(), going_down: false, abnormal: true };
                    };
                    self.take_queued(Some(item));
                    if !self.out.is_empty() {
                        // Biased, write first: after the task was starved
                        // past the dead-peer deadline, a write that can
                        // complete must not lose to the expired timer (the
                        // client's heartbeat may be waiting unread; it is
                        // read next). Found by `qnetd bench`; see
                        // tests/dpd_starved.rs.
                        tokio::select! {
                            biased;
                            r = write_flush(&mut wr, &self.out) => if let Err(e) = r {
                                break 'conn Exit::Closed { reason: format!("write failed: {e}"), going_down: false, abnormal: true };
                            },
                            _ = self.kill.notify.notified() => {
                                break 'conn Exit::Closed { reason: self.kill_reason(), going_down: false, abnormal: true };
                            }
                            _ = sleep_until(self.dpd_deadline) => break 'conn Exit::Closed {
                                reason: "dead peer: write blocked past the dead-peer timeout".into(),
                                going_down: false,
                                abnormal: true,
                            },
                        }
                    }
                }
                read = rd.read(&mut buf) => {
                    let n = match read {
                        Ok(0) => break 'conn Exit::Closed { reason: "connection closed by client".into(), going_down: false, abnormal: false },
                        Ok(n) => n,
                        Err(e) => break 'conn Exit::Closed { reason: format!("read failed: {e}"), going_down: false, abnormal: false },
                    };
                    // A full buffer means more is waiting: after handling
                    // it, let other connections run first, so a client that
                    // streams data cannot hold a worker thread while a
                    // quiet client's heartbeat waits (cooperative fairness).
                    let more_waiting = n == buf.len();
                    self.frames.push(&buf[..n]);
                    while let Some(frame) = self.frames.next_frame() {
                        let control = match frame {
                            Frame::Message(raw) => {
                                // Every complete message of a known type restarts
                                // dead-peer detection, even one that fails to decode.
                                let control = self.session.on_message(&raw, self.ctx.now_ms());
                                self.reset_dpd();
                                self.check_nack_acknowledged();
                                if self.init_deadline.is_some() && self.session.node_id().is_some() {
                                    self.init_deadline = None;
                                }
                                control
                            }
                            Frame::Skipped { msg_type, length, reason } => {
                                self.session.on_skipped(msg_type, length, reason)
                            }
                        };
                        match control {
                            Control::Continue => {}
                            Control::Close(reason) => break 'conn Exit::Closed { reason, going_down: false, abnormal: true },
                            Control::StartTls => {
                                // Everything queued so far goes out in plain
                                // text before the handshake starts.
                                self.take_queued(None);
                                if let Err(e) = write_flush(&mut wr, &self.out).await {
                                    break 'conn Exit::Closed { reason: format!("write failed: {e}"), going_down: false, abnormal: true };
                                }
                                return Exit::StartTls(rd.unsplit(wr));
                            }
                        }
                    }
                    if more_waiting {
                        tokio::task::yield_now().await;
                    }
                }
                _ = sleep_until(self.dpd_deadline) => {
                    break 'conn Exit::Closed {
                        reason: format!("dead peer: no message for {} ms", self.session.dpd_ms().unwrap_or_default()),
                        going_down: false,
                        abnormal: true,
                    };
                }
                _ = sleep_until(self.nack_pending.map_or_else(far_future, |(_, d)| d)), if self.nack_pending.is_some() => {
                    let seq = self.nack_pending.map_or(0, |(s, _)| s);
                    break 'conn Exit::Closed {
                        reason: format!(
                            "NACK not acknowledged: no VOTE_INFO_REPLY for seq {seq} within {} ms; disconnecting so the vote can move (a 3.0.x client falls back to NACK when it loses the server)",
                            self.session.nack_ack_timeout_ms()
                        ),
                        going_down: false,
                        abnormal: true,
                    };
                }
                _ = sleep_until(self.init_deadline.unwrap_or_else(far_future)), if self.init_deadline.is_some() => {
                    break 'conn Exit::Closed {
                        reason: format!(
                            "handshake deadline: INIT not completed within {} ms of connecting (init_timeout)",
                            self.ctx.settings.init_timeout
                        ),
                        going_down: false,
                        abnormal: true,
                    };
                }
                _ = sleep_until(self.algo_deadline.unwrap_or_else(far_future)), if self.algo_deadline.is_some() => {
                    self.algo_deadline = None;
                    self.session.on_algo_timer(self.ctx.now_ms());
                }
            }
        };
        if let Exit::Closed {
            going_down: false, ..
        } = exit
        {
            // Best effort: deliver replies queued before the close (e.g. an
            // error that explains it), without waiting on a client that
            // does not read.
            self.take_queued(None);
            if !self.out.is_empty() {
                let _ = timeout(Duration::from_millis(200), write_flush(&mut wr, &self.out)).await;
            }
        }
        let _ = timeout(Duration::from_millis(200), wr.shutdown()).await;
        exit
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}

/// Serves one connection until it closes, is dropped or the server stops.
async fn serve_connection(stream: TcpStream, ctx: Arc<ServerCtx>, stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let settings = Arc::clone(&ctx.settings);
    let (tx, rx) = mpsc::channel(settings.max_client_send_buffers);
    let kill = Arc::new(KillSwitch::default());
    let peer = ConnHandle {
        tx,
        kill: Arc::clone(&kill),
    };
    let addr = match stream.peer_addr() {
        Ok(a) => format!("{}:{}", a.ip(), a.port()),
        Err(_) => "?".into(),
    };
    let session = Session::new(Arc::clone(&settings), Arc::clone(&ctx.table), peer, addr);
    let mut conn = Connection {
        ctx: Arc::clone(&ctx),
        session,
        frames: FrameReader::new(settings.max_client_receive_size),
        rx,
        kill,
        stop,
        dpd_deadline: far_future(),
        algo_deadline: None,
        nack_pending: None,
        init_deadline: Some(
            TokioInstant::now() + Duration::from_millis(u64::from(settings.init_timeout)),
        ),
        out: Vec::new(),
    };
    conn.reset_dpd();
    debug!("connection accepted");

    let (reason, going_down, abnormal) = match conn.run(stream).await {
        Exit::Closed {
            reason,
            going_down,
            abnormal,
        } => (reason, going_down, abnormal),
        Exit::StartTls(stream) => match start_tls(&mut conn, stream).await {
            Err(reason) => (reason, false, true),
            Ok(tls) => match conn.run(tls).await {
                Exit::Closed {
                    reason,
                    going_down,
                    abnormal,
                } => (reason, going_down, abnormal),
                Exit::StartTls(_) => ("STARTTLS inside TLS".into(), false, true),
            },
        },
    };

    metrics::counter!(crate::metrics::DISCONNECTS, "reason" => disconnect_kind(&reason))
        .increment(1);
    let joined = conn.session.node_id().is_some();
    match (going_down, abnormal, joined) {
        (true, _, _) => debug!("disconnecting: {reason}"),
        (false, true, _) => warn!("disconnecting client: {reason}"),
        (false, false, true) => info!("client disconnected: {reason}"),
        (false, false, false) => debug!("connection closed before INIT: {reason}"),
    }
    conn.session.on_close(going_down, ctx.now_ms());
}

/// A bounded label for a disconnect reason (metrics).
fn disconnect_kind(reason: &str) -> &'static str {
    if reason.starts_with("connection closed by client") {
        "client_closed"
    } else if reason.starts_with("dead peer") {
        "dead_peer"
    } else if reason.starts_with("NACK not acknowledged") {
        "nack_not_acknowledged"
    } else if reason.starts_with("send queue full") {
        "send_queue_full"
    } else if reason.starts_with("server shutting down") {
        "server_shutdown"
    } else if reason.starts_with("TLS handshake") {
        "tls_failed"
    } else if reason.starts_with("client certificate")
        || reason.starts_with("TLS client presented no certificate")
    {
        "certificate_refused"
    } else if reason.starts_with("handshake deadline") {
        "init_timeout"
    } else if reason.starts_with("message of") {
        "message_too_long"
    } else if reason.starts_with("read failed") || reason.starts_with("write failed") {
        "io_error"
    } else {
        "refused"
    }
}

/// A bounded label for a TLS handshake failure (metrics).
fn tls_failure_kind(reason: &str) -> &'static str {
    if reason.contains("not issued by this server's CA") {
        "unknown_ca"
    } else if reason.contains("expired") {
        "expired"
    } else if reason.contains("sent no certificate") {
        "no_certificate"
    } else if reason.contains("not a TLS handshake") {
        "not_tls"
    } else if reason.contains("no common TLS version") {
        "no_common_version"
    } else if reason.contains("closed the connection") {
        "client_closed"
    } else {
        "other"
    }
}

/// Runs the TLS server handshake on the socket, feeding it the bytes
/// already read after STARTTLS. Returns the reason on failure.
async fn start_tls(
    conn: &mut Connection,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let Some(tls) = conn.ctx.tls.as_ref() else {
        return Err("client asked for STARTTLS but TLS is off on this server (-s off)".into());
    };
    let prefix = conn.frames.take_buffered();
    // The handshake gets its own limit, but never outlives the INIT deadline.
    let mut limit = Duration::from_millis(u64::from(conn.ctx.settings.tls_handshake_timeout));
    if let Some(d) = conn.init_deadline {
        limit = limit.min(d.saturating_duration_since(TokioInstant::now()));
    }
    let (stream, names) = match timeout(limit, tls.accept(prefix, stream)).await {
        Err(_) => {
            metrics::counter!(crate::metrics::TLS_HANDSHAKES, "result" => "failed", "reason" => "timeout").increment(1);
            return Err(format!(
                "TLS handshake not completed within {} ms",
                limit.as_millis()
            ));
        }
        Ok(Err(reason)) => {
            metrics::counter!(crate::metrics::TLS_HANDSHAKES, "result" => "failed", "reason" => tls_failure_kind(&reason)).increment(1);
            return Err(format!("TLS handshake failed: {reason}"));
        }
        Ok(Ok(s)) => s,
    };
    metrics::counter!(crate::metrics::TLS_HANDSHAKES, "result" => "ok", "reason" => "")
        .increment(1);
    debug!(client_certificate = ?names, "TLS established");
    conn.session.set_tls(TlsState {
        started: true,
        peer_names: names,
    });
    conn.reset_dpd();
    Ok(stream)
}
