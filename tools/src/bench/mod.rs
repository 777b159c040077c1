//! `qnetd-bench`: a load generator that simulates thousands of
//! corosync-qdevice 3.0.x nodes against a qnetd-compatible server (ours or
//! the reference) on loopback, with the workloads connect-storm, steady,
//! mass-split, reconnect and storm-while-loaded, and prints p50/p99/max latencies, throughput,
//! errors and the server's RSS and CPU time as a table and as JSON.
//!
//! - [`node`]: one simulated node (a tokio task);
//! - [`loaded`]: the clusters connected before a storm (their own thread);
//! - [`workload`]: the coordinator of a run;
//! - [`safety`]: the double-ACK check of mass-split;
//! - [`report`]: figures, /proc sampling, table, JSON, ratio table;
//! - [`proc`]: open-files limit, starting and restarting the server.

pub mod error;
pub mod loaded;
pub mod node;
pub mod proc;
pub mod report;
pub mod safety;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use qnetd_core::wire::{AlgorithmKind, TieBreaker};
pub use report::Report;
pub use workload::{run, Config, Workload};

/// `qnetd-bench`: simulated qdevice clients against a server, or the ratio
/// table of two sets of results.
#[derive(Args, Debug)]
#[command(
    about = "Load generator: simulated corosync-qdevice clients against a qnetd-compatible server",
    long_about = "Load generator: simulates CLUSTERS x NODES corosync-qdevice 3.0.x clients \
                  (plain or TLS with client certificates) against a server on loopback and \
                  reports latencies, throughput, errors and the server's RSS and CPU time. \
                  See BENCHMARKS.md."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// All clients connect at once; time until every node holds its first vote.
    ConnectStorm(LoadArgs),
    /// All connected, heartbeats only, for --duration; server CPU and RSS.
    Steady(LoadArgs),
    /// Every cluster splits in two at once; time until every node has its
    /// final vote, and a check that no two partitions ever both held ACK.
    MassSplit(LoadArgs),
    /// The server restarts (needs --spawn); time until every node votes again.
    Reconnect(LoadArgs),
    /// --loaded-clusters clusters connect (ramped) and heartbeat every
    /// --loaded-heartbeat-ms, on a thread of their own; then --clusters
    /// more connect at once. Reports the storm's figures and the loaded
    /// clients' echo round trips and drops during it.
    StormWhileLoaded(LoadArgs),
    /// Markdown ratio table (ours / reference) of JSON reports.
    Ratio(RatioArgs),
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Server address (loopback).
    #[arg(long, default_value = "127.0.0.1:5403", value_name = "HOST:PORT")]
    server: SocketAddr,
    /// Number of clusters.
    #[arg(long, default_value_t = 10)]
    clusters: usize,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// TLS: on (STARTTLS with a client certificate per cluster) or off.
    #[arg(long, default_value = "off", value_parser = on_off, action = clap::ArgAction::Set)]
    tls: bool,
    /// Directory with the CA made by `qnetd certs init` (qnetd-ca.pem and
    /// qnetd-ca-key.pem); the client certificates are issued from it.
    #[arg(long, value_name = "DIR", default_value = qnetd_certs::DEFAULT_TLS_DIR)]
    tls_dir: PathBuf,
    /// Decision algorithm: ffsplit, lms, 2nodelms or test.
    #[arg(long, default_value = "ffsplit", value_parser = algorithm)]
    algorithm: AlgorithmKind,
    /// Tie-breaker: lowest, highest or a node id.
    #[arg(long, default_value = "lowest", value_parser = tie_breaker)]
    tie_breaker: TieBreaker,
    /// Heartbeat (ECHO_REQUEST) interval, ms.
    #[arg(long, default_value_t = 8000)]
    heartbeat_ms: u32,
    /// How long steady runs, seconds.
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Bound of every wait for votes, seconds.
    #[arg(long, default_value = "120", value_parser = seconds)]
    timeout: Duration,
    /// Pause between the connect phase and the workload's phase, seconds.
    #[arg(long, default_value = "0", value_parser = seconds)]
    settle: Duration,
    /// Bound of one connection attempt (TCP, TLS, PREINIT..INIT_REPLY), seconds.
    #[arg(long, default_value = "8", value_parser = seconds)]
    connect_timeout: Duration,
    /// Upper bound of the random delay before a reconnect, ms (qdevice: up to 4500).
    #[arg(long, default_value_t = 1000)]
    reconnect_jitter_ms: u64,
    /// At most N first connection attempts in flight (0: all at once, a
    /// storm). Reconnections are never limited.
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_connecting: usize,
    /// storm-while-loaded: clusters connected and heartbeating before the
    /// storm.
    #[arg(long, default_value_t = 10)]
    loaded_clusters: usize,
    /// storm-while-loaded: heartbeat interval of the loaded clusters, ms
    /// (their dead-peer interval is 1.5 times that).
    #[arg(long, default_value_t = 1000)]
    loaded_heartbeat_ms: u32,
    /// One 127.x.y.z source address per cluster (on), or the kernel's choice (off).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    spread: bool,
    /// Cluster names are PREFIX00000, PREFIX00001, ...
    #[arg(long, default_value = "bench")]
    cluster_prefix: String,
    /// PID of the server, for its RSS and CPU time (from /proc).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Start the server with this command (`/bin/sh -c`), stop it at the
    /// end; reconnect restarts it.
    #[arg(long, value_name = "CMD")]
    spawn: Option<String>,
    /// Append the spawned server's output to this file.
    #[arg(long, value_name = "FILE")]
    server_log: Option<PathBuf>,
    /// Our server's metrics address (its --metrics-listen): the bench reads
    /// its decision-latency histogram around the workload's phase.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Name of the server in the report.
    #[arg(long, default_value = "server")]
    server_name: String,
    /// Free-text label (version) of the server in the report.
    #[arg(long, default_value = "")]
    server_label: String,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct RatioArgs {
    /// Our JSON report(s), in the order of --reference.
    #[arg(long, required = true, num_args = 1..)]
    ours: Vec<PathBuf>,
    /// The reference's JSON report(s).
    #[arg(long, required = true, num_args = 1..)]
    reference: Vec<PathBuf>,
}

