//! One simulated corosync-qdevice 3.0.x node: connects (optionally from a
//! chosen 127.x.y.z source address), runs PREINIT / STARTTLS / INIT, sends
//! the KAP option and the config, membership and quorum lists, answers every
//! VOTE_INFO, sends ECHO_REQUEST at the heartbeat interval, and records every
//! change of the vote it holds with a timestamp. It reconnects after a lost
//! connection, as qdevice does, after a random delay.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::{Client, ClientError, NodeParams};
use qnetd_core::wire::{
    self, AlgorithmKind, Echo, ErrorCode, Heuristics, Message, MsgType, RingId, SeqOnly,
    TieBreaker, Vote,
};

/// The vote a node holds, as recorded (a `u8` so it fits an atomic).
pub mod held {
    /// No vote yet, or waiting (ASK_LATER, WAIT_FOR_REPLY, new membership sent).
    pub const NONE: u8 = 0;
    pub const ACK: u8 = 1;
    pub const NACK: u8 = 2;
    /// Not connected.
    pub const DISCONNECTED: u8 = 3;

    pub fn name(v: u8) -> &'static str {
        match v {
            NONE => "none",
            ACK => "ACK",
            NACK => "NACK",
            _ => "disconnected",
        }
    }
}

/// Which membership a node reports: the whole cluster, or its half after a
/// split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Whole = 0,
    /// The first `nodes / 2` node ids.
    Low = 1,
    /// The remaining node ids.
    High = 2,
}

/// One recorded change of the held vote.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Nanoseconds since the run's epoch.
    pub t_ns: u64,
    pub vote: u8,
    pub view: View,
    /// Connection number (1 for the first successful INIT).
    pub generation: u32,
}

/// What the coordinator tells every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Report the whole cluster as one membership.
    Whole,
    /// Report the node's half (new ring id).
    Split,
    /// Close the connection and stop.
    Stop,
}

/// Run-wide parameters shared by all nodes.
#[derive(Debug)]
pub struct RunCtx {
    pub server: SocketAddr,
    pub epoch: Instant,
    pub algorithm: AlgorithmKind,
    pub tie_breaker: TieBreaker,
    pub heartbeat_ms: u32,
    /// Bound of one connection attempt (TCP, TLS, PREINIT..INIT_REPLY).
    pub connect_timeout: Duration,
    /// Upper bound of the random delay before a reconnect.
    pub reconnect_jitter: Duration,
    /// Limits the first connection attempts in flight (`--max-connecting`);
    /// reconnections are not limited.
    pub first_connect: Option<Arc<tokio::sync::Semaphore>>,
    /// No node runs past this instant.
    pub deadline: Instant,
}

impl RunCtx {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Where and who a node is.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub cluster: Arc<str>,
    pub node_id: u32,
    /// Nodes in the cluster (ids 1..=nodes).
    pub nodes: u32,
    pub source: Option<IpAddr>,
    pub tls: Option<Arc<ClientConfig>>,
}

impl NodeSpec {
    /// The node's half after a split.
    pub fn half(&self) -> View {
        if self.node_id <= self.nodes / 2 {
            View::Low
        } else {
            View::High
        }
    }

    /// The node ids a view contains.
    pub fn members(&self, view: View) -> Vec<u32> {
        let low = self.nodes / 2;
        match view {
            View::Whole => (1..=self.nodes).collect(),
            View::Low => (1..=low).collect(),
            View::High => (low + 1..=self.nodes).collect(),
        }
    }

    /// Ring id of a view: lowest member, seq 4 for the whole cluster and 8
    /// after the split (every member of a partition reports the same one).
    pub fn ring(&self, view: View) -> RingId {
        let lowest = self.members(view).first().copied().unwrap_or(1);
        RingId::new(lowest, if view == View::Whole { 4 } else { 8 })
    }
}

/// What a node shares with the coordinator while it runs.
#[derive(Debug, Default)]
pub struct NodeShared {
    pub vote: AtomicU8,
    /// Successful INITs so far.
    pub generation: AtomicU32,
    /// Failed connection attempts or lost connections.
    pub errors: AtomicU32,
    /// Nanoseconds of the last membership list sent.
    pub last_membership_ns: AtomicU64,
    pub timeline: Mutex<Vec<Event>>,
    /// The first few error messages.
    pub error_samples: Mutex<Vec<String>>,
    /// Echo round trips, microseconds.
    pub echo_rtt_us: Mutex<Vec<u32>>,
}

impl NodeShared {
    pub fn new() -> NodeShared {
        NodeShared {
            vote: AtomicU8::new(held::DISCONNECTED),
            ..Default::default()
        }
    }

