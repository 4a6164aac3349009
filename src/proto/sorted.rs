//! Ordered sets and maps kept in one sorted vector.
//!
//! They iterate in order, like `BTreeSet` and `BTreeMap`, so runs stay
//! deterministic; but a peer's small collections (its seeds, its
//! neighbours, its neighbours' neighbours) cost one allocation of their own
//! size instead of a tree leaf. A `BTreeSet` of one address allocates a
//! 368-byte leaf and keeps it when emptied; over the simulator's 100,000
//! peers those leaves were the largest part of the memory. Lookups are
//! binary searches; inserts and removals shift the tail, which is cheap at
//! the sizes these hold (tens, at most a few hundred).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of distinct values in ascending order.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.0).finish()
    }
}

impl<T: Ord> SortedSet<T> {
    pub const fn new() -> Self {
        SortedSet(Vec::new())
    }

    /// Adds `value`; whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Removes `value`; whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        match self.0.binary_search(value) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, value: &T) -> bool {
        self.0.binary_search(value).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Empties the set and gives its memory back.
    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The values in `self` but not in `other`, in order.
    pub fn difference<'a>(&'a self, other: &'a SortedSet<T>) -> impl Iterator<Item = &'a T> + 'a {
        self.0.iter().filter(move |v| !other.contains(v))
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut values: Vec<T> = values.into_iter().collect();
        // Usually already in order: peers send their sets sorted.
        if !values.is_sorted() {
            values.sort_unstable();
        }
        values.dedup();
        values.shrink_to_fit();
        SortedSet(values)
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for SortedSet<T> {
    fn from(values: [T; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<T> IntoIterator for SortedSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Written as a sequence, as a `BTreeSet` is, so the two read each other's
/// output.
impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<T>::deserialize(deserializer)?.into_iter().collect())
    }
}

/// A map with keys in ascending order.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn find(&self, key: &K) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// Sets `key` to `value`; the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (key, value));
                None
            }
        }
    }

    /// The value at `key`, inserting the default first if there is none.
    pub fn get_or_insert_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let at = match self.find(&key) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (key, V::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.find(key).ok()?;
        Some(self.0.remove(at).1)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(key).ok()?;
        Some(&self.0[at].1)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(key).ok()?;
        Some(&mut self.0[at].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a mut SortedMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter =
        std::iter::Map<std::slice::IterMut<'a, (K, V)>, fn(&mut (K, V)) -> (&K, &mut V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Random operations give the same answers and the same order as the
    /// standard trees.
    #[test]
    fn set_and_map_behave_as_the_trees_do() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut set, mut tree_set) = (SortedSet::new(), BTreeSet::new());
        let (mut map, mut tree_map) = (SortedMap::default(), BTreeMap::new());
        for step in 0..5000u32 {
            let key: u8 = rng.random_range(0..40);
            match rng.random_range(0..3) {
                0 | 1 => {
                    assert_eq!(set.insert(key), tree_set.insert(key));
                    assert_eq!(map.insert(key, step), tree_map.insert(key, step));
                }
                _ => {
                    assert_eq!(set.remove(&key), tree_set.remove(&key));
                    assert_eq!(map.remove(&key), tree_map.remove(&key));
                }
            }
            assert_eq!(set.contains(&key), tree_set.contains(&key));
            assert_eq!(map.get(&key), tree_map.get(&key));
            assert_eq!(set.len(), tree_set.len());
            assert_eq!(map.iter().count(), tree_map.len());
        }
        assert!(set.iter().eq(tree_set.iter()));
        assert!(map.iter().eq(tree_map.iter()));
    }

    #[test]
    fn collecting_sorts_and_drops_repeats() {
        let set: SortedSet<u32> = [5, 1, 5, 3, 1].into_iter().collect();
        assert_eq!(set.as_slice(), &[1, 3, 5]);
        let other: SortedSet<u32> = [3, 4].into_iter().collect();
        assert_eq!(set.difference(&other).copied().collect::<Vec<_>>(), [1, 5]);
    }

    #[test]
    fn reads_what_a_tree_set_wrote() {
        let tree: BTreeSet<u32> = [9, 2, 4].into_iter().collect();
        let json = serde_json::to_string(&tree).expect("serialises");
        let set: SortedSet<u32> = serde_json::from_str(&json).expect("reads back");
        assert!(set.iter().eq(tree.iter()));
        assert_eq!(serde_json::to_string(&set).expect("serialises"), json);
    }
}
