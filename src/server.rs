//! The tokio server shell: the only part of qnetd that does I/O.
//!
//! It binds the listening socket, runs one lightweight task per connection
//! (read → framing → session; queued output → socket; dead-peer and algorithm
//! timers), enforces the connection limit and shuts down gracefully. Each
//! connection's output goes through a bounded queue; a client whose queue
//! overflows is disconnected, never the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tracing::{debug, error, info, warn, Instrument};

use crate::config::{AddressFamily, Settings};
use crate::framing::{Frame, FrameReader};
use crate::session::{Control, Session};
use crate::table::{Outgoing, Peer, Table};

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
    start: Instant,
}

impl ServerCtx {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    ctx: Arc<ServerCtx>,
}

/// A startup failure, with what to do about it.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Binds the listening socket as configured.
    pub async fn bind(settings: Settings) -> Result<Server, StartError> {
        let listener = bind_listener(&settings).await?;
        Ok(Server {
            listener,
            ctx: Arc::new(ServerCtx {
                settings: Arc::new(settings),
                table: Arc::new(Table::new()),
                connections: AtomicUsize::new(0),
                start: Instant::now(),
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
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let max = self.ctx.settings.max_clients;
                        if max != 0 && self.ctx.connections.load(Ordering::Relaxed) >= max {
                            warn!(%addr, max_clients = max, "connection refused: the server already has max_clients (-m) connections");
                            drop(stream);
                            continue;
                        }
                        self.ctx.connections.fetch_add(1, Ordering::Relaxed);
                        let ctx = Arc::clone(&self.ctx);
                        let stop = stop_rx.clone();
                        let span = tracing::info_span!("client", %addr, cluster = tracing::field::Empty, node = tracing::field::Empty, ring = tracing::field::Empty);
                        tasks.spawn(async move {
                            serve_connection(stream, Arc::clone(&ctx), stop).await;
                            ctx.connections.fetch_sub(1, Ordering::Relaxed);
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
    }
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
                .map_err(|e| StartError(format!("cannot resolve listen address '{host}': {e}")))?;
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
        Some((addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse => StartError(format!(
            "cannot listen on {addr}: the port is already in use (is another qnetd or corosync-qnetd running? choose another port with -p)"
        )),
        Some((addr, e)) => StartError(format!("cannot listen on {addr}: {e}")),
        None => StartError("no listen address of the requested family (-4/-6) was found".into()),
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

/// Serves one connection until it closes, is dropped or the server stops.
async fn serve_connection(stream: TcpStream, ctx: Arc<ServerCtx>, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let settings = Arc::clone(&ctx.settings);
    let (tx, mut rx) = mpsc::channel(settings.max_client_send_buffers);
    let kill = Arc::new(KillSwitch::default());
    let peer = ConnHandle {
        tx,
        kill: Arc::clone(&kill),
    };
    let mut session = Session::new(Arc::clone(&settings), Arc::clone(&ctx.table), peer);
    let mut frames = FrameReader::new(settings.max_client_receive_size);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 2048];
    let mut out: Vec<u8> = Vec::new();
    let far = || TokioInstant::now() + Duration::from_secs(86400 * 365);
    let dpd_after = |ms: Option<u64>| match ms {
        Some(ms) => TokioInstant::now() + Duration::from_millis(ms),
        None => far(),
    };
    let mut dpd_deadline = dpd_after(session.dpd_ms());
    let mut algo_deadline: Option<TokioInstant> = None;
    let mut going_down = false;
    debug!("connection accepted");

    let reason: String = 'conn: loop {
        tokio::select! {
            biased;
            _ = kill.notify.notified() => {
                let r = kill.reason.lock().ok().and_then(|r| *r).unwrap_or("kicked");
                break 'conn r.to_string();
            }
            _ = stop.changed() => {
                going_down = true;
                break 'conn "server shutting down".into();
            }
            item = rx.recv() => {
                let Some(item) = item else { break 'conn "internal: queue closed".into() };
                out.clear();
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    match item {
                        Outgoing::Message(bytes) => out.extend_from_slice(&bytes),
                        Outgoing::ArmTimer { after_ms } => {
                            algo_deadline = Some(TokioInstant::now() + Duration::from_millis(after_ms));
                        }
                        Outgoing::CancelTimer => algo_deadline = None,
                    }
                    next = rx.try_recv().ok();
                }
                if !out.is_empty() {
                    tokio::select! {
                        r = wr.write_all(&out) => if let Err(e) = r {
                            break 'conn format!("write failed: {e}");
                        },
                        _ = kill.notify.notified() => {
                            let r = kill.reason.lock().ok().and_then(|r| *r).unwrap_or("kicked");
                            break 'conn r.to_string();
                        }
                        _ = sleep_until(dpd_deadline) => break 'conn "dead peer: write blocked past the dead-peer timeout".into(),
                    }
                }
            }
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break 'conn "connection closed by client".into(),
                    Ok(n) => n,
                    Err(e) => break 'conn format!("read failed: {e}"),
                };
                frames.push(&buf[..n]);
                while let Some(frame) = frames.next_frame() {
                    let control = match frame {
                        Frame::Message(raw) => {
                            // Every complete message of a known type restarts
                            // dead-peer detection, even one that fails to decode.
                            let control = session.on_message(&raw, ctx.now_ms());
                            dpd_deadline = dpd_after(session.dpd_ms());
                            control
                        }
                        Frame::Skipped { msg_type, length, reason } => {
                            session.on_skipped(msg_type, length, reason)
                        }
                    };
                    match control {
                        Control::Continue => {}
                        Control::Close(reason) => break 'conn reason,
                        Control::StartTls => {
                            break 'conn "STARTTLS is not available in this build".into();
                        }
                    }
                }
            }
            _ = sleep_until(dpd_deadline) => {
                break 'conn format!(
                    "dead peer: no message for {} ms",
                    session.dpd_ms().unwrap_or_default()
                );
            }
            _ = sleep_until(algo_deadline.unwrap_or_else(far)), if algo_deadline.is_some() => {
                algo_deadline = None;
                session.on_algo_timer(ctx.now_ms());
            }
        }
    };

    if going_down {
        debug!("disconnecting: {reason}");
    } else if session.node_id().is_some() {
        info!("client disconnected: {reason}");
    } else {
        debug!("connection closed before INIT: {reason}");
    }
    session.on_close(going_down, ctx.now_ms());
    // Best effort: deliver replies queued before the close (e.g. an error
    // that explains it), without waiting on a client that does not read.
    if !going_down {
        out.clear();
        while let Ok(item) = rx.try_recv() {
            if let Outgoing::Message(bytes) = item {
                out.extend_from_slice(&bytes);
            }
        }
        if !out.is_empty() {
            let _ = timeout(Duration::from_millis(200), wr.write_all(&out)).await;
        }
    }
    let _ = timeout(Duration::from_millis(200), wr.shutdown()).await;
}
