//! Spill chunks: where messages larger than a slot go.
//!
//! A producer process writes its large messages one after another into a *chunk*, a named
//! shared-memory segment it holds, and the slot of each carries the chunk's name, the message's
//! offset and its size. A chunk's first word counts the messages written into it and not yet
//! read, plus [`CHUNK_HELD`] while its producer writes there. When that word is back to
//! `CHUNK_HELD` (all read) the producer starts again at the front of its chunk, so while the
//! consumers keep up the same few cache-warm bytes go round; when a message does not fit, the
//! producer lets the chunk go and takes another, twice as large while the consumers are behind
//! (up to [`CHUNK_MAX`]), so a backlog costs one segment per many messages instead of one per
//! message. The last of the chunk's readers (or its producer, if every message was read first)
//! offers a chunk it lets go to the free list for reuse.
//!
//! The free list lives in ring 0's header: [`SPILL_ENTRIES`] entries of a state word, the
//! chunk's name and its size; its free chunks hold at most [`RETAIN_MAX`] bytes. An entry is `EMPTY`, `FREE` (a chunk to reuse), `BUSY | pid`
//! (being taken or filled in) or `HELD | pid` (the chunk that process writes into): so every
//! chunk is named either by an entry or by the slot of an unread message, and the last process
//! to leave the queue unlinks them all. A chunk held by a dead process is taken back by the next
//! producer that looks for one (`Ring::take_chunk`): at once if its messages are all read, else
//! let go for it (its last reader offers it to the free list). One its holder reserved room in
//! and died before committing (killed mid-put) is counted unread for good: it is named by neither,
//! and only the queue's resource-tracker group unlinks it, with the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proc_core::shm::SharedMemory;
use serde::Serialize;

use super::chunk::{ChunkWriter, Held, Writer};
use super::error::GetError;
use super::layout::{
    group_segment, split, SpillEntry, PID_MASK, SPILLED, SPILL_ENTRIES, SPILL_OFFSET_AT, SPILL_SIZE_AT, VOID,
    WRITING,
};
use super::ring::{Claim, Ring};

/// Spill chunks up to this size are kept for reuse; larger ones are unlinked after one use,
/// so that a queue that once carried a huge message does not keep its memory.
const RECYCLE_MAX: usize = 64 << 20;

// An entry's state word.
const ENTRY_EMPTY: u32 = 0;
const ENTRY_FREE: u32 = 1;
const ENTRY_BUSY: u32 = 1 << 31;
const ENTRY_HELD: u32 = 1 << 30;

/// How many chunks a process keeps mapped.
const SPILL_CACHE: usize = 32;

/// A chunk's header: the state word (unread messages in the low half, [`CHUNK_HELD`] while its
/// producer writes there), then the messages from [`C_DATA`], each at a multiple of 64 bytes.
const C_STATE: usize = 0;
const C_DATA: usize = 64;
const CHUNK_HELD: u64 = 1 << 32;
const REFS: u64 = CHUNK_HELD - 1;

/// The free chunks a queue keeps for reuse, in bytes at most (as many as the 8 segments of up to
/// 64 MiB it kept before chunks): a chunk let go beyond that is unlinked.
const RETAIN_MAX: u64 = 512 << 20;

/// A message is written around the caches (non-temporal stores) once at least this many messages,
/// and [`STREAM_AFTER_BYTES`] bytes, of its chunk wait unread before it: no consumer will read it
/// before the caches have dropped it, and a store that first reads its line from memory (as an
/// ordinary store does) moves twice the bytes.
const STREAM_AFTER_MESSAGES: u64 = 8;
const STREAM_AFTER_BYTES: u64 = 8 << 20;

/// The size of a producer's first chunk.
const CHUNK_MIN: usize = 1 << 20;

/// The largest chunk a producer grows to; a larger message gets a chunk of its own, unlinked
/// once read.
const CHUNK_MAX: usize = RECYCLE_MAX;

