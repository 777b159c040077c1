//! The cluster table: every cluster by name, each with its algorithm state
//! and a handle to each of its connected clients.
//!
//! Clusters live in a sharded map; each cluster has its own mutex, so
//! connections of different clusters never wait for each other. A cluster is
//! created under its map shard's lock when its first client joins and removed
//! under the same lock once it is empty, so a join never lands in a cluster
//! that is being dropped. Everything sent to a client (its own replies and the
//! VOTE_INFOs other clients' events cause) is queued while the cluster's mutex
//! is held, so a client receives its messages in decision order.
//!
//! Every decision's winner is reported to the [`VoteMemory`], and a
//! cluster created anew (its first client joined) is seeded from it: that
//! is how a restart keeps each cluster's vote where it was.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use qnetd_algorithms::{Action, AlgorithmKind, Cluster, JoinError, NodeId, RingId, TieBreaker};

use crate::state::VoteMemory;
use crate::wire::{Message, VoteInfo};

/// Something queued for one client's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// An encoded message to write.
    Message(Vec<u8>),
    /// An encoded VOTE_INFO to write. For a NACK the connection waits (a
    /// bounded time) for the client's VOTE_INFO_REPLY: the vote can move
    /// elsewhere only once the client let go of it.
    VoteInfo {
        bytes: Vec<u8>,
        seq: u32,
        nack: bool,
    },
    /// (Re)arm the client's algorithm timer.
    ArmTimer { after_ms: u64 },
    /// Cancel the client's algorithm timer.
    CancelTimer,
}

/// The server's handle on one connection.
pub trait Peer: Clone + Send + Sync + 'static {
    /// Queues an item without waiting. Returns false when the connection's
    /// queue is full or the connection is gone.
    fn send(&self, item: Outgoing) -> bool;
    /// Asks the connection to close, giving the reason for the log.
    fn kick(&self, reason: &'static str);
}

/// What the table keeps about a client's connection, for status output.
#[derive(Clone, Debug)]
pub struct ClientMeta {
    /// Peer address as the reference prints it (`ip:port`, no brackets).
    pub addr: String,
    pub tls_active: bool,
    pub cert_verified: bool,
    /// Server time (ms since start) when the client joined.
    pub joined_ms: u64,
    /// Server time (ms) of the last message received from the client,
    /// updated by its connection without taking the cluster lock.
    pub last_seen_ms: Arc<AtomicU64>,
}

/// One cluster: its algorithm state and its clients' handles.
#[derive(Debug)]
pub struct ClusterEntry<P> {
    pub cluster: Cluster,
    pub peers: HashMap<NodeId, P>,
    pub meta: HashMap<NodeId, ClientMeta>,
    /// Creation order among clusters (status lists clusters in this order).
    pub created: u64,
    /// The cluster name, printable (for logs and metrics labels).
    pub name: String,
    /// The exact cluster-name bytes (the table's key).
    pub key: Vec<u8>,
    /// Where decisions' winners are remembered.
    pub memory: Arc<VoteMemory>,
}

/// Logs a decision that changed somebody's vote (one structured event per
/// decision) and counts it by algorithm and reason.
pub fn log_decision(
    cluster: &str,
    algorithm: qnetd_algorithms::AlgorithmKind,
    trigger: NodeId,
    event: &str,
    decision: &qnetd_algorithms::DecisionRecord,
    actions: &[Action],
    reply: Option<qnetd_algorithms::Vote>,
) {
    use qnetd_algorithms::Vote;
    let sent = actions
        .iter()
        .any(|a| matches!(a, Action::SendVoteInfo { .. }))
        || matches!(reply, Some(Vote::Ack | Vote::Nack));
    if !sent {
        return;
    }
    let partitions: Vec<String> = decision
        .partitions
        .iter()
        .map(|p| {
            let nodes: Vec<String> = p.nodes.iter().map(|n| n.to_string()).collect();
            format!("{} [{}] score {}", p.ring, nodes.join(","), p.score)
        })
        .collect();
    let winner = decision
        .winner
        .map(|w| w.to_string())
        .unwrap_or_else(|| "none".into());
    tracing::info!(
        cluster,
        algorithm = algorithm.label(),
        trigger_node = trigger,
        event,
        winner = %winner,
        reason = decision.reason,
        ack_pending = decision.pending,
        partitions = %partitions.join("; "),
        "decision"
    );
    metrics::counter!(crate::metrics::DECISIONS, "algorithm" => algorithm.label(), "reason" => decision.reason)
        .increment(1);
}

