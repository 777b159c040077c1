//! The vote engine shared by lms ([`crate::lms`], whose module
//! documentation states its rules: the decision, ring settling, newcomers,
//! the safety gate) and 2nodelms ([`crate::two_node_lms`], which also keeps
//! departed ACK holders as *ghosts*). It decides after every event, answers
//! the triggering client and pushes changed votes with `VOTE_INFO`.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    contains_node, heuristics_score, Action, Ctx, DecisionRecord, Event, Heuristics, NodeId,
    NodeInfo, PartitionScore, RingId, TieBreaker, Vote,
};

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
