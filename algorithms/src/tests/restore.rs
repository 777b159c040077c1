//! The vote holder remembered across a restart, for lms and 2nodelms
//! (`Algorithm::restore`, the engine's ghosts of unknown ring), and the
//! rule of what the server remembers ([`DecisionRecord::remembered_holder`]),
//! with explicit times on the virtual clock. ffsplit's restart hold is
//! tested in `tests::ffsplit`.

use crate::tests::util::{nl, r, vi};
use crate::{
    AlgoError, AlgorithmKind, Cluster, DecisionRecord, Event, Heuristics, NodeId, PartitionScore,
    RestoredVote, RingId, TieBreaker, Vote,
};

/// A cluster driven by hand at explicit times.
struct T {
    c: Cluster,
    kind: AlgorithmKind,
    config: Vec<NodeId>,
}

impl T {
    fn new(kind: AlgorithmKind, tb: TieBreaker, config: &[NodeId]) -> Self {
        T {
            c: Cluster::new(kind, tb),
            kind,
            config: config.to_vec(),
        }
    }

    fn ev(
        &mut self,
        at: u64,
        node: NodeId,
        e: Event,
    ) -> (Result<Vote, AlgoError>, Vec<crate::Action>) {
        let o = self.c.handle(node, e, at);
        (o.reply, o.actions)
    }

    /// `node` joins at `at` (the server seeds a new cluster with `seed`
    /// after its first client joined), sends its config list, then its
    /// membership list; returns the membership list's reply and actions.
    fn up(
        &mut self,
        at: u64,
        node: NodeId,
        ring: RingId,
        ids: &[NodeId],
        h: Heuristics,
        seed: Option<&RestoredVote>,
    ) -> (Result<Vote, AlgoError>, Vec<crate::Action>) {
        let tb = self.c.tie_breaker();
        self.c
            .join(node, self.kind, tb, ring, 8000, false, at)
            .expect("join");
        if let Some(seed) = seed {
            assert_eq!(self.c.len(), 1, "the server seeds a new cluster");
            self.c.restore(seed);
        }
        let cfg = Event::ConfigList {
            nodes: nl(&self.config),
            initial: true,
            config_version: None,
        };
        assert_eq!(self.ev(at, node, cfg).0.map(|_| ()), Ok(()));
        self.member(at, node, ring, ids, h)
    }

    fn member(
        &mut self,
        at: u64,
        node: NodeId,
        ring: RingId,
        ids: &[NodeId],
        h: Heuristics,
    ) -> (Result<Vote, AlgoError>, Vec<crate::Action>) {
        let e = Event::Membership {
            ring,
            nodes: nl(ids),
            heuristics: h,
        };
        self.ev(at, node, e)
    }

    /// Whether `node` was sent an ACK in `actions`.
    fn acked(actions: &[crate::Action], node: NodeId) -> bool {
        actions.iter().any(|a| {
            matches!(a, crate::Action::SendVoteInfo { node: n, vote: Vote::Ack, .. } if *n == node)
        })
    }
}

const U: Heuristics = Heuristics::Undefined;

/// After a restart that remembered node 1 (2nodelms, it held ACK in its
/// half of a split), node 2 reconnects first. Node 1's client may still be
/// voting: nothing tells the server otherwise, at any time (the restart
/// hold of 30 s does not bound it). When node 1 is back, its partition keeps
/// the vote and node 2 gets NACK.
#[test]
fn two_node_lms_holder_blocks_the_other_node_at_any_time() {
    let seed = RestoredVote {
        members: vec![1],
        hold_until_ms: 30_000,
    };
    let mut t = T::new(AlgorithmKind::TwoNodeLms, TieBreaker::Highest, &[1, 2]);
    let (v, a) = t.up(1_000, 2, r(2, 8), &[2], U, Some(&seed));
    assert_eq!(v, Ok(Vote::WaitForReply));
    assert!(!T::acked(&a, 2));
    // Long after the hold time: still no vote for node 2, whatever it does.
    let q = Event::Quorum {
        quorate: false,
        nodes: nl(&[2]),
    };
    assert!(!T::acked(&t.ev(45_000, 2, q).1, 2));
    assert_eq!(t.ev(46_000, 2, Event::AskForVote).0, Ok(Vote::AskLater));
    assert!(!T::acked(&t.ev(60_000, 2, Event::Timer).1, 2));
    let h = Event::HeuristicsChange {
        heuristics: Heuristics::Pass,
    };
    assert!(!T::acked(&t.ev(61_000, 2, h).1, 2));
    // Node 1 is back, in its ring: it keeps the vote (node 2 is a newcomer
    // and would have won the HIGHEST tie-breaker).
    let (v, a) = t.up(70_000, 1, r(1, 8), &[1], U, None);
    assert_eq!(v, Ok(Vote::Ack));
    assert!(a.contains(&vi(2, 1, Vote::Nack, r(2, 8))), "{a:?}");
}

