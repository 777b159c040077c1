//! Pure decision algorithms of the qnetd quorum arbitrator.
//!
//! This crate does no I/O and reads no clock: the server shell feeds it events
//! (a node list arrived, a vote was acknowledged, a client left, a timer fired
//! at a given time) and carries out the actions it returns (send a VOTE_INFO to
//! a node, arm or cancel a node's timer). The same code therefore runs under
//! the real server, under unit tests and under property tests with a virtual
//! clock.
//!
//! [`Cluster`] holds what the server knows about one cluster: its connected
//! clients with the lists each one reported, and the algorithm chosen by the
//! cluster's nodes behind the [`Algorithm`] trait.

mod cluster;
mod engine;
pub mod ffsplit;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod lms;
mod nodeset;
#[cfg(any(test, feature = "fuzzing"))]
mod sim;
pub mod test_algo;
#[cfg(test)]
mod tests;
pub mod two_node_lms;
mod types;

pub use cluster::{ClientInfo, Cluster, JoinError, Outcome};
pub use types::*;

use std::collections::BTreeMap;
use std::fmt;

/// Something the server must do on behalf of an algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `VOTE_INFO(seq, vote, ring)` to `node`. The client answers with
    /// `VOTE_INFO_REPLY(seq)`, which comes back as [`Event::VoteInfoReply`].
    SendVoteInfo {
        node: NodeId,
        seq: u32,
        vote: Vote,
        ring: RingId,
    },
    /// (Re)arm `node`'s algorithm timer to fire `after_ms` from now; when it
    /// fires the server delivers [`Event::Timer`] for that node. Arming an
    /// armed timer replaces it.
    ArmTimer { node: NodeId, after_ms: u64 },
    /// Cancel `node`'s algorithm timer, if armed.
    CancelTimer { node: NodeId },
}

/// A partition as a decision saw it, for the decision log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionScore {
    pub ring: RingId,
    /// The partition's nodes (its membership list, or its connected clients).
    pub nodes: Vec<NodeId>,
    /// Heuristics score (per connected node: 1 + pass − fail).
    pub score: i64,
}

/// Why an algorithm gave the vote where it did, for the decision log: so an
/// operator can answer "why did node 2 lose?" from the log alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Every partition considered.
    pub partitions: Vec<PartitionScore>,
    /// The partition chosen to hold the vote, if any.
    pub winner: Option<RingId>,
    /// What decided: `single_partition`; ffsplit: `majority` (more than half
    /// the configured nodes), then for a 50:50 split `heuristics`,
    /// `connected_nodes`, `keep_active_partition`, `tie_breaker`; lms and
    /// 2nodelms: `score` (nodes plus heuristics), `size`, `tie_breaker`; or
    /// `no_partition_eligible`; ffsplit after a restart: `restart_hold`.
    pub reason: &'static str,
    /// The winner's ACK waits until the previous holders acknowledged NACK.
    pub pending: bool,
}

impl DecisionRecord {
    /// The partition the server should remember as the cluster's vote
    /// holder (its state directory, [`RestoredVote`]), if this decision
    /// names one: the winner. For lms and 2nodelms only once its ACK is
    /// granted (`pending` is false): until the previous holders have
    /// acknowledged their NACK they may still hold ACK, and their clients
    /// keep it if they lose the server; the engine reports the decision
    /// again when it grants the ACK. An ffsplit client drops to NACK when it
    /// loses the server, so its pending winner is remembered at once.
    pub fn remembered_holder(&self, kind: AlgorithmKind) -> Option<&PartitionScore> {
        let winner = self.winner?;
        let keeps_vote = matches!(kind, AlgorithmKind::Lms | AlgorithmKind::TwoNodeLms);
        if self.pending && keeps_vote {
            return None;
        }
        self.partitions.iter().find(|p| p.ring == winner)
    }
}

/// What the server remembered across a restart about one cluster: the
/// partition that last held the vote ([`DecisionRecord::remembered_holder`]).
/// Given to the algorithm once, right after the cluster's first client
/// joined again (after a restart, or when all its clients had gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredVote {
    /// Node ids of the partition that held the vote: ffsplit its membership
    /// list, lms and 2nodelms its clients.
    pub members: Vec<NodeId>,
    /// ffsplit: until this time (the [`Ctx::now_ms`] clock), the vote is not
    /// given to a partition without any of `members` while some of them are
    /// not connected: after a restart, the nodes of the old winner may
    /// simply not have reconnected yet. lms and 2nodelms do not use it:
    /// their clients keep an ACK without time limit when they lose the
    /// server, so each of `members` counts as possibly voting until it is
    /// back or its ring is over, whatever the time (see `lms`).
    pub hold_until_ms: u64,
}

/// An input for the algorithm of one cluster, about one of its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// NODE_LIST of type INITIAL_CONFIG (`initial`) or CHANGED_CONFIG.
    ConfigList {
        nodes: Vec<NodeInfo>,
        initial: bool,
        config_version: Option<u64>,
    },
    /// NODE_LIST of type MEMBERSHIP.
    Membership {
        ring: RingId,
        nodes: Vec<NodeInfo>,
        heuristics: Heuristics,
    },
    /// NODE_LIST of type QUORUM.
    Quorum { quorate: bool, nodes: Vec<NodeInfo> },
    /// HEURISTICS_CHANGE with a new regular heuristics result.
    HeuristicsChange { heuristics: Heuristics },
    /// ASK_FOR_VOTE.
    AskForVote,
    /// VOTE_INFO_REPLY acknowledging the VOTE_INFO with this seq.
    VoteInfoReply { seq: u32 },
    /// The node's algorithm timer fired.
    Timer,
}

