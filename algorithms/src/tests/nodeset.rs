//! Tests of the interned node lists (`crate::nodeset`) against a plain
//! model: ids are equal exactly when the lists are equal as multisets, the
//! set operations agree with naive ones, and the table stays small.

use std::collections::BTreeMap;

use crate::nodeset::{NodeSets, SetId};
use crate::sim::Rng;
use crate::{NodeId, NodeInfo};

fn list(ids: &[NodeId]) -> Vec<NodeInfo> {
    ids.iter().map(|&id| NodeInfo::new(id)).collect()
}

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

#[test]
fn equal_multisets_share_an_id() {
    let mut sets = NodeSets::default();
    let a = sets.intern(&list(&[3, 1, 2]));
    let b = sets.intern(&list(&[1, 2, 3]));
    let c = sets.intern(&list(&[1, 2, 2, 3]));
    assert_eq!(a, b);
    assert_ne!(a, c, "a duplicate makes another list");
    assert!(sets.same_set(a, c));
    assert_eq!(sets.distinct(c), a);
    assert_eq!(sets.nodes(c), &[1, 2, 2, 3]);
    assert_eq!(sets.count(c, 2), 2);
    assert_eq!(sets.count(c, 4), 0);
    let d = sets.intern(&list(&[2, 3]));
    assert!(sets.is_subset(d, c) && sets.is_subset(d, a));
    assert!(!sets.is_subset(a, d));
    let e = sets.intern(&[]);
    assert!(sets.is_subset(e, d) && !sets.is_subset(d, e));
    assert!(!sets.contains(e, 1));
}

#[test]
fn random_interning_matches_a_model() {
    let mut rng = Rng::new(7);
    let mut sets = NodeSets::default();
    // Held ids and their lists.
    let mut held: Vec<(SetId, Vec<NodeId>)> = Vec::new();
    for step in 0..10_000 {
        if held.is_empty() || (held.len() < 40 && rng.chance(55)) {
            let len = rng.below(6);
            let ids: Vec<NodeId> = (0..len).map(|_| 1 + rng.below(5) as NodeId).collect();
            let id = sets.intern(&list(&ids));
            held.push((id, sorted(&ids)));
        } else {
            let (id, _) = held.swap_remove(rng.below(held.len()));
            sets.release(id);
        }
        // Ids are equal exactly when the multisets are.
        let mut by_list: BTreeMap<&[NodeId], SetId> = BTreeMap::new();
        for (id, ids) in &held {
            assert_eq!(sets.nodes(*id), &ids[..], "step {step}");
            if let Some(other) = by_list.insert(ids, *id) {
                assert_eq!(other, *id, "step {step}: one list, two ids");
            }
        }
        let ids: Vec<SetId> = by_list.values().copied().collect();
        assert_eq!(ids.len(), by_list.len());
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b, "step {step}: two lists, one id");
            }
        }
        // Set operations agree with naive ones.
        if held.len() >= 2 {
            let (a, la) = &held[rng.below(held.len())];
            let (b, lb) = &held[rng.below(held.len())];
            let subset = la.iter().all(|n| lb.contains(n));
            let same = subset && lb.iter().all(|n| la.contains(n));
            assert_eq!(sets.is_subset(*a, *b), subset, "step {step}");
            assert_eq!(sets.same_set(*a, *b), same, "step {step}");
            let n = 1 + rng.below(5) as NodeId;
            assert_eq!(sets.contains(*a, n), la.contains(&n));
            assert_eq!(sets.count(*a, n), la.iter().filter(|&&x| x == n).count());
        }
        // The table holds what is held, and at most about as much again.
        let (size, unheld) = sets.size();
        assert!(
            unheld <= 16 || unheld <= size / 2,
            "step {step}: {unheld} of {size} lists unheld"
        );
    }
    for (id, _) in held.drain(..) {
        sets.release(id);
    }
    let (size, unheld) = sets.size();
    assert_eq!(size, unheld, "everything released");
    assert!(size <= 16, "{size} lists left after releasing everything");
}
