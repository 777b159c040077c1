//! Following the controller's role: starting a serving term (vote memory
//! from etcd, client port, floating addresses, the vote-holder writer),
//! stopping it, and resigning at shutdown.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_core::close::CloseReason;
use qnetd_core::memory::{holder_from_proto, Holders};
use qnetd_ha::{FloatingAddress, HaError, LeaderTerm, Role};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn, Instrument};

use super::shared::{role_label, Backend, HaShared};
use crate::ctx::ServerCtx;
use crate::persist::unix_ms;
use crate::shutdown::Shutdown;

/// One serving term.
struct Serving {
    term: LeaderTerm,
    /// Stops the listener and the writer (closes clients with its reason).
    stop: Shutdown,
    listener: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Follows `roles` until `shutdown`: serves while leader (see the module
/// documentation), then resigns through `backend`.
pub async fn follow<B: Backend>(
    ctx: Arc<ServerCtx>,
    mut roles: watch::Receiver<Role>,
    backend: B,
    floats: Vec<FloatingAddress>,
    shared: Arc<HaShared>,
    shutdown: Shutdown,
) {
    let arbiter = Arc::clone(&ctx.arbiter);
    let mut serving: Option<Serving> = None;
    let mut controller_gone = false;
    // A term whose vote-holder write etcd refused: not served again.
    let mut refused: Option<LeaderTerm> = None;
    let mut last_label = "";
    loop {
        let role = roles.borrow_and_update().clone();
        shared.set_role(&role);
        let label = role_label(&role);
        if label != last_label {
            match (&role, last_label) {
                (Role::NoQuorum { .. }, _) => warn!(
                    group = %shared.group,
                    "etcd does not answer or has lost its quorum: no instance of the group serves until it is back; the clusters keep their own quorum (a cluster that splits meanwhile has no tie-breaker); check the etcd members"
                ),
                (_, "no_quorum") => {
                    info!(group = %shared.group, role = label, "etcd answers again")
                }
                _ => {}
            }
            last_label = label;
        }
        let now = Instant::now();
        match &role {
            Role::Leader { term, serve_until } if now < *serve_until && refused != Some(*term) => {
                // First, so every ACK from now on is checked against it.
                arbiter.set_serve_until(Some(*serve_until));
                if serving.as_ref().is_some_and(|s| s.term != *term) {
                    stop_serving(&mut serving, &floats, &shared, CloseReason::LeaseExpired).await;
                }
                if serving.is_none() {
                    serving =
                        start_serving(&ctx, &backend, *term, *serve_until, &floats, &shared).await;
                }
            }
            _ => {
                arbiter.set_serve_until(Some(now));
                if serving.is_some() {
                    stop_serving(&mut serving, &floats, &shared, CloseReason::LeaseExpired).await;
                }
            }
        }
        let deadline = match (&serving, &role) {
            (Some(_), Role::Leader { serve_until, .. }) => Some(*serve_until),
            _ => None,
        };
        let term_stopped = serving.as_ref().map(|s| s.stop.clone());
        tokio::select! {
            _ = shutdown.triggered() => break,
            r = roles.changed(), if !controller_gone => {
                if r.is_err() {
                    warn!("the HA controller stopped; not serving");
                    controller_gone = true;
                    // the last role stays; force a stop below
                    arbiter.set_serve_until(Some(Instant::now()));
                    stop_serving(&mut serving, &floats, &shared, CloseReason::LeaseExpired).await;
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far).into()), if deadline.is_some() => {
                warn!(group = %shared.group, "lease deadline reached without a renewal: stopped serving");
            }
            _ = async { term_stopped.as_ref().expect("checked").triggered().await }, if term_stopped.is_some() => {
                // the writer found the term over (etcd refused a write)
                refused = serving.as_ref().map(|s| s.term);
                arbiter.set_serve_until(Some(Instant::now()));
                stop_serving(&mut serving, &floats, &shared, CloseReason::LeaseExpired).await;
            }
        }
    }
    // Shutdown: stop serving first, then resign (the next leader may start
    // at once after a resign).
    arbiter.set_serve_until(Some(Instant::now()));
    let was_serving = serving.is_some();
    stop_serving(&mut serving, &floats, &shared, CloseReason::ServerShutdown).await;
    match tokio::time::timeout(Duration::from_secs(5), backend.resign()).await {
        Ok(Ok(())) if was_serving => {
            info!(group = %shared.group, "resigned the leadership: another instance takes over now")
        }
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!("HA resign failed: {e}; the next leader starts after the lease expires")
        }
        Err(_) => warn!("HA resign timed out; the next leader starts after the lease expires"),
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn start_serving<B: Backend>(
    ctx: &Arc<ServerCtx>,
    backend: &B,
    term: LeaderTerm,
    serve_until: Instant,
    floats: &[FloatingAddress],
    shared: &Arc<HaShared>,
) -> Option<Serving> {
    let arbiter = &ctx.arbiter;
    let settings = Arc::clone(&arbiter.settings);
    // 1. The vote memory, before anyone can connect.
    let loaded = match tokio::time::timeout_at(serve_until.into(), backend.load()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            warn!(group = %shared.group, "cannot load the vote memory from etcd: {e}; not serving yet");
            return None;
        }
        Err(_) => {
            warn!(group = %shared.group, "loading the vote memory from etcd did not finish within the lease; not serving yet");
            return None;
        }
    };
    let oldest = unix_ms().saturating_sub(u64::from(settings.state_max_age) * 1000);
    let total = loaded.len();
    let holders: Holders = loaded
        .into_iter()
        .filter(|h| h.seen_unix_ms >= oldest)
        .filter_map(holder_from_proto)
        .collect();
    let now = Instant::now();
    let hold_ms = u64::from(settings.restart_vote_hold);
    let hold_until = arbiter.ms_since_origin(now) + hold_ms;
    let clusters = holders.len();
    arbiter.memory().reset(holders, hold_until);
    // 2. The client port (the address may not exist yet: IP_FREEBIND).
    let listener = loop {
        match crate::listener::bind_opts(&settings, true).await {
            Ok(l) => break l,
            Err(e) => {
                if Instant::now() + Duration::from_millis(200) >= serve_until {
                    error!(group = %shared.group, "{e}; not serving this term");
                    return None;
                }
                // e.g. a paused former leader on this host still holds it
                warn!(group = %shared.group, "{e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    // 3. The floating addresses.
    take_all(floats).await;
    // 4. Serve.
    let stop = Shutdown::new();
    let writer = tokio::spawn(
        write_votes(Arc::clone(ctx), backend.clone(), term, stop.clone())
            .instrument(tracing::info_span!("ha_writer", term = term.revision)),
    );
    let listener = tokio::spawn(crate::listener::run(
        listener,
        Arc::clone(ctx),
        stop.clone(),
    ));
    shared.set_serving(true);
    let previous = shared.last_leader().unwrap_or_default();
    info!(
        group = %shared.group,
        name = %shared.name,
        term = term.revision,
        previous_leader = %previous,
        listen = %addr.map(|a| a.to_string()).unwrap_or_default(),
        floating = ?floats.iter().map(|f| format!("{}/{}@{}", f.addr, f.prefix_len, f.dev)).collect::<Vec<_>>(),
        clusters_loaded = clusters,
        records_in_etcd = total,
        restart_hold_ms = hold_ms,
        lease_left_ms = serve_until.saturating_duration_since(Instant::now()).as_millis() as u64,
        "failover: this instance now serves as the group's leader (vote holders loaded from etcd, restart hold applies)"
    );
    Some(Serving {
        term,
        stop,
        listener,
        writer,
    })
}

async fn stop_serving(
    serving: &mut Option<Serving>,
    floats: &[FloatingAddress],
    shared: &HaShared,
    reason: CloseReason,
) {
    let Some(s) = serving.take() else {
        return;
    };
    let started = Instant::now();
    s.stop.trigger_with(reason.clone());
    // The addresses go at once; connections close meanwhile.
    release_all(floats).await;
    let _ = s.listener.await;
    s.writer.abort();
    let _ = s.writer.await;
    shared.set_serving(false);
    info!(
        group = %shared.group,
        term = s.term.revision,
        reason = reason.label(),
        took_ms = started.elapsed().as_millis() as u64,
        "stopped serving: listener closed, clients disconnected, floating addresses released"
    );
}

async fn take_all(floats: &[FloatingAddress]) {
    for f in floats {
        let fa = f.clone();
        match tokio::task::spawn_blocking(move || fa.take()).await {
            Ok(Ok(())) => {
                info!(address = %f.addr, dev = %f.dev, "floating address taken and announced")
            }
            Ok(Err(e)) => error!("{e}"),
            Err(e) => error!("floating address {}: {e}", f.addr),
        }
    }
}

pub(super) async fn release_all(floats: &[FloatingAddress]) {
    for f in floats {
        let fa = f.clone();
        match tokio::task::spawn_blocking(move || fa.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!("{e}"),
            Err(e) => error!("floating address {}: {e}", f.addr),
        }
    }
}

/// Writes every changed vote holder to the group's store (conditioned on
/// `term`) and marks it durable, which releases the ACKs waiting for it;
/// once a minute rewrites the present clusters' holders (their "seen"
/// time). A refused write (the term is over) stops the term.
async fn write_votes<B: Backend>(
    ctx: Arc<ServerCtx>,
    backend: B,
    term: LeaderTerm,
    stop: Shutdown,
) {
    let arbiter = Arc::clone(&ctx.arbiter);
    let memory = Arc::clone(arbiter.memory());
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        let refresh = tokio::select! {
            _ = stop.triggered() => return,
            _ = poll_fn(|cx| memory.poll_changed(cx)) => false,
            _ = tick.tick() => true,
        };
        let (mut records, names, version) = memory.take_changed();
        if refresh {
            records = memory.records(&arbiter.table.names(), unix_ms());
        }
        if records.is_empty() {
            memory.mark_durable(version);
            continue;
        }
        let n = records.len();
        match backend.save(term, records).await {
            Ok(()) => {
                memory.mark_durable(version);
                if failing {
                    info!("vote holders are written to etcd again");
                    failing = false;
                }
                tracing::debug!(records = n, version, "vote holders written to etcd");
            }
            Err(HaError::NotLeader { .. }) => {
                warn!(
                    term = term.revision,
                    "etcd refused a vote-holder write: this instance no longer leads; stopping"
                );
                arbiter.set_serve_until(Some(Instant::now()));
                stop.trigger_with(CloseReason::LeaseExpired);
                return;
            }
            Err(e) => {
                if !failing {
                    warn!("cannot write vote holders to etcd: {e}; ACKs for changed holders wait; retrying");
                    failing = true;
                }
                memory.requeue(names);
                tokio::select! {
                    _ = stop.triggered() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}