    fn record(&self, ctx: &RunCtx, vote: u8, view: View) {
        let generation = self.generation.load(Ordering::Relaxed);
        if let Ok(mut t) = self.timeline.lock() {
            let changed = t
                .last()
                .is_none_or(|e| e.vote != vote || e.view != view || e.generation != generation);
            if changed {
                t.push(Event {
                    t_ns: ctx.now_ns(),
                    vote,
                    view,
                    generation,
                });
            }
        }
        self.vote.store(vote, Ordering::Release);
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.error_samples.lock() {
            if s.len() < 3 {
                s.push(e);
            }
        }
    }
}

enum End {
    Stop,
}

/// Runs the node until told to stop or the deadline passes.
pub async fn run_node(
    spec: NodeSpec,
    shared: Arc<NodeShared>,
    ctx: Arc<RunCtx>,
    mut ctl: watch::Receiver<Phase>,
) {
    loop {
        if *ctl.borrow() == Phase::Stop || Instant::now() >= ctx.deadline {
            return;
        }
        let deadline = tokio::time::Instant::from_std(ctx.deadline);
        let r = tokio::time::timeout_at(deadline, session(&spec, &shared, &ctx, &mut ctl)).await;
        match r {
            Ok(Ok(End::Stop)) | Err(_) => return,
            Ok(Err(e)) => {
                let view = view_of(&spec, *ctl.borrow());
                shared.record(&ctx, held::DISCONNECTED, view);
                shared.error(format!(
                    "{} node {}: {e}",
                    spec.cluster.as_ref(),
                    spec.node_id
                ));
            }
        }
        // qdevice waits a random delay before reconnecting.
        let jitter_ms = ctx.reconnect_jitter.as_millis() as u64;
        let delay = if jitter_ms == 0 {
            0
        } else {
            pseudo_random(&spec, shared.errors.load(Ordering::Relaxed)) % jitter_ms
        };
        let wake = tokio::time::Instant::now() + Duration::from_millis(delay.max(10));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            r = ctl.changed() => if r.is_err() { return },
        }
    }
}

fn view_of(spec: &NodeSpec, phase: Phase) -> View {
    match phase {
        Phase::Split => spec.half(),
        _ => View::Whole,
    }
}

