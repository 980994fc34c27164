//! `Queue`, `SimpleQueue` and `JoinableQueue`: a multi-producer multi-consumer ring of slots in
//! shared memory, with reserve → write → commit on both sides.
//!
//! # Layout
//!
//! One anonymous shared segment: a header (positions, counts, wait words, each on its own cache
//! line) and `capacity` slots. A slot is a control word (`u64`: a sequence number in the high half,
//! a state in the low half), a length word and `slot_size` bytes of data.
//!
//! # Protocol
//!
//! The ring follows Dmitry Vyukov's bounded MPMC queue, with 64-bit positions: slot
//! `pos % capacity` is free for the producer of position `pos` when its sequence is `2 pos`, and
//! holds that position's message when its sequence is `2 pos + 1` (sequences are the low 32 bits;
//! doubling keeps a capacity of one unambiguous). The difference from the textbook version is where a position is
//! claimed: by a compare-and-swap on the *slot's* control word that also records the claimer's
//! pid (`WRITING | pid` or `READING | pid`); the shared `tail` and `head` only follow, advanced
//! by whoever sees a claimed slot. So at every instant a slot is free, claimed by a known process,
//! or committed, and a process killed at any point leaves a state the others can repair:
//!
//! - a producer killed while writing leaves `WRITING | pid` at sequence `pos`: a consumer that
//!   finds that pid dead turns the slot into a *void* commit, which consumers skip. No torn
//!   message is ever read, and the queue goes on.
//! - a consumer killed while reading leaves `READING | pid`: a producer that finds the slot full
//!   and that pid dead frees it. Only that message is lost.
//!
//! Liveness is checked only on slow paths: after a wait slice of [`LIVENESS_CHECK`] without
//! progress, and by the non-blocking forms before they give up.
//!
//! Messages whose serialized form does not fit in a slot *spill*: the producer writes them into
//! its spill chunk, a named shared-memory segment (registered with proc-core's resource tracker)
//! that holds many messages, before claiming a slot, and the slot carries the chunk's name and the
//! message's place in it; the consumer reads it from there and counts it read (see [`spill`]).
//!
//! Blocked callers sleep on two wait words, `items` (bumped by every commit) and `space` (bumped
//! by every release), through proc-sync's wait/wake seam, after a short spin. A sleeper first sets
//! a flag next to the word; a signaller wakes only if it finds the flag set, and clears it, so the
//! fast paths make no system call when nobody sleeps, and one wake-up serves a batch.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_core::handle::{export_fd, import_fd};
use proc_core::shm::{Segment, SharedMemory};
use proc_sync::raw;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod spill;

use spill::{SpillError, H_SPILL_LIST, SPILL_ENTRIES};

/// How many times a blocked call looks (with a CPU pause) before it yields, in a process that may
/// run on more than one CPU (see [`spins`]).
const SPIN: u32 = 32;

/// How many times it then yields its CPU (a peer on the same CPU gets to run; one on another CPU
/// is found awake, without the wake-up from sleep that costs tens of microseconds) before it sleeps.
const YIELDS: u32 = 64;

/// How many times `put` on an unbounded queue yields its CPU, when a ring is full and a consumer
/// is about, before it grows the queue by a ring: enough for a consumer on the same CPU to run,
/// few enough that `put` never waits long.
const GROW_YIELDS: u32 = 8;

/// A message at least this large makes `put` yield its CPU a little for a consumer first, while
/// the queue holds messages (see `Ring::make_way`): larger than a core's cache, and long to copy
/// next to a yield.
const LARGE: u64 = 1 << 20;

/// How many times `put` of a [`LARGE`] message yields at most.
const LARGE_YIELDS: u32 = 4;

/// How long a blocked call waits before it checks whether the process it waits on still runs.
pub const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// The default number of data bytes in a slot; larger messages spill to a chunk outside the ring.
pub const DEFAULT_SLOT_SIZE: usize = 112;

/// The default largest message: 16 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 30;

/// The capacity of an unbounded queue's first ring, in messages; when it is full the queue links
/// a ring twice as large (up to 2^20 messages each) and `put` goes on there, so `put` never
/// waits for room (when a consumer is about, it first yields its CPU a few times, so that one on
/// the same CPU can drain the ring).
pub const UNBOUNDED_INITIAL_CAPACITY: u32 = 1 << 12;

const MAGIC: u32 = 0x6d70_7175; // "mpqu"

// Header words (byte offsets), each group on its own 64-byte line.
const H_MAGIC: usize = 0;
const H_CAPACITY: usize = 4;
const H_SLOT_SIZE: usize = 8;
const H_STRIDE: usize = 12;
const H_MAX_MESSAGE: usize = 16; // u64
const H_SHUTDOWN: usize = 24;
const H_TAIL: usize = 64; // u64
const H_HEAD: usize = 128; // u64
const H_ITEMS: usize = 192;
const H_GETTERS: usize = 196; // set by a getter about to sleep, cleared by the waker
const H_JOINABLE: usize = 28; // set by `JoinableQueue::new`
const H_BELL: usize = 32; // set by a `wait` that watches the queue, cleared by the ringer
const H_SPACE: usize = 256;
const H_PUTTERS: usize = 260; // likewise for putters
const H_UNFINISHED: usize = 320; // u64
const H_DONE: usize = 328;
const H_JOINERS: usize = 332;
const H_ATTACHED: usize = 36; // processes holding the queue (a killed one never leaves)
const H_UNBOUNDED: usize = 40; // the queue grows a chain of rings instead of blocking `put`
const H_GROUP: usize = 48; // u64: the resource tracker's group of the queue's named segments
                           // In every ring of an unbounded queue: sealed (no new writes: go to the next ring), and the link
                           // to the next ring (0: none; LINKING | pid: being linked; else the length of its name).
const H_SEALED: usize = 336;
const H_NEXT: usize = 340;
const H_NEXT_NAME: usize = 344; // 32 bytes
const LINKING: u32 = 1 << 31;

/// The largest ring an unbounded queue grows to; later rings keep this capacity.
const MAX_RING: u32 = 1 << 20;

/// The most rings an unbounded queue links (the first 8 doublings reach MAX_RING).
const MAX_CHAIN: usize = 64;
// The spill free list (see `spill`) ends the header.
const HEADER: usize = H_SPILL_LIST + SPILL_ENTRIES * 64;

/// Spill chunks up to this size are kept for reuse; larger ones are unlinked after one use,
/// so that a queue that once carried a huge message does not keep its memory.
const RECYCLE_MAX: usize = 64 << 20;

// Slot layout.
const S_CTL: usize = 0; // u64
const S_LEN: usize = 8; // u64
const S_DATA: usize = 16;

// Low half of a slot's control word.
const IDLE: u32 = 0;
const WRITING: u32 = 1 << 31;
const READING: u32 = 1 << 30;
const VOID: u32 = 1 << 29;
const PID_MASK: u32 = VOID - 1;

/// Set in a slot's length word when the data is a spill record: the chunk's name (up to 30
/// bytes; its length in the length word), at byte 32 the message's size and at byte 40 its
/// offset in the chunk.
const SPILLED: u64 = 1 << 63;
const SPILL_SIZE_AT: usize = 32;
const SPILL_OFFSET_AT: usize = 40;
const SPILL_RECORD: usize = 48;

const OPEN: u32 = 0;
const SHUT: u32 = 1;
const SHUT_IMMEDIATE: u32 = 2;

fn ctl(seq: u32, state: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(state)
}

fn split(ctl: u64) -> (u32, u32) {
    ((ctl >> 32) as u32, ctl as u32)
}

/// How many times a blocked call spins before it yields: [`SPIN`] where this process may run on
/// more than one CPU, none where it may use only one (pinned, or a one-CPU quota). There a peer
/// can only answer once we give up the CPU, so each pause would be time taken from it. Read once per
/// process (children made by fork inherit the answer): a process pinned after its first blocking
/// queue call keeps spinning.
fn spins() -> u32 {
    // 0: not known yet; 1: no spinning; 2: spinning.
    static KNOWN: AtomicU32 = AtomicU32::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => 0,
        2 => SPIN,
        _ => {
            let many = proc_core::process_cpu_count() > 1;
            KNOWN.store(if many { 2 } else { 1 }, Ordering::Relaxed);
            if many {
                SPIN
            } else {
                0
            }
        }
    }
}

