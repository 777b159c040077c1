//! The ffsplit ("Fifty-Fifty split", code 1) decision algorithm.
//!
//! ffsplit is meant for clusters with an even number of nodes, one vote per
//! node and one qdevice vote. Every time a client reports something that may
//! change the outcome (a membership list, a changed config list, a heuristics
//! result) or disconnects, the server runs the *decision* ("DO" in the
//! protocol notes, §5.1):
//!
//! 1. **Stability test.** Nothing is decided until every connected client has
//!    reported the same config node set, and all connected members of one
//!    partition report the same ring id and the same membership node set.
//! 2. **Partition selection.** The connected clients are walked in ascending
//!    node-id order and each client's partition (its membership list) is
//!    compared with the best one so far: majority first, then for a 50:50 tie
//!    the heuristics score, the number of connected clients, the
//!    keep-active-partition (KAP) rule and finally the configured tie-breaker.
//! 3. **Voting.** Every client outside the chosen partition is sent a
//!    `VOTE_INFO(NACK)`. Only once every NACK recipient has acknowledged its
//!    NACK (`VOTE_INFO_REPLY` with that seq) do the clients of the chosen
//!    partition get `VOTE_INFO(ACK)`. The vote is therefore never held by two
//!    partitions at once.
//!
//! The reply to the triggering message says `NO_CHANGE` when a decision was
//! made (the decision itself travels in the `VOTE_INFO`s, the one to the
//! triggering client being queued before its reply), `WAIT_FOR_REPLY` when
//! membership is not stable yet and `ASK_LATER` while the client has not sent
//! both its config and membership lists.
//!
//! Everything matches the votes of the reference `qnetd-algo-ffsplit.c`,
//! except for these deliberate fixes of its quirks (protocol notes §8):
//!
//! * **Not-ready clients (quirks 1, 25, 28, 29).** A connected client that has
//!   not sent its config list or its membership list yet is "not ready": the
//!   stability test fails while any such client is connected. The reference
//!   could instead run its tie-breaker on an empty config list (a crash) or
//!   send a `VOTE_INFO` to a client that has not sent its lists (the 3.0.x
//!   client exits on it). As a second line of defence, a `VOTE_INFO` is never
//!   emitted to a client that is not ready.
//! * **Late `VOTE_INFO_REPLY` (quirk 2).** Each client remembers the seq of
//!   the vote it still has to acknowledge. A reply only clears that vote; a
//!   reply to an older round, or one arriving while the client's ACK is still
//!   held back, is ignored instead of cancelling the pending ACK.
//!
//! The reference's other quirks are kept on purpose so the votes stay the same:
//! KAP is judged per compared client (quirk 4), a leaving client still counts
//! as active in partition statistics (quirk 5), and every stable decision
//! re-sends ACK/NACK to everybody (quirk 6).
//!
//! **After a restart** (qnetd's own; the reference forgets everything), the
//! server seeds the algorithm with the partition that last held the vote
//! ([`RestoredVote`]): it becomes the KAP rule's "active partition", and
//! until the hold time ends, a partition without any of its nodes is not
//! given the vote while some of them have not reconnected yet (everybody
//! connected gets NACK, which is what the losing side held before the
//! restart). The hold ends for good once all of the old holder's nodes are
//! connected (KAP then decides as before the restart) or the time is up (a
//! timer re-runs the decision then).
//!
//! A NACK recipient that never answers (quirk 3) is bounded by the server
//! shell, not here: a client that has not acknowledged a `VOTE_INFO(NACK)`
//! within its dead-peer interval is disconnected (the 3.0.x client falls
//! back to NACK when it loses the server), and its departure lets the
//! winners get their ACK (docs/differences.md).
//!
//! The decision itself (stability test, statistics, selection) is computed
//! in `ffsplit/decision.rs`, in O(n log n) for n clients over lists interned
//! when they arrive (`ffsplit/clients.rs`); the voting round is here.

use std::collections::BTreeMap;

mod clients;
mod decision;

#[cfg(test)]
pub(crate) use decision::preferred_node;
use decision::{evaluate, Scratch, Trigger};
pub(crate) use decision::{Selection, View};

use crate::nodeset::{sorted_ids, NodeSets, SetId};
use crate::{
    contains_node, Action, AlgoError, Algorithm, AlgorithmKind, Ctx, DecisionRecord, Event, NodeId,
    NodeInfo, RestoredVote, Vote,
};

/// Where the cluster is in its current voting round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ClusterState {
    /// No round in progress.
    #[default]
    WaitingForChange,
    /// The last decision attempt found membership unstable; nothing is sent
    /// until the next (stable) decision.
    WaitingForStableMembership,
    /// NACKs were sent; ACKs are held back until all are acknowledged.
    SendingNacks,
    /// ACKs were sent; waiting for their acknowledgements.
    SendingAcks,
}

