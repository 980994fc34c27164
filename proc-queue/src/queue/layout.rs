//! The shared memory of a ring, as `#[repr(C)]` structs of atomics: the [`Header`] (positions,
//! counts, wait words, the link to the next ring, the spill free list) and the [`Slot`]s after it,
//! and the encoding of a slot's control word.
//!
//! The layout is a protocol between processes (every process that holds the queue reads the
//! same memory), so it is pinned: the assertions below fix every field's byte offset. It is the
//! byte layout the queue had when these words were a table of offsets; changing it is changing
//! the protocol. Words that producers and consumers write (the tail, the head, each wait word)
//! sit on cache lines of their own ([`Line`]).
//!
//! A ring checks its memory once, when it maps it (`Ring::new`, `Ring::attach`): long enough
//! and aligned for a header, and, from the header's geometry, long enough for its slots. It then
//! keeps pointers to its header, ring 0's header and its first slot, and reaches every word
//! through them with no further check.

use std::mem::{align_of, offset_of, size_of};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use proc_core::shm::{Segment, SharedMemory};

use crate::loom::{AtomicU32, AtomicU64, AtomicU8};

pub(super) const MAGIC: u32 = 0x6d70_7175; // "mpqu"

/// The entries of the spill free list (see `spill`). One in the model checks (see `crate::loom`),
/// which do not spill and whose every atomic costs time.
#[cfg(not(loom))]
pub(super) const SPILL_ENTRIES: usize = 64;
#[cfg(loom)]
pub(super) const SPILL_ENTRIES: usize = 1;

/// The longest segment name the header holds (a link to the next ring, a free-list entry).
pub(super) const NAME_MAX: usize = 32;

/// The header at the start of every ring's memory. The queue-wide words (shutdown, wait words,
/// task count, spill free list, ...) are read in ring 0's header, whichever ring of a chain a
/// process works in; the geometry, positions, `space` and the link to the next ring are each
/// ring's own.
#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(super) struct Header {
    // One line: the geometry (written before `magic` is published, then read only) and words
    // seldom written.
    pub(super) magic: AtomicU32,
    pub(super) capacity: AtomicU32,
    pub(super) slot_size: AtomicU32,
    pub(super) stride: AtomicU32,
    pub(super) max_message: AtomicU64,
    /// `OPEN`, `SHUT` or `SHUT_IMMEDIATE`.
    pub(super) shutdown: AtomicU32,
    /// Set by `JoinableQueue::new`.
    pub(super) joinable: AtomicU32,
    /// Set by a `wait` that watches the queue, cleared by the ringer.
    pub(super) bell: AtomicU32,
    /// Processes holding the queue (a killed one never leaves).
    pub(super) attached: AtomicU32,
    /// The queue grows a chain of rings instead of blocking `put`.
    pub(super) unbounded: AtomicU32,
    /// An unbounded queue's rings released so far (see `chain`): rings 1 to `freed` are drained
    /// and their names unlinked; 0 if none is.
    pub(super) freed: AtomicU32,
    /// The resource tracker's group of the queue's named segments.
    pub(super) group: AtomicU64,
    /// The next position to claim for writing: moved by producers.
    pub(super) tail: Line<AtomicU64>,
    /// The next position to claim for reading: moved by consumers.
    pub(super) head: Line<AtomicU64>,
    /// Bumped by a commit that finds getters asleep.
    pub(super) items: Line<WaitWord>,
    /// Bumped by a release that finds putters asleep; its `bell` is the space doorbell's flag.
    pub(super) space: Line<WaitWord>,
    // One line: the task count (`JoinableQueue`) and, in every ring of an unbounded queue, the
    // seal and the link to the next ring.
    pub(super) unfinished: AtomicU64,
    pub(super) done: AtomicU32,
    pub(super) joiners: AtomicU32,
    /// No new writes here: go to the next ring.
    pub(super) sealed: AtomicU32,
    /// The link to the next ring: 0 (none), `LINKING | pid` (being linked), else `LINKED`.
    pub(super) next: AtomicU32,
    /// Unused: a link's name is the chain's name and the ring's index (see `chain`); the bytes
    /// keep the layout.
    pub(super) reserved: Name,
    /// The chain's name in ring 0 (random): ring `k` of the chain is the segment
    /// `mp_<chain>_<k>`.
    pub(super) chain: AtomicU64,
    /// The spill free list ends the header, one entry a line.
    pub(super) spill_list: [SpillEntry; SPILL_ENTRIES],
}

