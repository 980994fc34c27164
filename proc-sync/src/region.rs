//! Blocks of shared memory holding the state words of one primitive, carved from shared arenas.
//!
//! A primitive's region is a slot of an *arena*: one anonymous [`Segment`] (one descriptor, one
//! mapping) that many regions share, so a process holding 10,000 locks holds about ten
//! descriptors, not 10,000 (macOS's default limit is 256 per process).
//!
//! # Layout
//!
//! An arena is a whole number of [`SLOT`]-byte slots. The first slot holds a [`Header`]: a magic
//! word and the arena's 128-bit id (random in its high half, the creator's pid and a counter in
//! its low half), written once by its creator before any other process can see the arena. A
//! region is one or more whole slots after it, so every region starts 64-byte aligned (enough for
//! a value of any `Pod` type, whose data starts 64 bytes in).
//!
//! # Allocation
//!
//! A region of at most [`SMALL`] bytes is carved from the process's current arena of
//! [`ARENA_BYTES`] by bumping an offset under a lock; when the current arena is full, the
//! allocator lets go of it and creates a new one. A longer region gets an arena of its own. Slots
//! are never reused while their arena lives: a region dropped here may still be in use in a child
//! that received it, so handing its slot to a new primitive would make two primitives share
//! words. An arena is unmapped (and its descriptor closed) in a process when the last region
//! carved from it (or decoded onto it) is dropped there and it is not the current arena; the
//! memory goes back to the system once every process has done so. A slot is zeroed when carved
//! (a fresh arena is zeroed already; this guards against a peer that wrote outside its own
//! slots).
//!
//! A child made by `fork` inherits the allocator as it was: it would carve the same slots as its
//! parent from the same arena. So the allocator records the pid that created its current arena,
//! and a process that finds another pid there starts an arena of its own. The allocator's lock
//! (and the registry's, below) is only ever tried, a bounded number of times: a thread of the
//! parent that held it when the process forked does not exist in the child and would never let
//! go. A region that cannot get the allocator's lock gets an arena of its own instead, which is
//! only wasteful; a decode that cannot get the registry's maps its arena a second time.
//!
//! # Handles
//!
//! A region travels as `(arena id, descriptor index, arena length, offset, length)`. The arena's
//! descriptor goes into the message with [`export_shared_fd`] keyed by the arena id, so a message
//! with a thousand primitives from one arena carries one descriptor (a message carries at most
//! about 253). The receiver keeps a registry of the arenas it has mapped (the ones it created
//! included), by id, holding weak references: a handle on an arena already mapped here uses that
//! mapping and leaves the descriptor to be closed with the message; only the first one maps it
//! (from a duplicate, [`import_shared_fd`]) and registers it, after checking that the memory is
//! an arena with the id the handle claims. The offset and length are checked against the arena:
//! slot-aligned, after the header, inside the mapping. A handle that fails any check is a decoding
//! error, never an access outside the memory.

use std::collections::HashMap;
use std::fmt;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};

use proc_core::handle::{export_shared_fd, import_shared_fd};
use proc_core::shm::Segment;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit regions are carved in, and their alignment.
const SLOT: usize = 64;

/// The size of a shared arena: the header and 1023 slots.
const ARENA_BYTES: usize = 64 * 1024;

/// The longest region carved from a shared arena; a longer one gets an arena of its own.
const SMALL: usize = 4096;

/// `Header::magic` of an arena.
const ARENA_MAGIC: u64 = u64::from_le_bytes(*b"mpArena1");

/// How many times the allocator's and the registry's locks are tried before giving up (see the
/// module docs); each try that fails yields the CPU.
const TRIES: u32 = 1000;

/// The first slot of an arena. Written once by the creator before any other process has a
/// handle; read (with atomics) when a handle on an arena not mapped here yet is decoded.
#[repr(C)]
struct Header {
    /// [`ARENA_MAGIC`].
    magic: AtomicU64,
    /// The low half of the arena's id.
    id_lo: AtomicU64,
    /// The high half of the arena's id.
    id_hi: AtomicU64,
}

