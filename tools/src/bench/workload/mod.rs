//! The coordinator: builds the simulated clusters, starts every node as a
//! task at once, drives the workload's phases (connect, steady, split,
//! server restart), waits (bounded) until every node holds its expected
//! vote, and turns the recorded timelines into a [`Report`].

mod phases;
mod setup;
mod tracking;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::BenchError;
use super::loaded::LoadedSet;
use super::node::{self, held, NodeShared, NodeSpec, Phase, RunCtx};
use super::proc::Spawned;
use super::report::{sample_proc, Latency, Report};
use qnetd_core::wire::{AlgorithmKind, TieBreaker};
use setup::{check_config, tls_configs};
use tracking::{cpu_delta, Progress, Run};

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

/// Runs one workload and returns its report. Every wait is bounded by
/// `cfg.timeout`; nothing panics on bad input.
pub async fn run(cfg: &Config, workload: Workload) -> Result<Report, BenchError> {
    check_config(cfg, workload)?;
    let mut clients = cfg.clusters * cfg.nodes as usize;
    if workload == Workload::StormWhileLoaded {
        clients += cfg.loaded_clusters * cfg.nodes as usize;
    }
    let limit = super::proc::raise_nofile(clients as u64 * 2 + 4096);
    if (limit as usize) < clients + 32 {
        return Err(BenchError::TooFewFiles {
            clients,
            need: clients + 32,
            limit,
        });
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
                return Err(BenchError::PortInUse(cfg.server));
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

/// The nodes of `names` (clusters numbered from `first` for their source
/// addresses), each with its cluster's TLS configuration if any.
fn node_specs(
    cfg: &Config,
    names: &[Arc<str>],
    first: usize,
    tls: Option<&[Arc<rustls::ClientConfig>]>,
) -> Vec<NodeSpec> {
    let mut specs = Vec::with_capacity(names.len() * cfg.nodes as usize);
    for (i, name) in names.iter().enumerate() {
        for n in 1..=cfg.nodes {
            specs.push(NodeSpec {
                cluster: Arc::clone(name),
                node_id: n,
                nodes: cfg.nodes,
                source: cfg.spread.then(|| IpAddr::V4(source_address(first + i))),
                tls: tls.map(|t| Arc::clone(&t[i])),
            });
        }
    }
    specs
}

async fn run_with(
    cfg: &Config,
    workload: Workload,
    spawned: &mut Option<Spawned>,
    mut pid: Option<u32>,
) -> Result<Report, BenchError> {
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
                .map_err(BenchError::CertificateTask)??;
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

    let specs = node_specs(cfg, &names, 0, tls.as_deref());
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
        let specs = node_specs(cfg, &loaded_names, cfg.clusters, loaded_tls.as_deref());
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
                return Err(BenchError::LoadedSetNotConnected {
                    done,
                    total,
                    after: cfg.timeout,
                });
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
            Workload::Steady => phases::steady(cfg, &mut run, &ctx, pid, &mut report).await,
            Workload::MassSplit => {
                expect = phases::mass_split(cfg, &mut run, &ctx, pid, &ctl_tx, &names, &mut report)
                    .await;
            }
            Workload::Reconnect => {
                let (new_pid, errors) =
                    phases::reconnect(cfg, &mut run, &ctx, spawned, &mut report).await?;
                pid = Some(new_pid);
                expected_errors = errors;
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
mod tests;