/// The remembered holder is placed by a list that names it: node 2 reports
/// a ring with node 1 in it (the split healed while the server was down):
/// node 1 can only hold ACK for that ring, which node 2 may share.
#[test]
fn two_node_lms_a_list_naming_the_holder_places_it() {
    let seed = RestoredVote {
        members: vec![1],
        hold_until_ms: 30_000,
    };
    let mut t = T::new(AlgorithmKind::TwoNodeLms, TieBreaker::Lowest, &[1, 2]);
    let (v, _) = t.up(500, 2, r(1, 12), &[1, 2], U, Some(&seed));
    assert_eq!(v, Ok(Vote::Ack));
}

/// lms, three nodes: {1, 2} held the vote, {3} did not. After the restart
/// node 3 reconnects first and gets nothing, before and after the hold
/// time. Node 1 comes back alone in a newer ring without node 2: node 2's
/// ring is over (its client dropped an ACK when its membership changed),
/// node 1 keeps the vote, node 3 (a newcomer) gets NACK.
#[test]
fn lms_holder_partition_blocks_then_keeps_the_vote() {
    let seed = RestoredVote {
        members: vec![1, 2],
        hold_until_ms: 30_000,
    };
    let mut t = T::new(AlgorithmKind::Lms, TieBreaker::Highest, &[1, 2, 3]);
    let (v, a) = t.up(2_000, 3, r(3, 8), &[3], Heuristics::Pass, Some(&seed));
    assert_eq!(v, Ok(Vote::WaitForReply));
    assert!(!T::acked(&a, 3));
    let q = Event::Quorum {
        quorate: true,
        nodes: nl(&[3]),
    };
    assert_eq!(t.ev(40_000, 3, q).0, Ok(Vote::WaitForReply));
    let (v, a) = t.up(50_000, 1, r(1, 16), &[1], U, None);
    assert_eq!(v, Ok(Vote::Ack), "{a:?}");
    assert!(a.contains(&vi(3, 1, Vote::Nack, r(3, 8))), "{a:?}");
    let q = Event::Quorum {
        quorate: true,
        nodes: nl(&[3]),
    };
    assert_eq!(t.ev(51_000, 3, q).0, Ok(Vote::Nack));
}

/// lms: node 3 reconnects after a restart that remembered {1, 2}; while
/// only node 3 is back, a list of its own that does not name them proves
/// nothing, so it stays without the vote even in a newer ring.
#[test]
fn lms_a_list_without_the_holder_proves_nothing() {
    let seed = RestoredVote {
        members: vec![1, 2],
        hold_until_ms: 30_000,
    };
    let mut t = T::new(AlgorithmKind::Lms, TieBreaker::Lowest, &[1, 2, 3]);
    let (v, _) = t.up(1_000, 3, r(3, 8), &[3], U, Some(&seed));
    assert_eq!(v, Ok(Vote::WaitForReply));
    let (v, a) = t.member(90_000, 3, r(3, 20), &[3], U);
    assert_eq!(v, Ok(Vote::WaitForReply));
    assert!(!T::acked(&a, 3));
    // Node 2 reports a ring with nodes 2 and 3: node 1 is not in it, so the
    // holder's ring is over; nodes 2 and 3 share the vote.
    let (v, _) = t.up(91_000, 2, r(2, 24), &[2, 3], U, None);
    assert_eq!(v, Ok(Vote::WaitForReply), "node 3 still reports ring 3.20");
    let (v, a) = t.member(91_500, 3, r(2, 24), &[2, 3], U);
    assert_eq!(v, Ok(Vote::Ack), "{a:?}");
    assert!(a.contains(&vi(2, 1, Vote::Ack, r(2, 24))), "{a:?}");
}

