//! The vote engine shared by lms ([`crate::lms`], whose module
//! documentation states its rules: the decision, ring settling, newcomers,
//! the safety gate) and 2nodelms ([`crate::two_node_lms`], which also keeps
//! departed ACK holders as *ghosts*). It decides after every event, answers
//! the triggering client and pushes changed votes with `VOTE_INFO`.

mod decision;

use std::collections::BTreeMap;

use decision::{collect_views, decide, prune_ghosts};
pub(crate) use decision::{Decision, View};

use crate::nodeset::{sorted_ids, NodeSets, SetId};
use crate::{Action, Ctx, DecisionRecord, Event, NodeId, RestoredVote, RingId, Vote};

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
pub(crate) struct Tracked {
    /// Seq of the last VOTE_INFO sent to this client.
    seq: u32,
    held: Held,
    /// An ACK was sent and has not been provably withdrawn.
    pub(crate) may_ack: bool,
    /// Seq of the VOTE_INFO(NACK) whose acknowledgement clears `may_ack`.
    revoke_seq: Option<u32>,
    /// The client has been given a real ACK/NACK decision (not a newcomer).
    pub(crate) decided: bool,
    /// The algorithm timer is armed.
    timer: bool,
    /// The client's membership list as the cluster stores it, interned in
    /// [`Engine::sets`] (`None` until received).
    pub(crate) membership: Option<SetId>,
}

/// A node that may still act on an ACK while the server cannot see it: a
/// departed 2nodelms client (2nodelms clients keep their vote when they
/// lose the server), or a node of the vote holder remembered across a
/// restart. It blocks ACK for other rings until its ring is known to be
/// over (see `decision::prune_ghosts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ghost {
    pub(crate) node: NodeId,
    /// Its ring; `None` for a remembered holder whose current ring is not
    /// known yet (it blocks ACK for every ring).
    pub(crate) ring: Option<RingId>,
    /// Sorted node ids: the nodes of its ring (a membership list), or for a
    /// remembered holder not placed yet, the nodes of the holder partition.
    pub(crate) members: Vec<NodeId>,
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

/// Cluster-wide vote engine: decides, gates ACKs, and pushes VOTE_INFOs.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    clients: BTreeMap<NodeId, Tracked>,
    ghosts: Vec<Ghost>,
    /// The clients' membership lists, interned.
    sets: NodeSets,
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
        self.forget(node);
        self.clients.insert(node, Tracked::default());
    }

    /// Seeds the engine with the vote holder remembered across a restart
    /// (or since the cluster's clients were last all gone): each of its
    /// nodes may still be voting ACK. The clients of lms (with
    /// `wait_for_all`, while quorate) and of 2nodelms keep their vote when
    /// they lose the server, for as long as their membership does not
    /// change and they have not reconnected: no time bounds it, so
    /// `hold_until_ms` is not used. Each node becomes a ghost of an unknown
    /// ring, which blocks ACK for every ring until it is placed or over
    /// (`decision::prune_ghosts`), or its node is back (see `run`).
    pub(crate) fn restore(&mut self, restored: &RestoredVote) {
        let members = sorted_ids(restored.members.iter().copied());
        for &m in &members {
            // A client that sent a membership list on this connection has
            // stopped voting since it connected, and the engine knows it.
            let reported = self.clients.get(&m).is_some_and(|t| t.membership.is_some());
            if !reported && !self.ghosts.iter().any(|g| g.node == m) {
                self.ghosts.push(Ghost {
                    node: m,
                    ring: None,
                    members: members.clone(),
                });
            }
        }
    }

    /// Drops a client's state and its list; returns the state.
    fn forget(&mut self, node: NodeId) -> Option<Tracked> {
        let t = self.clients.remove(&node)?;
        if let Some(id) = t.membership {
            self.sets.release(id);
        }
        Some(t)
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
        let list = match event {
            Event::Membership { nodes, .. } => Some(self.sets.intern(nodes)),
            _ => None,
        };
        let t = self.clients.entry(node).or_default();
        match event {
            Event::Membership { .. } => {
                // The client stopped voting before sending a new list, and it
                // ignores anything sent for its previous ring.
                t.held = Held::Nothing;
                t.may_ack = false;
                t.revoke_seq = None;
                // The cluster stores the list after this call (the engine
                // never refuses one).
                if let Some(old) = std::mem::replace(&mut t.membership, list) {
                    self.sets.release(old);
                }
            }
            Event::VoteInfoReply { seq } if t.revoke_seq == Some(*seq) => {
                // The client processed the NACK, and no ACK was sent after it.
                t.may_ack = false;
                t.revoke_seq = None;
            }
            Event::Timer => t.timer = false,
            _ => {}
        }
        let views = collect_views(ctx, &self.clients, Some((node, event)), None);
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
        let Some(t) = self.forget(node) else {
            return;
        };
        if server_going_down {
            return;
        }
        if self.keep_departed_ack && t.may_ack {
            if let Some(info) = ctx.clients.get(&node) {
                self.ghosts.push(Ghost {
                    node,
                    ring: Some(info.ring),
                    members: sorted_ids(info.membership_nodes().iter().map(|n| n.node_id)),
                });
            }
        }
        let views = collect_views(ctx, &self.clients, None, Some(node));
        self.run(ctx, &views, None, actions);
    }

    fn run(
        &mut self,
        ctx: &Ctx<'_>,
        views: &[View<'_>],
        trigger: Option<(NodeId, Reply)>,
        actions: &mut Vec<Action>,
    ) -> Vote {
        #[cfg(any(test, feature = "fuzzing"))]
        let before = self.ghosts.clone();
        let back = prune_ghosts(&mut self.ghosts, views, &self.sets);
        // A ghost's node is back (ready): its client stopped voting when
        // its connection was set up, before it sent its lists, but
        // votequorum counts its last ACK until `quorum.device.timeout`
        // (10 s by default) passes without a poll. It counts as holding
        // ACK, and as decided, until it acknowledges a NACK or is given ACK:
        // the safety gate takes the vote back explicitly (a NACK poll ends
        // the count at once), and its partition is the incumbent.
        for node in &back {
            if let Some(t) = self.clients.get_mut(node) {
                t.may_ack = true;
                t.decided = true;
            }
        }
        let decision = decide(
            views,
            &self.sets,
            &self.clients,
            &self.ghosts,
            ctx.tie_breaker,
        );
        #[cfg(any(test, feature = "fuzzing"))]
        crate::sim::oracle::check_engine(
            views,
            &self.sets,
            &self.clients,
            (&before, &self.ghosts, &back),
            ctx.tie_breaker,
            &decision,
        );
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
