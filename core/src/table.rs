//! The cluster table: every cluster by name, each with its algorithm state
//! and the mailbox of each of its connected clients.
//!
//! Clusters live in a sharded map; each cluster has its own mutex, so
//! connections of different clusters never wait for each other. A cluster is
//! created under its map shard's lock when its first client joins and removed
//! under the same lock once it is empty, so a join never lands in a cluster
//! that is being dropped.
//!
//! Ordering rule: everything a decision sends to other clients is put into
//! their mailboxes while the cluster's mutex is held, so every client
//! receives its deliveries in the order the cluster decided them.
//!
//! Every decision's winner is reported to the [`VoteMemory`], and a cluster
//! created anew (its first client joined) is seeded from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use qnetd_algorithms::{
    Action, AlgorithmKind, Cluster, DecisionRecord, Event, JoinError, NodeId, Outcome, RingId,
    TieBreaker, Vote,
};

use crate::close::CloseReason;
use crate::mailbox::{Delivery, Mailbox};
use crate::memory::VoteMemory;
use crate::telemetry;

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
    /// updated by its session without taking the cluster lock.
    pub last_seen_ms: Arc<AtomicU64>,
}

/// One cluster: its algorithm state and its clients' mailboxes.
#[derive(Debug)]
pub struct ClusterEntry {
    pub cluster: Cluster,
    pub mailboxes: HashMap<NodeId, Arc<Mailbox>>,
    pub meta: HashMap<NodeId, ClientMeta>,
    /// Creation order among clusters (status lists clusters in this order).
    pub created: u64,
    /// The cluster name, printable (for logs and metrics labels).
    pub name: String,
    /// The exact cluster-name bytes (the table's key).
    pub key: Vec<u8>,
    memory: Arc<VoteMemory>,
    /// Unix time (ms) of the server clock's origin, to date decisions.
    unix_origin_ms: u64,
}

/// Logs a decision that changed somebody's vote (one structured event per
/// decision) and counts it by algorithm and reason.
fn log_decision(
    cluster: &str,
    algorithm: AlgorithmKind,
    trigger: NodeId,
    event: &str,
    decision: &DecisionRecord,
    actions: &[Action],
    reply: Option<Vote>,
) {
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
    metrics::counter!(telemetry::DECISIONS, "algorithm" => algorithm.label(), "reason" => decision.reason)
        .increment(1);
}

