//! High availability: this instance as one member of an active/standby
//! group on etcd (docs/ha.md). The controller of `qnetd-ha` elects the
//! leader and publishes this instance's role; the task here follows it:
//!
//! - **Leader** (first time in a term): load every cluster's vote holder
//!   from etcd into the vote memory (the restart hold starts now), bind the
//!   client port (IP_FREEBIND, so it can be the floating address), take and
//!   announce the floating addresses, serve. `Arbiter::set_serve_until`
//!   follows every lease extension, so each ACK is checked against it, and
//!   every changed holder is written to etcd (conditioned on the term)
//!   before its ACK leaves (the memory's write-ahead).
//! - **Leaving Leader**, or reaching `serve_until` by our own timer: no
//!   more ACKs, stop accepting, close every client (`LeaseExpired`), drop
//!   the floating addresses.
//! - **Shutdown**: stop serving first, then resign, so the next leader
//!   starts at once.
//!
//! Standbys never listen on the client port.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use qnetd_core::close::CloseReason;
use qnetd_core::config::{HaSettings, Settings, Takeover};
use qnetd_core::memory::{holder_from_proto, Holders};
use qnetd_core::status::HaStatus;
use qnetd_ha::{
    EtcdConfig, FloatingAddress, Ha, HaConfig, HaError, HaHandle, HeldVote, LeaderTerm, Role,
    TakeoverPolicy, TlsFiles,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn, Instrument};

pub use qnetd_ha::{HaError as GroupError, LeaderTerm as Term, Role as GroupRole};

use crate::ctx::ServerCtx;
use crate::error::StartError;
use crate::persist::unix_ms;
use crate::shutdown::Shutdown;

/// What the follower needs from the group: the vote store and resigning.
/// [`HaHandle`] is the real one (etcd); tests use one in memory.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Every stored vote holder.
    fn load(&self) -> impl Future<Output = Result<Vec<HeldVote>, HaError>> + Send;
    /// Stores holders, if `term` still leads.
    fn save(
        &self,
        term: LeaderTerm,
        votes: Vec<HeldVote>,
    ) -> impl Future<Output = Result<(), HaError>> + Send;
    /// Gives up leadership (after the server stopped serving).
    fn resign(&self) -> impl Future<Output = Result<(), HaError>> + Send;
    /// etcd requests that failed so far.
    fn errors(&self) -> u64 {
        0
    }
}

impl Backend for HaHandle {
    async fn load(&self) -> Result<Vec<HeldVote>, HaError> {
        Ok(self.store().load_all().await?.votes)
    }
    async fn save(&self, term: LeaderTerm, votes: Vec<HeldVote>) -> Result<(), HaError> {
        self.store().save_many(term, &votes).await
    }
    async fn resign(&self) -> Result<(), HaError> {
        HaHandle::resign(self).await
    }
    fn errors(&self) -> u64 {
        self.etcd_errors()
    }
}

/// What status shows of the group (shared with the admin socket and
/// /metrics).
pub struct HaShared {
    pub group: String,
    pub name: String,
    pub endpoints: Vec<String>,
    floating: Vec<String>,
    view: Mutex<View>,
    errors: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
}

#[derive(Clone, Debug)]
struct View {
    role: Role,
    serving: bool,
    leader_changes: u64,
    last_leader: Option<String>,
}

fn role_label(r: &Role) -> &'static str {
    match r {
        Role::Starting => "starting",
        Role::Standby { .. } => "standby",
        Role::TakingOver { .. } => "taking_over",
        Role::Leader { .. } => "leader",
        Role::NoQuorum { .. } => "no_quorum",
    }
}

