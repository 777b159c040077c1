//! The flood suite's vocabulary: phases, options, per-phase and whole
//! reports, errors, and the small /proc and address helpers every part uses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;

use crate::bench::report::sample_proc;
use crate::client::ClientError;

/// One attack of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Thousands of sockets that connect and send nothing.
    Idle,
    /// Sockets that send a valid PREINIT one byte at a time, slowly.
    Slow,
    /// Maximum-size messages full of random bytes, as fast as possible.
    Garbage,
    /// Connect and close at once, as fast as possible.
    Churn,
    /// Clients that complete INIT and their lists, then never read while
    /// they keep causing votes and echo replies to be sent to them.
    NoRead,
    /// Headers claiming a 2 GiB message, then a trickle of body bytes.
    Oversize,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Idle,
        Phase::Slow,
        Phase::Garbage,
        Phase::Churn,
        Phase::NoRead,
        Phase::Oversize,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Slow => "slow",
            Phase::Garbage => "garbage",
            Phase::Churn => "churn",
            Phase::NoRead => "no-read",
            Phase::Oversize => "oversize",
        }
    }

    pub fn parse(s: &str) -> Result<Phase, UnknownPhase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.label() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// A phase name that is none of the suite's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPhase(pub String);

impl std::fmt::Display for UnknownPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown phase '{}': use idle, slow, garbage, churn, no-read or oversize",
            self.0
        )
    }
}

impl std::error::Error for UnknownPhase {}

/// Why the suite could not run.
#[derive(Debug)]
pub enum FloodError {
    /// A legitimate node could not join.
    Join {
        cluster: String,
        node: u32,
        error: ClientError,
    },
    /// A legitimate cluster did not reach ACK on both nodes in time.
    NoAck { cluster: String },
    /// The legitimate clients' thread or runtime could not start.
    Thread(std::io::Error),
    /// The legitimate clients' thread ended before it was ready.
    ThreadEnded,
}

impl std::fmt::Display for FloodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FloodError::Join {
                cluster,
                node,
                error,
            } => write!(f, "{cluster} node {node}: {error}"),
            FloodError::NoAck { cluster } => {
                write!(f, "{cluster}: the nodes did not both get ACK within 10 s")
            }
            FloodError::Thread(e) => {
                write!(f, "cannot start the legitimate clients' thread: {e}")
            }
            FloodError::ThreadEnded => f.write_str("the legitimate clients' thread ended early"),
        }
    }
}

impl std::error::Error for FloodError {}

/// What to run.
#[derive(Clone, Debug)]
pub struct FloodOptions {
    pub server: SocketAddr,
    /// The server's process, for RSS and liveness; `None` skips both.
    pub server_pid: Option<u32>,
    /// Legitimate 2-node clusters.
    pub legit_clusters: usize,
    /// Attack sockets per phase (idle, slow; a fraction for the others).
    pub sockets: usize,
    pub phase_duration: Duration,
    /// Quiet time after each phase before RSS "after" and the admission check.
    pub cooldown: Duration,
    /// Heartbeat (echo) interval of the legitimate clients.
    pub heartbeat_ms: u32,
    pub phases: Vec<Phase>,
    /// A name for the report (e.g. "qnetd" or "corosync-qnetd").
    pub label: String,
}

/// Figures of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub phase: Phase,
    /// Attack connections that were established.
    pub attack_connections: u64,
    /// Attack connections the server closed (or refused) while the phase ran.
    pub attack_closed_by_server: u64,
    /// Attack connection attempts that failed or timed out.
    pub attack_connect_failures: u64,
    pub legit_echoes: usize,
    pub legit_rtt_p50_ms: f64,
    pub legit_rtt_p99_ms: f64,
    pub legit_rtt_max_ms: f64,
    /// Echo requests not answered within 3 heartbeats.
    pub legit_echo_timeouts: u64,
    pub legit_dropped: u64,
    pub legit_vote_changes: u64,
    pub rss_before_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// CPU seconds the server used during the phase and its cooldown.
    pub server_cpu_seconds: Option<f64>,
    pub server_alive: bool,
    /// A new cluster could connect and got its vote after the phase.
    pub admits_new_clients: bool,
    pub passed: bool,
    /// Why the phase failed, if it did.
    pub failures: Vec<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct FloodReport {
    pub label: String,
    pub server: String,
    pub legit_clusters: usize,
    pub sockets: usize,
    pub phase_seconds: f64,
    pub phases: Vec<PhaseReport>,
    pub passed: bool,
}

/// RSS of a process in KiB, from /proc.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    sample_proc(pid).map(|p| p.rss_kib)
}

/// CPU time (user + system) a process has used, in seconds, from /proc.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    sample_proc(pid).map(|p| p.cpu_s)
}

pub(super) fn alive(pid: Option<u32>) -> bool {
    pid.is_none_or(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| {
                // State is the field after the ")" of the command name.
                let state = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                !matches!(state, Some("Z") | Some("X"))
            })
            .unwrap_or(false)
    })
}

/// The i-th attack source address: 127.1.x.y, 64 sockets per address.
pub(super) fn attack_source(i: usize) -> IpAddr {
    let a = i / 64;
    IpAddr::V4(Ipv4Addr::new(
        127,
        1,
        ((a / 250) % 250) as u8,
        (a % 250 + 1) as u8,
    ))
}

/// Counters of the attack side of one phase.
#[derive(Default)]
pub(super) struct AttackStats {
    pub(super) connected: AtomicU64,
    pub(super) closed_by_server: AtomicU64,
    pub(super) connect_failures: AtomicU64,
}