impl ClusterEntry {
    /// Runs the algorithm on an event from (or, for a timer, about) client
    /// `node`, logs the decision it took (if it changed a vote), remembers
    /// the winner and delivers the resulting VOTE_INFOs and timer changes to
    /// the clients' mailboxes. The caller queues its reply afterwards,
    /// still under the lock.
    pub fn handle(&mut self, node: NodeId, event: Event, now_ms: u64) -> Outcome {
        let event_name = event.name();
        let outcome = self.cluster.handle(node, event, now_ms);
        if let Some(d) = &outcome.decision {
            self.remember(d, now_ms);
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

    /// Removes client `node`, letting the algorithm re-decide for the
    /// others (unless the server is going down).
    fn remove(&mut self, node: NodeId, server_going_down: bool, now_ms: u64) -> bool {
        self.meta.remove(&node);
        let was_there = self.mailboxes.remove(&node).is_some();
        let (actions, decision) = self
            .cluster
            .leave_with_decision(node, server_going_down, now_ms);
        if let Some(d) = &decision {
            self.remember(d, now_ms);
            log_decision(
                &self.name,
                self.cluster.algorithm(),
                node,
                "disconnect",
                d,
                &actions,
                None,
            );
        }
        self.dispatch(&actions);
        was_there
    }

    /// Reports the partition that may hold the vote after this decision
    /// (if any) to the vote memory: for lms and 2nodelms only once the ACK
    /// was granted, since until then the previous holders keep theirs.
    fn remember(&self, d: &DecisionRecord, now_ms: u64) {
        let algorithm = self.cluster.algorithm();
        if let Some(p) = d.remembered_holder(algorithm) {
            self.memory.record(
                &self.key,
                algorithm,
                p.ring,
                &p.nodes,
                self.unix_origin_ms + now_ms,
            );
        }
    }

    /// Delivers algorithm actions to their clients' mailboxes. A client
    /// whose mailbox is full is kicked (the reference's policy); its
    /// disconnect then lets the algorithm re-decide.
    fn dispatch(&self, actions: &[Action]) {
        for action in actions {
            let (node, delivery) = match *action {
                Action::SendVoteInfo {
                    node,
                    seq,
                    vote,
                    ring,
                } => {
                    tracing::debug!(to_node = node, seq, vote = vote.label(), ring = %ring, "vote info decided");
                    (node, Delivery::VoteInfo { seq, vote, ring })
                }
                Action::ArmTimer { node, after_ms } => (node, Delivery::ArmTimer { after_ms }),
                Action::CancelTimer { node } => (node, Delivery::CancelTimer),
            };
            if let Some(mailbox) = self.mailboxes.get(&node) {
                if !mailbox.deliver(delivery) {
                    tracing::warn!(
                        cluster = %self.name,
                        to_node = node,
                        "send queue of that node is full (it does not read); disconnecting it"
                    );
                    mailbox.kick(CloseReason::SendQueueFull);
                }
            }
        }
    }
}

/// Shared reference to one cluster.
pub type SharedCluster = Arc<Mutex<ClusterEntry>>;

/// Locks a cluster, recovering from a poisoned mutex (a panic elsewhere must
/// not take every other client of the cluster down with it).
pub fn lock(c: &SharedCluster) -> MutexGuard<'_, ClusterEntry> {
    c.lock().unwrap_or_else(|e| e.into_inner())
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

/// Every cluster, by exact cluster-name bytes.
#[derive(Debug)]
pub struct Table {
    clusters: DashMap<Vec<u8>, SharedCluster>,
    clients: AtomicUsize,
    next_cluster: AtomicU64,
    memory: Arc<VoteMemory>,
    unix_origin_ms: u64,
}

impl Default for Table {
    fn default() -> Self {
        Self::new(Arc::new(VoteMemory::in_memory()), 0)
    }
}

impl Table {
    /// A table that remembers vote holders in `memory`; the server clock's
    /// origin is `unix_origin_ms` (Unix time, ms).
    pub fn new(memory: Arc<VoteMemory>, unix_origin_ms: u64) -> Self {
        Table {
            clusters: DashMap::new(),
            clients: AtomicUsize::new(0),
            next_cluster: AtomicU64::new(0),
            memory,
            unix_origin_ms,
        }
    }

    /// The vote memory.
    pub fn memory(&self) -> &Arc<VoteMemory> {
        &self.memory
    }

    /// Adds a client to its cluster (creating the cluster), after the
    /// consistency checks of INIT; its deliveries go to `mailbox`.
    pub fn join(
        &self,
        name: &[u8],
        req: JoinRequest,
        mailbox: Arc<Mailbox>,
        now_ms: u64,
    ) -> Result<SharedCluster, JoinError> {
        let shard_entry = self.clusters.entry(name.to_vec()).or_insert_with(|| {
            Arc::new(Mutex::new(ClusterEntry {
                cluster: Cluster::new(req.algorithm, req.tie_breaker),
                mailboxes: HashMap::new(),
                meta: HashMap::new(),
                created: self.next_cluster.fetch_add(1, Ordering::Relaxed),
                name: String::from_utf8_lossy(name).into_owned(),
                key: name.to_vec(),
                memory: Arc::clone(&self.memory),
                unix_origin_ms: self.unix_origin_ms,
            }))
        });
        let shared = Arc::clone(shard_entry.value());
        let (result, empty) = {
            let mut entry = lock(&shared);
            let result = entry.cluster.join(
                req.node,
                req.algorithm,
                req.tie_breaker,
                req.ring,
                req.heartbeat_ms,
                req.kap,
                now_ms,
            );
            if result.is_ok() {
                if entry.cluster.len() == 1 {
                    // A cluster (re)created: seed it with its remembered
                    // vote holder, if any.
                    if let Some(seed) = self.memory.seed(name, req.algorithm) {
                        tracing::info!(
                            cluster = %entry.name,
                            members = ?seed.members,
                            hold_until_ms = seed.hold_until_ms,
                            "cluster seeded with the partition that last held the vote"
                        );
                        entry.cluster.restore(&seed);
                    }
                }
                entry.mailboxes.insert(req.node, mailbox);
                entry.meta.insert(req.node, req.meta);
                self.clients.fetch_add(1, Ordering::Relaxed);
            }
            (result, entry.cluster.is_empty())
        };
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
        shared: &SharedCluster,
        node: NodeId,
        server_going_down: bool,
        now_ms: u64,
    ) {
        let empty = {
            let mut entry = lock(shared);
            if entry.remove(node, server_going_down, now_ms) {
                self.clients.fetch_sub(1, Ordering::Relaxed);
            }
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
    pub fn get(&self, name: &[u8]) -> Option<SharedCluster> {
        self.clusters.get(name).map(|c| Arc::clone(c.value()))
    }

    /// Every cluster name with its shared state (a snapshot of the list).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, SharedCluster)> {
        self.clusters
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }

    /// The names of every cluster (for the vote memory's "seen" marks).
    pub fn names(&self) -> Vec<Vec<u8>> {
        self.clusters.iter().map(|e| e.key().clone()).collect()
    }
}