impl HaShared {
    pub fn new(group: &str, name: &str, endpoints: Vec<String>, floating: Vec<String>) -> Self {
        HaShared {
            group: group.into(),
            name: name.into(),
            endpoints,
            floating,
            view: Mutex::new(View {
                role: Role::Starting,
                serving: false,
                leader_changes: 0,
                last_leader: None,
            }),
            errors: OnceLock::new(),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_role(&self, role: &Role) {
        let mut v = self.view();
        if let Role::Standby {
            leader: Some(name), ..
        } = role
        {
            v.last_leader = Some(name.clone());
        }
        v.role = role.clone();
    }

    fn set_serving(&self, serving: bool) {
        let mut v = self.view();
        if serving && !v.serving {
            v.leader_changes += 1;
        }
        v.serving = serving;
    }

    /// Whether this instance serves clients now.
    pub fn serving(&self) -> bool {
        self.view().serving
    }

    /// The role's label (`leader`, `standby`, ...).
    pub fn role(&self) -> &'static str {
        role_label(&self.view().role)
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant) -> HaStatus {
        let v = self.view().clone();
        let ms = |d: Duration| d.as_millis() as u64;
        let (leader, term, lease, takeover, no_quorum) = match &v.role {
            Role::Leader { term, serve_until } => (
                self.name.clone(),
                term.revision,
                ms(serve_until.saturating_duration_since(now)),
                0,
                0,
            ),
            Role::TakingOver { term, serve_from } => (
                self.name.clone(),
                term.revision,
                0,
                ms(serve_from.saturating_duration_since(now)),
                0,
            ),
            Role::Standby { leader } => (leader.clone().unwrap_or_default(), 0, 0, 0, 0),
            Role::NoQuorum { since } => (
                String::new(),
                0,
                0,
                0,
                now.saturating_duration_since(*since).as_secs(),
            ),
            Role::Starting => (String::new(), 0, 0, 0, 0),
        };
        HaStatus {
            group: self.group.clone(),
            name: self.name.clone(),
            role: role_label(&v.role).into(),
            leader,
            term,
            lease_remaining_ms: lease,
            takeover_remaining_ms: takeover,
            serving: v.serving,
            no_quorum_seconds: no_quorum,
            floating_addresses: if v.serving {
                self.floating.clone()
            } else {
                Vec::new()
            },
            leader_changes: v.leader_changes,
            etcd_errors: self.errors.get().map_or(0, |f| f()),
            endpoints: self.endpoints.clone(),
        }
    }
}

/// Everything the group needs, prepared at start.
pub struct HaSetup {
    pub config: HaConfig,
    pub floats: Vec<FloatingAddress>,
    pub shared: Arc<HaShared>,
}

/// The CA fingerprint an instance announces: SHA-256 of its CA
/// certificate (DER), or of the text `tls off` when TLS is off (instances
/// of one group must agree on both).
pub fn ca_fingerprint(settings: &Settings) -> Result<String, StartError> {
    use qnetd_core::config::TlsMode;
    if settings.tls == TlsMode::Off {
        return Ok(qnetd_ha::ca_fingerprint(b"tls off"));
    }
    let path = settings.tls_dir.join(qnetd_certs::Pki::CA_CERT);
    let pem = std::fs::read(&path).map_err(|e| StartError::Ha {
        problem: format!(
            "cannot read the CA certificate {} for the group's CA check: {e}",
            path.display()
        ),
        code: 5,
    })?;
    let der = openssl::x509::X509::from_pem(&pem)
        .and_then(|c| c.to_der())
        .map_err(|e| StartError::Ha {
            problem: format!("{} is not a PEM certificate: {e}", path.display()),
            code: 5,
        })?;
    Ok(qnetd_ha::ca_fingerprint(&der))
}

/// This host's name (the default instance name).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "qnetd".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "qnetd".into()
    } else {
        name
    }
}

fn config_error(problem: impl Into<String>) -> StartError {
    StartError::Ha {
        problem: problem.into(),
        code: 2,
    }
}

