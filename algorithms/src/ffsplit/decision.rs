//! The decision of ffsplit as a pure computation: which clients take part
//! and with what data ([`View`]), the stability test, the partition
//! statistics, the partition selection (`CMP` of the protocol notes, §5.1)
//! and the partitions of the decision record. The voting round that
//! carries a decision out is in the parent module.
//!
//! **Cost.** Every list a client reports is interned once when it arrives
//! ([`NodeSets`]: sorted, duplicates kept, equal lists share an id), so a
//! decision over n clients never compares lists pairwise:
//!
//! * the config lists must be one node set: one id comparison per client;
//! * membership stability is checked once per distinct (ring, membership
//!   list) pair, for each node of that list: a binary search for its client,
//!   and usually an id comparison (the client reports the same list);
//! * partition statistics are summed once per distinct membership list and
//!   corrected for the compared client's own heuristics; the tie-breaker's
//!   node is the first or last of the sorted config list.
//!
//! With k partitions of disjoint members that is O(n log n) per decision
//! (O(n² log n) at worst for lists that all differ). The results are the
//! reference rules' to the bit, including lists with duplicates or in any
//! order: the previous, pairwise implementation is kept as a test oracle
//! (`crate::sim::oracle`) and every decision of the tests, the randomized
//! schedules and the fuzz target is checked against it.

use crate::nodeset::{NodeSets, SetId};
use crate::{
    heuristics_score, Ctx, Heuristics, NodeId, NodeInfo, PartitionScore, RingId, TieBreaker,
};

/// One client's view as a decision sees it: the event's data for the
/// triggering client, the stored fields for everybody else.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub(crate) node: NodeId,
    pub(crate) ring: RingId,
    pub(crate) config: &'a [NodeInfo],
    pub(crate) membership: &'a [NodeInfo],
    /// The interned lists (`None` until received).
    pub(crate) config_set: Option<SetId>,
    pub(crate) membership_set: Option<SetId>,
    pub(crate) heuristics: Heuristics,
}

impl View<'_> {
    /// A client is ready once it has sent both a config list and a membership
    /// list (neither can be stored empty: such lists are refused with 18/19).
    pub(crate) fn is_ready(&self) -> bool {
        !self.config.is_empty() && !self.membership.is_empty()
    }

    /// The interned lists of a ready client.
    fn sets(&self) -> (SetId, SetId) {
        match (self.config_set, self.membership_set) {
            (Some(c), Some(m)) => (c, m),
            // Unreachable: decisions only look at ready clients, whose
            // lists are interned when they arrive.
            _ => unreachable!("node {} has lists that were not interned", self.node),
        }
    }
}

/// The client whose message or disconnect started a decision.
pub(super) struct Trigger<'a> {
    pub(super) view: View<'a>,
    /// The client is disconnecting: it is skipped everywhere except in the
    /// KAP "all clients" check and in the partition statistics.
    pub(super) leaving: bool,
}

/// What a decision on stable membership found.
#[derive(Debug)]
pub(crate) struct Selection<'v, 'a> {
    /// The view whose membership list is the chosen partition, if any may
    /// become quorate.
    pub(crate) best: Option<&'v View<'a>>,
    /// The step that decided against the last rival partition.
    pub(crate) reason: &'static str,
    /// Every partition, by ring, for the decision record.
    pub(crate) partitions: Vec<PartitionScore>,
}

