//! Tests of the test algorithm (`crate::test_algo`).

use crate::{AlgorithmKind, Cluster, Event, Heuristics, NodeInfo, RingId, TieBreaker, Vote};

#[test]
fn membership_gets_ack_and_config_no_change() {
    let mut c = Cluster::new(AlgorithmKind::Test, TieBreaker::Lowest);
    c.join(
        1,
        AlgorithmKind::Test,
        TieBreaker::Lowest,
        RingId::new(1, 4),
        8000,
        false,
        0,
    )
    .unwrap();
    let o = c.handle(
        1,
        Event::ConfigList {
            nodes: vec![NodeInfo::new(1), NodeInfo::new(2)],
            initial: true,
            config_version: None,
        },
        0,
    );
    assert_eq!(o.reply, Ok(Vote::NoChange));
    let o = c.handle(
        1,
        Event::Membership {
            ring: RingId::new(1, 8),
            nodes: vec![NodeInfo::new(1)],
            heuristics: Heuristics::Undefined,
        },
        0,
    );
    assert_eq!(o.reply, Ok(Vote::Ack));
    assert_eq!(o.reply_ring, RingId::new(1, 8));
    assert!(o.actions.is_empty());
}

/// Why the test algorithm has no randomized safety test: it ACKs every
/// membership list, so two partitions of one cluster with different ring
/// ids both hold ACK at once, by design (it is only for testing clients
/// started with `net_test_algorithm_enabled=on`). See
/// `docs/safety-testing.md`.
#[test]
fn two_rings_both_get_ack_by_design() {
    let mut c = Cluster::new(AlgorithmKind::Test, TieBreaker::Lowest);
    let config = vec![NodeInfo::new(1), NodeInfo::new(2)];
    for (node, ring) in [(1, RingId::new(1, 8)), (2, RingId::new(2, 8))] {
        c.join(
            node,
            AlgorithmKind::Test,
            TieBreaker::Lowest,
            ring,
            8000,
            false,
            0,
        )
        .unwrap();
        let o = c.handle(
            node,
            Event::ConfigList {
                nodes: config.clone(),
                initial: true,
                config_version: None,
            },
            0,
        );
        assert_eq!(o.reply, Ok(Vote::NoChange));
        // A split: each node reports a membership of itself alone.
        let o = c.handle(
            node,
            Event::Membership {
                ring,
                nodes: vec![NodeInfo::new(node)],
                heuristics: Heuristics::Undefined,
            },
            0,
        );
        assert_eq!((o.reply, o.reply_ring), (Ok(Vote::Ack), ring));
    }
    // Both clients are still connected, in different rings, with ACK.
    assert_eq!(c.client(1).map(|i| i.ring), Some(RingId::new(1, 8)));
    assert_eq!(c.client(2).map(|i| i.ring), Some(RingId::new(2, 8)));
}