/// The header's size: the slots start here.
pub(super) const HEADER: usize = size_of::<Header>();

/// A wait word and, next to it, the flag a sleeper sets before it sleeps on the word (see `wake`).
#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(super) struct WaitWord {
    pub(super) word: AtomicU32,
    pub(super) sleepers: AtomicU32,
    /// In `space` only: set by an async putter that watches the space doorbell, cleared by the
    /// release that rings it (see `wake`). Unused in `items`, whose doorbell flag is
    /// `Header::bell`. It was padding (zero) before async puts.
    pub(super) bell: AtomicU32,
}

/// An entry of the spill free list: a state word (`EMPTY`, `FREE`, `BUSY | pid`, `HELD | pid`;
/// see `spill`), the chunk's name and its size.
#[repr(C, align(64))]
#[cfg_attr(loom, derive(Default))]
pub(super) struct SpillEntry {
    pub(super) state: AtomicU32,
    pub(super) name_len: AtomicU32,
    pub(super) size: AtomicU64,
    pub(super) name: Name,
}

/// A 64-byte cache line of its own, for a word one side writes while the other reads its
/// neighbours.
#[repr(C, align(64))]
#[cfg_attr(loom, derive(Default))]
pub(super) struct Line<T>(T);

impl<T> Deref for Line<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Up to [`NAME_MAX`] bytes of a segment's name, written before its length is published with
/// `Release` and read after that length is loaded with `Acquire`.
#[repr(C)]
#[cfg_attr(loom, derive(Default))]
pub(super) struct Name([AtomicU8; NAME_CELLS]);

/// The bytes a [`Name`] holds: one in the model checks, which link no rings and spill nothing,
/// and whose every atomic costs time (a loom fence visits them all).
#[cfg(not(loom))]
const NAME_CELLS: usize = NAME_MAX;
#[cfg(loom)]
const NAME_CELLS: usize = 1;

impl Name {
    /// Writes (up to [`NAME_MAX`] bytes of) `name`; how many bytes it wrote.
    pub(super) fn write(&self, name: &[u8]) -> usize {
        let len = name.len().min(NAME_CELLS);
        for (cell, &byte) in self.0.iter().zip(&name[..len]) {
            cell.store(byte, Ordering::Relaxed);
        }
        len
    }

    /// The name of `len` bytes; `None` if `len` is 0 or too long, or the bytes are not UTF-8.
    pub(super) fn read(&self, len: usize) -> Option<String> {
        let cells = self.0.get(..len).filter(|c| !c.is_empty())?;
        String::from_utf8(cells.iter().map(|c| c.load(Ordering::Relaxed)).collect()).ok()
    }
}

/// A slot's words; its `slot_size` data bytes follow, at [`SLOT_DATA`].
#[repr(C)]
pub(super) struct Slot {
    /// A sequence in the high half, a state in the low half (see [`ctl`]).
    pub(super) ctl: AtomicU64,
    /// The message's length, or a spill record's name length with [`SPILLED`].
    pub(super) len: AtomicU64,
    /// The data bytes, as the model checks see them (see `crate::loom`).
    #[cfg(loom)]
    pub(super) data: crate::loom::Access,
}

/// Where a slot's data starts.
pub(super) const SLOT_DATA: usize = size_of::<Slot>();

/// What a slot holds for a spilled message, at the start of its data.
#[repr(C)]
pub(super) struct SpillRecord {
    /// The chunk's name (its length in the slot's length word).
    pub(super) name: [u8; NAME_MAX],
    /// The message's size.
    pub(super) size: u64,
    /// The message's offset in the chunk.
    pub(super) offset: u64,
}

pub(super) const SPILL_SIZE_AT: usize = offset_of!(SpillRecord, size);
pub(super) const SPILL_OFFSET_AT: usize = offset_of!(SpillRecord, offset);
/// Every slot has room for a spill record.
pub(super) const SPILL_RECORD: usize = size_of::<SpillRecord>();

