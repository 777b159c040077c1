//! The decision of the lms/2nodelms engine as a pure computation: the ready
//! clients ([`View`]), ring settling, partitions and their ranking, the
//! newcomer rule, the safety gate, and the end of departed holders' rings.
//! The parent module carries decisions out (replies, VOTE_INFO, timers).
//!
//! **Cost.** Membership lists are interned when they arrive
//! ([`NodeSets`]), so a decision over n ready clients never compares
//! clients pairwise: settling is checked once per distinct (ring, list)
//! pair, for each node of that list (a binary search for its client), the
//! NODE_ID tie-breaker is a binary search per client, and the safety gate a
//! binary search per client that may hold ACK. With k partitions of
//! disjoint members that is O(n log n) per decision (O(n² log n) at worst
//! for lists that all differ); each ghost (a departed holder) adds a binary
//! search per node of its ring and per distinct list. The previous,
//! pairwise implementation is kept as a test oracle (`crate::sim::oracle`)
//! and every decision of the tests, the randomized schedules and the fuzz
//! target is checked against it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Ghost, Tracked};
use crate::nodeset::{NodeSets, SetId};
use crate::{
    heuristics_score, Ctx, DecisionRecord, Event, Heuristics, NodeId, NodeInfo, PartitionScore,
    RingId, TieBreaker,
};

/// A ready client as the decision sees it, with the triggering event's data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub(crate) node: NodeId,
    pub(crate) ring: RingId,
    /// The membership list as received (only the test oracle reads it).
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) members: &'a [NodeInfo],
    /// `members`, interned.
    pub(crate) members_set: SetId,
    pub(crate) heuristics: Heuristics,
}

/// The outcome of a decision.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Some clients are unsettled; nothing new is decided.
    Frozen(BTreeSet<NodeId>),
    /// The winning ring (or none), the newcomer-only rings left out, and
    /// whether ACK may be granted to the winner now.
    Winner {
        ring: Option<RingId>,
        excluded: BTreeSet<RingId>,
        granted: bool,
        /// The same, for the decision log.
        record: DecisionRecord,
    },
}

/// The ready clients (both lists received), with the triggering event's new
/// data applied and the leaving client left out. A client's interned
/// membership list is in `tracked` (the trigger's already the new one).
pub(crate) fn collect_views<'a>(
    ctx: &Ctx<'a>,
    tracked: &BTreeMap<NodeId, Tracked>,
    trigger: Option<(NodeId, &'a Event)>,
    leaving: Option<NodeId>,
) -> Vec<View<'a>> {
    let mut out = Vec::with_capacity(ctx.clients.len());
    for (&id, info) in ctx.clients.iter() {
        if Some(id) == leaving {
            continue;
        }
        let mut has_config = info.config.is_some();
        let mut ring = info.ring;
        let mut members = info.membership.as_deref();
        let mut heuristics = info.heuristics;
        if let Some((node, event)) = trigger {
            if node == id {
                match event {
                    Event::ConfigList { .. } => has_config = true,
                    Event::Membership {
                        ring: r,
                        nodes,
                        heuristics: h,
                    } => {
                        ring = *r;
                        members = Some(nodes.as_slice());
                        heuristics = *h;
                    }
                    Event::HeuristicsChange { heuristics: h } => heuristics = *h,
                    _ => {}
                }
            }
        }
        let set = tracked.get(&id).and_then(|t| t.membership);
        if let (true, Some(members), Some(members_set)) = (has_config, members, set) {
            out.push(View {
                node: id,
                ring,
                members,
                members_set,
                heuristics,
            });
        }
    }
    out
}

/// The view of `node`, if it is ready (`views` are by ascending node id).
fn view_of<'v, 'a>(views: &'v [View<'a>], node: NodeId) -> Option<&'v View<'a>> {
    views
        .binary_search_by_key(&node, |v| v.node)
        .ok()
        .map(|i| &views[i])
}