/// `a - b` as a signed distance between wrapping sequences.
fn dist(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The sequence of a slot free for the writer of `pos`.
fn free_seq(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

/// The sequence of a slot holding the message of `pos`.
fn full_seq(pos: u64) -> u32 {
    free_seq(pos).wrapping_add(1)
}

/// Why a `put` failed; every variant hands the value back.
#[non_exhaustive]
pub enum PutError<T> {
    /// No room (`put_nowait`).
    Full(T),
    /// No room within the timeout (`put_timeout`).
    Timeout(T),
    /// This process closed the queue.
    Closed(T),
    /// The queue was shut down.
    ShutDown(T),
    /// The serialized value is larger than the queue's maximum message size; nothing was written.
    TooLarge {
        /// The value.
        value: T,
        /// Its serialized size.
        size: u64,
        /// The queue's maximum.
        max: u64,
    },
    /// The value cannot be serialized (or holds a handle, which only crosses through a
    /// `Connection` or as a start argument); nothing was written.
    Serialize {
        /// The value.
        value: T,
        /// What the serializer said.
        message: String,
    },
    /// The system refused shared memory for a large message.
    Os {
        /// The value.
        value: T,
        /// The error.
        error: proc_core::Error,
    },
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Timeout(v) | PutError::Closed(v) | PutError::ShutDown(v) => v,
            PutError::TooLarge { value, .. }
            | PutError::Serialize { value, .. }
            | PutError::Os { value, .. } => value,
        }
    }

    /// Whether the queue had no room (`Full` or `Timeout`).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_) | PutError::Timeout(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::ShutDown(_) => f.write_str("ShutDown(..)"),
            PutError::TooLarge { size, max, .. } => {
                f.debug_struct("TooLarge").field("size", size).field("max", max).finish_non_exhaustive()
            }
            PutError::Serialize { message, .. } => {
                f.debug_struct("Serialize").field("message", message).finish_non_exhaustive()
            }
            PutError::Os { error, .. } => f.debug_struct("Os").field("error", error).finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Timeout(_) => f.write_str("the queue stayed full until the timeout"),
            PutError::Closed(_) => f.write_str("the queue is closed in this process"),
            PutError::ShutDown(_) => f.write_str("the queue was shut down"),
            PutError::TooLarge { size, max, .. } => {
                write!(f, "a message of {size} bytes is larger than the queue's maximum of {max} bytes")
            }
            PutError::Serialize { message, .. } => write!(f, "cannot serialize the value: {message}"),
            PutError::Os { error, .. } => write!(f, "cannot store a large message: {error}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Os { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why a `get` failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing to take (`get_nowait`).
    Empty,
    /// Nothing came within the timeout (`get_timeout`).
    Timeout,
    /// This process closed the queue.
    Closed,
    /// The queue was shut down and (unless immediately) drained.
    ShutDown,
    /// A message was taken but does not deserialize as the queue's type (it is gone).
    Deserialize(String),
    /// A large message's segment could not be opened (it is gone).
    Os(proc_core::Error),
}

impl GetError {
    /// Whether nothing was there (`Empty` or `Timeout`).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty | GetError::Timeout)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Timeout => f.write_str("the queue stayed empty until the timeout"),
            GetError::Closed => f.write_str("the queue is closed in this process"),
            GetError::ShutDown => f.write_str("the queue was shut down"),
            GetError::Deserialize(m) => write!(f, "a message does not deserialize: {m}"),
            GetError::Os(e) => write!(f, "cannot read a large message: {e}"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why `task_done` or `join` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// `task_done` called more times than items were put.
    TooManyTaskDone,
    /// `join_timeout` ran out with tasks unfinished.
    Timeout,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::TooManyTaskDone => "task_done() called too many times",
            JoinError::Timeout => "tasks were still unfinished at the timeout",
        })
    }
}

impl std::error::Error for JoinError {}

/// Options for a [`Queue`]: Python's `maxsize`, plus the slot size and the largest message.
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    maxsize: u32,
    slot_size: usize,
    max_message: u64,
}

impl QueueBuilder {
    /// How many messages the queue holds before `put` blocks (`0`: unbounded, Python's default).
    pub fn maxsize(mut self, maxsize: u32) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// Data bytes per slot (default [`DEFAULT_SLOT_SIZE`]); a message whose serialized form is
    /// larger spills into a shared chunk outside the ring (no system call in the steady state).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// The largest serialized message accepted (default [`DEFAULT_MAX_MESSAGE`]); `put` of a
    /// larger one fails with [`PutError::TooLarge`] before anything is written.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// A capacity above 2^30 messages or a slot of more than 1 GiB (an error for which
    /// [`proc_core::Error::is_invalid_input`] holds), or the system refuses the shared
    /// memory.
    pub fn build<T>(self) -> proc_core::Result<Queue<T>> {
        let capacity = if self.maxsize == 0 { UNBOUNDED_INITIAL_CAPACITY } else { self.maxsize };
        let ring = Ring::new(capacity, self.slot_size, self.max_message, None)?;
        if self.maxsize == 0 {
            ring.u32_at(H_UNBOUNDED).store(1, Ordering::Relaxed);
        }
        Ok(Queue::from_ring(ring))
    }
}

/// The shared ring: the segment and its geometry, read once from the header, and the doorbell
/// (a socket pair) that lets `wait` watch the queue with poll(2).
struct Ring {
    /// Rings after this one that this process has mapped (ring 0 of an unbounded queue only).
    chain: Box<[std::sync::OnceLock<Box<Ring>>]>,
    /// This process' reading and writing ring in the chain (0: this one).
    read_at: std::sync::atomic::AtomicUsize,
    write_at: std::sync::atomic::AtomicUsize,
    seg: Arc<Mem>,
    /// Ring 0's memory, for a later ring of a chain: the queue-wide words live there.
    root: Option<Arc<Mem>>,
    /// The queue's doorbell (ring 0's; a later ring holds duplicates).
    bell: (OwnedFd, OwnedFd),
    /// Spill chunks this process has mapped, most recently used last.
    spills: std::sync::Mutex<Vec<Arc<SharedMemory>>>,
    /// The chunk this process writes large messages into (ring 0 only).
    writer: std::sync::Mutex<spill::Writer>,
    capacity: u32,
    slot_size: usize,
    stride: usize,
    max_message: u64,
    /// Python's per-process `close()`.
    closed: AtomicBool,
    /// The reads of the whole queue that this process saw at its last large `put` (see
    /// `Ring::make_way`).
    way_reads: AtomicU64,
}

/// A ring's memory: anonymous for ring 0 (it travels as a handle), named for the later rings of
/// an unbounded queue (processes open them by the name ring 0 links).
enum Mem {
    Anon(Segment),
    Named(SharedMemory),
}

