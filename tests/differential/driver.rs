//! Runs a scenario's steps against one server with our protocol client and
//! records, per node, what the server sent back.
//!
//! Determinism: a step is one action of one node (or a few sent back to
//! back). After it, the driver reads every connected node until each sent
//! request has been answered and nothing more arrived for `QUIET`; if an
//! lms/2nodelms node then holds WAIT_FOR_REPLY, it keeps reading until that
//! is resolved or the server's retry timer (heartbeat/4) had ample time to
//! fire. VOTE_INFOs are acknowledged at once unless the node is on hold.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qnetd_core::wire::{
    AlgorithmKind, Echo, Heuristics, HeuristicsChange, Message, NodeListType, RingId, SeqOnly,
    TieBreaker, Vote,
};
use qnetd_tools::client::{Client, ClientError, NodeParams};

/// Silence that ends a step once every request is answered.
pub fn quiet() -> Duration {
    let ms = std::env::var("QNETD_DIFF_QUIET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    Duration::from_millis(ms)
}

/// Upper bound for any reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one step's settling.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Heartbeat every node announces in INIT (lms retry timer = 1 s, DPD = 6 s).
pub const HEARTBEAT_MS: u32 = 4000;

/// One scripted action.
#[derive(Clone, Debug)]
pub enum Step {
    /// PREINIT + INIT (ring = `ring`), then SET_OPTION(KAP) if `kap` is set;
    /// all answers awaited in place.
    Connect { node: u32, ring: RingId },
    /// NODE_LIST config (initial or changed).
    Config {
        node: u32,
        nodes: Vec<u32>,
        initial: bool,
    },
    /// NODE_LIST membership (the node's new ring).
    Membership {
        node: u32,
        ring: RingId,
        members: Vec<u32>,
        heur: Heuristics,
    },
    /// NODE_LIST quorum (quorate).
    Quorum { node: u32, members: Vec<u32> },
    /// HEURISTICS_CHANGE.
    Heuristics { node: u32, heur: Heuristics },
    /// ASK_FOR_VOTE.
    Ask { node: u32 },
    /// From now on the node does not acknowledge VOTE_INFOs.
    Hold { node: u32 },
    /// Acknowledge the held VOTE_INFOs (oldest first) and stop holding.
    Release { node: u32 },
    /// Close the node's connection.
    Disconnect { node: u32 },
    /// Several steps (e.g. the memberships of a split): each is settled,
    /// but the wait for the lms retry timer only happens after the last.
    Group(Vec<Step>),
}

/// Cluster-wide INIT parameters of a scenario.
#[derive(Clone, Debug)]
pub struct ClusterParams {
    pub name: String,
    pub algorithm: AlgorithmKind,
    pub tie_breaker: TieBreaker,
    /// SET_OPTION(KAP) value sent after INIT (None: not sent).
    pub kap: Option<bool>,
}

/// Something a node received, as compared between the servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    InitError(u16),
    Reply {
        what: &'static str,
        vote: Option<Vote>,
        ring: Option<RingId>,
    },
    VoteInfo {
        seq: Option<u32>,
        vote: Option<Vote>,
        ring: Option<RingId>,
    },
    Error(u16),
    /// The server closed the connection.
    Closed,
    /// Driver-side failure (timeout waiting for a reply, undecodable data).
    Broken(String),
}

pub fn vote_name(v: Option<Vote>) -> &'static str {
    match v {
        Some(Vote::Ack) => "ACK",
        Some(Vote::Nack) => "NACK",
        Some(Vote::AskLater) => "ASK_LATER",
        Some(Vote::WaitForReply) => "WAIT",
        Some(Vote::NoChange) => "NO_CHANGE",
        None => "none",
    }
}

fn ring_name(r: Option<RingId>) -> String {
    match r {
        Some(r) => format!("{}/{}", r.node_id, r.seq),
        None => "-".into(),
    }
}

