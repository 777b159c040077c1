//! The coordinator: builds the simulated clusters, starts every node as a
//! task at once, drives the workload's phases (connect, steady, split,
//! server restart), waits (bounded) until every node holds its expected
//! vote, and turns the recorded timelines into a [`Report`].

use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::sync::watch;

use super::loaded::LoadedSet;
use super::node::{self, held, NodeShared, NodeSpec, Phase, RunCtx, View};
use super::proc::Spawned;
use super::report::{sample_proc, Latency, PhaseReport, ProcSample, Report};
use super::safety;
use qnetd_core::wire::{AlgorithmKind, TieBreaker};

/// The workloads of `qnetd-bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// All clients connect at once; time until every node holds its first vote.
    ConnectStorm,
    /// All connected, heartbeats only, for a duration.
    Steady,
    /// Every cluster splits in two at once.
    MassSplit,
    /// The server restarts; time until every node votes again.
    Reconnect,
    /// Clusters connected and heartbeating (the loaded set, on a thread of
    /// its own), then more connect at once.
    StormWhileLoaded,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::ConnectStorm => "connect-storm",
            Workload::Steady => "steady",
            Workload::MassSplit => "mass-split",
            Workload::Reconnect => "reconnect",
            Workload::StormWhileLoaded => "storm-while-loaded",
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: SocketAddr,
    pub clusters: usize,
    pub nodes: u32,
    /// A directory with the CA made by `qnetd certs init` (qnetd-ca.pem and
    /// qnetd-ca-key.pem): TLS with a client certificate per cluster issued
    /// from it. `None`: plain TCP.
    pub tls_dir: Option<PathBuf>,
    pub algorithm: AlgorithmKind,
    pub tie_breaker: TieBreaker,
    pub heartbeat_ms: u32,
    /// How long `steady` runs.
    pub duration: Duration,
    /// Bound of every wait for votes.
    pub timeout: Duration,
    /// Pause between the connect phase and the workload's own phase (lets
    /// the storm's tail drain; room to attach a profiler).
    pub settle: Duration,
    /// Bound of one connection attempt (qdevice's default is 8 s).
    pub connect_timeout: Duration,
    /// Upper bound of the random delay before a reconnect.
    pub reconnect_jitter: Duration,
    /// At most this many first connection attempts in flight (0: all at
    /// once). For the set-up of steady and mass-split at scale; a storm is
    /// all at once by definition.
    pub max_connecting: usize,
    /// storm-while-loaded: clusters connected before the storm, and their
    /// heartbeat interval.
    pub loaded_clusters: usize,
    pub loaded_heartbeat_ms: u32,
    /// One 127.x.y.z source address per cluster.
    pub spread: bool,
    pub cluster_prefix: String,
    /// The server's PID, for RSS and CPU figures (set by `spawn` too).
    pub server_pid: Option<u32>,
    /// Command line that starts the server (`reconnect` needs it).
    pub spawn: Option<String>,
    pub server_log: Option<PathBuf>,
    /// Our server's /metrics address: its decision-latency histogram is
    /// read before and after the workload's phase.
    pub metrics: Option<SocketAddr>,
    /// Label of the server in the report ("qnetd", "corosync-qnetd").
    pub server_name: String,
    pub server_label: String,
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: SocketAddr::from(([127, 0, 0, 1], 5403)),
            clusters: 10,
            nodes: 2,
            tls_dir: None,
            algorithm: AlgorithmKind::Ffsplit,
            tie_breaker: TieBreaker::Lowest,
            heartbeat_ms: 8000,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            settle: Duration::ZERO,
            connect_timeout: Duration::from_secs(8),
            reconnect_jitter: Duration::from_millis(1000),
            max_connecting: 0,
            loaded_clusters: 10,
            loaded_heartbeat_ms: 1000,
            spread: true,
            cluster_prefix: "bench".into(),
            server_pid: None,
            spawn: None,
            server_log: None,
            metrics: None,
            server_name: "server".into(),
            server_label: String::new(),
            progress: false,
        }
    }
}

