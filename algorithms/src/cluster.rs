//! One cluster as the arbitrator sees it: the clients that completed INIT,
//! what each reported, and the cluster's algorithm. [`Cluster::handle`] runs
//! the algorithm on an event and then stores the event's data, in the order
//! the reference server does (the algorithm sees the previous state).

use crate::algorithm::{
    Action, AlgoError, Algorithm, AlgorithmKind, ClientInfo, Ctx, DecisionRecord, Event, NodeId,
    RingId, TieBreaker, Vote,
};
use crate::vecmap::VecMap;

/// Why a client may not join a cluster (INIT_REPLY error codes 15–17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    TieBreakerDiffers,
    AlgorithmDiffers,
    DuplicateNodeId,
}

impl JoinError {
    pub fn code(self) -> u16 {
        match self {
            JoinError::TieBreakerDiffers => 15,
            JoinError::AlgorithmDiffers => 16,
            JoinError::DuplicateNodeId => 17,
        }
    }
}

/// The result of [`Cluster::handle`].
#[derive(Debug)]
pub struct Outcome {
    /// The vote for the reply to the triggering message, or the error to send.
    pub reply: Result<Vote, AlgoError>,
    /// The ring id to put in that reply: the client's last ring id, after the
    /// event was stored.
    pub reply_ring: RingId,
    /// VOTE_INFOs to send and timers to arm, in order.
    pub actions: Vec<Action>,
    /// The decision the event led to, if the algorithm took one.
    pub decision: Option<DecisionRecord>,
}

/// The state of one cluster and its algorithm.
#[derive(Debug)]
pub struct Cluster {
    kind: AlgorithmKind,
    tie_breaker: TieBreaker,
    clients: VecMap<NodeId, ClientInfo>,
    algorithm: Box<dyn Algorithm>,
}

impl Cluster {
    /// An empty cluster whose clients use `kind` and `tie_breaker`.
    pub fn new(kind: AlgorithmKind, tie_breaker: TieBreaker) -> Self {
        Cluster {
            kind,
            tie_breaker,
            clients: VecMap::new(),
            algorithm: new_algorithm(kind),
        }
    }

    pub fn algorithm(&self) -> AlgorithmKind {
        self.kind
    }

    pub fn tie_breaker(&self) -> TieBreaker {
        self.tie_breaker
    }

    pub fn clients(&self) -> &VecMap<NodeId, ClientInfo> {
        &self.clients
    }

    pub fn client(&self, node: NodeId) -> Option<&ClientInfo> {
        self.clients.get(&node)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// The INIT consistency check: same tie-breaker (15), then same algorithm
    /// (16), then a node id not yet taken (17). A cluster without clients
    /// accepts anything.
    pub fn check_join(
        &self,
        node: NodeId,
        kind: AlgorithmKind,
        tie_breaker: TieBreaker,
    ) -> Result<(), JoinError> {
        if self.clients.is_empty() {
            return Ok(());
        }
        if tie_breaker != self.tie_breaker {
            return Err(JoinError::TieBreakerDiffers);
        }
        if kind != self.kind {
            return Err(JoinError::AlgorithmDiffers);
        }
        if self.clients.contains_key(&node) {
            return Err(JoinError::DuplicateNodeId);
        }
        Ok(())
    }

    /// Adds a client that passed INIT. When the cluster is empty it takes the
    /// client's algorithm and tie-breaker (the caller ran [`check_join`]).
    ///
    /// [`check_join`]: Cluster::check_join
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        node: NodeId,
        kind: AlgorithmKind,
        tie_breaker: TieBreaker,
        ring: RingId,
        heartbeat_ms: u32,
        kap: bool,
        now_ms: u64,
    ) -> Result<(), JoinError> {
        self.check_join(node, kind, tie_breaker)?;
        if self.clients.is_empty() && (kind != self.kind || tie_breaker != self.tie_breaker) {
            *self = Cluster::new(kind, tie_breaker);
        }
        self.clients
            .insert(node, ClientInfo::new(node, ring, heartbeat_ms, kap));
        let ctx = Ctx {
            clients: &self.clients,
            tie_breaker: self.tie_breaker,
            now_ms,
        };
        self.algorithm.on_join(&ctx, node);
        Ok(())
    }

    /// Hands the vote holder remembered across a restart to the algorithm
    /// (call it after the first client joined).
    pub fn restore(&mut self, restored: &crate::algorithm::RestoredVote) {
        self.algorithm.restore(restored);
    }

    /// SET_OPTION: keep-active-partition tie-breaker for one client.
    pub fn set_kap(&mut self, node: NodeId, kap: bool) {
        if let Some(c) = self.clients.get_mut(&node) {
            c.kap = kap;
        }
    }

