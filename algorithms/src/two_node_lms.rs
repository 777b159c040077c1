//! The 2nodelms ("2 Node LMS", code 2) decision algorithm.
//!
//! A two-node cluster with one qdevice vote. A config list that does not have
//! exactly 2 nodes is refused with error 12 (UNSUPPORTED_DECISION_ALGORITHM,
//! protocol notes quirk 23; the client exits on it). Otherwise the votes are
//! decided by the same engine as lms ([`crate::lms`]), which for two nodes
//! gives the reference's answers:
//!
//! * both nodes in one membership (one ring) → ACK for both;
//! * only one node connected and ready → ACK ("last man standing");
//! * both connected in different rings (a split) → the better heuristics
//!   result (PASS > undefined > FAIL) wins, else the tie-breaker: the lower
//!   (LOWEST) or higher (HIGHEST) node id, or the configured node (NODE_ID;
//!   if that node is neither of the two, the lower node id);
//! * a newcomer (never given a decision) in another ring than a node that may
//!   hold ACK gets NACK and does not take the vote away.
//!
//! Membership lists get the decision in their reply; config lists, quorum
//! lists and heuristics changes get NO_CHANGE; ASK_FOR_VOTE gets the vote the
//! client holds, or ASK_LATER before any decision — as in the reference.
//!
//! # Differences from the reference `qnetd-algo-2nodelms.c` (all deliberate)
//!
//! * **Quirk 26 (two ACKs):** a node is never compared with its peer's stale
//!   ring or heuristics: while one node lists the other but reports another
//!   ring id, nothing new is decided (WAIT_FOR_REPLY with the per-client
//!   timer, heartbeat/4, re-armed while waiting). ACK goes to a ring only
//!   when no node of another ring may hold ACK; the previous holder is first
//!   sent `VOTE_INFO(NACK)` and must acknowledge it (or send a new membership
//!   list, or disconnect).
//! * **Quirks 10, 27 (no re-evaluation):** the decision is re-run on every
//!   event, timer and disconnect, and pushed with `VOTE_INFO` to the node
//!   whose vote changed, so a reconnected node gets ACK again once the
//!   situation allows (e.g. after the heal, when both report one ring),
//!   instead of keeping the newcomer NACK for ever.
//! * **Quirks 25, 28:** no `VOTE_INFO` before a client's config and
//!   membership lists.
//! * Heuristics changes and quorum lists still get NO_CHANGE in their reply,
//!   but a decision they change is pushed as a `VOTE_INFO`.
//!
//! # What the server guarantees
//!
//! A 2nodelms client keeps its last vote when it loses the server (§4.10); it
//! only drops an ACK when its own membership changes (or when it reconnects).
//! So a node that leaves while it may hold ACK is remembered as a *ghost*
//! holding ACK for its last ring, and no other ring gets ACK until that ring
//! is provably over: a connected node that was in it, or that now lists the
//! ghost node, reports a newer ring, or the ghost node reconnects and sends
//! its membership list. A ghost's node that is back still counts as holding
//! ACK until it acknowledges a NACK or is given ACK (votequorum counts its
//! last ACK until `quorum.device.timeout` passes without a poll). After a
//! restart, and when the cluster's clients were all gone, the nodes of the
//! remembered holder are ghosts of a yet unknown ring, whatever the time
//! (see the `lms` module, "After a restart"). With that, assuming (as
//! votequorum does) that a ring ends for all its members at once, **no two
//! nodes of different rings hold ACK at the same time, whether or not they
//! are connected**.
//!
//! The price: if the winner of a split leaves the server and never comes
//! back (and the partition never heals), the other node gets no vote — the
//! server cannot tell a dead winner from a live one that only lost the
//! server. The common last-man-standing case still works: when a node of a
//! healthy two-node ring dies, its peer reports a new ring without it, which
//! ends the ghost's ring, and the survivor gets ACK.

use crate::engine::{Engine, Reply};
use crate::{Action, AlgoError, Algorithm, AlgorithmKind, Ctx, Event, NodeId, Vote};

/// The 2nodelms algorithm: the lms vote engine whose departed ACK holders are
/// kept as ghosts.
#[derive(Debug)]
pub struct TwoNodeLms {
    engine: Engine,
}

impl Default for TwoNodeLms {
    fn default() -> Self {
        TwoNodeLms {
            engine: Engine::new(true),
        }
    }
}

impl Algorithm for TwoNodeLms {
    fn kind(&self) -> AlgorithmKind {
        AlgorithmKind::TwoNodeLms
    }

    fn take_decision(&mut self) -> Option<crate::DecisionRecord> {
        self.engine.take_decision()
    }

    fn restore(&mut self, restored: &crate::RestoredVote) {
        self.engine.restore(restored);
    }

    fn on_join(&mut self, _ctx: &Ctx<'_>, node: NodeId) {
        self.engine.join(node);
    }

    fn on_event(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        event: &Event,
        actions: &mut Vec<Action>,
    ) -> Result<Vote, AlgoError> {
        let policy = match event {
            Event::ConfigList { nodes, .. } => {
                if nodes.len() != 2 {
                    return Err(AlgoError::UnsupportedDecisionAlgorithm);
                }
                Reply::NoChange
            }
            Event::Membership { .. } => Reply::Decision,
            Event::Quorum { .. } | Event::HeuristicsChange { .. } => Reply::NoChange,
            Event::AskForVote => Reply::Held,
            Event::VoteInfoReply { .. } | Event::Timer => Reply::Silent,
        };
        Ok(self.engine.handle(ctx, node, event, policy, actions))
    }

    fn on_leave(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        server_going_down: bool,
        actions: &mut Vec<Action>,
    ) {
        self.engine.leave(ctx, node, server_going_down, actions);
    }
}
