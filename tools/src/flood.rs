//! `qnetd-flood`: the hardening suite's attack tool. While legitimate 2-node
//! clusters heartbeat and hold their votes, it runs, one phase after the
//! other, floods that must not hurt them: idle sockets, one-byte-at-a-time
//! sockets, maximum-size garbage messages, connect/close churn, clients that
//! complete INIT and then never read while votes are sent to them, and
//! oversize length claims.
//!
//! Each phase reports the legitimate clients' echo round trip (p50/p99/max),
//! whether any of them was dropped or saw its vote change, the server's RSS
//! before, at peak and after (from /proc of `--server-pid`), and whether the
//! server still admits a new cluster afterwards. Everything is bounded in
//! count and time, and only loopback addresses are used (attack sockets
//! spread over 127.1.0.0/16 so that one address's limit is not the only
//! defence tested).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::bench::report::{sample_proc, Latency};
use crate::client::{tcp_connect, Client, ClientError, NodeParams};
use qnetd_core::wire::{AlgorithmKind, Echo, Heuristics, Message, RingId, TieBreaker, Vote};

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

    pub fn parse(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.label() == s)
            .ok_or_else(|| {
                format!("unknown phase '{s}': use idle, slow, garbage, churn, no-read or oversize")
            })
    }
}

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
fn rss_kib(pid: u32) -> Option<u64> {
    sample_proc(pid).map(|p| p.rss_kib)
}

/// CPU time (user + system) a process has used, in seconds, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    sample_proc(pid).map(|p| p.cpu_s)
}

fn alive(pid: Option<u32>) -> bool {
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
fn attack_source(i: usize) -> IpAddr {
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
struct AttackStats {
    connected: AtomicU64,
    closed_by_server: AtomicU64,
    connect_failures: AtomicU64,
}

/// Shared state of the legitimate clients.
struct Legit {
    stop: AtomicBool,
    /// Round trips in microseconds, by phase index (usize::MAX = none).
    rtts: Mutex<Vec<Vec<u32>>>,
    phase: AtomicUsize,
    dropped: AtomicU64,
    vote_changes: AtomicU64,
    echo_timeouts: AtomicU64,
}

fn params(cluster: &str, node_id: u32, heartbeat_ms: u32, ring: RingId) -> NodeParams {
    NodeParams {
        cluster: cluster.to_string(),
        node_id,
        algorithm: AlgorithmKind::Ffsplit,
        tie_breaker: TieBreaker::Lowest,
        heartbeat_ms,
        ring,
    }
}

/// Connects a node of a 2-node ffsplit cluster the way qdevice does (no
/// TLS) and sends its lists. Returns the client and the votes received so
/// far (acknowledged).
async fn join_pair_node(
    server: SocketAddr,
    source: IpAddr,
    cluster: &str,
    node: u32,
    heartbeat_ms: u32,
) -> Result<(Client, Option<Vote>), ClientError> {
    let ring = RingId::new(1, 4);
    let mut c = Client::connect_from(server, source).await?;
    let r = c
        .handshake(&params(cluster, node, heartbeat_ms, ring))
        .await?;
    if r.error_code != Some(qnetd_core::wire::ErrorCode::NO_ERROR) {
        return Err(ClientError::Unexpected(format!(
            "INIT refused with error {:?}",
            r.error_code
        )));
    }
    let mut vote = None;
    let mut apply = |infos: Vec<qnetd_core::wire::VoteInfo>, reply_vote: Option<Vote>| {
        for v in infos.iter().map(|i| i.vote).chain([reply_vote]) {
            if let Some(v @ (Vote::Ack | Vote::Nack)) = v {
                vote = Some(v);
            }
        }
    };
    c.send_config(&[1, 2], true).await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    c.send_membership(ring, &[1, 2], Heuristics::Undefined)
        .await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    c.send_quorum(true, &[1, 2]).await?;
    let (infos, r) = c.recv_node_list_reply().await?;
    apply(infos, r.vote);
    Ok((c, vote))
}

/// Waits (bounded) until `c` holds ACK, acknowledging VOTE_INFOs.
async fn wait_ack(c: &mut Client, mut vote: Option<Vote>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while vote != Some(Vote::Ack) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, c.recv_vote_info()).await {
            Ok(Ok(v)) => {
                if let Some(v @ (Vote::Ack | Vote::Nack)) = v.vote {
                    vote = Some(v);
                }
            }
            _ => return false,
        }
    }
    true
}