impl Event {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ConfigList { initial: true, .. } => "initial config list",
            Event::ConfigList { .. } => "changed config list",
            Event::Membership { .. } => "membership list",
            Event::Quorum { .. } => "quorum list",
            Event::HeuristicsChange { .. } => "heuristics change",
            Event::AskForVote => "ask for vote",
            Event::VoteInfoReply { .. } => "vote info reply",
            Event::Timer => "timer",
        }
    }
}

/// Why an algorithm refused an event. Each maps to the protocol's error code,
/// which the server sends back in a SERVER_ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgoError {
    /// 2nodelms with a config list that does not have exactly two nodes (12).
    UnsupportedDecisionAlgorithm,
    /// A message the cluster's algorithm does not take, e.g. ASK_FOR_VOTE
    /// under ffsplit (14).
    UnsupportedDecisionAlgorithmMessage,
    /// Empty config list, or one that lacks the sender (18).
    InvalidConfigNodeList,
    /// Empty membership list, or one that lacks the sender (19).
    InvalidMembershipNodeList,
    /// Inconsistent internal state (10).
    Internal,
}

impl AlgoError {
    /// The protocol's REPLY_ERROR_CODE for this error.
    pub fn code(self) -> u16 {
        match self {
            AlgoError::UnsupportedDecisionAlgorithm => 12,
            AlgoError::UnsupportedDecisionAlgorithmMessage => 14,
            AlgoError::InvalidConfigNodeList => 18,
            AlgoError::InvalidMembershipNodeList => 19,
            AlgoError::Internal => 10,
        }
    }
}

impl fmt::Display for AlgoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlgoError::UnsupportedDecisionAlgorithm => {
                "the decision algorithm does not support this configuration (2nodelms needs exactly 2 configured nodes)"
            }
            AlgoError::UnsupportedDecisionAlgorithmMessage => {
                "the cluster's decision algorithm does not accept this message"
            }
            AlgoError::InvalidConfigNodeList => {
                "the config node list is empty or does not contain the sending node"
            }
            AlgoError::InvalidMembershipNodeList => {
                "the membership node list is empty or does not contain the sending node"
            }
            AlgoError::Internal => "internal error in the decision algorithm",
        })
    }
}

impl std::error::Error for AlgoError {}

/// What an algorithm sees of its cluster while it handles one event.
///
/// `clients` holds every client that completed INIT, by ascending node id,
/// with the state *before* the event is applied: the new lists, ring id and
/// heuristics of the triggering client are only in the event. A client that is
/// leaving is still listed while [`Algorithm::on_leave`] runs.
pub struct Ctx<'a> {
    pub clients: &'a BTreeMap<NodeId, ClientInfo>,
    pub tie_breaker: TieBreaker,
    /// Virtual time in milliseconds, supplied by the caller.
    pub now_ms: u64,
}

/// A decision algorithm for one cluster. Implementations keep their own
/// per-cluster and per-client state and must be deterministic: the same
/// sequence of calls gives the same results.
pub trait Algorithm: Send + fmt::Debug {
    fn kind(&self) -> AlgorithmKind;

    /// A client completed INIT and is now listed in `ctx.clients`.
    fn on_join(&mut self, _ctx: &Ctx<'_>, _node: NodeId) {}

    /// An event from (or, for [`Event::Timer`], about) client `node`. Returns
    /// the vote to put in the reply to the triggering message (ignored for
    /// [`Event::VoteInfoReply`] and [`Event::Timer`], which have no reply), or
    /// an error to send as SERVER_ERROR. Actions go to `actions`.
    fn on_event(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        event: &Event,
        actions: &mut Vec<Action>,
    ) -> Result<Vote, AlgoError>;

    /// Seeds the algorithm with the vote holder remembered across a restart
    /// (default: the algorithm keeps no such memory and ignores it; ffsplit,
    /// lms and 2nodelms use it).
    fn restore(&mut self, _restored: &RestoredVote) {}

    /// The decision taken by the last call, if it took one (default: the
    /// algorithm does not report decisions).
    fn take_decision(&mut self) -> Option<DecisionRecord> {
        None
    }

    /// Client `node` disconnects. It is still listed in `ctx.clients`; it is
    /// removed right after this call. `server_going_down` is set when the
    /// whole server stops, in which case nothing should be recomputed.
    fn on_leave(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        server_going_down: bool,
        actions: &mut Vec<Action>,
    );
}

/// Creates the algorithm of the given kind with empty state.
pub fn new_algorithm(kind: AlgorithmKind) -> Box<dyn Algorithm> {
    match kind {
        AlgorithmKind::Test => Box::new(test_algo::TestAlgorithm),
        AlgorithmKind::Ffsplit => Box::new(ffsplit::Ffsplit::default()),
        AlgorithmKind::TwoNodeLms => Box::new(two_node_lms::TwoNodeLms::default()),
        AlgorithmKind::Lms => Box::new(lms::Lms::default()),
    }
}

/// Heuristics score of one client, as the reference computes it:
/// `1 + (pass ? 1 : 0) - (fail ? 1 : 0)`.
pub fn heuristics_score(h: Heuristics) -> i64 {
    1 + i64::from(h.rank())
}
