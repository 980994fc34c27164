//! The dict's map: insertion-ordered, as Python's.

use std::collections::{BTreeMap, HashMap};

/// A dict that keeps insertion order, as Python's.
#[derive(Debug, Default)]
pub(crate) struct OrderedMap {
    entries: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl OrderedMap {
    pub(super) fn get(&self, k: &[u8]) -> Option<&Vec<u8>> {
        self.entries.get(k).map(|(_, v)| v)
    }

    pub(super) fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) -> Option<Vec<u8>> {
        if let Some((_, old)) = self.entries.get_mut(&k) {
            return Some(std::mem::replace(old, v));
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, k.clone());
        self.entries.insert(k, (seq, v));
        None
    }

    pub(super) fn remove(&mut self, k: &[u8]) -> Option<Vec<u8>> {
        let (seq, v) = self.entries.remove(k)?;
        self.order.remove(&seq);
        Some(v)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.order.values().filter_map(|k| self.entries.get(k).map(|(_, v)| (k, v)))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}
