//! One ring of slots: its memory and geometry, and the claim → commit → release protocol on
//! both sides (see the module docs of `queue`).
//!
//! `Ring`'s methods are spread over the files of `queue` by job: this file holds the struct and the
//! ring protocol itself; `wake` the blocking loops and wake-ups, `chain` the growth of an unbounded
//! queue, `spill` the chunks of large messages, `joinable` the task count. Those files add `impl Ring`
//! blocks and import this one; this file imports none of them (calling their methods needs no import).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proc_core::shm::SharedMemory;

use super::chunk::Writer;
use super::error::GetError;
use super::layout::{
    ctl, dist, free_seq, full_seq, group_segment, split, Header, Mapped, Mem, Slot, HEADER, IDLE, MAGIC,
    PID_MASK, READING, SLOT_DATA, SPILLED, SPILL_RECORD, VOID, WRITING,
};
use crate::loom::{pid, process_alive, AtomicU64};

/// The most rings an unbounded queue holds at once, ring 0 and released rings not counted (the
/// first 8 doublings reach the largest ring).
pub(super) const MAX_CHAIN: usize = 64;

/// The shared ring: the segment and its geometry, read once from the header, and the doorbells
/// (socket pairs) that let `wait` and the async calls watch the queue with poll(2).
pub(super) struct Ring {
    /// Rings after this one that this process has mapped, by index (ring 0 of an unbounded
    /// queue only): a thread that works in one holds a clone, so that a ring released meanwhile
    /// is unmapped only once the last of them lets go (see `chain`).
    pub(super) chain: std::sync::Mutex<Vec<(usize, Arc<Ring>)>>,
    /// The queue's `freed` when this process last unmapped the released rings.
    pub(super) pruned: std::sync::atomic::AtomicU32,
    /// This process' reading and writing ring in the chain (0: this one).
    pub(super) read_at: std::sync::atomic::AtomicUsize,
    pub(super) write_at: std::sync::atomic::AtomicUsize,
    pub(super) seg: Arc<Mem>,
    /// Ring 0's memory, for a later ring of a chain: the queue-wide words live there.
    pub(super) root: Option<Arc<Mem>>,
    /// This ring's header, ring 0's header (the same for ring 0) and the first slot, in `seg`
    /// and `root`: checked once, when the ring mapped its memory.
    header: Mapped<Header>,
    queue: Mapped<Header>,
    slots: Mapped<u8>,
    /// The queue's doorbell (ring 0's; a later ring holds duplicates).
    pub(super) bell: (OwnedFd, OwnedFd),
    /// The space doorbell, rung for async putters (see `wake`): ring 0 of a bounded queue only
    /// (an unbounded queue's `put` never waits for room).
    pub(super) space_bell: Option<(OwnedFd, OwnedFd)>,
    /// Spill chunks this process has mapped, most recently used last.
    pub(super) spills: std::sync::Mutex<Vec<Arc<SharedMemory>>>,
    /// The chunk this process writes large messages into (ring 0 only).
    pub(super) writer: std::sync::Mutex<Writer>,
    pub(super) capacity: u32,
    pub(super) slot_size: usize,
    pub(super) stride: usize,
    pub(super) max_message: u64,
    /// Python's per-process `close()`.
    pub(super) closed: AtomicBool,
    /// The reads of the whole queue that this process saw at its last large `put` (see
    /// `Ring::make_way`).
    pub(super) way_reads: std::sync::atomic::AtomicU64,
}

/// Why a ring could not give a message.
pub(super) enum Fail {
    Get(GetError),
    /// The ring is sealed and drained: read the next ring of the chain.
    Moved,
}

/// Why no slot could be claimed for a `put`.
pub(super) enum ClaimFail {
    Timeout,
    /// Shut down, or closed in this process.
    Stopped,
    Os(proc_core::Error),
}

/// A slot claimed for writing or reading.
pub(super) struct Claim {
    pub(super) pos: u64,
}

