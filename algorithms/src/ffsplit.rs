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

use std::collections::BTreeMap;

use crate::{
    contains_node, heuristics_score, same_node_set, Action, AlgoError, Algorithm, AlgorithmKind,
    ClientInfo, Ctx, DecisionRecord, Event, Heuristics, NodeId, NodeInfo, PartitionScore,
    RestoredVote, RingId, TieBreaker, Vote,
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
}

/// The ffsplit algorithm's state for one cluster.
#[derive(Debug, Default)]
pub struct Ffsplit {
    state: ClusterState,
    /// Membership list of the partition chosen by the last stable decision
    /// (empty if none was chosen); used by the KAP rule.
    quorate_partition: Vec<NodeInfo>,
    /// Data of every client of the cluster, by node id.
    clients: BTreeMap<NodeId, ClientData>,
    /// The decision of the last call, for the decision log.
    last_decision: Option<DecisionRecord>,
    /// The pre-restart holder while its hold is in force.
    hold: Option<RestoredVote>,
}

/// One client's view as a decision sees it: the event's data for the
/// triggering client, the stored fields for everybody else.
#[derive(Clone, Copy, Debug)]
struct View<'a> {
    node: NodeId,
    ring: RingId,
    config: &'a [NodeInfo],
    membership: &'a [NodeInfo],
    heuristics: Heuristics,
}

impl<'a> View<'a> {
    /// The stored view of a client.
    fn stored(info: &'a ClientInfo) -> Self {
        View {
            node: info.node_id,
            ring: info.ring,
            config: info.config_nodes(),
            membership: info.membership_nodes(),
            heuristics: info.heuristics,
        }
    }

    /// A client is ready once it has sent both a config list and a membership
    /// list (neither can be stored empty: such lists are refused with 18/19).
    fn is_ready(&self) -> bool {
        !self.config.is_empty() && !self.membership.is_empty()
    }
}

/// The client whose message or disconnect started a decision.
struct Trigger<'a> {
    view: View<'a>,
    /// The client is disconnecting: it is skipped everywhere except in the
    /// KAP "all clients" check and in the partition statistics.
    leaving: bool,
}

/// Whether every node id of `a` is also in `b`.
fn is_subset(a: &[NodeInfo], b: &[NodeInfo]) -> bool {
    a.iter().all(|n| contains_node(b, n.node_id))
}

/// The views taking part in a decision, in ascending node-id order: every
/// client of the cluster except a leaving trigger, the trigger (if any) with
/// the event's data.
fn participant_views<'a>(ctx: &Ctx<'a>, trigger: Option<&Trigger<'a>>) -> Vec<View<'a>> {
    let mut views = Vec::with_capacity(ctx.clients.len());
    for (id, info) in ctx.clients.iter() {
        match trigger {
            Some(t) if t.view.node == *id => {
                if !t.leaving {
                    views.push(t.view);
                }
            }
            _ => views.push(View::stored(info)),
        }
    }
    views
}