/// The source address of cluster `i`: 127.a.b.c with c in 1..=254, from
/// 127.1.0.1 on.
pub fn source_address(i: usize) -> Ipv4Addr {
    let a = 1 + i / (254 * 256);
    let b = (i / 254) % 256;
    let c = 1 + i % 254;
    Ipv4Addr::new(127, (a % 256) as u8, b as u8, c as u8)
}

/// Which half wins a 50:50 or uneven split under ffsplit.
fn split_winner(nodes: u32, tb: TieBreaker) -> View {
    let low = nodes / 2;
    let high = nodes - low;
    if high > low {
        return View::High;
    }
    match tb {
        TieBreaker::Lowest => View::Low,
        TieBreaker::Highest => View::High,
        TieBreaker::NodeId(n) if n > low && n <= nodes => View::High,
        TieBreaker::NodeId(_) => View::Low,
    }
}

fn check_config(cfg: &Config, w: Workload) -> Result<(), String> {
    if cfg.clusters == 0 {
        return Err("--clusters must be at least 1".into());
    }
    if cfg.nodes == 0 || cfg.nodes > 255 {
        return Err("--nodes must be between 1 and 255".into());
    }
    if cfg.clusters.saturating_mul(cfg.nodes as usize) > 1_000_000 {
        return Err("at most 1,000,000 clients (clusters x nodes) per run".into());
    }
    if w == Workload::StormWhileLoaded && cfg.loaded_clusters == 0 {
        return Err("storm-while-loaded needs --loaded-clusters 1 or more".into());
    }
    if cfg.clusters > 254 * 256 * 255 {
        return Err("too many clusters for one source address each; use --spread off".into());
    }
    if w == Workload::MassSplit {
        if cfg.nodes < 2 {
            return Err(
                "mass-split needs --nodes 2 or more (a cluster of one cannot split)".into(),
            );
        }
        if cfg.algorithm != AlgorithmKind::Ffsplit {
            return Err(
                "mass-split checks the votes of ffsplit only; use --algorithm ffsplit".into(),
            );
        }
    }
    if w == Workload::Reconnect && cfg.spawn.is_none() {
        return Err(
            "reconnect restarts the server: give its command line with --spawn 'CMD' \
                    (and its address with --server)"
                .into(),
        );
    }
    if !cfg.server.ip().is_loopback() {
        return Err(format!(
            "--server {} is not a loopback address; the bench runs on loopback only",
            cfg.server
        ));
    }
    Ok(())
}

