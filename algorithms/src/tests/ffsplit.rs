//! Tests of ffsplit (`crate::ffsplit`): the protocol notes' worked example,
//! splits decided by each rule, the restart hold, the fixed quirks, and the
//! randomized safety schedules.

use crate::sim::schedules::run_schedules;
use crate::sim::Rng;
use crate::tests::util::{nl, r, vi};
use crate::{
    Action, AlgoError, AlgorithmKind, Cluster, Event, Heuristics, NodeId, RestoredVote, RingId,
    TieBreaker, Vote,
};

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

    fn config(&mut self, node: NodeId, ids: &[NodeId]) -> (Result<Vote, AlgoError>, Vec<Action>) {
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
    assert_eq!(
        crate::ffsplit::preferred_node(TieBreaker::Lowest, &[]),
        None
    );
    assert_eq!(
        crate::ffsplit::preferred_node(TieBreaker::Highest, &[]),
        None
    );
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
// Randomized safety test (the schedules are in `sim::ffsplit`)
// ------------------------------------------------------------------

/// Randomized schedules (by default seeds 1..=2000; see `crate::sim` for
/// `QNETD_SAFETY_SCHEDULES` / `QNETD_SAFETY_SEED`) of 2-8 nodes: the vote
/// is never held in two rings at once, and after quiescence one quorate
/// partition holds it.
#[test]
fn safety_randomized_schedules() {
    run_schedules(
        "tests::ffsplit::safety_randomized_schedules",
        2000,
        |seed, tracing| {
            crate::sim::ffsplit::run_schedule(Rng::new(seed), &format!("seed {seed}"), tracing)
        },
    );
}

/// The same schedules with server restarts (the server model remembers
/// each decision's holder and seeds the next cluster with it, with the
/// 30 s restart hold on a virtual clock that advances 0-3 s per step).
#[test]
fn safety_randomized_schedules_with_restarts() {
    run_schedules(
        "tests::ffsplit::safety_randomized_schedules_with_restarts",
        1000,
        |seed, tracing| {
            crate::sim::ffsplit::run_schedule_with_restarts(
                Rng::new(seed),
                &format!("seed {seed}"),
                tracing,
            )
        },
    );
}
