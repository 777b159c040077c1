//! PLACEHOLDER — being written; replaced before anything lands.

use crate::{Action, AlgoError, Algorithm, AlgorithmKind, Ctx, Event, NodeId, Vote};

#[derive(Debug, Default)]
pub struct TwoNodeLms;

impl Algorithm for TwoNodeLms {
    fn kind(&self) -> AlgorithmKind {
        AlgorithmKind::TwoNodeLms
    }

    fn on_event(
        &mut self,
        _: &Ctx<'_>,
        _: NodeId,
        _: &Event,
        _: &mut Vec<Action>,
    ) -> Result<Vote, AlgoError> {
        Err(AlgoError::Internal)
    }

    fn on_leave(&mut self, _: &Ctx<'_>, _: NodeId, _: bool, _: &mut Vec<Action>) {}
}
