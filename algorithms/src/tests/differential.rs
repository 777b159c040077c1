//! Differential tests of the O(n log n) decisions (`ffsplit/decision.rs`,
//! `engine/decision.rs`) against the previous pairwise implementations,
//! kept as oracles in `crate::sim::oracle`. In test builds every decision
//! an algorithm takes is computed both ways and compared, bit for bit
//! (chosen partition, reason, scores, unsettled clients, excluded rings,
//! granted or not, ghosts left); these tests make sure many decisions are
//! compared: on the randomized safety schedules, and on random event
//! sequences with lists the schedules never send (duplicates, any order,
//! lists that differ between clients, that lack the sender, up to 64
//! nodes).

use crate::sim::oracle::checks;
use crate::sim::server::Server;
use crate::sim::Rng;
use crate::{AlgorithmKind, Event, Heuristics, NodeId, NodeInfo, RingId, TieBreaker};

/// Runs `f` and returns how many decisions it had checked by the oracles.
fn checked(f: impl FnOnce()) -> u64 {
    let before = checks();
    f();
    checks() - before
}

#[test]
fn ffsplit_matches_the_oracle_on_random_schedules() {
    let n = checked(|| {
        for seed in 1..=300 {
            crate::sim::ffsplit::run_schedule(Rng::new(seed), &format!("seed {seed}"), false);
        }
    });
    assert!(n > 5_000, "only {n} decisions compared");
}

#[test]
fn lms_and_2nodelms_match_the_oracle_on_random_schedules() {
    let n = checked(|| {
        for seed in 1..=300 {
            let lms = [2, 3, 4, 5, 6, 7, 8];
            crate::sim::lms::run_one(AlgorithmKind::Lms, seed, false, 60, &lms, false);
            crate::sim::lms::run_one(AlgorithmKind::TwoNodeLms, seed, false, 60, &[2], true);
        }
    });
    assert!(n > 10_000, "only {n} decisions compared");
}

/// A random list over `ids`: any subset, in any order, sometimes with a
/// duplicate, sometimes with `me` left out.
fn random_list(rng: &mut Rng, ids: &[NodeId], me: NodeId) -> Vec<NodeInfo> {
    let mut list: Vec<NodeInfo> = ids
        .iter()
        .filter(|&&id| id == me || rng.chance(60))
        .map(|&id| NodeInfo::new(id))
        .collect();
    if rng.chance(20) && !list.is_empty() {
        let dup = list[rng.below(list.len())];
        list.insert(rng.below(list.len() + 1), dup);
    }
    if rng.chance(5) {
        list.retain(|n| n.node_id != me);
    }
    for i in (1..list.len()).rev() {
        list.swap(i, rng.below(i + 1));
    }
    list
}

fn random_heuristics(rng: &mut Rng) -> Heuristics {
    [Heuristics::Undefined, Heuristics::Pass, Heuristics::Fail][rng.below(3)]
}

/// One random event sequence on a cluster of `kind` with up to `max_nodes`
/// nodes, driven through the server model. Events may be refused (lists
/// without the sender, 2nodelms configs without two nodes); actions are
/// checked by the server model, decisions by the oracles.
fn random_sequence(kind: AlgorithmKind, seed: u64, max_nodes: usize) {
    let mut rng = Rng::new(seed);
    let count = 2 + rng.below(max_nodes - 1);
    let ids: Vec<NodeId> = (1..=count as NodeId).collect();
    let tb = match rng.below(3) {
        0 => TieBreaker::Lowest,
        1 => TieBreaker::Highest,
        _ => TieBreaker::NodeId(1 + rng.below(count + 1) as NodeId),
    };
    let mut server = Server::new(kind, tb);
    // A few shared lists, so that clients often agree.
    let common: Vec<Vec<NodeInfo>> = (0..3).map(|_| random_list(&mut rng, &ids, 1)).collect();
    let mut seqs: Vec<(NodeId, u32)> = Vec::new();
    for _ in 0..200 {
        let node = ids[rng.below(ids.len())];
        let joined = server.cluster().client(node).is_some();
        let event = match rng.below(20) {
            0..=2 if !joined => {
                let ring = RingId::new(1 + rng.below(count) as NodeId, 1 + rng.below(4) as u64);
                let _ = server.join(node, kind, tb, ring, rng.chance(70));
                continue;
            }
            3 if joined => {
                server.leave(node, false).unwrap_or_else(|e| panic!("{e}"));
                continue;
            }
            4..=6 => {
                let nodes = if rng.chance(70) {
                    ids.iter().map(|&id| NodeInfo::new(id)).collect()
                } else {
                    random_list(&mut rng, &ids, node)
                };
                Event::ConfigList {
                    nodes,
                    initial: rng.chance(50),
                    config_version: None,
                }
            }
            7..=11 => {
                let nodes = if rng.chance(60) {
                    let mut l = common[rng.below(common.len())].clone();
                    if !l.iter().any(|n| n.node_id == node) {
                        l.push(NodeInfo::new(node));
                    }
                    l
                } else {
                    random_list(&mut rng, &ids, node)
                };
                let lowest = nodes.iter().map(|n| n.node_id).min().unwrap_or(node);
                Event::Membership {
                    ring: RingId::new(lowest, 1 + rng.below(4) as u64),
                    nodes,
                    heuristics: random_heuristics(&mut rng),
                }
            }
            12 => Event::Quorum {
                quorate: rng.chance(50),
                nodes: random_list(&mut rng, &ids, node),
            },
            13 => Event::HeuristicsChange {
                heuristics: random_heuristics(&mut rng),
            },
            14 => Event::AskForVote,
            15..=17 => match seqs.iter().position(|&(n, _)| n == node) {
                Some(i) => Event::VoteInfoReply {
                    seq: seqs.remove(i).1,
                },
                None => continue,
            },
            18 => {
                if rng.chance(50) {
                    server.set_kap(node, rng.chance(50));
                } else {
                    server.set_heartbeat(node, 1000 + rng.below(10_000) as u32);
                }
                continue;
            }
            _ => {
                let fired = server.fire_timer(node).unwrap_or_else(|e| panic!("{e}"));
                for a in fired.iter().flat_map(|o| &o.actions) {
                    if let crate::Action::SendVoteInfo { node, seq, .. } = *a {
                        seqs.push((node, seq));
                    }
                }
                continue;
            }
        };
        let outcome = server.handle(node, event).unwrap_or_else(|e| panic!("{e}"));
        for a in &outcome.actions {
            if let crate::Action::SendVoteInfo { node, seq, .. } = *a {
                seqs.push((node, seq));
            }
        }
    }
}

#[test]
fn ffsplit_matches_the_oracle_on_random_lists() {
    let n = checked(|| {
        for seed in 1..=400 {
            random_sequence(
                AlgorithmKind::Ffsplit,
                seed,
                if seed % 10 == 0 { 64 } else { 8 },
            );
        }
    });
    assert!(n > 5_000, "only {n} decisions compared");
}

#[test]
fn lms_and_2nodelms_match_the_oracle_on_random_lists() {
    let n = checked(|| {
        for seed in 1..=400 {
            random_sequence(
                AlgorithmKind::Lms,
                seed,
                if seed % 10 == 0 { 64 } else { 8 },
            );
            random_sequence(AlgorithmKind::TwoNodeLms, seed, 2);
        }
    });
    assert!(n > 10_000, "only {n} decisions compared");
}