/// Client TLS configurations, one per cluster, with a certificate for the
/// cluster's name issued from the CA in `dir`.
fn tls_configs(
    dir: &std::path::Path,
    names: &[Arc<str>],
) -> Result<Vec<Arc<ClientConfig>>, String> {
    let pki = qnetd_certs::Pki::new(dir);
    let ca_path = pki.path(qnetd_certs::Pki::CA_CERT);
    let ca = std::fs::read(&ca_path).map_err(|e| {
        format!(
            "cannot read the CA certificate {}: {e}; --tls-dir must hold a CA made by \
             `qnetd certs init --dir DIR`",
            ca_path.display()
        )
    })?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let chunk = names.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Arc<ClientConfig>>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let pki = &pki;
                let ca = &ca;
                s.spawn(move || {
                    part.iter()
                        .map(|name| {
                            let b = pki.issue_client(name, 2).map_err(|e| {
                                format!("cannot issue the client certificate of {name}: {e}")
                            })?;
                            let cfg = crate::client::tls_client_config(
                                ca,
                                Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
                            )
                            .map_err(|e| format!("TLS configuration of {name}: {e}"))?;
                            // Each qdevice is its own process: no session
                            // resumption between nodes.
                            let mut cfg = (*cfg).clone();
                            cfg.resumption = rustls::client::Resumption::disabled();
                            Ok(Arc::new(cfg))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("certificate thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(names.len());
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

struct Progress {
    on: bool,
    tty: bool,
    last: Instant,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn show(&mut self, label: &str, done: usize, total: usize, errors: u64, since: Instant) {
        if !self.on {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let line = format!(
            "{label}: {done}/{total} ({:.0}%), {errors} errors, {:.1} s",
            100.0 * done as f64 / total.max(1) as f64,
            since.elapsed().as_secs_f64()
        );
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        let _ = e.flush();
    }

    fn end(&mut self) {
        if self.on && self.tty {
            let _ = writeln!(std::io::stderr());
        }
        self.last = Instant::now() - Duration::from_secs(60);
    }
}

/// A run in progress.
struct Run {
    cfg: Config,
    specs: Vec<NodeSpec>,
    shared: Vec<Arc<NodeShared>>,
    progress: Progress,
}

impl Run {
    fn errors(&self) -> u64 {
        self.shared
            .iter()
            .map(|s| u64::from(s.errors.load(Ordering::Relaxed)))
            .sum()
    }

    /// Waits until `pred` holds for every node, or the timeout.
    async fn wait_all(&mut self, label: &str, pred: impl Fn(usize, &NodeShared) -> bool) -> usize {
        let start = Instant::now();
        let deadline = start + self.cfg.timeout;
        let total = self.specs.len();
        loop {
            let done = self
                .shared
                .iter()
                .enumerate()
                .filter(|(i, sh)| pred(*i, sh))
                .count();
            let errors = self.errors();
            self.progress.show(label, done, total, errors, start);
            if done == total || Instant::now() >= deadline {
                self.progress.end();
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Per-node latency from `from_ns` to the event `pick` selects.
    fn phase_report(
        &self,
        name: &str,
        from_ns: u64,
        pick: impl Fn(&NodeSpec, &[node::Event]) -> Option<u64>,
        cpu: Option<f64>,
    ) -> PhaseReport {
        let mut lat = Vec::with_capacity(self.specs.len());
        for (sp, sh) in self.specs.iter().zip(&self.shared) {
            let t = sh.timeline.lock().map(|t| pick(sp, &t)).unwrap_or(None);
            if let Some(t) = t {
                lat.push(t.saturating_sub(from_ns) as f64 / 1e6);
            }
        }
        let done = lat.len();
        let expected = self.specs.len();
        let wall_s = if done == expected {
            lat.iter().copied().fold(0.0, f64::max) / 1e3
        } else {
            self.cfg.timeout.as_secs_f64()
        };
        PhaseReport {
            name: name.into(),
            done,
            expected,
            wall_s,
            latency: Latency::from_ms(lat),
            throughput_per_s: if wall_s > 0.0 {
                done as f64 / wall_s
            } else {
                0.0
            },
            server_cpu_s: cpu,
        }
    }
}

fn cpu_delta(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<f64> {
    Some(b?.cpu_s - a?.cpu_s)
}

/// Runs one workload and returns its report. Every wait is bounded by
/// `cfg.timeout`; nothing panics on bad input.
pub async fn run(cfg: &Config, workload: Workload) -> Result<Report, String> {
    check_config(cfg, workload)?;
    let mut clients = cfg.clusters * cfg.nodes as usize;
    if workload == Workload::StormWhileLoaded {
        clients += cfg.loaded_clusters * cfg.nodes as usize;
    }
    let limit = super::proc::raise_nofile(clients as u64 * 2 + 4096);
    if (limit as usize) < clients + 32 {
        return Err(format!(
            "{clients} clients need at least {} open files but the limit is {limit} \
             (the hard limit can be raised only with CAP_SYS_RESOURCE, e.g. as root \
             outside a container); use fewer clients or raise it (ulimit -Hn)",
            clients + 32
        ));
    }

    let mut spawned = match &cfg.spawn {
        Some(cmd) => {
            // Otherwise the readiness probe would take another server's
            // answer for the spawned one's.
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(cfg.server),
            )
            .await
            {
                return Err(format!(
                    "something already listens on {}; stop it or choose another port \
                     (in --server and in the --spawn command)",
                    cfg.server
                ));
            }
            let mut s = Spawned::new(cmd, cfg.server_log.clone());
            s.start()?;
            s.wait_ready(cfg.server, Duration::from_secs(30)).await?;
            Some(s)
        }
        None => None,
    };
    let pid = spawned.as_ref().and_then(|s| s.pid()).or(cfg.server_pid);
    let result = run_with(cfg, workload, &mut spawned, pid).await;
    if let Some(s) = spawned.as_mut() {
        s.stop(Duration::from_secs(10)).await;
    }
    result
}

async fn run_with(
    cfg: &Config,
    workload: Workload,
    spawned: &mut Option<Spawned>,
    mut pid: Option<u32>,
) -> Result<Report, String> {
    let names: Vec<Arc<str>> = (0..cfg.clusters)
        .map(|i| Arc::from(format!("{}{:05}", cfg.cluster_prefix, i)))
        .collect();
    let loaded_names: Vec<Arc<str>> = if workload == Workload::StormWhileLoaded {
        (0..cfg.loaded_clusters)
            .map(|i| Arc::from(format!("{}L{:05}", cfg.cluster_prefix, i)))
            .collect()
    } else {
        Vec::new()
    };
    let setup = Instant::now();
    let (tls, loaded_tls) = match &cfg.tls_dir {
        Some(dir) => {
            let dir = dir.clone();
            let all: Vec<Arc<str>> = names.iter().chain(&loaded_names).cloned().collect();
            let mut configs = tokio::task::spawn_blocking(move || tls_configs(&dir, &all))
                .await
                .map_err(|e| format!("certificate task failed: {e}"))??;
            let loaded = configs.split_off(names.len());
            (Some(configs), Some(loaded))
        }
        None => (None, None),
    };
    let setup_s = if tls.is_some() {
        setup.elapsed().as_secs_f64()
    } else {
        0.0
    };

    let mut specs = Vec::with_capacity(cfg.clusters * cfg.nodes as usize);
    for (i, name) in names.iter().enumerate() {
        for n in 1..=cfg.nodes {
            specs.push(NodeSpec {
                cluster: Arc::clone(name),
                node_id: n,
                nodes: cfg.nodes,
                source: cfg.spread.then(|| IpAddr::V4(source_address(i))),
                tls: tls.as_ref().map(|t| Arc::clone(&t[i])),
            });
        }
    }
    let shared: Vec<Arc<NodeShared>> = specs.iter().map(|_| Arc::new(NodeShared::new())).collect();
    let now = Instant::now();
    let ctx = Arc::new(RunCtx {
        server: cfg.server,
        epoch: now,
        algorithm: cfg.algorithm,
        tie_breaker: cfg.tie_breaker,
        heartbeat_ms: cfg.heartbeat_ms,
        connect_timeout: cfg.connect_timeout,
        reconnect_jitter: cfg.reconnect_jitter,
        // A storm is all at once; --max-connecting ramps the set-up of the
        // other workloads (and of the loaded set).
        first_connect: (cfg.max_connecting > 0 && workload != Workload::StormWhileLoaded)
            .then(|| Arc::new(tokio::sync::Semaphore::new(cfg.max_connecting))),
        // Room for every phase, each bounded by the timeout.
        deadline: now + cfg.timeout * 3 + cfg.duration + Duration::from_secs(30),
    });
    let loaded_set = if workload == Workload::StormWhileLoaded {
        let mut specs = Vec::new();
        for (j, name) in loaded_names.iter().enumerate() {
            for n in 1..=cfg.nodes {
                specs.push(NodeSpec {
                    cluster: Arc::clone(name),
                    node_id: n,
                    nodes: cfg.nodes,
                    source: cfg
                        .spread
                        .then(|| IpAddr::V4(source_address(cfg.clusters + j))),
                    tls: loaded_tls.as_ref().map(|t| Arc::clone(&t[j])),
                });
            }
        }
        let lctx = Arc::new(RunCtx {
            heartbeat_ms: cfg.loaded_heartbeat_ms,
            first_connect: Some(Arc::new(tokio::sync::Semaphore::new(
                if cfg.max_connecting > 0 {
                    cfg.max_connecting
                } else {
                    200
                },
            ))),
            ..clone_ctx(&ctx)
        });
        Some(LoadedSet::start(specs, lctx)?)
    } else {
        None
    };
    let mut run = Run {
        cfg: cfg.clone(),
        specs,
        shared,
        progress: Progress::new(cfg.progress),
    };
    let (ctl_tx, ctl_rx) = watch::channel(Phase::Whole);

    // --- storm-while-loaded: the loaded set first ------------------------
    let mut loaded_mark = None;
    if let Some(set) = &loaded_set {
        let start = Instant::now();
        let total = set.specs.len();
        loop {
            let done = set.voting();
            run.progress.show("loaded set", done, total, 0, start);
            if done == total {
                break;
            }
            if start.elapsed() >= cfg.timeout {
                run.progress.end();
                set_stop(loaded_set);
                return Err(format!(
                    "the loaded set did not connect: {done} of {total} clients voting after {} s",
                    cfg.timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.progress.end();
        // Let the loaded clients settle into their heartbeats.
        tokio::time::sleep(cfg.settle.max(Duration::from_millis(
            2 * u64::from(cfg.loaded_heartbeat_ms),
        )))
        .await;
        loaded_mark = Some(set.mark(ctx.now_ns()));
    }

    // --- connect: every node at once ------------------------------------
    let idle = pid.and_then(sample_proc);
    let metrics_idle = match cfg.metrics {
        Some(a) if workload == Workload::ConnectStorm => super::report::scrape(a).await,
        _ => None,
    };
    let t0 = ctx.now_ns();
    let mut tasks = tokio::task::JoinSet::new();
    for (sp, sh) in run.specs.iter().zip(&run.shared) {
        tasks.spawn(node::run_node(
            sp.clone(),
            Arc::clone(sh),
            Arc::clone(&ctx),
            ctl_rx.clone(),
        ));
    }
    run.wait_all("connect", |_, sh| {
        sh.vote.load(Ordering::Acquire) == held::ACK
    })
    .await;
    let loaded = pid.and_then(sample_proc);
    let connect = run.phase_report(
        "connect",
        t0,
        |_, t| {
            t.iter()
                .find(|e| e.vote == held::ACK || e.vote == held::NACK)
                .map(|e| e.t_ns)
        },
        cpu_delta(idle, loaded),
    );
    let connect_errors = run.errors();
    let loaded_report = match (&loaded_set, &loaded_mark) {
        (Some(set), Some(mark)) => Some(set.report_since(
            mark,
            ctx.now_ns(),
            cfg.loaded_clusters,
            cfg.loaded_heartbeat_ms,
        )),
        _ => None,
    };

    let mut report = Report {
        workload: workload.name().into(),
        server: cfg.server_name.clone(),
        server_label: cfg.server_label.clone(),
        tls: cfg.tls_dir.is_some(),
        clusters: cfg.clusters,
        nodes_per_cluster: cfg.nodes,
        clients: run.specs.len(),
        algorithm: cfg.algorithm.label().into(),
        heartbeat_ms: cfg.heartbeat_ms,
        setup_s,
        server_idle: idle,
        server_loaded: loaded,
        rss_per_client_kib: match (idle, loaded) {
            (Some(a), Some(b)) if connect.done > 0 => {
                Some((b.rss_kib as f64 - a.rss_kib as f64) / connect.done as f64)
            }
            _ => None,
        },
        ..Default::default()
    };
    report.loaded = loaded_report;
    let connected_all = connect.done == connect.expected;
    // The storm's decisions are the connect phase's; the others', their phase's.
    let metrics_before = match cfg.metrics {
        Some(_) if workload == Workload::ConnectStorm => metrics_idle,
        Some(a) => super::report::scrape(a).await,
        None => None,
    };
    report.connect = connect;
    let mut expected_errors = 0;
    // Expected final vote of each node.
    let mut expect: Vec<u8> = vec![held::ACK; run.specs.len()];

    if !cfg.settle.is_zero() && workload != Workload::ConnectStorm {
        tokio::time::sleep(cfg.settle).await;
    }
    // Steady runs with whatever connected (its figures are per client); the
    // other phases need every node voting first.
    if connected_all || (workload == Workload::Steady && report.connect.done > 0) {
        match workload {
            Workload::ConnectStorm | Workload::StormWhileLoaded => {}
            Workload::Steady => {
                // Nodes that did not connect in time stop trying, so the
                // steady figures are those of the connected ones only.
                if let Some(sem) = &ctx.first_connect {
                    sem.close();
                }
                let start = Instant::now();
                let a = pid.and_then(sample_proc);
                let gens: Vec<u32> = run
                    .shared
                    .iter()
                    .map(|s| s.generation.load(Ordering::Relaxed))
                    .collect();
                let rtt_before: Vec<usize> = run
                    .shared
                    .iter()
                    .map(|s| s.echo_rtt_us.lock().map(|v| v.len()).unwrap_or(0))
                    .collect();
                while start.elapsed() < cfg.duration {
                    let total = run.specs.len();
                    let errors = run.errors();
                    run.progress.show("steady", total, total, errors, start);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                run.progress.end();
                let b = pid.and_then(sample_proc);
                let mut rtts = Vec::new();
                let mut kept = 0;
                for (i, sh) in run.shared.iter().enumerate() {
                    if let Ok(v) = sh.echo_rtt_us.lock() {
                        rtts.extend(
                            v[rtt_before[i].min(v.len())..]
                                .iter()
                                .map(|u| *u as f64 / 1e3),
                        );
                    }
                    if sh.generation.load(Ordering::Relaxed) == gens[i]
                        && sh.vote.load(Ordering::Acquire) == held::ACK
                    {
                        kept += 1;
                    }
                }
                let wall = start.elapsed().as_secs_f64();
                report.phase = Some(PhaseReport {
                    name: "steady".into(),
                    done: kept,
                    expected: run.specs.len(),
                    wall_s: wall,
                    throughput_per_s: rtts.len() as f64 / wall,
                    latency: Latency::from_ms(rtts),
                    server_cpu_s: cpu_delta(a, b),
                });
            }
            Workload::MassSplit => {
                let winner = split_winner(cfg.nodes, cfg.tie_breaker);
                for (i, sp) in run.specs.iter().enumerate() {
                    expect[i] = if sp.half() == winner {
                        held::ACK
                    } else {
                        held::NACK
                    };
                }
                let a = pid.and_then(sample_proc);
                let t1 = ctx.now_ns();
                let _ = ctl_tx.send(Phase::Split);
                let exp = expect.clone();
                run.wait_all("mass-split", |i, sh| {
                    sh.vote.load(Ordering::Acquire) == exp[i]
                        && sh
                            .timeline
                            .lock()
                            .map(|t| t.last().is_some_and(|e| e.view != View::Whole))
                            .unwrap_or(false)
                })
                .await;
                let b = pid.and_then(sample_proc);
                let mut phase = run.phase_report(
                    "split",
                    t1,
                    |sp, t| {
                        let last = t.last()?;
                        let want = if sp.half() == winner {
                            held::ACK
                        } else {
                            held::NACK
                        };
                        (last.vote == want && last.view != View::Whole).then_some(last.t_ns)
                    },
                    cpu_delta(a, b),
                );
                // Safety and decision latency, per cluster.
                let k = cfg.nodes as usize;
                let mut doubles = 0;
                let mut decisions = Vec::new();
                let mut split_lat = Vec::new();
                for (c, name) in names.iter().enumerate() {
                    let tl: Vec<Vec<node::Event>> = run.shared[c * k..(c + 1) * k]
                        .iter()
                        .map(|s| s.timeline.lock().map(|t| t.clone()).unwrap_or_default())
                        .collect();
                    // Per node: from the first membership list of its
                    // cluster leaving the bench to the node's final vote
                    // (the bench's own fan-out to thousands of tasks is in
                    // wall_s, not here).
                    let first_send = tl
                        .iter()
                        .filter_map(|t| {
                            t.iter()
                                .find(|e| e.t_ns >= t1 && e.view != View::Whole)
                                .map(|e| e.t_ns)
                        })
                        .min();
                    for (i, t) in tl.iter().enumerate() {
                        if let (Some(start), Some(last)) = (first_send, t.last()) {
                            if last.view != View::Whole && last.vote == expect[c * k + i] {
                                split_lat.push(last.t_ns.saturating_sub(start) as f64 / 1e6);
                            }
                        }
                    }
                    let d = safety::double_acks(&tl, t1);
                    if doubles == 0 {
                        if let Some(first) = d.first() {
                            report.error_samples.push(format!(
                                "double ACK in cluster {} at +{:.3} ms: {:?}",
                                name,
                                first.t_ns.saturating_sub(t1) as f64 / 1e6,
                                first.holders
                            ));
                        }
                    }
                    doubles += d.len();
                    let last_in = run.shared[c * k..(c + 1) * k]
                        .iter()
                        .map(|s| s.last_membership_ns.load(Ordering::Relaxed))
                        .max()
                        .unwrap_or(0);
                    let first_out = tl
                        .iter()
                        .flat_map(|t| t.iter())
                        .filter(|e| {
                            e.t_ns >= last_in
                                && e.view != View::Whole
                                && (e.vote == held::ACK || e.vote == held::NACK)
                        })
                        .map(|e| e.t_ns)
                        .min();
                    if let Some(out) = first_out {
                        decisions.push(out.saturating_sub(last_in) as f64 / 1e6);
                    }
                }
                report.double_acks = doubles;
                report.decision = Some(Latency::from_ms(decisions));
                phase.latency = Latency::from_ms(split_lat);
                phase.name = "split".into();
                report.phase = Some(phase);
            }
            Workload::Reconnect => {
                let errors_before = run.errors();
                let gens: Vec<u32> = run
                    .shared
                    .iter()
                    .map(|s| s.generation.load(Ordering::Relaxed))
                    .collect();
                let s = spawned
                    .as_mut()
                    .ok_or("reconnect needs --spawn (checked before)")?;
                let t_stop = Instant::now();
                s.stop(Duration::from_secs(10)).await;
                let new_pid = s.start()?;
                s.wait_ready(cfg.server, cfg.timeout).await?;
                let restart = t_stop.elapsed().as_secs_f64();
                pid = Some(new_pid);
                let a = pid.and_then(sample_proc);
                let t1 = ctx.now_ns();
                let g = gens.clone();
                run.wait_all("reconnect", |i, sh| {
                    sh.generation.load(Ordering::Relaxed) > g[i]
                        && sh.vote.load(Ordering::Acquire) == held::ACK
                })
                .await;
                let b = pid.and_then(sample_proc);
                let phase = run.phase_report(
                    "reconnect",
                    t1,
                    |_, t| {
                        let first_gen = t.first()?.generation;
                        t.iter()
                            .find(|e| e.generation > first_gen && e.vote == held::ACK)
                            .map(|e| e.t_ns)
                    },
                    cpu_delta(a, b),
                );
                report.restart_s = Some(restart);
                report.server_loaded = b;
                report.phase = Some(phase);
                expected_errors = run.errors() - errors_before;
            }
        }
    }

    if let (Some(a), Some(before)) = (cfg.metrics, &metrics_before) {
        if let Some(after) = super::report::scrape(a).await {
            report.server_decision = super::report::decision_between(
                &super::report::parse_decision_buckets(before),
                &super::report::parse_decision_buckets(&after),
            );
        }
    }

    // Votes as the phase left them: stopping the nodes changes them (a
    // cluster whose winner leaves first hands the vote to the other half).
    report.wrong_votes = run
        .shared
        .iter()
        .zip(&expect)
        .filter(|(s, e)| s.vote.load(Ordering::Acquire) != **e)
        .count();

    // --- stop every node --------------------------------------------------
    report.server_end = pid.and_then(sample_proc);
    let _ = ctl_tx.send(Phase::Stop);
    let stop_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::timeout_at(stop_deadline, tasks.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    tasks.abort_all();

    report.errors = (run.errors() - expected_errors) as usize;
    let _ = connect_errors;
    for s in run.shared.iter().filter(|_| report.errors > 0) {
        if report.error_samples.len() >= 5 {
            break;
        }
        if let Ok(e) = s.error_samples.lock() {
            report.error_samples.extend(e.iter().take(1).cloned());
        }
    }
    let rtts: Vec<f64> = run
        .shared
        .iter()
        .flat_map(|s| {
            s.echo_rtt_us
                .lock()
                .map(|v| v.iter().map(|u| *u as f64 / 1e3).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    report.echo_rtt = Latency::from_ms(rtts);
    let phase_ok = report.phase.as_ref().is_none_or(|p| p.done == p.expected);
    report.load_average = super::report::load_average();
    report.bench_cpus = super::report::cpus_allowed(None);
    report.server_cpus = pid.and_then(|p| super::report::cpus_allowed(Some(p)));
    let loaded_ok = report.loaded.as_ref().is_none_or(|l| l.dropped == 0);
    set_stop(loaded_set);
    report.ok = connected_all
        && phase_ok
        && loaded_ok
        && report.double_acks == 0
        && report.wrong_votes == 0;
    Ok(report)
}

/// Stops the loaded set, if any, off the async runtime.
fn set_stop(set: Option<LoadedSet>) {
    if let Some(set) = set {
        set.stop();
    }
}

/// A copy of a run's parameters (to derive the loaded set's).
fn clone_ctx(c: &RunCtx) -> RunCtx {
    RunCtx {
        server: c.server,
        epoch: c.epoch,
        algorithm: c.algorithm,
        tie_breaker: c.tie_breaker,
        heartbeat_ms: c.heartbeat_ms,
        connect_timeout: c.connect_timeout,
        reconnect_jitter: c.reconnect_jitter,
        first_connect: c.first_connect.clone(),
        deadline: c.deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct_loopback_hosts() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..70_000 {
            let a = source_address(i);
            assert!(a.is_loopback());
            assert!(a.octets()[3] != 0 && a.octets()[3] != 255, "{a}");
            assert!(seen.insert(a), "{a} twice");
        }
        assert_eq!(source_address(0), Ipv4Addr::new(127, 1, 0, 1));
    }

    #[test]
    fn winners() {
        assert_eq!(split_winner(2, TieBreaker::Lowest), View::Low);
        assert_eq!(split_winner(2, TieBreaker::Highest), View::High);
        assert_eq!(split_winner(3, TieBreaker::Lowest), View::High);
        assert_eq!(split_winner(4, TieBreaker::NodeId(3)), View::High);
        assert_eq!(split_winner(4, TieBreaker::NodeId(9)), View::Low);
    }

    #[test]
    fn bad_configs_are_refused() {
        let c = Config {
            nodes: 1,
            ..Config::default()
        };
        assert!(check_config(&c, Workload::MassSplit)
            .unwrap_err()
            .contains("--nodes"));
        assert!(check_config(&Config::default(), Workload::Reconnect)
            .unwrap_err()
            .contains("--spawn"));
        let c = Config {
            server: "10.0.0.1:5403".parse().unwrap(),
            ..Config::default()
        };
        assert!(check_config(&c, Workload::ConnectStorm).is_err());
        let c = Config {
            clusters: 0,
            ..Config::default()
        };
        assert!(check_config(&c, Workload::ConnectStorm).is_err());
    }
}
