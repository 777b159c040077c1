//! Tests of lms (`crate::lms`): the decision rules, ring settling, newcomers,
//! the safety gate, the fixed quirks, and the randomized safety schedules.

use crate::sim::schedules::run_schedules;
use crate::tests::util::{nl, r, vi};
use crate::{
    Action, AlgoError, AlgorithmKind, Cluster, Event, Heuristics, NodeId, RingId, TieBreaker, Vote,
};

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
        "tests::lms::safety_randomized_schedules",
        2000,
        |seed, tracing| {
            let (s, holders) = crate::sim::lms::run_one(
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

/// The same schedules with server restarts, over which every client keeps
/// its vote (an lms client does with `wait_for_all` while quorate): the
/// remembered holder's nodes must keep any other partition from ACK until
/// they are back or their ring is over.
#[test]
fn safety_randomized_schedules_with_restarts() {
    let mut max_holders = 0;
    let runs = run_schedules(
        "tests::lms::safety_randomized_schedules_with_restarts",
        1000,
        |seed, tracing| {
            let lms = [2, 3, 4, 5, 6, 7, 8];
            let (_, holders) = crate::sim::lms::run_one_with_restarts(
                AlgorithmKind::Lms,
                seed,
                tracing,
                60,
                &lms,
                false,
            );
            max_holders = max_holders.max(holders);
        },
    );
    if runs >= 100 {
        assert!(max_holders >= 2);
    }
}