// The byte layout, pinned: it is what every process of the queue reads. (The model checks' atomics
// are larger: there the memory is a heap copy that only threads read.)
#[cfg(not(loom))]
const _: () = {
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, capacity) == 4);
    assert!(offset_of!(Header, slot_size) == 8);
    assert!(offset_of!(Header, stride) == 12);
    assert!(offset_of!(Header, max_message) == 16);
    assert!(offset_of!(Header, shutdown) == 24);
    assert!(offset_of!(Header, joinable) == 28);
    assert!(offset_of!(Header, bell) == 32);
    assert!(offset_of!(Header, attached) == 36);
    assert!(offset_of!(Header, unbounded) == 40);
    assert!(offset_of!(Header, freed) == 44);
    assert!(offset_of!(Header, group) == 48);
    assert!(offset_of!(Header, tail) == 64);
    assert!(offset_of!(Header, head) == 128);
    assert!(offset_of!(Header, items) == 192);
    assert!(offset_of!(Header, space) == 256);
    assert!(offset_of!(WaitWord, word) == 0);
    assert!(offset_of!(WaitWord, sleepers) == 4);
    assert!(offset_of!(WaitWord, bell) == 8);
    assert!(size_of::<Line<WaitWord>>() == 64);
    assert!(offset_of!(Header, unfinished) == 320);
    assert!(offset_of!(Header, done) == 328);
    assert!(offset_of!(Header, joiners) == 332);
    assert!(offset_of!(Header, sealed) == 336);
    assert!(offset_of!(Header, next) == 340);
    assert!(offset_of!(Header, reserved) == 344);
    assert!(offset_of!(Header, chain) == 376);
    assert!(size_of::<Name>() == NAME_MAX);
    assert!(offset_of!(Header, spill_list) == 384);
    assert!(offset_of!(SpillEntry, state) == 0);
    assert!(offset_of!(SpillEntry, name_len) == 4);
    assert!(offset_of!(SpillEntry, size) == 8);
    assert!(offset_of!(SpillEntry, name) == 16);
    assert!(size_of::<SpillEntry>() == 64);
    assert!(HEADER == 384 + SPILL_ENTRIES * 64);
    assert!(align_of::<Header>() == 64);
    assert!(offset_of!(Slot, ctl) == 0);
    assert!(offset_of!(Slot, len) == 8);
    assert!(SLOT_DATA == 16);
    assert!(SPILL_SIZE_AT == 32 && SPILL_OFFSET_AT == 40 && SPILL_RECORD == 48);
};

/// In a ring's `next` word: the link is being made by the process in the low bits.
pub(super) const LINKING: u32 = 1 << 31;
/// In a ring's `next` word: the next ring is linked (it exists, under the chain's name and its
/// index).
pub(super) const LINKED: u32 = 1;

// Low half of a slot's control word.
pub(super) const IDLE: u32 = 0;
pub(super) const WRITING: u32 = 1 << 31;
pub(super) const READING: u32 = 1 << 30;
pub(super) const VOID: u32 = 1 << 29;
pub(super) const PID_MASK: u32 = VOID - 1;

/// Set in a slot's length word when the data is a [`SpillRecord`]; the rest of the word is the
/// length of the chunk's name.
pub(super) const SPILLED: u64 = 1 << 63;

pub(super) const OPEN: u32 = 0;
pub(super) const SHUT: u32 = 1;
pub(super) const SHUT_IMMEDIATE: u32 = 2;

pub(super) fn ctl(seq: u32, state: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(state)
}

pub(super) fn split(ctl: u64) -> (u32, u32) {
    ((ctl >> 32) as u32, ctl as u32)
}

