//! The server model of every simulation: one [`Cluster`] driven the way the
//! server's cluster table drives it, with a virtual clock, the algorithm
//! timers it arms, and the vote memory of its state directory:
//!
//! * every decision's [`DecisionRecord::remembered_holder`] is remembered;
//! * a cluster whose last client leaves is dropped, and the next first
//!   client's cluster is seeded with the remembered holder
//!   ([`Cluster::restore`]), as after a restart;
//! * [`Server::restart`] drops every connection and the cluster (a new
//!   process), keeps the memory and starts the restart hold
//!   (`restart_vote_hold`, 30 s) at the current time.
//!
//! Each call returns what the algorithm did after checking it against the
//! rules the server relies on (a violation is an `Err` with the reason):
//!
//! * every action is addressed to a current client;
//! * a `VOTE_INFO` goes only to a client whose config and membership lists
//!   the cluster has (a 3.0.x client exits on an earlier one);
//! * timers are armed only by lms and 2nodelms, and by ffsplit only after it
//!   was seeded with a remembered vote (its restart hold);
//! * the reply's ring id is the client's ring id, and only a client gets a
//!   reply that is not an error;
//! * a departure while the server goes down sends no vote;
//! * `join` agrees with `check_join`.

use std::collections::BTreeMap;

use crate::{
    Action, AlgorithmKind, Cluster, DecisionRecord, Event, JoinError, NodeId, Outcome,
    RestoredVote, RingId, TieBreaker,
};

/// The server's `restart_vote_hold` (ms).
pub const RESTART_VOTE_HOLD_MS: u64 = 30_000;

/// One cluster as the server holds it.
pub struct Server {
    cluster: Cluster,
    now_ms: u64,
    /// Armed algorithm timers: node and the time they fire.
    timers: BTreeMap<NodeId, u64>,
    /// The algorithm was seeded with a remembered vote.
    restored: bool,
    /// The remembered holder: the algorithm that decided and its members.
    memory: Option<(AlgorithmKind, Vec<NodeId>)>,
    /// When the restart hold of the last (re)start ends.
    hold_until_ms: u64,
}

impl Server {
    /// A server whose cluster is empty, started at time 0.
    pub fn new(kind: AlgorithmKind, tie_breaker: TieBreaker) -> Server {
        Server {
            cluster: Cluster::new(kind, tie_breaker),
            now_ms: 0,
            timers: BTreeMap::new(),
            restored: false,
            memory: None,
            hold_until_ms: RESTART_VOTE_HOLD_MS,
        }
    }

    /// The server restarts: every connection and the cluster are gone
    /// (the caller drops its clients' connections); the vote memory stays.
    pub fn restart(&mut self) {
        self.cluster = Cluster::new(self.cluster.algorithm(), self.cluster.tie_breaker());
        self.timers.clear();
        self.restored = false;
        self.hold_until_ms = self.now_ms.saturating_add(RESTART_VOTE_HOLD_MS);
    }

    /// The members of the remembered holder, if any.
    pub fn remembered(&self) -> Option<&[NodeId]> {
        self.memory.as_ref().map(|(_, m)| m.as_slice())
    }