impl fmt::Display for Ev {
    /// Compact form used in traces; VOTE_INFO seqs are left out (they are
    /// shown by `Ev::verbose`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::InitError(c) => write!(f, "init:err{c}"),
            Ev::Reply { what, vote, ring } => {
                write!(f, "{what}:{}@{}", vote_name(*vote), ring_name(*ring))
            }
            Ev::VoteInfo { vote, ring, .. } => {
                write!(f, "vi:{}@{}", vote_name(*vote), ring_name(*ring))
            }
            Ev::Error(c) => write!(f, "err:{c}"),
            Ev::Closed => f.write_str("closed"),
            Ev::Broken(s) => write!(f, "BROKEN({s})"),
        }
    }
}

impl Ev {
    pub fn verbose(&self) -> String {
        match self {
            Ev::VoteInfo {
                seq: Some(s),
                vote,
                ring,
            } => format!("vi#{s}:{}@{}", vote_name(*vote), ring_name(*ring)),
            e => e.to_string(),
        }
    }
}

/// What a node ended with.
#[derive(Clone, Debug, Default)]
pub struct NodeResult {
    pub events: Vec<Ev>,
    /// The vote it holds by the client rule, or "gone" / "closed".
    pub final_vote: String,
}

impl NodeResult {
    pub fn trace(&self) -> String {
        self.events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
    pub fn verbose(&self) -> String {
        self.events
            .iter()
            .map(|e| e.verbose())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

struct Node {
    /// None once disconnected.
    conn: Option<Client>,
    events: Vec<Ev>,
    /// The vote by the client rule: only a vote for the current ring counts,
    /// NO_CHANGE keeps the previous one.
    vote: Option<Vote>,
    /// Requests not answered yet.
    pending: usize,
    hold: bool,
    held: Vec<u32>,
    connected: bool,
    /// Disconnected by the script (not by the server).
    left: bool,
    last_send: Instant,
}

impl Node {
    fn c(&mut self) -> &mut Client {
        self.conn.as_mut().expect("node is connected")
    }

    fn close(&mut self) {
        self.connected = false;
        self.conn = None;
    }

    fn apply(&mut self, vote: Option<Vote>, ring: Option<RingId>) {
        if ring.is_some() && ring == self.conn.as_ref().map(|c| c.ring) {
            match vote {
                None | Some(Vote::NoChange) => {}
                Some(v) => self.vote = Some(v),
            }
        }
    }

    fn broken(&mut self, what: String) {
        self.events.push(Ev::Broken(what));
        self.close();
    }
}

/// One run of a scenario against one server.
pub struct Run {
    addr: SocketAddr,
    cluster: ClusterParams,
    nodes: BTreeMap<u32, Node>,
}

impl Run {
    pub fn new(addr: SocketAddr, cluster: ClusterParams) -> Run {
        Run {
            addr,
            cluster,
            nodes: BTreeMap::new(),
        }
    }

    pub async fn step(&mut self, step: &Step) -> Result<(), String> {
        if let Step::Group(steps) = step {
            for (i, s) in steps.iter().enumerate() {
                self.act(s).await?;
                self.settle(i + 1 == steps.len()).await;
            }
        } else {
            self.act(step).await?;
            self.settle(true).await;
        }
        Ok(())
    }

    fn node(&mut self, id: u32) -> Result<&mut Node, String> {
        match self.nodes.get_mut(&id) {
            Some(n) if n.connected => Ok(n),
            Some(_) => Err(format!("node {id} is not connected")),
            None => Err(format!("node {id} never connected")),
        }
    }

    async fn act(&mut self, step: &Step) -> Result<(), String> {
        let io = |e: ClientError| e.to_string();
        match step {
            Step::Connect { node, ring } => {
                if self.nodes.get(node).is_some_and(|n| n.connected) {
                    return Err(format!("node {node} is already connected"));
                }
                let p = NodeParams {
                    cluster: self.cluster.name.clone(),
                    node_id: *node,
                    algorithm: self.cluster.algorithm,
                    tie_breaker: self.cluster.tie_breaker,
                    heartbeat_ms: HEARTBEAT_MS,
                    ring: *ring,
                };
                let mut c = Client::connect(self.addr).await.map_err(io)?;
                c.timeout = REPLY_TIMEOUT;
                let reply = c.handshake(&p).await.map_err(io)?;
                let mut n = Node {
                    conn: Some(c),
                    events: Vec::new(),
                    vote: None,
                    pending: 0,
                    hold: false,
                    held: Vec::new(),
                    connected: true,
                    left: false,
                    last_send: Instant::now(),
                };
                let code = reply.error_code.map(|c| c.0).unwrap_or(u16::MAX);
                if code != 0 {
                    n.events.push(Ev::InitError(code));
                } else if let Some(kap) = self.cluster.kap {
                    n.c().send_kap(kap).await.map_err(io)?;
                    n.pending += 1;
                }
                self.nodes.insert(*node, n);
            }
            Step::Config {
                node,
                nodes,
                initial,
            } => {
                let n = self.node(*node)?;
                n.c().send_config(nodes, *initial).await.map_err(io)?;
                n.pending += 1;
                n.last_send = Instant::now();
            }
            Step::Membership {
                node,
                ring,
                members,
                heur,
            } => {
                let n = self.node(*node)?;
                n.c()
                    .send_membership(*ring, members, *heur)
                    .await
                    .map_err(io)?;
                n.pending += 1;
                n.last_send = Instant::now();
            }
            Step::Quorum { node, members } => {
                let n = self.node(*node)?;
                n.c().send_quorum(true, members).await.map_err(io)?;
                n.pending += 1;
                n.last_send = Instant::now();
            }
            Step::Heuristics { node, heur } => {
                let n = self.node(*node)?;
                let seq = n.c().next_seq();
                n.c()
                    .send(&Message::HeuristicsChange(HeuristicsChange {
                        seq: Some(seq),
                        heuristics: Some(*heur),
                    }))
                    .await
                    .map_err(io)?;
                n.pending += 1;
                n.last_send = Instant::now();
            }
            Step::Ask { node } => {
                let n = self.node(*node)?;
                let seq = n.c().next_seq();
                n.c()
                    .send(&Message::AskForVote(SeqOnly { seq: Some(seq) }))
                    .await
                    .map_err(io)?;
                n.pending += 1;
                n.last_send = Instant::now();
            }
            Step::Hold { node } => {
                self.node(*node)?.hold = true;
            }
            Step::Release { node } => {
                let n = self.node(*node)?;
                n.hold = false;
                for seq in std::mem::take(&mut n.held) {
                    n.c().reply_vote_info(seq).await.map_err(io)?;
                }
                n.last_send = Instant::now();
            }
            Step::Group(_) => return Err("nested group".into()),
            Step::Disconnect { node } => {
                let n = self.node(*node)?;
                // Dropping the client closes the socket.
                n.close();
                n.left = true;
            }
        }
        Ok(())
    }

    /// Reads every connected node until all requests are answered and the
    /// servers are quiet (see the module header).
    async fn settle(&mut self, timer: bool) {
        let quiet = quiet();
        let lms = matches!(
            self.cluster.algorithm,
            AlgorithmKind::Lms | AlgorithmKind::TwoNodeLms
        );
        // The lms retry timer fires heartbeat/4 after a WAIT_FOR_REPLY.
        let timer_wait = Duration::from_millis(u64::from(HEARTBEAT_MS) / 4 + 500);
        let start = Instant::now();
        let mut last_msg = Instant::now();
        loop {
            let mut got = false;
            for n in self.nodes.values_mut().filter(|n| n.connected) {
                if n.last_send.elapsed() > Duration::from_millis(u64::from(HEARTBEAT_MS) / 2) {
                    let seq = n.c().next_seq();
                    if let Err(e) = n
                        .c()
                        .send(&Message::EchoRequest(Echo { seq: Some(seq) }))
                        .await
                    {
                        n.broken(format!("echo: {e}"));
                        continue;
                    }
                    n.last_send = Instant::now();
                }
                n.c().timeout = Duration::from_millis(5);
                let r = n.c().recv().await;
                n.c().timeout = REPLY_TIMEOUT;
                match r {
                    Err(ClientError::Timeout) => {}
                    Err(ClientError::Closed) => {
                        n.events.push(Ev::Closed);
                        n.close();
                    }
                    Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        n.events.push(Ev::Closed);
                        n.close();
                    }
                    Err(e) => n.broken(e.to_string()),
                    Ok(m) => {
                        // ECHO_REPLYs of the keep-alive do not count as activity.
                        got |= !matches!(m, Message::EchoReply(_));
                        if let Err(e) = handle(n, m).await {
                            n.broken(e);
                        }
                    }
                }
            }
            let now = Instant::now();
            if now - start > SETTLE_LIMIT {
                for n in self.nodes.values_mut().filter(|n| n.connected) {
                    n.broken("the server did not go quiet within 30 s".into());
                }
                return;
            }
            if got {
                last_msg = now;
                continue;
            }
            let pending = self.nodes.values().any(|n| n.connected && n.pending > 0);
            if pending {
                if now - start > REPLY_TIMEOUT {
                    for n in self.nodes.values_mut() {
                        if n.connected && n.pending > 0 {
                            n.broken("no reply within 5 s".into());
                        }
                    }
                    return;
                }
                continue;
            }
            if now - last_msg < quiet {
                continue;
            }
            let waiting = timer
                && lms
                && self
                    .nodes
                    .values()
                    .any(|n| n.connected && n.vote == Some(Vote::WaitForReply));
            if waiting && now - last_msg < timer_wait {
                continue;
            }
            return;
        }
    }

    /// Ends the run: what every node received and holds.
    pub fn finish(self) -> BTreeMap<u32, NodeResult> {
        self.nodes
            .into_iter()
            .map(|(id, n)| {
                let final_vote = if n.left {
                    "gone".to_string()
                } else if !n.connected {
                    "closed".to_string()
                } else {
                    vote_name(n.vote).to_string()
                };
                (
                    id,
                    NodeResult {
                        events: n.events,
                        final_vote,
                    },
                )
            })
            .collect()
    }
}

async fn handle(n: &mut Node, m: Message) -> Result<(), String> {
    match m {
        Message::VoteInfo(v) => {
            n.events.push(Ev::VoteInfo {
                seq: v.seq,
                vote: v.vote,
                ring: v.ring_id,
            });
            n.apply(v.vote, v.ring_id);
            if let Some(seq) = v.seq {
                if n.hold {
                    n.held.push(seq);
                } else {
                    n.c()
                        .reply_vote_info(seq)
                        .await
                        .map_err(|e| e.to_string())?;
                    n.last_send = Instant::now();
                }
            }
        }
        Message::NodeListReply(r) => {
            let what = match r.list_type {
                Some(NodeListType::InitialConfig) | Some(NodeListType::ChangedConfig) => "cfg",
                Some(NodeListType::Membership) => "mem",
                Some(NodeListType::Quorum) => "quo",
                None => "list?",
            };
            n.events.push(Ev::Reply {
                what,
                vote: r.vote,
                ring: r.ring_id,
            });
            n.apply(r.vote, r.ring_id);
            n.pending = n.pending.saturating_sub(1);
        }
        Message::HeuristicsChangeReply(r) => {
            n.events.push(Ev::Reply {
                what: "heur",
                vote: r.vote,
                ring: r.ring_id,
            });
            n.apply(r.vote, r.ring_id);
            n.pending = n.pending.saturating_sub(1);
        }
        Message::AskForVoteReply(r) => {
            n.events.push(Ev::Reply {
                what: "ask",
                vote: r.vote,
                ring: r.ring_id,
            });
            n.apply(r.vote, r.ring_id);
            n.pending = n.pending.saturating_sub(1);
        }
        Message::ServerError(e) => {
            n.events
                .push(Ev::Error(e.error_code.map(|c| c.0).unwrap_or(u16::MAX)));
            n.pending = n.pending.saturating_sub(1);
        }
        Message::SetOptionReply(_) => n.pending = n.pending.saturating_sub(1),
        Message::EchoReply(_) => {}
        m => return Err(format!("unexpected {:?}", m.msg_type())),
    }
    Ok(())
}