/// Where one client is in the current voting round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ClientState {
    /// Nothing outstanding for this client.
    #[default]
    Idle,
    /// A NACK with this seq was sent and not yet acknowledged.
    NackSent { seq: u32 },
    /// The client is in the chosen partition; its ACK waits for the NACKs.
    AckPending,
    /// An ACK with this seq was sent and not yet acknowledged.
    AckSent { seq: u32 },
}

/// Per-client algorithm data.
#[derive(Clone, Debug, Default)]
struct ClientData {
    state: ClientState,
    /// Seq of the last `VOTE_INFO` sent to this client; 0 before the first.
    /// Seqs are pre-incremented, so the first one sent is 1.
    last_seq: u32,
    /// The client's config and membership lists as the cluster stores
    /// them, interned in [`Ffsplit::sets`] (`None` until received).
    config: Option<SetId>,
    membership: Option<SetId>,
}

/// The ffsplit algorithm's state for one cluster.
#[derive(Debug, Default)]
pub struct Ffsplit {
    state: ClusterState,
    /// Node ids (sorted, distinct) of the membership list of the partition
    /// chosen by the last stable decision (empty if none was chosen); used
    /// by the KAP rule.
    quorate_partition: Vec<NodeId>,
    /// Data of every client of the cluster, by node id.
    clients: BTreeMap<NodeId, ClientData>,
    /// The decision of the last call, for the decision log.
    last_decision: Option<DecisionRecord>,
    /// The pre-restart holder while its hold is in force (its members
    /// sorted).
    hold: Option<RestoredVote>,
    /// The clients' lists, interned.
    sets: NodeSets,
    /// Buffers of the decision.
    scratch: Scratch,
}

/// Queues `VOTE_INFO(vote)` for `view`'s client with its next seq and
/// returns that seq. Refuses (returns `None`) for a client that has not sent
/// both its lists: a 3.0.x client exits on such an early VOTE_INFO. The
/// stability test makes that unreachable; this is a second line of defence.
fn send_vote_info(
    data: &mut ClientData,
    view: &View<'_>,
    vote: Vote,
    actions: &mut Vec<Action>,
) -> Option<u32> {
    if !view.is_ready() {
        return None;
    }
    data.last_seq = data.last_seq.wrapping_add(1);
    actions.push(Action::SendVoteInfo {
        node: view.node,
        seq: data.last_seq,
        vote,
        ring: view.ring,
    });
    Some(data.last_seq)
}

impl Ffsplit {
    /// The decision ("DO", §5.1). Returns the vote for the triggering
    /// request's reply.
    fn decide(&mut self, ctx: &Ctx<'_>, trigger: &Trigger<'_>, actions: &mut Vec<Action>) -> Vote {
        self.sync_clients(ctx);
        self.state = ClusterState::WaitingForStableMembership;

        let views = self.participant_views(ctx, Some(trigger));
        let selection = evaluate(
            ctx,
            &views,
            &self.sets,
            &self.quorate_partition,
            &mut self.scratch,
        );
        #[cfg(any(test, feature = "fuzzing"))]
        crate::sim::oracle::check_ffsplit(
            ctx,
            &views,
            &self.sets,
            &self.quorate_partition,
            selection.as_ref(),
        );
        let Some(Selection {
            mut best,
            mut reason,
            partitions,
        }) = selection
        else {
            // Membership is not stable. Client states are left as they
            // are; with the cluster in this state, late acknowledgements
            // only clear them and no held-back ACK is ever sent.
            return Vote::WaitForReply;
        };

        let held_back = self.restart_hold_blocks(ctx, trigger, best, actions);
        if held_back {
            best = None;
            reason = "restart_hold";
        }
        let winner = best.map(|b| b.ring);
        let selected = sorted_ids(
            best.iter()
                .flat_map(|b| b.membership.iter().map(|n| n.node_id)),
        );
        // While held back, everybody connected gets NACK, and the
        // remembered holder stays KAP's active partition afterwards.
        let kept_for_kap = held_back.then(|| std::mem::take(&mut self.quorate_partition));
        self.quorate_partition = selected;

        // Step 5: the leaving client has nothing outstanding any more; the
        // chosen partition waits for its ACK; everyone else gets a NACK.
        if trigger.leaving {
            if let Some(data) = self.clients.get_mut(&trigger.view.node) {
                data.state = ClientState::Idle;
            }
        }
        for view in &views {
            let in_partition = self.quorate_partition.binary_search(&view.node).is_ok();
            let data = self.clients.entry(view.node).or_default();
            data.state = if in_partition {
                ClientState::AckPending
            } else {
                ClientState::Idle
            };
        }

        // Steps 6-7: NACKs first; ACKs right away only if nobody got a NACK.
        self.state = ClusterState::SendingNacks;
        let nacks = self.send_nacks(&views, actions);
        if nacks == 0 {
            self.start_sending_acks(&views, actions);
        }
        if let Some(kept) = kept_for_kap {
            self.quorate_partition = kept;
        }
        self.last_decision = Some(DecisionRecord {
            partitions,
            winner,
            reason,
            pending: nacks > 0 && winner.is_some(),
        });
        Vote::NoChange
    }