impl<P: Peer> ClusterEntry<P> {
    /// Runs the algorithm on an event from client `node`, logs the decision
    /// it took (if it changed a vote) and queues the resulting VOTE_INFOs.
    /// The caller queues the reply afterwards, still under the lock.
    pub fn handle(
        &mut self,
        node: NodeId,
        event: qnetd_algorithms::Event,
        now_ms: u64,
    ) -> qnetd_algorithms::Outcome {
        let event_name = event.name();
        let outcome = self.cluster.handle(node, event, now_ms);
        if let Some(d) = &outcome.decision {
            self.remember(d);
            log_decision(
                &self.name,
                self.cluster.algorithm(),
                node,
                event_name,
                d,
                &outcome.actions,
                outcome.reply.ok(),
            );
        }
        self.dispatch(&outcome.actions);
        outcome
    }

    /// Reports a decision's winner (if any) to the vote memory.
    pub fn remember(&self, d: &qnetd_algorithms::DecisionRecord) {
        let Some(winner) = d.winner else {
            return;
        };
        if let Some(p) = d.partitions.iter().find(|p| p.ring == winner) {
            self.memory
                .record(&self.key, self.cluster.algorithm(), winner, &p.nodes);
        }
    }

    /// Carries out algorithm actions: queues VOTE_INFOs and timer changes for
    /// their clients. A client whose queue is full is kicked (the reference's
    /// policy); its disconnect then lets the algorithm re-decide.
    pub fn dispatch(&self, actions: &[Action]) {
        for action in actions {
            let (node, item) = match *action {
                Action::SendVoteInfo {
                    node,
                    seq,
                    vote,
                    ring,
                } => {
                    tracing::debug!(to_node = node, seq, vote = vote.label(), ring = %ring, "queueing vote info");
                    metrics::counter!(crate::metrics::VOTES_SENT, "cluster" => self.name.clone(), "vote" => vote.label()).increment(1);
                    let msg = Message::VoteInfo(VoteInfo {
                        seq: Some(seq),
                        vote: Some(vote),
                        ring_id: Some(ring),
                    });
                    (
                        node,
                        Outgoing::VoteInfo {
                            bytes: msg.to_bytes(),
                            seq,
                            nack: vote == qnetd_algorithms::Vote::Nack,
                        },
                    )
                }
                Action::ArmTimer { node, after_ms } => (node, Outgoing::ArmTimer { after_ms }),
                Action::CancelTimer { node } => (node, Outgoing::CancelTimer),
            };
            if let Some(peer) = self.peers.get(&node) {
                if !peer.send(item) {
                    tracing::warn!(
                        to_node = node,
                        "send queue of that node is full (it does not read); disconnecting it"
                    );
                    peer.kick("send queue full");
                }
            }
        }
    }
}

/// Shared reference to one cluster.
pub type SharedCluster<P> = Arc<Mutex<ClusterEntry<P>>>;

/// Locks a cluster, recovering from a poisoned mutex (a panic elsewhere must
/// not take every other client of the cluster down with it).
pub fn lock<P>(c: &SharedCluster<P>) -> MutexGuard<'_, ClusterEntry<P>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every cluster, by exact cluster-name bytes.
#[derive(Debug)]
pub struct Table<P> {
    clusters: DashMap<Vec<u8>, SharedCluster<P>>,
    clients: AtomicUsize,
    next_cluster: AtomicU64,
    memory: Arc<VoteMemory>,
}

impl<P: Peer> Default for Table<P> {
    fn default() -> Self {
        Self::with_memory(Arc::new(VoteMemory::in_memory()))
    }
}

/// A client's parameters from INIT.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub node: NodeId,
    pub algorithm: AlgorithmKind,
    pub tie_breaker: TieBreaker,
    pub ring: RingId,
    pub heartbeat_ms: u32,
    pub kap: bool,
    pub meta: ClientMeta,
}