/// The decision over `views` (every participant, by ascending node id):
/// `None` while membership is not stable, else the selection. `quorate` is
/// the KAP rule's active partition (sorted node ids).
pub(crate) fn evaluate<'v, 'a>(
    ctx: &Ctx<'_>,
    views: &'v [View<'a>],
    sets: &NodeSets,
    quorate: &[NodeId],
    scratch: &mut Scratch,
) -> Option<Selection<'v, 'a>> {
    if !is_membership_stable(views, sets, &mut scratch.groups) {
        return None;
    }
    let mut stats = Stats::new(ctx, sets, views, scratch);
    let (best, reason) = select_partition(ctx, views, sets, quorate, &mut stats);
    // One partition per ring, represented by its first view (node order).
    let firsts = &mut stats.scratch.firsts;
    firsts.clear();
    firsts.extend(views.iter().enumerate().map(|(i, v)| (v.ring, i)));
    firsts.sort_unstable();
    firsts.dedup_by_key(|(ring, _)| *ring);
    firsts.sort_unstable_by_key(|&(_, i)| i);
    let firsts = std::mem::take(firsts);
    let partitions = firsts
        .iter()
        .map(|&(ring, i)| PartitionScore {
            ring,
            nodes: views[i].membership.iter().map(|n| n.node_id).collect(),
            score: stats.of(&views[i]).1,
        })
        .collect();
    stats.scratch.firsts = firsts;
    Some(Selection {
        best,
        reason,
        partitions,
    })
}

/// The stability test (§5.1 step 2), plus the "not ready" rule.
fn is_membership_stable(
    views: &[View<'_>],
    sets: &NodeSets,
    groups: &mut Vec<(RingId, SetId)>,
) -> bool {
    // A client without both lists blocks every decision. This replaces the
    // reference's crash on an empty config list (quirk 1) and guarantees that
    // no VOTE_INFO reaches a client before its lists (quirks 25, 28).
    if views.iter().any(|v| !v.is_ready()) {
        return false;
    }

    // (a) All participating clients have the same config node set.
    if let Some(first) = views.first() {
        let config = sets.distinct(first.sets().0);
        if views.iter().any(|v| sets.distinct(v.sets().0) != config) {
            return false;
        }
    }

    // (b) Every participating client listed in another client's membership
    // list (or its own) reports the same ring id and a superset of that list.
    // Clients not connected (or leaving) are ignored. Clients reporting the
    // same ring and list need the same checks: they are done once.
    groups.clear();
    groups.extend(views.iter().map(|v| (v.ring, v.sets().1)));
    groups.sort_unstable();
    groups.dedup();
    for &(ring, list) in groups.iter() {
        for &member in sets.nodes(sets.distinct(list)) {
            let Ok(i) = views.binary_search_by_key(&member, |v| v.node) else {
                continue;
            };
            let b = &views[i];
            if b.ring != ring || !sets.is_subset(list, b.sets().1) {
                return false;
            }
        }
    }
    true
}

/// Partition statistics: `(active, score)` of the partition represented by
/// a view (its membership list), where `active` counts the list's entries
/// that have a client in the cluster (a leaving client included, quirk 5)
/// and `score` is `active + pass - fail`.
///
/// As in the reference, only the representative itself is judged by its
/// view's heuristics; every other member uses its *stored* heuristics, even
/// when it is the triggering client. The sums over stored heuristics are
/// computed once per membership list, then corrected for the
/// representative's entries.
struct Stats<'c> {
    ctx: &'c Ctx<'c>,
    sets: &'c NodeSets,
    /// `lists`: the membership lists of the views (sorted, distinct);
    /// `base`: their sums once computed.
    scratch: &'c mut Scratch,
}

/// Buffers a decision reuses (so that a decision allocates only what it
/// returns).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    groups: Vec<(RingId, SetId)>,
    lists: Vec<SetId>,
    base: Vec<Option<(i64, i64)>>,
    firsts: Vec<(RingId, usize)>,
}