/// A former holder that is back counts as holding ACK until it
/// acknowledges a NACK: votequorum counts its last ACK until
/// `quorum.device.timeout` runs out, unless it polls NACK. 2nodelms: node 1
/// won a split, lost the server (a ghost), and comes back failing its
/// heuristics: node 2 wins now, but gets ACK only once node 1 acknowledged
/// its VOTE_INFO(NACK), not when node 1 got NACK in a reply.
#[test]
fn former_holder_back_must_acknowledge_nack() {
    let mut t = T::new(AlgorithmKind::TwoNodeLms, TieBreaker::Lowest, &[1, 2]);
    assert_eq!(t.up(0, 1, r(1, 4), &[1, 2], U, None).0, Ok(Vote::Ack));
    assert_eq!(t.up(0, 2, r(1, 4), &[1, 2], U, None).0, Ok(Vote::Ack));
    let _ = t.member(1_000, 1, r(1, 8), &[1], Heuristics::Pass);
    let (v, _) = t.member(1_000, 2, r(2, 8), &[2], U);
    assert_eq!(v, Ok(Vote::Nack));
    assert!(t.c.leave(1, false, 2_000).is_empty());
    let (v, a) = t.up(3_000, 1, r(1, 8), &[1], Heuristics::Fail, None);
    assert_eq!(v, Ok(Vote::Nack));
    // The reply is never acknowledged: the NACK also goes as a VOTE_INFO.
    let seq = a
        .iter()
        .find_map(|x| match x {
            crate::Action::SendVoteInfo {
                node: 1,
                seq,
                vote: Vote::Nack,
                ..
            } => Some(*seq),
            _ => None,
        })
        .expect("VOTE_INFO(NACK) to node 1");
    assert!(!T::acked(&a, 2), "{a:?}");
    let (_, a) = t.ev(3_100, 1, Event::VoteInfoReply { seq });
    assert!(T::acked(&a, 2), "{a:?}");
}

/// The server remembers the winner of a decision, for lms and 2nodelms
/// only once its ACK is granted.
#[test]
fn remembered_holder_waits_for_the_grant_under_lms() {
    let record = |pending| DecisionRecord {
        partitions: vec![
            PartitionScore {
                ring: r(1, 8),
                nodes: vec![1],
                score: 1,
            },
            PartitionScore {
                ring: r(2, 8),
                nodes: vec![2],
                score: 1,
            },
        ],
        winner: Some(r(2, 8)),
        reason: "tie_breaker",
        pending,
    };
    for kind in [AlgorithmKind::Lms, AlgorithmKind::TwoNodeLms] {
        assert_eq!(record(true).remembered_holder(kind), None);
        let granted = record(false);
        assert_eq!(
            granted.remembered_holder(kind).map(|p| p.ring),
            Some(r(2, 8))
        );
    }
    let pending = record(true);
    assert_eq!(
        pending
            .remembered_holder(AlgorithmKind::Ffsplit)
            .map(|p| &p.nodes[..]),
        Some(&[2][..])
    );
    let none = DecisionRecord {
        winner: None,
        ..record(false)
    };
    assert_eq!(none.remembered_holder(AlgorithmKind::Ffsplit), None);
}

/// In the engine, a decision whose winner waits for NACKs is reported
/// again once the ACK goes out, so the server does remember the new holder.
#[test]
fn lms_reports_the_granted_decision_after_the_nacks() {
    let mut t = T::new(AlgorithmKind::Lms, TieBreaker::Lowest, &[1, 2, 3]);
    for n in [1, 2, 3] {
        let _ = t.up(0, n, r(1, 4), &[1, 2, 3], U, None);
    }
    let _ = t.member(10, 3, r(3, 8), &[3], U);
    let _ = t.member(10, 2, r(2, 8), &[2], U);
    let _ = t.member(10, 1, r(1, 8), &[1], U);
    // Nodes 2 and 3 merge: the bigger side wins, pending node 1's NACK.
    let _ = t.member(20, 2, r(2, 12), &[2, 3], U);
    let o = t.c.handle(
        3,
        Event::Membership {
            ring: r(2, 12),
            nodes: nl(&[2, 3]),
            heuristics: U,
        },
        20,
    );
    let d = o.decision.expect("a decision");
    assert!(d.pending);
    assert_eq!(d.remembered_holder(AlgorithmKind::Lms), None);
    let o = t.c.handle(1, Event::VoteInfoReply { seq: 1 }, 30);
    let d = o.decision.expect("the decision again");
    assert!(!d.pending);
    assert_eq!(
        d.remembered_holder(AlgorithmKind::Lms).map(|p| p.ring),
        Some(r(2, 12))
    );
}
