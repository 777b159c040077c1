//! Small constructors shared by the algorithms' unit tests.

use crate::{Action, NodeId, NodeInfo, RingId, Vote};

/// A node list of plain node ids.
pub fn nl(ids: &[NodeId]) -> Vec<NodeInfo> {
    ids.iter().map(|&id| NodeInfo::new(id)).collect()
}

/// A ring id.
pub fn r(node: NodeId, seq: u64) -> RingId {
    RingId::new(node, seq)
}

/// The action that sends a VOTE_INFO.
pub fn vi(node: NodeId, seq: u32, vote: Vote, ring: RingId) -> Action {
    Action::SendVoteInfo {
        node,
        seq,
        vote,
        ring,
    }
}
