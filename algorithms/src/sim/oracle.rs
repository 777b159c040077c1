//! Test oracles: the previous implementations of decisions that were
//! rewritten for speed, kept unchanged so that every decision the tests,
//! the randomized schedules and the fuzz target make is checked against
//! them, bit for bit.
//!
//! * ffsplit: the pairwise stability test, partition statistics and
//!   partition selection (O(n⁴) for n clients with n-entry lists), as they
//!   were before `ffsplit/decision.rs` interned the lists;
//! * the lms/2nodelms engine: the pairwise ring settling, partitions,
//!   ranking, safety gate and ghost pruning (O(n³)), as they were before
//!   `engine/decision.rs` interned the lists.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::{self, Decision, Ghost, Tracked};
use crate::ffsplit::{Selection, View};
use crate::nodeset::NodeSets;
use crate::{
    contains_node, heuristics_score, same_node_set, Ctx, DecisionRecord, Heuristics, NodeId,
    NodeInfo, PartitionScore, RingId, TieBreaker,
};

thread_local! {
    static CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Decisions checked against an oracle so far on this thread.
#[cfg(test)]
pub(crate) fn checks() -> u64 {
    CHECKS.with(|c| c.get())
}

fn count() {
    CHECKS.with(|c| c.set(c.get() + 1));
}

/// One client's view as the previous ffsplit decision saw it.
#[derive(Clone, Copy, Debug)]
struct OldView<'a> {
    node: NodeId,
    ring: RingId,
    config: &'a [NodeInfo],
    membership: &'a [NodeInfo],
    heuristics: Heuristics,
}

impl OldView<'_> {
    fn is_ready(&self) -> bool {
        !self.config.is_empty() && !self.membership.is_empty()
    }
}