impl<P: Peer> Table<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that remembers vote holders in `memory`.
    pub fn with_memory(memory: Arc<VoteMemory>) -> Self {
        Table {
            clusters: DashMap::new(),
            clients: AtomicUsize::new(0),
            next_cluster: AtomicU64::new(0),
            memory,
        }
    }

    /// The vote memory.
    pub fn memory(&self) -> &Arc<VoteMemory> {
        &self.memory
    }

    /// Adds a client to its cluster (creating the cluster), after the
    /// consistency checks of INIT. `on_joined` runs with the cluster locked,
    /// so the INIT_REPLY it queues precedes anything the cluster sends later.
    pub fn join(
        &self,
        name: &[u8],
        req: JoinRequest,
        peer: P,
        now_ms: u64,
        on_joined: impl FnOnce(&ClusterEntry<P>),
    ) -> Result<SharedCluster<P>, JoinError> {
        let shard_entry = self.clusters.entry(name.to_vec()).or_insert_with(|| {
            Arc::new(Mutex::new(ClusterEntry {
                cluster: Cluster::new(req.algorithm, req.tie_breaker),
                peers: HashMap::new(),
                meta: HashMap::new(),
                created: self.next_cluster.fetch_add(1, Ordering::Relaxed),
                name: String::from_utf8_lossy(name).into_owned(),
                key: name.to_vec(),
                memory: Arc::clone(&self.memory),
            }))
        });
        let shared = Arc::clone(shard_entry.value());
        let result = {
            let mut entry = lock(&shared);
            match entry.cluster.join(
                req.node,
                req.algorithm,
                req.tie_breaker,
                req.ring,
                req.heartbeat_ms,
                req.kap,
                now_ms,
            ) {
                Ok(()) => {
                    if entry.cluster.len() == 1 {
                        // A cluster (re)created: seed it with its remembered
                        // vote holder, if any.
                        if let Some(seed) = self.memory.seed(name, req.algorithm) {
                            tracing::info!(
                                members = ?seed.members,
                                hold_until_ms = seed.hold_until_ms,
                                "cluster seeded with the partition that last held the vote"
                            );
                            entry.cluster.restore(&seed);
                        }
                    }
                    entry.peers.insert(req.node, peer);
                    entry.meta.insert(req.node, req.meta.clone());
                    self.clients.fetch_add(1, Ordering::Relaxed);
                    on_joined(&entry);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        let empty = lock(&shared).cluster.is_empty();
        drop(shard_entry);
        if empty {
            // A refused first client must not leave an empty cluster behind.
            self.clusters
                .remove_if(name, |_, c| lock(c).cluster.is_empty());
        }
        result.map(|()| shared)
    }

    /// Removes a client from its cluster, letting the algorithm re-decide for
    /// the remaining clients, and drops the cluster when it becomes empty.
    pub fn leave(
        &self,
        name: &[u8],
        shared: &SharedCluster<P>,
        node: NodeId,
        server_going_down: bool,
        now_ms: u64,
    ) {
        let empty = {
            let mut entry = lock(shared);
            entry.meta.remove(&node);
            if entry.peers.remove(&node).is_some() {
                self.clients.fetch_sub(1, Ordering::Relaxed);
            }
            let (actions, decision) =
                entry
                    .cluster
                    .leave_with_decision(node, server_going_down, now_ms);
            if let Some(d) = &decision {
                entry.remember(d);
                log_decision(
                    &entry.name,
                    entry.cluster.algorithm(),
                    node,
                    "disconnect",
                    d,
                    &actions,
                    None,
                );
            }
            entry.dispatch(&actions);
            entry.cluster.is_empty()
        };
        if empty {
            self.clusters
                .remove_if(name, |_, c| lock(c).cluster.is_empty());
        }
    }

    /// Number of clients that completed INIT.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// A cluster by name.
    pub fn get(&self, name: &[u8]) -> Option<SharedCluster<P>> {
        self.clusters.get(name).map(|c| Arc::clone(c.value()))
    }

    /// Every cluster name with its shared state (a snapshot of the list).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, SharedCluster<P>)> {
        self.clusters
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }
}