fn on_off(s: &str) -> Result<bool, String> {
    qnetd_core::config::parse_bool(s).ok_or_else(|| format!("'{s}' is not on/off"))
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{v} s is out of range (0 to 86400)"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn algorithm(s: &str) -> Result<AlgorithmKind, String> {
    AlgorithmKind::ALL
        .into_iter()
        .find(|a| a.label() == s)
        .ok_or_else(|| format!("unknown algorithm '{s}' (ffsplit, lms, 2nodelms, test)"))
}

fn tie_breaker(s: &str) -> Result<TieBreaker, String> {
    match s {
        "lowest" => Ok(TieBreaker::Lowest),
        "highest" => Ok(TieBreaker::Highest),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(TieBreaker::NodeId)
            .ok_or_else(|| format!("'{s}' is not lowest, highest or a node id")),
    }
}

impl LoadArgs {
    fn config(&self) -> Config {
        Config {
            server: self.server,
            clusters: self.clusters,
            nodes: self.nodes,
            tls_dir: self.tls.then(|| self.tls_dir.clone()),
            algorithm: self.algorithm,
            tie_breaker: self.tie_breaker,
            heartbeat_ms: self.heartbeat_ms,
            duration: self.duration,
            timeout: self.timeout,
            settle: self.settle,
            connect_timeout: self.connect_timeout,
            reconnect_jitter: Duration::from_millis(self.reconnect_jitter_ms),
            max_connecting: self.max_connecting,
            loaded_clusters: self.loaded_clusters,
            loaded_heartbeat_ms: self.loaded_heartbeat_ms,
            spread: self.spread,
            cluster_prefix: self.cluster_prefix.clone(),
            server_pid: self.server_pid,
            spawn: self.spawn.clone(),
            server_log: self.server_log.clone(),
            metrics: self.metrics,
            server_name: self.server_name.clone(),
            server_label: self.server_label.clone(),
            progress: !self.quiet,
        }
    }
}

/// Entry point of `qnetd-bench`.
pub fn main(args: BenchArgs) -> ExitCode {
    let (workload, load) = match args.command {
        BenchCommand::ConnectStorm(a) => (Workload::ConnectStorm, a),
        BenchCommand::Steady(a) => (Workload::Steady, a),
        BenchCommand::MassSplit(a) => (Workload::MassSplit, a),
        BenchCommand::Reconnect(a) => (Workload::Reconnect, a),
        BenchCommand::StormWhileLoaded(a) => (Workload::StormWhileLoaded, a),
        BenchCommand::Ratio(r) => return ratio(r),
    };
    let cfg = load.config();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qnetd-bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match rt.block_on(run(&cfg, workload)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qnetd-bench: {e}");
            return ExitCode::from(2);
        }
    };
    rt.shutdown_timeout(Duration::from_secs(5));
    print!("{}", report.table());
    if let Some(path) = &load.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("qnetd-bench: cannot serialise the report: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("qnetd-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn ratio(r: RatioArgs) -> ExitCode {
    if r.ours.len() != r.reference.len() {
        eprintln!(
            "qnetd-bench ratio: {} --ours files but {} --reference files; give them in pairs",
            r.ours.len(),
            r.reference.len()
        );
        return ExitCode::from(2);
    }
    let mut pairs = Vec::new();
    for (a, b) in r.ours.iter().zip(&r.reference) {
        match (report::read_report(a), report::read_report(b)) {
            (Ok(x), Ok(y)) => pairs.push((x, y)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("qnetd-bench ratio: {e}");
                return ExitCode::from(2);
            }
        }
    }
    print!("{}", report::ratio_table(&pairs));
    ExitCode::SUCCESS
}
