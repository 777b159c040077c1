//! Tests of the decision records the algorithms report for the decision log.

use crate::tests::util::{nl, r};
use crate::{
    AlgorithmKind, Cluster, DecisionRecord, Event, Heuristics, NodeId, RingId, TieBreaker,
};

fn cluster(kind: AlgorithmKind, tb: TieBreaker, ids: &[NodeId]) -> Cluster {
    let mut c = Cluster::new(kind, tb);
    for &id in ids {
        c.join(id, kind, tb, r(1, 4), 8000, true, 0).unwrap();
        let o = c.handle(
            id,
            Event::ConfigList {
                nodes: nl(ids),
                initial: true,
                config_version: None,
            },
            0,
        );
        assert!(o.reply.is_ok());
    }
    for &id in ids {
        c.handle(id, membership(r(1, 8), ids, Heuristics::Undefined), 0);
    }
    c
}

fn membership(ring: RingId, ids: &[NodeId], h: Heuristics) -> Event {
    Event::Membership {
        ring,
        nodes: nl(ids),
        heuristics: h,
    }
}

/// Reports each group's membership in turn; returns the last decision.
fn split(c: &mut Cluster, groups: &[(&[NodeId], Heuristics)]) -> DecisionRecord {
    let mut last = None;
    for (g, h) in groups {
        let ring = r(g[0], 12);
        for &id in *g {
            let o = c.handle(id, membership(ring, g, *h), 0);
            if o.decision.is_some() {
                last = o.decision;
            }
        }
    }
    last.expect("a decision")
}

#[test]
fn ffsplit_records_the_tie_breaker_for_a_50_50_split() {
    let mut c = cluster(AlgorithmKind::Ffsplit, TieBreaker::Lowest, &[1, 2]);
    let d = split(
        &mut c,
        &[(&[1], Heuristics::Undefined), (&[2], Heuristics::Undefined)],
    );
    assert_eq!(d.winner, Some(r(1, 12)));
    // KAP cannot decide: both nodes were in the previous quorate partition.
    assert_eq!(d.reason, "tie_breaker");
    assert!(d.pending, "node 2 must acknowledge its NACK first");
    assert_eq!(d.partitions.len(), 2);
    assert!(d.partitions.iter().all(|p| p.score == 1));
}

#[test]
fn ffsplit_records_heuristics_and_majority() {
    let mut c = cluster(AlgorithmKind::Ffsplit, TieBreaker::Lowest, &[1, 2, 3, 4]);
    let d = split(
        &mut c,
        &[(&[1, 2], Heuristics::Fail), (&[3, 4], Heuristics::Pass)],
    );
    assert_eq!(d.winner, Some(r(3, 12)));
    assert_eq!(d.reason, "heuristics");

    let mut c = cluster(AlgorithmKind::Ffsplit, TieBreaker::Lowest, &[1, 2, 3, 4]);
    let d = split(
        &mut c,
        &[
            (&[1, 2, 3], Heuristics::Undefined),
            (&[4], Heuristics::Undefined),
        ],
    );
    assert_eq!(d.winner, Some(r(1, 12)));
    assert_eq!(d.reason, "majority");
}

#[test]
fn lms_records_score_and_tie_breaker() {
    let mut c = cluster(AlgorithmKind::Lms, TieBreaker::Lowest, &[1, 2, 3]);
    let d = split(
        &mut c,
        &[
            (&[1], Heuristics::Undefined),
            (&[2, 3], Heuristics::Undefined),
        ],
    );
    assert_eq!(d.winner, Some(r(2, 12)));
    // lms scores count nodes and heuristics together: 2 against 1.
    assert_eq!(d.reason, "score");

    let mut c = cluster(AlgorithmKind::Lms, TieBreaker::Lowest, &[1, 2, 3]);
    let d = split(
        &mut c,
        &[
            (&[1], Heuristics::Undefined),
            (&[2], Heuristics::Undefined),
            (&[3], Heuristics::Undefined),
        ],
    );
    assert_eq!(d.winner, Some(r(1, 12)));
    assert_eq!(d.reason, "tie_breaker");
    assert_eq!(d.partitions.len(), 3);
}