/// Checks a decision of ffsplit against the previous implementation, and
/// that the interned lists of every participant are its lists; panics on
/// any difference.
pub(crate) fn check_ffsplit(
    ctx: &Ctx<'_>,
    views: &[View<'_>],
    sets: &NodeSets,
    quorate: &[NodeId],
    new: Option<&Selection<'_, '_>>,
) {
    count();
    for v in views {
        for (list, set) in [(v.config, v.config_set), (v.membership, v.membership_set)] {
            let mut ids: Vec<NodeId> = list.iter().map(|n| n.node_id).collect();
            ids.sort_unstable();
            let interned = set.map_or(&[][..], |s| sets.nodes(s));
            assert_eq!(interned, &ids[..], "node {}: interned list differs", v.node);
        }
    }
    let old_views: Vec<OldView<'_>> = views
        .iter()
        .map(|v| OldView {
            node: v.node,
            ring: v.ring,
            config: v.config,
            membership: v.membership,
            heuristics: v.heuristics,
        })
        .collect();
    let quorate: Vec<NodeInfo> = quorate.iter().map(|&n| NodeInfo::new(n)).collect();
    let old = ffsplit_decision(ctx, &old_views, &quorate);
    let new = new.map(|s| (s.best.map(|b| b.node), s.reason, s.partitions.clone()));
    assert_eq!(new, old, "ffsplit decision differs from the oracle");
}

/// The previous ffsplit decision: `None` if membership is not stable, else
/// the chosen view's node, the reason and the decision record's partitions.
fn ffsplit_decision(
    ctx: &Ctx<'_>,
    views: &[OldView<'_>],
    quorate_partition: &[NodeInfo],
) -> Option<(Option<NodeId>, &'static str, Vec<PartitionScore>)> {
    if !is_membership_stable(views) {
        return None;
    }
    let (best, reason) = select_partition(ctx, views, quorate_partition);
    let mut partitions: Vec<PartitionScore> = Vec::new();
    for v in views {
        if !partitions.iter().any(|p| p.ring == v.ring) {
            partitions.push(PartitionScore {
                ring: v.ring,
                nodes: v.membership.iter().map(|n| n.node_id).collect(),
                score: partition_stats(ctx, v).1,
            });
        }
    }
    Some((best.map(|b| b.node), reason, partitions))
}

/// Whether every node id of `a` is also in `b`.
fn is_subset(a: &[NodeInfo], b: &[NodeInfo]) -> bool {
    a.iter().all(|n| contains_node(b, n.node_id))
}

/// The stability test (§5.1 step 2), plus the "not ready" rule.
fn is_membership_stable(views: &[OldView<'_>]) -> bool {
    // A client without both lists blocks every decision. This replaces the
    // reference's crash on an empty config list (quirk 1) and guarantees that
    // no VOTE_INFO reaches a client before its lists (quirks 25, 28).
    if views.iter().any(|v| !v.is_ready()) {
        return false;
    }

    // (a) All participating clients have the same config node set. Every
    // ordered pair is checked one way, so both directions get covered.
    for a in views {
        for b in views {
            if a.node != b.node && !is_subset(a.config, b.config) {
                return false;
            }
        }
    }

    // (b) Every participating client listed in another client's membership
    // list (or its own) reports the same ring id and a superset of that list.
    // Clients not connected (or leaving) are ignored.
    for a in views {
        for member in a.membership {
            let Some(b) = views.iter().find(|v| v.node == member.node_id) else {
                continue;
            };
            if a.ring != b.ring || !is_subset(a.membership, b.membership) {
                return false;
            }
        }
    }

    true
}

/// Statistics of the partition represented by `rep` (its membership list):
/// `(active, score)`, where `active` counts the list's entries that have a
/// client in the cluster (a leaving client included, quirk 5) and `score` is
/// `active + pass - fail`.
///
/// As in the reference, only the representative itself is judged by its
/// view's heuristics; every other member uses its *stored* heuristics, even
/// when it is the triggering client.
fn partition_stats(ctx: &Ctx<'_>, rep: &OldView<'_>) -> (i64, i64) {
    let mut active = 0;
    let mut score = 0;
    for member in rep.membership {
        if let Some(info) = ctx.clients.get(&member.node_id) {
            let heuristics = if member.node_id == rep.node {
                rep.heuristics
            } else {
                info.heuristics
            };
            active += 1;
            score += heuristics_score(heuristics);
        }
    }
    (active, score)
}

/// The node whose partition wins a tie, judged from `config` (the compared
/// client's config list). `None` for an empty list (never reached: such a
/// client is not ready).
fn preferred_node(tie_breaker: TieBreaker, config: &[NodeInfo]) -> Option<NodeId> {
    match tie_breaker {
        TieBreaker::Lowest => config.iter().map(|n| n.node_id).min(),
        TieBreaker::Highest => config.iter().map(|n| n.node_id).max(),
        TieBreaker::NodeId(id) => Some(id),
    }
}

/// `CMP(X, B)` of §5.1: whether `x`'s partition beats `best`'s (or the empty
/// candidate when `best` is `None`), and the step that decided it (for the
/// decision log).
fn beats(
    ctx: &Ctx<'_>,
    x: &OldView<'_>,
    best: Option<&OldView<'_>>,
    quorate_partition: &[NodeInfo],
    kap: bool,
) -> (bool, &'static str) {
    // Sizes count list entries, as the reference does.
    let configured = x.config.len();
    let members = x.membership.len();
    let half = configured / 2;

    // Odd clusters never tie; even ones decide on size unless exactly 50:50.
    if configured % 2 == 1 || members != half {
        return (members > half, "majority");
    }

    // 50:50 split. 1-2: heuristics score.
    let (x_active, x_score) = partition_stats(ctx, x);
    let (b_active, b_score) = best.map_or((0, 0), |b| partition_stats(ctx, b));
    if x_score != b_score {
        return (x_score > b_score, "heuristics");
    }
    // 3: more connected clients.
    if x_active != b_active {
        return (x_active > b_active, "connected_nodes");
    }
    // 4: keep the active partition, judged by the two compared clients.
    if let (true, Some(b)) = (kap, best) {
        let x_was_quorate = contains_node(quorate_partition, x.node);
        let b_was_quorate = contains_node(quorate_partition, b.node);
        if x_was_quorate != b_was_quorate {
            return (x_was_quorate, "keep_active_partition");
        }
    }
    // 5: the tie-breaker; `best` is not examined.
    let wins =
        preferred_node(ctx.tie_breaker, x.config).is_some_and(|p| contains_node(x.membership, p));
    (wins, "tie_breaker")
}

/// Partition selection (§5.1 step 3): the view whose membership list is the
/// chosen partition (or `None` if no partition may become quorate), and the
/// step that decided against the last rival partition.
fn select_partition<'v, 'a>(
    ctx: &Ctx<'_>,
    views: &'v [OldView<'a>],
    quorate_partition: &[NodeInfo],
) -> (Option<&'v OldView<'a>>, &'static str) {
    // KAP applies only if every client of the cluster (a leaving one
    // included, it is still listed) enabled it.
    let kap = ctx.clients.values().all(|c| c.kap);
    let mut best: Option<&OldView<'a>> = None;
    let mut reason = "single_partition";
    for x in views {
        let (wins, step) = beats(ctx, x, best, quorate_partition, kap);
        let rival = match best {
            // A member of the current best partition is no rival.
            Some(b) => !same_node_set(b.membership, x.membership),
            None => false,
        };
        if rival || (best.is_none() && !wins) {
            reason = step;
        }
        if wins {
            best = Some(x);
        }
    }
    if best.is_none() {
        reason = "no_partition_eligible";
    }
    (best, reason)
}

/// Checks a decision of the lms/2nodelms engine against the previous
/// implementation: the ghosts left after pruning `before`, and the
/// decision; and that every view's interned list is its list. Panics on
/// any difference.
pub(crate) fn check_engine(
    views: &[engine::View<'_>],
    sets: &NodeSets,
    clients: &BTreeMap<NodeId, Tracked>,
    (before, after, back): (&[Ghost], &[Ghost], &[NodeId]),
    tie_breaker: TieBreaker,
    new: &Decision,
) {
    count();
    for v in views {
        let mut ids: Vec<NodeId> = v.members.iter().map(|n| n.node_id).collect();
        ids.sort_unstable();
        assert_eq!(
            sets.nodes(v.members_set),
            &ids[..],
            "node {}: interned list differs",
            v.node
        );
    }
    let mut ghosts = before.to_vec();
    prune_ghosts(&mut ghosts, views);
    assert_eq!(after, &ghosts[..], "ghost pruning differs from the oracle");
    let returned: Vec<NodeId> = before
        .iter()
        .filter(|g| views.iter().any(|v| v.node == g.node))
        .map(|g| g.node)
        .collect();
    assert_eq!(back, &returned[..], "ghosts back differ from the oracle");
    let old = decide(views, clients, &ghosts, tie_breaker);
    assert_eq!(new, &old, "engine decision differs from the oracle");
}

#[derive(Debug)]
struct Partition {
    ring: RingId,
    clients: Vec<NodeId>,
    members: Vec<NodeId>,
    score: i64,
    all_newcomers: bool,
}

/// Drops ghosts whose ring is known to be over (the previous rule, for
/// ghosts of a known ring), and places or drops remembered holders of
/// unknown ring (the restart rule of `engine::decision::prune_ghosts`,
/// written out naively over the raw lists).
fn prune_ghosts(ghosts: &mut Vec<Ghost>, views: &[engine::View<'_>]) {
    ghosts.retain_mut(|g| {
        let Some(ring) = g.ring else {
            if views.iter().any(|v| v.node == g.node) {
                return false;
            }
            let mut listing: Option<&engine::View<'_>> = None;
            for v in views {
                let newer = listing
                    .is_none_or(|l| (v.ring.seq, v.ring.node_id) > (l.ring.seq, l.ring.node_id));
                if newer && contains_node(v.members, g.node) {
                    listing = Some(v);
                }
            }
            if let Some(v) = listing {
                let mut members: Vec<NodeId> = v.members.iter().map(|n| n.node_id).collect();
                members.sort_unstable();
                members.dedup();
                g.ring = Some(v.ring);
                g.members = members;
                return true;
            }
            return !views.iter().any(|v| g.members.contains(&v.node));
        };
        !views.iter().any(|v| {
            v.node == g.node
                || (v.ring != ring
                    && v.ring.seq > ring.seq
                    && (g.members.contains(&v.node) || contains_node(v.members, g.node)))
        })
    });
}

fn decide(
    views: &[engine::View<'_>],
    clients: &BTreeMap<NodeId, Tracked>,
    ghosts: &[Ghost],
    tie_breaker: TieBreaker,
) -> Decision {
    let mut unsettled = BTreeSet::new();
    for a in views {
        for b in views {
            let related = contains_node(a.members, b.node) || contains_node(b.members, a.node);
            if a.node != b.node && related && a.ring != b.ring {
                unsettled.insert(a.node);
            }
        }
    }
    if !unsettled.is_empty() {
        return Decision::Frozen(unsettled);
    }

    let mut parts: BTreeMap<RingId, Partition> = BTreeMap::new();
    for v in views {
        let decided = clients.get(&v.node).is_some_and(|t| t.decided);
        let p = parts.entry(v.ring).or_insert_with(|| Partition {
            ring: v.ring,
            clients: Vec::new(),
            members: Vec::new(),
            score: 0,
            all_newcomers: true,
        });
        p.clients.push(v.node);
        p.members.extend(v.members.iter().map(|n| n.node_id));
        p.score += heuristics_score(v.heuristics);
        p.all_newcomers &= !decided;
    }
    let incumbent = views
        .iter()
        .find(|v| clients.get(&v.node).is_some_and(|t| t.may_ack))
        .map(|v| v.ring);
    let mut excluded = BTreeSet::new();
    if let Some(inc) = incumbent {
        for p in parts.values() {
            if p.all_newcomers && p.ring != inc {
                excluded.insert(p.ring);
            }
        }
    }
    let candidates: Vec<&Partition> = parts
        .values()
        .filter(|p| !excluded.contains(&p.ring))
        .collect();
    let ranked = rank(&candidates, tie_breaker);
    let ring = ranked.map(|(r, _)| r);
    let granted = ring.is_some_and(|w| may_grant(views, clients, ghosts, w));
    Decision::Winner {
        ring,
        excluded,
        granted,
        record: DecisionRecord {
            partitions: parts
                .values()
                .map(|p| PartitionScore {
                    ring: p.ring,
                    nodes: p.clients.clone(),
                    score: p.score,
                })
                .collect(),
            winner: ring,
            reason: ranked.map_or("no_partition_eligible", |(_, why)| why),
            pending: ring.is_some() && !granted,
        },
    }
}

/// ACK may go to ring `w` only if no client of another ring, connected
/// or departed, may hold ACK.
fn may_grant(
    views: &[engine::View<'_>],
    clients: &BTreeMap<NodeId, Tracked>,
    ghosts: &[Ghost],
    w: RingId,
) -> bool {
    let blocked_by_client = clients.iter().any(|(node, t)| {
        t.may_ack && views.iter().find(|v| v.node == *node).map(|v| v.ring) != Some(w)
    });
    let blocked_by_ghost = ghosts.iter().any(|g| g.ring != Some(w));
    !blocked_by_client && !blocked_by_ghost
}

/// Picks the winning partition: only one, else best score, else largest
/// among the best-scored, else the tie-breaker among those still tied.
fn rank(parts: &[&Partition], tie_breaker: TieBreaker) -> Option<(RingId, &'static str)> {
    if let [only] = parts {
        return Some((only.ring, "single_partition"));
    }
    let best_score = parts.iter().map(|p| p.score).max()?;
    let tied: Vec<&Partition> = parts
        .iter()
        .copied()
        .filter(|p| p.score == best_score)
        .collect();
    if let [only] = tied.as_slice() {
        return Some((only.ring, "score"));
    }
    let best_size = tied.iter().map(|p| p.clients.len()).max()?;
    let tied: Vec<&Partition> = tied
        .into_iter()
        .filter(|p| p.clients.len() == best_size)
        .collect();
    if let [only] = tied.as_slice() {
        return Some((only.ring, "size"));
    }
    let lowest = || {
        tied.iter()
            .filter_map(|p| p.clients.iter().min().map(|n| (*n, p.ring)))
            .min()
            .map(|(_, r)| r)
    };
    let ring = match tie_breaker {
        TieBreaker::Lowest => lowest(),
        TieBreaker::Highest => tied
            .iter()
            .filter_map(|p| p.clients.iter().max().map(|n| (*n, p.ring)))
            .max()
            .map(|(_, r)| r),
        TieBreaker::NodeId(n) => tied
            .iter()
            .find(|p| p.clients.contains(&n) || p.members.contains(&n))
            .map(|p| p.ring)
            .or_else(lowest),
    };
    ring.map(|r| (r, "tie_breaker"))
}
