//! Domain types shared by the decision algorithms and the wire codec: node and
//! ring identifiers, votes, tie-breakers, heuristics results and node lists.
//!
//! The numeric values of the enumerations are the ones used on the wire by
//! corosync-qdevice 3.0.x, so the codec can convert them without a table.

use std::fmt;

/// A corosync node id (`nodelist.node.X.nodeid`). 0 is never a valid node.
pub type NodeId = u32;

/// A corosync ring (membership) id: the node that formed the ring and a
/// sequence number. Two ring ids are equal when both fields are equal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingId {
    pub node_id: NodeId,
    pub seq: u64,
}

impl RingId {
    pub const fn new(node_id: NodeId, seq: u64) -> Self {
        RingId { node_id, seq }
    }
}

impl fmt::Display for RingId {
    /// Printed as corosync prints ring ids: `<hex node>.<hex seq>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}", self.node_id, self.seq)
    }
}

/// The vote the arbitrator gives a node (TLV `VOTE`, values 1..=5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Vote {
    Ack = 1,
    Nack = 2,
    AskLater = 3,
    WaitForReply = 4,
    NoChange = 5,
}

impl Vote {
    pub fn from_u8(v: u8) -> Option<Vote> {
        Some(match v {
            1 => Vote::Ack,
            2 => Vote::Nack,
            3 => Vote::AskLater,
            4 => Vote::WaitForReply,
            5 => Vote::NoChange,
            _ => return None,
        })
    }

    /// The text `corosync-qnetd-tool` shows for this vote.
    pub fn display_name(self) -> &'static str {
        match self {
            Vote::Ack => "ACK",
            Vote::Nack => "NACK",
            Vote::AskLater => "Ask later",
            Vote::WaitForReply => "Wait for reply",
            Vote::NoChange => "No change",
        }
    }

    /// Short lower-case name for logs and metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            Vote::Ack => "ack",
            Vote::Nack => "nack",
            Vote::AskLater => "ask_later",
            Vote::WaitForReply => "wait_for_reply",
            Vote::NoChange => "no_change",
        }
    }
}

impl fmt::Display for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Which node's partition wins a 50:50 tie (TLV `TIE_BREAKER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TieBreaker {
    /// The partition holding the lowest configured node id.
    Lowest,
    /// The partition holding the highest configured node id.
    Highest,
    /// The partition holding this node id.
    NodeId(NodeId),
}

impl TieBreaker {
    /// Wire mode byte (1 lowest, 2 highest, 3 node id).
    pub fn mode(self) -> u8 {
        match self {
            TieBreaker::Lowest => 1,
            TieBreaker::Highest => 2,
            TieBreaker::NodeId(_) => 3,
        }
    }

    /// Builds a tie-breaker from its wire form. The node id is only kept for
    /// mode 3, as the reference decoder does.
    pub fn from_wire(mode: u8, node_id: NodeId) -> Option<TieBreaker> {
        Some(match mode {
            1 => TieBreaker::Lowest,
            2 => TieBreaker::Highest,
            3 => TieBreaker::NodeId(node_id),
            _ => return None,
        })
    }

    /// The node id written on the wire (0 unless mode 3).
    pub fn wire_node_id(self) -> NodeId {
        match self {
            TieBreaker::NodeId(n) => n,
            _ => 0,
        }
    }
}

impl fmt::Display for TieBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TieBreaker::Lowest => f.write_str("Node with lowest node ID"),
            TieBreaker::Highest => f.write_str("Node with highest node ID"),
            TieBreaker::NodeId(n) => write!(f, "Node with node ID {n}"),
        }
    }
}

/// Result of a node's heuristics. `Undefined` means heuristics are disabled
/// (the TLV is absent on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Heuristics {
    #[default]
    Undefined,
    Pass,
    Fail,
}

impl Heuristics {
    /// Wire value of a defined result (1 pass, 2 fail); `None` for undefined.
    pub fn to_wire(self) -> Option<u8> {
        match self {
            Heuristics::Undefined => None,
            Heuristics::Pass => Some(1),
            Heuristics::Fail => Some(2),
        }
    }

    pub fn from_wire(v: u8) -> Option<Heuristics> {
        match v {
            1 => Some(Heuristics::Pass),
            2 => Some(Heuristics::Fail),
            _ => None,
        }
    }

    /// Rank used when comparing two results: pass > undefined > fail.
    pub fn rank(self) -> i8 {
        match self {
            Heuristics::Pass => 1,
            Heuristics::Undefined => 0,
            Heuristics::Fail => -1,
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Heuristics::Undefined => "Undefined",
            Heuristics::Pass => "Pass",
            Heuristics::Fail => "Fail",
        }
    }
}

/// The decision algorithm a cluster uses (TLV `DECISION_ALGORITHM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum AlgorithmKind {
    Test = 0,
    Ffsplit = 1,
    TwoNodeLms = 2,
    Lms = 3,
}

impl AlgorithmKind {
    /// Every algorithm, in the order the server advertises them.
    pub const ALL: [AlgorithmKind; 4] = [
        AlgorithmKind::Test,
        AlgorithmKind::Ffsplit,
        AlgorithmKind::TwoNodeLms,
        AlgorithmKind::Lms,
    ];

    pub fn from_u16(v: u16) -> Option<AlgorithmKind> {
        Some(match v {
            0 => AlgorithmKind::Test,
            1 => AlgorithmKind::Ffsplit,
            2 => AlgorithmKind::TwoNodeLms,
            3 => AlgorithmKind::Lms,
            _ => return None,
        })
    }

    /// The name `corosync-qnetd-tool` shows.
    pub fn display_name(self) -> &'static str {
        match self {
            AlgorithmKind::Test => "Test",
            AlgorithmKind::Ffsplit => "Fifty-Fifty split",
            AlgorithmKind::TwoNodeLms => "2 Node LMS",
            AlgorithmKind::Lms => "LMS",
        }
    }

    /// The name used in corosync.conf (`quorum.device.net.algorithm`), logs
    /// and metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            AlgorithmKind::Test => "test",
            AlgorithmKind::Ffsplit => "ffsplit",
            AlgorithmKind::TwoNodeLms => "2nodelms",
            AlgorithmKind::Lms => "lms",
        }
    }
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// State of a node in a votequorum (quorum) node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    Member = 1,
    Dead = 2,
    Leaving = 3,
}

impl NodeState {
    pub fn from_u8(v: u8) -> Option<NodeState> {
        Some(match v {
            1 => NodeState::Member,
            2 => NodeState::Dead,
            3 => NodeState::Leaving,
            _ => return None,
        })
    }
}

/// One entry of a node list (TLV `NODE_INFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    pub node_id: NodeId,
    /// 0 when not configured.
    pub data_center_id: u32,
    pub state: Option<NodeState>,
}

impl NodeInfo {
    pub const fn new(node_id: NodeId) -> Self {
        NodeInfo {
            node_id,
            data_center_id: 0,
            state: None,
        }
    }
}

/// Whether `id` appears in `list`.
pub fn contains_node(list: &[NodeInfo], id: NodeId) -> bool {
    list.iter().any(|n| n.node_id == id)
}

/// Whether two node lists hold the same set of node ids (order and
/// duplicates ignored).
pub fn same_node_set(a: &[NodeInfo], b: &[NodeInfo]) -> bool {
    a.iter().all(|n| contains_node(b, n.node_id)) && b.iter().all(|n| contains_node(a, n.node_id))
}
