//! The decision of ffsplit as a pure computation: which clients take part
//! and with what data ([`View`]), the stability test, the partition
//! statistics and the partition selection (`CMP` of the protocol notes,
//! §5.1). The voting round that carries a decision out is in the parent
//! module.

use crate::{
    contains_node, heuristics_score, same_node_set, ClientInfo, Ctx, Heuristics, NodeId, NodeInfo,
    RingId, TieBreaker,
};

/// One client's view as a decision sees it: the event's data for the
/// triggering client, the stored fields for everybody else.
#[derive(Clone, Copy, Debug)]
pub(super) struct View<'a> {
    pub(super) node: NodeId,
    pub(super) ring: RingId,
    pub(super) config: &'a [NodeInfo],
    pub(super) membership: &'a [NodeInfo],
    pub(super) heuristics: Heuristics,
}

impl<'a> View<'a> {
    /// The stored view of a client.
    pub(super) fn stored(info: &'a ClientInfo) -> Self {
        View {
            node: info.node_id,
            ring: info.ring,
            config: info.config_nodes(),
            membership: info.membership_nodes(),
            heuristics: info.heuristics,
        }
    }

    /// A client is ready once it has sent both a config list and a membership
    /// list (neither can be stored empty: such lists are refused with 18/19).
    pub(super) fn is_ready(&self) -> bool {
        !self.config.is_empty() && !self.membership.is_empty()
    }
}

/// The client whose message or disconnect started a decision.
pub(super) struct Trigger<'a> {
    pub(super) view: View<'a>,
    /// The client is disconnecting: it is skipped everywhere except in the
    /// KAP "all clients" check and in the partition statistics.
    pub(super) leaving: bool,
}

/// Whether every node id of `a` is also in `b`.
pub(super) fn is_subset(a: &[NodeInfo], b: &[NodeInfo]) -> bool {
    a.iter().all(|n| contains_node(b, n.node_id))
}

/// The views taking part in a decision, in ascending node-id order: every
/// client of the cluster except a leaving trigger, the trigger (if any) with
/// the event's data.
pub(super) fn participant_views<'a>(ctx: &Ctx<'a>, trigger: Option<&Trigger<'a>>) -> Vec<View<'a>> {
    let mut views = Vec::with_capacity(ctx.clients.len());
    for (id, info) in ctx.clients.iter() {
        match trigger {
            Some(t) if t.view.node == *id => {
                if !t.leaving {
                    views.push(t.view);
                }
            }
            _ => views.push(View::stored(info)),
        }
    }
    views
}

/// The stability test (§5.1 step 2), plus the "not ready" rule.
pub(super) fn is_membership_stable(views: &[View<'_>]) -> bool {
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
pub(super) fn partition_stats(ctx: &Ctx<'_>, rep: &View<'_>) -> (i64, i64) {
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
pub(crate) fn preferred_node(tie_breaker: TieBreaker, config: &[NodeInfo]) -> Option<NodeId> {
    match tie_breaker {
        TieBreaker::Lowest => config.iter().map(|n| n.node_id).min(),
        TieBreaker::Highest => config.iter().map(|n| n.node_id).max(),
        TieBreaker::NodeId(id) => Some(id),
    }
}

/// `CMP(X, B)` of §5.1: whether `x`'s partition beats `best`'s (or the empty
/// candidate when `best` is `None`), and the step that decided it (for the
/// decision log).
pub(super) fn beats(
    ctx: &Ctx<'_>,
    x: &View<'_>,
    best: Option<&View<'_>>,
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
pub(super) fn select_partition<'v, 'a>(
    ctx: &Ctx<'_>,
    views: &'v [View<'a>],
    quorate_partition: &[NodeInfo],
) -> (Option<&'v View<'a>>, &'static str) {
    // KAP applies only if every client of the cluster (a leaving one
    // included, it is still listed) enabled it.
    let kap = ctx.clients.values().all(|c| c.kap);
    let mut best: Option<&View<'a>> = None;
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