/// Builds the controller's configuration from the settings (reads the
/// password file and the CA certificate).
pub fn prepare(settings: &Settings) -> Result<HaSetup, StartError> {
    let h: &HaSettings = &settings.ha;
    let name = if h.name.is_empty() {
        host_name()
    } else {
        h.name.clone()
    };
    let password = match &h.password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    config_error(format!(
                        "cannot read [ha] password_file {}: {e}",
                        p.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => h.password.clone(),
    };
    let etcd = EtcdConfig {
        endpoints: h.endpoints.clone(),
        tls: TlsFiles {
            ca: h.tls_ca.clone(),
            cert: h.tls_cert.clone(),
            key: h.tls_key.clone(),
        },
        user: h.user.clone(),
        password,
        request_timeout: Duration::from_millis(u64::from(h.request_timeout_ms)),
    };
    let mut config = HaConfig::new(etcd, &h.group, &name, &ca_fingerprint(settings)?);
    config.lease_ttl = Duration::from_secs(u64::from(h.lease_ttl_s));
    config.margin = Duration::from_millis(u64::from(h.margin_ms));
    config.keepalive_interval = Duration::from_millis(u64::from(h.keepalive_interval_ms));
    config.poll_interval = Duration::from_millis(u64::from(h.poll_interval_ms));
    config.takeover = match h.takeover {
        Takeover::WaitPreviousTtl => TakeoverPolicy::WaitPreviousTtl,
        Takeover::TrustExpiry => TakeoverPolicy::TrustExpiry,
    };
    config.validate().map_err(|e| config_error(e.to_string()))?;
    let floats = h
        .floating
        .iter()
        .map(|f| FloatingAddress {
            addr: f.addr,
            prefix_len: f.prefix_len,
            dev: f.dev.clone(),
        })
        .collect();
    let shared = Arc::new(HaShared::new(
        &h.group,
        &name,
        h.endpoints.clone(),
        h.floating.iter().map(|f| f.to_string()).collect(),
    ));
    Ok(HaSetup {
        config,
        floats,
        shared,
    })
}

/// Whether an error of `Ha::start` means "etcd not reachable yet, try
/// again" rather than "this instance may not join".
fn retryable(e: &HaError) -> bool {
    e.is_unavailable() || matches!(e, HaError::Etcd { .. } | HaError::Gateway { .. })
}

/// The first contact with the group, at start: joins it (the CA check
/// included) when etcd answers; `Ok(None)` when etcd cannot be reached
/// now (the server starts and keeps trying); an error when this instance
/// may not join (other CA, bad credentials or TLS files).
pub async fn join_at_start(
    setup: &HaSetup,
) -> Result<Option<(HaHandle, watch::Receiver<Role>)>, StartError> {
    let bound = setup.config.etcd.request_timeout * 3 + Duration::from_millis(500);
    match tokio::time::timeout(bound, Ha::start(setup.config.clone())).await {
        Ok(Ok(x)) => Ok(Some(x)),
        Ok(Err(e)) if retryable(&e) => {
            warn!(group = %setup.config.group, "etcd cannot be reached at start: {e}; not serving, retrying in the background");
            Ok(None)
        }
        Ok(Err(e)) => Err(StartError::Ha {
            problem: e.to_string(),
            code: 7,
        }),
        Err(_) => {
            warn!(group = %setup.config.group, "etcd did not answer within {bound:?} at start; not serving, retrying in the background");
            Ok(None)
        }
    }
}

/// Runs the group membership until `shutdown`: joins the group if that
/// did not work at start, then follows the role. A refusal to join (other
/// CA) is recorded in the context and stops the server.
pub async fn run(
    ctx: Arc<ServerCtx>,
    setup: HaSetup,
    joined: Option<(HaHandle, watch::Receiver<Role>)>,
    shutdown: Shutdown,
) {
    // Leftovers of a previous run (killed while it held them) go first.
    release_all(&setup.floats).await;
    let (handle, roles) = match joined {
        Some(x) => x,
        None => loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match tokio::time::timeout(
                setup.config.etcd.request_timeout * 3,
                Ha::start(setup.config.clone()),
            )
            .await
            {
                Ok(Ok(x)) => {
                    info!(group = %setup.config.group, "joined the HA group");
                    break x;
                }
                Ok(Err(e)) if retryable(&e) => {
                    tracing::debug!("etcd still unreachable: {e}");
                }
                Ok(Err(e)) => {
                    error!("{e}");
                    ctx.set_fatal(7, e.to_string());
                    shutdown.trigger();
                    return;
                }
                Err(_) => {}
            }
        },
    };
    {
        let h = handle.clone();
        let _ = setup.shared.errors.set(Box::new(move || h.etcd_errors()));
    }
    follow(ctx, roles, handle, setup.floats, setup.shared, shutdown).await;
}

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
    loop {
        let role = roles.borrow_and_update().clone();
        shared.set_role(&role);
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
    let previous = shared.view().last_leader.clone().unwrap_or_default();
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

async fn release_all(floats: &[FloatingAddress]) {
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

/// A vote store in memory, for tests and tools: `save` is refused with
/// `NotLeader` for any term but the one set with [`MemoryBackend::lead`].
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    votes: std::collections::BTreeMap<Vec<u8>, HeldVote>,
    term: Option<i64>,
    resigned: bool,
    saves: u64,
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Writes for this term (revision) are accepted from now on.
    pub fn lead(&self, revision: i64) {
        self.lock().term = Some(revision);
    }
    /// The stored holders.
    pub fn votes(&self) -> Vec<HeldVote> {
        self.lock().votes.values().cloned().collect()
    }
    /// Stores a holder directly (a previous leader's record).
    pub fn put(&self, v: HeldVote) {
        self.lock().votes.insert(v.cluster_name.clone(), v);
    }
    pub fn resigned(&self) -> bool {
        self.lock().resigned
    }
    pub fn saves(&self) -> u64 {
        self.lock().saves
    }
}

impl Backend for MemoryBackend {
    async fn load(&self) -> Result<Vec<HeldVote>, HaError> {
        Ok(self.votes())
    }
    async fn save(&self, term: LeaderTerm, votes: Vec<HeldVote>) -> Result<(), HaError> {
        let mut i = self.lock();
        if i.term != Some(term.revision) {
            return Err(HaError::NotLeader {
                revision: term.revision,
            });
        }
        i.saves += 1;
        for v in votes {
            i.votes.insert(v.cluster_name.clone(), v);
        }
        Ok(())
    }
    async fn resign(&self) -> Result<(), HaError> {
        self.lock().resigned = true;
        Ok(())
    }
}
