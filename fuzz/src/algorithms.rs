//! Fuzz harness of the decision algorithms. The first byte picks a mode
//! (modulo 7), the rest of the input drives it:
//!
//! - 0, 1, 2: one schedule of the randomized safety simulator of ffsplit,
//!   lms or 2nodelms (`qnetd_algorithms::fuzzing`, the simulators of
//!   `docs/safety-testing.md`) with every random choice taken from the input:
//!   the invariant "no two partitions hold ACK at once" is checked after
//!   every step and delivery, then liveness after settling;
//! - 4, 5, 6: the same with server restarts (the server model remembers
//!   each decision's holder and seeds the next cluster with
//!   `Cluster::restore`; clients of lms and 2nodelms keep their vote over
//!   a restart);
//! - 3: raw event sequences on a [`Cluster`] of any algorithm (`test`
//!   included) and tie-breaker: joins (also refused ones), every event type
//!   with arbitrary node lists and ring ids, timers (only armed ones, as the
//!   server fires them), leaves, option changes, server restarts and
//!   `restore` calls with arbitrary members and hold times, driven through
//!   the server
//!   model of the simulations (`qnetd_algorithms::fuzzing::Server`), which
//!   checks every action: no panic; actions address current clients only; a
//!   VOTE_INFO goes only to a client whose config and membership lists the
//!   cluster has; timers only from lms and 2nodelms; the reply's ring id is
//!   the client's ring id; a leave while the server goes down sends no vote;
//!   join agrees with check_join. Asserted here: the cluster's client set is
//!   what the joins and leaves say.

use std::collections::BTreeSet;

use qnetd_algorithms::fuzzing::Server;
use qnetd_algorithms::{
    Action, AlgorithmKind, Event, Heuristics, NodeId, NodeInfo, NodeState, RestoredVote, RingId,
    TieBreaker,
};

use crate::input::Input;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, script)) = data.split_first() else {
        return;
    };
    match mode % 7 {
        0 => qnetd_algorithms::fuzzing::ffsplit_schedule(script, false),
        1 => qnetd_algorithms::fuzzing::lms_schedule(script, false),
        2 => qnetd_algorithms::fuzzing::two_node_lms_schedule(script, false),
        3 => raw_events(script),
        4 => qnetd_algorithms::fuzzing::ffsplit_schedule_with_restarts(script, false),
        5 => qnetd_algorithms::fuzzing::lms_schedule_with_restarts(script, false),
        _ => qnetd_algorithms::fuzzing::two_node_lms_schedule_with_restarts(script, false),
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

/// Records the seqs of the VOTE_INFOs sent, for replies to pick from.
fn record_seqs(sent_seqs: &mut Vec<u32>, actions: &[Action]) {
    for a in actions {
        if let Action::SendVoteInfo { seq, .. } = *a {
            sent_seqs.push(seq);
            if sent_seqs.len() > 64 {
                sent_seqs.remove(0);
            }
        }
    }
}

/// Mode 3: raw event sequences on one cluster.
fn raw_events(script: &[u8]) {
    let mut input = Input::new(script);
    let first = kind(input.u8());
    let tb = tie_breaker(&mut input);
    let mut server = Server::new(first, tb);
    // Seqs of VOTE_INFOs sent, to acknowledge.
    let mut sent_seqs: Vec<u32> = Vec::new();
    let mut members: BTreeSet<NodeId> = BTreeSet::new();
    let mut ops = 0;
    while !input.is_empty() && ops < 1000 {
        ops += 1;
        server.advance(u64::from(input.u8()));
        let op = input.u8();
        let node = node_id(&mut input);
        let algorithm = server.cluster().algorithm();
        match op % 16 {
            0 | 1 => {
                // Mostly the cluster's algorithm and tie-breaker.
                let (k, t) = if op & 0x80 != 0 {
                    (kind(input.u8()), tie_breaker(&mut input))
                } else {
                    (algorithm, server.cluster().tie_breaker())
                };
                let r = ring(&mut input);
                let kap = input.bool();
                if server.join(node, k, t, r, kap).is_ok() {
                    members.insert(node);
                    assert_eq!(server.cluster().algorithm(), k);
                }
            }
            2 => {
                let going_down = op & 0x80 != 0;
                let actions = server
                    .leave(node, going_down)
                    .unwrap_or_else(|e| panic!("{e}"));
                members.remove(&node);
                record_seqs(&mut sent_seqs, &actions);
            }
            3 => server.set_kap(node, input.bool()),
            4 if op & 0xc0 == 0x40 => {
                // The server restarts: every client is gone, the vote
                // memory stays (the next first client seeds the cluster).
                server.restart();
                members.clear();
            }
            4 if op & 0xc0 == 0x80 => {
                // A remembered holder, as the server seeds it.
                let restored = RestoredVote {
                    members: nodes(&mut input).iter().map(|n| n.node_id).collect(),
                    hold_until_ms: server.now_ms() + u64::from(input.u8()) * 100,
                };
                server.restore(&restored);
            }
            4 => server.set_heartbeat(node, input.u32()),
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
                        let pick = input.below(sent_seqs.len() + 1);
                        let seq = match sent_seqs.get(pick) {
                            Some(&seq) if op & 0x80 == 0 => seq,
                            _ => input.u32(),
                        };
                        Event::VoteInfoReply { seq }
                    }
                    _ => {
                        // The server fires only armed timers.
                        let fired = server.fire_timer(node).unwrap_or_else(|e| panic!("{e}"));
                        if let Some(outcome) = fired {
                            record_seqs(&mut sent_seqs, &outcome.actions);
                        }
                        continue;
                    }
                };
                let outcome = server.handle(node, event).unwrap_or_else(|e| panic!("{e}"));
                record_seqs(&mut sent_seqs, &outcome.actions);
            }
        }
        let listed: BTreeSet<NodeId> = server.cluster().clients().keys().copied().collect();
        assert_eq!(listed, members, "cluster clients");
    }
    let all: Vec<NodeId> = members.iter().copied().collect();
    for (i, node) in all.iter().enumerate() {
        server.leave(*node, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server.cluster().len(), all.len() - i - 1);
    }
    assert!(server.cluster().is_empty());
}