/// `a - b` as a signed distance between wrapping sequences.
pub(super) fn dist(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The sequence of a slot free for the writer of `pos`.
pub(super) fn free_seq(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

/// The sequence of a slot holding the message of `pos`.
pub(super) fn full_seq(pos: u64) -> u32 {
    free_seq(pos).wrapping_add(1)
}

/// A ring's memory: anonymous for ring 0 (it travels as a handle), named for the later rings of
/// an unbounded queue (processes open them by the name ring 0 links).
pub(super) enum Mem {
    Anon(Segment),
    #[cfg_attr(loom, allow(dead_code))]
    Named(SharedMemory),
    /// Heap memory holding a header and slots of loom atomics, for the model checks.
    #[cfg(loom)]
    Heap(std::sync::Arc<Heap>),
}

impl Mem {
    pub(super) fn as_ptr(&self) -> *mut u8 {
        match self {
            Mem::Anon(s) => s.as_ptr(),
            Mem::Named(s) => s.as_ptr(),
            #[cfg(loom)]
            Mem::Heap(h) => h.ptr.as_ptr(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Mem::Anon(s) => s.len(),
            Mem::Named(s) => s.size(),
            #[cfg(loom)]
            Mem::Heap(h) => h.layout.size(),
        }
    }

    /// Opens a later ring's memory by its name (see `chain`); an error once the name is
    /// unlinked.
    pub(super) fn open(name: &str) -> proc_core::Result<Mem> {
        #[cfg(loom)]
        return Heap::open(name)
            .map(Mem::Heap)
            .ok_or_else(|| proc_core::Error::invalid_argument(format!("no model ring named {name}")));
        #[cfg(not(loom))]
        SharedMemory::open(name).map(Mem::Named)
    }

    /// Creates a later ring's memory of `len` bytes under `name` (see `chain`), for a ring of
    /// `capacity` slots of `stride` bytes. A half-made segment left under that name by a linker
    /// that died (no process opens a name before its link is made) is unlinked first.
    pub(super) fn create(name: &str, len: usize, capacity: usize, stride: usize) -> proc_core::Result<Mem> {
        #[cfg(loom)]
        {
            let _ = len;
            if Heap::open(name).is_some() {
                unlink_name(name);
            }
            Ok(Mem::Heap(Heap::named(len, capacity, stride, name)))
        }
        #[cfg(not(loom))]
        {
            let _ = (capacity, stride);
            match SharedMemory::create_named(name, len) {
                Err(e) if e.is_already_exists() => {
                    unlink_name(name);
                    SharedMemory::create_named(name, len).map(Mem::Named)
                }
                created => created.map(Mem::Named),
            }
        }
    }

    /// The header at the start of this memory, if the memory is long enough and aligned for
    /// one (a mapping is page-aligned). Checked once, when a ring maps the memory.
    pub(super) fn header(&self) -> Option<Mapped<Header>> {
        let ptr = NonNull::new(self.as_ptr())?.cast::<Header>();
        (self.len() >= HEADER && ptr.as_ptr().is_aligned()).then_some(Mapped(ptr))
    }
}

/// A ring's memory in the model checks: a header and `capacity` slots of `stride` bytes, on the
/// heap, built in place (loom's atomics must be made, not found in zeroed memory).
#[cfg(loom)]
pub(super) struct Heap {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
    capacity: usize,
    stride: usize,
    /// A later ring's name (see `chain`).
    name: Option<String>,
    /// The name was unlinked (the kernel's side: `open` fails from then on, and a process that
    /// finds it so sees what the unlinker did before).
    unlinked: ::loom::sync::atomic::AtomicBool,
    /// The same, as an oracle outside the model: set at the instant of the unlink in the
    /// execution loom runs, so that the model asserts on it (no message is committed into a
    /// released ring) whatever a model process may see yet.
    pub(super) released: std::sync::atomic::AtomicBool,
}

#[cfg(loom)]
::loom::lazy_static! {
    /// The named rings of the model's execution, as the system's named shared memory.
    static ref NAMED: std::sync::Mutex<Vec<std::sync::Arc<Heap>>> = std::sync::Mutex::new(Vec::new());
}

#[cfg(loom)]
impl Heap {
    /// `len` bytes: a header, then `capacity` slots of `stride` bytes.
    pub(super) fn new(len: usize, capacity: usize, stride: usize) -> Self {
        assert!(len >= HEADER + capacity * stride, "room for a model ring's slots");
        let layout =
            std::alloc::Layout::from_size_align(len, align_of::<Header>()).expect("a model ring's layout");
        // SAFETY: `layout` is not empty (it holds a header).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("memory for a model ring");
        // SAFETY: the allocation is `HEADER` bytes or more and aligned for a header.
        unsafe { ptr.cast::<Header>().as_ptr().write(Header::default()) };
        for i in 0..capacity {
            let slot = Slot { ctl: AtomicU64::new(0), len: AtomicU64::new(0), data: Default::default() };
            // SAFETY: slot `i` lies inside the allocation, aligned (the stride is a multiple of
            // 64, as is `HEADER`).
            unsafe { ptr.as_ptr().add(HEADER + i * stride).cast::<Slot>().write(slot) };
        }
        Heap {
            ptr,
            layout,
            capacity,
            stride,
            name: None,
            unlinked: ::loom::sync::atomic::AtomicBool::new(false),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A new later ring, which others open by its name.
    pub(super) fn named(len: usize, capacity: usize, stride: usize, name: &str) -> std::sync::Arc<Self> {
        let mut heap = Heap::new(len, capacity, stride);
        heap.name = Some(name.to_owned());
        let heap = std::sync::Arc::new(heap);
        let mut named = NAMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        named.push(std::sync::Arc::clone(&heap));
        heap
    }

    /// The ring of that name, unless unlinked.
    fn open(name: &str) -> Option<std::sync::Arc<Self>> {
        let heap = {
            let named = NAMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            named.iter().rev().find(|h| h.name.as_deref() == Some(name)).cloned()
        }?;
        (!heap.unlinked.load(Ordering::Acquire)).then_some(heap)
    }

    /// Whether this ring was released (see `released`).
    pub(super) fn is_released(&self) -> bool {
        self.released.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(loom)]
impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: `new` wrote a header and `capacity` slots there, which nothing uses any more.
        unsafe {
            std::ptr::drop_in_place(self.ptr.cast::<Header>().as_ptr());
            for i in 0..self.capacity {
                std::ptr::drop_in_place(self.ptr.as_ptr().add(HEADER + i * self.stride).cast::<Slot>());
            }
            std::alloc::dealloc(self.ptr.as_ptr(), self.layout);
        }
    }
}

// SAFETY: the memory is atomics (and the bytes a claimed slot's holder alone touches), as a
// shared segment's.
#[cfg(loom)]
unsafe impl Send for Heap {}
// SAFETY: as for `Send`.
#[cfg(loom)]
unsafe impl Sync for Heap {}

/// A pointer into a queue's shared memory, checked when the memory was mapped; the ring that
/// holds it keeps that memory mapped.
pub(super) struct Mapped<T>(pub(super) NonNull<T>);

impl<T> Clone for Mapped<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Mapped<T> {}

// SAFETY: a `Mapped` is only dereferenced (by its holder, while the memory is mapped) to a shared
// reference, and what it points to is shared between processes anyway: a `Header` is atomics
// only, and the bytes of a slot are reached only by the process that claimed it.
unsafe impl<T: Sync> Send for Mapped<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Sync> Sync for Mapped<T> {}

/// Unlinks the later ring `name` if it is still there, and has the resource tracker forget it
/// (it neither warns of it nor unlinks it again). The processes that map it keep their memory
/// until they unmap it. Whether this call unlinked it.
pub(super) fn unlink_name(name: &str) -> bool {
    #[cfg(loom)]
    return Heap::open(name).is_some_and(|heap| {
        heap.released.store(true, Ordering::SeqCst);
        heap.unlinked.store(true, Ordering::Release);
        true
    });
    #[cfg(not(loom))]
    match SharedMemory::open_unverified(name) {
        Ok(shm) => shm.unlink().is_ok(),
        Err(e) if e.is_not_found() => false,
        // Half made (no size yet): unlinked by its name alone; the tracker unlinks it again at
        // the end, silently, as a name that is gone.
        Err(_) => {
            std::ffi::CString::new(format!("/{name}")).is_ok_and(|c| proc_os::shm::shm_unlink(&c).is_ok())
        }
    }
}

/// Puts a named segment of the queue in the queue's tracker group (`root` is ring 0's header).
pub(super) fn group_segment(root: &Header, shm: &SharedMemory) {
    let group = root.group.load(Ordering::Relaxed);
    if group != 0 {
        proc_core::shm::group_segment(shm.name(), group);
    }
}
