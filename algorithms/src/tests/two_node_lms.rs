//! Tests of 2nodelms (`crate::two_node_lms`): splits, heuristics, the
//! departed winner (ghost) rule, the fixed quirks, and the randomized safety
//! schedules.

use crate::sim::schedules::run_schedules;
use crate::tests::util::{nl, r, vi};
use crate::{
    Action, AlgoError, AlgorithmKind, Cluster, Event, Heuristics, NodeId, RingId, TieBreaker, Vote,
};

struct T {
    c: Cluster,
}

impl T {
    fn new(tb: TieBreaker) -> Self {
        T {
            c: Cluster::new(AlgorithmKind::TwoNodeLms, tb),
        }
    }

    fn ev(&mut self, node: NodeId, e: Event) -> (Result<Vote, AlgoError>, Vec<Action>) {
        let o = self.c.handle(node, e, 0);
        (o.reply, o.actions)
    }

    fn member(
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

    /// Joins `node`, sends config [1, 2] and the membership list.
    fn up(
        &mut self,
        node: NodeId,
        ring: RingId,
        ids: &[NodeId],
        h: Heuristics,
    ) -> (Result<Vote, AlgoError>, Vec<Action>) {
        let tb = self.c.tie_breaker();
        self.c
            .join(node, AlgorithmKind::TwoNodeLms, tb, ring, 8000, false, 0)
            .expect("join");
        let cfg = Event::ConfigList {
            nodes: nl(&[1, 2]),
            initial: true,
            config_version: None,
        };
        assert_eq!(self.ev(node, cfg), (Ok(Vote::NoChange), vec![]));
        self.member(node, ring, ids, h)
    }
}

fn both_up(tb: TieBreaker) -> T {
    let mut t = T::new(tb);
    assert_eq!(
        t.up(1, r(1, 4), &[1, 2], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
    assert_eq!(
        t.up(2, r(1, 4), &[1, 2], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
    t
}

/// Splits a two-node cluster; returns node 1's and node 2's replies and
/// the actions of node 2's membership.
fn split(tb: TieBreaker, h1: Heuristics, h2: Heuristics) -> (T, Vote, Vote, Vec<Action>) {
    let mut t = both_up(tb);
    let (v1, _) = t.member(1, r(1, 8), &[1], h1);
    let (v2, a) = t.member(2, r(2, 8), &[2], h2);
    (
        t,
        v1.unwrap_or(Vote::NoChange),
        v2.unwrap_or(Vote::NoChange),
        a,
    )
}

#[test]
fn both_in_membership_get_ack() {
    let mut t = both_up(TieBreaker::Lowest);
    let q = Event::Quorum {
        quorate: true,
        nodes: nl(&[1, 2]),
    };
    assert_eq!(t.ev(2, q), (Ok(Vote::NoChange), vec![]));
    assert_eq!(t.ev(1, Event::AskForVote).0, Ok(Vote::Ack));
}

#[test]
fn ask_for_vote_before_decision_is_ask_later() {
    let mut t = T::new(TieBreaker::Lowest);
    t.c.join(
        1,
        AlgorithmKind::TwoNodeLms,
        TieBreaker::Lowest,
        r(1, 4),
        8000,
        false,
        0,
    )
    .expect("join");
    assert_eq!(t.ev(1, Event::AskForVote).0, Ok(Vote::AskLater));
}

#[test]
fn split_uses_tie_breaker() {
    let u = Heuristics::Undefined;
    // Node 1 reports first and waits for node 2 (still on the old ring).
    let (_, v1, v2, a) = split(TieBreaker::Lowest, u, u);
    assert_eq!((v1, v2), (Vote::WaitForReply, Vote::Nack));
    assert!(a.contains(&vi(1, 1, Vote::Ack, r(1, 8))));
    let (_, _, v2, a) = split(TieBreaker::Highest, u, u);
    assert_eq!(v2, Vote::Ack);
    assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
    let (_, _, v2, a) = split(TieBreaker::NodeId(2), u, u);
    assert_eq!(v2, Vote::Ack);
    assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
}

#[test]
fn split_uses_heuristics_first() {
    let (_, _, v2, a) = split(TieBreaker::Lowest, Heuristics::Fail, Heuristics::Undefined);
    assert_eq!(v2, Vote::Ack);
    assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
    let (_, _, v2, _) = split(TieBreaker::Highest, Heuristics::Undefined, Heuristics::Fail);
    assert_eq!(v2, Vote::Nack);
}

#[test]
fn lone_node_gets_ack() {
    let mut t = T::new(TieBreaker::Highest);
    assert_eq!(
        t.up(1, r(1, 8), &[1], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
}

#[test]
fn three_node_config_is_error_12() {
    let mut t = T::new(TieBreaker::Lowest);
    t.c.join(
        1,
        AlgorithmKind::TwoNodeLms,
        TieBreaker::Lowest,
        r(1, 4),
        8000,
        false,
        0,
    )
    .expect("join");
    let cfg = Event::ConfigList {
        nodes: nl(&[1, 2, 3]),
        initial: true,
        config_version: None,
    };
    let (v, a) = t.ev(1, cfg);
    assert_eq!(v, Err(AlgoError::UnsupportedDecisionAlgorithm));
    assert_eq!(v.map_err(AlgoError::code), Err(12));
    assert!(a.is_empty());
}

#[test]
fn reconnected_node_gets_ack_after_heal() {
    // Quirk 27: node 2 lost the split, reconnected (a newcomer, NACK);
    // after the heal it must get ACK again.
    let (mut t, _, _, _) = split(
        TieBreaker::Lowest,
        Heuristics::Undefined,
        Heuristics::Undefined,
    );
    t.c.leave(2, false, 0);
    let (v, _) = t.up(2, r(2, 8), &[2], Heuristics::Pass);
    assert_eq!(v, Ok(Vote::Nack));
    // Heal: node 2 reports first, node 1 still on its split ring.
    let (v, _) = t.member(2, r(1, 12), &[1, 2], Heuristics::Pass);
    assert_eq!(v, Ok(Vote::WaitForReply));
    let (v, a) = t.member(1, r(1, 12), &[1, 2], Heuristics::Undefined);
    assert_eq!(v, Ok(Vote::Ack));
    assert!(a.contains(&vi(2, 1, Vote::Ack, r(1, 12))));
}

#[test]
fn stale_heuristics_do_not_give_two_acks() {
    // Quirk 26: node 2's stored heuristics (FAIL, from before the split)
    // are not compared with node 1's fresh PASS.
    let mut t = T::new(TieBreaker::Highest);
    let _ = t.up(1, r(1, 4), &[1, 2], Heuristics::Pass);
    let _ = t.up(2, r(1, 4), &[1, 2], Heuristics::Fail);
    let (v, _) = t.member(1, r(1, 8), &[1], Heuristics::Pass);
    assert_eq!(v, Ok(Vote::WaitForReply));
    let (v, a) = t.member(2, r(2, 8), &[2], Heuristics::Pass);
    // Fresh heuristics tie; HIGHEST: node 2 wins, node 1 never had ACK
    // for its new ring.
    assert_eq!(v, Ok(Vote::Ack));
    assert!(a.contains(&vi(1, 1, Vote::Nack, r(1, 8))));
}

#[test]
fn departed_winner_blocks_until_its_ring_is_over() {
    let u = Heuristics::Undefined;
    let (mut t, _, _, _) = split(TieBreaker::Lowest, u, u);
    // Node 1 (ACK on ring 1/8) loses the server but keeps voting.
    assert_eq!(t.c.leave(1, false, 0), vec![]);
    let q = Event::Quorum {
        quorate: false,
        nodes: nl(&[2]),
    };
    assert_eq!(t.ev(2, q), (Ok(Vote::NoChange), vec![]));
    assert_eq!(t.member(2, r(2, 12), &[2], u).0, Ok(Vote::WaitForReply));
    // The heal puts node 1 in node 2's ring: ring 1/8 is over.
    assert_eq!(t.member(2, r(1, 16), &[1, 2], u).0, Ok(Vote::Ack));
}

#[test]
fn survivor_of_a_healthy_ring_gets_ack() {
    let mut t = both_up(TieBreaker::Lowest);
    assert_eq!(t.c.leave(1, false, 0), vec![]);
    // Node 2 reports a ring without node 1: node 1's ring is over.
    assert_eq!(
        t.member(2, r(2, 8), &[2], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
}

/// Minimised from `safety_randomized_schedules` seed 4327 (with
/// `QNETD_SAFETY_SCHEDULES=100000`): a *stale* membership list of node 1
/// (ring 1.4, sent before the split and processed late) lists the ghost
/// node 2 with another ring id, so the ghost of ring 2.8 is dropped and
/// node 1 then gets ACK for its current ring 1.8 while node 2, cut off
/// from the server, still holds ACK for ring 2.8. Fixed: only a newer
/// ring (higher seq) ends a ghost's ring.
#[test]
fn stale_membership_list_does_not_end_a_ghost_ring() {
    let mut t = T::new(TieBreaker::Lowest);
    // Node 2 alone in ring 1.4 with node 1 (not connected yet): ACK.
    assert_eq!(
        t.up(2, r(1, 4), &[1, 2], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
    // The split: node 2 is now alone in ring 2.8, still the only client.
    assert_eq!(
        t.member(2, r(2, 8), &[2], Heuristics::Undefined).0,
        Ok(Vote::Ack)
    );
    // Node 2 loses the server and keeps its ACK for ring 2.8 (ghost).
    assert_eq!(t.c.leave(2, false, 0), vec![]);
    // Node 1 had connected during ring 1.4; its lists from then arrive
    // now (its client already moved to ring 1.8 and ignores the reply).
    let stale = t.up(1, r(1, 4), &[1, 2], Heuristics::Undefined).0;
    // Then its current membership list: ring 1.8, node 1 alone. Ring 2.8
    // is not provably over, so node 1 must not get ACK.
    let (v, actions) = t.member(1, r(1, 8), &[1], Heuristics::Undefined);
    assert_ne!(
        v,
        Ok(Vote::Ack),
        "ring 1.8 got ACK while the ghost of ring 2.8 may hold it \
         (reply to the stale list: {stale:?}, actions {actions:?})"
    );
    assert!(!actions.contains(&vi(1, 1, Vote::Ack, r(1, 8))));
}

/// Randomized schedules of the two nodes (by default seeds 1..=2000;
/// see `crate::sim` for `QNETD_SAFETY_SCHEDULES` / `QNETD_SAFETY_SEED`).
#[test]
fn safety_randomized_schedules() {
    // Disconnected clients keep their vote here, and still count.
    let (mut steps, mut max_holders) = (0, 0);
    let runs = run_schedules(
        "tests::two_node_lms::safety_randomized_schedules",
        2000,
        |seed, tracing| {
            let (s, holders) =
                crate::sim::lms::run_one(AlgorithmKind::TwoNodeLms, seed, tracing, 60, &[2], true);
            steps += s;
            max_holders = max_holders.max(holders);
        },
    );
    assert_eq!(steps as u64, runs * 60);
    if runs >= 100 {
        assert!(max_holders >= 2);
    }
}

/// The same schedules with server restarts (2nodelms clients keep their
/// vote over a restart).
#[test]
fn safety_randomized_schedules_with_restarts() {
    let mut max_holders = 0;
    let runs = run_schedules(
        "tests::two_node_lms::safety_randomized_schedules_with_restarts",
        1000,
        |seed, tracing| {
            let (_, holders) = crate::sim::lms::run_one_with_restarts(
                AlgorithmKind::TwoNodeLms,
                seed,
                tracing,
                60,
                &[2],
                true,
            );
            max_holders = max_holders.max(holders);
        },
    );
    if runs >= 100 {
        assert!(max_holders >= 2);
    }
}
