//! The lms ("LMS", last man standing, code 3) decision algorithm, and the
//! vote engine it shares with 2nodelms ([`crate::two_node_lms`]).
//!
//! # The decision
//!
//! The connected clients that are *ready* (they sent both a config list and a
//! membership list) are grouped into partitions by ring id. Each partition
//! has a size (number of clients) and a heuristics score (the sum of
//! [`heuristics_score`] over its clients). The winner is:
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
//! **Limit.** An lms client that was quorate with `quorum.wait_for_all` set
//! keeps voting after losing the server (§4.10). The server cannot tell; it
//! treats every departed lms client as holding NACK, so in that configuration
//! a re-decision after such a departure can give a second partition ACK.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    contains_node, heuristics_score, Action, AlgoError, Algorithm, AlgorithmKind, Ctx,
    DecisionRecord, Event, Heuristics, NodeId, NodeInfo, PartitionScore, RingId, TieBreaker, Vote,
};

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

// ---------------------------------------------------------------------------
// The engine shared by lms and 2nodelms.

/// What the reply to the triggering message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The decision for the triggering client (ACK, NACK or WAIT_FOR_REPLY).
    Decision,
    /// NO_CHANGE; a changed decision for the triggering client goes out as
    /// a VOTE_INFO queued before the reply.
    NoChange,
    /// Like `NoChange`, but the reply repeats the vote the client holds
    /// (ACK or NACK), or ASK_LATER if it holds none (2nodelms ASK_FOR_VOTE).
    Held,
    /// No reply exists (timer, VOTE_INFO_REPLY); changes go out as VOTE_INFO.
    Silent,
}

/// The vote a client acts on if it processes everything sent to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Held {
    /// Not voting: nothing decided yet, or told WAIT_FOR_REPLY/ASK_LATER, or
    /// the client changed ring.
    #[default]
    Nothing,
    Ack,
    Nack,
}

/// Per-client engine state.
#[derive(Clone, Debug, Default)]
struct Tracked {
    /// Seq of the last VOTE_INFO sent to this client.
    seq: u32,
    held: Held,
    /// An ACK was sent and has not been provably withdrawn.
    may_ack: bool,
    /// Seq of the VOTE_INFO(NACK) whose acknowledgement clears `may_ack`.
    revoke_seq: Option<u32>,
    /// The client has been given a real ACK/NACK decision (not a newcomer).
    decided: bool,
    /// The algorithm timer is armed.
    timer: bool,
}

/// A departed client that may still act on an ACK (2nodelms clients keep
/// their vote when they lose the server). It blocks ACK for other rings until
/// its ring is known to be over.
#[derive(Clone, Debug)]
struct Ghost {
    node: NodeId,
    ring: RingId,
    members: Vec<NodeId>,
}

/// A ready client as the decision sees it, with the triggering event's data.
#[derive(Clone, Copy, Debug)]
struct View<'a> {
    node: NodeId,
    ring: RingId,
    members: &'a [NodeInfo],
    heuristics: Heuristics,
}

/// What the decision wants for one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Ack,
    /// `newcomer`: the NACK comes from the newcomer rule and is not a
    /// decision.
    Nack {
        newcomer: bool,
    },
    /// Unsettled, or a winner whose ACK is held back by the safety gate.
    Wait,
    /// Nothing new decided: keep what is held.
    Keep,
}

#[derive(Debug)]
enum Decision {
    /// Some clients are unsettled; nothing new is decided.
    Frozen(BTreeSet<NodeId>),
    /// The winning ring (or none), the newcomer-only rings left out, and
    /// whether ACK may be granted to the winner now.
    Winner {
        ring: Option<RingId>,
        excluded: BTreeSet<RingId>,
        granted: bool,
        /// The same, for the decision log.
        record: DecisionRecord,
    },
}

#[derive(Debug)]
struct Partition {
    ring: RingId,
    clients: Vec<NodeId>,
    members: Vec<NodeId>,
    score: i64,
    all_newcomers: bool,
}

/// Cluster-wide vote engine: decides, gates ACKs, and pushes VOTE_INFOs.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    clients: BTreeMap<NodeId, Tracked>,
    ghosts: Vec<Ghost>,
    /// Departed clients that may hold ACK become ghosts (2nodelms).
    keep_departed_ack: bool,
    /// The decision of the last evaluation, for the decision log.
    last_decision: Option<DecisionRecord>,
}

impl Engine {
    /// The decision of the last evaluation, if one was taken.
    pub(crate) fn take_decision(&mut self) -> Option<DecisionRecord> {
        self.last_decision.take()
    }

    pub(crate) fn new(keep_departed_ack: bool) -> Self {
        Engine {
            keep_departed_ack,
            ..Engine::default()
        }
    }

    pub(crate) fn join(&mut self, node: NodeId) {
        self.clients.insert(node, Tracked::default());
    }

    /// Runs one event from (or, for a timer, about) `node`.
    pub(crate) fn handle(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        event: &Event,
        policy: Reply,
        actions: &mut Vec<Action>,
    ) -> Vote {
        let t = self.clients.entry(node).or_default();
        match event {
            Event::Membership { .. } => {
                // The client stopped voting before sending a new list, and it
                // ignores anything sent for its previous ring.
                t.held = Held::Nothing;
                t.may_ack = false;
                t.revoke_seq = None;
            }
            Event::VoteInfoReply { seq } if t.revoke_seq == Some(*seq) => {
                // The client processed the NACK, and no ACK was sent after it.
                t.may_ack = false;
                t.revoke_seq = None;
            }
            Event::Timer => t.timer = false,
            _ => {}
        }
        let views = collect_views(ctx, Some((node, event)), None);
        let reply = self.run(ctx, &views, Some((node, policy)), actions);
        if *event == Event::Timer && views.iter().any(|v| v.node == node) {
            // Keep polling while the client still waits for its vote.
            let hb = ctx.clients.get(&node).map_or(0, |c| c.heartbeat_ms);
            if let Some(t) = self.clients.get_mut(&node) {
                if t.held == Held::Nothing && !t.timer {
                    t.timer = true;
                    actions.push(Action::ArmTimer {
                        node,
                        after_ms: u64::from(hb / 4),
                    });
                }
            }
        }
        reply
    }

