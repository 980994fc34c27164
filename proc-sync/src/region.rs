//! A block of shared memory holding the state words of one primitive.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

use proc_core::shm::Segment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Anonymous shared memory of at least `len` bytes, cheap to clone within a process and passed to
/// children as a handle (its descriptor travels with the start).
#[derive(Clone)]
pub(crate) struct Region {
    seg: Arc<Segment>,
}

impl Region {
    /// A zeroed region of `len` bytes (rounded up by the OS to whole pages).
    pub(crate) fn new(len: usize) -> proc_core::Result<Self> {
        Ok(Region { seg: Arc::new(Segment::new(len.max(4))?) })
    }

    /// The `index`-th 32-bit word.
    ///
    /// # Panics
    ///
    /// If the word lies outside the region: a bug in the primitive's layout, not a run-time input.
    #[inline]
    pub(crate) fn word(&self, index: usize) -> &AtomicU32 {
        assert!((index + 1) * 4 <= self.seg.len(), "state word {index} outside its region");
        // SAFETY: the mapping is page-aligned, so `4 * index` is 4-byte aligned, and it is inside
        // the mapping (asserted). AtomicU32 has the layout of u32, the memory lives as long as
        // `self`, and every access to shared words goes through atomics.
        unsafe { AtomicU32::from_ptr(self.seg.as_ptr().add(index * 4).cast()) }
    }

    /// The 64-bit word at byte `8 * index`.
    ///
    /// # Panics
    ///
    /// If the word lies outside the region: a bug in the primitive's layout, or a handle whose
    /// region is too short for it (checked when it is decoded).
    #[inline]
    pub(crate) fn word64(&self, index: usize) -> &AtomicU64 {
        assert!((index + 1) * 8 <= self.seg.len(), "state word64 {index} outside its region");
        // SAFETY: the mapping is page-aligned, so `8 * index` is 8-byte aligned, and it is inside
        // the mapping (asserted). AtomicU64 has the layout of u64, the memory lives as long as
        // `self`, and every access to shared words goes through atomics.
        unsafe { AtomicU64::from_ptr(self.seg.as_ptr().add(index * 8).cast()) }
    }

    /// The start of the region.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.seg.as_ptr()
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.seg.len()
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("len", &self.seg.len()).finish()
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Region { seg: Arc::new(Segment::deserialize(deserializer)?) })
    }
}