    /// SET_OPTION: a new heartbeat interval for one client.
    pub fn set_heartbeat(&mut self, node: NodeId, heartbeat_ms: u32) {
        if let Some(c) = self.clients.get_mut(&node) {
            c.heartbeat_ms = heartbeat_ms;
        }
    }

    /// Runs the algorithm on `event` from client `node`, then stores the
    /// event's data unless the algorithm refused it.
    pub fn handle(&mut self, node: NodeId, event: Event, now_ms: u64) -> Outcome {
        let Some(prev_ring) = self.clients.get(&node).map(|c| c.ring) else {
            return Outcome {
                reply: Err(AlgoError::Internal),
                reply_ring: RingId::default(),
                actions: Vec::new(),
                decision: None,
            };
        };
        let mut actions = Vec::new();
        let ctx = Ctx {
            clients: &self.clients,
            tie_breaker: self.tie_breaker,
            now_ms,
        };
        let reply = self.algorithm.on_event(&ctx, node, &event, &mut actions);
        let decision = self.algorithm.take_decision();
        self.record_actions(&actions, now_ms);
        let Some(client) = self.clients.get_mut(&node) else {
            return Outcome {
                reply: Err(AlgoError::Internal),
                reply_ring: prev_ring,
                actions,
                decision,
            };
        };
        if let Ok(vote) = reply {
            let replied = match event {
                Event::ConfigList {
                    nodes,
                    config_version,
                    ..
                } => {
                    client.config = Some(nodes);
                    client.config_version = config_version;
                    true
                }
                Event::Membership {
                    ring,
                    nodes,
                    heuristics,
                } => {
                    client.membership = Some(nodes);
                    client.ring = ring;
                    client.membership_heuristics = heuristics;
                    client.heuristics = heuristics;
                    true
                }
                Event::Quorum { quorate, nodes } => {
                    client.quorum = Some((quorate, nodes));
                    true
                }
                Event::HeuristicsChange { heuristics } => {
                    client.regular_heuristics = heuristics;
                    client.heuristics = heuristics;
                    true
                }
                Event::AskForVote => true,
                Event::VoteInfoReply { .. } | Event::Timer => false,
            };
            if replied {
                client.record_vote(vote, now_ms);
            }
        }
        Outcome {
            reply,
            reply_ring: client.ring,
            actions,
            decision,
        }
    }

    /// Removes client `node`, letting the algorithm react first (it may send
    /// new votes to the remaining clients). Returns those actions; actions
    /// addressed to the leaving node are dropped.
    pub fn leave(&mut self, node: NodeId, server_going_down: bool, now_ms: u64) -> Vec<Action> {
        self.leave_with_decision(node, server_going_down, now_ms).0
    }

    /// [`leave`](Cluster::leave), also returning the decision the departure
    /// led to, if any.
    pub fn leave_with_decision(
        &mut self,
        node: NodeId,
        server_going_down: bool,
        now_ms: u64,
    ) -> (Vec<Action>, Option<DecisionRecord>) {
        if !self.clients.contains_key(&node) {
            return (Vec::new(), None);
        }
        let mut actions = Vec::new();
        let ctx = Ctx {
            clients: &self.clients,
            tie_breaker: self.tie_breaker,
            now_ms,
        };
        self.algorithm
            .on_leave(&ctx, node, server_going_down, &mut actions);
        let decision = self.algorithm.take_decision();
        self.clients.remove(&node);
        actions.retain(|a| action_target(a) != node);
        self.record_actions(&actions, now_ms);
        (actions, decision)
    }

    fn record_actions(&mut self, actions: &[Action], now_ms: u64) {
        for a in actions {
            if let Action::SendVoteInfo { node, vote, .. } = a {
                if let Some(c) = self.clients.get_mut(node) {
                    c.record_vote(*vote, now_ms);
                }
            }
        }
    }
}

/// The node an action is addressed to.
pub fn action_target(a: &Action) -> NodeId {
    match a {
        Action::SendVoteInfo { node, .. }
        | Action::ArmTimer { node, .. }
        | Action::CancelTimer { node } => *node,
    }
}

/// Creates the algorithm of the given kind with empty state.
pub fn new_algorithm(kind: AlgorithmKind) -> Box<dyn Algorithm> {
    match kind {
        AlgorithmKind::Test => Box::new(crate::test_algo::TestAlgorithm),
        AlgorithmKind::Ffsplit => Box::new(crate::ffsplit::Ffsplit::default()),
        AlgorithmKind::TwoNodeLms => Box::new(crate::two_node_lms::TwoNodeLms::default()),
        AlgorithmKind::Lms => Box::new(crate::lms::Lms::default()),
    }
}
