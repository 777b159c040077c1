//! The client port: binding it as configured, and the accept loop that
//! admits connections within the limits and spawns one driver task
//! ([`crate::conn`]) per connection, until the shutdown token fires; then
//! every connection is closed cleanly (without re-deciding votes, as the
//! reference on shutdown) and waited for, at most 5 s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use qnetd_core::config::{AddressFamily, Settings};
use qnetd_core::telemetry;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tracing::{error, info, warn};

use crate::ctx::ServerCtx;
use crate::error::StartError;
use crate::shutdown::Shutdown;

/// Descriptors kept free for the listener, admin and metrics sockets, the
/// state file, logs and certificate reloads.
const FD_RESERVE: u64 = 64;

/// The connection limit: `-m` (0 = none) capped so that accepting never
/// runs the process out of descriptors (`nofile`: the open-files limit).
pub fn effective_max_clients(configured: usize, nofile: u64) -> usize {
    let by_fds = usize::try_from(nofile.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    match configured {
        0 => by_fds,
        m => m.min(by_fds),
    }
}

/// Binds the client port as configured (`-l`, `-p`, `-4`/`-6`, backlog).
pub async fn bind(s: &Settings) -> Result<TcpListener, StartError> {
    bind_opts(s, false).await
}

/// [`bind`]; with `freebind`, the address need not exist yet (IP_FREEBIND:
/// a high-availability leader listens on its floating address before it
/// adds it).
pub async fn bind_opts(s: &Settings, freebind: bool) -> Result<TcpListener, StartError> {
    let candidates: Vec<SocketAddr> = match &s.listen_address {
        None => match s.address_family {
            AddressFamily::Ipv4 => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.port)],
            // Like the reference: the IPv6 wildcard also takes IPv4.
            AddressFamily::Ipv6 | AddressFamily::Any => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), s.port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.port),
            ],
        },
        Some(host) => tokio::net::lookup_host((host.as_str(), s.port))
            .await
            .map_err(|error| StartError::Resolve {
                host: host.clone(),
                error,
            })?
            .filter(|a| match s.address_family {
                AddressFamily::Any => true,
                AddressFamily::Ipv4 => a.is_ipv4(),
                AddressFamily::Ipv6 => a.is_ipv6(),
            })
            .collect(),
    };
    let mut last_err = None;
    for addr in candidates {
        match bind_one(addr, s.listen_backlog, freebind) {
            Ok(l) => return Ok(l),
            Err(error) => last_err = Some(StartError::Listen { addr, error }),
        }
    }
    Err(last_err.unwrap_or(StartError::NoAddress))
}

fn bind_one(addr: SocketAddr, backlog: u32, freebind: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if freebind {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_FREEBIND,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Accepts clients on `listener` until `shutdown` fires, then closes every
/// connection and waits (at most 5 s) for their tasks.
pub async fn run(listener: TcpListener, ctx: Arc<ServerCtx>, shutdown: Shutdown) {
    let mut tasks = tokio::task::JoinSet::new();
    let connections = Arc::new(crate::conn::Connections::default());
    let trim = tokio::spawn(trim_memory(Arc::clone(&ctx)));
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            // Only as many new connections as the handshake workers can
            // finish soon; the listen backlog holds the others.
            accepted = async {
                ctx.handshakes.wait_for_room().await;
                listener.accept().await
            } => match accepted {
                Ok((stream, addr)) => {
                    let Some(admitted) = ctx.admit(addr) else {
                        drop(stream);
                        continue;
                    };
                    metrics::counter!(telemetry::CONNECTIONS).increment(1);
                    ctx.churn_since_trim.fetch_add(1, Ordering::Relaxed);
                    // The connection's future holds its admission slot (no
                    // wrapping async block: it would hold the future twice).
                    tasks.spawn(crate::conn::serve(stream, addr, Arc::clone(&ctx), Arc::clone(&connections), admitted));
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
    drop(listener);
    trim.abort();
    connections.close_all(shutdown.close_reason());
    info!(
        clients = ctx.arbiter.connections(),
        "shutting down: disconnecting all clients"
    );
    let drained = timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("some connections did not close within 5 s; aborting them");
        tasks.abort_all();
    }
}

/// Gives memory freed by connection churn back to the system: after a
/// connect storm or a flood, the allocator would otherwise keep the freed
/// buffers of the set-up (a TLS handshake's transient memory is many times
/// what an established connection keeps) and of closed connections, and
/// the RSS would stay at its peak. Checks every 5 s; trims when at least 256
/// connections opened or closed, or handshakes finished, since the last
/// check.
async fn trim_memory(ctx: Arc<ServerCtx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ctx.churn_since_trim.swap(0, Ordering::Relaxed) >= 256 {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free heap memory.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}