/// The stability test (§5.1 step 2), plus the "not ready" rule.
fn is_membership_stable(views: &[View<'_>]) -> bool {
    // A client without both lists blocks every decision. This replaces the
    // reference's crash on an empty config list (quirk 1) and guarantees that
    // no VOTE_INFO reaches a client before its lists (quirks 25, 28).
    if views.iter().any(|v| !v.is_ready()) {
        return false;
    }

    // (a) All participating clients have the same config node set. Every
    // ordered pair is checked one way, so both directions get covered.
    for a in views {
        for b in views {
            if a.node != b.node && !is_subset(a.config, b.config) {
                return false;
            }
        }
    }

    // (b) Every participating client listed in another client's membership
    // list (or its own) reports the same ring id and a superset of that list.
    // Clients not connected (or leaving) are ignored.
    for a in views {
        for member in a.membership {
            let Some(b) = views.iter().find(|v| v.node == member.node_id) else {
                continue;
            };
            if a.ring != b.ring || !is_subset(a.membership, b.membership) {
                return false;
            }
        }
    }

    true
}

/// Statistics of the partition represented by `rep` (its membership list):
/// `(active, score)`, where `active` counts the list's entries that have a
/// client in the cluster (a leaving client included, quirk 5) and `score` is
/// `active + pass - fail`.
///
/// As in the reference, only the representative itself is judged by its
/// view's heuristics; every other member uses its *stored* heuristics, even
/// when it is the triggering client.
fn partition_stats(ctx: &Ctx<'_>, rep: &View<'_>) -> (i64, i64) {
    let mut active = 0;
    let mut score = 0;
    for member in rep.membership {
        if let Some(info) = ctx.clients.get(&member.node_id) {
            let heuristics = if member.node_id == rep.node {
                rep.heuristics
            } else {
                info.heuristics
            };
            active += 1;
            score += heuristics_score(heuristics);
        }
    }
    (active, score)
}

/// The node whose partition wins a tie, judged from `config` (the compared
/// client's config list). `None` for an empty list (never reached: such a
/// client is not ready).
fn preferred_node(tie_breaker: TieBreaker, config: &[NodeInfo]) -> Option<NodeId> {
    match tie_breaker {
        TieBreaker::Lowest => config.iter().map(|n| n.node_id).min(),
        TieBreaker::Highest => config.iter().map(|n| n.node_id).max(),
        TieBreaker::NodeId(id) => Some(id),
    }
}

/// `CMP(X, B)` of §5.1: whether `x`'s partition beats `best`'s (or the empty
/// candidate when `best` is `None`), and the step that decided it (for the
/// decision log).
fn beats(
    ctx: &Ctx<'_>,
    x: &View<'_>,
    best: Option<&View<'_>>,
    quorate_partition: &[NodeInfo],
    kap: bool,
) -> (bool, &'static str) {
    // Sizes count list entries, as the reference does.
    let configured = x.config.len();
    let members = x.membership.len();
    let half = configured / 2;

    // Odd clusters never tie; even ones decide on size unless exactly 50:50.
    if configured % 2 == 1 || members != half {
        return (members > half, "majority");
    }

    // 50:50 split. 1-2: heuristics score.
    let (x_active, x_score) = partition_stats(ctx, x);
    let (b_active, b_score) = best.map_or((0, 0), |b| partition_stats(ctx, b));
    if x_score != b_score {
        return (x_score > b_score, "heuristics");
    }
    // 3: more connected clients.
    if x_active != b_active {
        return (x_active > b_active, "connected_nodes");
    }
    // 4: keep the active partition, judged by the two compared clients.
    if let (true, Some(b)) = (kap, best) {
        let x_was_quorate = contains_node(quorate_partition, x.node);
        let b_was_quorate = contains_node(quorate_partition, b.node);
        if x_was_quorate != b_was_quorate {
            return (x_was_quorate, "keep_active_partition");
        }
    }
    // 5: the tie-breaker; `best` is not examined.
    let wins =
        preferred_node(ctx.tie_breaker, x.config).is_some_and(|p| contains_node(x.membership, p));
    (wins, "tie_breaker")
}

/// Partition selection (§5.1 step 3): the view whose membership list is the
/// chosen partition (or `None` if no partition may become quorate), and the
/// step that decided against the last rival partition.
fn select_partition<'v, 'a>(
    ctx: &Ctx<'_>,
    views: &'v [View<'a>],
    quorate_partition: &[NodeInfo],
) -> (Option<&'v View<'a>>, &'static str) {
    // KAP applies only if every client of the cluster (a leaving one
    // included, it is still listed) enabled it.
    let kap = ctx.clients.values().all(|c| c.kap);
    let mut best: Option<&View<'a>> = None;
    let mut reason = "single_partition";
    for x in views {
        let (wins, step) = beats(ctx, x, best, quorate_partition, kap);
        let rival = match best {
            // A member of the current best partition is no rival.
            Some(b) => !same_node_set(b.membership, x.membership),
            None => false,
        };
        if rival || (best.is_none() && !wins) {
            reason = step;
        }
        if wins {
            best = Some(x);
        }
    }
    if best.is_none() {
        reason = "no_partition_eligible";
    }
    (best, reason)
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
    /// Makes the per-client table match the cluster's clients.
    fn sync_clients(&mut self, ctx: &Ctx<'_>) {
        self.clients.retain(|id, _| ctx.clients.contains_key(id));
        for id in ctx.clients.keys() {
            self.clients.entry(*id).or_default();
        }
    }

    /// The decision ("DO", §5.1). Returns the vote for the triggering
    /// request's reply.
    fn decide(&mut self, ctx: &Ctx<'_>, trigger: &Trigger<'_>, actions: &mut Vec<Action>) -> Vote {
        self.sync_clients(ctx);
        self.state = ClusterState::WaitingForStableMembership;

        let views = participant_views(ctx, Some(trigger));
        if !is_membership_stable(&views) {
            // Client states are left as they are; with the cluster in this
            // state, late acknowledgements only clear them and no held-back
            // ACK is ever sent.
            return Vote::WaitForReply;
        }

        let (mut best, mut reason) = select_partition(ctx, &views, &self.quorate_partition);
        let held_back = self.restart_hold_blocks(ctx, trigger, best, actions);
        if held_back {
            best = None;
            reason = "restart_hold";
        }
        let winner = best.map(|b| b.ring);
        let selected: Vec<NodeInfo> = best.map(|b| b.membership.to_vec()).unwrap_or_default();
        let mut partitions: Vec<PartitionScore> = Vec::new();
        for v in &views {
            if !partitions.iter().any(|p| p.ring == v.ring) {
                partitions.push(PartitionScore {
                    ring: v.ring,
                    nodes: v.membership.iter().map(|n| n.node_id).collect(),
                    score: partition_stats(ctx, v).1,
                });
            }
        }
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
            let data = self.clients.entry(view.node).or_default();
            data.state = if contains_node(&self.quorate_partition, view.node) {
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
        if b.membership
            .iter()
            .any(|n| hold.members.contains(&n.node_id))
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
            if contains_node(&self.quorate_partition, view.node) {
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
                    let views = participant_views(ctx, None);
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
        // The remembered holder is the active partition of the KAP rule.
        if self.quorate_partition.is_empty() {
            self.quorate_partition = restored.members.iter().map(|n| NodeInfo::new(*n)).collect();
        }
        self.hold = Some(restored.clone());
    }

    fn on_join(&mut self, ctx: &Ctx<'_>, node: NodeId) {
        // The first client of a cluster starts with fresh cluster data, as
        // the reference allocates it anew.
        if ctx.clients.len() <= 1 {
            *self = Ffsplit::default();
        }
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
        let stored = View::stored(info);

        match event {
            Event::ConfigList { nodes, initial, .. } => {
                if !valid_list(nodes, node) {
                    return Err(AlgoError::InvalidConfigNodeList);
                }
                // The membership list follows the initial config list.
                if *initial || stored.membership.is_empty() {
                    return Ok(Vote::AskLater);
                }
                let view = View {
                    config: nodes,
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
                if stored.config.is_empty() {
                    return Ok(Vote::AskLater);
                }
                let view = View {
                    ring: *ring,
                    membership: nodes,
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
                    view: View::stored(info),
                    leaving: true,
                };
                // The vote is discarded: the client is gone.
                let _ = self.decide(ctx, &trigger, actions);
            }
        }
        self.clients.remove(&node);
        if ctx.clients.len() <= 1 {
            // The last client left; the reference frees the cluster data.
            *self = Ffsplit::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cluster;

    use crate::testutil::{nl, r, vi};

    /// A cluster under test, driven through [`Cluster`] like the server does.
    struct T {
        c: Cluster,
        /// The virtual clock given to every call.
        now: u64,
    }

    impl T {
        fn new(tb: TieBreaker) -> Self {
            T {
                c: Cluster::new(AlgorithmKind::Ffsplit, tb),
                now: 0,
            }
        }

        fn join(&mut self, node: NodeId, ring: RingId, kap: bool) {
            let tb = self.c.tie_breaker();
            let joined = self
                .c
                .join(node, AlgorithmKind::Ffsplit, tb, ring, 8000, kap, 0);
            assert_eq!(joined, Ok(()));
        }

        fn event(&mut self, node: NodeId, event: Event) -> (Result<Vote, AlgoError>, Vec<Action>) {
            let o = self.c.handle(node, event, self.now);
            (o.reply, o.actions)
        }

        fn config(
            &mut self,
            node: NodeId,
            ids: &[NodeId],
        ) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.event(
                node,
                Event::ConfigList {
                    nodes: nl(ids),
                    initial: true,
                    config_version: None,
                },
            )
        }

        fn changed_config(
            &mut self,
            node: NodeId,
            ids: &[NodeId],
        ) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.event(
                node,
                Event::ConfigList {
                    nodes: nl(ids),
                    initial: false,
                    config_version: Some(2),
                },
            )
        }

        fn member_h(
            &mut self,
            node: NodeId,
            ring: RingId,
            ids: &[NodeId],
            heuristics: Heuristics,
        ) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.event(
                node,
                Event::Membership {
                    ring,
                    nodes: nl(ids),
                    heuristics,
                },
            )
        }

        fn member(
            &mut self,
            node: NodeId,
            ring: RingId,
            ids: &[NodeId],
        ) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.member_h(node, ring, ids, Heuristics::Undefined)
        }

        fn heur(&mut self, node: NodeId, h: Heuristics) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.event(node, Event::HeuristicsChange { heuristics: h })
        }

        /// VOTE_INFO_REPLY(seq) from `node`; returns the actions.
        fn reply(&mut self, node: NodeId, seq: u32) -> Vec<Action> {
            let (res, actions) = self.event(node, Event::VoteInfoReply { seq });
            assert!(res.is_ok());
            actions
        }

        fn leave(&mut self, node: NodeId) -> Vec<Action> {
            self.c.leave(node, false, self.now)
        }
    }

    /// Nodes 1 and 2 (config [1,2]) with ring 1/8, both holding an
    /// acknowledged ACK (seq 1).
    fn two_nodes_with_ack(tb: TieBreaker, kap: bool) -> T {
        let mut t = T::new(tb);
        t.join(1, r(1, 4), kap);
        t.join(2, r(1, 4), kap);
        for n in [1, 2] {
            assert_eq!(t.config(n, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        }
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(1, 8), &[1, 2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(
            actions,
            vec![vi(1, 1, Vote::Ack, r(1, 8)), vi(2, 1, Vote::Ack, r(1, 8))]
        );
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());
        t
    }

    /// Four nodes (config [1..4]) in ring 1/4, all holding an acknowledged
    /// ACK (seq 1).
    fn four_nodes_with_ack(tb: TieBreaker) -> T {
        let all = [1, 2, 3, 4];
        let mut t = T::new(tb);
        for n in all {
            t.join(n, r(1, 4), false);
        }
        for n in all {
            assert_eq!(t.config(n, &all), (Ok(Vote::AskLater), vec![]));
        }
        for n in [1, 2, 3] {
            assert_eq!(t.member(n, r(1, 4), &all), (Ok(Vote::WaitForReply), vec![]));
        }
        let (vote, actions) = t.member(4, r(1, 4), &all);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(
            actions,
            all.iter()
                .map(|&n| vi(n, 1, Vote::Ack, r(1, 4)))
                .collect::<Vec<_>>()
        );
        for n in all {
            assert!(t.reply(n, 1).is_empty());
        }
        t
    }

    /// Splits [`four_nodes_with_ack`] into {1,2} (ring 1/8) and {3,4}
    /// (ring 3/8); returns the actions of the last membership list (from 4).
    fn split_four(t: &mut T, h34: Heuristics) -> Vec<Action> {
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert_eq!(
            t.member(2, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert_eq!(
            t.member_h(3, r(3, 8), &[3, 4], h34),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member_h(4, r(3, 8), &[3, 4], h34);
        assert_eq!(vote, Ok(Vote::NoChange));
        actions
    }

    /// §5.1's worked example, step by step.
    #[test]
    fn worked_example() {
        let mut t = T::new(TieBreaker::Lowest);
        t.join(1, r(1, 4), true);
        t.join(2, r(1, 4), true);
        assert_eq!(t.config(2, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(1, &[1, 2]), (Ok(Vote::AskLater), vec![]));

        // 1. Node 1 reports ring 1/8 while node 2 is still at 1/4.
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );

        // 2. Node 2 reports 1/8 too: stable; both get ACK(seq 1). Node 2's
        // VOTE_INFO carries the ring from its event (stored is still 1/4).
        let o = t.c.handle(
            2,
            Event::Membership {
                ring: r(1, 8),
                nodes: nl(&[1, 2]),
                heuristics: Heuristics::Undefined,
            },
            0,
        );
        assert_eq!(o.reply, Ok(Vote::NoChange));
        assert_eq!(o.reply_ring, r(1, 8));
        assert_eq!(
            o.actions,
            vec![vi(1, 1, Vote::Ack, r(1, 8)), vi(2, 1, Vote::Ack, r(1, 8))]
        );
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());

        // 3. Split. The first report gets WAIT_FOR_REPLY; the second decides:
        // 50:50, same score and active count, KAP undecided (both were
        // quorate), LOWEST -> node 1's partition.
        assert_eq!(
            t.member(1, r(1, 12), &[1]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(2, 12), &[2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        // 4. NACK to node 2 first ...
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        // ... a reply to an older VOTE_INFO does not count ...
        assert!(t.reply(2, 1).is_empty());
        // ... ACK to node 1 only after node 2 acknowledged seq 2.
        assert_eq!(t.reply(2, 2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
        assert!(t.reply(1, 2).is_empty());

        // 5. Node 1 disconnects: node 2 gets ACK(seq 3).
        assert_eq!(t.leave(1), vec![vi(2, 3, Vote::Ack, r(2, 12))]);
        assert_eq!(t.c.client(2).and_then(|c| c.last_vote), Some(Vote::Ack));
    }

    /// Splits [`two_nodes_with_ack`] and returns the last report's actions.
    fn split_two(tb: TieBreaker) -> (T, Vec<Action>) {
        let mut t = two_nodes_with_ack(tb, false);
        assert_eq!(
            t.member(1, r(1, 12), &[1]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(2, 12), &[2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        (t, actions)
    }

    #[test]
    fn two_node_split_lowest() {
        let (mut t, actions) = split_two(TieBreaker::Lowest);
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        assert_eq!(t.reply(2, 2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
    }

    #[test]
    fn two_node_split_highest() {
        let (mut t, actions) = split_two(TieBreaker::Highest);
        assert_eq!(actions, vec![vi(1, 2, Vote::Nack, r(1, 12))]);
        assert_eq!(t.reply(1, 2), vec![vi(2, 2, Vote::Ack, r(2, 12))]);
    }

    #[test]
    fn two_node_split_node_id() {
        let (mut t, actions) = split_two(TieBreaker::NodeId(2));
        assert_eq!(actions, vec![vi(1, 2, Vote::Nack, r(1, 12))]);
        assert_eq!(t.reply(1, 2), vec![vi(2, 2, Vote::Ack, r(2, 12))]);

        let (mut t, actions) = split_two(TieBreaker::NodeId(1));
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        assert_eq!(t.reply(2, 2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
    }

    /// A NODE_ID tie-breaker naming a node in neither half: the earlier
    /// candidate (lower node id) stays best.
    #[test]
    fn two_node_split_node_id_absent() {
        let (mut t, actions) = split_two(TieBreaker::NodeId(9));
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        assert_eq!(t.reply(2, 2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
    }

    /// 2/2 split of 4 nodes where heuristics (PASS on 3 and 4) beat LOWEST.
    #[test]
    fn four_node_split_heuristics_decide() {
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let actions = split_four(&mut t, Heuristics::Pass);
        assert_eq!(
            actions,
            vec![vi(1, 2, Vote::Nack, r(1, 8)), vi(2, 2, Vote::Nack, r(1, 8))]
        );
        assert!(t.reply(1, 2).is_empty());
        assert_eq!(
            t.reply(2, 2),
            vec![vi(3, 2, Vote::Ack, r(3, 8)), vi(4, 2, Vote::Ack, r(3, 8))]
        );
    }

    /// The same split without heuristics goes to LOWEST's side; FAIL on the
    /// lowest side moves it away.
    #[test]
    fn four_node_split_tie_breaker_and_failing_heuristics() {
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let actions = split_four(&mut t, Heuristics::Undefined);
        assert_eq!(
            actions,
            vec![vi(3, 2, Vote::Nack, r(3, 8)), vi(4, 2, Vote::Nack, r(3, 8))]
        );
        assert!(t.reply(4, 2).is_empty());
        assert_eq!(
            t.reply(3, 2),
            vec![vi(1, 2, Vote::Ack, r(1, 8)), vi(2, 2, Vote::Ack, r(1, 8))]
        );

        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        assert_eq!(
            t.member_h(1, r(1, 8), &[1, 2], Heuristics::Fail),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert_eq!(
            t.member(2, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert_eq!(
            t.member(3, r(3, 8), &[3, 4]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(4, r(3, 8), &[3, 4]);
        assert_eq!(
            actions,
            vec![vi(1, 2, Vote::Nack, r(1, 8)), vi(2, 2, Vote::Nack, r(1, 8))]
        );
    }

    /// Reference detail (differs from the doc's wording): in the partition
    /// statistics the triggering client's new heuristics count only when it
    /// is the compared client itself; as a mere member of a partition its
    /// stored (previous) result is used.
    #[test]
    fn trigger_heuristics_count_only_for_the_compared_client() {
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let _ = split_four(&mut t, Heuristics::Undefined);
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(t.reply(4, 2).len(), 2);
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(2, 2).is_empty());

        // Node 2 now fails. Node 1 represents {1,2} with node 2's *stored*
        // (undefined) result, so {1,2} keeps the vote this time.
        let (vote, actions) = t.heur(2, Heuristics::Fail);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(
            actions,
            vec![vi(3, 3, Vote::Nack, r(3, 8)), vi(4, 3, Vote::Nack, r(3, 8))]
        );
        assert!(t.reply(3, 3).is_empty());
        assert_eq!(
            t.reply(4, 3),
            vec![vi(1, 3, Vote::Ack, r(1, 8)), vi(2, 3, Vote::Ack, r(1, 8))]
        );
        assert!(t.reply(1, 3).is_empty());
        assert!(t.reply(2, 3).is_empty());

        // The next decision sees node 2's stored FAIL: the vote moves.
        let (_, actions) = t.heur(1, Heuristics::Undefined);
        assert_eq!(
            actions,
            vec![vi(1, 4, Vote::Nack, r(1, 8)), vi(2, 4, Vote::Nack, r(1, 8))]
        );
    }

    /// 3/1 split of 4 nodes: the bigger side wins, the tie-breaker (HIGHEST
    /// would prefer node 4) is not consulted.
    #[test]
    fn three_one_split() {
        let mut t = four_nodes_with_ack(TieBreaker::Highest);
        assert_eq!(t.member(4, r(4, 8), &[4]), (Ok(Vote::WaitForReply), vec![]));
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2, 3]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert_eq!(
            t.member(2, r(1, 8), &[1, 2, 3]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(3, r(1, 8), &[1, 2, 3]);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(actions, vec![vi(4, 2, Vote::Nack, r(4, 8))]);
        assert_eq!(
            t.reply(4, 2),
            vec![
                vi(1, 2, Vote::Ack, r(1, 8)),
                vi(2, 2, Vote::Ack, r(1, 8)),
                vi(3, 2, Vote::Ack, r(1, 8))
            ]
        );
    }

    /// Three nodes: a 2/1 split goes to the majority; a 1/1/1 split gives
    /// nobody the vote.
    #[test]
    fn odd_node_count() {
        let all = [1, 2, 3];
        let mut t = T::new(TieBreaker::Highest);
        for n in all {
            t.join(n, r(1, 4), false);
            assert_eq!(t.config(n, &all), (Ok(Vote::AskLater), vec![]));
        }
        assert_eq!(t.member(3, r(3, 8), &[3]), (Ok(Vote::WaitForReply), vec![]));
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(1, 8), &[1, 2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(actions, vec![vi(3, 1, Vote::Nack, r(3, 8))]);
        assert_eq!(
            t.reply(3, 1),
            vec![vi(1, 1, Vote::Ack, r(1, 8)), vi(2, 1, Vote::Ack, r(1, 8))]
        );
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());

        assert_eq!(
            t.member(1, r(1, 12), &[1]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(2, r(2, 12), &[2]);
        assert_eq!(
            actions,
            vec![
                vi(1, 2, Vote::Nack, r(1, 12)),
                vi(2, 2, Vote::Nack, r(2, 12)),
                vi(3, 2, Vote::Nack, r(3, 8))
            ]
        );
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(2, 2).is_empty());
        assert!(t.reply(3, 2).is_empty());
    }

    /// After a restart that remembered {3,4} as the holder, nodes 1 and 2
    /// (KAP on) reconnect first as their own half and join. Returns the
    /// actions of the decision that node 2's membership list triggers.
    fn restart_with_holder_3_4(tb: TieBreaker) -> (T, Vec<Action>) {
        let all = [1, 2, 3, 4];
        let mut t = T::new(tb);
        t.join(1, r(1, 6), true);
        t.c.restore(&RestoredVote {
            members: vec![3, 4],
            hold_until_ms: 5000,
        });
        t.join(2, r(1, 6), true);
        assert_eq!(t.config(1, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(2, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(1, 6), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(1, 6), &[1, 2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        (t, actions)
    }

    /// The half that reconnects first does not take the vote from the
    /// remembered holder; when the holder's nodes are back, the remembered
    /// holder is KAP's active partition, so LOWEST does not move the vote.
    #[test]
    fn restart_hold_and_kap_seed_keep_the_vote_with_the_old_holder() {
        let (mut t, actions) = restart_with_holder_3_4(TieBreaker::Lowest);
        assert_eq!(
            actions,
            vec![
                Action::ArmTimer {
                    node: 1,
                    after_ms: 5000
                },
                vi(1, 1, Vote::Nack, r(1, 6)),
                vi(2, 1, Vote::Nack, r(1, 6))
            ]
        );
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());
        let decision = t.c.handle(
            1,
            Event::Quorum {
                quorate: false,
                nodes: nl(&[1, 2]),
            },
            0,
        );
        assert_eq!(
            decision.decision, None,
            "informational lists decide nothing"
        );

        // The old holder reconnects: the hold ends, KAP keeps {3,4}.
        t.now = 1000;
        t.join(3, r(3, 8), true);
        t.join(4, r(3, 8), true);
        let all = [1, 2, 3, 4];
        assert_eq!(t.config(3, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(4, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(3, r(3, 8), &[3, 4]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(4, r(3, 8), &[3, 4]);
        assert_eq!(
            actions,
            vec![vi(1, 2, Vote::Nack, r(1, 6)), vi(2, 2, Vote::Nack, r(1, 6))]
        );
        assert!(t.reply(1, 2).is_empty());
        assert_eq!(
            t.reply(2, 2),
            vec![vi(3, 1, Vote::Ack, r(3, 8)), vi(4, 1, Vote::Ack, r(3, 8))]
        );
    }

    /// Without the restore, the same reconnection order gives the vote to
    /// {1,2}: the restore is what keeps it (guards the test above).
    #[test]
    fn without_restore_the_first_half_takes_the_vote() {
        let all = [1, 2];
        let mut t = T::new(TieBreaker::Lowest);
        t.join(1, r(1, 6), true);
        t.join(2, r(1, 6), true);
        let all4 = [1, 2, 3, 4];
        for n in all {
            assert_eq!(t.config(n, &all4), (Ok(Vote::AskLater), vec![]));
        }
        assert_eq!(
            t.member(1, r(1, 6), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(2, r(1, 6), &[1, 2]);
        assert_eq!(
            actions,
            vec![vi(1, 1, Vote::Ack, r(1, 6)), vi(2, 1, Vote::Ack, r(1, 6))]
        );
    }

    /// Only part of the old holder is back: the hold stays, and nobody
    /// gets ACK (not even the returned holder node: its partition may no
    /// longer be the one that held the vote).
    #[test]
    fn restart_hold_waits_for_the_whole_old_holder() {
        let (mut t, _) = restart_with_holder_3_4(TieBreaker::Lowest);
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());
        t.join(3, r(3, 8), true);
        assert_eq!(t.config(3, &[1, 2, 3, 4]), (Ok(Vote::AskLater), vec![]));
        let (_, actions) = t.member(3, r(3, 8), &[3, 4]);
        assert_eq!(
            actions,
            vec![
                Action::ArmTimer {
                    node: 1,
                    after_ms: 5000
                },
                vi(1, 2, Vote::Nack, r(1, 6)),
                vi(2, 2, Vote::Nack, r(1, 6)),
                vi(3, 1, Vote::Nack, r(3, 8))
            ]
        );
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(2, 2).is_empty());
        assert!(t.reply(3, 1).is_empty(), "no ACK follows the NACKs");
    }

    /// If the old holder never comes back, the hold ends at its time and
    /// the connected half gets the vote.
    #[test]
    fn restart_hold_ends_at_its_time() {
        let (mut t, _) = restart_with_holder_3_4(TieBreaker::Lowest);
        assert!(t.reply(1, 1).is_empty());
        assert!(t.reply(2, 1).is_empty());
        t.now = 4999;
        let (_, actions) = t.event(1, Event::Timer);
        assert_eq!(
            actions,
            vec![
                Action::ArmTimer {
                    node: 1,
                    after_ms: 1
                },
                vi(1, 2, Vote::Nack, r(1, 6)),
                vi(2, 2, Vote::Nack, r(1, 6))
            ],
            "an early timer re-arms"
        );
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(2, 2).is_empty());
        t.now = 5000;
        let (_, actions) = t.event(1, Event::Timer);
        assert_eq!(
            actions,
            vec![vi(1, 3, Vote::Ack, r(1, 6)), vi(2, 3, Vote::Ack, r(1, 6))]
        );
        // The hold is over for good: later timers decide nothing.
        assert!(t.reply(1, 3).is_empty());
        assert!(t.reply(2, 3).is_empty());
        assert_eq!(t.event(1, Event::Timer), (Ok(Vote::NoChange), vec![]));
    }

    /// A partition that contains one of the old holder's nodes is not held
    /// back.
    #[test]
    fn restart_hold_does_not_block_a_partition_with_a_holder_node() {
        let all = [1, 2, 3, 4];
        let mut t = T::new(TieBreaker::Lowest);
        t.join(2, r(2, 6), false);
        t.c.restore(&RestoredVote {
            members: vec![2, 3],
            hold_until_ms: 5000,
        });
        t.join(1, r(2, 6), false);
        assert_eq!(t.config(1, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(2, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(2, 6), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(2, r(2, 6), &[1, 2]);
        assert_eq!(
            actions,
            vec![vi(1, 1, Vote::Ack, r(2, 6)), vi(2, 1, Vote::Ack, r(2, 6))]
        );
    }

    /// Nodes 3 and 4 hold the vote (alone, 1 and 2 not connected), then 1 and
    /// 2 come up as a separate half: tie on everything.
    fn kap_scenario(kap_of_1: bool) -> (T, Vec<Action>) {
        let all = [1, 2, 3, 4];
        let mut t = T::new(TieBreaker::Lowest);
        t.join(3, r(3, 4), true);
        t.join(4, r(3, 4), true);
        assert_eq!(t.config(3, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(4, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(3, r(3, 4), &[3, 4]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(4, r(3, 4), &[3, 4]);
        assert_eq!(
            actions,
            vec![vi(3, 1, Vote::Ack, r(3, 4)), vi(4, 1, Vote::Ack, r(3, 4))]
        );
        assert!(t.reply(3, 1).is_empty());
        assert!(t.reply(4, 1).is_empty());

        t.join(1, r(1, 6), kap_of_1);
        t.join(2, r(1, 6), true);
        assert_eq!(t.config(1, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(2, &all), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(1, 6), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (vote, actions) = t.member(2, r(1, 6), &[1, 2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        (t, actions)
    }

    /// KAP keeps the vote with the previously quorate half where LOWEST
    /// would move it.
    #[test]
    fn kap_keeps_the_active_partition() {
        let (mut t, actions) = kap_scenario(true);
        assert_eq!(
            actions,
            vec![vi(1, 1, Vote::Nack, r(1, 6)), vi(2, 1, Vote::Nack, r(1, 6))]
        );
        assert!(t.reply(1, 1).is_empty());
        assert_eq!(
            t.reply(2, 1),
            vec![vi(3, 2, Vote::Ack, r(3, 4)), vi(4, 2, Vote::Ack, r(3, 4))]
        );
    }

    /// KAP applies only when every client enabled it: otherwise LOWEST moves
    /// the vote (NACK to the old holders first).
    #[test]
    fn kap_needs_every_client() {
        let (mut t, actions) = kap_scenario(false);
        assert_eq!(
            actions,
            vec![vi(3, 2, Vote::Nack, r(3, 4)), vi(4, 2, Vote::Nack, r(3, 4))]
        );
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(
            t.reply(4, 2),
            vec![vi(1, 1, Vote::Ack, r(1, 6)), vi(2, 1, Vote::Ack, r(1, 6))]
        );
    }

    /// No ACK before the NACK reply; each new round bumps the NACK seq and a
    /// reply to the older one does not release the ACK.
    #[test]
    fn nack_before_ack_and_old_replies_ignored() {
        let (mut t, actions) = split_two(TieBreaker::Lowest);
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        // A new decision (heuristics change of the winner) restarts the round.
        let (vote, actions) = t.heur(1, Heuristics::Pass);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(actions, vec![vi(2, 3, Vote::Nack, r(2, 12))]);
        assert!(t.reply(2, 2).is_empty());
        assert!(t.reply(1, 1).is_empty());
        assert_eq!(t.reply(2, 3), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
        // Duplicate replies change nothing.
        assert!(t.reply(2, 3).is_empty());
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(1, 2).is_empty());
    }

    /// Every stable decision re-sends the votes (quirk 6, kept).
    #[test]
    fn stable_decision_resends_votes() {
        let mut t = two_nodes_with_ack(TieBreaker::Lowest, false);
        let (vote, actions) = t.changed_config(1, &[1, 2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(
            actions,
            vec![vi(1, 2, Vote::Ack, r(1, 8)), vi(2, 2, Vote::Ack, r(1, 8))]
        );
    }

    /// When the winning half disconnects the vote moves to the other half.
    #[test]
    fn disconnect_of_winning_side_moves_the_vote() {
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let _ = split_four(&mut t, Heuristics::Undefined);
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(t.reply(4, 2).len(), 2);
        assert!(t.reply(1, 2).is_empty());
        assert!(t.reply(2, 2).is_empty());

        // Node 1 leaves: it still counts as active in its partition (quirk 5,
        // kept), so {1,2} still wins and 3, 4 are re-NACKed.
        assert_eq!(
            t.leave(1),
            vec![vi(3, 3, Vote::Nack, r(3, 8)), vi(4, 3, Vote::Nack, r(3, 8))]
        );
        assert!(t.reply(3, 3).is_empty());
        assert_eq!(t.reply(4, 3), vec![vi(2, 3, Vote::Ack, r(1, 8))]);
        assert!(t.reply(2, 3).is_empty());

        // Node 2 leaves too: nobody left to NACK, {3,4} get ACK at once.
        assert_eq!(
            t.leave(2),
            vec![vi(3, 4, Vote::Ack, r(3, 8)), vi(4, 4, Vote::Ack, r(3, 8))]
        );
    }

    /// A NACK recipient that disconnects counts as acknowledged.
    #[test]
    fn disconnect_while_nack_outstanding() {
        let (mut t, actions) = split_two(TieBreaker::Lowest);
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        assert_eq!(t.leave(2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);

        // With more clients the leave re-runs the decision: the remaining
        // NACK recipient must answer the new NACK.
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let actions = split_four(&mut t, Heuristics::Undefined);
        assert_eq!(
            actions,
            vec![vi(3, 2, Vote::Nack, r(3, 8)), vi(4, 2, Vote::Nack, r(3, 8))]
        );
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(t.leave(4), vec![vi(3, 3, Vote::Nack, r(3, 8))]);
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(
            t.reply(3, 3),
            vec![vi(1, 2, Vote::Ack, r(1, 8)), vi(2, 2, Vote::Ack, r(1, 8))]
        );
    }

    /// Fix 1 (quirk 1): a client without a config list is "not ready". When
    /// the only other client leaves, the reference runs LOWEST/HIGHEST on its
    /// empty config list and crashes; here nothing is decided.
    #[test]
    fn fix1_not_ready_client_blocks_decisions_without_panic() {
        for tb in [TieBreaker::Lowest, TieBreaker::Highest] {
            let mut t = T::new(tb);
            t.join(1, r(1, 4), false);
            t.join(2, r(1, 4), false);
            assert_eq!(t.config(1, &[1, 2]), (Ok(Vote::AskLater), vec![]));
            // Node 2 has not sent anything: node 1 cannot be decided on.
            assert_eq!(
                t.member(1, r(1, 4), &[1, 2]),
                (Ok(Vote::WaitForReply), vec![])
            );
            assert_eq!(
                t.heur(1, Heuristics::Pass),
                (Ok(Vote::WaitForReply), vec![])
            );
            // The trigger of the reference's crash.
            assert!(t.leave(1).is_empty());
            // Node 2 catches up and is decided on normally.
            assert_eq!(t.config(2, &[1, 2]), (Ok(Vote::AskLater), vec![]));
            let (vote, actions) = t.member(2, r(2, 8), &[2]);
            assert_eq!(vote, Ok(Vote::NoChange));
            assert_eq!(actions, vec![vi(2, 1, Vote::Ack, r(2, 8))]);
        }
        assert_eq!(preferred_node(TieBreaker::Lowest, &[]), None);
        assert_eq!(preferred_node(TieBreaker::Highest, &[]), None);
    }

    /// Fix 2 (quirk 2): a late VOTE_INFO_REPLY to the previous round's ACK
    /// must not cancel the ACK held back in the new round.
    #[test]
    fn fix2_late_reply_does_not_cancel_pending_ack() {
        let mut t = T::new(TieBreaker::Lowest);
        t.join(1, r(1, 4), false);
        t.join(2, r(1, 4), false);
        assert_eq!(t.config(1, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(2, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(1, 8), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(2, r(1, 8), &[1, 2]);
        assert_eq!(
            actions,
            vec![vi(1, 1, Vote::Ack, r(1, 8)), vi(2, 1, Vote::Ack, r(1, 8))]
        );
        assert!(t.reply(2, 1).is_empty());
        // Node 1's reply to ACK(1) is still in flight when the split happens.
        assert_eq!(
            t.member(2, r(2, 12), &[2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        let (_, actions) = t.member(1, r(1, 12), &[1]);
        assert_eq!(actions, vec![vi(2, 2, Vote::Nack, r(2, 12))]);
        // The late reply matches node 1's last seq; the reference would drop
        // node 1's pending ACK here and end the round with no ACK at all.
        assert!(t.reply(1, 1).is_empty());
        assert_eq!(t.reply(2, 2), vec![vi(1, 2, Vote::Ack, r(1, 12))]);
    }

    /// Fix 3 (quirks 25, 28): no VOTE_INFO to a client before it sent both
    /// lists. The reference sends one with the NODE_ID tie-breaker when the
    /// only peer leaves.
    #[test]
    fn fix3_no_vote_info_before_both_lists() {
        // Peer without any list.
        let mut t = T::new(TieBreaker::NodeId(2));
        t.join(1, r(1, 4), false);
        t.join(2, r(1, 4), false);
        assert_eq!(t.config(1, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(1, 4), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert!(t.leave(1).is_empty());

        // Peer with a config list but no membership list yet.
        let mut t = T::new(TieBreaker::NodeId(2));
        t.join(1, r(1, 4), false);
        t.join(2, r(1, 4), false);
        assert_eq!(t.config(1, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.config(2, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        assert_eq!(
            t.member(1, r(1, 4), &[1, 2]),
            (Ok(Vote::WaitForReply), vec![])
        );
        assert!(t.leave(1).is_empty());

        // The triggering client's own lists count once they are in the event:
        // its VOTE_INFO is queued before its NO_CHANGE reply.
        let (vote, actions) = t.member(2, r(2, 8), &[2]);
        assert_eq!(vote, Ok(Vote::NoChange));
        assert_eq!(actions, vec![vi(2, 1, Vote::Ack, r(2, 8))]);
    }

    /// Fix 4: the vote never goes to two partitions at once; the new winner
    /// waits for the old holder's NACK acknowledgement.
    #[test]
    fn fix4_ack_only_after_every_nack_acknowledged() {
        // Node 1 holds ACK; HIGHEST gives the split to node 2.
        let (mut t, actions) = split_two(TieBreaker::Highest);
        assert_eq!(actions, vec![vi(1, 2, Vote::Nack, r(1, 12))]);
        // Node 2 acknowledging its older ACK does not release anything.
        assert!(t.reply(2, 1).is_empty());
        assert!(t.reply(1, 1).is_empty());
        assert_eq!(t.reply(1, 2), vec![vi(2, 2, Vote::Ack, r(2, 12))]);

        // Several NACK recipients: all must answer.
        let mut t = four_nodes_with_ack(TieBreaker::Lowest);
        let _ = split_four(&mut t, Heuristics::Undefined);
        assert!(t.reply(3, 2).is_empty());
        assert_eq!(t.reply(4, 2).len(), 2);
    }

    #[test]
    fn errors_and_simple_replies() {
        let mut t = T::new(TieBreaker::Lowest);
        t.join(1, r(1, 4), false);
        let cfg = |ids: &[NodeId], initial| Event::ConfigList {
            nodes: nl(ids),
            initial,
            config_version: None,
        };
        let mem = |ids: &[NodeId]| Event::Membership {
            ring: r(1, 8),
            nodes: nl(ids),
            heuristics: Heuristics::Undefined,
        };
        // Error 18: empty config list, or one without the sender.
        for (ids, initial) in [(&[][..], true), (&[2, 3][..], true), (&[][..], false)] {
            let (res, actions) = t.event(1, cfg(ids, initial));
            assert_eq!(res, Err(AlgoError::InvalidConfigNodeList));
            assert_eq!(res.map_err(AlgoError::code), Err(18));
            assert!(actions.is_empty());
        }
        // Error 19: empty membership list, or one without the sender.
        for ids in [&[][..], &[2][..]] {
            let (res, _) = t.event(1, mem(ids));
            assert_eq!(res.map_err(AlgoError::code), Err(19));
        }
        assert_eq!(t.c.client(1).and_then(|c| c.config.clone()), None);
        assert_eq!(t.c.client(1).and_then(|c| c.membership.clone()), None);

        // ASK_LATER while lists are missing: membership without config ...
        assert_eq!(t.heur(1, Heuristics::Pass), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.event(1, mem(&[1])), (Ok(Vote::AskLater), vec![]));
        assert_eq!(t.heur(1, Heuristics::Pass), (Ok(Vote::AskLater), vec![]));
        // ... and a changed config without membership.
        t.join(2, r(1, 4), false);
        assert_eq!(
            t.event(2, cfg(&[1, 2], false)),
            (Ok(Vote::AskLater), vec![])
        );
        assert_eq!(t.heur(2, Heuristics::Pass), (Ok(Vote::AskLater), vec![]));
        // An initial config list gets ASK_LATER even with a membership stored.
        assert_eq!(t.event(1, cfg(&[1, 2], true)), (Ok(Vote::AskLater), vec![]));
        // Node 2 (not ready) blocked node 1; once it leaves node 1 is decided.
        assert_eq!(t.leave(2), vec![vi(1, 1, Vote::Ack, r(1, 8))]);

        // ASK_FOR_VOTE is not an ffsplit message (14); quorum lists and timers
        // change nothing.
        let (res, _) = t.event(1, Event::AskForVote);
        assert_eq!(res, Err(AlgoError::UnsupportedDecisionAlgorithmMessage));
        assert_eq!(
            t.event(
                1,
                Event::Quorum {
                    quorate: true,
                    nodes: nl(&[1])
                }
            ),
            (Ok(Vote::NoChange), vec![])
        );
        assert_eq!(t.event(1, Event::Timer).1, vec![]);
        assert!(t.reply(1, 7).is_empty());
    }

    #[test]
    fn server_going_down_sends_nothing() {
        let (mut t, _) = split_two(TieBreaker::Lowest);
        assert!(t.c.leave(2, true, 0).is_empty());
        assert!(t.c.leave(1, true, 0).is_empty());
        assert!(t.c.is_empty());
    }

    /// A cluster emptied and reused starts from fresh data (no KAP memory,
    /// seqs from 1), as the reference reallocates it.
    #[test]
    fn emptied_cluster_starts_fresh() {
        let mut t = two_nodes_with_ack(TieBreaker::Lowest, true);
        assert!(!t.leave(1).is_empty());
        assert!(t.leave(2).is_empty());
        t.join(2, r(2, 20), true);
        assert_eq!(t.config(2, &[1, 2]), (Ok(Vote::AskLater), vec![]));
        let (_, actions) = t.member(2, r(2, 20), &[2]);
        assert_eq!(actions, vec![vi(2, 1, Vote::Ack, r(2, 20))]);
    }

    // ------------------------------------------------------------------
    // Randomized safety test (the simulator is in `sim` below)
    // ------------------------------------------------------------------

    use crate::sim::{run_schedules, Rng};

    /// Randomized schedules (by default seeds 1..=2000; see `crate::sim` for
    /// `QNETD_SAFETY_SCHEDULES` / `QNETD_SAFETY_SEED`) of 2-8 nodes: the vote
    /// is never held in two rings at once, and after quiescence one quorate
    /// partition holds it.
    #[test]
    fn safety_randomized_schedules() {
        run_schedules(
            "ffsplit::tests::safety_randomized_schedules",
            2000,
            |seed, tracing| {
                super::sim::run_schedule(Rng::new(seed), &format!("seed {seed}"), tracing)
            },
        );
    }
}

/// The randomized safety simulator of ffsplit (see docs/safety-testing.md):
/// used by `tests::safety_randomized_schedules` and, with the `fuzzing`
/// feature, by the fuzz target (`crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod sim {
    use std::collections::BTreeMap;

    use crate::sim::Rng;
    use crate::{
        Action, AlgorithmKind, Cluster, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker,
        Vote,
    };

    /// One schedule: 60-159 random steps with the safety check after each,
    /// then the liveness check; panics on the first violation. `label`
    /// names the schedule in failure messages (its seed).
    pub(crate) fn run_schedule(rng: Rng, label: &str, tracing: bool) {
        let mut sim = Sim::new(rng, label, tracing);
        let steps = 60 + sim.rng.below(100);
        for _ in 0..steps {
            sim.random_step();
            sim.check_safety();
        }
        sim.check_liveness();
    }

    fn random_heuristics(rng: &mut Rng) -> Heuristics {
        [Heuristics::Undefined, Heuristics::Pass, Heuristics::Fail][rng.below(3)]
    }

    /// A server-to-client message.
    #[derive(Debug)]
    enum ToClient {
        VoteInfo { seq: u32, vote: Vote, ring: RingId },
        Reply { vote: Vote, ring: RingId },
    }

    /// One simulated node: its corosync side, its qdevice client and the two
    /// directions of its connection.
    struct SimNode {
        id: NodeId,
        /// Network partition the node is in.
        group: usize,
        /// The node's current ring id; while connected, the ring id of the
        /// last membership list its client sent.
        ring: RingId,
        connected: bool,
        kap: bool,
        heuristics: Heuristics,
        /// The vote the client holds (the last one it applied).
        held: Vote,
        to_server: std::collections::VecDeque<Event>,
        to_client: std::collections::VecDeque<ToClient>,
        /// The server processed this connection's config / membership list.
        server_has_config: bool,
        server_has_membership: bool,
    }

    struct Sim {
        rng: Rng,
        cluster: Cluster,
        nodes: Vec<SimNode>,
        config: Vec<NodeInfo>,
        next_ring_seq: u64,
        log: Vec<String>,
        /// Record a full message trace, printed on failure (replay mode
        /// only: building it costs more than the simulation itself).
        tracing: bool,
    }

    impl Sim {
        fn new(mut rng: Rng, label: &str, tracing: bool) -> Sim {
            // 2-8 distinct node ids out of 1..=12, ascending.
            let count = 2 + rng.below(7);
            let mut ids: Vec<NodeId> = Vec::new();
            while ids.len() < count {
                let id = 1 + rng.below(12) as NodeId;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            let tb = match rng.below(4) {
                0 => TieBreaker::Lowest,
                1 => TieBreaker::Highest,
                2 => TieBreaker::NodeId(ids[rng.below(ids.len())]),
                _ => TieBreaker::NodeId(1 + rng.below(12) as NodeId),
            };
            let ring = RingId::new(ids[0], 1);
            let nodes = ids
                .iter()
                .map(|&id| SimNode {
                    id,
                    group: 0,
                    ring,
                    connected: false,
                    kap: false,
                    heuristics: Heuristics::Undefined,
                    held: Vote::Nack,
                    to_server: Default::default(),
                    to_client: Default::default(),
                    server_has_config: false,
                    server_has_membership: false,
                })
                .collect();
            Sim {
                rng,
                cluster: Cluster::new(AlgorithmKind::Ffsplit, tb),
                nodes,
                config: ids.iter().map(|&id| NodeInfo::new(id)).collect(),
                next_ring_seq: 2,
                log: vec![format!("{label} ids {ids:?} tie-breaker {tb:?}")],
                tracing,
            }
        }

        /// Records a step in the trace (only when tracing).
        fn note(&mut self, line: impl FnOnce() -> String) {
            if self.tracing {
                self.log.push(line());
            }
        }

        /// Text for a failed assertion: the seed, and the trace if recorded.
        fn trace(&self) -> String {
            if self.tracing {
                self.log.join("\n")
            } else {
                format!(
                    "{} (replay the seed for a message trace)",
                    self.log.join("\n")
                )
            }
        }

        fn index_of(&self, id: NodeId) -> Option<usize> {
            self.nodes.iter().position(|n| n.id == id)
        }

        fn group_members(&self, group: usize) -> Vec<NodeInfo> {
            self.nodes
                .iter()
                .filter(|n| n.group == group)
                .map(|n| NodeInfo::new(n.id))
                .collect()
        }

        /// The server carries out actions: VOTE_INFOs go to the targets'
        /// queues, after checking they are allowed (fix 3).
        fn dispatch(&mut self, actions: Vec<Action>) {
            for action in actions {
                match action {
                    Action::SendVoteInfo {
                        node,
                        seq,
                        vote,
                        ring,
                    } => {
                        let i = self.index_of(node).expect("vote for unknown node");
                        let n = &mut self.nodes[i];
                        assert!(n.connected, "VOTE_INFO to disconnected node {node}");
                        assert!(
                            n.server_has_config && n.server_has_membership,
                            "VOTE_INFO to node {node} before its lists\n{}",
                            self.trace()
                        );
                        n.to_client
                            .push_back(ToClient::VoteInfo { seq, vote, ring });
                    }
                    other => panic!("ffsplit must not use timers: {other:?}"),
                }
            }
        }

        /// The network changes to `assignment` (group per node). Groups whose
        /// member set changed get a new ring id (all of them if `force`); the
        /// connected clients in them stop voting (WAIT_FOR_REPLY) and report
        /// the new membership.
        fn repartition(&mut self, assignment: &[usize], force: bool) {
            let old: Vec<Vec<NodeInfo>> = (0..self.nodes.len())
                .map(|i| self.group_members(self.nodes[i].group))
                .collect();
            for (n, &g) in self.nodes.iter_mut().zip(assignment) {
                n.group = g;
            }
            let mut new_rings: BTreeMap<usize, RingId> = BTreeMap::new();
            for (i, old_members) in old.iter().enumerate() {
                let group = self.nodes[i].group;
                let members = self.group_members(group);
                if !force && crate::same_node_set(&members, old_members) {
                    continue;
                }
                let ring = *new_rings.entry(group).or_insert_with(|| {
                    self.next_ring_seq += 1;
                    RingId::new(members[0].node_id, self.next_ring_seq)
                });
                let heuristics = self.nodes[i].heuristics;
                let quorum = self.rng.chance(30);
                let n = &mut self.nodes[i];
                n.ring = ring;
                if n.connected {
                    n.held = Vote::WaitForReply;
                    n.to_server.push_back(Event::Membership {
                        ring,
                        nodes: members.clone(),
                        heuristics,
                    });
                    if quorum {
                        n.to_server.push_back(Event::Quorum {
                            quorate: false,
                            nodes: members,
                        });
                    }
                }
            }
            self.note(|| format!("partition {assignment:?}"));
        }

        fn random_partition(&mut self) {
            let groups = 1 + self.rng.below(3);
            let assignment: Vec<usize> = (0..self.nodes.len())
                .map(|_| self.rng.below(groups))
                .collect();
            self.repartition(&assignment, false);
        }

        /// INIT completes, then the client queues its initial lists.
        fn connect(&mut self, i: usize) {
            let kap = self.rng.chance(50);
            let heuristics = random_heuristics(&mut self.rng);
            let members = self.group_members(self.nodes[i].group);
            let tb = self.cluster.tie_breaker();
            let n = &mut self.nodes[i];
            n.kap = kap;
            n.heuristics = heuristics;
            let joined = self
                .cluster
                .join(n.id, AlgorithmKind::Ffsplit, tb, n.ring, 8000, kap, 0);
            assert_eq!(joined, Ok(()));
            n.connected = true;
            n.to_server.push_back(Event::ConfigList {
                nodes: self.config.clone(),
                initial: true,
                config_version: None,
            });
            n.to_server.push_back(Event::Membership {
                ring: n.ring,
                nodes: members.clone(),
                heuristics,
            });
            n.to_server.push_back(Event::Quorum {
                quorate: false,
                nodes: members,
            });
            let id = n.id;
            self.note(|| format!("connect {id} kap {kap}"));
        }

        /// The connection drops: both directions are lost, the client falls
        /// back to NACK, the server re-decides for the others.
        fn disconnect(&mut self, i: usize) {
            let n = &mut self.nodes[i];
            n.connected = false;
            n.held = Vote::Nack;
            n.to_server.clear();
            n.to_client.clear();
            n.server_has_config = false;
            n.server_has_membership = false;
            let id = n.id;
            self.note(|| format!("disconnect {id}"));
            let actions = self.cluster.leave(id, false, 0);
            self.dispatch(actions);
        }

        /// The server processes the next message from node `i`'s client.
        fn deliver_to_server(&mut self, i: usize) {
            let Some(event) = self.nodes[i].to_server.pop_front() else {
                return;
            };
            let id = self.nodes[i].id;
            self.note(|| format!("server <- {id}: {event:?}"));
            let outcome = self.cluster.handle(id, event.clone(), 0);
            let vote = match outcome.reply {
                Ok(v) => v,
                Err(e) => panic!("unexpected error {e:?} for {event:?}"),
            };
            match event {
                Event::ConfigList { .. } => self.nodes[i].server_has_config = true,
                Event::Membership { .. } => self.nodes[i].server_has_membership = true,
                _ => {}
            }
            self.dispatch(outcome.actions);
            if !matches!(event, Event::VoteInfoReply { .. } | Event::Timer) {
                self.nodes[i].to_client.push_back(ToClient::Reply {
                    vote,
                    ring: outcome.reply_ring,
                });
            }
        }

        /// Node `i`'s client processes the next message from the server. It
        /// applies a vote only if the ring id is its current one, and answers
        /// every VOTE_INFO.
        fn deliver_to_client(&mut self, i: usize) {
            let n = &mut self.nodes[i];
            let Some(msg) = n.to_client.pop_front() else {
                return;
            };
            if self.tracing {
                self.log.push(format!("{} <- server: {msg:?}", n.id));
            }
            let (vote, ring) = match msg {
                ToClient::VoteInfo { seq, vote, ring } => {
                    n.to_server.push_back(Event::VoteInfoReply { seq });
                    (vote, ring)
                }
                ToClient::Reply { vote, ring } => (vote, ring),
            };
            if ring == n.ring && vote != Vote::NoChange {
                n.held = vote;
            }
        }

        /// No two clients in different rings hold ACK at the same time.
        fn check_safety(&self) {
            let mut ack_ring: Option<RingId> = None;
            for n in self
                .nodes
                .iter()
                .filter(|n| n.connected && n.held == Vote::Ack)
            {
                match ack_ring {
                    None => ack_ring = Some(n.ring),
                    Some(r) => assert_eq!(r, n.ring, "two partitions hold ACK\n{}", self.trace()),
                }
            }
        }

        /// Nodes with a message waiting in either direction.
        fn busy_nodes(&self) -> Vec<usize> {
            (0..self.nodes.len())
                .filter(|&i| {
                    !self.nodes[i].to_server.is_empty() || !self.nodes[i].to_client.is_empty()
                })
                .collect()
        }

        /// Delivers one pending message of a random busy node, either way;
        /// false if nothing was pending.
        fn deliver_random(&mut self) -> bool {
            let busy = self.busy_nodes();
            if busy.is_empty() {
                return false;
            }
            let i = busy[self.rng.below(busy.len())];
            let n = &self.nodes[i];
            let to_server = match (n.to_server.is_empty(), n.to_client.is_empty()) {
                (false, true) => true,
                (true, false) => false,
                _ => self.rng.chance(50),
            };
            if to_server {
                self.deliver_to_server(i);
            } else {
                self.deliver_to_client(i);
            }
            true
        }

        /// One random step: mostly message deliveries, otherwise a change
        /// that can move the vote (network split/merge, heuristics result,
        /// disconnect, reconnect, config reload).
        fn random_step(&mut self) {
            let i = self.rng.below(self.nodes.len());
            let connected = self.nodes[i].connected;
            match self.rng.below(100) {
                0..=54 => {
                    self.deliver_random();
                }
                // Let everything settle (safety is checked after each message).
                55..=61 => self.drain(),
                62..=66 => self.random_partition(),
                67..=80 if connected => {
                    let h = random_heuristics(&mut self.rng);
                    self.nodes[i].heuristics = h;
                    let id = self.nodes[i].id;
                    self.note(|| format!("heuristics {id} {h:?}"));
                    self.nodes[i]
                        .to_server
                        .push_back(Event::HeuristicsChange { heuristics: h });
                }
                81..=86 if connected => self.disconnect(i),
                87..=97 if !connected => self.connect(i),
                98..=99 if connected => {
                    let nodes = self.config.clone();
                    self.nodes[i].to_server.push_back(Event::ConfigList {
                        nodes,
                        initial: false,
                        config_version: Some(2),
                    });
                }
                _ => {}
            }
        }

        /// Delivers everything still queued, in random order.
        fn drain(&mut self) {
            while self.deliver_random() {
                self.check_safety();
            }
        }

        /// Liveness: with everybody connected, a fresh partitioning and all
        /// messages delivered, exactly the members of one partition that may
        /// be quorate (at least half the nodes) hold ACK, if there is one.
        fn check_liveness(&mut self) {
            for i in 0..self.nodes.len() {
                if !self.nodes[i].connected {
                    self.connect(i);
                }
            }
            let groups = 1 + self.rng.below(3);
            let assignment: Vec<usize> = (0..self.nodes.len())
                .map(|_| self.rng.below(groups))
                .collect();
            self.repartition(&assignment, true);
            self.drain();

            let total = self.nodes.len();
            let holders: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| n.held == Vote::Ack)
                .map(|n| n.id)
                .collect();
            let eligible: Vec<Vec<NodeId>> = (0..groups)
                .map(|g| {
                    self.group_members(g)
                        .iter()
                        .map(|n| n.node_id)
                        .collect::<Vec<_>>()
                })
                .filter(|m| !m.is_empty() && 2 * m.len() >= total)
                .collect();
            if eligible.is_empty() {
                assert!(
                    holders.is_empty(),
                    "ACK without a quorate partition\n{}",
                    self.trace()
                );
            } else {
                assert!(
                    eligible.contains(&holders),
                    "ACK holders {holders:?} are not one eligible partition of {eligible:?}\n{}",
                    self.trace()
                );
            }
        }
    }
}
