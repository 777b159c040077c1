//! Interned node lists, so that decisions over n clients cost O(n log n)
//! instead of comparing every client's lists with every other's.
//!
//! Each list a client reports is sorted once when it arrives and kept as a
//! *multiset* (duplicates stay: the reference counts list entries, so two
//! lists that differ only by a duplicate are different). Equal multisets
//! share one [`SetId`]; each multiset also links to the id of its distinct
//! node ids, so set equality is one comparison and set inclusion a merge of
//! two sorted slices. Ids are reference counted by their holders (the
//! algorithm's per-client data). A list nobody holds any more stays in the
//! table (clusters go back and forth between the same few lists), until
//! such lists outnumber the held ones: then they are all dropped and their
//! ids reused, so the table stays within a constant factor of what the
//! clients hold.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{NodeId, NodeInfo};

/// Sorted, distinct node ids.
pub(crate) fn sorted_ids(ids: impl Iterator<Item = NodeId>) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A node list in a [`NodeSets`] table.
pub(crate) type SetId = u32;

#[derive(Debug, Default)]
struct Slot {
    /// Sorted node ids, duplicates kept.
    nodes: Box<[NodeId]>,
    /// The slot of the same ids without duplicates (itself if it has none).
    distinct: SetId,
    /// Holders of this id (a duplicate-free slot also counts the slots
    /// that link to it).
    refs: u32,
    /// The slot holds a list (it is not free).
    live: bool,
}

/// FNV-1a: lookups hash a few dozen bytes, SipHash's defence against
/// chosen collisions buys nothing here: a collision costs comparisons, never
/// a wrong answer, and the table holds a few lists per client of one
/// cluster.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The table of interned node lists of one cluster.
#[derive(Debug, Default)]
pub(crate) struct NodeSets {
    by_nodes: HashMap<Box<[NodeId]>, SetId, BuildHasherDefault<Fnv>>,
    slots: Vec<Slot>,
    free: Vec<SetId>,
    /// Lists in the table that nobody holds.
    unheld: usize,
    /// Reused for sorting a list before it is looked up.
    scratch: Vec<NodeId>,
}

impl NodeSets {
    /// The id of `list` (its node ids as a multiset), taking one reference.
    pub(crate) fn intern(&mut self, list: &[NodeInfo]) -> SetId {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(list.iter().map(|n| n.node_id));
        ids.sort_unstable();
        let id = self.intern_sorted(&ids);
        self.scratch = ids;
        id
    }

    fn intern_sorted(&mut self, ids: &[NodeId]) -> SetId {
        if let Some(&id) = self.by_nodes.get(ids) {
            self.hold(id);
            return id;
        }
        let has_duplicates = ids.windows(2).any(|w| w[0] == w[1]);
        let distinct = if has_duplicates {
            let mut d = ids.to_vec();
            d.dedup();
            Some(self.intern_sorted(&d))
        } else {
            None
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as SetId
            }
        };
        let nodes: Box<[NodeId]> = ids.into();
        self.by_nodes.insert(nodes.clone(), id);
        self.slots[id as usize] = Slot {
            nodes,
            distinct: distinct.unwrap_or(id),
            refs: 1,
            live: true,
        };
        id
    }

    /// Takes one more reference to `id`. A list with duplicates that is
    /// held holds its duplicate-free list.
    fn hold(&mut self, id: SetId) {
        let slot = &mut self.slots[id as usize];
        slot.refs += 1;
        if slot.refs == 1 {
            self.unheld -= 1;
            let distinct = slot.distinct;
            if distinct != id {
                self.hold(distinct);
            }
        }
    }

    /// Gives back one reference to `id`.
    pub(crate) fn release(&mut self, id: SetId) {
        self.unhold(id);
        if self.unheld > 16 && self.unheld > self.by_nodes.len() / 2 {
            self.sweep();
        }
    }

    fn unhold(&mut self, id: SetId) {
        let slot = &mut self.slots[id as usize];
        slot.refs -= 1;
        if slot.refs == 0 {
            self.unheld += 1;
            let distinct = slot.distinct;
            if distinct != id {
                self.unhold(distinct);
            }
        }
    }

    /// Drops every list nobody holds. A list with duplicates and its
    /// duplicate-free list go together: while the first is held, so is
    /// the second.
    fn sweep(&mut self) {
        for (id, slot) in self.slots.iter_mut().enumerate() {
            if slot.live && slot.refs == 0 {
                slot.live = false;
                self.by_nodes.remove(&std::mem::take(&mut slot.nodes));
                self.free.push(id as SetId);
            }
        }
        self.unheld = 0;
    }

    /// The sorted node ids of `id`, duplicates kept.
    pub(crate) fn nodes(&self, id: SetId) -> &[NodeId] {
        &self.slots[id as usize].nodes
    }

    /// The id of the same node ids without duplicates.
    pub(crate) fn distinct(&self, id: SetId) -> SetId {
        self.slots[id as usize].distinct
    }

    /// Whether `node` is in `id`.
    pub(crate) fn contains(&self, id: SetId, node: NodeId) -> bool {
        self.nodes(id).binary_search(&node).is_ok()
    }

    /// How many times `node` is in `id`.
    pub(crate) fn count(&self, id: SetId, node: NodeId) -> usize {
        let nodes = self.nodes(id);
        let start = nodes.partition_point(|&n| n < node);
        nodes[start..].partition_point(|&n| n == node)
    }

    /// Whether `a` and `b` hold the same node ids (duplicates ignored).
    pub(crate) fn same_set(&self, a: SetId, b: SetId) -> bool {
        self.distinct(a) == self.distinct(b)
    }

    /// Whether every node id of `a` is in `b`.
    pub(crate) fn is_subset(&self, a: SetId, b: SetId) -> bool {
        let (a, b) = (self.distinct(a), self.distinct(b));
        if a == b {
            return true;
        }
        let (a, b) = (self.nodes(a), self.nodes(b));
        if a.len() > b.len() {
            return false;
        }
        let mut rest = b;
        for &n in a {
            match rest.binary_search(&n) {
                Ok(i) => rest = &rest[i + 1..],
                Err(_) => return false,
            }
        }
        true
    }

    /// Lists in the table, and how many of them nobody holds (for tests).
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.by_nodes.len(), self.unheld)
    }
}