const _: () = assert!(size_of::<Header>() <= SLOT);
const _: () = assert!(offset_of!(Header, id_lo) == 8 && offset_of!(Header, id_hi) == 16);
const _: () =
    assert!(ARENA_BYTES.is_multiple_of(SLOT) && SMALL.is_multiple_of(SLOT) && SMALL < ARENA_BYTES - SLOT);

/// One arena's mapping in this process.
struct Arena {
    seg: Segment,
    id: u128,
}

impl Arena {
    /// A new arena of `len` bytes (a multiple of [`SLOT`], at least two slots), registered.
    fn create(len: usize) -> proc_core::Result<Arc<Arena>> {
        let arena = Arena { seg: Segment::new(len)?, id: new_id() };
        let h = arena.header();
        h.id_lo.store(arena.id as u64, Ordering::Relaxed);
        h.id_hi.store((arena.id >> 64) as u64, Ordering::Relaxed);
        h.magic.store(ARENA_MAGIC, Ordering::Release);
        let arena = Arc::new(arena);
        register(&arena);
        Ok(arena)
    }

    /// Maps the arena behind `fd`, of `len` bytes, if its header says it is arena `id`.
    fn attach(fd: OwnedFd, len: usize, id: u128) -> Result<Arc<Arena>, String> {
        if len < 2 * SLOT || !len.is_multiple_of(SLOT) {
            return Err(format!("not a shared arena: {len} bytes"));
        }
        let arena = Arena { seg: Segment::from_fd(fd, len).map_err(|e| e.to_string())?, id };
        let h = arena.header();
        let found =
            u128::from(h.id_lo.load(Ordering::Relaxed)) | u128::from(h.id_hi.load(Ordering::Relaxed)) << 64;
        if h.magic.load(Ordering::Acquire) != ARENA_MAGIC || found != id {
            return Err("not the shared arena its handle names (its header does not say so)".to_owned());
        }
        let arena = Arc::new(arena);
        Ok(register(&arena).unwrap_or(arena))
    }

    /// The arena's header.
    fn header(&self) -> &Header {
        assert!(self.seg.len() >= SLOT, "an arena shorter than its header");
        // SAFETY: the mapping is page-aligned (so aligned for Header's 8-byte atomics) and holds at
        // least SLOT >= size_of::<Header>() bytes (asserted); it lives as long as `self`, and
        // every access to the header goes through its atomics.
        unsafe { &*self.seg.as_ptr().cast::<Header>() }
    }
}

/// The allocator's current arena, the pid that created it, and the offset of its first free slot.
struct Current {
    pid: u32,
    arena: Arc<Arena>,
    next: usize,
}

/// The allocator (see the module docs).
static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// The arenas mapped in this process, by id.
#[derive(Default)]
struct Registry {
    arenas: HashMap<u128, Weak<Arena>>,
    /// The registry's size after its last sweep of dropped arenas.
    swept: usize,
}

/// The registry (see the module docs); `None` until the first arena.
static ARENAS: Mutex<Option<Registry>> = Mutex::new(None);

/// Anonymous shared memory of `len` bytes, a slot of an arena: cheap to clone within a process
/// and passed to children as a handle (its arena's descriptor travels with the start).
#[derive(Clone)]
pub(crate) struct Region {
    arena: Arc<Arena>,
    /// Where the region starts in the arena: a multiple of [`SLOT`], after the header.
    offset: usize,
    /// Its length; `offset + len` is inside the arena.
    len: usize,
}

impl Region {
    /// A zeroed region of `len` bytes (at least 4), 64-byte aligned.
    ///
    /// # Errors
    ///
    /// The shared memory cannot be created (out of descriptors or memory), or `len` is beyond
    /// what memory can hold.
    pub(crate) fn new(len: usize) -> proc_core::Result<Self> {
        let len = len.max(4);
        if len <= SMALL {
            if let Some(region) = carve(len)? {
                return Ok(region);
            }
        }
        let bytes =
            len.checked_next_multiple_of(SLOT).and_then(|b| b.checked_add(SLOT)).ok_or_else(|| {
                proc_core::Error::invalid_argument(format!(
                    "shared memory of {len} bytes: more than memory holds"
                ))
            })?;
        Ok(Region { arena: Arena::create(bytes)?, offset: SLOT, len })
    }