impl Mem {
    fn as_ptr(&self) -> *mut u8 {
        match self {
            Mem::Anon(s) => s.as_ptr(),
            Mem::Named(s) => s.as_ptr(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Mem::Anon(s) => s.len(),
            Mem::Named(s) => s.size(),
        }
    }
}

/// A header word of `mem` (in bounds and aligned, asserted).
fn word32(mem: &Mem, offset: usize) -> &AtomicU32 {
    assert!(offset % 4 == 0 && offset + 4 <= mem.len(), "queue word {offset} out of range");
    // SAFETY: in bounds (asserted) and 4-byte aligned (the mapping is page-aligned); the memory
    // lives as long as `mem`, and shared words are only accessed atomically.
    unsafe { AtomicU32::from_ptr(mem.as_ptr().add(offset).cast()) }
}

fn word64(mem: &Mem, offset: usize) -> &AtomicU64 {
    assert!(offset % 8 == 0 && offset + 8 <= mem.len(), "queue word {offset} out of range");
    // SAFETY: as in `word32`, with 8-byte alignment.
    unsafe { AtomicU64::from_ptr(mem.as_ptr().add(offset).cast()) }
}

/// Why a ring could not give a message.
enum Fail {
    Get(GetError),
    /// The ring is sealed and drained: read the next ring of the chain.
    Moved,
}

/// Why no slot could be claimed for a `put`.
enum ClaimFail {
    Timeout,
    /// Shut down, or closed in this process.
    Stopped,
    Os(proc_core::Error),
}

/// A slot claimed for writing or reading.
struct Claim {
    pos: u64,
}

impl Ring {
    /// A new ring: ring 0 of a queue (anonymous memory and a doorbell: the queue's handle), or,
    /// with `root`, a later ring of an unbounded queue (named memory that others open by name).
    fn new(
        capacity: u32,
        slot_size: usize,
        max_message: u64,
        root: Option<(Arc<Mem>, (OwnedFd, OwnedFd))>,
    ) -> proc_core::Result<Self> {
        if capacity > 1 << 30 || slot_size > 1 << 30 {
            return Err(proc_core::Error::invalid_argument(
                "a queue holds at most 2^30 messages in slots of at most 1 GiB",
            ));
        }
        // Room for a spill record in every slot.
        let slot_size = slot_size.max(SPILL_RECORD);
        let stride = (S_DATA + slot_size).next_multiple_of(64);
        let len = HEADER + stride * capacity as usize;
        let (seg, bell, root) = match root {
            None => {
                let bell = crate::sys::socketpair().map_err(|e| {
                    proc_core::Error::invalid_argument(format!("cannot create a queue's doorbell: {e}"))
                })?;
                (Mem::Anon(Segment::new(len)?), bell, None)
            }
            Some((root, bell)) => {
                let shm = SharedMemory::create(len)?;
                group_segment(&root, &shm);
                (Mem::Named(shm), bell, Some(root))
            }
        };
        let ring = Ring {
            chain: (0..MAX_CHAIN).map(|_| std::sync::OnceLock::new()).collect(),
            read_at: Default::default(),
            write_at: Default::default(),
            seg: Arc::new(seg),
            root,
            bell,
            spills: std::sync::Mutex::new(Vec::new()),
            writer: Default::default(),
            capacity,
            slot_size,
            stride,
            max_message,
            closed: AtomicBool::new(false),
            way_reads: AtomicU64::new(0),
        };
        ring.u32_at(H_ATTACHED).store(1, Ordering::Relaxed);
        if ring.root.is_none() {
            ring.u64_at(H_GROUP).store(proc_core::shm::new_group(), Ordering::Relaxed);
        }
        ring.u32_at(H_CAPACITY).store(capacity, Ordering::Relaxed);
        ring.u32_at(H_SLOT_SIZE).store(slot_size as u32, Ordering::Relaxed);
        ring.u32_at(H_STRIDE).store(stride as u32, Ordering::Relaxed);
        ring.u64_at(H_MAX_MESSAGE).store(max_message, Ordering::Relaxed);
        for i in 0..capacity {
            ring.slot_ctl(u64::from(i)).store(ctl(free_seq(u64::from(i)), IDLE), Ordering::Relaxed);
        }
        ring.u32_at(H_MAGIC).store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// Reads the geometry from a ring's header (checked against its length): ring 0 from a
    /// handle (`bell` given), or a later ring opened by name (`root` given).
    fn attach(seg: Mem, bell: (OwnedFd, OwnedFd), root: Option<Arc<Mem>>) -> proc_core::Result<Self> {
        let counted = root.is_none();
        let mut ring = Ring {
            chain: (0..MAX_CHAIN).map(|_| std::sync::OnceLock::new()).collect(),
            read_at: Default::default(),
            write_at: Default::default(),
            seg: Arc::new(seg),
            root,
            bell,
            spills: std::sync::Mutex::new(Vec::new()),
            writer: Default::default(),
            capacity: 0,
            slot_size: 0,
            stride: 64,
            max_message: 0,
            closed: AtomicBool::new(false),
            way_reads: AtomicU64::new(0),
        };
        if ring.seg.len() < HEADER {
            return Err(proc_core::Error::invalid_argument("not a queue's shared memory"));
        }
        if ring.u32_at(H_MAGIC).load(Ordering::Acquire) == MAGIC {
            let capacity = ring.u32_at(H_CAPACITY).load(Ordering::Relaxed);
            let slot_size = ring.u32_at(H_SLOT_SIZE).load(Ordering::Relaxed) as usize;
            let stride = ring.u32_at(H_STRIDE).load(Ordering::Relaxed) as usize;
            let fits = stride >= S_DATA + slot_size
                && stride % 8 == 0
                && capacity > 0
                && (capacity as usize)
                    .checked_mul(stride)
                    .and_then(|n| n.checked_add(HEADER))
                    .is_some_and(|n| n <= ring.seg.len());
            if !fits {
                return Err(proc_core::Error::invalid_argument("a queue's header does not match its memory"));
            }
            ring.capacity = capacity;
            ring.slot_size = slot_size;
            ring.stride = stride;
            ring.max_message = ring.u64_at(H_MAX_MESSAGE).load(Ordering::Relaxed);
            if counted {
                ring.u32_at(H_ATTACHED).fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(ring)
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        word32(&self.seg, offset)
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        word64(&self.seg, offset)
    }

    /// A queue-wide header word: in ring 0's memory, whichever ring of the chain this is.
    fn q32(&self, offset: usize) -> &AtomicU32 {
        word32(self.root.as_deref().unwrap_or(&self.seg), offset)
    }

    fn q64(&self, offset: usize) -> &AtomicU64 {
        word64(self.root.as_deref().unwrap_or(&self.seg), offset)
    }

    /// The start of ring 0's memory, whichever ring of the chain this is.
    fn qptr(&self) -> *mut u8 {
        self.root.as_deref().unwrap_or(&self.seg).as_ptr()
    }

    fn slot_offset(&self, pos: u64) -> usize {
        HEADER + (pos % u64::from(self.capacity)) as usize * self.stride
    }

    fn slot_ctl(&self, pos: u64) -> &AtomicU64 {
        self.u64_at(self.slot_offset(pos) + S_CTL)
    }

    fn slot_len(&self, pos: u64) -> &AtomicU64 {
        self.u64_at(self.slot_offset(pos) + S_LEN)
    }

    /// The data bytes of a slot this process has claimed.
    fn slot_data(&self, claim: &Claim) -> *mut u8 {
        let offset = self.slot_offset(claim.pos) + S_DATA;
        // SAFETY: `attach` checked that every slot's data lies inside the mapping.
        unsafe { self.seg.as_ptr().add(offset) }
    }

    fn tail(&self) -> &AtomicU64 {
        self.u64_at(H_TAIL)
    }

    fn head(&self) -> &AtomicU64 {
        self.u64_at(H_HEAD)
    }

    fn shutdown_state(&self) -> u32 {
        self.q32(H_SHUTDOWN).load(Ordering::SeqCst)
    }

    /// Claims the next position for writing; `None` if the queue is full (after repairing a
    /// slot left by a dead reader, if `repair`).
    fn claim_write(&self, repair: bool) -> Option<Claim> {
        let me = raw::pid() & PID_MASK;
        let tail = self.tail();
        loop {
            let pos = tail.load(Ordering::Acquire);
            let word = self.slot_ctl(pos);
            let cur = word.load(Ordering::Acquire);
            let (seq, state) = split(cur);
            let d = dist(seq, free_seq(pos));
            if d == 0 && state == IDLE {
                if word
                    .compare_exchange(
                        cur,
                        ctl(free_seq(pos), WRITING | me),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    let _ =
                        tail.compare_exchange(pos, pos.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed);
                    return Some(Claim { pos });
                }
            } else if d >= 0 {
                // Claimed or committed at this lap: help the tail along.
                let _ = tail.compare_exchange(pos, pos.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed);
            } else if tail.load(Ordering::Acquire) == pos {
                // The previous lap's message is still there: full, unless its reader died.
                if repair && state & READING != 0 && !raw::process_alive(state & PID_MASK) {
                    self.free_dead_read(pos, cur);
                    continue;
                }
                return None;
            }
        }
    }

    /// Frees a slot whose reader died mid-read (its message is lost).
    ///
    /// Several putters may find the same dead reader (`cur` is what each loaded): only the one
    /// whose compare-and-swap frees the slot counts its spilled message read. Counting before the
    /// swap let each of them count it, and the chunk then counted one unread message too few: its
    /// producer started again at its front while a message there was still unread.
    fn free_dead_read(&self, pos: u64, cur: u64) {
        // The slot of `pos` is the one the dead reader held (one lap earlier). Its spill record is
        // copied out first, since once the slot is free a putter may write over it; the copy is
        // used only if the swap below succeeds, which shows the slot was still in state `cur`
        // (held by the dead reader, so written by no one) all along.
        let spilled = self.dead_read_spill(&Claim { pos });
        if self
            .slot_ctl(pos)
            .compare_exchange(cur, ctl(free_seq(pos), IDLE), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Killed here, this process leaves the message counted unread: its chunk is never
            // reused (the tracker group frees it with the queue), but never reused too early.
            if let Some(name) = spilled {
                self.drop_spilled(&name);
            }
            tracing::warn!(pid = split(cur).1 & PID_MASK, "a queue reader died mid-get; its message is lost");
            self.lost_message();
            self.signal_space();
        }
    }

    /// Commits a written slot (or voids it) and wakes a getter.
    fn commit(&self, claim: Claim, len: u64, void: bool) {
        self.slot_len(claim.pos).store(len, Ordering::Relaxed);
        let state = if void { VOID } else { IDLE };
        self.slot_ctl(claim.pos).store(ctl(full_seq(claim.pos), state), Ordering::Release);
        self.signal_items();
    }

    /// After a commit: wakes getters (they sleep on ring 0's words) and rings the doorbell.
    fn signal_items(&self) {
        Self::signal(self.q32(H_ITEMS), self.q32(H_GETTERS));
        // `signal` fenced: a `wait` that armed the bell before our commit is seen here.
        let bell = self.q32(H_BELL);
        if bell.load(Ordering::Relaxed) != 0 && bell.swap(0, Ordering::SeqCst) != 0 {
            crate::sys::ring(self.bell.1.as_fd());
        }
    }

    /// A duplicate of the doorbell, for a later ring of the chain.
    fn bell_dup(&self) -> proc_core::Result<(OwnedFd, OwnedFd)> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| proc_core::Error::invalid_argument(format!("cannot share a doorbell: {e}")))
        };
        Ok((dup(&self.bell.0)?, dup(&self.bell.1)?))
    }