    /// Remembers a decision's holder, as the server's vote memory does.
    fn remember(&mut self, decision: Option<&DecisionRecord>) {
        let kind = self.cluster.algorithm();
        if let Some(p) = decision.and_then(|d| d.remembered_holder(kind)) {
            self.memory = Some((kind, p.nodes.clone()));
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The virtual clock (ms) given to every call.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms = self.now_ms.saturating_add(ms);
    }

    /// When `node`'s timer fires, if it is armed.
    pub fn timer(&self, node: NodeId) -> Option<u64> {
        self.timers.get(&node).copied()
    }

    /// A client completes INIT (heartbeat 8 s). Refused joins leave the
    /// cluster as it was.
    pub fn join(
        &mut self,
        node: NodeId,
        kind: AlgorithmKind,
        tie_breaker: TieBreaker,
        ring: RingId,
        kap: bool,
    ) -> Result<(), JoinError> {
        let expected = self.cluster.check_join(node, kind, tie_breaker);
        let joined = self
            .cluster
            .join(node, kind, tie_breaker, ring, 8000, kap, self.now_ms);
        assert_eq!(joined, expected, "join disagrees with check_join");
        if joined.is_ok() && self.cluster.len() == 1 {
            // A cluster (re)created: seed it with its remembered holder.
            self.restored = false;
            let seed = match &self.memory {
                Some((k, members)) if *k == kind => Some(RestoredVote {
                    members: members.clone(),
                    hold_until_ms: self.hold_until_ms,
                }),
                _ => None,
            };
            if let Some(seed) = seed {
                self.restore(&seed);
            }
        }
        joined
    }

    /// Seeds the cluster's algorithm with a remembered vote holder.
    pub fn restore(&mut self, restored: &RestoredVote) {
        self.cluster.restore(restored);
        self.restored = true;
    }

    /// SET_OPTION: keep-active-partition tie-breaker.
    pub fn set_kap(&mut self, node: NodeId, kap: bool) {
        self.cluster.set_kap(node, kap);
    }

    /// SET_OPTION: heartbeat interval.
    pub fn set_heartbeat(&mut self, node: NodeId, heartbeat_ms: u32) {
        self.cluster.set_heartbeat(node, heartbeat_ms);
    }

    /// A message from client `node` (or, for [`Event::Timer`], its timer).
    pub fn handle(&mut self, node: NodeId, event: Event) -> Result<Outcome, String> {
        let outcome = self.cluster.handle(node, event, self.now_ms);
        match self.cluster.client(node) {
            Some(c) if outcome.reply_ring != c.ring => {
                return Err(format!(
                    "reply ring {} is not node {node}'s ring {}",
                    outcome.reply_ring, c.ring
                ));
            }
            None if outcome.reply.is_ok() => {
                return Err(format!("node {node} is not a client but got a reply"));
            }
            _ => {}
        }
        self.check(&outcome.actions, false)?;
        self.remember(outcome.decision.as_ref());
        Ok(outcome)
    }

    /// Fires `node`'s timer if it is armed (whatever the clock says).
    pub fn fire_timer(&mut self, node: NodeId) -> Result<Option<Outcome>, String> {
        if self.timers.remove(&node).is_none() {
            return Ok(None);
        }
        self.handle(node, Event::Timer).map(Some)
    }

    /// Client `node` disconnects (or the server stops: `going_down`).
    pub fn leave(&mut self, node: NodeId, going_down: bool) -> Result<Vec<Action>, String> {
        self.timers.remove(&node);
        let (actions, decision) = self
            .cluster
            .leave_with_decision(node, going_down, self.now_ms);
        if self.cluster.client(node).is_some() {
            return Err(format!("node {node} is still a client after leaving"));
        }
        self.check(&actions, going_down)?;
        self.remember(decision.as_ref());
        if self.cluster.is_empty() {
            // The server drops an empty cluster.
            self.cluster = Cluster::new(self.cluster.algorithm(), self.cluster.tie_breaker());
            self.timers.clear();
            self.restored = false;
        }
        Ok(actions)
    }

    /// Checks the actions of one call and keeps track of the timers.
    fn check(&mut self, actions: &[Action], going_down: bool) -> Result<(), String> {
        let kind = self.cluster.algorithm();
        let timers_allowed = match kind {
            AlgorithmKind::Lms | AlgorithmKind::TwoNodeLms => true,
            AlgorithmKind::Ffsplit => self.restored,
            AlgorithmKind::Test => false,
        };
        for action in actions {
            match *action {
                Action::SendVoteInfo { node, .. } => {
                    let Some(client) = self.cluster.client(node) else {
                        return Err(format!("VOTE_INFO to node {node}, which is not a client"));
                    };
                    if client.config.is_none() || client.membership.is_none() {
                        return Err(format!("VOTE_INFO to node {node} before its lists"));
                    }
                    if going_down {
                        return Err(format!("VOTE_INFO to node {node} while going down"));
                    }
                }
                Action::ArmTimer { node, after_ms } => {
                    if !timers_allowed {
                        return Err(format!("{kind} armed a timer for node {node}"));
                    }
                    if self.cluster.client(node).is_none() {
                        return Err(format!("timer armed for node {node}, not a client"));
                    }
                    self.timers
                        .insert(node, self.now_ms.saturating_add(after_ms));
                }
                Action::CancelTimer { node } => {
                    self.timers.remove(&node);
                }
            }
        }
        Ok(())
    }
}
