//! Fuzz harness of the decision algorithms. The first byte picks a mode, the
//! rest of the input drives it:
//!
//! - 0, 1, 2: one schedule of the randomized safety simulator of ffsplit,
//!   lms or 2nodelms (`qnetd_algorithms::fuzzing`, the simulators of
//!   `docs/safety-testing.md`) with every random choice taken from the input:
//!   the invariant "no two partitions hold ACK at once" is checked after
//!   every step and delivery, then liveness after settling;
//! - 3: raw event sequences on a [`Cluster`] of any algorithm (`test`
//!   included) and tie-breaker: joins (also refused ones), every event type
//!   with arbitrary node lists and ring ids, timers (only armed ones, as the
//!   server fires them), leaves, option changes. Asserted: no panic; actions
//!   address current clients only; a VOTE_INFO goes only to a client whose
//!   config and membership lists the cluster has; ffsplit and test never
//!   use timers; the reply's ring id is the client's ring id; a leave while
//!   the server goes down sends no vote; the cluster's client set is what
//!   the joins and leaves say.

use std::collections::BTreeSet;

use qnetd_algorithms::{
    Action, AlgorithmKind, Cluster, Event, Heuristics, NodeId, NodeInfo, NodeState, RingId,
    TieBreaker,
};

use crate::input::Input;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, script)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => qnetd_algorithms::fuzzing::ffsplit_schedule(script, false),
        1 => qnetd_algorithms::fuzzing::lms_schedule(script, false),
        2 => qnetd_algorithms::fuzzing::two_node_lms_schedule(script, false),
        _ => raw_events(script),
    }
}

/// Node ids: mostly small, sometimes at the edges of the u32 range.
fn node_id(input: &mut Input<'_>) -> NodeId {
    match input.u8() % 16 {
        13 => 0,
        14 => u32::MAX,
        15 => 0x8000_0000,
        n => u32::from(n % 6) + 1,
    }
}

fn nodes(input: &mut Input<'_>) -> Vec<NodeInfo> {
    let mask = input.u8();
    let mut list: Vec<NodeInfo> = (0..6u32)
        .filter(|k| mask & (1 << k) != 0)
        .map(|k| NodeInfo::new(k + 1))
        .collect();
    if mask & 0x40 != 0 {
        // A duplicate, an odd id, a data center and a state.
        list.push(NodeInfo {
            node_id: node_id(input),
            data_center_id: u32::from(input.u8()),
            state: NodeState::from_u8(input.u8() % 4),
        });
    }
    if mask & 0x80 != 0 {
        list.reverse();
    }
    list
}

fn ring(input: &mut Input<'_>) -> RingId {
    let b = input.u8();
    RingId::new(u32::from(b >> 5) + 1, u64::from(b & 0x1f))
}

fn heuristics(input: &mut Input<'_>) -> Heuristics {
    match input.u8() % 3 {
        0 => Heuristics::Undefined,
        1 => Heuristics::Pass,
        _ => Heuristics::Fail,
    }
}

fn kind(b: u8) -> AlgorithmKind {
    AlgorithmKind::ALL[usize::from(b) % AlgorithmKind::ALL.len()]
}

fn tie_breaker(input: &mut Input<'_>) -> TieBreaker {
    match input.u8() % 4 {
        0 => TieBreaker::Lowest,
        1 => TieBreaker::Highest,
        _ => TieBreaker::NodeId(node_id(input)),
    }
}

struct Raw {
    cluster: Cluster,
    /// Clients whose timer is armed.
    armed: BTreeSet<NodeId>,
    /// Seqs of VOTE_INFOs sent, to acknowledge.
    sent_seqs: Vec<(NodeId, u32)>,
    now_ms: u64,
}

impl Raw {
    /// Checks the actions of one call and records timers and VOTE_INFOs.
    fn actions(&mut self, actions: &[Action], uses_timers: bool) {
        for a in actions {
            match *a {
                Action::SendVoteInfo { node, seq, .. } => {
                    let client = self
                        .cluster
                        .client(node)
                        .unwrap_or_else(|| panic!("VOTE_INFO to non-client {node}"));
                    assert!(
                        client.config.is_some() && client.membership.is_some(),
                        "VOTE_INFO to node {node} before its lists"
                    );
                    self.sent_seqs.push((node, seq));
                    if self.sent_seqs.len() > 64 {
                        self.sent_seqs.remove(0);
                    }
                }
                Action::ArmTimer { node, .. } => {
                    assert!(uses_timers, "timer armed by {:?}", self.cluster.algorithm());
                    assert!(self.cluster.client(node).is_some(), "timer of non-client");
                    self.armed.insert(node);
                }
                Action::CancelTimer { node } => {
                    self.armed.remove(&node);
                }
            }
        }
    }
}