/// Sets up one legitimate cluster: both nodes hold ACK.
async fn legit_pair(
    server: SocketAddr,
    name: &str,
    heartbeat_ms: u32,
) -> Result<[Client; 2], String> {
    let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut a, va) = join_pair_node(server, src, name, 1, heartbeat_ms)
        .await
        .map_err(|e| format!("{name} node 1: {e}"))?;
    let (mut b, vb) = join_pair_node(server, src, name, 2, heartbeat_ms)
        .await
        .map_err(|e| format!("{name} node 2: {e}"))?;
    let limit = Duration::from_secs(10);
    if !wait_ack(&mut b, vb, limit).await || !wait_ack(&mut a, va, limit).await {
        return Err(format!(
            "{name}: the nodes did not both get ACK within 10 s"
        ));
    }
    Ok([a, b])
}

/// The heartbeat loop of one legitimate node: an echo every heartbeat,
/// round trips recorded under the current phase; any VOTE_INFO other than
/// ACK counts as a vote change; a closed connection as a drop.
async fn legit_node(mut c: Client, heartbeat_ms: u32, legit: Arc<Legit>) {
    let hb = Duration::from_millis(u64::from(heartbeat_ms));
    let mut seq = 1000u32;
    let mut next = tokio::time::Instant::now() + hb;
    while !legit.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next).await;
        next += hb;
        seq = seq.wrapping_add(1);
        let sent = Instant::now();
        if c.send(&Message::EchoRequest(Echo { seq: Some(seq) }))
            .await
            .is_err()
        {
            legit.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let deadline = sent + 3 * hb;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                legit.echo_timeouts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match tokio::time::timeout(left, c.recv()).await {
                Err(_) | Ok(Err(ClientError::Timeout)) => {
                    legit.echo_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(_)) => {
                    if !legit.stop.load(Ordering::Relaxed) {
                        legit.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Ok(Ok(Message::EchoReply(e))) if e.seq == Some(seq) => {
                    let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    let phase = legit.phase.load(Ordering::Relaxed);
                    if let Ok(mut r) = legit.rtts.lock() {
                        if let Some(v) = r.get_mut(phase) {
                            v.push(us);
                        }
                    }
                    break;
                }
                Ok(Ok(Message::VoteInfo(v))) => {
                    if let Some(s) = v.seq {
                        let _ = c.reply_vote_info(s).await;
                    }
                    if v.vote != Some(Vote::Ack) {
                        legit.vote_changes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Random bytes (xorshift; reproducible, no dependency).
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Waits until the server closes `s` (or `until`), discarding input.
/// Returns true if the server closed it.
async fn until_closed(s: &mut TcpStream, until: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One attack socket's life, repeated until the phase ends.
async fn attacker(
    phase: Phase,
    i: usize,
    server: SocketAddr,
    until: tokio::time::Instant,
    stats: Arc<AttackStats>,
) {
    let source = attack_source(i);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    let mut round = 0u32;
    while tokio::time::Instant::now() < until {
        round += 1;
        if phase == Phase::NoRead {
            no_read_pair(i, round, server, until, &stats).await;
            continue;
        }
        let mut s = match tcp_connect(server, Some(source), Duration::from_secs(2)).await {
            Ok(s) => s,
            Err(_) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let closed = match phase {
            Phase::Idle => until_closed(&mut s, until).await,
            Phase::Churn => {
                drop(s);
                tokio::task::yield_now().await;
                false
            }
            Phase::Slow => {
                // A valid PREINIT, one byte every 200 ms.
                let mut msg = Vec::new();
                qnetd_core::wire::try_encode(
                    &Message::Preinit(qnetd_core::wire::Preinit {
                        seq: Some(1),
                        cluster_name: Some(format!("slow-{i}").into_bytes()),
                    }),
                    &mut msg,
                )
                .unwrap_or_default();
                let mut closed = false;
                for b in msg.iter().cycle() {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    if s.write_all(&[*b]).await.is_err() {
                        closed = true;
                        break;
                    }
                    let mut probe = [0u8; 64];
                    match tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                closed
            }
            Phase::Garbage => {
                // Known type (PREINIT), maximum accepted length, random body;
                // replies are read and discarded so the stream keeps flowing.
                let (mut rd, mut wr) = s.into_split();
                let reader = tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = rd.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
                // Four different messages, made once: the attack's CPU goes
                // into sending, not into making noise.
                let msgs: Vec<Vec<u8>> = (0..4)
                    .map(|_| {
                        let mut msg = vec![0u8; 32768];
                        msg[..2].copy_from_slice(&0u16.to_be_bytes());
                        msg[2..6].copy_from_slice(&(32768u32 - 6).to_be_bytes());
                        noise.fill(&mut msg[6..]);
                        msg
                    })
                    .collect();
                let mut closed = false;
                for msg in msgs.iter().cycle() {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    match tokio::time::timeout_at(until, wr.write_all(msg)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                reader.abort();
                closed
            }
            Phase::Oversize => {
                let mut hdr = vec![0x00, 0x0a, 0x7f, 0xff, 0xff, 0xff];
                hdr.extend_from_slice(&[0u8; 1024]);
                let mut closed = s.write_all(&hdr).await.is_err();
                let chunk = [0u8; 1024];
                while !closed && tokio::time::Instant::now() < until {
                    let mut probe = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => closed = true,
                        _ => closed = s.write_all(&chunk).await.is_err(),
                    }
                }
                closed
            }
            Phase::NoRead => unreachable!("handled above"),
        };
        if closed {
            stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A 2-node cluster whose nodes complete INIT and their lists, then never
/// read again: node 1 keeps sending new membership lists (each causes
/// VOTE_INFOs to both) and echo requests, until the server drops it.
async fn no_read_pair(
    i: usize,
    round: u32,
    server: SocketAddr,
    until: tokio::time::Instant,
    stats: &AttackStats,
) {
    let name = format!("noread-{i}-{round}");
    let source = attack_source(i);
    let hb = 1000;
    let (a, b) = match (
        join_pair_node(server, source, &name, 1, hb).await,
        join_pair_node(server, source, &name, 2, hb).await,
    ) {
        (Ok((a, _)), Ok((b, _))) => (a, b),
        _ => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
    };
    stats.connected.fetch_add(2, Ordering::Relaxed);
    // Both nodes report the same new ring each round (a stable membership
    // change): every round makes the server send both a VOTE_INFO, a
    // NODE_LIST_REPLY and an ECHO_REPLY, none of which is ever read.
    let mut nodes = [a, b];
    let mut seq = 100u32;
    let mut ring_seq = 10u64;
    let mut closed = false;
    'rounds: while tokio::time::Instant::now() < until {
        ring_seq += 4;
        seq += 1;
        let mut out = Vec::new();
        let lists = [
            Message::NodeList(qnetd_core::wire::NodeList {
                seq: Some(seq),
                list_type: Some(qnetd_core::wire::NodeListType::Membership),
                ring_id: Some(RingId::new(1, ring_seq)),
                nodes: vec![
                    qnetd_core::wire::NodeInfo::new(1),
                    qnetd_core::wire::NodeInfo::new(2),
                ],
                ..Default::default()
            }),
            Message::EchoRequest(Echo { seq: Some(seq) }),
        ];
        for m in &lists {
            let _ = qnetd_core::wire::try_encode(m, &mut out);
        }
        // Plus a burst of echo requests, whose replies fill the socket
        // buffers and then the server's send queue for this client.
        for k in 0..200u32 {
            let echo = Message::EchoRequest(Echo {
                seq: Some(seq.wrapping_mul(1000).wrapping_add(k)),
            });
            let _ = qnetd_core::wire::try_encode(&echo, &mut out);
        }
        for c in nodes.iter_mut() {
            match tokio::time::timeout(Duration::from_secs(2), c.send_raw(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    closed = true;
                    break 'rounds;
                }
                // The server stopped reading us (it is dropping us, or the
                // socket buffers are full): keep the socket, try again.
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if closed {
        stats.closed_by_server.fetch_add(2, Ordering::Relaxed);
    }
}

/// Runs the suite.
pub async fn run(opts: &FloodOptions) -> Result<FloodReport, String> {
    qnetd_core::sys::raise_nofile_limit(None);
    let legit = Arc::new(Legit {
        stop: AtomicBool::new(false),
        rtts: Mutex::new(vec![Vec::new(); opts.phases.len()]),
        phase: AtomicUsize::new(usize::MAX),
        dropped: AtomicU64::new(0),
        vote_changes: AtomicU64::new(0),
        echo_timeouts: AtomicU64::new(0),
    });
    // Legitimate clusters first; they must all hold ACK before any attack.
    // They run on a runtime of their own (one thread), so that the attack
    // tasks of this process cannot starve them: a late echo must be the
    // server's doing.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let legit_thread = {
        let legit = Arc::clone(&legit);
        let (server, clusters, hb) = (opts.server, opts.legit_clusters, opts.heartbeat_ms);
        std::thread::Builder::new()
            .name("legit-clients".into())
            .spawn(move || {
                // Ahead of this process's attack threads for the CPU (when
                // allowed: root), so their load does not show up as server
                // latency. Failure only makes the figures more pessimistic.
                // SAFETY: plain syscalls on the calling thread.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, -10);
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = JoinSet::new();
                    for i in 0..clusters {
                        match legit_pair(server, &format!("legit-{i}"), hb).await {
                            Ok(pair) => {
                                for c in pair {
                                    tasks.spawn(legit_node(c, hb, Arc::clone(&legit)));
                                }
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    tasks.abort_all();
                });
            })
            .map_err(|e| format!("cannot start the legitimate clients' thread: {e}"))?
    };
    ready_rx
        .await
        .map_err(|_| "the legitimate clients' thread ended early".to_string())??;

    let mut reports = Vec::new();
    for (idx, phase) in opts.phases.iter().copied().enumerate() {
        let before = opts.server_pid.and_then(rss_kib);
        let cpu0 = opts.server_pid.and_then(cpu_seconds);
        let dropped0 = legit.dropped.load(Ordering::Relaxed);
        let changes0 = legit.vote_changes.load(Ordering::Relaxed);
        let timeouts0 = legit.echo_timeouts.load(Ordering::Relaxed);
        legit.phase.store(idx, Ordering::Relaxed);
        eprintln!(
            "[{}] phase {} ({}/{}) for {:?}",
            opts.label,
            phase.label(),
            idx + 1,
            opts.phases.len(),
            opts.phase_duration
        );

        let stats = Arc::new(AttackStats::default());
        let until = tokio::time::Instant::now() + opts.phase_duration;
        let count = match phase {
            Phase::Idle | Phase::Slow | Phase::Oversize => opts.sockets,
            Phase::Garbage => (opts.sockets / 20).clamp(1, 64),
            Phase::Churn => (opts.sockets / 20).clamp(1, 32),
            Phase::NoRead => (opts.sockets / 20).clamp(1, 100),
        };
        let mut attackers = JoinSet::new();
        for i in 0..count {
            attackers.spawn(attacker(phase, i, opts.server, until, Arc::clone(&stats)));
        }
        // Sample RSS while the phase runs.
        let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
        let sampler = opts.server_pid.map(|pid| {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                loop {
                    if let Some(r) = rss_kib(pid) {
                        peak.fetch_max(r, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        // Every attacker ends by `until`; bound the wait anyway.
        let _ = tokio::time::timeout(opts.phase_duration + Duration::from_secs(10), async {
            while attackers.join_next().await.is_some() {}
        })
        .await;
        attackers.abort_all();
        tokio::time::sleep(opts.cooldown).await;
        if let Some(s) = sampler {
            s.abort();
        }
        let after = opts.server_pid.and_then(rss_kib);
        let cpu = match (cpu0, opts.server_pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let server_alive = alive(opts.server_pid);
        let admits = server_alive
            && tokio::time::timeout(
                Duration::from_secs(15),
                legit_pair(opts.server, &format!("late-{idx}"), opts.heartbeat_ms),
            )
            .await
            .is_ok_and(|r| r.is_ok());

        let rtts = legit
            .rtts
            .lock()
            .map(|r| r[idx].clone())
            .unwrap_or_default();
        let rtt = Latency::from_ms(rtts.iter().map(|us| f64::from(*us) / 1000.0).collect());
        let dropped = legit.dropped.load(Ordering::Relaxed) - dropped0;
        let changes = legit.vote_changes.load(Ordering::Relaxed) - changes0;
        let timeouts = legit.echo_timeouts.load(Ordering::Relaxed) - timeouts0;
        let mut failures = Vec::new();
        if !server_alive {
            failures.push("the server process is gone".to_string());
        }
        if dropped > 0 {
            failures.push(format!("{dropped} legitimate client(s) dropped"));
        }
        if changes > 0 {
            failures.push(format!("{changes} legitimate vote change(s)"));
        }
        if !admits {
            failures.push("a new cluster could not connect and get ACK within 15 s".into());
        }
        reports.push(PhaseReport {
            phase,
            attack_connections: stats.connected.load(Ordering::Relaxed),
            attack_closed_by_server: stats.closed_by_server.load(Ordering::Relaxed),
            attack_connect_failures: stats.connect_failures.load(Ordering::Relaxed),
            legit_echoes: rtt.count,
            legit_rtt_p50_ms: rtt.p50_ms,
            legit_rtt_p99_ms: rtt.p99_ms,
            legit_rtt_max_ms: rtt.max_ms,
            legit_echo_timeouts: timeouts,
            legit_dropped: dropped,
            legit_vote_changes: changes,
            rss_before_kib: before,
            rss_peak_kib: opts.server_pid.map(|_| peak.load(Ordering::Relaxed)),
            rss_after_kib: after,
            server_cpu_seconds: cpu,
            server_alive,
            admits_new_clients: admits,
            passed: failures.is_empty(),
            failures,
        });
        if !server_alive {
            break;
        }
    }
    legit.stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(());
    let _ = tokio::task::spawn_blocking(move || legit_thread.join()).await;
    let passed = reports.len() == opts.phases.len() && reports.iter().all(|r| r.passed);
    Ok(FloodReport {
        label: opts.label.clone(),
        server: opts.server.to_string(),
        legit_clusters: opts.legit_clusters,
        sockets: opts.sockets,
        phase_seconds: opts.phase_duration.as_secs_f64(),
        phases: reports,
        passed,
    })
}

fn mib(k: Option<u64>) -> String {
    k.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The report as a Markdown table.
pub fn markdown(r: &FloodReport) -> String {
    let mut s = format!(
        "**{}** ({}; {} legitimate clusters, {} attack sockets, {} s per phase): {}\n\n",
        r.label,
        r.server,
        r.legit_clusters,
        r.sockets,
        r.phase_seconds,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    s.push_str("| phase | attack conns | closed by server | legit echo p50 / p99 / max (ms) | echo timeouts | dropped | vote changes | RSS before / peak / after (MiB) | server CPU (s) | admits new | result |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &r.phases {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} | {} | {} / {} / {} | {} | {} | {} |\n",
            p.phase.label(),
            p.attack_connections,
            p.attack_closed_by_server,
            p.legit_rtt_p50_ms,
            p.legit_rtt_p99_ms,
            p.legit_rtt_max_ms,
            p.legit_echo_timeouts,
            p.legit_dropped,
            p.legit_vote_changes,
            mib(p.rss_before_kib),
            mib(p.rss_peak_kib),
            mib(p.rss_after_kib),
            p.server_cpu_seconds.map_or("-".into(), |c| format!("{c:.2}")),
            if p.admits_new_clients { "yes" } else { "no" },
            if p.passed {
                "pass".to_string()
            } else {
                format!("FAIL: {}", p.failures.join("; "))
            }
        ));
    }
    s
}