    /// The `index`-th 32-bit word.
    ///
    /// # Panics
    ///
    /// If the word lies outside the region: a bug in the primitive's layout, not a run-time input.
    #[inline]
    pub(crate) fn word(&self, index: usize) -> &AtomicU32 {
        assert!((index + 1) * 4 <= self.len, "state word {index} outside its region");
        // SAFETY: the region starts 64-byte aligned, so `4 * index` past it is 4-byte aligned, and
        // the word is inside the region (asserted), which is inside the mapping. AtomicU32 has the
        // layout of u32, the memory lives as long as `self`, and every access to shared words goes
        // through atomics.
        unsafe { AtomicU32::from_ptr(self.ptr().add(index * 4).cast()) }
    }

    /// The 64-bit word at byte `8 * index`.
    ///
    /// # Panics
    ///
    /// If the word lies outside the region: a bug in the primitive's layout, or a handle whose
    /// region is too short for it (checked when it is decoded).
    #[inline]
    pub(crate) fn word64(&self, index: usize) -> &AtomicU64 {
        assert!((index + 1) * 8 <= self.len, "state word64 {index} outside its region");
        // SAFETY: the region starts 64-byte aligned, so `8 * index` past it is 8-byte aligned, and
        // the word is inside the region (asserted), which is inside the mapping. AtomicU64 has the
        // layout of u64, the memory lives as long as `self`, and every access to shared words goes
        // through atomics.
        unsafe { AtomicU64::from_ptr(self.ptr().add(index * 8).cast()) }
    }