/// A message's place in a chunk, reserved by [`Ring::reserve`].
pub(super) struct Spill {
    pub(super) shm: Arc<SharedMemory>,
    pub(super) offset: usize,
    pub(super) size: usize,
    /// Far behind the consumers: write around the caches (see [`ChunkWriter`]).
    stream: bool,
}

pub(super) enum SpillError {
    Os(proc_core::Error),
    Serialize(proc_core::codec::Error),
}

/// A chunk's state word (the mapping is page-aligned and at least `C_DATA` bytes long).
fn chunk_state(shm: &SharedMemory) -> &AtomicU64 {
    assert!(shm.size() >= C_DATA, "a spill chunk shorter than its header");
    // SAFETY: in bounds (asserted) and 8-byte aligned (the mapping is page-aligned); the memory
    // lives as long as `shm`, and the word is only accessed atomically.
    unsafe { AtomicU64::from_ptr(shm.as_ptr().add(C_STATE).cast()) }
}

impl Ring {
    /// Serializes `value` (`size` bytes) into this process' chunk (this is ring 0).
    pub(super) fn spill<T: Serialize>(&self, value: &T, size: usize) -> Result<Spill, SpillError> {
        let spill = self.reserve(size).map_err(SpillError::Os)?;
        // SAFETY: the reservation lies inside the chunk's mapping (`reserve` checked it) and is
        // ours alone: no slot names it until we commit, and the chunk's producer (this process)
        // does not hand it out again while it is counted unread.
        let buf = unsafe { std::slice::from_raw_parts_mut(spill.shm.as_ptr().add(spill.offset), size) };
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            proc_core::codec::serialize_with_flavor(value, ChunkWriter { buf, at: 0, stream: spill.stream })
        }));
        match written {
            Ok(Ok(())) => Ok(spill),
            Ok(Err(e)) => {
                self.spill_done(&spill.shm);
                Err(SpillError::Serialize(e))
            }
            Err(panic) => {
                self.spill_done(&spill.shm);
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Reserves `size` bytes in this process' chunk, counted unread, letting the chunk go and
    /// taking another when it has no room (this is ring 0).
    fn reserve(&self, size: usize) -> proc_core::Result<Spill> {
        let me = crate::loom::pid() & PID_MASK;
        let need = size.next_multiple_of(64);
        let mut guard = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let writer = &mut *guard;
        if writer.held.as_ref().is_some_and(|h| h.pid != me) {
            // Inherited through fork: the parent's chunk, not ours.
            *writer = Writer::default();
        }
        if let Some(held) = writer.held.as_mut() {
            let state = chunk_state(&held.shm);
            if state.load(Ordering::Acquire) == CHUNK_HELD {
                // Every message written here was read: start again at the front.
                held.offset = 0;
            }
            if C_DATA + held.offset + need <= held.shm.size() {
                let offset = C_DATA + held.offset;
                held.offset += need;
                let unread = state.fetch_add(1, Ordering::AcqRel) & REFS;
                held.populate(offset + need);
                let stream = unread >= STREAM_AFTER_MESSAGES && unread * need as u64 >= STREAM_AFTER_BYTES;
                return Ok(Spill { shm: Arc::clone(&held.shm), offset, size, stream });
            }
            // No room: the consumers are behind (or the message is larger than the chunk).
            if state.load(Ordering::Acquire) & REFS != 0 {
                writer.next_size = writer.next_size.max(held.shm.size().saturating_mul(2)).min(CHUNK_MAX);
            }
        }
        if let Some(held) = writer.held.take() {
            self.let_go(held);
        }
        let want = (C_DATA + need).max(writer.next_size).max(CHUNK_MIN).next_multiple_of(4096);
        let (shm, entry) = self.take_chunk(C_DATA + need, want)?;
        let state = chunk_state(&shm);
        match entry {
            Some(entry) if shm.size() <= CHUNK_MAX => {
                state.store(CHUNK_HELD | 1, Ordering::Release);
                let mut held = Held { pid: me, entry, shm: Arc::clone(&shm), offset: need, populated: 0 };
                held.populate(C_DATA + need);
                writer.held = Some(held);
            }
            // No entry left to hold it by (or too large to keep): it serves this message only,
            // and goes to the free list (or away) once read.
            entry => {
                if let Some(entry) = entry {
                    self.entry(entry).state.store(ENTRY_EMPTY, Ordering::Release);
                }
                state.store(1, Ordering::Release);
            }
        }
        Ok(Spill { shm, offset: C_DATA, size, stream: false })
    }

    /// A chunk of at least `need` bytes for this process to hold: a free one, or a new one of
    /// `want` bytes; with the entry it is held by (`HELD | pid`), if one was free.
    fn take_chunk(&self, need: usize, want: usize) -> proc_core::Result<(Arc<SharedMemory>, Option<usize>)> {
        let me = crate::loom::pid() & PID_MASK;
        let mut spare = None;
        let mut unlinked_one = false;
        for entry in 0..SPILL_ENTRIES {
            let word = &self.entry(entry).state;
            let st = word.load(Ordering::Acquire);
            let owner = st & PID_MASK;
            if st & ENTRY_BUSY != 0 && owner != me && !crate::loom::process_alive(owner) {
                // Its taker died between two steps: the entry is lost, and its chunk goes to the
                // resource tracker at the end of the program.
                let _ = word.compare_exchange(st, ENTRY_EMPTY, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            let dead_holder = st & ENTRY_HELD != 0 && owner != me && !crate::loom::process_alive(owner);
            if st != ENTRY_FREE && st != ENTRY_EMPTY && !dead_holder {
                continue;
            }
            if st == ENTRY_EMPTY {
                if spare.is_none()
                    && word.compare_exchange(st, ENTRY_BUSY | me, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    spare = Some(entry);
                }
                continue;
            }
            let fits = self.entry(entry).size.load(Ordering::Acquire) >= need as u64;
            if st == ENTRY_FREE && !fits && unlinked_one {
                continue;
            }
            if word.compare_exchange(st, ENTRY_BUSY | me, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            let Some(shm) = self.entry_name(entry).and_then(|name| self.open_spill(&name).ok()) else {
                word.store(ENTRY_EMPTY, Ordering::Release);
                continue;
            };
            if dead_holder && chunk_state(&shm).fetch_and(!CHUNK_HELD, Ordering::AcqRel) & REFS != 0 {
                // Its holder died with messages of it unread, or reserved and never committed (killed
                // mid-put): let it go for the dead holder, as `let_go` does. Its last reader sends
                // it to the free list; a reservation never committed keeps it from there (only
                // its memory, which the queue's tracker group frees with the queue), where putting
                // the entry back held would have kept the entry too, for good.
                word.store(ENTRY_EMPTY, Ordering::Release);
                continue;
            }
            // A dead holder's chunk with nothing unread (counted 0, held or not: its holder may
            // have died before marking it held) is ours alone now: no reader counts it any more.
            if fits && shm.size() >= need {
                return self.release_spare(spare, Ok((shm, Some(entry))));
            }
            // Too small for this message: free its memory (once per put) and use its entry.
            unlinked_one = true;
            self.discard_spill(&shm);
            match spare {
                Some(_) => word.store(ENTRY_EMPTY, Ordering::Release),
                None => spare = Some(entry),
            }
        }
        // Without an entry to hold it by, the chunk serves one message only: no larger than that.
        let created = SharedMemory::create(if spare.is_some() { want } else { need }).map(Arc::new);
        let shm = match created {
            Ok(shm) => shm,
            Err(e) => return self.release_spare(spare, Err(e)),
        };
        // In the queue's tracker group: purged with the queue, even if only a killed process knew it.
        group_segment(self.queue(), &shm);
        self.cache_spill(&shm);
        if let Some(entry) = spare {
            self.fill_entry(entry, &shm);
        }
        Ok((shm, spare))
    }

    /// Gives back an entry `take_chunk` set aside but did not use, then returns `r`; an entry in
    /// `r` is marked held by this process.
    fn release_spare(
        &self,
        spare: Option<usize>,
        r: proc_core::Result<(Arc<SharedMemory>, Option<usize>)>,
    ) -> proc_core::Result<(Arc<SharedMemory>, Option<usize>)> {
        if let Some(spare) = spare {
            self.entry(spare).state.store(ENTRY_EMPTY, Ordering::Release);
        }
        if let Ok((_, Some(entry))) = &r {
            self.entry(*entry).state.store(ENTRY_HELD | (crate::loom::pid() & PID_MASK), Ordering::Release);
        }
        r
    }

    /// Writes a chunk's name and size into an entry this process holds busy, and marks it held.
    fn fill_entry(&self, entry: usize, shm: &SharedMemory) {
        let entry = self.entry(entry);
        let len = entry.name.write(shm.name().as_bytes());
        entry.name_len.store(len as u32, Ordering::Relaxed);
        entry.size.store(shm.size() as u64, Ordering::Relaxed);
        entry.state.store(ENTRY_HELD | (crate::loom::pid() & PID_MASK), Ordering::Release);
    }

    /// This process stops writing into `held`: its entry is emptied, and the chunk goes to the free
    /// list now if every message of it was read, or else when its last reader is done.
    fn let_go(&self, held: Held) {
        self.entry(held.entry).state.store(ENTRY_EMPTY, Ordering::Release);
        let before = chunk_state(&held.shm).fetch_and(!CHUNK_HELD, Ordering::AcqRel);
        if before == CHUNK_HELD {
            self.recycle_spill(&held.shm);
        }
    }

    /// Lets go of this process' chunk, if it holds one (its handle on the queue goes).
    pub(super) fn let_go_of_chunk(&self) {
        let me = crate::loom::pid() & PID_MASK;
        let held = match self.writer.lock() {
            Ok(mut writer) => writer.held.take(),
            Err(poisoned) => poisoned.into_inner().held.take(),
        };
        if let Some(held) = held.filter(|h| h.pid == me) {
            self.let_go(held);
        }
    }

    /// One message of the chunk `shm` was read (or will never be): the last one of a chunk that
    /// no producer holds any more sends it to the free list.
    ///
    /// The caller owns one unread count of the chunk: its own reservation, or the message of a
    /// slot it claimed (or took from a dead reader by a compare-and-swap), so the count is never 0
    /// here. Were it 0 all the same (a count taken twice), a plain `fetch_sub` would clear
    /// [`CHUNK_HELD`] and wrap the count to `REFS`: the chunk would look held, with messages
    /// unread, forever. So a count of 0 is left as it is, and logged: no panic, not even in debug
    /// builds, as the count lives in memory that any process holding the queue can write.
    pub(super) fn spill_done(&self, shm: &Arc<SharedMemory>) {
        let state = chunk_state(shm);
        let mut cur = state.load(Ordering::Acquire);
        loop {
            if cur & REFS == 0 {
                tracing::error!(chunk = shm.name(), "a spill chunk's message counted read twice");
                return;
            }
            match state.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.recycle_spill(shm);
        }
    }

    /// The name in a free-list entry this process holds busy (so no one writes it).
    fn entry_name(&self, entry: usize) -> Option<String> {
        let entry = self.entry(entry);
        entry.name.read(entry.name_len.load(Ordering::Acquire) as usize)
    }

    /// Entry `i` (below [`SPILL_ENTRIES`]) of the free list, in ring 0's header.
    fn entry(&self, i: usize) -> &SpillEntry {
        &self.queue().spill_list[i]
    }

    /// A chunk by name: mapped already in this process, or opened (and kept mapped).
    pub(super) fn open_spill(&self, name: &str) -> proc_core::Result<Arc<SharedMemory>> {
        if let Ok(mut spills) = self.spills.lock() {
            if let Some(i) = spills.iter().rposition(|s| s.name() == name) {
                let shm = spills.remove(i);
                spills.push(Arc::clone(&shm));
                return Ok(shm);
            }
        }
        let shm = Arc::new(SharedMemory::open(name)?);
        if shm.size() < C_DATA {
            return Err(proc_core::Error::invalid_argument("a queue's spill chunk is too short"));
        }
        self.cache_spill(&shm);
        Ok(shm)
    }

    fn cache_spill(&self, shm: &Arc<SharedMemory>) {
        if shm.size() > RECYCLE_MAX {
            return;
        }
        if let Ok(mut spills) = self.spills.lock() {
            if spills.len() >= SPILL_CACHE {
                spills.remove(0);
            }
            spills.push(Arc::clone(shm));
        }
    }

    /// Unlinks a chunk and unmaps it here.
    fn discard_spill(&self, shm: &Arc<SharedMemory>) {
        let _ = shm.unlink();
        if let Ok(mut spills) = self.spills.lock() {
            spills.retain(|s| !Arc::ptr_eq(s, shm));
        }
    }

    /// Offers a chunk nobody uses any more for reuse; unlinks it if the free list is full, if it
    /// would keep more than [`RETAIN_MAX`] bytes, or if the chunk is too large to keep.
    fn recycle_spill(&self, shm: &Arc<SharedMemory>) {
        let me = crate::loom::pid() & PID_MASK;
        let kept: u64 = (0..SPILL_ENTRIES)
            .filter(|&entry| self.entry(entry).state.load(Ordering::Acquire) == ENTRY_FREE)
            .map(|entry| self.entry(entry).size.load(Ordering::Relaxed))
            .sum();
        if shm.name().len() <= 32 && shm.size() <= RECYCLE_MAX && kept + shm.size() as u64 <= RETAIN_MAX {
            for entry in 0..SPILL_ENTRIES {
                let word = &self.entry(entry).state;
                if word
                    .compare_exchange(ENTRY_EMPTY, ENTRY_BUSY | me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.fill_entry(entry, shm);
                    word.store(ENTRY_FREE, Ordering::Release);
                    return;
                }
            }
        }
        self.discard_spill(shm);
    }

    /// The chunk name in a claimed slot's spill record.
    fn spill_name(&self, claim: &Claim) -> Option<String> {
        let len = (self.slot_len(claim.pos).load(Ordering::Acquire) & !SPILLED) as usize;
        if len == 0 || len > SPILL_SIZE_AT {
            return None;
        }
        let mut name = vec![0u8; len];
        // SAFETY: `len` bytes (at most SPILL_SIZE_AT) lie inside the slot's data. The slot is
        // claimed by this process, or held by a dead reader: then a putter may be writing it
        // already, and the bytes copied are only plain bytes, which `dead_read_spill`'s caller
        // discards unless its compare-and-swap shows the slot unchanged since.
        unsafe { std::ptr::copy_nonoverlapping(self.slot_data(claim), name.as_mut_ptr(), len) };
        String::from_utf8(name).ok()
    }

    /// Writes the spill record of `spill` into a claimed slot; the value for its length word.
    pub(super) fn write_record(&self, claim: &Claim, spill: &Spill) -> u64 {
        let name = spill.shm.name().as_bytes();
        let len = name.len().min(SPILL_SIZE_AT);
        let data = self.slot_data(claim);
        let size = (spill.size as u64).to_le_bytes();
        let offset = (spill.offset as u64).to_le_bytes();
        // SAFETY: the slot is claimed by this process, and a slot holds at least SPILL_RECORD
        // bytes: the name (at most 32), then the size and the offset.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), data, len);
            std::ptr::copy_nonoverlapping(size.as_ptr(), data.add(SPILL_SIZE_AT), 8);
            std::ptr::copy_nonoverlapping(offset.as_ptr(), data.add(SPILL_OFFSET_AT), 8);
        }
        len as u64 | SPILLED
    }

    /// The spill record of a claimed slot: the chunk's name, the message's size and offset.
    pub(super) fn read_record(&self, claim: &Claim) -> Option<(String, usize, usize)> {
        let name = self.spill_name(claim)?;
        let mut words = [[0u8; 8]; 2];
        let data = self.slot_data(claim);
        // SAFETY: the record lies inside the slot's data, which no one writes while we hold the
        // claim.
        unsafe {
            std::ptr::copy_nonoverlapping(data.add(SPILL_SIZE_AT), words[0].as_mut_ptr(), 8);
            std::ptr::copy_nonoverlapping(data.add(SPILL_OFFSET_AT), words[1].as_mut_ptr(), 8);
        }
        let size = usize::try_from(u64::from_le_bytes(words[0])).ok()?;
        let offset = usize::try_from(u64::from_le_bytes(words[1])).ok()?;
        Some((name, size, offset))
    }

    /// Reads a spilled message (its record already copied out of its slot, which is released)
    /// with `decode`, then counts it read.
    pub(super) fn take_spilled<R>(
        &self,
        (name, size, offset): (String, usize, usize),
        decode: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, GetError> {
        let corrupt = || GetError::corrupt_record();
        let shm = self.open_spill(&name).map_err(GetError::Os)?;
        if offset < C_DATA || offset.checked_add(size).is_none_or(|end| end > shm.size()) {
            return Err(corrupt());
        }
        // SAFETY: the range lies inside the chunk's mapping (checked above); its producer wrote
        // it before committing the slot and does not write it again while it is counted unread,
        // which it is until `spill_done` below.
        let bytes = unsafe { std::slice::from_raw_parts(shm.as_ptr().add(offset), size) };
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes)));
        self.spill_done(&shm);
        match decoded {
            Ok(r) => Ok(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The chunk named by the spill record of a slot whose reader died, if it holds a spilled
    /// message. Read before the slot is taken over (see `Ring::free_dead_read`): a putter racing
    /// with us may already have freed the slot and be writing it, so what this returns means
    /// something only once a compare-and-swap has shown the slot unchanged since.
    pub(super) fn dead_read_spill(&self, claim: &Claim) -> Option<String> {
        if self.slot_len(claim.pos).load(Ordering::Acquire) & SPILLED == 0 {
            return None;
        }
        self.spill_name(claim)
    }

    /// Counts read the spilled message, in chunk `name`, of a slot this process took from a dead
    /// reader (a rare path: the chunk is mapped for this only).
    pub(super) fn drop_spilled(&self, name: &str) {
        if let Ok(shm) = SharedMemory::open(name) {
            if shm.size() >= C_DATA {
                self.spill_done(&Arc::new(shm));
            }
        }
    }

    /// The last process leaves (this is ring 0): unlinks every chunk the free list names, free or
    /// held by a dead process.
    pub(super) fn unlink_listed_chunks(&self) {
        for entry in 0..SPILL_ENTRIES {
            let word = &self.entry(entry).state;
            let st = word.load(Ordering::Acquire);
            if st == ENTRY_EMPTY {
                continue;
            }
            if let Some(name) = self.entry_name(entry) {
                if let Ok(shm) = SharedMemory::open(&name) {
                    let _ = shm.unlink();
                }
            }
            word.store(ENTRY_EMPTY, Ordering::Release);
        }
        if let Ok(mut spills) = self.spills.lock() {
            spills.clear();
        }
    }

    /// The last process leaves: unlinks the chunks that unread messages of this ring name.
    pub(super) fn unlink_unread_chunks(&self) {
        let mut seen = std::collections::HashSet::new();
        for pos in 0..u64::from(self.capacity) {
            let (seq, state) = split(self.slot_ctl(pos).load(Ordering::Acquire));
            // Committed (odd sequence), and not voided: read by no one, or by a reader that died.
            let unread = seq % 2 == 1 && state & VOID == 0 && state & WRITING == 0;
            if !unread || self.slot_len(pos).load(Ordering::Acquire) & SPILLED == 0 {
                continue;
            }
            let Some((name, _, _)) = self.read_record(&Claim { pos }) else { continue };
            if seen.insert(name.clone()) {
                if let Ok(shm) = SharedMemory::open(&name) {
                    let _ = shm.unlink();
                }
            }
        }
    }
}

#[cfg(test)]
mod test;