/// Drops ghosts whose ring is known to be over, or whose node is back
/// with a new membership list (it stopped voting before sending it).
///
/// A ghost of a known ring is over when its node is back, or a node that
/// was in its ring (or that lists it) now reports a *newer* ring. corosync
/// ring sequence numbers only grow, so a ring with a lower or equal seq is
/// stale evidence (a membership list delayed from before the split) and
/// proves nothing.
///
/// A remembered holder's node of unknown ring (after a restart: every list
/// is newer than the remembered decision) is placed by the clients' lists:
/// if a ready client lists it, its ring is the newest such client's ring,
/// with that client's list; otherwise, if a node of the holder partition is
/// ready (in a ring without it), the holder's ring is over for it too, and
/// a disconnected client drops its ACK when its membership changes.
///
/// Returns the nodes of the ghosts dropped because their node is back.
pub(crate) fn prune_ghosts(
    ghosts: &mut Vec<Ghost>,
    views: &[View<'_>],
    sets: &NodeSets,
) -> Vec<NodeId> {
    let mut back = Vec::new();
    if ghosts.is_empty() {
        return back;
    }
    // Per distinct (ring seq, list): does some client of a newer ring than
    // the ghost's list the ghost's node?
    let mut lists: Vec<(u64, SetId)> = views
        .iter()
        .map(|v| (v.ring.seq, sets.distinct(v.members_set)))
        .collect();
    lists.sort_unstable();
    lists.dedup();
    ghosts.retain_mut(|g| {
        if view_of(views, g.node).is_some() {
            back.push(g.node);
            return false;
        }
        let Some(ring) = g.ring else {
            let listing = views
                .iter()
                .filter(|v| sets.contains(v.members_set, g.node))
                .max_by_key(|v| (v.ring.seq, v.ring.node_id, std::cmp::Reverse(v.node)));
            if let Some(v) = listing {
                g.ring = Some(v.ring);
                g.members = sets.nodes(sets.distinct(v.members_set)).to_vec();
                return true;
            }
            return !g.members.iter().any(|&m| view_of(views, m).is_some());
        };
        let member_moved = g
            .members
            .iter()
            .any(|&m| view_of(views, m).is_some_and(|v| v.ring != ring && v.ring.seq > ring.seq));
        let start = lists.partition_point(|&(seq, _)| seq <= ring.seq);
        let listed_newer = lists[start..]
            .iter()
            .any(|&(_, list)| sets.contains(list, g.node));
        !(member_moved || listed_newer)
    });
    back
}

/// A partition: the ready clients of one ring.
#[derive(Debug)]
struct Partition {
    ring: RingId,
    clients: Vec<NodeId>,
    /// A client of the partition lists the NODE_ID tie-breaker's node.
    lists_tie_breaker: bool,
    score: i64,
    all_newcomers: bool,
}

/// The decision over the ready clients `views` (by ascending node id), for
/// clients in `tracked` and departed holders `ghosts`.
pub(crate) fn decide(
    views: &[View<'_>],
    sets: &NodeSets,
    tracked: &BTreeMap<NodeId, Tracked>,
    ghosts: &[Ghost],
    tie_breaker: TieBreaker,
) -> Decision {
    let unsettled = unsettled(views, sets);
    if !unsettled.is_empty() {
        return Decision::Frozen(unsettled);
    }

    let mut parts: BTreeMap<RingId, Partition> = BTreeMap::new();
    for v in views {
        let decided = tracked.get(&v.node).is_some_and(|t| t.decided);
        let p = parts.entry(v.ring).or_insert_with(|| Partition {
            ring: v.ring,
            clients: Vec::new(),
            lists_tie_breaker: false,
            score: 0,
            all_newcomers: true,
        });
        p.clients.push(v.node);
        if let TieBreaker::NodeId(n) = tie_breaker {
            p.lists_tie_breaker |= sets.contains(v.members_set, n);
        }
        p.score += heuristics_score(v.heuristics);
        p.all_newcomers &= !decided;
    }
    let incumbent = views
        .iter()
        .find(|v| tracked.get(&v.node).is_some_and(|t| t.may_ack))
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
    let granted = ring.is_some_and(|w| may_grant(views, tracked, ghosts, w));
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

/// Ring settling: the ready clients that list, or are listed by, a ready
/// client of another ring. Clients with the same ring and the same node set
/// are checked together.
fn unsettled(views: &[View<'_>], sets: &NodeSets) -> BTreeSet<NodeId> {
    let mut groups: Vec<(RingId, SetId, NodeId)> = views
        .iter()
        .map(|v| (v.ring, sets.distinct(v.members_set), v.node))
        .collect();
    groups.sort_unstable();
    let mut unsettled = BTreeSet::new();
    for group in groups.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (ring, list, _) = group[0];
        let mut lists_other_ring = false;
        for &m in sets.nodes(list) {
            if let Some(b) = view_of(views, m).filter(|b| b.ring != ring) {
                unsettled.insert(b.node);
                lists_other_ring = true;
            }
        }
        if lists_other_ring {
            unsettled.extend(group.iter().map(|&(_, _, node)| node));
        }
    }
    unsettled
}

/// ACK may go to ring `w` only if no client of another ring, connected
/// or departed, may hold ACK.
fn may_grant(
    views: &[View<'_>],
    tracked: &BTreeMap<NodeId, Tracked>,
    ghosts: &[Ghost],
    w: RingId,
) -> bool {
    let blocked_by_client = tracked
        .iter()
        .any(|(&node, t)| t.may_ack && view_of(views, node).map(|v| v.ring) != Some(w));
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
    // Clients are by ascending node id: the first is the lowest.
    let lowest = || {
        tied.iter()
            .filter_map(|p| p.clients.first().map(|n| (*n, p.ring)))
            .min()
            .map(|(_, r)| r)
    };
    let ring = match tie_breaker {
        TieBreaker::Lowest => lowest(),
        TieBreaker::Highest => tied
            .iter()
            .filter_map(|p| p.clients.last().map(|n| (*n, p.ring)))
            .max()
            .map(|(_, r)| r),
        TieBreaker::NodeId(n) => tied
            .iter()
            .find(|p| p.clients.binary_search(&n).is_ok() || p.lists_tie_breaker)
            .map(|p| p.ring)
            .or_else(lowest),
    };
    ring.map(|r| (r, "tie_breaker"))
}