impl<'c> Stats<'c> {
    fn new(
        ctx: &'c Ctx<'c>,
        sets: &'c NodeSets,
        views: &[View<'_>],
        scratch: &'c mut Scratch,
    ) -> Self {
        scratch.lists.clear();
        scratch.lists.extend(views.iter().map(|v| v.sets().1));
        scratch.lists.sort_unstable();
        scratch.lists.dedup();
        scratch.base.clear();
        scratch.base.resize(scratch.lists.len(), None);
        Stats { ctx, sets, scratch }
    }

    fn of(&mut self, rep: &View<'_>) -> (i64, i64) {
        let list = rep.sets().1;
        let (ctx, sets) = (self.ctx, self.sets);
        let slot = match self.scratch.lists.binary_search(&list) {
            Ok(i) => &mut self.scratch.base[i],
            Err(_) => unreachable!("statistics of a list that is not a view's"),
        };
        let (active, mut score) = *slot.get_or_insert_with(|| {
            let mut active = 0;
            let mut score = 0;
            for n in sets.nodes(list) {
                if let Some(info) = ctx.clients.get(n) {
                    active += 1;
                    score += heuristics_score(info.heuristics);
                }
            }
            (active, score)
        });
        if let Some(info) = ctx.clients.get(&rep.node) {
            let own = sets.count(list, rep.node) as i64;
            score += own * (heuristics_score(rep.heuristics) - heuristics_score(info.heuristics));
        }
        (active, score)
    }
}

/// The node whose partition wins a tie, judged from the compared client's
/// config list (`config`: its sorted node ids). `None` for an empty list
/// (never reached: such a client is not ready).
pub(crate) fn preferred_node(tie_breaker: TieBreaker, config: &[NodeId]) -> Option<NodeId> {
    match tie_breaker {
        TieBreaker::Lowest => config.first().copied(),
        TieBreaker::Highest => config.last().copied(),
        TieBreaker::NodeId(id) => Some(id),
    }
}

/// `CMP(X, B)` of §5.1: whether `x`'s partition beats `best`'s (or the empty
/// candidate when `best` is `None`), and the step that decided it (for the
/// decision log).
fn beats(
    x: &View<'_>,
    best: Option<&View<'_>>,
    quorate: &[NodeId],
    kap: bool,
    stats: &mut Stats<'_>,
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
    let (x_active, x_score) = stats.of(x);
    let (b_active, b_score) = best.map_or((0, 0), |b| stats.of(b));
    if x_score != b_score {
        return (x_score > b_score, "heuristics");
    }
    // 3: more connected clients.
    if x_active != b_active {
        return (x_active > b_active, "connected_nodes");
    }
    // 4: keep the active partition, judged by the two compared clients.
    if let (true, Some(b)) = (kap, best) {
        let x_was_quorate = quorate.binary_search(&x.node).is_ok();
        let b_was_quorate = quorate.binary_search(&b.node).is_ok();
        if x_was_quorate != b_was_quorate {
            return (x_was_quorate, "keep_active_partition");
        }
    }
    // 5: the tie-breaker; `best` is not examined.
    let (config, membership) = x.sets();
    let sets = stats.sets;
    let wins = preferred_node(stats.ctx.tie_breaker, sets.nodes(config))
        .is_some_and(|p| sets.contains(membership, p));
    (wins, "tie_breaker")
}

/// Partition selection (§5.1 step 3): the view whose membership list is the
/// chosen partition (or `None` if no partition may become quorate), and the
/// step that decided against the last rival partition.
fn select_partition<'v, 'a>(
    ctx: &Ctx<'_>,
    views: &'v [View<'a>],
    sets: &NodeSets,
    quorate: &[NodeId],
    stats: &mut Stats<'_>,
) -> (Option<&'v View<'a>>, &'static str) {
    // KAP applies only if every client of the cluster (a leaving one
    // included, it is still listed) enabled it.
    let kap = ctx.clients.values().all(|c| c.kap);
    let mut best: Option<&View<'a>> = None;
    let mut reason = "single_partition";
    for x in views {
        let (wins, step) = beats(x, best, quorate, kap, stats);
        let rival = match best {
            // A member of the current best partition is no rival.
            Some(b) => !sets.same_set(b.sets().1, x.sets().1),
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
