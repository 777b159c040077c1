//! A small ordered map on a sorted vector, for the per-cluster maps keyed
//! by node id (a cluster has at most a few dozen nodes).
//!
//! Why not `BTreeMap`: its first leaf holds room for 11 entries, so a
//! two-node cluster paid for eleven client records (about 1 KiB of heap per
//! client for the cluster's client map alone, BENCHMARKS.md). Here the
//! vector grows one entry at a time. Lookups are binary searches; the
//! iteration order is the key order, as with `BTreeMap`, so the algorithms
//! decide exactly as before.

use std::borrow::Borrow;

/// An ordered map on a sorted vector (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        VecMap::default()
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        match self.find(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                // Grow by one: the maps stay exactly as large as needed.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        let (_, v) = self.entries.remove(i);
        if self.entries.len() * 2 < self.entries.capacity() {
            self.entries.shrink_to_fit();
        }
        Some(v)
    }

    /// The value of `key`, inserted with `make` first if missing.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (key, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// The value of `key`, inserted as `V::default()` first if missing
    /// (`BTreeMap`'s `entry(key).or_default()`).
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.get_or_insert_with(key, V::default)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        fn pair<K, V>(e: &(K, V)) -> (&K, &V) {
            (&e.0, &e.1)
        }
        self.entries
            .iter()
            .map(pair as fn(&'a (K, V)) -> (&'a K, &'a V))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = VecMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_btreemap() {
        // A fixed pseudo-random sequence of inserts and removes, checked
        // against BTreeMap after every step.
        let mut a: VecMap<u32, u64> = VecMap::new();
        let mut b: BTreeMap<u32, u64> = BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 40) as u32;
            if matches!(x % 3, 0) {
                assert_eq!(a.remove(&key), b.remove(&key));
            } else {
                assert_eq!(a.insert(key, step), b.insert(key, step));
            }
            assert_eq!(a.len(), b.len());
            assert!(a.iter().eq(b.iter()));
            assert_eq!(a.get(&key), b.get(&key));
            assert_eq!(a.contains_key(&7), b.contains_key(&7));
        }
        *a.get_or_insert_with(1000, || 1) += 1;
        assert_eq!(a.get(&1000), Some(&2));
        a.retain(|k, _| *k < 10);
        b.retain(|k, _| *k < 10);
        assert!(a.keys().eq(b.keys()));
        assert!(a.values().eq(b.values()));
    }

    #[test]
    fn holds_no_more_room_than_entries() {
        let mut m: VecMap<u32, [u8; 200]> = VecMap::new();
        m.insert(2, [0; 200]);
        m.insert(1, [0; 200]);
        assert_eq!(m.entries.capacity(), 2);
    }
}