/// Mode 3: raw event sequences on one cluster.
fn raw_events(script: &[u8]) {
    let mut input = Input::new(script);
    let first = kind(input.u8());
    let tb = tie_breaker(&mut input);
    let mut raw = Raw {
        cluster: Cluster::new(first, tb),
        armed: BTreeSet::new(),
        sent_seqs: Vec::new(),
        now_ms: 0,
    };
    let mut members: BTreeSet<NodeId> = BTreeSet::new();
    let mut ops = 0;
    while !input.is_empty() && ops < 1000 {
        ops += 1;
        raw.now_ms += u64::from(input.u8());
        let op = input.u8();
        let node = node_id(&mut input);
        let algorithm = raw.cluster.algorithm();
        let uses_timers = matches!(algorithm, AlgorithmKind::Lms | AlgorithmKind::TwoNodeLms);
        match op % 16 {
            0 | 1 => {
                // Mostly the cluster's algorithm and tie-breaker.
                let (k, t) = if op & 0x80 != 0 {
                    (kind(input.u8()), tie_breaker(&mut input))
                } else {
                    (algorithm, raw.cluster.tie_breaker())
                };
                let r = ring(&mut input);
                let kap = input.bool();
                let expected = raw.cluster.check_join(node, k, t);
                let joined = raw.cluster.join(node, k, t, r, 8000, kap, raw.now_ms);
                assert_eq!(joined, expected, "join disagrees with check_join");
                if joined.is_ok() {
                    members.insert(node);
                    assert_eq!(raw.cluster.algorithm(), k);
                }
            }
            2 => {
                let going_down = op & 0x80 != 0;
                let actions = raw.cluster.leave(node, going_down, raw.now_ms);
                members.remove(&node);
                raw.armed.remove(&node);
                assert!(raw.cluster.client(node).is_none(), "left node still listed");
                if going_down {
                    assert!(
                        !actions
                            .iter()
                            .any(|a| matches!(a, Action::SendVoteInfo { .. })),
                        "votes sent while the server goes down"
                    );
                }
                raw.actions(&actions, uses_timers);
            }
            3 => raw.cluster.set_kap(node, input.bool()),
            4 => raw.cluster.set_heartbeat(node, input.u32()),
            _ => {
                let event = match op % 16 {
                    5 | 6 => Event::ConfigList {
                        nodes: nodes(&mut input),
                        initial: op & 0x80 == 0,
                        config_version: (op & 0x40 != 0).then_some(u64::from(input.u8())),
                    },
                    7..=9 => Event::Membership {
                        ring: ring(&mut input),
                        nodes: nodes(&mut input),
                        heuristics: heuristics(&mut input),
                    },
                    10 => Event::Quorum {
                        quorate: input.bool(),
                        nodes: nodes(&mut input),
                    },
                    11 => Event::HeuristicsChange {
                        heuristics: heuristics(&mut input),
                    },
                    12 => Event::AskForVote,
                    13 | 14 => {
                        let pick = input.below(raw.sent_seqs.len() + 1);
                        let seq = match raw.sent_seqs.get(pick) {
                            Some(&(_, seq)) if op & 0x80 == 0 => seq,
                            _ => input.u32(),
                        };
                        Event::VoteInfoReply { seq }
                    }
                    _ => {
                        // The server fires only armed timers.
                        if !raw.armed.remove(&node) {
                            continue;
                        }
                        Event::Timer
                    }
                };
                let outcome = raw.cluster.handle(node, event, raw.now_ms);
                match raw.cluster.client(node) {
                    Some(c) => assert_eq!(outcome.reply_ring, c.ring, "reply ring"),
                    None => assert!(outcome.reply.is_err(), "reply to a non-client"),
                }
                raw.actions(&outcome.actions, uses_timers);
            }
        }
        let listed: BTreeSet<NodeId> = raw.cluster.clients().keys().copied().collect();
        assert_eq!(listed, members, "cluster clients");
    }
    let all: Vec<NodeId> = members.iter().copied().collect();
    let uses_timers = matches!(
        raw.cluster.algorithm(),
        AlgorithmKind::Lms | AlgorithmKind::TwoNodeLms
    );
    for (i, node) in all.iter().enumerate() {
        let actions = raw.cluster.leave(*node, false, raw.now_ms);
        members.remove(node);
        raw.actions(&actions, uses_timers);
        assert_eq!(raw.cluster.len(), all.len() - i - 1);
    }
    assert!(raw.cluster.is_empty());
}
