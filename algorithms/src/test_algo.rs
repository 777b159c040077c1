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