    /// Whether the restart hold keeps the vote from `best`: the hold is in
    /// force, some of the old holder's nodes are not connected yet, and
    /// `best` has none of them. Arms a timer (on a connected client) for the end
    /// of the hold. Clears the hold once it no longer applies.
    fn restart_hold_blocks(
        &mut self,
        ctx: &Ctx<'_>,
        trigger: &Trigger<'_>,
        best: Option<&View<'_>>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(hold) = &self.hold else {
            return false;
        };
        let holder_back = hold
            .members
            .iter()
            .all(|m| ctx.clients.contains_key(m) && !(trigger.leaving && trigger.view.node == *m));
        if ctx.now_ms >= hold.hold_until_ms || holder_back {
            self.hold = None;
            return false;
        }
        let Some(b) = best else {
            return false;
        };
        if b.membership_set
            .is_some_and(|list| hold.members.iter().any(|&m| self.sets.contains(list, m)))
        {
            return false;
        }
        let after_ms = hold.hold_until_ms - ctx.now_ms;
        let timer_node = ctx
            .clients
            .keys()
            .copied()
            .find(|n| !(trigger.leaving && *n == trigger.view.node));
        if let Some(node) = timer_node {
            actions.push(Action::ArmTimer { node, after_ms });
        }
        true
    }

    /// Sends NACK to every participant outside the chosen partition and
    /// returns how many were sent.
    ///
    /// This is where a bounded NACK wait would start (not implemented yet,
    /// quirk 3): arm a timer (`Action::ArmTimer`) when this returns non-zero
    /// and cancel it when the last NACK is acknowledged; its expiry arrives as
    /// `Event::Timer`, where the policy for NACK recipients that never answer
    /// would go. Until then the winners wait for the next decision.
    fn send_nacks(&mut self, views: &[View<'_>], actions: &mut Vec<Action>) -> usize {
        let mut sent = 0;
        for view in views {
            if self.quorate_partition.binary_search(&view.node).is_ok() {
                continue;
            }
            let data = self.clients.entry(view.node).or_default();
            data.state = match send_vote_info(data, view, Vote::Nack, actions) {
                Some(seq) => {
                    sent += 1;
                    ClientState::NackSent { seq }
                }
                None => ClientState::Idle,
            };
        }
        sent
    }

    /// Moves to SENDING_ACKS and sends ACK to every client whose ACK is held
    /// back; if there is none the round is over.
    fn start_sending_acks(&mut self, views: &[View<'_>], actions: &mut Vec<Action>) {
        self.state = ClusterState::SendingAcks;
        let mut sent = 0;
        for view in views {
            let Some(data) = self.clients.get_mut(&view.node) else {
                continue;
            };
            if data.state != ClientState::AckPending {
                continue;
            }
            data.state = match send_vote_info(data, view, Vote::Ack, actions) {
                Some(seq) => {
                    sent += 1;
                    ClientState::AckSent { seq }
                }
                None => ClientState::Idle,
            };
        }
        if sent == 0 {
            self.state = ClusterState::WaitingForChange;
        }
    }

    /// Whether any client is in a state matching `pred`.
    fn any_client(&self, pred: impl Fn(ClientState) -> bool) -> bool {
        self.clients.values().any(|d| pred(d.state))
    }

    /// `VOTE_INFO_REPLY(seq)` from `node`.
    fn vote_info_reply(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        seq: u32,
        actions: &mut Vec<Action>,
    ) {
        let Some(data) = self.clients.get_mut(&node) else {
            return;
        };
        // Only the acknowledgement of the vote still outstanding counts. A
        // reply to an older round (or one arriving while this client's ACK is
        // held back) is stale and must not cancel anything (quirk 2).
        match data.state {
            ClientState::NackSent { seq: s } | ClientState::AckSent { seq: s } if s == seq => {
                data.state = ClientState::Idle;
            }
            _ => return,
        }

        match self.state {
            ClusterState::SendingNacks => {
                if !self.any_client(|s| matches!(s, ClientState::NackSent { .. })) {
                    // Every NACK recipient confirmed: now the winners get ACK,
                    // with their stored ring ids.
                    let views = self.participant_views(ctx, None);
                    self.start_sending_acks(&views, actions);
                }
            }
            ClusterState::SendingAcks => {
                if !self.any_client(|s| {
                    matches!(s, ClientState::AckSent { .. } | ClientState::AckPending)
                }) {
                    self.state = ClusterState::WaitingForChange;
                }
            }
            ClusterState::WaitingForChange | ClusterState::WaitingForStableMembership => {}
        }
    }
}

/// Whether a node list sent by `node` is acceptable: non-empty and listing
/// the sender.
fn valid_list(nodes: &[NodeInfo], node: NodeId) -> bool {
    !nodes.is_empty() && contains_node(nodes, node)
}

impl Algorithm for Ffsplit {
    fn kind(&self) -> AlgorithmKind {
        AlgorithmKind::Ffsplit
    }

    fn take_decision(&mut self) -> Option<DecisionRecord> {
        self.last_decision.take()
    }

    fn restore(&mut self, restored: &RestoredVote) {
        let members = sorted_ids(restored.members.iter().copied());
        // The remembered holder is the active partition of the KAP rule.
        if self.quorate_partition.is_empty() {
            self.quorate_partition = members.clone();
        }
        self.hold = Some(RestoredVote {
            members,
            hold_until_ms: restored.hold_until_ms,
        });
    }

    fn on_join(&mut self, ctx: &Ctx<'_>, node: NodeId) {
        // The first client of a cluster starts with fresh cluster data, as
        // the reference allocates it anew.
        if ctx.clients.len() <= 1 {
            *self = Ffsplit::default();
        }
        self.forget(node);
        self.clients.insert(node, ClientData::default());
    }

    fn on_event(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        event: &Event,
        actions: &mut Vec<Action>,
    ) -> Result<Vote, AlgoError> {
        let Some(info) = ctx.clients.get(&node) else {
            return Err(AlgoError::Internal);
        };
        let stored = self.stored_view(info);

        match event {
            Event::ConfigList { nodes, initial, .. } => {
                if !valid_list(nodes, node) {
                    return Err(AlgoError::InvalidConfigNodeList);
                }
                // Accepted: the cluster stores it after this call.
                let list = self.store_list(node, false, nodes);
                // The membership list follows the initial config list.
                if *initial || stored.membership.is_empty() {
                    return Ok(Vote::AskLater);
                }
                let view = View {
                    config: nodes,
                    config_set: Some(list),
                    ..stored
                };
                let trigger = Trigger {
                    view,
                    leaving: false,
                };
                Ok(self.decide(ctx, &trigger, actions))
            }
            Event::Membership {
                ring,
                nodes,
                heuristics,
            } => {
                if !valid_list(nodes, node) {
                    return Err(AlgoError::InvalidMembershipNodeList);
                }
                let list = self.store_list(node, true, nodes);
                if stored.config.is_empty() {
                    return Ok(Vote::AskLater);
                }
                let view = View {
                    ring: *ring,
                    membership: nodes,
                    membership_set: Some(list),
                    heuristics: *heuristics,
                    ..stored
                };
                let trigger = Trigger {
                    view,
                    leaving: false,
                };
                Ok(self.decide(ctx, &trigger, actions))
            }
            // Purely informational.
            Event::Quorum { .. } => Ok(Vote::NoChange),
            Event::HeuristicsChange { heuristics } => {
                if !stored.is_ready() {
                    return Ok(Vote::AskLater);
                }
                let view = View {
                    heuristics: *heuristics,
                    ..stored
                };
                let trigger = Trigger {
                    view,
                    leaving: false,
                };
                Ok(self.decide(ctx, &trigger, actions))
            }
            Event::AskForVote => Err(AlgoError::UnsupportedDecisionAlgorithmMessage),
            Event::VoteInfoReply { seq } => {
                self.vote_info_reply(ctx, node, *seq, actions);
                Ok(Vote::NoChange)
            }
            // The only timer ffsplit arms is the end of the restart hold:
            // decide again, now without it.
            Event::Timer => {
                if self.hold.is_none() || !stored.is_ready() {
                    return Ok(Vote::NoChange);
                }
                let trigger = Trigger {
                    view: stored,
                    leaving: false,
                };
                let _ = self.decide(ctx, &trigger, actions);
                Ok(Vote::NoChange)
            }
        }
    }

    fn on_leave(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        server_going_down: bool,
        actions: &mut Vec<Action>,
    ) {
        if !server_going_down {
            if let Some(info) = ctx.clients.get(&node) {
                let trigger = Trigger {
                    view: self.stored_view(info),
                    leaving: true,
                };
                // The vote is discarded: the client is gone.
                let _ = self.decide(ctx, &trigger, actions);
            }
        }
        self.forget(node);
        if ctx.clients.len() <= 1 {
            // The last client left; the reference frees the cluster data.
            *self = Ffsplit::default();
        }
    }
}