    /// The start of the region, 64-byte aligned.
    pub(crate) fn ptr(&self) -> *mut u8 {
        // `offset` is inside the mapping (made so, or checked on decode), so this is `add`.
        self.arena.seg.as_ptr().wrapping_add(self.offset)
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Carves a region of `len` bytes (at most [`SMALL`]) from the current arena, making a new one
/// when it is full or was inherited through `fork`. `None`: the allocator's lock could not be had
/// (see the module docs).
fn carve(len: usize) -> proc_core::Result<Option<Region>> {
    let Some(mut current) = lock_briefly(&CURRENT) else { return Ok(None) };
    let pid = proc_os::pid();
    let bytes = len.next_multiple_of(SLOT);
    let fits = current.as_ref().is_some_and(|c| c.pid == pid && c.next + bytes <= c.arena.seg.len());
    if !fits {
        // Let go of the full (or inherited) arena first: its regions keep it alive.
        *current = None;
        *current = Some(Current { pid, arena: Arena::create(ARENA_BYTES)?, next: SLOT });
    }
    let Some(c) = current.as_mut() else { return Ok(None) };
    let region = Region { arena: Arc::clone(&c.arena), offset: c.next, len };
    c.next += bytes;
    drop(current);
    // Zero the slots: no process was handed them, but a peer may have written past its own.
    for i in 0..bytes / 8 {
        // SAFETY: the slots are `bytes` long from a 64-byte aligned offset inside the mapping, so
        // word `i` is an aligned u64 inside it; the memory lives as long as `region`, and every
        // access to shared words goes through atomics.
        unsafe { AtomicU64::from_ptr(region.ptr().add(i * 8).cast()) }.store(0, Ordering::Relaxed);
    }
    Ok(Some(region))
}

/// A fresh arena id: 64 random bits, then this process's pid and a count of the ids it made.
fn new_id() -> u128 {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let low = u64::from(proc_os::pid()) << 32 | u64::from(COUNT.fetch_add(1, Ordering::Relaxed));
    u128::from(proc_os::random_u64()) << 64 | u128::from(low)
}

/// `m`'s guard, tried [`TRIES`] times; `None` if another thread held it all along (or a thread
/// of the parent held it when this process forked). A poisoned lock is taken: the state it
/// guards is consistent between statements.
fn lock_briefly<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for _ in 0..TRIES {
        match m.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// Registers `arena` under its id, unless a live arena has that id already: then that one (the
/// caller drops its own mapping of the same memory). Dropped arenas are swept out when the
/// registry has doubled in size since the last sweep.
fn register(arena: &Arc<Arena>) -> Option<Arc<Arena>> {
    let mut guard = lock_briefly(&ARENAS)?;
    let registry = guard.get_or_insert_with(Registry::default);
    if let Some(known) = registry.arenas.get(&arena.id).and_then(Weak::upgrade) {
        drop(guard);
        return Some(known);
    }
    if registry.arenas.len() >= (2 * registry.swept).max(16) {
        registry.arenas.retain(|_, w| w.strong_count() > 0);
        registry.swept = registry.arenas.len();
    }
    registry.arenas.insert(arena.id, Arc::downgrade(arena));
    None
}

/// The arena `id`, if it is mapped in this process.
fn lookup(id: u128) -> Option<Arc<Arena>> {
    let guard = lock_briefly(&ARENAS)?;
    guard.as_ref()?.arenas.get(&id).and_then(Weak::upgrade)
}

/// Checks a decoded region's place against its arena's length: slot-aligned, after the header,
/// not empty, inside the arena.
fn check_place(arena_len: usize, offset: usize, len: usize) -> Result<(), String> {
    if !offset.is_multiple_of(SLOT)
        || offset < SLOT
        || len == 0
        || offset.checked_add(len).is_none_or(|end| end > arena_len)
    {
        return Err(format!(
            "a shared region of {len} bytes at offset {offset} does not fit its arena of {arena_len} bytes"
        ));
    }
    Ok(())
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("offset", &self.offset).field("len", &self.len).finish()
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = export_shared_fd(self.arena.seg.as_fd(), self.arena.id).map_err(S::Error::custom)?;
        (self.arena.id, index, self.arena.seg.len() as u64, self.offset as u64, self.len as u64)
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (id, index, arena_len, offset, len) = <(u128, u32, u64, u64, u64)>::deserialize(deserializer)?;
        let size = |n: u64| usize::try_from(n).map_err(D::Error::custom);
        let (arena_len, offset, len) = (size(arena_len)?, size(offset)?, size(len)?);
        check_place(arena_len, offset, len).map_err(D::Error::custom)?;
        let arena = match lookup(id) {
            Some(arena) => arena,
            None => {
                let fd = import_shared_fd(index).map_err(D::Error::custom)?;
                Arena::attach(fd, arena_len, id).map_err(D::Error::custom)?
            }
        };
        // The arena mapped here may be shorter than the handle claims.
        check_place(arena.seg.len(), offset, len).map_err(D::Error::custom)?;
        Ok(Region { arena, offset, len })
    }
}

#[cfg(test)]
mod tests {
    use super::{Region, ARENA_BYTES, SLOT, SMALL};

    #[test]
    fn small_regions_share_an_arena_and_large_ones_do_not() {
        let a = Region::new(24).unwrap();
        let b = Region::new(72).unwrap();
        let big = Region::new(SMALL + 1).unwrap();
        assert_eq!(a.ptr() as usize % SLOT, 0);
        assert_eq!(b.ptr() as usize % SLOT, 0);
        assert_eq!(big.offset, SLOT);
        assert_eq!(big.arena.seg.len(), SLOT + (SMALL + SLOT));
        // Carved one after the other (unless `a` took the last slot of an arena).
        if std::sync::Arc::ptr_eq(&a.arena, &b.arena) {
            assert!(b.offset >= a.offset + SLOT);
        }
        assert_eq!((a.len(), b.len(), big.len()), (24, 72, SMALL + 1));
        assert!(a.arena.seg.len() == ARENA_BYTES);
    }

    #[test]
    fn a_region_beyond_memory_is_an_error() {
        assert!(Region::new(usize::MAX).is_err());
        assert!(Region::new(usize::MAX - 10).is_err());
    }

    #[test]
    fn places_outside_the_arena_are_refused() {
        use super::check_place;
        assert!(check_place(ARENA_BYTES, SLOT, 24).is_ok());
        assert!(check_place(ARENA_BYTES, ARENA_BYTES - SLOT, SLOT).is_ok());
        for (offset, len) in
            [(0, 24), (SLOT + 8, 24), (SLOT, 0), (ARENA_BYTES - SLOT, SLOT + 1), (ARENA_BYTES, 4)]
        {
            assert!(check_place(ARENA_BYTES, offset, len).is_err(), "{offset} {len}");
        }
        assert!(check_place(ARENA_BYTES, usize::MAX - 63, 100).is_err());
    }
}
