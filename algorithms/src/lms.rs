//! The lms ("LMS", last man standing, code 3) decision algorithm, and the
//! vote engine it shares with 2nodelms ([`crate::two_node_lms`]), whose code
//! is in the crate-private module `engine`.
//!
//! # The decision
//!
//! The connected clients that are *ready* (they sent both a config list and a
//! membership list) are grouped into partitions by ring id. Each partition
//! has a size (number of clients) and a heuristics score (the sum of
//! [`heuristics_score`](crate::heuristics_score) over its clients). The winner is:
//!
//! 1. the only partition, if there is one ("votequorum's problem");
//! 2. else the partition with the strictly highest score;
//! 3. else, among the partitions sharing that score, the strictly largest;
//! 4. else, among those still tied, the tie-breaker's partition: the one
//!    holding the lowest (LOWEST) or highest (HIGHEST) connected node id, or
//!    the one whose clients or membership list contain the configured node
//!    (NODE_ID).
//!
//! Clients of the winning partition get ACK, all others NACK. A **newcomer**
//! (a client that has never been given a real ACK/NACK decision) cannot take
//! the vote away: while some partition may hold ACK, partitions made only of
//! newcomers are left out of the comparison and their clients get NACK (a
//! NACK that does not end their newcomer status), as the reference does.
//!
//! **Ring settling.** A ready client is *unsettled* when another ready
//! client that it lists in its membership list, or that lists it, reports a
//! different ring id. While any client is unsettled nothing new is decided:
//! unsettled clients that ask get WAIT_FOR_REPLY (with the per-client timer
//! armed at heartbeat/4 and re-armed while still waiting), everyone else
//! keeps what they hold. When everything has settled the decision is made and
//! pushed.
//!
//! # Replies, VOTE_INFO and the engine
//!
//! Membership lists, quorum lists and ASK_FOR_VOTE get the decision in their
//! reply (ACK, NACK or WAIT_FOR_REPLY); config lists and heuristics changes
//! get NO_CHANGE, as in the reference. The engine keeps per client what it
//! last told the client for its current ring, and after *every* event
//! (including timers, VOTE_INFO_REPLYs and disconnects) it re-decides and
//! sends `VOTE_INFO` to each ready client whose ACK/NACK changed, with a seq
//! counted per client.
//!
//! **Safety gate.** A client *may hold ACK* from the moment an ACK is sent to
//! it until one of: it acknowledges (VOTE_INFO_REPLY) a later `VOTE_INFO(NACK)`
//! with no ACK sent after it; it reports a new membership list (the client
//! stops voting before sending one, and ignores votes for its old ring); it
//! disconnects (an lms client then falls back to NACK). ACK is granted to a
//! ring only when no client of another ring may hold ACK: until then the
//! previous holders are sent `VOTE_INFO(NACK)` and the new winners are told
//! WAIT_FOR_REPLY (or keep their NACK) and get `VOTE_INFO(ACK)` as soon as the
//! last NACK is acknowledged. So at every instant the clients that may hold
//! ACK all share one ring id.
//!
//! No `VOTE_INFO` ever goes to a client that is not ready.
//!
//! # Differences from the reference `qnetd-algo-lms.c` (all deliberate)
//!
//! * **Quirk 7 (NODE_ID tie-breaker):** the whole partition containing the
//!   nominated node wins, not just that node.
//! * **Quirk 9 (LOWEST/HIGHEST):** all u32 node ids count (the reference
//!   starts LOWEST at INT_MAX, so ids ≥ 2^31 never win). A WAIT_FOR_REPLY no
//!   longer ends a client's newcomer status; only a real decision does.
//! * **Quirks 8, 10, 26 (stale data, silent moves, two ACK partitions):** the
//!   decision uses the triggering client's new list/ring/heuristics and other
//!   clients' stored data only once they are settled; it is re-run on every
//!   event including disconnects and pushed with VOTE_INFO to every affected
//!   client; and the safety gate above takes the vote away (NACK
//!   acknowledged) before giving it to another partition. Heuristics changes
//!   are therefore acted upon at once (the reference only used them at the
//!   next evaluation).
//! * **Quirks 25, 28:** no VOTE_INFO before a client's config and membership
//!   lists (a client that sends a membership list before its config list is
//!   told WAIT_FOR_REPLY and gets its vote once the config list arrives).
//! * **Ranking:** the size comparison and the tie-breaker only look at the
//!   partitions tied in the previous step (the reference compared sizes over
//!   all partitions and took the tie-breaker node among all clients, so a
//!   partition with a lower score could win). If the NODE_ID node is in none
//!   of the tied partitions, the tied partition with the lowest connected
//!   node id wins instead of nobody.
//! * Clients are grouped by their membership ring, not the INIT ring: a
//!   client counts only once it is ready (the reference skipped only rings
//!   with seq 0).
//! * VOTE_INFO is sent only when a client's ACK/NACK changes (or a waiting
//!   client gets its decision); the timer re-runs the decision but does not
//!   re-send an unchanged vote.
//!
//! # After a restart
//!
//! (qnetd's own; the reference forgets everything.) An lms client that was
//! quorate with `quorum.wait_for_all` set keeps voting when it loses the
//! server (`qdevice-net-algo-lms.c`: NACK only `if (!quorate ||
//! !have_wfa)`), and goes on doing so for as long as its node's membership
//! and quorum do not change (`qdevice-model-net.c` turns a kept ACK into
//! NACK on any such notification while not connected) and it has not
//! reconnected (a new connection stops the vote until the server answers).
//! Nothing bounds that in time. When the server restarts, every client
//! loses it at once, so the server seeds a new cluster with the partition
//! that last held the vote ([`RestoredVote`](crate::RestoredVote); its
//! `hold_until_ms` is not used here) and treats each of its nodes as
//! possibly still voting: no ring gets ACK while one of them may be voting
//! for another ring. Such a node stops counting when
//!
//! * it is back (connected, both lists received): then, because votequorum
//!   counts its last ACK until `quorum.device.timeout` passes without a
//!   poll, it is treated as holding ACK until it acknowledges a NACK or is
//!   given ACK; its partition is thereby the incumbent of the newcomer
//!   rule, so the holder keeps the vote when it comes back;
//! * a ready client's list names it: it is in that client's ring (the
//!   newest such), and is over with that ring (a newer ring that lists it,
//!   or one a node of that ring moved to);
//! * a node of the holder partition is back in a ring without it: the
//!   holder's ring is over, and a disconnected client drops its ACK when its
//!   membership changes.
//!
//! A partition without any node of the remembered holder therefore waits,
//! for as long as it takes, until one of those happens. The same holds for
//! the whole cluster after all its clients were gone (the server drops an
//! empty cluster and seeds the next one the same way). The server remembers
//! a decision's winner only once its ACK is granted
//! ([`DecisionRecord::remembered_holder`](crate::DecisionRecord::remembered_holder)).
//!
//! **Limit.** An lms client that departs during normal operation is still
//! treated as holding NACK (only 2nodelms keeps departed holders as ghosts):
//! with `wait_for_all`, a re-decision after such a departure can give a
//! second partition ACK (docs/safety-testing.md, finding 2).

use crate::engine::{Engine, Reply};
use crate::{Action, AlgoError, Algorithm, AlgorithmKind, Ctx, Event, NodeId, Vote};

/// The lms algorithm: the vote engine described above, in which departed
/// clients hold NACK.
#[derive(Debug, Default)]
pub struct Lms {
    engine: Engine,
}

impl Algorithm for Lms {
    fn kind(&self) -> AlgorithmKind {
        AlgorithmKind::Lms
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
            Event::ConfigList { .. } | Event::HeuristicsChange { .. } => Reply::NoChange,
            Event::Membership { .. } | Event::Quorum { .. } | Event::AskForVote => Reply::Decision,
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
