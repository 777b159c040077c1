//! The "test" algorithm (code 0): every membership list and every
//! ASK_FOR_VOTE gets ACK, everything else NO_CHANGE. It keeps no state and can
//! give the vote to several partitions at once; the client only uses it when
//! started with `net_test_algorithm_enabled=on`.

use crate::{Action, AlgoError, Algorithm, AlgorithmKind, Ctx, Event, NodeId, Vote};

#[derive(Debug, Default)]
pub struct TestAlgorithm;

impl Algorithm for TestAlgorithm {
    fn kind(&self) -> AlgorithmKind {
        AlgorithmKind::Test
    }

    fn on_event(
        &mut self,
        _ctx: &Ctx<'_>,
        _node: NodeId,
        event: &Event,
        _actions: &mut Vec<Action>,
    ) -> Result<Vote, AlgoError> {
        Ok(match event {
            Event::Membership { .. } | Event::AskForVote => Vote::Ack,
            _ => Vote::NoChange,
        })
    }

    fn on_leave(&mut self, _: &Ctx<'_>, _: NodeId, _: bool, _: &mut Vec<Action>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cluster, Heuristics, NodeInfo, RingId, TieBreaker};

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
}