impl Ring {
    /// A new ring: ring 0 of a queue (anonymous memory and a doorbell: the queue's handle), or,
    /// with `root`, a later ring of an unbounded queue (named memory that others open by the
    /// name given).
    pub(super) fn new(
        capacity: u32,
        slot_size: usize,
        max_message: u64,
        root: Option<(Arc<Mem>, (OwnedFd, OwnedFd), &str)>,
    ) -> proc_core::Result<Self> {
        if capacity > 1 << 30 || slot_size > 1 << 30 {
            return Err(proc_core::Error::invalid_argument(
                "a queue holds at most 2^30 messages in slots of at most 1 GiB",
            ));
        }
        // Room for a spill record in every slot.
        let slot_size = slot_size.max(SPILL_RECORD);
        let stride = (SLOT_DATA + slot_size).next_multiple_of(64);
        let len = HEADER + stride * capacity as usize;
        let (seg, bell, root) = match root {
            None => {
                let bell = proc_os::socket::socketpair().map_err(|e| {
                    proc_core::Error::invalid_argument(format!("cannot create a queue's doorbell: {e}"))
                })?;
                #[cfg(not(loom))]
                let mem = Mem::Anon(proc_core::shm::Segment::new(len)?);
                // The model checks' rings live on the heap (see `crate::loom`).
                #[cfg(loom)]
                let mem = Mem::Heap(Arc::new(super::layout::Heap::new(len, capacity as usize, stride)));
                (mem, bell, None)
            }
            Some((root, bell, name)) => {
                (Mem::create(name, len, capacity as usize, stride)?, bell, Some(root))
            }
        };
        let mut ring = Ring::map(seg, bell, root)?;
        if let Mem::Named(shm) = &*ring.seg {
            group_segment(ring.queue(), shm);
        }
        ring.capacity = capacity;
        ring.slot_size = slot_size;
        ring.stride = stride;
        ring.max_message = max_message;
        let header = ring.header();
        header.attached.store(1, Ordering::Relaxed);
        if ring.root.is_none() && !cfg!(loom) {
            header.group.store(proc_core::shm::new_group(), Ordering::Relaxed);
            header.chain.store(proc_os::random_u64(), Ordering::Relaxed);
        }
        header.capacity.store(capacity, Ordering::Relaxed);
        header.slot_size.store(slot_size as u32, Ordering::Relaxed);
        header.stride.store(stride as u32, Ordering::Relaxed);
        header.max_message.store(max_message, Ordering::Relaxed);
        for i in 0..capacity {
            ring.slot_ctl(u64::from(i)).store(ctl(free_seq(u64::from(i)), IDLE), Ordering::Relaxed);
        }
        header.magic.store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// Reads the geometry from a ring's header (checked against its length): ring 0 from a
    /// handle (`bell` given), or a later ring opened by name (`root` given).
    pub(super) fn attach(
        seg: Mem,
        bell: (OwnedFd, OwnedFd),
        root: Option<Arc<Mem>>,
    ) -> proc_core::Result<Self> {
        let counted = root.is_none();
        let mut ring = Ring::map(seg, bell, root)?;
        let header = ring.header();
        if header.magic.load(Ordering::Acquire) == MAGIC {
            let capacity = header.capacity.load(Ordering::Relaxed);
            let slot_size = header.slot_size.load(Ordering::Relaxed) as usize;
            let stride = header.stride.load(Ordering::Relaxed) as usize;
            let max_message = header.max_message.load(Ordering::Relaxed);
            let fits = stride >= SLOT_DATA + slot_size
                && stride.is_multiple_of(align_of::<Slot>())
                && capacity > 0
                && (capacity as usize)
                    .checked_mul(stride)
                    .and_then(|n| n.checked_add(HEADER))
                    .is_some_and(|n| n <= ring.seg.len());
            if !fits {
                return Err(proc_core::Error::invalid_argument("a queue's header does not match its memory"));
            }
            if counted {
                header.attached.fetch_add(1, Ordering::SeqCst);
            }
            ring.capacity = capacity;
            ring.slot_size = slot_size;
            ring.stride = stride;
            ring.max_message = max_message;
        }
        Ok(ring)
    }

    /// A ring on `seg`, its geometry not read yet (a capacity of 0): checks once that `seg` (and
    /// `root`, ring 0's memory, for a later ring) holds a header, and keeps the pointers.
    fn map(seg: Mem, bell: (OwnedFd, OwnedFd), root: Option<Arc<Mem>>) -> proc_core::Result<Self> {
        let not_a_queue = || proc_core::Error::invalid_argument("not a queue's shared memory");
        let header = seg.header().ok_or_else(not_a_queue)?;
        let queue = match &root {
            Some(root) => root.header().ok_or_else(not_a_queue)?,
            None => header,
        };
        // SAFETY: `header` checked that the memory holds `HEADER` bytes from there: the result is
        // at most one past its end.
        let slots = unsafe { header.0.cast::<u8>().add(HEADER) };
        Ok(Ring {
            chain: std::sync::Mutex::new(Vec::new()),
            pruned: Default::default(),
            read_at: Default::default(),
            write_at: Default::default(),
            header,
            queue,
            slots: Mapped(slots),
            seg: Arc::new(seg),
            root,
            bell,
            space_bell: None,
            spills: std::sync::Mutex::new(Vec::new()),
            writer: Default::default(),
            capacity: 0,
            slot_size: 0,
            stride: 64,
            max_message: 0,
            closed: AtomicBool::new(false),
            way_reads: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// This ring's header.
    pub(super) fn header(&self) -> &Header {
        // SAFETY: checked when the memory was mapped (`map`): in bounds and aligned; `self.seg`
        // keeps it mapped as long as `self` lives, and a header is atomics only.
        unsafe { self.header.0.as_ref() }
    }

    /// Ring 0's header, whichever ring of the chain this is: the queue-wide words live there.
    pub(super) fn queue(&self) -> &Header {
        // SAFETY: as in `header`; ring 0's memory is `self.root` (or `self.seg`, for ring 0).
        unsafe { self.queue.0.as_ref() }
    }

    /// The start of the slot of position `pos`: its words, then its data.
    fn slot_ptr(&self, pos: u64) -> *mut u8 {
        let offset = (pos % u64::from(self.capacity)) as usize * self.stride;
        // SAFETY: `new` sized, or `attach` checked, the memory for `capacity` slots of `stride`
        // bytes after the header.
        unsafe { self.slots.0.as_ptr().add(offset) }
    }

    /// The words of the slot of position `pos`.
    pub(super) fn slot(&self, pos: u64) -> &Slot {
        // SAFETY: in the mapping (`slot_ptr`), which `self.seg` keeps as long as `self` lives,
        // and aligned: the slots start 64-aligned and `stride` is a multiple of a slot's
        // alignment (`new` makes it so, `attach` checks it). A slot's words are atomics.
        unsafe { &*self.slot_ptr(pos).cast::<Slot>() }
    }

    pub(super) fn slot_ctl(&self, pos: u64) -> &AtomicU64 {
        &self.slot(pos).ctl
    }

    pub(super) fn slot_len(&self, pos: u64) -> &AtomicU64 {
        &self.slot(pos).len
    }

    /// The data bytes of a slot this process has claimed.
    pub(super) fn slot_data(&self, claim: &Claim) -> *mut u8 {
        #[cfg(loom)]
        self.slot(claim.pos).data.touch();
        // SAFETY: a slot's `slot_size` data bytes follow its words, inside its `stride`.
        unsafe { self.slot_ptr(claim.pos).add(SLOT_DATA) }
    }

    pub(super) fn tail(&self) -> &AtomicU64 {
        &self.header().tail
    }

    pub(super) fn head(&self) -> &AtomicU64 {
        &self.header().head
    }

    pub(super) fn shutdown_state(&self) -> u32 {
        self.queue().shutdown.load(Ordering::SeqCst)
    }

    pub(super) fn joinable(&self) -> bool {
        self.queue().joinable.load(Ordering::Relaxed) != 0
    }

    /// Claims the next position for writing; `None` if the queue is full (after repairing a
    /// slot left by a dead reader, if `repair`).
    pub(super) fn claim_write(&self, repair: bool) -> Option<Claim> {
        let me = pid() & PID_MASK;
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
                    // SeqCst (the same instruction as AcqRel on x86_64 and AArch64): an unbounded
                    // queue's producer then checks the seal (see `chain`), and a consumer that
                    // finds the ring sealed and drained must see the tail past this claim.
                    let _ =
                        tail.compare_exchange(pos, pos.wrapping_add(1), Ordering::SeqCst, Ordering::SeqCst);
                    return Some(Claim { pos });
                }
            } else if d >= 0 {
                if self.beyond_a_lap(d) && tail.load(Ordering::Acquire) == pos {
                    // The slot is laps ahead of the tail, which no process can make: the ring's
                    // words were overwritten. Chasing the slot would take up to 2^31 steps.
                    return None;
                }
                // Claimed or committed at this lap: help the tail along.
                let _ = tail.compare_exchange(pos, pos.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed);
            } else if tail.load(Ordering::Acquire) == pos {
                // The previous lap's message is still there: full, unless its reader died.
                if repair && state & READING != 0 && !process_alive(state & PID_MASK) {
                    self.free_dead_read(pos, cur);
                    continue;
                }
                return None;
            }
        }
    }

    /// Whether a slot's sequence is `d` past the one a position expects and so more than a lap
    /// ahead of it. A position whose slot is that far ahead was claimed by nobody since the slot
    /// got there: a stale position (the tail or head moved on meanwhile), or, if the tail or head
    /// still says it, words that some process overwrote.
    fn beyond_a_lap(&self, d: i32) -> bool {
        i64::from(d) > 2 * i64::from(self.capacity) + 1
    }

    /// Frees a slot whose reader died mid-read (its message is lost).
    ///
    /// Several putters may find the same dead reader (`cur` is what each loaded): only the one
    /// whose compare-and-swap frees the slot counts its spilled message read. Counting before the
    /// swap let each of them count it, and the chunk then counted one unread message too few: its
    /// producer started again at its front while a message there was still unread.
    pub(super) fn free_dead_read(&self, pos: u64, cur: u64) {
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
    pub(super) fn commit(&self, claim: Claim, len: u64, void: bool) {
        // The model checks' oracle: a message committed into a released ring would be lost.
        #[cfg(loom)]
        if let Mem::Heap(heap) = &*self.seg {
            assert!(void || !heap.is_released(), "a message committed into a released ring");
        }
        self.slot_len(claim.pos).store(len, Ordering::Relaxed);
        let state = if void { VOID } else { IDLE };
        self.slot_ctl(claim.pos).store(ctl(full_seq(claim.pos), state), Ordering::Release);
        self.signal_items();
    }

    /// Claims the next committed position for reading. `Err(Some(pid))`: empty, with the next
    /// slot being written by `pid`; `Err(None)`: empty.
    pub(super) fn claim_read(&self, repair: bool) -> Result<(Claim, bool), Option<u32>> {
        let me = pid() & PID_MASK;
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
                if self.beyond_a_lap(d) && head.load(Ordering::Acquire) == pos {
                    // As in `claim_write`: overwritten words; the ring reads as empty.
                    return Err(None);
                }
                let _ = head.compare_exchange(pos, next, Ordering::AcqRel, Ordering::Relaxed);
            } else if head.load(Ordering::Acquire) == pos {
                if state & WRITING != 0 {
                    let writer = state & PID_MASK;
                    if repair && !process_alive(writer) {
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
    pub(super) fn release(&self, claim: Claim) {
        let next_lap = claim.pos.wrapping_add(u64::from(self.capacity));
        self.slot_ctl(claim.pos).store(ctl(free_seq(next_lap), IDLE), Ordering::Release);
        self.signal_space();
    }

    /// A message that will never be taken (dead writer or reader): it counts as a finished task.
    pub(super) fn lost_message(&self) {
        if self.joinable() {
            let _ = self.task_done();
        }
    }

    /// Decodes a claimed slot's message with `decode` (straight from shared memory) and frees it;
    /// `root` is ring 0, which keeps this process' spill chunks mapped.
    pub(super) fn take<R>(
        &self,
        root: &Ring,
        claim: Claim,
        decode: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, GetError> {
        let len = self.slot_len(claim.pos).load(Ordering::Acquire);
        if len & SPILLED != 0 {
            let record = self.read_record(&claim);
            // The slot is free again at once; the message stays counted unread in its chunk.
            self.release(claim);
            let record = record.ok_or_else(GetError::corrupt_record)?;
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

    /// Whether the next position holds a message (or a void to skip): a getter need not sleep.
    pub(super) fn readable(&self) -> bool {
        let pos = self.head().load(Ordering::Acquire);
        let (seq, state) = split(self.slot_ctl(pos).load(Ordering::Acquire));
        dist(seq, full_seq(pos)) >= 0 && state & (WRITING | READING) == 0
    }

    /// Whether the next position is free for a writer: a putter need not sleep.
    pub(super) fn writable(&self) -> bool {
        let pos = self.tail().load(Ordering::Acquire);
        let (seq, state) = split(self.slot_ctl(pos).load(Ordering::Acquire));
        dist(seq, free_seq(pos)) >= 0 && state == IDLE
    }

    /// Positions claimed for writing minus those claimed for reading: the messages in this ring,
    /// counting one being written or voided.
    pub(super) fn count(&self) -> u32 {
        let head = self.head().load(Ordering::SeqCst);
        let tail = self.tail().load(Ordering::SeqCst);
        tail.wrapping_sub(head).min(u64::from(self.capacity)) as u32
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        #[cfg(loom)]
        if let Mem::Heap(_) = *self.seg {
            // A model ring: no chunks, named rings or tracker group to let go of.
            return;
        }
        if self.root.is_none() && self.capacity != 0 {
            self.let_go_of_chunk();
        }
        if self.capacity == 0 || self.root.is_some() {
            return;
        }
        if self.header().attached.fetch_sub(1, Ordering::SeqCst) != 1 {
            // Others hold it, or were killed holding it (daemons terminated at exit, say): the
            // program's main process has the tracker purge the queue's segments when it exits,
            // once its children have ended.
            let group = self.header().group.load(Ordering::Relaxed);
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

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    // The tests drive the ring through the public `Queue`, which sits above this module: a
    // test-only import against the direction of the module graph.
    use crate::queue::Queue;

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