    /// Client `node` disconnects (it is still in `ctx.clients`).
    pub(crate) fn leave(
        &mut self,
        ctx: &Ctx<'_>,
        node: NodeId,
        server_going_down: bool,
        actions: &mut Vec<Action>,
    ) {
        let Some(t) = self.clients.remove(&node) else {
            return;
        };
        if server_going_down {
            return;
        }
        if self.keep_departed_ack && t.may_ack {
            if let Some(info) = ctx.clients.get(&node) {
                self.ghosts.push(Ghost {
                    node,
                    ring: info.ring,
                    members: info.membership_nodes().iter().map(|n| n.node_id).collect(),
                });
            }
        }
        let views = collect_views(ctx, None, Some(node));
        self.run(ctx, &views, None, actions);
    }

    fn run(
        &mut self,
        ctx: &Ctx<'_>,
        views: &[View<'_>],
        trigger: Option<(NodeId, Reply)>,
        actions: &mut Vec<Action>,
    ) -> Vote {
        self.prune_ghosts(views);
        let decision = self.decide(views, ctx.tie_breaker);
        if let Decision::Winner { record, .. } = &decision {
            self.last_decision = Some(record.clone());
        }
        let mut reply = Vote::NoChange;
        let mut trigger_ready = false;
        for v in views {
            let want = match &decision {
                Decision::Frozen(unsettled) => {
                    if unsettled.contains(&v.node) {
                        Want::Wait
                    } else {
                        Want::Keep
                    }
                }
                Decision::Winner {
                    ring,
                    excluded,
                    granted,
                    ..
                } => {
                    if *ring == Some(v.ring) {
                        if *granted {
                            Want::Ack
                        } else {
                            Want::Wait
                        }
                    } else {
                        Want::Nack {
                            newcomer: excluded.contains(&v.ring),
                        }
                    }
                }
            };
            let hb = ctx.clients.get(&v.node).map_or(0, |c| c.heartbeat_ms);
            match trigger {
                Some((n, policy)) if n == v.node => {
                    trigger_ready = true;
                    reply = match policy {
                        Reply::Decision => self.answer(v, want, hb, actions),
                        Reply::NoChange => {
                            self.push(v, want, actions);
                            Vote::NoChange
                        }
                        Reply::Held => {
                            self.push(v, want, actions);
                            match self.clients.get(&v.node).map(|t| t.held) {
                                Some(Held::Ack) => Vote::Ack,
                                Some(Held::Nack) => Vote::Nack,
                                _ => Vote::AskLater,
                            }
                        }
                        Reply::Silent => {
                            self.push(v, want, actions);
                            Vote::NoChange
                        }
                    };
                }
                _ => self.push(v, want, actions),
            }
        }
        match trigger {
            Some((_, Reply::Decision)) if !trigger_ready => Vote::WaitForReply,
            Some((_, Reply::Held)) if !trigger_ready => Vote::AskLater,
            _ => reply,
        }
    }

    /// Drops ghosts whose ring is known to be over, or whose node is back
    /// with a new membership list (it stopped voting before sending it).
    /// Forgets departed ACK holders whose ring is provably over: their node
    /// is back, or a node that was in their ring (or that lists them) now
    /// reports a *newer* ring. corosync ring sequence numbers only grow, so
    /// a ring with a lower or equal seq is stale evidence (a membership list
    /// delayed from before the split) and proves nothing.
    fn prune_ghosts(&mut self, views: &[View<'_>]) {
        self.ghosts.retain(|g| {
            !views.iter().any(|v| {
                v.node == g.node
                    || (v.ring != g.ring
                        && v.ring.seq > g.ring.seq
                        && (g.members.contains(&v.node) || contains_node(v.members, g.node)))
            })
        });
    }

    fn decide(&self, views: &[View<'_>], tie_breaker: TieBreaker) -> Decision {
        let mut unsettled = BTreeSet::new();
        for a in views {
            for b in views {
                let related = contains_node(a.members, b.node) || contains_node(b.members, a.node);
                if a.node != b.node && related && a.ring != b.ring {
                    unsettled.insert(a.node);
                }
            }
        }
        if !unsettled.is_empty() {
            return Decision::Frozen(unsettled);
        }

        let mut parts: BTreeMap<RingId, Partition> = BTreeMap::new();
        for v in views {
            let decided = self.clients.get(&v.node).is_some_and(|t| t.decided);
            let p = parts.entry(v.ring).or_insert_with(|| Partition {
                ring: v.ring,
                clients: Vec::new(),
                members: Vec::new(),
                score: 0,
                all_newcomers: true,
            });
            p.clients.push(v.node);
            p.members.extend(v.members.iter().map(|n| n.node_id));
            p.score += heuristics_score(v.heuristics);
            p.all_newcomers &= !decided;
        }
        let incumbent = views
            .iter()
            .find(|v| self.clients.get(&v.node).is_some_and(|t| t.may_ack))
            .map(|v| v.ring);
        let mut excluded = BTreeSet::new();
        if let Some(inc) = incumbent {
            for p in parts.values() {
                if p.all_newcomers && p.ring != inc {
                    excluded.insert(p.ring);
                }
            }
        }
        let candidates: Vec<&Partition> = parts
            .values()
            .filter(|p| !excluded.contains(&p.ring))
            .collect();
        let ranked = rank(&candidates, tie_breaker);
        let ring = ranked.map(|(r, _)| r);
        let granted = ring.is_some_and(|w| self.may_grant(views, w));
        Decision::Winner {
            ring,
            excluded,
            granted,
            record: DecisionRecord {
                partitions: parts
                    .values()
                    .map(|p| PartitionScore {
                        ring: p.ring,
                        nodes: p.clients.clone(),
                        score: p.score,
                    })
                    .collect(),
                winner: ring,
                reason: ranked.map_or("no_partition_eligible", |(_, why)| why),
                pending: ring.is_some() && !granted,
            },
        }
    }

    /// ACK may go to ring `w` only if no client of another ring, connected
    /// or departed, may hold ACK.
    fn may_grant(&self, views: &[View<'_>], w: RingId) -> bool {
        let blocked_by_client = self.clients.iter().any(|(node, t)| {
            t.may_ack && views.iter().find(|v| v.node == *node).map(|v| v.ring) != Some(w)
        });
        let blocked_by_ghost = self.ghosts.iter().any(|g| g.ring != w);
        !blocked_by_client && !blocked_by_ghost
    }

    /// The reply for a triggering client whose reply carries the decision.
    fn answer(&mut self, v: &View<'_>, want: Want, hb: u32, actions: &mut Vec<Action>) -> Vote {
        let Some(t) = self.clients.get_mut(&v.node) else {
            return Vote::WaitForReply;
        };
        match want {
            Want::Ack => {
                cancel_timer(t, v.node, actions);
                grant(t);
                Vote::Ack
            }
            Want::Nack { newcomer } => {
                cancel_timer(t, v.node, actions);
                if t.may_ack && t.revoke_seq.is_none() {
                    // A reply is never acknowledged: withdraw the ACK with a
                    // VOTE_INFO so the acknowledgement can be seen.
                    send_vote_info(t, v, Vote::Nack, actions);
                }
                deny(t, newcomer);
                Vote::Nack
            }
            Want::Keep if t.held == Held::Ack => Vote::Ack,
            Want::Keep if t.held == Held::Nack => Vote::Nack,
            Want::Wait | Want::Keep => {
                t.held = Held::Nothing;
                if !t.timer {
                    t.timer = true;
                    actions.push(Action::ArmTimer {
                        node: v.node,
                        after_ms: u64::from(hb / 4),
                    });
                }
                Vote::WaitForReply
            }
        }
    }

    /// Sends a VOTE_INFO to a ready client whose ACK/NACK changed.
    fn push(&mut self, v: &View<'_>, want: Want, actions: &mut Vec<Action>) {
        let Some(t) = self.clients.get_mut(&v.node) else {
            return;
        };
        match want {
            Want::Ack if t.held != Held::Ack => {
                cancel_timer(t, v.node, actions);
                send_vote_info(t, v, Vote::Ack, actions);
                grant(t);
            }
            Want::Nack { newcomer } if t.held != Held::Nack => {
                cancel_timer(t, v.node, actions);
                send_vote_info(t, v, Vote::Nack, actions);
                deny(t, newcomer);
            }
            _ => {}
        }
    }
}

fn grant(t: &mut Tracked) {
    t.held = Held::Ack;
    t.may_ack = true;
    t.revoke_seq = None;
    t.decided = true;
}

fn deny(t: &mut Tracked, newcomer: bool) {
    t.held = Held::Nack;
    if !newcomer {
        t.decided = true;
    }
}

fn cancel_timer(t: &mut Tracked, node: NodeId, actions: &mut Vec<Action>) {
    if t.timer {
        t.timer = false;
        actions.push(Action::CancelTimer { node });
    }
}

fn send_vote_info(t: &mut Tracked, v: &View<'_>, vote: Vote, actions: &mut Vec<Action>) {
    t.seq = t.seq.wrapping_add(1);
    if vote != Vote::Ack && t.may_ack && t.revoke_seq.is_none() {
        t.revoke_seq = Some(t.seq);
    }
    actions.push(Action::SendVoteInfo {
        node: v.node,
        seq: t.seq,
        vote,
        ring: v.ring,
    });
}

/// The ready clients (both lists received), with the triggering event's new
/// data applied and the leaving client left out.
fn collect_views<'a>(
    ctx: &Ctx<'a>,
    trigger: Option<(NodeId, &'a Event)>,
    leaving: Option<NodeId>,
) -> Vec<View<'a>> {
    let mut out = Vec::new();
    for (&id, info) in ctx.clients.iter() {
        if Some(id) == leaving {
            continue;
        }
        let mut has_config = info.config.is_some();
        let mut ring = info.ring;
        let mut members = info.membership.as_deref();
        let mut heuristics = info.heuristics;
        if let Some((node, event)) = trigger {
            if node == id {
                match event {
                    Event::ConfigList { .. } => has_config = true,
                    Event::Membership {
                        ring: r,
                        nodes,
                        heuristics: h,
                    } => {
                        ring = *r;
                        members = Some(nodes.as_slice());
                        heuristics = *h;
                    }
                    Event::HeuristicsChange { heuristics: h } => heuristics = *h,
                    _ => {}
                }
            }
        }
        if let (true, Some(members)) = (has_config, members) {
            out.push(View {
                node: id,
                ring,
                members,
                heuristics,
            });
        }
    }
    out
}

/// Picks the winning partition: only one, else best score, else largest
/// among the best-scored, else the tie-breaker among those still tied.
fn rank(parts: &[&Partition], tie_breaker: TieBreaker) -> Option<(RingId, &'static str)> {
    if let [only] = parts {
        return Some((only.ring, "single_partition"));
    }
    let best_score = parts.iter().map(|p| p.score).max()?;
    let tied: Vec<&Partition> = parts
        .iter()
        .copied()
        .filter(|p| p.score == best_score)
        .collect();
    if let [only] = tied.as_slice() {
        return Some((only.ring, "score"));
    }
    let best_size = tied.iter().map(|p| p.clients.len()).max()?;
    let tied: Vec<&Partition> = tied
        .into_iter()
        .filter(|p| p.clients.len() == best_size)
        .collect();
    if let [only] = tied.as_slice() {
        return Some((only.ring, "size"));
    }
    let lowest = || {
        tied.iter()
            .filter_map(|p| p.clients.iter().min().map(|n| (*n, p.ring)))
            .min()
            .map(|(_, r)| r)
    };
    let ring = match tie_breaker {
        TieBreaker::Lowest => lowest(),
        TieBreaker::Highest => tied
            .iter()
            .filter_map(|p| p.clients.iter().max().map(|n| (*n, p.ring)))
            .max()
            .map(|(_, r)| r),
        TieBreaker::NodeId(n) => tied
            .iter()
            .find(|p| p.clients.contains(&n) || p.members.contains(&n))
            .map(|p| p.ring)
            .or_else(lowest),
    };
    ring.map(|r| (r, "tie_breaker"))
}

/// A deterministic model of qdevice clients, the network and corosync
/// membership, used by the randomized safety tests of lms and 2nodelms and,
/// with the `fuzzing` feature, by the fuzz target (`crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod sim {
    use std::collections::{BTreeMap, VecDeque};

    use crate::{
        AlgorithmKind, Cluster, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker, Vote,
    };

    use super::Held;
    use crate::sim::Rng;

    enum Up {
        Config,
        Membership(RingId, Vec<NodeInfo>, Heuristics),
        Quorum(Vec<NodeInfo>),
        Heuristics(Heuristics),
        VoteInfoReply(u32),
    }

    enum Down {
        Reply(Vote, RingId),
        VoteInfo(u32, Vote, RingId),
    }

    struct Node {
        connected: bool,
        /// The node's current corosync ring (known even when disconnected).
        ring: RingId,
        held: Held,
        heuristics: Heuristics,
        up: VecDeque<Up>,
        down: VecDeque<Down>,
        timer: bool,
    }

    /// One simulated cluster.
    pub(crate) struct Sim {
        kind: AlgorithmKind,
        tie_breaker: TieBreaker,
        pub(crate) cluster: Cluster,
        nodes: BTreeMap<NodeId, Node>,
        /// World partition (group number) of every node.
        group: BTreeMap<NodeId, usize>,
        config: Vec<NodeInfo>,
        ring_seq: u64,
        /// A disconnected client keeps its vote (2nodelms) or drops to NACK.
        keeps_vote: bool,
        /// Message trace, recorded only when `tracing` (replay mode).
        pub(crate) trace: Vec<String>,
        tracing: bool,
    }

    fn pick_heuristics(rng: &mut Rng, defined: bool) -> Heuristics {
        match rng.below(if defined { 2 } else { 3 }) {
            0 => Heuristics::Pass,
            1 => Heuristics::Fail,
            _ => Heuristics::Undefined,
        }
    }

    impl Sim {
        pub(crate) fn new(
            kind: AlgorithmKind,
            tie_breaker: TieBreaker,
            ids: &[NodeId],
            keeps_vote: bool,
            tracing: bool,
        ) -> Self {
            let ring = RingId::new(ids.iter().copied().min().unwrap_or(1), 1);
            let nodes = ids
                .iter()
                .map(|&id| {
                    let n = Node {
                        connected: false,
                        ring,
                        held: Held::Nothing,
                        heuristics: Heuristics::Undefined,
                        up: VecDeque::new(),
                        down: VecDeque::new(),
                        timer: false,
                    };
                    (id, n)
                })
                .collect();
            Sim {
                kind,
                tie_breaker,
                cluster: Cluster::new(kind, tie_breaker),
                nodes,
                group: ids.iter().map(|&id| (id, 0)).collect(),
                config: ids.iter().map(|&id| NodeInfo::new(id)).collect(),
                ring_seq: 1,
                keeps_vote,
                trace: Vec::new(),
                tracing,
            }
        }

        /// Records a step in the trace, when tracing.
        fn note(&mut self, line: impl FnOnce() -> String) {
            if self.tracing {
                self.trace.push(line());
            }
        }

        /// The trace for a failure message.
        fn trace_text(&self) -> String {
            if self.tracing {
                self.trace.join("\n")
            } else {
                "(replay the seed for a message trace)".to_string()
            }
        }

        fn ids(&self) -> Vec<NodeId> {
            self.nodes.keys().copied().collect()
        }

        fn group_nodes(&self, id: NodeId) -> Vec<NodeInfo> {
            let g = self.group.get(&id).copied();
            self.group
                .iter()
                .filter(|(_, gg)| Some(**gg) == g)
                .map(|(n, _)| NodeInfo::new(*n))
                .collect()
        }

        /// Two nodes of different current rings both hold ACK.
        /// (One pass: every holder is compared with the first one.)
        pub(crate) fn check_safety(&self) -> Result<(), String> {
            let mut first: Option<(NodeId, RingId)> = None;
            for (&b, nb) in &self.nodes {
                if nb.held != Held::Ack {
                    continue;
                }
                match first {
                    None => first = Some((b, nb.ring)),
                    Some((a, ring)) if ring != nb.ring => {
                        return Err(format!(
                            "nodes {a} (ring {ring}) and {b} (ring {}) both hold ACK",
                            nb.ring
                        ));
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        }

        pub(crate) fn holders(&self) -> usize {
            self.nodes.values().filter(|n| n.held == Held::Ack).count()
        }

        /// Nodes of the ring holding ACK that do not hold it themselves.
        pub(crate) fn ring_without_ack(&self) -> Vec<NodeId> {
            let Some(ring) = self
                .nodes
                .values()
                .find(|n| n.held == Held::Ack)
                .map(|n| n.ring)
            else {
                return Vec::new();
            };
            self.nodes
                .iter()
                .filter(|(_, n)| n.ring == ring && n.held != Held::Ack)
                .map(|(&id, _)| id)
                .collect()
        }

        pub(crate) fn connect(&mut self, id: NodeId) {
            let Some(ring) = self.nodes.get(&id).map(|n| n.ring) else {
                return;
            };
            let kind = self.kind;
            if self
                .cluster
                .join(id, kind, self.tie_breaker, ring, 8000, false, 0)
                .is_err()
            {
                return;
            }
            let members = self.group_nodes(id);
            if let Some(n) = self.nodes.get_mut(&id) {
                n.connected = true;
                n.held = Held::Nothing;
                n.timer = false;
                n.up.push_back(Up::Config);
                n.up.push_back(Up::Membership(ring, members.clone(), n.heuristics));
                n.up.push_back(Up::Quorum(members));
            }
            self.note(|| format!("connect {id}"));
        }

        fn disconnect(&mut self, id: NodeId) {
            let actions = self.cluster.leave(id, false, 0);
            let keeps = self.keeps_vote;
            if let Some(n) = self.nodes.get_mut(&id) {
                n.connected = false;
                n.up.clear();
                n.down.clear();
                n.timer = false;
                if !keeps && n.held == Held::Ack {
                    n.held = Held::Nack;
                }
            }
            self.note(|| format!("disconnect {id}"));
            self.apply_actions(&actions);
        }

        fn repartition(&mut self, rng: &mut Rng) {
            let ids = self.ids();
            let k = 1 + rng.below(ids.len());
            let old: BTreeMap<NodeId, Vec<NodeInfo>> =
                ids.iter().map(|&id| (id, self.group_nodes(id))).collect();
            for id in &ids {
                self.group.insert(*id, rng.below(k));
            }
            let mut new_rings: BTreeMap<usize, RingId> = BTreeMap::new();
            for id in &ids {
                let members = self.group_nodes(*id);
                if old.get(id) == Some(&members) {
                    continue;
                }
                let g = self.group.get(id).copied().unwrap_or(0);
                let seq = &mut self.ring_seq;
                let ring = *new_rings.entry(g).or_insert_with(|| {
                    *seq += 1;
                    RingId::new(members.first().map_or(1, |n| n.node_id), *seq)
                });
                if let Some(n) = self.nodes.get_mut(id) {
                    n.ring = ring;
                    if n.connected {
                        // The client pauses voting and waits for the server.
                        n.held = Held::Nothing;
                        n.up.push_back(Up::Membership(ring, members.clone(), n.heuristics));
                        n.up.push_back(Up::Quorum(members));
                    } else if n.held == Held::Ack {
                        n.held = Held::Nack;
                    }
                }
            }
            if self.tracing {
                self.trace.push(format!("repartition {:?}", self.group));
            }
        }

        fn apply_actions(&mut self, actions: &[crate::Action]) {
            for a in actions {
                match *a {
                    crate::Action::SendVoteInfo {
                        node,
                        seq,
                        vote,
                        ring,
                    } => {
                        let ready = self
                            .cluster
                            .client(node)
                            .is_some_and(|c| c.config.is_some() && c.membership.is_some());
                        assert!(ready, "VOTE_INFO to node {node} before its lists");
                        if let Some(n) = self.nodes.get_mut(&node) {
                            if n.connected {
                                n.down.push_back(Down::VoteInfo(seq, vote, ring));
                            }
                        }
                    }
                    crate::Action::ArmTimer { node, .. } => {
                        if let Some(n) = self.nodes.get_mut(&node) {
                            n.timer = n.connected;
                        }
                    }
                    crate::Action::CancelTimer { node } => {
                        if let Some(n) = self.nodes.get_mut(&node) {
                            n.timer = false;
                        }
                    }
                }
            }
        }

        fn deliver_up(&mut self, id: NodeId) {
            let Some(msg) = self.nodes.get_mut(&id).and_then(|n| n.up.pop_front()) else {
                return;
            };
            let event = match msg {
                Up::Config => Event::ConfigList {
                    nodes: self.config.clone(),
                    initial: true,
                    config_version: None,
                },
                Up::Membership(ring, nodes, heuristics) => Event::Membership {
                    ring,
                    nodes,
                    heuristics,
                },
                Up::Quorum(nodes) => Event::Quorum {
                    quorate: true,
                    nodes,
                },
                Up::Heuristics(heuristics) => Event::HeuristicsChange { heuristics },
                Up::VoteInfoReply(seq) => Event::VoteInfoReply { seq },
            };
            let has_reply = !matches!(event, Event::VoteInfoReply { .. });
            let name = event.name();
            let out = self.cluster.handle(id, event, 0);
            self.note(|| format!("server <- {id} {name}: {:?} {:?}", out.reply, out.actions));
            self.apply_actions(&out.actions);
            match out.reply {
                Ok(vote) if has_reply => {
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.down.push_back(Down::Reply(vote, out.reply_ring));
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }

        fn deliver_down(&mut self, id: NodeId) {
            let Some(n) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(msg) = n.down.pop_front() else {
                return;
            };
            let (vote, ring) = match msg {
                Down::Reply(v, r) => (v, r),
                Down::VoteInfo(seq, v, r) => {
                    n.up.push_back(Up::VoteInfoReply(seq));
                    (v, r)
                }
            };
            if ring == n.ring {
                match vote {
                    Vote::Ack => n.held = Held::Ack,
                    Vote::Nack => n.held = Held::Nack,
                    Vote::AskLater | Vote::WaitForReply => n.held = Held::Nothing,
                    Vote::NoChange => {}
                }
            }
            let held = n.held;
            self.note(|| format!("client {id} <- {vote:?} {ring}: holds {held:?}"));
        }

        fn fire_timer(&mut self, id: NodeId) {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.timer = false;
            }
            let out = self.cluster.handle(id, Event::Timer, 0);
            self.note(|| format!("timer {id}: {:?} {:?}", out.reply, out.actions));
            self.apply_actions(&out.actions);
        }

        /// One random step.
        pub(crate) fn step(&mut self, rng: &mut Rng, defined_heuristics: bool) {
            let pick = rng.below(self.nodes.len());
            let (id, connected, ups, downs, timer) = match self.nodes.iter().nth(pick) {
                Some((&id, n)) => (id, n.connected, n.up.len(), n.down.len(), n.timer),
                None => return,
            };
            match rng.below(100) {
                0..=34 if ups > 0 => self.deliver_up(id),
                35..=64 if downs > 0 => self.deliver_down(id),
                65..=72 if timer => self.fire_timer(id),
                73..=79 => self.repartition(rng),
                80..=86 if connected => {
                    let h = pick_heuristics(rng, true);
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.heuristics = h;
                        n.up.push_back(Up::Heuristics(h));
                    }
                }
                87..=92 if connected => self.disconnect(id),
                93..=99 if !connected => {
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.heuristics = pick_heuristics(rng, defined_heuristics);
                    }
                    self.connect(id);
                }
                _ => {}
            }
        }

        /// Connects everybody and delivers every queued message, in random
        /// order, until nothing is left to do. Timers are not fired: the
        /// liveness check after it requires progress from messages alone.
        pub(crate) fn settle(&mut self, rng: &mut Rng) {
            for id in self.ids() {
                if self.nodes.get(&id).is_some_and(|n| !n.connected) {
                    self.connect(id);
                }
            }
            for _ in 0..10_000 {
                let busy: Vec<NodeId> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| !n.up.is_empty() || !n.down.is_empty())
                    .map(|(&id, _)| id)
                    .collect();
                if busy.is_empty() {
                    return;
                }
                let id = busy[rng.below(busy.len())];
                // Either direction, whichever has something (the other way
                // when the chosen one is empty).
                let (ups, downs) = self
                    .nodes
                    .get(&id)
                    .map_or((0, 0), |n| (n.up.len(), n.down.len()));
                let up = if ups == 0 || downs == 0 {
                    ups > 0
                } else {
                    rng.below(2) == 0
                };
                if up {
                    self.deliver_up(id);
                } else {
                    self.deliver_down(id);
                }
                if let Err(e) = self.check_safety() {
                    panic!("{e} while settling\n{}", self.trace_text());
                }
            }
        }

        /// One random schedule of `steps` steps for `seed`, on 2nodelms or
        /// lms with one of `node_counts` nodes, followed by settling; panics
        /// on the first violation. Returns the steps done and how many nodes
        /// hold ACK after settling.
        #[cfg(test)]
        pub(crate) fn run_one(
            kind: AlgorithmKind,
            seed: u64,
            tracing: bool,
            steps: usize,
            node_counts: &[usize],
            keeps_vote: bool,
        ) -> (usize, usize) {
            let rng = Rng::new(seed.wrapping_add((kind as u64) << 40));
            Self::run_with(
                kind,
                rng,
                &format!("seed {seed}"),
                tracing,
                steps,
                node_counts,
                keeps_vote,
            )
        }

        /// [`Sim::run_one`] with the choices taken from `rng`; `label` names
        /// the schedule in failure messages.
        pub(crate) fn run_with(
            kind: AlgorithmKind,
            mut rng: Rng,
            label: &str,
            tracing: bool,
            steps: usize,
            node_counts: &[usize],
            keeps_vote: bool,
        ) -> (usize, usize) {
            let count = node_counts[rng.below(node_counts.len())];
            let mut ids: Vec<NodeId> = Vec::new();
            while ids.len() < count {
                let id = match rng.below(4) {
                    0 => 0x8000_0000 + rng.below(5) as u32,
                    1 => u32::MAX - rng.below(3) as u32,
                    _ => 1 + rng.below(8) as u32,
                };
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let tie_breaker = match rng.below(3) {
                0 => TieBreaker::Lowest,
                1 => TieBreaker::Highest,
                _ => TieBreaker::NodeId(if rng.below(4) == 0 {
                    12345
                } else {
                    ids[rng.below(ids.len())]
                }),
            };
            let defined = rng.below(2) == 0;
            let mut sim = Sim::new(kind, tie_breaker, &ids, keeps_vote, tracing);
            sim.note(|| format!("{label} ids {ids:?} tie-breaker {tie_breaker:?}"));
            for id in ids.clone() {
                if rng.below(4) != 0 {
                    sim.connect(id);
                }
            }
            for _ in 0..steps {
                sim.step(&mut rng, defined);
                if let Err(e) = sim.check_safety() {
                    panic!("{e}\n{}", sim.trace_text());
                }
            }
            sim.settle(&mut rng);
            let holders = sim.holders();
            assert!(
                holders > 0,
                "nobody holds ACK after settling\n{}",
                sim.trace_text()
            );
            let missing = sim.ring_without_ack();
            assert!(
                missing.is_empty(),
                "nodes {missing:?} of the ring holding ACK do not hold it after settling\n{}",
                sim.trace_text()
            );
            (steps, holders)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::Sim;
    use super::*;
    use crate::sim::run_schedules;
    use crate::Cluster;

    use crate::testutil::{nl, r, vi};

    /// A cluster driven by hand.
    struct T {
        c: Cluster,
        config: Vec<NodeId>,
    }

    impl T {
        fn new(tb: TieBreaker, config: &[NodeId]) -> Self {
            T {
                c: Cluster::new(AlgorithmKind::Lms, tb),
                config: config.to_vec(),
            }
        }

        fn join(&mut self, node: NodeId, ring: RingId) {
            let tb = self.c.tie_breaker();
            self.c
                .join(node, AlgorithmKind::Lms, tb, ring, 8000, false, 0)
                .expect("join");
        }

        fn ev(&mut self, node: NodeId, e: Event) -> (Result<Vote, AlgoError>, Vec<Action>) {
            let o = self.c.handle(node, e, 0);
            (o.reply, o.actions)
        }

        fn config(&mut self, node: NodeId) -> (Result<Vote, AlgoError>, Vec<Action>) {
            let nodes = nl(&self.config);
            self.ev(
                node,
                Event::ConfigList {
                    nodes,
                    initial: true,
                    config_version: None,
                },
            )
        }

        fn member_h(
            &mut self,
            node: NodeId,
            ring: RingId,
            ids: &[NodeId],
            h: Heuristics,
        ) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.ev(
                node,
                Event::Membership {
                    ring,
                    nodes: nl(ids),
                    heuristics: h,
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

        fn quorum(&mut self, node: NodeId) -> (Result<Vote, AlgoError>, Vec<Action>) {
            self.ev(
                node,
                Event::Quorum {
                    quorate: true,
                    nodes: Vec::new(),
                },
            )
        }

        fn reply(&mut self, node: NodeId, seq: u32) -> Vec<Action> {
            self.ev(node, Event::VoteInfoReply { seq }).1
        }

        fn timer(&mut self, node: NodeId) -> Vec<Action> {
            self.ev(node, Event::Timer).1
        }

        /// Joins `node` and sends its config and membership lists.
        fn up(&mut self, node: NodeId, ring: RingId, ids: &[NodeId]) -> Result<Vote, AlgoError> {
            self.join(node, ring);
            assert_eq!(self.config(node).0, Ok(Vote::NoChange));
            self.member(node, ring, ids).0
        }
    }

    /// All `nodes` connected in one ring `ring`, each holding ACK.
    fn one_ring(tb: TieBreaker, nodes: &[NodeId], ring: RingId) -> T {
        let mut t = T::new(tb, nodes);
        for &n in nodes {
            assert_eq!(t.up(n, ring, nodes), Ok(Vote::Ack));
        }
        t
    }

    #[test]
    fn single_partition_gets_ack() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        assert_eq!(t.quorum(2), (Ok(Vote::Ack), vec![]));
        assert_eq!(t.c.client(3).and_then(|c| c.last_vote), Some(Vote::Ack));
    }

    #[test]
    fn three_way_split_lowest_wins() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        // Every node reports its own singleton ring; until all three have
        // reported, the others still list each other with the old ring.
        assert_eq!(t.member(3, r(3, 8), &[3]).0, Ok(Vote::WaitForReply));
        assert_eq!(t.member(2, r(2, 8), &[2]).0, Ok(Vote::WaitForReply));
        let (v, a) = t.member(1, r(1, 8), &[1]);
        assert_eq!(v, Ok(Vote::Ack));
        assert!(a.contains(&vi(2, 1, Vote::Nack, r(2, 8))));
        assert!(a.contains(&vi(3, 1, Vote::Nack, r(3, 8))));
    }

    #[test]
    fn bigger_partition_wins() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        assert_eq!(t.member(1, r(1, 8), &[1]).0, Ok(Vote::WaitForReply));
        assert_eq!(t.member(2, r(2, 8), &[2, 3]).0, Ok(Vote::WaitForReply));
        let (v, a) = t.member(3, r(2, 8), &[2, 3]);
        assert_eq!(v, Ok(Vote::Ack));
        assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
        assert!(a.contains(&vi(2, 1, Vote::Ack, r(2, 8))));
    }

    #[test]
    fn heuristics_decide_over_size() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        let _ = t.member_h(1, r(1, 8), &[1], Heuristics::Pass);
        let _ = t.member_h(2, r(2, 8), &[2, 3], Heuristics::Fail);
        // {1}: 2 points; {2,3}: 0 + 1 = 1 point.
        let (v, a) = t.member_h(3, r(2, 8), &[2, 3], Heuristics::Undefined);
        assert_eq!(v, Ok(Vote::Nack));
        assert!(a.contains(&vi(1, 1, Vote::Ack, r(1, 8))));
        assert!(a.contains(&vi(2, 1, Vote::Nack, r(2, 8))));
        // Node 1's heuristics now fail: the vote moves, NACK first.
        let (v, a) = t.ev(
            1,
            Event::HeuristicsChange {
                heuristics: Heuristics::Fail,
            },
        );
        assert_eq!(v, Ok(Vote::NoChange));
        assert_eq!(a, vec![vi(1, 2, Vote::Nack, r(1, 8))]);
        // Only after node 1 acknowledges do 2 and 3 get ACK.
        let a = t.reply(1, 2);
        assert_eq!(
            a,
            vec![vi(2, 2, Vote::Ack, r(2, 8)), vi(3, 1, Vote::Ack, r(2, 8))]
        );
    }

    #[test]
    fn ring_settling_waits_then_vote_info() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2], r(1, 4));
        // Node 1 reports a new ring while node 2 is still on the old one.
        let (v, a) = t.member(1, r(1, 8), &[1, 2]);
        assert_eq!(v, Ok(Vote::WaitForReply));
        assert_eq!(
            a,
            vec![Action::ArmTimer {
                node: 1,
                after_ms: 2000
            }]
        );
        // The timer fires while still unsettled: re-armed, no vote.
        assert_eq!(
            t.timer(1),
            vec![Action::ArmTimer {
                node: 1,
                after_ms: 2000
            }]
        );
        // Node 2 catches up: node 2 gets ACK in its reply, node 1 by VOTE_INFO.
        let (v, a) = t.member(2, r(1, 8), &[1, 2]);
        assert_eq!(v, Ok(Vote::Ack));
        assert_eq!(
            a,
            vec![
                Action::CancelTimer { node: 1 },
                vi(1, 1, Vote::Ack, r(1, 8))
            ]
        );
        assert_eq!(t.c.client(1).and_then(|c| c.last_vote), Some(Vote::Ack));
    }

    #[test]
    fn timer_delivers_vote_once_settled_on_a_disconnect() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2], r(1, 4));
        assert_eq!(t.member(1, r(1, 8), &[1, 2]).0, Ok(Vote::WaitForReply));
        // Node 2 goes away without reporting: the ring settles and node 1
        // gets its vote pushed by the disconnect.
        let a = t.c.leave(2, false, 0);
        assert_eq!(
            a,
            vec![
                Action::CancelTimer { node: 1 },
                vi(1, 1, Vote::Ack, r(1, 8))
            ]
        );
        // A later timer finds nothing to do.
        assert_eq!(t.timer(1), vec![]);
    }

    #[test]
    fn node_id_tie_breaker_whole_partition_wins() {
        // Quirk 7: with tie_breaker=3 the reference gave NACK to node 4.
        let nodes = [1, 2, 3, 4];
        let mut t = one_ring(TieBreaker::NodeId(3), &nodes, r(1, 4));
        let _ = t.member(1, r(1, 8), &[1, 2]);
        let _ = t.member(2, r(1, 8), &[1, 2]);
        let _ = t.member(3, r(3, 8), &[3, 4]);
        let (v, a) = t.member(4, r(3, 8), &[3, 4]);
        assert_eq!(v, Ok(Vote::Ack));
        assert!(a.contains(&vi(3, 1, Vote::Ack, r(3, 8))));
        assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
        assert!(a.contains(&vi(2, 1, Vote::Nack, r(1, 8))));
    }

    #[test]
    fn high_node_ids_count_for_lowest_and_highest() {
        // Quirk 9: ids >= 2^31 were never chosen by LOWEST.
        let big = 0x8000_0005;
        let bigger = 0xFFFF_FFF0;
        for (tb, winner) in [(TieBreaker::Lowest, big), (TieBreaker::Highest, bigger)] {
            let nodes = [big, bigger];
            let mut t = one_ring(tb, &nodes, r(big, 4));
            let _ = t.member(big, r(big, 8), &[big]);
            let (v, a) = t.member(bigger, r(bigger, 8), &[bigger]);
            if winner == bigger {
                assert_eq!(v, Ok(Vote::Ack));
                assert!(a.contains(&vi(big, 1, Vote::Nack, r(big, 8))));
            } else {
                assert_eq!(v, Ok(Vote::Nack));
                assert!(a.contains(&vi(big, 1, Vote::Ack, r(big, 8))));
            }
        }
    }

    #[test]
    fn winner_disconnect_moves_vote() {
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        let _ = t.member(1, r(1, 8), &[1]);
        let _ = t.member(2, r(2, 8), &[2]);
        let _ = t.member(3, r(3, 8), &[3]);
        // Node 1 won; it disconnects (an lms client then votes NACK).
        let a = t.c.leave(1, false, 0);
        assert_eq!(a, vec![vi(2, 2, Vote::Ack, r(2, 8))]);
        assert_eq!(t.quorum(3).0, Ok(Vote::Nack));
    }

    #[test]
    fn newcomer_does_not_take_the_vote() {
        let mut t = T::new(TieBreaker::Lowest, &[1, 2]);
        assert_eq!(t.up(2, r(2, 8), &[2]), Ok(Vote::Ack));
        // Node 1 would win the tie-breaker but is a newcomer.
        assert_eq!(t.up(1, r(1, 8), &[1]), Ok(Vote::Nack));
        assert_eq!(t.quorum(1).0, Ok(Vote::Nack));
        assert_eq!(t.quorum(2).0, Ok(Vote::Ack));
        // Once node 2 is gone, node 1 gets the vote.
        assert_eq!(t.c.leave(2, false, 0), vec![vi(1, 1, Vote::Ack, r(1, 8))]);
    }

    #[test]
    fn merge_of_two_losers_waits_for_the_winner_to_drop() {
        // Quirk 26: 3-way split, {1} wins; then 2 and 3 merge. The merged
        // side is bigger, but it gets ACK only after node 1 acknowledged NACK.
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2, 3], r(1, 4));
        let _ = t.member(3, r(3, 8), &[3]);
        let _ = t.member(2, r(2, 8), &[2]);
        assert_eq!(t.member(1, r(1, 8), &[1]).0, Ok(Vote::Ack));
        assert_eq!(t.member(2, r(2, 12), &[2, 3]).0, Ok(Vote::WaitForReply));
        let (v, a) = t.member(3, r(2, 12), &[2, 3]);
        assert_eq!(v, Ok(Vote::WaitForReply));
        assert_eq!(
            a,
            vec![
                vi(1, 1, Vote::Nack, r(1, 8)),
                Action::ArmTimer {
                    node: 3,
                    after_ms: 2000
                }
            ]
        );
        assert_eq!(t.quorum(3).0, Ok(Vote::WaitForReply));
        // A stale acknowledgement (no such seq) changes nothing.
        assert_eq!(t.reply(1, 7), vec![]);
        let a = t.reply(1, 1);
        assert_eq!(
            a,
            vec![
                Action::CancelTimer { node: 2 },
                vi(2, 2, Vote::Ack, r(2, 12)),
                Action::CancelTimer { node: 3 },
                vi(3, 2, Vote::Ack, r(2, 12)),
            ]
        );
        assert_eq!(t.quorum(1).0, Ok(Vote::Nack));
        assert_eq!(t.quorum(2).0, Ok(Vote::Ack));
    }

    #[test]
    fn stale_peer_is_not_compared() {
        // Quirk 26, second case: one half of an even split reports while the
        // other half still has its old ring: nothing is decided on that.
        let nodes = [1, 2, 3, 4];
        let mut t = one_ring(TieBreaker::Highest, &nodes, r(1, 4));
        assert_eq!(t.member(1, r(1, 8), &[1, 2]).0, Ok(Vote::WaitForReply));
        assert_eq!(t.member(2, r(1, 8), &[1, 2]).0, Ok(Vote::WaitForReply));
        assert_eq!(t.quorum(4).0, Ok(Vote::WaitForReply));
        assert_eq!(t.member(3, r(3, 8), &[3, 4]).0, Ok(Vote::WaitForReply));
        let (v, a) = t.member(4, r(3, 8), &[3, 4]);
        assert_eq!(v, Ok(Vote::Ack));
        assert!(a.contains(&vi(3, 1, Vote::Ack, r(3, 8))));
        assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
    }

    #[test]
    fn no_vote_info_before_lists() {
        // Quirks 25/28: node 2 joined but sent nothing; node 1's departure
        // must not send it anything.
        let mut t = one_ring(TieBreaker::Lowest, &[1, 2], r(1, 4));
        t.c.leave(2, false, 0);
        t.join(2, r(1, 4));
        assert_eq!(t.config(2), (Ok(Vote::NoChange), vec![]));
        assert_eq!(t.c.leave(1, false, 0), vec![]);
        // Its own membership list makes it ready.
        assert_eq!(t.member(2, r(2, 8), &[2]).0, Ok(Vote::Ack));
    }

    /// Randomized schedules of 2-8 nodes (by default seeds 1..=2000; see
    /// `crate::sim` for `QNETD_SAFETY_SCHEDULES` / `QNETD_SAFETY_SEED`).
    #[test]
    fn safety_randomized_schedules() {
        let (mut steps, mut max_holders) = (0, 0);
        let runs = run_schedules(
            "lms::tests::safety_randomized_schedules",
            2000,
            |seed, tracing| {
                let (s, holders) = Sim::run_one(
                    AlgorithmKind::Lms,
                    seed,
                    tracing,
                    60,
                    &[2, 3, 4, 5, 6, 7, 8],
                    false,
                );
                steps += s;
                max_holders = max_holders.max(holders);
            },
        );
        assert_eq!(steps as u64, runs * 60);
        if runs >= 100 {
            assert!(max_holders >= 2);
        }
    }
}