/// A cheap spread of reconnect delays (no RNG crate).
fn pseudo_random(spec: &NodeSpec, salt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in spec
        .cluster
        .bytes()
        .chain(spec.node_id.to_le_bytes())
        .chain(salt.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

async fn connect(spec: &NodeSpec, ctx: &RunCtx) -> Result<Client, ClientError> {
    // Also bounded by the caller's connect timeout (the whole handshake).
    let stream = crate::client::tcp_connect(ctx.server, spec.source, ctx.connect_timeout).await?;
    Client::from_tcp(stream)
}

/// One connection: handshake, lists, then messages until it ends.
async fn session(
    spec: &NodeSpec,
    shared: &NodeShared,
    ctx: &RunCtx,
    ctl: &mut watch::Receiver<Phase>,
) -> Result<End, ClientError> {
    let mut view = view_of(spec, *ctl.borrow_and_update());
    let mut ring = spec.ring(view);
    let params = NodeParams {
        cluster: spec.cluster.to_string(),
        node_id: spec.node_id,
        algorithm: ctx.algorithm,
        tie_breaker: ctx.tie_breaker,
        heartbeat_ms: ctx.heartbeat_ms,
        ring,
    };
    let first = shared.generation.load(Ordering::Relaxed) == 0;
    let _permit = match (&ctx.first_connect, first) {
        (Some(sem), true) => match Arc::clone(sem).acquire_owned().await {
            Ok(p) => Some(p),
            // Closed: the set-up is over and this node never connected.
            Err(_) => return Ok(End::Stop),
        },
        _ => None,
    };
    let mut client = tokio::time::timeout(ctx.connect_timeout, async {
        let mut c = connect(spec, ctx).await?;
        c.timeout = ctx.connect_timeout;
        let reply = match &spec.tls {
            Some(cfg) => c.handshake_tls(&params, Arc::clone(cfg)).await?,
            None => c.handshake(&params).await?,
        };
        if reply.error_code != Some(ErrorCode::NO_ERROR) {
            return Err(ClientError::Unexpected(format!(
                "INIT refused with error {}",
                reply
                    .error_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "(none)".into())
            )));
        }
        Ok(c)
    })
    .await
    .map_err(|_| ClientError::Timeout)??;
    shared.generation.fetch_add(1, Ordering::Relaxed);
    drop(_permit);
    shared.record(ctx, held::NONE, view);

    // Steps 2-5 of the real client, queued back to back.
    client.send_kap(true).await?;
    client.send_config(&spec.members(View::Whole), true).await?;
    shared
        .last_membership_ns
        .store(ctx.now_ns(), Ordering::Relaxed);
    client
        .send_membership(ring, &spec.members(view), Heuristics::Undefined)
        .await?;
    client
        .send_quorum(view == View::Whole, &spec.members(view))
        .await?;
    let mut seq = client.seq;
    let (mut stream, mut frames) = client.into_parts();
    stream.flush().await?;

    let hb = Duration::from_millis(u64::from(ctx.heartbeat_ms.max(1)));
    let mut next_echo = tokio::time::Instant::now() + hb;
    let mut pending_echo: Option<(u32, Instant)> = None;
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(256);
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    return Err(ClientError::Closed);
                }
                frames.push(&buf[..n]);
                while let Some(frame) = frames.next_frame() {
                    let raw = match frame {
                        qnetd_core::framing::Frame::Message(raw) => raw,
                        qnetd_core::framing::Frame::Skipped { msg_type, .. } => {
                            return Err(ClientError::Unexpected(format!(
                                "server sent a message of unknown type {msg_type}"
                            )))
                        }
                    };
                    let t = u16::from_be_bytes([raw[0], raw[1]]);
                    let t = MsgType::from_u16(t)
                        .ok_or_else(|| ClientError::Unexpected(format!("unknown type {t}")))?;
                    let msg = wire::decode(t, &raw[wire::HEADER_LEN..]).map_err(ClientError::Decode)?;
                    match msg {
                        Message::VoteInfo(v) => {
                            // Record before answering: the server moves the
                            // vote on only after this reply.
                            apply(shared, ctx, v.vote, v.ring_id, ring, view);
                            if let Some(s) = v.seq {
                                out.clear();
                                Message::VoteInfoReply(SeqOnly { seq: Some(s) }).encode(&mut out);
                                stream.write_all(&out).await?;
                                stream.flush().await?;
                            }
                        }
                        Message::NodeListReply(r) => {
                            apply(shared, ctx, r.vote, r.ring_id, ring, view);
                        }
                        Message::EchoReply(e) => {
                            if let (Some((s, at)), Some(got)) = (pending_echo, e.seq) {
                                if s == got {
                                    let us = at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                                    if let Ok(mut v) = shared.echo_rtt_us.lock() {
                                        v.push(us);
                                    }
                                    pending_echo = None;
                                }
                            }
                        }
                        Message::SetOptionReply(_) => {}
                        Message::ServerError(e) => {
                            return Err(ClientError::Unexpected(format!(
                                "SERVER_ERROR {}",
                                e.error_code.map(|c| c.to_string()).unwrap_or_default()
                            )));
                        }
                        m => {
                            return Err(ClientError::Unexpected(format!(
                                "unexpected {} from the server",
                                m.msg_type().name()
                            )));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_echo) => {
                next_echo += hb;
                seq += 1;
                pending_echo = Some((seq, Instant::now()));
                out.clear();
                Message::EchoRequest(Echo { seq: Some(seq) }).encode(&mut out);
                stream.write_all(&out).await?;
                stream.flush().await?;
            }
            r = ctl.changed() => {
                let phase = if r.is_err() { Phase::Stop } else { *ctl.borrow_and_update() };
                if phase == Phase::Stop {
                    let _ = stream.shutdown().await;
                    return Ok(End::Stop);
                }
                let new_view = view_of(spec, phase);
                if new_view != view {
                    // qdevice stops voting on a membership change until the
                    // server answers.
                    view = new_view;
                    ring = spec.ring(view);
                    shared.record(ctx, held::NONE, view);
                    shared.last_membership_ns.store(ctx.now_ns(), Ordering::Relaxed);
                    out.clear();
                    seq += 1;
                    Message::NodeList(wire::NodeList {
                        seq: Some(seq),
                        list_type: Some(wire::NodeListType::Membership),
                        ring_id: Some(ring),
                        nodes: spec.members(view).into_iter().map(wire::NodeInfo::new).collect(),
                        ..Default::default()
                    })
                    .encode(&mut out);
                    seq += 1;
                    Message::NodeList(wire::NodeList {
                        seq: Some(seq),
                        list_type: Some(wire::NodeListType::Quorum),
                        quorate: Some(false),
                        nodes: spec
                            .members(view)
                            .into_iter()
                            .map(|n| wire::NodeInfo {
                                state: Some(wire::NodeState::Member),
                                ..wire::NodeInfo::new(n)
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .encode(&mut out);
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
            }
        }
    }
}

/// Applies a vote the way qdevice does: only for the current ring;
/// NO_CHANGE keeps the vote, ASK_LATER and WAIT_FOR_REPLY mean waiting.
fn apply(
    shared: &NodeShared,
    ctx: &RunCtx,
    vote: Option<Vote>,
    vote_ring: Option<RingId>,
    ring: RingId,
    view: View,
) {
    if vote_ring != Some(ring) {
        return;
    }
    let v = match vote {
        Some(Vote::Ack) => held::ACK,
        Some(Vote::Nack) => held::NACK,
        Some(Vote::AskLater) | Some(Vote::WaitForReply) => held::NONE,
        Some(Vote::NoChange) | None => return,
    };
    shared.record(ctx, v, view);
}