    /// Whether no new message may be written here: go to the next ring of the chain.
    fn sealed(&self) -> bool {
        self.u32_at(H_SEALED).load(Ordering::SeqCst) != 0
    }

    /// Sealed and empty, with no write in flight: readers move to the next ring for good (a
    /// writer that claims after the seal voids its slot and moves on too).
    fn moved(&self) -> bool {
        self.sealed() && {
            let tail = self.tail().load(Ordering::SeqCst);
            self.head().load(Ordering::SeqCst) == tail
        }
    }

    fn unbounded(&self) -> bool {
        self.q32(H_UNBOUNDED).load(Ordering::Relaxed) != 0
    }

    /// The name of the next ring, once linked.
    fn next_name(&self) -> Option<String> {
        let len = self.u32_at(H_NEXT).load(Ordering::Acquire);
        if len == 0 || len & LINKING != 0 || len > 32 {
            return None;
        }
        let mut name = vec![0u8; len as usize];
        // SAFETY: the name lies in the header (32 bytes from H_NEXT_NAME), written once before
        // its length was published with Release.
        unsafe {
            std::ptr::copy_nonoverlapping(self.seg.as_ptr().add(H_NEXT_NAME), name.as_mut_ptr(), name.len())
        };
        String::from_utf8(name).ok()
    }

    /// Ring `idx` (from 1) of this queue's chain, this being ring 0, mapped here on first use
    /// (no lock afterwards). `None` if it does not exist (yet).
    fn ring_at(&self, idx: usize) -> proc_core::Result<Option<&Ring>> {
        let Some(slot) = idx.checked_sub(1).and_then(|i| self.chain.get(i)) else {
            return Err(proc_core::Error::invalid_argument(format!(
                "an unbounded queue grew past {MAX_CHAIN} rings"
            )));
        };
        if let Some(ring) = slot.get() {
            return Ok(Some(ring));
        }
        let link = if idx == 1 {
            self.next_name()
        } else {
            match self.ring_at(idx - 1)? {
                Some(prev) => prev.next_name(),
                None => None,
            }
        };
        let Some(name) = link else { return Ok(None) };
        let shm = SharedMemory::open(&name)?;
        let ring = Ring::attach(Mem::Named(shm), self.bell_dup()?, Some(Arc::clone(&self.seg)))?;
        // Another thread of this process may have mapped it meanwhile: either copy will do.
        let _ = slot.set(Box::new(ring));
        Ok(slot.get().map(|r| &**r))
    }

    /// Runs `f` on ring `idx` of the chain, ring 0 included; `None` if it does not exist (yet).
    fn with_ring<R>(&self, idx: usize, f: impl FnOnce(&Ring) -> R) -> proc_core::Result<Option<R>> {
        if idx == 0 {
            return Ok(Some(f(self)));
        }
        Ok(self.ring_at(idx)?.map(f))
    }

    /// `ring` (ring `idx` of this queue, this being ring 0) is full: links a next ring (twice
    /// as large, up to MAX_RING) if none is, and seals `ring`.
    fn grow(&self, ring: &Ring, idx: usize) -> proc_core::Result<()> {
        let me = raw::pid() & PID_MASK;
        let next = ring.u32_at(H_NEXT);
        loop {
            let cur = next.load(Ordering::Acquire);
            if cur != 0 && cur & LINKING == 0 {
                break;
            }
            if cur & LINKING != 0 {
                if !raw::process_alive(cur & PID_MASK) {
                    let _ = next.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
                std::thread::yield_now();
                continue;
            }
            if next.compare_exchange(0, LINKING | me, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            let capacity = ring.capacity.saturating_mul(2).min(MAX_RING).max(ring.capacity);
            let created = self.bell_dup().and_then(|bell| {
                Ring::new(capacity, self.slot_size, self.max_message, Some((Arc::clone(&self.seg), bell)))
            });
            let new = match created {
                Ok(new) => new,
                Err(e) => {
                    next.store(0, Ordering::Release);
                    return Err(e);
                }
            };
            let Mem::Named(shm) = &*new.seg else { unreachable!("a later ring is named") };
            let name = shm.name().as_bytes();
            // SAFETY: we hold the link (LINKING | our pid); its 32 name bytes lie in the header.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr(),
                    ring.seg.as_ptr().add(H_NEXT_NAME),
                    name.len().min(32),
                )
            };
            next.store(name.len().min(32) as u32, Ordering::Release);
            tracing::debug!(capacity, ring = idx + 1, "an unbounded queue grew a ring");
            if let Some(slot) = self.chain.get(idx) {
                let _ = slot.set(Box::new(new));
            }
            break;
        }
        ring.u32_at(H_SEALED).store(1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether a `get` in this process would find a message now (or a shut-down queue).
    fn get_ready(&self) -> bool {
        if self.shutdown_state() != OPEN {
            return true;
        }
        let mut idx = self.read_at.load(Ordering::Acquire);
        loop {
            let step = self.with_ring(idx, |r| {
                if r.readable() {
                    Some(true)
                } else if r.moved() {
                    None
                } else {
                    Some(false)
                }
            });
            match step {
                Ok(Some(Some(ready))) => return ready,
                Ok(Some(None)) => idx += 1,
                _ => return false,
            }
        }
    }

    /// Arms the doorbell for `wait`; whether a message (or a shutdown) is there already.
    fn arm(&self) -> bool {
        self.u32_at(H_BELL).store(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.get_ready()
    }

    fn signal_space(&self) {
        Self::signal(self.u32_at(H_SPACE), self.u32_at(H_PUTTERS));
    }

    /// After a commit or release (already stored): if someone announced a sleep, clears the
    /// announcement, bumps `word` and wakes every sleeper on it. With nobody asleep this is a fence
    /// and a load, and one wake-up serves a whole batch.
    fn signal(word: &AtomicU32, sleepers: &AtomicU32) {
        // Pairs with the fence in `sleep`: either the sleeper's re-check sees our store, or we see
        // its announcement.
        std::sync::atomic::fence(Ordering::SeqCst);
        if sleepers.load(Ordering::Relaxed) != 0 && sleepers.swap(0, Ordering::SeqCst) != 0 {
            word.fetch_add(1, Ordering::SeqCst);
            raw::wake_all(word);
        }
    }

    /// Waits until `ready` or a signal on `word` (read as `seen` before the caller last looked):
    /// a short spin, then an announced sleep.
    fn sleep(
        word: &AtomicU32,
        sleepers: &AtomicU32,
        seen: u32,
        until: Instant,
        now: Instant,
        ready: impl Fn() -> bool,
    ) {
        let spin = spins();
        for i in 0..spin + YIELDS {
            if i < spin {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if ready() || word.load(Ordering::Relaxed) != seen {
                return;
            }
        }
        // Announce, then look once more: a commit made before the announcement is seen here, one
        // made after it sees the announcement and bumps `word` (the kernel compares it with
        // `seen`, so a wake-up before we sleep is not lost).
        sleepers.store(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if ready() {
            return;
        }
        raw::wait(word, seen, Some(until.saturating_duration_since(now)));
    }

    /// Whether the next position holds a message (or a void to skip): a getter need not sleep.
    fn readable(&self) -> bool {
        let pos = self.head().load(Ordering::Acquire);
        let (seq, state) = split(self.slot_ctl(pos).load(Ordering::Acquire));
        dist(seq, full_seq(pos)) >= 0 && state & (WRITING | READING) == 0
    }

    /// Whether the next position is free for a writer: a putter need not sleep.
    fn writable(&self) -> bool {
        let pos = self.tail().load(Ordering::Acquire);
        let (seq, state) = split(self.slot_ctl(pos).load(Ordering::Acquire));
        dist(seq, free_seq(pos)) >= 0 && state == IDLE
    }

    fn joinable(&self) -> bool {
        self.q32(H_JOINABLE).load(Ordering::Relaxed) != 0
    }

    /// Claims the next committed position for reading. `Err(Some(pid))`: empty, with the next
    /// slot being written by `pid`; `Err(None)`: empty.
    fn claim_read(&self, repair: bool) -> Result<(Claim, bool), Option<u32>> {
        let me = raw::pid() & PID_MASK;
        let head = self.head();
        loop {
            let pos = head.load(Ordering::Acquire);
            let next = pos.wrapping_add(1);
            let word = self.slot_ctl(pos);
            let cur = word.load(Ordering::Acquire);
            let (seq, state) = split(cur);
            let d = dist(seq, full_seq(pos));
            if d == 0 && (state == IDLE || state == VOID) {
                if word
                    .compare_exchange(
                        cur,
                        ctl(full_seq(pos), READING | me),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    let _ = head.compare_exchange(pos, next, Ordering::AcqRel, Ordering::Relaxed);
                    return Ok((Claim { pos }, state == VOID));
                }
            } else if d >= 0 {
                let _ = head.compare_exchange(pos, next, Ordering::AcqRel, Ordering::Relaxed);
            } else if head.load(Ordering::Acquire) == pos {
                if state & WRITING != 0 {
                    let writer = state & PID_MASK;
                    if repair && !raw::process_alive(writer) {
                        // A producer died mid-put: void its slot so that readers skip it.
                        if word
                            .compare_exchange(
                                cur,
                                ctl(full_seq(pos), VOID),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                        {
                            tracing::warn!(
                                pid = writer,
                                "a queue writer died mid-put; its message is dropped"
                            );
                            self.lost_message();
                        }
                        continue;
                    }
                    return Err(Some(writer));
                }
                return Err(None);
            }
        }
    }

    /// Frees a slot after reading it, and wakes a putter.
    fn release(&self, claim: Claim) {
        let next_lap = claim.pos.wrapping_add(u64::from(self.capacity));
        self.slot_ctl(claim.pos).store(ctl(free_seq(next_lap), IDLE), Ordering::Release);
        self.signal_space();
    }

    /// A message that will never be taken (dead writer or reader): it counts as a finished task.
    fn lost_message(&self) {
        if self.joinable() {
            let _ = self.task_done();
        }
    }

    /// Decodes a claimed slot's message with `decode` (straight from shared memory) and frees it;
    /// `root` is ring 0, which keeps this process' spill chunks mapped.
    fn take<R>(&self, root: &Ring, claim: Claim, decode: &mut dyn FnMut(&[u8]) -> R) -> Result<R, GetError> {
        let len = self.slot_len(claim.pos).load(Ordering::Acquire);
        if len & SPILLED != 0 {
            let record = self.read_record(&claim);
            // The slot is free again at once; the message stays counted unread in its chunk.
            self.release(claim);
            let record =
                record.ok_or_else(|| GetError::Deserialize("a corrupt large-message record".into()))?;
            root.take_spilled(record, decode)
        } else {
            let len = (len as usize).min(self.slot_size);
            // SAFETY: `len` is within the slot's data, which no one writes while we hold the claim.
            let bytes = unsafe { std::slice::from_raw_parts(self.slot_data(&claim), len) };
            // The slot is freed whatever `decode` does, a panic included.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes)));
            self.release(claim);
            match decoded {
                Ok(r) => Ok(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }

    /// Takes the next message and decodes it with `decode`; waits until `deadline` for one.
    fn get_with<R>(
        &self,
        root: &Ring,
        wait: &mut Wait,
        decode: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, Fail> {
        let items = self.q32(H_ITEMS);
        // The clock is read only once the fast path failed.
        let mut next_check: Option<Instant> = None;
        let mut repair = false;
        loop {
            if root.closed.load(Ordering::Relaxed) {
                return Err(Fail::Get(GetError::Closed));
            }
            let seen = items.load(Ordering::SeqCst);
            if let Ok((claim, void)) = self.claim_read(repair) {
                if void {
                    self.release(claim);
                    continue;
                }
                return self.take(root, claim, decode).map_err(Fail::Get);
            }
            if self.moved() {
                return Err(Fail::Moved);
            }
            if self.shutdown_state() != OPEN {
                return Err(Fail::Get(GetError::ShutDown));
            }
            let now = Instant::now();
            let deadline = wait.deadline(now);
            let check = *next_check.get_or_insert(now + LIVENESS_CHECK);
            let expired = deadline.is_some_and(|d| now >= d);
            if (expired || now >= check) && !repair {
                // Look once more, repairing what dead processes left, before waiting or giving up.
                repair = true;
                continue;
            }
            if expired {
                return Err(Fail::Get(GetError::Timeout));
            }
            if repair {
                next_check = Some(now + LIVENESS_CHECK);
                repair = false;
            }
            let next_check = next_check.unwrap_or(now);
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            Self::sleep(items, self.q32(H_GETTERS), seen, until, now, || self.readable() || self.moved());
        }
    }

    /// Claims a slot for writing, waiting until `deadline`; `Err(true)` on timeout, `Err(false)`
    /// on shutdown or close.
    fn claim_write_until(&self, wait: &mut Wait) -> Result<Claim, ClaimFail> {
        let space = self.u32_at(H_SPACE);
        let mut next_check: Option<Instant> = None;
        let mut repair = false;
        loop {
            if self.shutdown_state() != OPEN || self.closed.load(Ordering::Relaxed) {
                return Err(ClaimFail::Stopped);
            }
            let seen = space.load(Ordering::SeqCst);
            if let Some(claim) = self.claim_write(repair) {
                return Ok(claim);
            }
            let now = Instant::now();
            let deadline = wait.deadline(now);
            let check = *next_check.get_or_insert(now + LIVENESS_CHECK);
            let expired = deadline.is_some_and(|d| now >= d);
            if (expired || now >= check) && !repair {
                repair = true;
                continue;
            }
            if expired {
                return Err(ClaimFail::Timeout);
            }
            if repair {
                next_check = Some(now + LIVENESS_CHECK);
                repair = false;
            }
            let next_check = next_check.unwrap_or(now);
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            Self::sleep(space, self.u32_at(H_PUTTERS), seen, until, now, || self.writable());
        }
    }

    /// Claims a slot in an unbounded queue (this is ring 0): in this process' writing ring, or,
    /// when that is full, in a next ring that it links. Never waits for room for long: when a
    /// consumer is about (see [`consumer_about`](Self::consumer_about)), a full ring first yields
    /// the CPU up to [`GROW_YIELDS`] times, which lets a consumer on the same CPU drain it. The
    /// ring then stays small enough for the caches, instead of the producer filling rings larger
    /// than them before the consumer runs.
    fn claim_unbounded(&self) -> Result<(Option<&Ring>, Claim), ClaimFail> {
        let mut yields = 0;
        loop {
            if self.shutdown_state() != OPEN || self.closed.load(Ordering::Relaxed) {
                return Err(ClaimFail::Stopped);
            }
            let idx = self.write_at.load(Ordering::Acquire);
            let later = if idx == 0 {
                None
            } else {
                match self.ring_at(idx).map_err(ClaimFail::Os)? {
                    Some(ring) => Some(ring),
                    None => {
                        return Err(ClaimFail::Os(proc_core::Error::invalid_argument(
                            "a queue's next ring is missing",
                        )))
                    }
                }
            };
            let ring: &Ring = later.unwrap_or(self);
            if !ring.sealed() {
                match ring.claim_write(true) {
                    // A seal that came before our claim: we may be behind the readers, so give
                    // the slot up (void) and write in the next ring.
                    Some(claim) if ring.sealed() => ring.commit(claim, 0, true),
                    Some(claim) => return Ok((later, claim)),
                    None if yields < GROW_YIELDS && self.consumer_about(ring) => {
                        yields += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    None => self.grow(ring, idx).map_err(ClaimFail::Os)?,
                }
            }
            self.write_at.fetch_max(idx + 1, Ordering::AcqRel);
        }
    }

    /// Whether a consumer of this unbounded queue (this is ring 0) is about: one has read from
    /// `ring` (so it reached this ring, and will be back), or one is asleep waiting for items (the
    /// commits just made woke it). Without one, a full ring grows at once: a producer that fills a
    /// queue before anyone reads is never held up.
    fn consumer_about(&self, ring: &Ring) -> bool {
        ring.head().load(Ordering::Relaxed) != 0 || self.q32(H_GETTERS).load(Ordering::Relaxed) != 0
    }

    /// Before a message of [`LARGE`] bytes or more is written (this is ring 0): while the queue
    /// holds messages and a consumer is about, yields the CPU (at most [`LARGE_YIELDS`] times), so
    /// that a consumer on the same CPU takes them first. Each large message is then read while
    /// it is still in the caches, instead of after the producer has written the queue full of
    /// them (megabytes each). Never waits long: without a consumer it returns at once, and so it
    /// does when no message was read since this process' last large `put` (the consumers are
    /// elsewhere, and the producer runs ahead: yielding would only hand its CPU to other programs).
    fn make_way(&self) {
        let reads = self.reads();
        if self.way_reads.swap(reads, Ordering::Relaxed) == reads {
            return;
        }
        for _ in 0..LARGE_YIELDS {
            if self.count_all() == 0 || !self.consumer_about(self) {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// The positions read so far in every ring of the chain (this is ring 0): it moves while a
    /// consumer reads.
    fn reads(&self) -> u64 {
        let mut idx = 0;
        let mut total = 0u64;
        while let Ok(Some(head)) = self.with_ring(idx, |r| r.head().load(Ordering::Relaxed)) {
            total = total.wrapping_add(head);
            idx += 1;
        }
        total
    }

    /// The messages in the queue (this is ring 0): in every ring from this process' reading ring
    /// on, for an unbounded queue.
    fn count_all(&self) -> usize {
        let mut idx = self.read_at.load(Ordering::Acquire);
        let mut total = 0usize;
        while let Ok(Some(n)) = self.with_ring(idx, Ring::count) {
            total = total.saturating_add(n as usize);
            idx += 1;
        }
        total
    }

    /// Positions claimed for writing minus those claimed for reading: the messages in this ring,
    /// counting one being written or voided.
    fn count(&self) -> u32 {
        let head = self.head().load(Ordering::SeqCst);
        let tail = self.tail().load(Ordering::SeqCst);
        tail.wrapping_sub(head).min(u64::from(self.capacity)) as u32
    }

    fn task_done(&self) -> Result<(), JoinError> {
        let unfinished = self.q64(H_UNFINISHED);
        let mut cur = unfinished.load(Ordering::SeqCst);
        loop {
            if cur == 0 {
                return Err(JoinError::TooManyTaskDone);
            }
            match unfinished.compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            let done = self.q32(H_DONE);
            done.fetch_add(1, Ordering::SeqCst);
            if self.q32(H_JOINERS).load(Ordering::SeqCst) > 0 {
                raw::wake_all(done);
            }
        }
        Ok(())
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), JoinError> {
        let done = self.q32(H_DONE);
        let unfinished = self.q64(H_UNFINISHED);
        loop {
            let seen = done.load(Ordering::SeqCst);
            if unfinished.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(JoinError::Timeout);
            }
            let joiners = self.q32(H_JOINERS);
            joiners.fetch_add(1, Ordering::SeqCst);
            raw::wait(done, seen, deadline.map(|d| d - now));
            joiners.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn shutdown(&self, immediate: bool) {
        let state = if immediate { SHUT_IMMEDIATE } else { SHUT };
        self.u32_at(H_SHUTDOWN).fetch_max(state, Ordering::SeqCst);
        if immediate {
            // Drop what is queued, in every ring of the chain; each dropped item counts as a
            // finished task, as Python's.
            let mut idx = 0;
            while let Ok(Some(())) = self.with_ring(idx, |ring| {
                while let Ok((claim, void)) = ring.claim_read(true) {
                    if void {
                        ring.release(claim);
                        continue;
                    }
                    let _ = ring.take(self, claim, &mut |_| ());
                    let _ = ring.task_done();
                }
            }) {
                idx += 1;
            }
        }
        let items = self.u32_at(H_ITEMS);
        items.fetch_add(1, Ordering::SeqCst);
        raw::wake_all(items);
        crate::sys::ring(self.bell.1.as_fd());
        let space = self.u32_at(H_SPACE);
        space.fetch_add(1, Ordering::SeqCst);
        raw::wake_all(space);
        let done = self.u32_at(H_DONE);
        done.fetch_add(1, Ordering::SeqCst);
        raw::wake_all(done);
    }
}

/// A multi-producer, multi-consumer FIFO queue between processes, as Python's
/// `multiprocessing.Queue`, for any `T` that serde can serialize.
///
/// `put` serializes the value into shared memory and returns once it is in the queue: there is
/// no feeder thread, so an item survives its producer's exit and "join the producer, then drain
/// the queue" works. Items from one producer come out in the order it put them. A producer killed
/// in the middle of a `put` never leaves a torn message or a blocked queue; a consumer killed in
/// the middle of a `get` loses only that message.
///
/// Cloning gives another handle on the same queue; passing it as a start argument gives the
/// child one (under every start method).
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_queue::Queue;
///
/// fn produce(q: Queue<String>) {
///     for i in 0..3 {
///         q.put(format!("item {i}")).unwrap();
///     }
/// }
///
/// let q = Queue::new(5).unwrap();
/// let p = Process::new(produce, (q.clone(),)).start().unwrap();
/// p.join().unwrap(); // the items outlive their producer
/// assert_eq!(q.get().unwrap(), "item 0");
/// assert_eq!(q.qsize(), 2);
/// ```
pub struct Queue<T> {
    ring: Arc<Ring>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { ring: Arc::clone(&self.ring), _type: PhantomData }
    }
}

impl<T> Queue<T> {
    fn from_ring(ring: Ring) -> Self {
        Queue { ring: Arc::new(ring), _type: PhantomData }
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`; `0` is "unbounded",
    /// Python's default: `put` never waits for room).
    ///
    /// # Errors
    ///
    /// `maxsize` above 2^30, or the system refuses the shared memory.
    pub fn new(maxsize: u32) -> proc_core::Result<Self> {
        Self::builder().maxsize(maxsize).build()
    }

    /// An unbounded queue, Python's `Queue()`: it grows in rings of shared memory as needed (the
    /// memory of a grown queue is returned when the last handle goes).
    ///
    /// # Errors
    ///
    /// The system refuses the shared memory.
    pub fn unbounded() -> proc_core::Result<Self> {
        Self::new(0)
    }

    /// Options beyond `maxsize`: slot size, largest message.
    pub fn builder() -> QueueBuilder {
        QueueBuilder { maxsize: 0, slot_size: DEFAULT_SLOT_SIZE, max_message: DEFAULT_MAX_MESSAGE }
    }

    /// The number of items in the queue (a snapshot: others may put or get meanwhile). An item
    /// being written at this instant already counts, as does a slot voided by a writer that died or
    /// panicked until a getter skips it; one being read no longer does.
    pub fn qsize(&self) -> usize {
        self.ring.count_all()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.ring.count_all() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot); never for an unbounded queue.
    pub fn full(&self) -> bool {
        !self.ring.unbounded() && self.ring.count() >= self.ring.capacity
    }

    /// The capacity: `maxsize`, or `0` for an unbounded queue (as Python's `Queue()`).
    pub fn maxsize(&self) -> usize {
        if self.ring.unbounded() {
            0
        } else {
            self.ring.capacity as usize
        }
    }

    /// Says that this process will use the queue no more (Python's `close()`): later `put`s and
    /// `get`s through any handle of it in this process fail with `Closed`. Items already put stay
    /// in the queue for the other processes.
    pub fn close(&self) {
        self.ring.closed.store(true, Ordering::Relaxed);
    }

    /// Unlinks every named shared-memory segment of the queue now: those of large messages not
    /// read yet, those kept for reuse, the later rings of an unbounded queue, and those that
    /// processes killed in the middle of a `put` or `get` left (through the resource tracker).
    /// The last process to drop the queue does this by itself; a killed process never drops it,
    /// so after killing the other processes that used a queue, call this to clean up at once
    /// rather than leave the segments to the resource tracker (which unlinks them, with a
    /// warning, when the program ends).
    ///
    /// Call it only when no other process will use the queue: the large messages still in it are
    /// lost, and an unbounded queue cannot grow past its current rings for processes that attach
    /// later.
    pub fn unlink_segments(&self) {
        self.ring.unlink_named();
    }

    /// Shuts the queue down for every process (Python 3.13's `shutdown`): blocked and later
    /// `put`s fail with [`PutError::ShutDown`]; `get`s drain what is queued, then fail with
    /// [`GetError::ShutDown`]. With `immediate`, the queued items are dropped at once (each
    /// counting as a finished task for [`JoinableQueue::join`]).
    pub fn shutdown(&self, immediate: bool) {
        self.ring.shutdown(immediate);
    }

    /// Whether the queue was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.ring.shutdown_state() != OPEN
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts `value`, waiting as long as it takes for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`], [`PutError::ShutDown`], [`PutError::TooLarge`],
    /// [`PutError::Serialize`], [`PutError::Os`]; each hands the value back.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::Forever, false)
    }

    /// Puts `value` if room comes within `timeout` (zero: only if there is room now).
    ///
    /// # Errors
    ///
    /// [`PutError::Timeout`] if the queue stayed full; the others as for [`put`](Self::put).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::For(timeout), false)
    }

    /// Puts `value` only if there is room now.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] if there is none; the others as for [`put`](Self::put).
    pub fn put_nowait(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::For(Duration::ZERO), true)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`], [`GetError::ShutDown`] (once drained), [`GetError::Deserialize`],
    /// [`GetError::Os`].
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(Wait::Forever, false)
    }

    /// Takes the oldest item if one comes within `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`] if none came; the others as for [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Wait::For(timeout), false)
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] if there is none; the others as for [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_until(Wait::For(Duration::ZERO), true)
    }

    fn get_until(&self, mut wait: Wait, nowait: bool) -> Result<T, GetError> {
        let root = &*self.ring;
        let mut decode = |bytes: &[u8]| proc_core::codec::from_bytes::<T>(bytes);
        loop {
            let idx = root.read_at.load(Ordering::Acquire);
            let got = root
                .with_ring(idx, |ring| ring.get_with(root, &mut wait, &mut decode))
                .map_err(GetError::Os)?;
            return match got {
                // Ring `idx` is drained and sealed: the next one exists (it was linked first).
                Some(Err(Fail::Moved)) => {
                    root.read_at.fetch_max(idx + 1, Ordering::AcqRel);
                    continue;
                }
                None => {
                    Err(GetError::Os(proc_core::Error::invalid_argument("a queue's next ring is missing")))
                }
                Some(Ok(Ok(value))) => Ok(value),
                Some(Ok(Err(e))) => Err(GetError::Deserialize(e.to_string())),
                Some(Err(Fail::Get(GetError::Timeout))) if nowait => Err(GetError::Empty),
                Some(Err(Fail::Get(e))) => Err(e),
            };
        }
    }

    fn put_until(&self, value: T, mut wait: Wait, nowait: bool) -> Result<(), PutError<T>> {
        let ring = &*self.ring;
        if ring.closed.load(Ordering::Relaxed) {
            return Err(PutError::Closed(value));
        }
        if ring.shutdown_state() != OPEN {
            return Err(PutError::ShutDown(value));
        }
        let size = match proc_core::codec::serialized_size(&value) {
            Ok(size) => size as u64,
            Err(e) => return Err(PutError::Serialize { value, message: e.to_string() }),
        };
        if size > ring.max_message {
            return Err(PutError::TooLarge { value, size, max: ring.max_message });
        }
        // A large message goes to this process' spill chunk first, outside the ring.
        let spill = if size as usize > ring.slot_size {
            if size >= LARGE {
                ring.make_way();
            }
            match ring.spill(&value, size as usize) {
                Ok(spill) => Some(spill),
                Err(SpillError::Os(error)) => return Err(PutError::Os { value, error }),
                Err(SpillError::Serialize(message)) => return Err(PutError::Serialize { value, message }),
            }
        } else {
            None
        };
        // Counted unfinished before it is visible, so a task_done can never come first.
        let joinable = ring.joinable();
        if joinable {
            ring.u64_at(H_UNFINISHED).fetch_add(1, Ordering::SeqCst);
        }
        let root = ring;
        let claimed = if root.unbounded() {
            root.claim_unbounded()
        } else {
            root.claim_write_until(&mut wait).map(|claim| (None, claim))
        };
        let (later, claim) = match claimed {
            Ok(claimed) => claimed,
            Err(fail) => {
                if joinable {
                    let _ = root.task_done();
                }
                if let Some(spill) = spill {
                    root.spill_done(&spill.shm);
                }
                return Err(match fail {
                    ClaimFail::Stopped if root.closed.load(Ordering::Relaxed) => PutError::Closed(value),
                    ClaimFail::Stopped => PutError::ShutDown(value),
                    ClaimFail::Timeout if nowait => PutError::Full(value),
                    ClaimFail::Timeout => PutError::Timeout(value),
                    ClaimFail::Os(error) => PutError::Os { value, error },
                });
            }
        };
        // The ring the slot is in: ring 0, or a later ring of an unbounded queue.
        let ring: &Ring = later.unwrap_or(root);
        match spill {
            Some(spill) => {
                let len = ring.write_record(&claim, &spill);
                ring.commit(claim, len, false);
            }
            None => {
                let data = ring.slot_data(&claim);
                // SAFETY: the slot is claimed by this process, so no one else touches its
                // `slot_size` data bytes until the commit.
                let buf = unsafe { std::slice::from_raw_parts_mut(data, ring.slot_size) };
                // A `Serialize` impl that panics must not leave the slot claimed by a live process
                // (which would block every consumer): void it, then let the panic go on.
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    proc_core::codec::to_slice(&value, buf).map(|w| w.len() as u64)
                }));
                let written = match written {
                    Ok(w) => w,
                    Err(panic) => {
                        ring.commit(claim, 0, true);
                        ring.lost_message();
                        std::panic::resume_unwind(panic);
                    }
                };
                match written {
                    Ok(len) => ring.commit(claim, len, false),
                    Err(e) => {
                        ring.commit(claim, 0, true);
                        ring.lost_message();
                        return Err(PutError::Serialize { value, message: e.to_string() });
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.root.is_none() && self.capacity != 0 {
            self.let_go_of_chunk();
        }
        if self.capacity == 0 || self.root.is_some() {
            return;
        }
        if self.u32_at(H_ATTACHED).fetch_sub(1, Ordering::SeqCst) != 1 {
            // Others hold it, or were killed holding it (daemons terminated at exit, say): the
            // program's main process has the tracker purge the queue's segments when it exits,
            // once its children have ended.
            let group = self.u64_at(H_GROUP).load(Ordering::Relaxed);
            if group != 0 {
                proc_core::shm::purge_group_at_exit(group);
            }
            return;
        }
        // The last process leaves: unlink the later rings of the chain, the spill chunks of the
        // free list and those of every ring's unread messages.
        self.unlink_named();
    }
}

impl Ring {
    /// Ring 0's memory (this ring's, or its root's).
    fn root_mem(&self) -> &Mem {
        self.root.as_deref().unwrap_or(&self.seg)
    }

    /// Unlinks every named segment of the queue: the later rings of the chain, the spill chunks
    /// of the free list and those of every ring's unread messages, and, through the resource
    /// tracker, those only dead processes knew (a chunk they held, a ring they were adding).
    fn unlink_named(&self) {
        let group = word64(self.root_mem(), H_GROUP).load(Ordering::Relaxed);
        self.unlink_listed_chunks();
        self.unlink_unread_chunks();
        let mut link = self.next_name();
        while let Some(name) = link {
            let Ok(shm) = SharedMemory::open(&name) else { break };
            let _ = shm.unlink();
            let Ok(bell) = self.bell_dup() else { break };
            let Ok(ring) = Ring::attach(Mem::Named(shm), bell, Some(Arc::clone(&self.seg))) else { break };
            ring.unlink_unread_chunks();
            link = ring.next_name();
        }
        if group != 0 {
            proc_core::shm::purge_group(group);
        }
    }
}

/// Puts a named segment of the queue whose ring 0 is `root` in the queue's tracker group.
fn group_segment(root: &Mem, shm: &SharedMemory) {
    let group = word64(root, H_GROUP).load(Ordering::Relaxed);
    if group != 0 {
        proc_core::shm::group_segment(shm.name(), group);
    }
}

fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// How long a call may wait for its turn. A timeout becomes a deadline only when the call finds
/// it has to wait: reading the clock costs about as much as a whole `get` that finds an item, so
/// the fast path does not read it (the deadline then counts from a moment later than the call,
/// so the wait is never shorter than asked).
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// As long as it takes.
    Forever,
    /// Until this deadline.
    Until(Instant),
    /// This long from the first look that found nothing.
    For(Duration),
}

impl Wait {
    /// The deadline, fixing it from `now` the first time.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        match *self {
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
            Wait::For(timeout) => {
                let d = deadline(now, timeout);
                *self = Wait::Until(d);
                Some(d)
            }
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bell_r = export_fd(self.ring.bell.0.as_fd()).map_err(serde::ser::Error::custom)?;
        let bell_w = export_fd(self.ring.bell.1.as_fd()).map_err(serde::ser::Error::custom)?;
        let Mem::Anon(seg) = &*self.ring.seg else {
            return Err(serde::ser::Error::custom("not ring 0 of a queue"));
        };
        (seg, bell_r, bell_w).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, bell_r, bell_w) = <(Segment, u32, u32)>::deserialize(d)?;
        let bell_r = import_fd(bell_r).map_err(serde::de::Error::custom)?;
        let bell_w = import_fd(bell_w).map_err(serde::de::Error::custom)?;
        let ring = Ring::attach(Mem::Anon(seg), (bell_r, bell_w), None).map_err(serde::de::Error::custom)?;
        if ring.capacity == 0 {
            return Err(serde::de::Error::custom("not a queue's shared memory"));
        }
        Ok(Queue::from_ring(ring))
    }
}

impl<T> crate::Waitable for Queue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.ring.bell.0.as_fd()
    }

    fn arm(&self) -> Option<bool> {
        Some(self.ring.arm())
    }

    fn fired(&self) -> bool {
        crate::sys::drain(self.ring.bell.0.as_fd());
        self.ring.get_ready()
    }
}

impl<T> crate::Waitable for SimpleQueue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.inner.wait_fd()
    }

    fn arm(&self) -> Option<bool> {
        self.inner.arm()
    }

    fn fired(&self) -> bool {
        self.inner.fired()
    }
}

impl<T> crate::Waitable for JoinableQueue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.inner.wait_fd()
    }

    fn arm(&self) -> Option<bool> {
        self.inner.arm()
    }

    fn fired(&self) -> bool {
        self.inner.fired()
    }
}

/// Python's `SimpleQueue`: an unbounded [`Queue`] with only `put`, `get`, `empty` and `close`.
///
/// # Examples
///
/// ```
/// let q = proc_queue::SimpleQueue::new().unwrap();
/// q.put(7u8).unwrap();
/// assert_eq!(q.get().unwrap(), 7);
/// assert!(q.empty());
/// ```
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { inner: self.inner.clone() }
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// The system refuses the shared memory.
    pub fn new() -> proc_core::Result<Self> {
        Ok(SimpleQueue { inner: Queue::unbounded()? })
    }

    /// Puts `value` (never waits: the queue is unbounded).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.inner.put(value)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// As [`Queue::close`].
    pub fn close(&self) {
        self.inner.close();
    }

    /// As [`Queue::unlink_segments`].
    pub fn unlink_segments(&self) {
        self.inner.unlink_segments();
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").field("empty", &self.inner.empty()).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue { inner: Queue::deserialize(d)? })
    }
}

/// Python's `JoinableQueue`: a [`Queue`] that counts unfinished tasks. Every `put` adds one;
/// [`task_done`](Self::task_done) removes one; [`join`](Self::join) waits until none is left.
/// The count is 64-bit and shared by every process. An item lost to a killed producer or
/// consumer counts as done, so `join` does not hang on it.
///
/// It dereferences to [`Queue`] for `put`, `get` and the rest.
///
/// # Examples
///
/// ```
/// let q = proc_queue::JoinableQueue::new(0).unwrap();
/// q.put(1u32).unwrap();
/// let item = q.get().unwrap();
/// q.task_done().unwrap();
/// q.join().unwrap();
/// assert!(q.task_done().is_err());
/// # let _ = item;
/// ```
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { inner: self.inner.clone() }
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue holding at most `maxsize` items (`0`: "unbounded", as [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new(maxsize: u32) -> proc_core::Result<Self> {
        let inner = Queue::new(maxsize)?;
        inner.ring.u32_at(H_JOINABLE).store(1, Ordering::SeqCst);
        Ok(JoinableQueue { inner })
    }

    /// Says that one item taken from the queue has been dealt with.
    ///
    /// # Errors
    ///
    /// [`JoinError::TooManyTaskDone`] if no task is unfinished.
    pub fn task_done(&self) -> Result<(), JoinError> {
        self.inner.ring.task_done()
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a shut-down queue.
    pub fn join(&self) -> Result<(), JoinError> {
        self.inner.ring.join_until(None)
    }

    /// As [`join`](Self::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`] if tasks were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.inner.ring.join_until(Some(deadline(Instant::now(), timeout)))
    }

    /// The number of unfinished tasks (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.inner.ring.u64_at(H_UNFINISHED).load(Ordering::SeqCst)
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.inner.qsize())
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue { inner: Queue::deserialize(d)? })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The pid of a process that has ended and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_slot_left_by_a_dead_writer_is_skipped() {
        let q = Queue::<u32>::new(4).unwrap();
        let ring = &*q.ring;
        q.put(1).unwrap();
        // A writer claims the next slot and dies before committing.
        let claim = ring.claim_write(false).unwrap();
        let pid = dead_pid();
        ring.slot_ctl(claim.pos).store(ctl(free_seq(claim.pos), WRITING | pid), Ordering::SeqCst);
        q.put(3).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        // The next slot is pending; a bounded get notices the dead writer and skips its slot.
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 3);
        assert!(q.empty());
        // Every slot is usable again.
        for i in 0..4 {
            q.put_nowait(i).unwrap();
        }
        for i in 0..4 {
            assert_eq!(q.get_nowait().unwrap(), i);
        }
    }

    #[test]
    fn a_slot_left_by_a_dead_reader_is_freed() {
        let q = Queue::<u32>::new(2).unwrap();
        let ring = &*q.ring;
        q.put(1).unwrap();
        q.put(2).unwrap();
        // A reader claims the first message and dies before releasing its slot.
        let (claim, void) = ring.claim_read(false).unwrap();
        assert!(!void);
        let pid = dead_pid();
        ring.slot_ctl(claim.pos).store(ctl(full_seq(claim.pos), READING | pid), Ordering::SeqCst);
        // The queue looks full until a putter notices the dead reader.
        q.put_timeout(3, Duration::from_secs(10)).unwrap();
        assert_eq!(q.get().unwrap(), 2);
        assert_eq!(q.get().unwrap(), 3);
    }
}
